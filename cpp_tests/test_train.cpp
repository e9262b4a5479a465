// Tests of the training helpers through the C ABI: the loss scaler, Adam with
// FP32 and 8-bit state, fake quantization and stochastic rounding as a
// training loop uses them, and every bad input.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "support.hpp"

using nyxq_test::AdamPtr;
using nyxq_test::ContextPtr;
using nyxq_test::cpu_context;
using nyxq_test::ScalerPtr;

namespace {

ScalerPtr make_scaler(uint32_t growth_interval = 2000, float initial = 65536.0f, float floor = 1.0f) {
  NyxqLossScalerOptions o;
  nyxq_loss_scaler_options_default(&o);
  o.growth_interval = growth_interval;
  o.initial_scale = initial;
  o.min_scale = floor;
  NyxqLossScaler *s = nullptr;
  EXPECT_EQ(nyxq_loss_scaler_create(&o, &s), NYXQ_OK) << nyxq_last_error_message();
  return ScalerPtr(s);
}

float scale_of(NyxqLossScaler *s) {
  float v = 0;
  EXPECT_EQ(nyxq_loss_scaler_scale(s, &v), NYXQ_OK);
  return v;
}

// Runs one step whose gradient is finite or not; returns whether to apply it.
uint32_t step(NyxqLossScaler *s, bool overflow) {
  std::vector<float> g(16, 1.0f);
  if (overflow) g[3] = std::numeric_limits<float>::infinity();
  uint32_t found = 0, apply = 7;
  EXPECT_EQ(nyxq_loss_scaler_unscale_and_check(s, g.data(), g.size(), &found, nullptr), NYXQ_OK);
  EXPECT_EQ(found, overflow ? 1u : 0u);
  EXPECT_EQ(nyxq_loss_scaler_update(s, &apply), NYXQ_OK) << nyxq_last_error_message();
  return apply;
}

}  // namespace

TEST(LossScaler, DefaultsAreGradScalers) {
  NyxqLossScalerOptions o;
  CHECK_OK(nyxq_loss_scaler_options_default(&o));
  EXPECT_EQ(o.initial_scale, 65536.0f);
  EXPECT_EQ(o.growth_factor, 2.0f);
  EXPECT_EQ(o.backoff_factor, 0.5f);
  EXPECT_EQ(o.growth_interval, 2000u);
  EXPECT_EQ(o.min_scale, 1.0f);
  ScalerPtr s = make_scaler();
  EXPECT_EQ(scale_of(s.get()), 65536.0f);
  for (int i = 0; i < 1999; ++i) ASSERT_EQ(step(s.get(), false), 1u);
  EXPECT_EQ(scale_of(s.get()), 65536.0f);
  EXPECT_EQ(step(s.get(), false), 1u);
  EXPECT_EQ(scale_of(s.get()), 131072.0f);
}

