// nyxq_demo: trains a character-level language model on the embedded corpus
// (the Jargon File) with nyxq's Adam, then measures what each precision level
// costs and keeps: post-training quantization at FP32, FP16, BF16, INT8, INT5
// and INT4 (Q4_0, Q4_1, IQ4_NL; Q4_0 and Q4_1 error-minimising too), and INT4
// quantization-aware fine-tuning with fake-quant
// and the loss scaler in the loop. Prints a table, writes JSON and an SVG plot.
// Uses only nyxq.h, as the Nyx trainer does. With --device vulkan it trains on
// a Vulkan device of its own that nyxq borrows (vk_device.hpp, vk_trainer.hpp)
// and trains the first phase on the CPU too, to compare the losses.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "model.hpp"
#include "nyxq.h"
#include "report.hpp"
#include "vk_trainer.hpp"

using namespace demo;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Options {
  uint64_t seed = 1;
  std::string out = "nyxq_demo_out";
  std::string corpus = NYXQ_DEMO_CORPUS;
  std::string device = "cpu";  // cpu, vulkan or auto
  int steps = 5000, qat_steps = 600, batch = 64, eval_positions = 40000, hidden = kDefaultHidden;
  bool quick = false, train_only = false, validate = false;
};

[[noreturn]] void usage_error(const std::string &what) {
  std::fprintf(stderr, "nyxq_demo: %s\n", what.c_str());
  std::exit(2);
}

// The integer value of an option, or a usage error naming it.
int integer(const std::string &option, const std::string &text) {
  char *end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < INT32_MIN || v > INT32_MAX)
    usage_error(option + " " + text + ": not a number");
  return static_cast<int>(v);
}

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "nyxq_demo: %s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--out") o.out = value();
    else if (a == "--corpus") o.corpus = value();
    else if (a == "--steps") o.steps = integer(a, value());
    else if (a == "--device") o.device = value();
    else if (a == "--hidden") o.hidden = integer(a, value());
    else if (a == "--qat-steps") o.qat_steps = integer(a, value());
    else if (a == "--eval-positions") o.eval_positions = integer(a, value());
    else if (a == "--train-only") o.train_only = true;
    else if (a == "--validate") o.validate = true;
    else if (a == "--quick") { o.quick = true; o.steps = 1200; o.qat_steps = 300; o.eval_positions = 10000; }
    else if (a == "--full") { o.steps = 12000; o.qat_steps = 1500; o.eval_positions = 100000; }
    else {
      std::fprintf(stderr,
                   "usage: nyxq_demo [--seed N] [--out DIR] [--corpus FILE] [--quick | --full] [--steps N] [--qat-steps N]\n"
                   "                 [--eval-positions N] [--device cpu|vulkan|auto] [--validate] [--hidden N] [--train-only]\n");
      std::exit(a == "--help" ? 0 : 2);
    }
  }
  if (o.device != "cpu" && o.device != "vulkan" && o.device != "auto")
    usage_error("--device " + o.device + ": expected cpu, vulkan or auto");
  // Every format's rows must be whole blocks: 256 values for the K-quants.
  if (o.hidden < 256 || o.hidden > 4096 || o.hidden % 256 != 0)
    usage_error("--hidden " + std::to_string(o.hidden) + ": expected a multiple of 256 from 256 to 4096");
  if (o.steps < 1) usage_error("--steps " + std::to_string(o.steps) + ": expected at least 1");
  if (o.eval_positions < 8) usage_error("--eval-positions " + std::to_string(o.eval_positions) + ": expected at least 8");
  if (o.qat_steps < 1) usage_error("--qat-steps " + std::to_string(o.qat_steps) + ": expected at least 1");
  if (o.validate && o.device == "cpu") usage_error("--validate checks the Vulkan device: use it with --device vulkan or auto");
  return o;
}

struct Corpus {
  std::vector<uint8_t> train, valid;
};

