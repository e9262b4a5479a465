// The demo's training step on a Vulkan device, recorded as the Nyx trainer
// records its own: one command buffer and one fence per step, no weight or
// gradient crossing to the host inside a step (only the batch's bytes go in and
// the per-token losses and the loss scaler's found flag come out).
//
// What is the trainer's runs in the demo's own shaders (shaders/*.comp):
// the embedding gather and its scatter-add gradient, bias + tanh, softmax with
// the cross-entropy loss and its gradient, tanh's backward, the weight and
// bias gradients. What is nyxq's is recorded into the same command buffer:
// fake quantization of the weight matrices (nyxq_vk_cmd_fake_quantize), the
// forward and backward products through those weights (nyxq_vk_cmd_matmul,
// nyxq_vk_cmd_matmul_transposed), the loss scaler's unscale-and-check
// (nyxq_vk_cmd_unscale_and_check) and Adam (nyxq_vk_cmd_adam_step, which
// reads the found flag on the device and skips the step when it is set).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <vector>

#include "model.hpp"
#include "nyxq.h"
#include "vk_device.hpp"

namespace demo {

namespace spirv {
const uint32_t kEmbedGather[] = {
#include "embed_gather.inc"
};
const uint32_t kBiasTanh[] = {
#include "bias_tanh.inc"
};
const uint32_t kSoftmaxXent[] = {
#include "softmax_xent.inc"
};
const uint32_t kTanhBackward[] = {
#include "tanh_backward.inc"
};
const uint32_t kBiasGrad[] = {
#include "bias_grad.inc"
};
const uint32_t kWeightGrad[] = {
#include "weight_grad.inc"
};
const uint32_t kEmbedScatter[] = {
#include "embed_scatter.inc"
};
}  // namespace spirv

// The demo's shaders as pipelines, made once per device.
struct TrainerKernels {
  Kernel gather, bias_tanh, softmax, tanh_backward, bias_grad, weight_grad, scatter;
  explicit TrainerKernels(VulkanDevice &d)
      : gather(d.kernel(spirv::kEmbedGather, std::size(spirv::kEmbedGather), 3)),
        bias_tanh(d.kernel(spirv::kBiasTanh, std::size(spirv::kBiasTanh), 2)),
        softmax(d.kernel(spirv::kSoftmaxXent, std::size(spirv::kSoftmaxXent), 5)),
        tanh_backward(d.kernel(spirv::kTanhBackward, std::size(spirv::kTanhBackward), 3)),
        bias_grad(d.kernel(spirv::kBiasGrad, std::size(spirv::kBiasGrad), 2)),
        weight_grad(d.kernel(spirv::kWeightGrad, std::size(spirv::kWeightGrad), 3)),
        scatter(d.kernel(spirv::kEmbedScatter, std::size(spirv::kEmbedScatter), 3)) {}
};

// How a phase trains: Adam's state, and for quantization-aware training the
// format the weight matrices are fake-quantized to and the loss scaler.
struct TrainerMode {
  int32_t adam_state = NYXQ_ADAM_STATE_FP32;
  bool fake_quantize = false;
  int32_t format = NYXQ_FORMAT_F32;
  NyxqLossScaler *scaler = nullptr;  // NULL: no loss scaling
};

// What one step gives back to the host.
struct StepResult {
  double mean_loss = 0;
  bool applied = true;             // false: the loss scaler skipped it
  double fake_quant_seconds = -1;  // -1: the queue writes no timestamps
  double step_seconds = -1;
};

inline uint32_t groups(uint64_t n, uint32_t size) { return static_cast<uint32_t>((n + size - 1) / size); }

class VkTrainer {
 public:
  // Uploads the model's values and makes the optimizers, buffers and
  // descriptor sets of one training phase.
  VkTrainer(VulkanDevice &device, const TrainerKernels &kernels, const Model &m, int batch, const TrainerMode &mode)
      : d_(device), k_(kernels), mode_(mode), batch_(batch), hidden_(m.hidden) {
    NyxqAdamOptions o;
    NYXQ(nyxq_adam_options_default(&o));
    o.state = mode.adam_state;
    const std::vector<const Param *> params = m.params();
    // A test's hook: NYXQ_DEMO_BREAK_STEP=<parameter name> leaves that
    // parameter's Adam update out of every device step, so a test can show
    // that the comparison with the CPU catches a broken step.
    const char *broken = std::getenv("NYXQ_DEMO_BREAK_STEP");
    for (const Param *p : params) {
      Tensor t;
      t.n = p->size();
      t.frozen = broken != nullptr && p->name == broken;
      if (t.frozen) std::fprintf(stderr, "nyxq_demo: NYXQ_DEMO_BREAK_STEP: %s is not updated on the device\n", broken);
      t.value = d_.buffer(t.n * sizeof(float), false);
      t.grad = d_.buffer(t.n * sizeof(float), false);
      t.forward = mode.fake_quantize && p->is_matrix ? d_.buffer(t.n * sizeof(float), false) : t.value;
      d_.upload(t.value, p->value.data(), t.n * sizeof(float));
      NYXQ(nyxq_vk_adam_create(d_.nyxq(), &o, t.n, &t.adam));
      tensors_.push_back(t);
    }
    const size_t B = static_cast<size_t>(batch), H = static_cast<size_t>(hidden_);
    context_ = d_.buffer(B * kContext * sizeof(uint32_t), true);
    targets_ = d_.buffer(B * sizeof(uint32_t), true);
    loss_ = d_.buffer(B * sizeof(float), true);
    found_ = d_.buffer(sizeof(uint32_t), true);
    x_ = d_.buffer(B * kInput * sizeof(float), false);
    h_ = d_.buffer(B * H * sizeof(float), false);
    logits_ = d_.buffer(B * kVocab * sizeof(float), false);
    dlogits_ = d_.buffer(B * kVocab * sizeof(float), false);
    dh_ = d_.buffer(B * H * sizeof(float), false);
    dpre_ = d_.buffer(B * H * sizeof(float), false);
    dx_ = d_.buffer(B * kInput * sizeof(float), false);
    found_.words()[0] = 0;
    const Tensor &embed = tensors_[0], &b1 = tensors_[2], &w2 = tensors_[3], &b2 = tensors_[4];
    sets_.gather = d_.bind(k_.gather, {context_, embed.forward, x_});
    sets_.bias_tanh = d_.bind(k_.bias_tanh, {h_, b1.value});
    sets_.softmax = d_.bind(k_.softmax, {logits_, b2.value, targets_, dlogits_, loss_});
    sets_.db2 = d_.bind(k_.bias_grad, {dlogits_, b2.grad});
    sets_.dw2 = d_.bind(k_.weight_grad, {dlogits_, h_, w2.grad});
    sets_.tanh_backward = d_.bind(k_.tanh_backward, {dh_, h_, dpre_});
    sets_.db1 = d_.bind(k_.bias_grad, {dpre_, b1.grad});
    sets_.dw1 = d_.bind(k_.weight_grad, {dpre_, x_, tensors_[1].grad});
    sets_.scatter = d_.bind(k_.scatter, {context_, dx_, embed.grad});
    if (d_.timestamp_ns() > 0) {
      VkQueryPoolCreateInfo q{};
      q.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
      q.queryType = VK_QUERY_TYPE_TIMESTAMP;
      q.queryCount = 3;
      VK(vkCreateQueryPool(d_.device(), &q, nullptr, &timestamps_));
    }
  }