TEST(LossScaler, GrowthBackoffSkipAndFloor) {
  ScalerPtr s = make_scaler(3, 4.0f, 1.0f);
  EXPECT_EQ(step(s.get(), false), 1u);
  EXPECT_EQ(step(s.get(), false), 1u);
  EXPECT_EQ(step(s.get(), false), 1u);
  EXPECT_EQ(scale_of(s.get()), 8.0f);  // grew after 3 finite steps
  EXPECT_EQ(step(s.get(), true), 0u);  // skipped
  EXPECT_EQ(scale_of(s.get()), 4.0f);  // backed off
  EXPECT_EQ(step(s.get(), false), 1u);
  EXPECT_EQ(step(s.get(), true), 0u);
  EXPECT_EQ(step(s.get(), true), 0u);
  EXPECT_EQ(scale_of(s.get()), 1.0f);  // at the floor
  std::vector<float> g(4, std::nanf(""));
  uint32_t found = 0, apply = 7;
  CHECK_OK(nyxq_loss_scaler_unscale_and_check(s.get(), g.data(), g.size(), &found, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_LOSS_SCALE_UNDERFLOW, nyxq_loss_scaler_update(s.get(), &apply));
  EXPECT_EQ(apply, 7u);  // untouched on error: the step is skipped
  EXPECT_EQ(scale_of(s.get()), 1.0f);
  EXPECT_EQ(step(s.get(), false), 1u);  // and it recovers on the next finite step
}

TEST(LossScaler, UnscaleFindsInfAndNanAnywhere) {
  const size_t n = 1001;
  for (size_t where : {size_t{0}, n / 2, n - 1}) {
    for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), std::nanf("")}) {
      ScalerPtr s = make_scaler(2000, 8.0f);
      std::vector<float> g(n, 2.0f);
      g[where] = bad;
      uint32_t found = 0;
      int64_t first = -2;
      CHECK_OK(nyxq_loss_scaler_unscale_and_check(s.get(), g.data(), n, &found, &first));
      EXPECT_EQ(found, 1u);
      EXPECT_EQ(first, static_cast<int64_t>(where));
      EXPECT_EQ(g[where == 0 ? 1 : 0], 0.25f);  // the finite ones are unscaled
      uint32_t apply = 7;
      CHECK_OK(nyxq_loss_scaler_update(s.get(), &apply));
      EXPECT_EQ(apply, 0u);
    }
  }
  ScalerPtr s = make_scaler(2000, 8.0f);
  std::vector<float> g(n, 2.0f);
  uint32_t found = 9;
  int64_t first = -2;
  CHECK_OK(nyxq_loss_scaler_unscale_and_check(s.get(), g.data(), n, &found, &first));
  EXPECT_EQ(found, 0u);
  EXPECT_EQ(first, -1);
}

TEST(LossScaler, DisabledForBf16OnlyChecks) {
  NyxqLossScalerOptions o;
  nyxq_loss_scaler_options_default(&o);
  o.enabled = 0;
  NyxqLossScaler *raw = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(&o, &raw));
  ScalerPtr s(raw);
  EXPECT_EQ(scale_of(s.get()), 1.0f);
  std::vector<float> g = {3.0f, -1.0f};
  uint32_t found = 0;
  CHECK_OK(nyxq_loss_scaler_unscale_and_check(s.get(), g.data(), g.size(), &found, nullptr));
  EXPECT_EQ(g[0], 3.0f);
  EXPECT_EQ(found, 0u);
}

TEST(LossScaler, BadInputs) {
  NyxqLossScaler *s = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_create(nullptr, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_options_default(nullptr));
  NyxqLossScalerOptions o;
  auto reject = [&](void (*change)(NyxqLossScalerOptions &)) {
    nyxq_loss_scaler_options_default(&o);
    change(o);
    EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_loss_scaler_create(&o, &s));
  };
  reject([](NyxqLossScalerOptions &x) { x.struct_size = 3; });
  reject([](NyxqLossScalerOptions &x) { x.initial_scale = 0.5f; });
  reject([](NyxqLossScalerOptions &x) { x.growth_factor = 1.0f; });
  reject([](NyxqLossScalerOptions &x) { x.backoff_factor = 1.5f; });
  reject([](NyxqLossScalerOptions &x) { x.growth_interval = 0; });
  reject([](NyxqLossScalerOptions &x) { x.min_scale = std::nanf(""); });
  reject([](NyxqLossScalerOptions &x) { x.enabled = 2; });
  EXPECT_EQ(s, nullptr);

  ScalerPtr live = make_scaler();
  std::vector<float> g(8, 1.0f);
  uint32_t found = 0;
  float scale = 0;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_unscale_and_check(live.get(), nullptr, 8, &found, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_unscale_and_check(live.get(), g.data(), 8, nullptr, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_loss_scaler_unscale_and_check(live.get(), g.data(), std::numeric_limits<size_t>::max(), &found, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_scale(live.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_update(live.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_scale(nullptr, &scale));

  NyxqLossScaler *dead = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(nullptr, &dead));
  CHECK_OK(nyxq_loss_scaler_destroy(dead));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_scale(dead, &scale));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_destroy(dead));
  CHECK_OK(nyxq_loss_scaler_destroy(nullptr));
  // A handle of another kind is not a scaler.
  ContextPtr ctx = cpu_context();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_scale(reinterpret_cast<NyxqLossScaler *>(ctx.get()), &scale));
}