Corpus load_corpus(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) { std::fprintf(stderr, "nyxq_demo: cannot read corpus %s\n", path.c_str()); std::exit(1); }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t split = bytes.size() * 9 / 10;
  return {std::vector<uint8_t>(bytes.begin(), bytes.begin() + split), std::vector<uint8_t>(bytes.begin() + split, bytes.end())};
}

void fill_batch(const std::vector<uint8_t> &text, Rng &rng, int size, Batch &batch) {
  batch.size = size;
  batch.context.resize(static_cast<size_t>(size) * kContext);
  batch.target.resize(size);
  for (int b = 0; b < size; ++b) {
    size_t pos = kContext + rng.next() % (text.size() - kContext);
    for (int k = 0; k < kContext; ++k) batch.context[b * kContext + k] = text[pos - kContext + k];
    batch.target[b] = text[pos];
  }
}

struct Eval {
  double loss = 0, accuracy = 0, seconds = 0;
};

// The hidden and output matrices as the format stores them, for evaluation
// with nyxq's matrix-vector kernels (the embedding is a lookup table, used
// dequantized).
struct Packed {
  int32_t format = NYXQ_FORMAT_F32;
  std::vector<uint8_t> w1, w2;
};

// Validation over evenly spaced positions of the held-out text. The two
// matrix products run on the packed weights through nyxq_matvec, 8 positions
// at a time, as an inference engine would, so the time is what each format
// costs to evaluate.
Eval evaluate_packed(NyxqContext *ctx, const Model &m, const Packed &p, const std::vector<uint8_t> &text, int positions) {
  auto t = Clock::now();
  constexpr int kBatch = 8;
  const int hidden = m.hidden;
  std::vector<float> x(kBatch * kInput), h(kBatch * hidden), logits(kBatch * kVocab);
  double loss = 0;
  int correct = 0;
  const size_t stride = std::max<size_t>(1, (text.size() - kContext) / positions);
  for (int done = 0; done < positions; done += kBatch) {
    const int size = std::min(kBatch, positions - done);
    uint8_t target[kBatch];
    for (int b = 0; b < size; ++b) {
      size_t pos = kContext + (static_cast<size_t>(done + b) * stride) % (text.size() - kContext);
      for (int k = 0; k < kContext; ++k)
        std::memcpy(&x[b * kInput + k * kEmbed], &m.embed.value[static_cast<size_t>(text[pos - kContext + k]) * kEmbed],
                    kEmbed * sizeof(float));
      target[b] = text[pos];
    }
    NYXQ(nyxq_matvec(ctx, p.format, p.w1.data(), p.w1.size(), hidden, kInput, x.data(), size * kInput, size,
                     m.b1.value.data(), hidden, h.data(), size * hidden));
    for (int i = 0; i < size * hidden; ++i) h[i] = std::tanh(h[i]);
    NYXQ(nyxq_matvec(ctx, p.format, p.w2.data(), p.w2.size(), kVocab, hidden, h.data(), size * hidden, size,
                     m.b2.value.data(), kVocab, logits.data(), size * kVocab));
    for (int b = 0; b < size; ++b) {
      const float *z = &logits[b * kVocab];
      const float max_logit = *std::max_element(z, z + kVocab);
      double sum = 0;
      for (int o = 0; o < kVocab; ++o) sum += std::exp(static_cast<double>(z[o] - max_logit));
      loss += std::log(sum) - (z[target[b]] - max_logit);
      if (std::max_element(z, z + kVocab) - z == target[b]) ++correct;
    }
  }
  return {loss / positions, static_cast<double>(correct) / positions, seconds_since(t)};
}