  ~VkTrainer() {
    for (Tensor &t : tensors_) {
      nyxq_vk_adam_destroy(t.adam);
      d_.release(t.value);
      d_.release(t.grad);
      if (t.forward.buffer != t.value.buffer) d_.release(t.forward);
    }
    for (const VkBuf &b : {context_, targets_, loss_, found_, x_, h_, logits_, dlogits_, dh_, dpre_, dx_}) d_.release(b);
    if (timestamps_ != VK_NULL_HANDLE) vkDestroyQueryPool(d_.device(), timestamps_, nullptr);
  }
  VkTrainer(const VkTrainer &) = delete;
  VkTrainer &operator=(const VkTrainer &) = delete;

  // One training step on `batch`: records it, submits it, waits on the fence,
  // releases nyxq's tickets and reports the loss scaler's found flag.
  StepResult step(const Batch &batch, float lr) {
    for (size_t i = 0; i < batch.context.size(); ++i) context_.words()[i] = batch.context[i];
    for (int b = 0; b < batch.size; ++b) targets_.words()[b] = batch.target[b];
    float scale = 1.0f;
    if (mode_.scaler != nullptr) NYXQ(nyxq_loss_scaler_scale(mode_.scaler, &scale));
    d_.begin();
    record(scale, lr);
    d_.submit_and_wait();
    NYXQ(nyxq_vk_release(d_.nyxq(), last_ticket_));

    StepResult r;
    double loss = 0;
    for (int b = 0; b < batch.size; ++b) loss += loss_.floats()[b];
    r.mean_loss = loss / batch.size;
    if (mode_.scaler != nullptr) {
      NYXQ(nyxq_loss_scaler_report_non_finite(mode_.scaler, found_.words()[0]));
      uint32_t apply = 0;
      NYXQ(nyxq_loss_scaler_update(mode_.scaler, &apply));
      r.applied = apply != 0;
    }
    if (timestamps_ != VK_NULL_HANDLE) {
      uint64_t ticks[3];
      VK(vkGetQueryPoolResults(d_.device(), timestamps_, 0, 3, sizeof ticks, ticks, sizeof(uint64_t),
                               VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
      r.fake_quant_seconds = static_cast<double>(ticks[1] - ticks[0]) * d_.timestamp_ns() * 1e-9;
      r.step_seconds = static_cast<double>(ticks[2] - ticks[0]) * d_.timestamp_ns() * 1e-9;
    }
    return r;
  }

  // The master weights back into `m` (after training).
  void download(Model &m) {
    std::vector<Param *> params = m.params();
    for (size_t i = 0; i < params.size(); ++i)
      d_.download(tensors_[i].value, params[i]->value.data(), tensors_[i].n * sizeof(float));
  }

  size_t state_bytes(size_t *fp32_bytes) const {
    size_t held = 0, fp32 = 0;
    for (const Tensor &t : tensors_) {
      size_t h = 0, f = 0;
      NYXQ(nyxq_vk_adam_state_bytes(t.adam, &h, &f));
      held += h, fp32 += f;
    }
    *fp32_bytes = fp32;
    return held;
  }

 private:
  struct Tensor {
    size_t n = 0;
    VkBuf value, grad, forward;  // forward: the fake-quantized copy, or value itself
    NyxqVkAdam *adam = nullptr;
    bool frozen = false;  // NYXQ_DEMO_BREAK_STEP names it
  };

  void timestamp(uint32_t query) const {
    if (timestamps_ != VK_NULL_HANDLE)
      vkCmdWriteTimestamp(d_.cmd(), VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, timestamps_, query);
  }

  void record(float scale, float lr) {
    NyxqContext *ctx = d_.nyxq();
    void *cmd = d_.cmd();
    const uint32_t B = static_cast<uint32_t>(batch_), H = static_cast<uint32_t>(hidden_);
    const Tensor &w1 = tensors_[1], &w2 = tensors_[3];
    if (timestamps_ != VK_NULL_HANDLE) vkCmdResetQueryPool(d_.cmd(), timestamps_, 0, 3);
    timestamp(0);
    // Forward weights: each matrix's masters through the format and back.
    if (mode_.scaler != nullptr) vkCmdFillBuffer(d_.cmd(), found_.buffer, 0, sizeof(uint32_t), 0);
    if (mode_.fake_quantize)
      for (const Tensor &t : tensors_)
        if (t.forward.buffer != t.value.buffer) {
          const NyxqVkBufferRange src = t.value.range(), dst = t.forward.range();
          NYXQ(nyxq_vk_cmd_fake_quantize(ctx, cmd, mode_.format, t.n, &src, &dst, nullptr, &last_ticket_));
        }
    d_.barrier();
    timestamp(1);
    // Forward: x = embed[context]; h = tanh(x·W1ᵀ + b1); logits = h·W2ᵀ;
    // softmax, loss and dlogits (with b2 added in the softmax shader).
    d_.dispatch(k_.gather, sets_.gather, {B, kContext, kEmbed, 0, 0}, groups(uint64_t{B} * kInput, 256));
    d_.barrier();
    matmul(w1.forward, H, kInput, x_, h_);
    d_.barrier();
    d_.dispatch(k_.bias_tanh, sets_.bias_tanh, {B * H, H, 0, 0, 0}, groups(uint64_t{B} * H, 256));
    d_.barrier();
    matmul(w2.forward, kVocab, H, h_, logits_);
    d_.barrier();
    d_.dispatch(k_.softmax, sets_.softmax, {kVocab, 0, 0, 0, scale / static_cast<float>(B)}, B);
    d_.barrier();
    // Backward through the output layer, then tanh, then the hidden layer
    // and the embedding.
    d_.dispatch(k_.bias_grad, sets_.db2, {kVocab, B, 0, 0, 0}, groups(kVocab, 256));
    d_.dispatch(k_.weight_grad, sets_.dw2, {kVocab, H, B, 0, 0}, groups(H, 64), groups(kVocab, 16));
    matmul_transposed(w2.forward, kVocab, H, dlogits_, dh_);
    d_.barrier();
    d_.dispatch(k_.tanh_backward, sets_.tanh_backward, {B * H, 0, 0, 0, 0}, groups(uint64_t{B} * H, 256));
    d_.barrier();
    d_.dispatch(k_.bias_grad, sets_.db1, {H, B, 0, 0, 0}, groups(H, 256));
    d_.dispatch(k_.weight_grad, sets_.dw1, {H, kInput, B, 0, 0}, groups(kInput, 64), groups(H, 16));
    matmul_transposed(w1.forward, H, kInput, dpre_, dx_);
    d_.barrier();
    d_.dispatch(k_.scatter, sets_.scatter, {B, kContext, kEmbed, kVocab, 0}, groups(uint64_t{kVocab} * kEmbed, 256));
    d_.barrier();
    // The loss scaler's unscale-and-check over every gradient, then Adam on
    // the masters (straight through the fake quantization), skipped on the
    // device when a gradient was not finite.
    const NyxqVkBufferRange found = found_.range();
    if (mode_.scaler != nullptr) {
      for (const Tensor &t : tensors_) {
        const NyxqVkBufferRange grads = t.grad.range();
        NYXQ(nyxq_vk_cmd_unscale_and_check(ctx, mode_.scaler, cmd, &grads, t.n, &found, &last_ticket_));
      }
      d_.barrier();
    }
    for (const Tensor &t : tensors_) {
      if (t.frozen) continue;
      const NyxqVkBufferRange params = t.value.range(), grads = t.grad.range();
      NYXQ(nyxq_vk_cmd_adam_step(ctx, t.adam, cmd, lr, &params, &grads, t.n,
                                    mode_.scaler != nullptr ? &found : nullptr, &last_ticket_));
    }
    d_.barrier();
    timestamp(2);
  }

  void matmul(const VkBuf &w, uint32_t rows, uint32_t cols, const VkBuf &x, const VkBuf &y) {
    const NyxqVkBufferRange wr = w.range(), xr = x.range(), yr = y.range();
    NYXQ(nyxq_vk_cmd_matmul(d_.nyxq(), d_.cmd(), NYXQ_FORMAT_F32, rows, cols, static_cast<uint64_t>(batch_), &wr, &xr,
                               nullptr, &yr, &last_ticket_));
  }
  void matmul_transposed(const VkBuf &w, uint32_t rows, uint32_t cols, const VkBuf &dy, const VkBuf &dx) {
    const NyxqVkBufferRange wr = w.range(), dyr = dy.range(), dxr = dx.range();
    NYXQ(nyxq_vk_cmd_matmul_transposed(d_.nyxq(), d_.cmd(), NYXQ_FORMAT_F32, rows, cols, static_cast<uint64_t>(batch_),
                                          &wr, &dyr, &dxr, &last_ticket_));
  }

  VulkanDevice &d_;
  const TrainerKernels &k_;
  TrainerMode mode_;
  int batch_, hidden_;
  std::vector<Tensor> tensors_;  // embed, w1, b1, w2, b2: Model::params()'s order
  VkBuf context_, targets_, loss_, found_, x_, h_, logits_, dlogits_, dh_, dpre_, dx_;
  struct {
    VkDescriptorSet gather, bias_tanh, softmax, db2, dw2, tanh_backward, db1, dw1, scatter;
  } sets_{};
  VkQueryPool timestamps_ = VK_NULL_HANDLE;
  uint64_t last_ticket_ = 0;
};

}  // namespace demo