namespace {

// Minimises Σ c_i (p_i − t_i)² from p = 0 with Adam in the given state format.
std::vector<float> fit_quadratic(int32_t state, int steps) {
  const size_t n = 8192;
  std::vector<float> p(n, 0.0f), g(n), t(n), c(n);
  for (size_t i = 0; i < n; ++i) t[i] = std::cos(0.01f * i), c[i] = 0.5f + (i % 5);
  NyxqAdamOptions o;
  nyxq_adam_options_default(&o);
  o.state = state;
  NyxqAdam *raw = nullptr;
  EXPECT_EQ(nyxq_adam_create(&o, n, &raw), NYXQ_OK);
  AdamPtr adam(raw);
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < n; ++i) g[i] = 2 * c[i] * (p[i] - t[i]);
    EXPECT_EQ(nyxq_adam_step(adam.get(), 0.01f, p.data(), n, g.data(), n), NYXQ_OK);
  }
  return p;
}

}  // namespace

TEST(Adam, EightBitStateTracksFp32OnAQuadratic) {
  std::vector<float> fp32 = fit_quadratic(NYXQ_ADAM_STATE_FP32, 400);
  std::vector<float> int8 = fit_quadratic(NYXQ_ADAM_STATE_INT8, 400);
  double max_gap = 0, max_error = 0;
  for (size_t i = 0; i < fp32.size(); ++i) {
    max_gap = std::max(max_gap, static_cast<double>(std::fabs(fp32[i] - int8[i])));
    max_error = std::max(max_error, static_cast<double>(std::fabs(int8[i] - std::cos(0.01f * i))));
  }
  EXPECT_LT(max_gap, 0.05);
  EXPECT_LT(max_error, 0.1);
}

TEST(Adam, StateBytesAndSmallTensors) {
  NyxqAdamOptions o;
  CHECK_OK(nyxq_adam_options_default(&o));
  o.state = NYXQ_ADAM_STATE_INT8;
  NyxqAdam *raw = nullptr;
  CHECK_OK(nyxq_adam_create(&o, 1 << 20, &raw));
  AdamPtr big(raw);
  size_t held = 0, fp32 = 0;
  CHECK_OK(nyxq_adam_state_bytes(big.get(), &held, &fp32));
  EXPECT_EQ(fp32, 8u << 20);
  EXPECT_LE(static_cast<double>(held), 0.26 * fp32);
  CHECK_OK(nyxq_adam_create(&o, 4095, &raw));
  AdamPtr small(raw);
  CHECK_OK(nyxq_adam_state_bytes(small.get(), &held, &fp32));
  EXPECT_EQ(held, fp32);  // under 4096 elements the state stays FP32
}

