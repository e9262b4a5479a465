// The user guide's walk-through of one training step with nyxq (docs/guide.md,
// "Quantization-aware training"), compiled and run by ctest: a linear layer
// y = W x fitted to a target layer by least squares, trained through INT4 fake
// quantization (quantization-aware training) with loss scaling and Adam with
// 8-bit state.
#include <cmath>
#include <cstdio>
#include <vector>

#include "nyxq.h"

#define CHECK(call)                                                                              \
  do {                                                                                           \
    NyxqStatus s_ = (call);                                                                      \
    if (s_ != NYXQ_OK) {                                                                         \
      std::fprintf(stderr, "%s: %s: %s\n", #call, nyxq_status_str(s_), nyxq_last_error_message()); \
      status = 1;                                                                                \
      goto done;                                                                                 \
    }                                                                                            \
  } while (0)

int main() {
  const size_t rows = 64, cols = 128, n = rows * cols;
  std::vector<float> master(n, 0.0f), forward_w(n), grad(n), target(n);
  for (size_t i = 0; i < n; ++i) target[i] = std::sin(0.37f * static_cast<float>(i));

  int status = 0;
  NyxqContext *ctx = nullptr;
  NyxqLossScaler *scaler = nullptr;
  NyxqAdam *adam = nullptr;
  NyxqAdamOptions adam_options;
  double first_loss = 0, loss = 0;
  size_t state_bytes = 0, fp32_state_bytes = 0;

  CHECK(nyxq_context_create(nullptr, &ctx));
  CHECK(nyxq_loss_scaler_create(nullptr, &scaler));  // GradScaler defaults: 65536, x2 / 2000 steps, x0.5
  CHECK(nyxq_adam_options_default(&adam_options));
  adam_options.state = NYXQ_ADAM_STATE_INT8;  // blockwise 8-bit moments
  CHECK(nyxq_adam_create(&adam_options, n, &adam));

  for (int step = 0; step < 300; ++step) {
    // 1. Forward weights: the FP32 master weights through INT4 and back.
    CHECK(nyxq_fake_quantize(ctx, NYXQ_FORMAT_Q4_0, master.data(), n, nullptr, forward_w.data(), n));
    // 2. Loss and backward pass on the forward weights, with the loss scaled
    //    (here the loss is 0.5·|W − T|², so dL/dW = W − T).
    float scale = 1.0f;
    CHECK(nyxq_loss_scaler_scale(scaler, &scale));
    loss = 0;
    for (size_t i = 0; i < n; ++i) {
      const float diff = forward_w[i] - target[i];
      loss += 0.5 * diff * diff / n;
      grad[i] = scale * diff / n;
    }
    if (step == 0) first_loss = loss;
    // 3. Unscale the gradients and check them for Inf/NaN, in one pass.
    uint32_t found_non_finite = 0;
    CHECK(nyxq_loss_scaler_unscale_and_check(scaler, grad.data(), n, &found_non_finite, nullptr));
    // 4. Skip the step on overflow (the scale backs off), else step Adam on the
    //    FP32 master weights: the straight-through estimator applies the
    //    fake-quantized weights' gradients to the masters unchanged.
    uint32_t apply = 0;
    CHECK(nyxq_loss_scaler_update(scaler, &apply));
    if (apply) CHECK(nyxq_adam_step(adam, 0.05f, master.data(), n, grad.data(), n));
  }

  CHECK(nyxq_adam_state_bytes(adam, &state_bytes, &fp32_state_bytes));
  std::printf("loss %.5f -> %.5f over 300 QAT steps; Adam state %zu bytes (%.1f%% of FP32)\n", first_loss, loss, state_bytes,
              100.0 * state_bytes / fp32_state_bytes);
  // The fit must improve by far; what remains is INT4's resolution.
  if (!(loss < 0.1 * first_loss)) status = 1;
done:
  nyxq_adam_destroy(adam);  // each _destroy accepts NULL
  nyxq_loss_scaler_destroy(scaler);
  nyxq_context_destroy(ctx);
  return status;
}