// Adam state for every parameter of a model, through nyxq.
struct Optimizer {
  std::vector<NyxqAdam *> states;
  Optimizer(Model &m, int32_t state) {
    NyxqAdamOptions o;
    NYXQ(nyxq_adam_options_default(&o));
    o.state = state;
    for (Param *p : m.params()) {
      NyxqAdam *a = nullptr;
      NYXQ(nyxq_adam_create(&o, p->size(), &a));
      states.push_back(a);
    }
  }
  ~Optimizer() {
    for (NyxqAdam *a : states) nyxq_adam_destroy(a);
  }
  Optimizer(const Optimizer &) = delete;
  Optimizer &operator=(const Optimizer &) = delete;
  // Applies `grads_from`'s gradients to `master` (the same model, or the
  // fake-quantized copy whose gradients pass straight through to the master).
  void step(float lr, Model &master, Model &grads_from) {
    std::vector<Param *> p = master.params(), g = grads_from.params();
    for (size_t i = 0; i < p.size(); ++i)
      NYXQ(nyxq_adam_step(states[i], lr, p[i]->value.data(), p[i]->size(), g[i]->grad.data(), g[i]->grad.size()));
  }
  size_t state_bytes(size_t *fp32_bytes) const {
    size_t held = 0, fp32 = 0;
    for (NyxqAdam *a : states) {
      size_t h = 0, f = 0;
      NYXQ(nyxq_adam_state_bytes(a, &h, &f));
      held += h, fp32 += f;
    }
    *fp32_bytes = fp32;
    return held;
  }
};

float learning_rate(int step, int steps, float peak) {
  const int warmup = std::max(1, steps / 20);
  if (step < warmup) return peak * static_cast<float>(step + 1) / warmup;
  const float progress = static_cast<float>(step - warmup) / std::max(1, steps - warmup);
  return peak * (0.1f + 0.9f * 0.5f * (1.0f + std::cos(3.14159265f * progress)));
}

// Where a phase trains: on the CPU, or on the demo's Vulkan device.
struct Backend {
  VulkanDevice *device = nullptr;  // nullptr: the CPU
  const TrainerKernels *kernels = nullptr;
  const char *name() const { return device != nullptr ? "Vulkan" : "CPU"; }
};

// Trains `m` with Adam (FP32 or 8-bit state) on `on`; returns the
// training-loss curve (mean over each window of `every` steps) and adds the
// phase's speed to `report`.
std::vector<double> train(Model &m, const Corpus &c, const Options &o, int32_t state, const char *label, const Backend &on,
                          size_t *state_bytes, size_t *fp32_state_bytes, Report &report) {
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<VkTrainer> gpu;
  if (on.device != nullptr) gpu = std::make_unique<VkTrainer>(*on.device, *on.kernels, m, o.batch, TrainerMode{state});
  else opt = std::make_unique<Optimizer>(m, state);
  Rng rng(o.seed * 7919 + 17);
  Batch batch;
  std::vector<double> curve;
  double window = 0;
  const int every = std::max(1, o.steps / 25);
  auto t = Clock::now();
  for (int step = 0; step < o.steps; ++step) {
    fill_batch(c.train, rng, o.batch, batch);
    const float lr = learning_rate(step, o.steps, 3e-3f);
    if (gpu) {
      window += gpu->step(batch, lr).mean_loss;
    } else {
      window += forward(m, batch, nullptr) / o.batch;
      backward(m, batch, 1.0f);
      opt->step(lr, m, m);
    }
    if ((step + 1) % every == 0) {
      curve.push_back(window / every);
      std::fprintf(stderr, "\r  %-22s %-6s step %5d/%d  loss %.3f  (%.0f s)   ", label, on.name(), step + 1, o.steps,
                   window / every, seconds_since(t));
      window = 0;
    }
  }
  const double seconds = seconds_since(t);
  std::fprintf(stderr, "\n");
  if (gpu) {
    gpu->download(m);
    *state_bytes = gpu->state_bytes(fp32_state_bytes);
  } else {
    *state_bytes = opt->state_bytes(fp32_state_bytes);
  }
  report.speeds.push_back({label, on.name(), o.steps, o.steps / seconds, curve.back()});
  return curve;
}