TEST(Adam, BadInputsChangeNothing) {
  NyxqAdamOptions o;
  nyxq_adam_options_default(&o);
  NyxqAdam *a = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_create(&o, 16, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_options_default(nullptr));
  o.state = 5;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_create(&o, 16, &a));
  nyxq_adam_options_default(&o);
  o.beta1 = 1.0f;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_create(&o, 16, &a));
  nyxq_adam_options_default(&o);
  o.eps = 0.0f;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_create(&o, 16, &a));
  nyxq_adam_options_default(&o);
  o.weight_decay = -1.0f;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_create(&o, 16, &a));
  nyxq_adam_options_default(&o);
  o.struct_size = 1;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_create(&o, 16, &a));
  EXPECT_EQ(a, nullptr);

  CHECK_OK(nyxq_adam_create(nullptr, 16, &a));
  AdamPtr adam(a);
  std::vector<float> p(16, 1.0f), g(16, 0.5f);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_step(adam.get(), 0.1f, p.data(), 15, g.data(), 15));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_step(adam.get(), 0.1f, p.data(), 16, g.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_step(adam.get(), std::nanf(""), p.data(), 16, g.data(), 16));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_step(adam.get(), -1.0f, p.data(), 16, g.data(), 16));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_step(adam.get(), 0.1f, nullptr, 16, g.data(), 16));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_step(adam.get(), 0.1f, p.data(), 16, nullptr, 16));
  for (float v : p) EXPECT_EQ(v, 1.0f);
  size_t held = 0;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_state_bytes(adam.get(), &held, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_state_bytes(adam.get(), nullptr, &held));

  NyxqAdam *dead = nullptr;
  CHECK_OK(nyxq_adam_create(nullptr, 16, &dead));
  CHECK_OK(nyxq_adam_destroy(dead));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_adam_step(dead, 0.1f, p.data(), 16, g.data(), 16));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_adam_destroy(dead));
  CHECK_OK(nyxq_adam_destroy(nullptr));
}

namespace {

// A loop of the training helpers: a scaler deciding each step (step 3
// overflows) and Adam applying the steps it allows.
struct HostRun {
  HostRun(int32_t state, size_t n) : params(n) {
    scaler = make_scaler(2);
    NyxqAdamOptions o;
    nyxq_adam_options_default(&o);
    o.state = state;
    o.weight_decay = 0.01f;
    NyxqAdam *a = nullptr;
    EXPECT_EQ(nyxq_adam_create(&o, n, &a), NYXQ_OK) << nyxq_last_error_message();
    adam.reset(a);
    for (size_t i = 0; i < n; ++i) params[i] = static_cast<float>(i % 17) * 0.1f - 0.8f;
  }

  void step(int k) {
    const float scale = scale_of(scaler.get());
    std::vector<float> g(params.size());
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] = (static_cast<float>((i * 7919 + k * 104729) % 2001) - 1000.0f) * 1e-3f * scale;
    }
    if (k == 3) g[5] = std::numeric_limits<float>::infinity();
    uint32_t found = 0, apply = 0;
    CHECK_OK(nyxq_loss_scaler_unscale_and_check(scaler.get(), g.data(), g.size(), &found, nullptr));
    CHECK_OK(nyxq_loss_scaler_update(scaler.get(), &apply));
    if (apply) CHECK_OK(nyxq_adam_step(adam.get(), 0.01f / k, params.data(), params.size(), g.data(), g.size()));
  }

  ScalerPtr scaler;
  AdamPtr adam;
  std::vector<float> params;
};

std::vector<uint8_t> scaler_bytes(NyxqLossScaler *s) {
  size_t size = 0;
  EXPECT_EQ(nyxq_loss_scaler_save_size(s, &size), NYXQ_OK);
  std::vector<uint8_t> bytes(size);
  EXPECT_EQ(nyxq_loss_scaler_save(s, bytes.data(), bytes.size()), NYXQ_OK) << nyxq_last_error_message();
  return bytes;
}

std::vector<uint8_t> adam_bytes(NyxqAdam *a) {
  size_t size = 0;
  EXPECT_EQ(nyxq_adam_save_size(a, &size), NYXQ_OK);
  std::vector<uint8_t> bytes(size);
  EXPECT_EQ(nyxq_adam_save(a, bytes.data(), bytes.size()), NYXQ_OK) << nyxq_last_error_message();
  return bytes;
}

}  // namespace

// N steps equal k steps, save, destroy, new objects, load and N - k steps,
// bit for bit, for both state formats and with the checkpoint taken before
// and after a skipped step.
TEST(Checkpoint, ARestoredRunContinuesBitForBit) {
  for (int32_t state : {NYXQ_ADAM_STATE_FP32, NYXQ_ADAM_STATE_INT8}) {
    const size_t n = state == NYXQ_ADAM_STATE_FP32 ? 37 : 4096 + 300;
    HostRun whole(state, n);
    for (int k = 1; k <= 8; ++k) whole.step(k);
    for (int saved_after : {2, 3}) {
      HostRun first(state, n);
      for (int k = 1; k <= saved_after; ++k) first.step(k);
      const std::vector<uint8_t> scaler = scaler_bytes(first.scaler.get());
      const std::vector<uint8_t> adam = adam_bytes(first.adam.get());
      EXPECT_EQ(scaler.size(), 68u);
      HostRun second(state, n);
      second.params = first.params;
      first.scaler.reset();
      first.adam.reset();
      CHECK_OK(nyxq_loss_scaler_load(second.scaler.get(), scaler.data(), scaler.size()));
      CHECK_OK(nyxq_adam_load(second.adam.get(), adam.data(), adam.size()));
      for (int k = saved_after + 1; k <= 8; ++k) second.step(k);
      EXPECT_EQ(std::memcmp(second.params.data(), whole.params.data(), n * sizeof(float)), 0)
          << "state " << state << ", saved after step " << saved_after;
      EXPECT_EQ(adam_bytes(second.adam.get()), adam_bytes(whole.adam.get()));
      EXPECT_EQ(scaler_bytes(second.scaler.get()), scaler_bytes(whole.scaler.get()));
    }
  }
}

// What is wrong with a checkpoint is the error; nothing changes.
TEST(Checkpoint, DamagedOrForeignBytesAreRefusedAndChangeNothing) {
  ScalerPtr scaler = make_scaler();
  const std::vector<uint8_t> good = scaler_bytes(scaler.get());
  auto refused = [&](std::vector<uint8_t> bytes, const char *needle) {
    EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_loss_scaler_load(scaler.get(), bytes.data(), bytes.size()));
    EXPECT_NE(std::string(nyxq_last_error_message()).find(needle), std::string::npos) << nyxq_last_error_message();
    EXPECT_EQ(scaler_bytes(scaler.get()), good);
  };
  refused(std::vector<uint8_t>(good.begin(), good.begin() + 40), "truncated");
  refused(std::vector<uint8_t>(good.begin(), good.begin() + 10), "truncated");
  std::vector<uint8_t> bytes = good;
  bytes[8] = 9;
  refused(bytes, "version 9");
  bytes = good;
  bytes[0] = 'Z';
  refused(bytes, "NYXQSTAT");
  bytes = good;
  bytes[50] ^= 0x10;
  refused(bytes, "checksum");
  ScalerPtr other = make_scaler(100);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_loss_scaler_load(other.get(), good.data(), good.size()));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("growth_interval"), std::string::npos);

  NyxqAdam *raw = nullptr;
  CHECK_OK(nyxq_adam_create(nullptr, 16, &raw));
  AdamPtr adam(raw);
  const std::vector<uint8_t> adam_good = adam_bytes(adam.get());
  EXPECT_EQ(adam_good.size(), 68u + 8 * 16);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_load(adam.get(), good.data(), good.size()));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("loss scaler"), std::string::npos);
  CHECK_OK(nyxq_adam_create(nullptr, 17, &raw));
  AdamPtr longer(raw);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_load(longer.get(), adam_good.data(), adam_good.size()));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("parameter count"), std::string::npos);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_loss_scaler_load(scaler.get(), adam_good.data(), adam_good.size()));

  // Buffers, sizes and handles.
  std::vector<uint8_t> small(10);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_loss_scaler_save(scaler.get(), small.data(), small.size()));
  EXPECT_EQ(nyxq_last_error_needed_len(), 68u);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_adam_save(adam.get(), small.data(), small.size()));
  EXPECT_EQ(nyxq_last_error_needed_len(), adam_good.size());
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_adam_save(adam.get(), nullptr, 0));
  size_t size = 0;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_save_size(scaler.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_save_size(adam.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_save(scaler.get(), nullptr, 68));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_save(adam.get(), nullptr, 200));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_load(scaler.get(), nullptr, 68));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_adam_load(adam.get(), nullptr, 196));
  NyxqLossScaler *dead_scaler = nyxq_test::destroyed(make_scaler());
  NyxqAdam *dead_adam = nyxq_test::destroyed(std::move(longer));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_save_size(dead_scaler, &size));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_save(dead_scaler, small.data(), small.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_load(dead_scaler, good.data(), good.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_adam_save_size(dead_adam, &size));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_adam_save(dead_adam, small.data(), small.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_adam_load(dead_adam, adam_good.data(), adam_good.size()));
  EXPECT_EQ(adam_bytes(adam.get()), adam_good);
}