// The importance of the hidden and output matrices' input columns (the
// error-minimising quantizers' weights), each repeated to whole rows covering
// whole super-blocks of 256 values, so that every 4-bit format takes it
// (nyxq_importance_values).
struct Importance {
  std::vector<float> w1, w2;
};

// The largest column importance over the smallest (positive) one.
double spread(const std::vector<float> &v) {
  float lo = 0, hi = 0;
  for (float x : v) {
    if (x > 0 && (lo == 0 || x < lo)) lo = x;
    hi = std::max(hi, x);
  }
  return lo > 0 ? hi / lo : 0.0;
}

// Σx² per column of each matrix's input over `batches` training batches of
// 64, run through `m` (ggml's imatrix, gathered with nyxq_importance_add).
Importance gather_importance(const Model &m, const Corpus &c, int batches) {
  NyxqImportance *inputs = nullptr, *hidden = nullptr;
  NYXQ(nyxq_importance_create(kInput, &inputs));
  NYXQ(nyxq_importance_create(m.hidden, &hidden));
  Rng rng(0x1a7a);
  Batch batch;
  for (int i = 0; i < batches; ++i) {
    fill_batch(c.train, rng, 64, batch);
    forward(m, batch, nullptr);
    NYXQ(nyxq_importance_add(inputs, batch.x.data(), batch.x.size(), batch.size));
    NYXQ(nyxq_importance_add(hidden, batch.h.data(), batch.h.size(), batch.size));
  }
  auto rows = [&](NyxqImportance *acc, size_t cols) {
    size_t len = cols;
    while (len % 256 != 0) len += cols;
    std::vector<float> values(len);
    NYXQ(nyxq_importance_values(acc, values.data(), values.size(), nullptr));
    return values;
  };
  Importance out{rows(inputs, kInput), rows(hidden, static_cast<size_t>(m.hidden))};
  nyxq_importance_destroy(inputs);
  nyxq_importance_destroy(hidden);
  return out;
}

// Replaces every weight matrix of `m` by its round trip through `format` and
// keeps the hidden and output matrices packed in `packed`. Returns the bytes
// the quantized model's weights take (biases stay FP32). With `importance`,
// the hidden and output matrices' errors are weighted by it (the embedding,
// a lookup table, has no input columns to weigh).
size_t quantize_model(NyxqContext *ctx, Model &m, int32_t format, int32_t rounding, Packed *packed,
                      const Importance *importance = nullptr) {
  size_t bytes = 0;
  packed->format = format;
  for (Param *p : m.params()) {
    if (!p->is_matrix) {
      bytes += p->size() * sizeof(float);
      continue;
    }
    NyxqQuantizeOptions q = {};
    q.struct_size = sizeof(q);
    q.rounding = rounding;
    const std::vector<float> *weights = !importance ? nullptr : p == &m.w1 ? &importance->w1
                                                              : p == &m.w2 ? &importance->w2
                                                                           : nullptr;
    if (weights) {
      q.importance = weights->data();
      q.importance_len = weights->size();
    }
    size_t packed_size = 0;
    NYXQ(nyxq_quantized_size(format, p->size(), &packed_size));
    std::vector<uint8_t> data(packed_size);
    NYXQ(nyxq_quantize(ctx, format, p->value.data(), p->size(), &q, data.data(), data.size()));
    NYXQ(nyxq_dequantize(ctx, format, data.data(), data.size(), p->value.data(), p->size()));
    bytes += packed_size;
    if (p == &m.w1) packed->w1 = std::move(data);
    if (p == &m.w2) packed->w2 = std::move(data);
  }
  return bytes;
}

// The FP32 model's matrices as they are, for evaluate_packed.
Packed pack_fp32(NyxqContext *ctx, const Model &m) {
  Model copy = m;
  Packed packed;
  quantize_model(ctx, copy, NYXQ_FORMAT_F32, NYXQ_ROUNDING_NEAREST, &packed);
  return packed;
}