TEST(FakeQuant, StochasticFakeQuantEqualsStochasticQuantizeThenDequantize) {
  ContextPtr ctx = cpu_context();
  const size_t n = 4096;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = std::sin(0.05f * i) * 0.3f;
  NyxqQuantizeOptions o = {};
  o.struct_size = sizeof(o);
  o.rounding = NYXQ_ROUNDING_STOCHASTIC;
  o.seed = 77;
  for (int32_t format : {NYXQ_FORMAT_Q4_0, NYXQ_FORMAT_Q8_0, NYXQ_FORMAT_BF16}) {
    size_t bytes = 0;
    CHECK_OK(nyxq_quantized_size(format, n, &bytes));
    std::vector<unsigned char> q(bytes);
    std::vector<float> via(n), fused(n);
    CHECK_OK(nyxq_quantize(ctx.get(), format, x.data(), n, &o, q.data(), q.size()));
    CHECK_OK(nyxq_dequantize(ctx.get(), format, q.data(), q.size(), via.data(), n));
    CHECK_OK(nyxq_fake_quantize(ctx.get(), format, x.data(), n, &o, fused.data(), n));
    EXPECT_EQ(0, std::memcmp(via.data(), fused.data(), n * sizeof(float))) << format;
  }
}

TEST(StochasticRounding, MasterWeightsToBf16AndF16AreUnbiased) {
  ContextPtr ctx = cpu_context();
  const size_t n = 512;
  const int rounds = 400;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = 1.0f + static_cast<float>(i) / 700.0f;
  for (int32_t format : {NYXQ_FORMAT_BF16, NYXQ_FORMAT_F16}) {
    // One ulp in [1, 2): 2^-7 for bfloat16's 7 stored mantissa bits, 2^-10 for binary16's 10.
    const double step = format == NYXQ_FORMAT_BF16 ? 1.0 / 128 : 1.0 / 1024;
    std::vector<double> mean(n, 0.0);
    std::vector<float> y(n);
    NyxqQuantizeOptions o = {};
    o.struct_size = sizeof(o);
    o.rounding = NYXQ_ROUNDING_STOCHASTIC;
    for (int r = 0; r < rounds; ++r) {
      o.seed = 1000 + r;
      CHECK_OK(nyxq_fake_quantize(ctx.get(), format, x.data(), n, &o, y.data(), n));
      for (size_t i = 0; i < n; ++i) mean[i] += y[i] / rounds;
    }
    double worst = 0;
    for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(mean[i] - x[i]));
    // Each rounding errs by less than one ulp; the mean of 400 by about
    // ulp/(2·20); allow 6 standard deviations.
    EXPECT_LT(worst, 6 * step / (2 * std::sqrt(static_cast<double>(rounds)))) << format;
    // Nearest rounding is biased by up to half an ulp here.
  }
}