// Quantization-aware fine-tuning: every step the weight matrices are
// fake-quantized by nyxq, the forward and backward passes run on them, and
// the gradients update the FP32 masters (straight-through estimator), with the
// loss scaler unscaling and checking every gradient buffer.
double qat(NyxqContext *ctx, Model &master, const Corpus &c, const Options &o, int32_t format, const char *label,
           const Backend &on, double *fake_quant_share, uint32_t *skipped, Report &report) {
  NyxqLossScaler *scaler = nullptr;
  NyxqLossScalerOptions so;
  NYXQ(nyxq_loss_scaler_options_default(&so));
  so.initial_scale = 1024.0f;
  so.growth_interval = 100;
  NYXQ(nyxq_loss_scaler_create(&so, &scaler));
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<VkTrainer> gpu;
  // F32's fake quantization is the identity: the device's forward pass
  // reads the masters themselves.
  if (on.device != nullptr)
    gpu = std::make_unique<VkTrainer>(*on.device, *on.kernels, master, o.batch,
                                      TrainerMode{NYXQ_ADAM_STATE_INT8, format != NYXQ_FORMAT_F32, format, scaler});
  else opt = std::make_unique<Optimizer>(master, NYXQ_ADAM_STATE_INT8);
  Model forward_model = master;
  Rng rng(o.seed * 104729 + 3);
  Batch batch;
  double fake_seconds = 0, total_seconds = 0, last_loss = 0;
  *skipped = 0;
  auto start = Clock::now();
  for (int step = 0; step < o.qat_steps; ++step) {
    const float lr = learning_rate(step, o.qat_steps, 1e-3f);
    if (gpu) {
      fill_batch(c.train, rng, o.batch, batch);
      const StepResult r = gpu->step(batch, lr);
      last_loss = r.mean_loss;
      if (!r.applied) ++*skipped;
      fake_seconds += r.fake_quant_seconds;
      total_seconds += r.step_seconds;
    } else {
      auto t0 = Clock::now();
      for (size_t i = 0; i < master.params().size(); ++i) {
        Param *src = master.params()[i], *dst = forward_model.params()[i];
        if (src->is_matrix)
          NYXQ(nyxq_fake_quantize(ctx, format, src->value.data(), src->size(), nullptr, dst->value.data(), dst->size()));
        else
          dst->value = src->value;
      }
      fake_seconds += seconds_since(t0);
      fill_batch(c.train, rng, o.batch, batch);
      last_loss = forward(forward_model, batch, nullptr) / o.batch;
      float scale = 1;
      NYXQ(nyxq_loss_scaler_scale(scaler, &scale));
      backward(forward_model, batch, scale);
      for (Param *p : forward_model.params()) {
        uint32_t found = 0;
        NYXQ(nyxq_loss_scaler_unscale_and_check(scaler, p->grad.data(), p->grad.size(), &found, nullptr));
      }
      uint32_t apply = 0;
      NYXQ(nyxq_loss_scaler_update(scaler, &apply));
      if (apply) opt->step(lr, master, forward_model);
      else ++*skipped;
      total_seconds += seconds_since(t0);
    }
    if ((step + 1) % 50 == 0)
      std::fprintf(stderr, "\r  %-22s %-6s step %5d/%d  loss %.3f   ", label, on.name(), step + 1, o.qat_steps, last_loss);
  }
  const double seconds = seconds_since(start);
  std::fprintf(stderr, "\n");
  if (gpu) gpu->download(master);
  gpu.reset();
  nyxq_loss_scaler_destroy(scaler);
  // On the device the share comes from timestamps; a queue without them
  // leaves it unmeasured (negative).
  *fake_quant_share = total_seconds > 0 && fake_seconds >= 0 ? fake_seconds / total_seconds : -1.0;
  report.speeds.push_back({label, on.name(), o.qat_steps, o.qat_steps / seconds, last_loss});
  return last_loss;
}

// Post-training quantization of the trained model at every level, then INT4
// quantization-aware fine-tuning beside an FP32 control; each a row of
// `report`.
void evaluate_levels(NyxqContext *ctx, const Corpus &corpus, const Options &o, const Backend &on, const Model &base,
                     const Model &fp32_model, const Model &int8_adam_model, Report &report) {
  size_t weights = 0;
  for (const Param *p : base.params()) weights += p->size();
  const Eval reference = evaluate_packed(ctx, fp32_model, pack_fp32(ctx, fp32_model), corpus.valid, o.eval_positions);
  report.int8_adam_valid_loss =
      evaluate_packed(ctx, int8_adam_model, pack_fp32(ctx, int8_adam_model), corpus.valid, o.eval_positions).loss;
  struct Level { const char *label; int32_t format; int32_t rounding; bool importance = false; };
  const Level levels[] = {
      {"FP32", NYXQ_FORMAT_F32, NYXQ_ROUNDING_NEAREST},        {"FP16", NYXQ_FORMAT_F16, NYXQ_ROUNDING_NEAREST},
      {"BF16", NYXQ_FORMAT_BF16, NYXQ_ROUNDING_NEAREST},       {"INT8 Q8_0", NYXQ_FORMAT_Q8_0, NYXQ_ROUNDING_NEAREST},
      {"INT4 Q4_0", NYXQ_FORMAT_Q4_0, NYXQ_ROUNDING_NEAREST},  {"INT4 Q4_1", NYXQ_FORMAT_Q4_1, NYXQ_ROUNDING_NEAREST},
      {"INT5 Q5_0", NYXQ_FORMAT_Q5_0, NYXQ_ROUNDING_NEAREST},  {"INT4 IQ4_NL", NYXQ_FORMAT_IQ4_NL, NYXQ_ROUNDING_NEAREST},
      {"INT4 Q4_K", NYXQ_FORMAT_Q4_K, NYXQ_ROUNDING_NEAREST},  {"INT5 Q5_K", NYXQ_FORMAT_Q5_K, NYXQ_ROUNDING_NEAREST},
      {"INT6 Q6_K", NYXQ_FORMAT_Q6_K, NYXQ_ROUNDING_NEAREST},
      {"INT4 Q4_0 err-min", NYXQ_FORMAT_Q4_0, NYXQ_ROUNDING_ERROR_MINIMISING},
      {"INT4 Q4_1 err-min", NYXQ_FORMAT_Q4_1, NYXQ_ROUNDING_ERROR_MINIMISING},
      {"INT4 IQ4_NL err-min", NYXQ_FORMAT_IQ4_NL, NYXQ_ROUNDING_ERROR_MINIMISING},
      {"INT4 Q4_K err-min", NYXQ_FORMAT_Q4_K, NYXQ_ROUNDING_ERROR_MINIMISING},
      // The same searches weighted by the importance of the activations.
      {"INT4 Q4_0 err-min+imp", NYXQ_FORMAT_Q4_0, NYXQ_ROUNDING_ERROR_MINIMISING, true},
      {"INT4 Q4_1 err-min+imp", NYXQ_FORMAT_Q4_1, NYXQ_ROUNDING_ERROR_MINIMISING, true},
      {"INT4 IQ4_NL err-min+imp", NYXQ_FORMAT_IQ4_NL, NYXQ_ROUNDING_ERROR_MINIMISING, true},
      {"INT4 Q4_K err-min+imp", NYXQ_FORMAT_Q4_K, NYXQ_ROUNDING_ERROR_MINIMISING, true},
  };
  const size_t fp32_bytes = weights * sizeof(float);
  // Calibration for the "+imp" rows: 16 training batches through the FP32 model.
  auto calibration_start = Clock::now();
  const Importance importance = gather_importance(fp32_model, corpus, 16);
  std::printf("importance from %d training positions in %.0f ms: largest over smallest column, %.1f (hidden layer's "
              "input), %.1f (output layer's input)\n",
              16 * 64, 1000 * seconds_since(calibration_start), spread(importance.w1), spread(importance.w2));
  for (const Level &level : levels) {
    Model q = fp32_model;
    auto t = Clock::now();
    Packed packed;
    const size_t bytes =
        quantize_model(ctx, q, level.format, level.rounding, &packed, level.importance ? &importance : nullptr);
    const double quantize_seconds = seconds_since(t);
    const Eval e = evaluate_packed(ctx, q, packed, corpus.valid, o.eval_positions);
    NyxqFormatInfo info;
    NYXQ(nyxq_format_info(level.format, &info));
    report.rows.push_back({level.label, "PTQ", info.bits_per_weight, bytes, fp32_bytes, e.loss, e.accuracy,
                           e.accuracy / reference.accuracy, quantize_seconds, e.seconds});
  }

  // QAT fine-tunes for more steps; to compare like with like, the FP32 model
  // gets the same fine-tuning (the F32 "fake quantization" is the identity),
  // and the QAT row's preservation is measured against that.
  double fake_share = 0, control_share = 0;
  uint32_t skipped = 0, control_skipped = 0;
  Model qat_model = fp32_model, control = fp32_model;
  qat(ctx, control, corpus, o, NYXQ_FORMAT_F32, "FP32 fine-tuning", on, &control_share, &control_skipped, report);
  qat(ctx, qat_model, corpus, o, NYXQ_FORMAT_Q4_0, "INT4 QAT fine-tuning", on, &fake_share, &skipped, report);
  const Eval control_eval = evaluate_packed(ctx, control, pack_fp32(ctx, control), corpus.valid, o.eval_positions);
  report.rows.push_back({"FP32 fine-tuned (QAT control)", "QAT", 32.0, fp32_bytes, fp32_bytes, control_eval.loss,
                         control_eval.accuracy, control_eval.accuracy / reference.accuracy, 0.0, control_eval.seconds});
  {
    Model q = qat_model;
    auto t = Clock::now();
    Packed packed;
    const size_t bytes = quantize_model(ctx, q, NYXQ_FORMAT_Q4_0, NYXQ_ROUNDING_NEAREST, &packed);
    const double quantize_seconds = seconds_since(t);
    const Eval e = evaluate_packed(ctx, q, packed, corpus.valid, o.eval_positions);
    report.rows.push_back({"INT4 Q4_0 after QAT", "QAT", 4.5, bytes, fp32_bytes, e.loss, e.accuracy,
                           e.accuracy / control_eval.accuracy, quantize_seconds, e.seconds});
  }
  report.fake_quant_share = fake_share;
  report.qat_skipped_steps = skipped;
}

}  // namespace

int main(int argc, char **argv) {
  const Options o = parse(argc, argv);
  if (nyxq_abi_version() != NYXQ_ABI_VERSION) {
    std::fprintf(stderr, "nyxq_demo: library ABI %u, header %u\n", nyxq_abi_version(), NYXQ_ABI_VERSION);
    return 1;
  }
  auto start = Clock::now();
  mkdir(o.out.c_str(), 0755);
  const Corpus corpus = load_corpus(o.corpus);
  std::printf("nyxq %s demo: character model (context %d, embed %d, hidden %d, vocab %d) on %zu bytes of the Jargon File\n",
              nyxq_version_string(), kContext, kEmbed, o.hidden, kVocab, corpus.train.size() + corpus.valid.size());

  // The trainer's own Vulkan device, which nyxq borrows: --device vulkan
  // insists on it, --device auto trains on the CPU when there is no GPU.
  std::unique_ptr<VulkanDevice> device;
  std::unique_ptr<TrainerKernels> kernels;
  if (o.validate && !VulkanDevice::has_layer("VK_LAYER_KHRONOS_validation")) {
    std::fprintf(stderr, "nyxq_demo: --validate: the Vulkan validation layer (VK_LAYER_KHRONOS_validation) is not installed\n");
    return 1;
  }
  if (o.device != "cpu") {
    device = std::make_unique<VulkanDevice>();
    std::string why;
    if (!device->open(o.validate, &why)) {
      if (o.device == "vulkan") {
        std::fprintf(stderr, "nyxq_demo: no Vulkan device: %s\n", why.c_str());
        return 1;
      }
      std::printf("no Vulkan device: %s; training on the CPU\n", why.c_str());
      device.reset();
    } else if (o.device == "auto" && device->is_cpu()) {
      std::printf("the only Vulkan device is a CPU implementation (%s), slower than the CPU trainer: training on the CPU "
                  "(--device vulkan trains on it)\n",
                  device->properties().deviceName);
      device.reset();
    } else {
      kernels = std::make_unique<TrainerKernels>(*device);
      std::printf("training on %s through Vulkan (the demo's device, borrowed by nyxq)%s\n", device->properties().deviceName,
                  o.validate ? ", with the validation layer" : "");
    }
  }
  const Backend on{device.get(), kernels.get()};
  NyxqContext *ctx = nullptr;
  NYXQ(nyxq_context_create(nullptr, &ctx));

  Model base;
  base.init(o.seed, o.hidden);
  size_t weights = 0;
  for (Param *p : base.params()) weights += p->size();
  std::printf("%zu parameters; %d steps of batch %d with Adam, seed %llu\n\n", weights, o.steps, o.batch,
              static_cast<unsigned long long>(o.seed));

  Report report;
  Model fp32_model = base, int8_adam_model = base;
  size_t state32 = 0, state32_ref = 0, state8 = 0, state8_ref = 0;
  report.curve_fp32 =
      train(fp32_model, corpus, o, NYXQ_ADAM_STATE_FP32, "Adam, FP32 state", on, &state32, &state32_ref, report);
  report.adam_state_fp32_bytes = state32;
  if (device) {
    // The same phase on the CPU: same seed, same batches, losses compared.
    Model cpu_model = base;
    size_t bytes = 0, fp32_bytes = 0;
    report.cpu_reference_loss =
        train(cpu_model, corpus, o, NYXQ_ADAM_STATE_FP32, "Adam, FP32 state", Backend{}, &bytes, &fp32_bytes, report).back();
    report.device_loss = report.curve_fp32.back();
  }
  if (!o.train_only) {
    report.curve_int8 = train(int8_adam_model, corpus, o, NYXQ_ADAM_STATE_INT8, "Adam, 8-bit state", on, &state8,
                              &state8_ref, report);
    report.adam_state_int8_bytes = state8;
    evaluate_levels(ctx, corpus, o, on, base, fp32_model, int8_adam_model, report);
  }
  report.seconds = seconds_since(start);
  nyxq_context_destroy(ctx);
  int validation_messages = 0;
  if (device) {
    device->close();  // the layer reports leaks at vkDestroyDevice
    validation_messages = device->validation_messages();
  }

  report.print(stdout);
  const std::string json = o.out + "/report.json", svg = o.out + "/preservation.svg";
  report.write_json(json);
  if (!o.train_only) report.write_svg(svg);
  std::printf("\nwrote %s%s (%.0f s in all)\n", json.c_str(), o.train_only ? "" : (" and " + svg).c_str(), report.seconds);

  const std::vector<std::string> failures = report.missed_targets();
  for (const std::string &f : failures) std::printf("TARGET MISSED: %s\n", f.c_str());
  if (o.validate) {
    std::printf("validation layer: %d error and warning messages\n", validation_messages);
    if (validation_messages > 0) return 1;
  }
  if (!report.device_matches_cpu()) return 1;
  if ((o.quick || o.train_only) && !failures.empty()) return 1;
  return 0;
}

