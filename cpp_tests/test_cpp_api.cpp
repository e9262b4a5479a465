// Tests of the C++ API (include/nyxq.hpp): every wrapper's success and error
// paths, in both forms (the exception carries the status, message, needed
// length and index; the try_ form returns the same), owners that are empty
// after a move and destroy their handle exactly once, and the Span views.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "nyxq.hpp"
#include "support.hpp"

namespace {

using nyxq::Format;
using nyxq_test::sine;

// Runs `call`, which must throw nyxq::Error with `status`, and returns the error.
template <class F>
nyxq::Error expect_error(NyxqStatus status, F &&call) {
  try {
    call();
  } catch (const nyxq::Error &e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_FALSE(e.message().empty());
    EXPECT_EQ(std::string(e.what()), std::string(nyxq_status_str(status)) + ": " + e.message());
    return e;
  }
  ADD_FAILURE() << "no nyxq::Error thrown";
  return nyxq::Error(NYXQ_OK, "");
}

nyxq::Context cpu() { return nyxq::Context::create(nyxq::ContextOptions().backend(nyxq::Backend::Cpu)); }

// A handle is live exactly when a call on it does not report INVALID_HANDLE.
bool live(NyxqContext *ctx) {
  NyxqContextInfo info;
  return nyxq_context_info(ctx, &info) != NYXQ_ERROR_INVALID_HANDLE;
}
bool live(NyxqTensor *t) {
  NyxqTensorInfo info;
  return nyxq_tensor_info(t, &info) != NYXQ_ERROR_INVALID_HANDLE;
}

nyxq::Model small_model() {
  nyxq::Model model = nyxq::Model::create("small");
  model.add_tensor("embed", nyxq::Role::Embedding, {4096, 256});
  model.add_tensor("attn", nyxq::Role::Attention, {768, 256});
  model.add_tensor("mlp", nyxq::Role::Mlp, {2048, 256}, 2.0);
  model.add_tensor("norm", nyxq::Role::Norm, {256});
  model.add_tensor("lm_head", nyxq::Role::Output, {4096, 256});
  return model;
}

static_assert(!std::is_copy_constructible<nyxq::Context>::value, "owners are move-only");
static_assert(!std::is_copy_assignable<nyxq::Tensor>::value, "owners are move-only");
static_assert(std::is_nothrow_move_constructible<nyxq::Plan>::value, "owners move without throwing");
static_assert(std::is_base_of<std::runtime_error, nyxq::Error>::value, "Error is a runtime_error");
static_assert(nyxq::to_c(Format::Q4_0) == NYXQ_FORMAT_Q4_0, "enum values are the C values");
static_assert(nyxq::to_c(nyxq::Role::Bias) == NYXQ_ROLE_BIAS, "enum values are the C values");
static_assert(nyxq::from_c<nyxq::Placement>(NYXQ_PLACEMENT_HOST) == nyxq::Placement::Host, "from_c");
static_assert(nyxq::format_bit(Format::Q8_0) == (1u << NYXQ_FORMAT_Q8_0), "format_bit");

TEST(CppApi, VersionAndStatusText) {
  EXPECT_EQ(nyxq::abi_version(), static_cast<uint32_t>(NYXQ_ABI_VERSION));
  EXPECT_STREQ(nyxq::version_string(), nyxq_version_string());
  EXPECT_STREQ(nyxq::status_str(NYXQ_ERROR_INVALID_ARGUMENT), nyxq_status_str(NYXQ_ERROR_INVALID_ARGUMENT));
}

TEST(CppApi, SpanViewsContainersArraysAndLists) {
  std::vector<float> v(5);
  nyxq::Span<float> from_vector = v;
  EXPECT_EQ(from_vector.data(), v.data());
  EXPECT_EQ(from_vector.size(), 5u);
  EXPECT_EQ(from_vector.size_bytes(), 20u);
  std::array<float, 3> a{};
  nyxq::Span<const float> from_array = a;
  EXPECT_EQ(from_array.size(), 3u);
  float c[7] = {};
  nyxq::Span<float> from_c_array = c;
  EXPECT_EQ(from_c_array.size(), 7u);
  nyxq::Span<const float> from_span = from_vector;
  EXPECT_EQ(from_span.data(), v.data());
  nyxq::Span<const uint8_t> from_pointer(nullptr, 0);
  EXPECT_TRUE(from_pointer.empty());
  nyxq::Span<const float> empty;
  EXPECT_EQ(empty.data(), nullptr);
  auto sum = [](nyxq::Span<const uint64_t> s) {
    uint64_t total = 0;
    for (uint64_t x : s) total += x;
    return total;
  };
  EXPECT_EQ(sum({1, 2, 3}), 6u);  // a braced list lives until the call returns
  static_assert(!std::is_constructible<nyxq::Span<float>, const std::vector<float> &>::value,
                "no mutable view of a const container");
  static_assert(!std::is_constructible<nyxq::Span<uint8_t>, std::vector<float> &>::value,
                "no view of another element type");
}

TEST(CppApi, FormatInfoAndSizes) {
  const nyxq::FormatInfo info = nyxq::format_info(Format::Q4_0);
  EXPECT_STREQ(info.name, "Q4_0");
  EXPECT_EQ(info.block_size, 32u);
  EXPECT_EQ(info.block_bytes, 18u);
  EXPECT_EQ(nyxq::quantized_size(Format::Q4_0, 64), 36u);
  EXPECT_EQ(nyxq::device_range_size(Format::Q4_0, 32), 20u);

  nyxq::Error e = expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [] { (void)nyxq::quantized_size(Format::Q4_0, 33); });
  EXPECT_NE(e.message().find("64"), std::string::npos) << e.message();  // the next valid count
  nyxq::Result<size_t> r = nyxq::try_quantized_size(Format::Q4_0, 33);
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.status(), NYXQ_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(r.message(), e.message());
  EXPECT_EQ(r.error().status(), NYXQ_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::move(r).value_or(7), 7u);
  EXPECT_THROW((void)nyxq::try_device_range_size(Format::Q8_0, 3).value(), nyxq::Error);

  nyxq::Result<nyxq::FormatInfo> bad = nyxq::try_format_info(static_cast<Format>(99));
  EXPECT_EQ(bad.status(), NYXQ_ERROR_INVALID_ARGUMENT);
  nyxq::Result<size_t> good = nyxq::try_quantized_size(Format::F16, 3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.value(), 6u);
  EXPECT_TRUE(good.message().empty());
  EXPECT_EQ(good.needed_len(), 0u);
  EXPECT_EQ(good.index(), -1);
}

TEST(CppApi, ContextCreationAndInfo) {
  nyxq::Context ctx = nyxq::Context::create(nyxq::Backend::Cpu);
  ASSERT_TRUE(ctx);
  const nyxq::ContextInfo info = ctx.info();
  EXPECT_EQ(info.backend, NYXQ_BACKEND_CPU);
  EXPECT_STREQ(info.backend_name, "cpu");
  nyxq::Context threaded = nyxq::Context::create(nyxq::ContextOptions().backend(nyxq::Backend::Cpu).thread_count(2));
  EXPECT_EQ(threaded.info().thread_count, 2u);
  EXPECT_EQ(ctx.try_device_info().status(), NYXQ_ERROR_UNSUPPORTED);
  expect_error(NYXQ_ERROR_UNSUPPORTED, [&] { (void)ctx.device_info(); });
  EXPECT_EQ(ctx.report().str().rfind("backend cpu", 0), 0u);
  EXPECT_EQ(nyxq::Context().try_report().status(), NYXQ_ERROR_NULL_POINTER);
  const nyxq::Hardware hw = ctx.detect_hardware();
  EXPECT_EQ(hw.cpu_only, 1);
  EXPECT_GT(hw.device_local_bytes, 0u);
  const nyxq::MemoryStatus memory = ctx.memory_status();
  EXPECT_EQ(memory.struct_size, sizeof memory);
  EXPECT_EQ(memory.source, NYXQ_MEMORY_SOURCE_HOST);
  EXPECT_GT(memory.available_bytes, 0u);

  nyxq::ContextOptions bad;
  bad.raw().backend = 42;
  nyxq::Result<nyxq::Context> r = nyxq::Context::try_create(bad);
  EXPECT_EQ(r.status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { (void)nyxq::Context::create(bad); });
  nyxq::Error e = expect_error(NYXQ_ERROR_IO, [] {
    (void)nyxq::Context::create(nyxq::ContextOptions().backend(nyxq::Backend::Cpu).config_path("/nonexistent/x.ini"));
  });
  EXPECT_NE(e.message().find("/nonexistent/x.ini"), std::string::npos) << e.message();
}

TEST(CppApi, ContextCarriesItsConfig) {
  const std::string path = std::string(NYXQ_SOURCE_DIR) + "/tests/fixtures/nyx_trainer_quantization.ini";
  nyxq::Context ctx =
      nyxq::Context::create(nyxq::ContextOptions().backend(nyxq::Backend::Cpu).config_path(path));
  const nyxq::PlanPolicy policy = ctx.plan_policy(true);
  EXPECT_EQ(policy.raw().allowed_formats, nyxq::format_bit(Format::F32));  // quantization is off there
  EXPECT_EQ(policy.raw().training, 1);
  EXPECT_EQ(nyxq::Context().try_plan_policy(false).status(), NYXQ_ERROR_NULL_POINTER);
}

TEST(CppApi, OptionSettersFillTheCStructs) {
  NyxqContextOptions c_defaults;
  ASSERT_EQ(nyxq_context_options_default(&c_defaults), NYXQ_OK);
  const NyxqContextOptions defaults = nyxq::ContextOptions().c();
  EXPECT_EQ(defaults.struct_size, sizeof(NyxqContextOptions));
  EXPECT_EQ(defaults.backend, c_defaults.backend);
  EXPECT_EQ(defaults.config_path, nullptr);
  const nyxq::ContextOptions set = nyxq::ContextOptions()
                                       .backend(nyxq::Backend::Vulkan)
                                       .log_level(nyxq::LogLevel::Warn)
                                       .thread_count(3)
                                       .config_path("a.ini")
                                       .vulkan_loader_path("libvk.so")
                                       .vulkan_validation(true)
                                       .vulkan_force_compat(true)
                                       .vulkan_host_fallback(true)
                                       .vulkan_fail_allocation(5);
  const NyxqContextOptions c = set.c();
  EXPECT_EQ(c.backend, NYXQ_BACKEND_VULKAN);
  EXPECT_EQ(c.log_level, NYXQ_LOG_WARN);
  EXPECT_EQ(c.thread_count, 3u);
  EXPECT_STREQ(c.config_path, "a.ini");
  EXPECT_STREQ(c.vulkan_loader_path, "libvk.so");
  EXPECT_EQ(c.vulkan_validation, 1u);
  EXPECT_EQ(c.vulkan_force_compat, 1u);
  EXPECT_EQ(c.vulkan_host_fallback, 1u);
  EXPECT_EQ(c.vulkan_fail_allocation, 5u);

  NyxqPlanPolicy c_policy;
  ASSERT_EQ(nyxq_plan_policy_default(&c_policy), NYXQ_OK);
  const nyxq::PlanPolicy policy = nyxq::PlanPolicy()
                                      .allowed_formats(nyxq::format_bit(Format::F32) | nyxq::format_bit(Format::Q8_0))
                                      .optimizer_state(nyxq::OptimizerState::Blockwise8)
                                      .gradient_format(Format::BF16)
                                      .default_format(Format::Q8_0)
                                      .overrides("x=F16");
  const NyxqPlanPolicy p = policy.c();
  EXPECT_EQ(p.struct_size, c_policy.struct_size);
  EXPECT_EQ(p.min_snr_db, c_policy.min_snr_db);
  EXPECT_EQ(p.allowed_formats, (1u << NYXQ_FORMAT_F32) | (1u << NYXQ_FORMAT_Q8_0));
  EXPECT_EQ(p.optimizer_state, NYXQ_OPTIMIZER_BLOCKWISE8);
  EXPECT_EQ(p.gradient_format, NYXQ_FORMAT_BF16);
  EXPECT_EQ(p.default_format, NYXQ_FORMAT_Q8_0);
  EXPECT_STREQ(p.overrides, "x=F16");
  const nyxq::PlanPolicy copied(p);  // from a C struct: the overrides string is copied
  EXPECT_STREQ(copied.c().overrides, "x=F16");
  EXPECT_EQ(nyxq::PlanPolicy().c().overrides, nullptr);

  const nyxq::LossScalerOptions scaler;
  EXPECT_EQ(scaler.c()->initial_scale, 65536.0f);
  const nyxq::AdamOptions adam;
  EXPECT_EQ(adam.c()->beta2, 0.999f);
  const nyxq::QuantizeOptions quantize;
  EXPECT_EQ(quantize.c()->struct_size, sizeof(NyxqQuantizeOptions));
}

TEST(CppApi, OwnersMoveAndDestroyExactlyOnce) {
  nyxq::Context a = cpu();
  NyxqContext *raw = a.get();
  ASSERT_NE(raw, nullptr);
  nyxq::Context b = std::move(a);
  EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from owners are empty
  EXPECT_FALSE(a);
  EXPECT_EQ(b.get(), raw);
  EXPECT_TRUE(live(raw));

  nyxq::Context c = cpu();
  NyxqContext *replaced = c.get();
  c = std::move(b);  // destroys c's own context, takes b's
  EXPECT_FALSE(live(replaced));
  EXPECT_EQ(c.get(), raw);
  EXPECT_EQ(b.get(), nullptr);  // NOLINT(bugprone-use-after-move)
  c = std::move(c);             // self-move keeps the handle
  EXPECT_EQ(c.get(), raw);

  // release() hands the handle over untouched: the caller destroys it once.
  NyxqContext *released = c.release();
  EXPECT_EQ(c.get(), nullptr);
  EXPECT_TRUE(live(released));
  EXPECT_EQ(nyxq_context_destroy(released), NYXQ_OK);
  EXPECT_EQ(nyxq_context_destroy(released), NYXQ_ERROR_INVALID_HANDLE);  // destroyed once already

  // The destructor destroys; reset() takes a new handle.
  NyxqTensor *tensor_raw = nullptr;
  {
    nyxq::Context ctx = cpu();
    nyxq::Tensor t = ctx.create_tensor("t", {32}, Format::Q8_0);
    tensor_raw = t.get();
    EXPECT_TRUE(live(tensor_raw));
    nyxq::Tensor moved(std::move(t));
    EXPECT_FALSE(t);  // NOLINT(bugprone-use-after-move)
  }
  EXPECT_FALSE(live(tensor_raw));

  nyxq::Context owner;
  EXPECT_FALSE(owner);
  owner.reset(cpu().release());
  NyxqContext *first = owner.get();
  owner.reset();
  EXPECT_FALSE(live(first));
  EXPECT_EQ(owner.get(), nullptr);

  // A moved-from owner reports NULL like the C call does.
  EXPECT_EQ(owner.try_info().status(), NYXQ_ERROR_NULL_POINTER);
  expect_error(NYXQ_ERROR_NULL_POINTER, [&] { (void)owner.info(); });
}

TEST(CppApi, QuantizeDequantizeAndError) {
  nyxq::Context ctx = cpu();
  const std::vector<float> weights = sine(256, 0.01f);
  std::vector<uint8_t> packed(nyxq::quantized_size(Format::Q4_0, weights.size()));
  ctx.quantize(Format::Q4_0, weights, packed);
  std::vector<float> back(weights.size());
  ctx.dequantize(Format::Q4_0, packed, back);
  const nyxq::ErrorMetrics m = nyxq::quant_error(Format::Q4_0, weights, packed);
  EXPECT_GT(m.snr_db, 15.0);
  EXPECT_GT(m.cosine, 0.99);
  for (size_t i = 0; i < weights.size(); ++i) EXPECT_NEAR(back[i], weights[i], 0.1);
  EXPECT_EQ(nyxq::try_quant_error(Format::Q4_0, weights, nyxq::Span<const uint8_t>(packed.data(), 18)).status(),
            NYXQ_ERROR_INVALID_ARGUMENT);

  // Pointer + size and C arrays work too.
  float block[32];
  for (float &x : block) x = 0.5f;
  uint8_t q8[34];
  ctx.quantize(Format::Q8_0, nyxq::Span<const float>(block, 32), q8);

  // Too small a buffer: the needed length travels with the error; nothing written.
  std::vector<uint8_t> small(10, 0xAB);
  nyxq::Error e = expect_error(NYXQ_ERROR_BUFFER_TOO_SMALL, [&] { ctx.quantize(Format::Q4_0, weights, small); });
  EXPECT_EQ(e.needed_len(), packed.size());
  EXPECT_EQ(e.index(), -1);
  nyxq::Status s = ctx.try_quantize(Format::Q4_0, weights, small);
  EXPECT_EQ(s.status(), NYXQ_ERROR_BUFFER_TOO_SMALL);
  EXPECT_EQ(s.needed_len(), packed.size());
  EXPECT_EQ(s.message(), e.message());
  EXPECT_EQ(small, std::vector<uint8_t>(10, 0xAB));
  std::vector<float> short_out(10);
  EXPECT_EQ(ctx.try_dequantize(Format::Q4_0, packed, short_out).needed_len(), weights.size());

  // A NaN: the index travels with the error; Saturate accepts it.
  std::vector<float> with_nan = weights;
  with_nan[77] = std::nanf("");
  e = expect_error(NYXQ_ERROR_NON_FINITE, [&] { ctx.quantize(Format::Q4_0, with_nan, packed); });
  EXPECT_EQ(e.index(), 77);
  EXPECT_EQ(e.needed_len(), 0u);
  EXPECT_EQ(ctx.try_quantize(Format::Q4_0, with_nan, packed).index(), 77);
  ctx.quantize(Format::Q4_0, with_nan, packed, nyxq::QuantizeOptions().non_finite(nyxq::NonFinite::Saturate));
}

TEST(CppApi, QuantizeOptions) {
  nyxq::Context ctx = cpu();
  const std::vector<float> weights = sine(1024, 0.01f);
  std::vector<uint8_t> a(nyxq::quantized_size(Format::Q4_0, weights.size())), b(a.size());
  const auto stochastic = nyxq::QuantizeOptions().rounding(nyxq::Rounding::Stochastic).seed(11);
  ctx.quantize(Format::Q4_0, weights, a, stochastic);
  ctx.quantize(Format::Q4_0, weights, b, nyxq::QuantizeOptions().rounding(nyxq::Rounding::Stochastic).seed(11));
  EXPECT_EQ(a, b);  // same seed, same bytes
  ctx.quantize(Format::Q4_0, weights, b, nyxq::QuantizeOptions().rounding(nyxq::Rounding::Stochastic).seed(12));
  EXPECT_NE(a, b);
  // A slice rounds as it does inside the whole tensor.
  std::vector<uint8_t> tail(a.size() / 2);
  ctx.quantize(Format::Q4_0, nyxq::Span<const float>(weights.data() + 512, 512), tail,
               nyxq::QuantizeOptions().rounding(nyxq::Rounding::Stochastic).seed(11).first_index(512));
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), a.begin() + static_cast<std::ptrdiff_t>(a.size() / 2)));

  const std::vector<float> importance(32, 1.0f);
  ctx.quantize(Format::Q4_0, weights, b,
               nyxq::QuantizeOptions().rounding(nyxq::Rounding::ErrorMinimising).importance(importance));
  const std::vector<float> bad_importance(5, 1.0f);
  EXPECT_EQ(ctx.try_quantize(Format::Q4_0, weights, b,
                             nyxq::QuantizeOptions().rounding(nyxq::Rounding::ErrorMinimising).importance(bad_importance))
                .status(),
            NYXQ_ERROR_INVALID_ARGUMENT);
  nyxq::QuantizeOptions unknown;
  unknown.raw().rounding = 9;
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { ctx.quantize(Format::Q4_0, weights, b, unknown); });
}

TEST(CppApi, FakeQuantizeInPlace) {
  nyxq::Context ctx = cpu();
  std::vector<float> w = sine(128, 0.01f);
  std::vector<float> expected(w.size());
  ctx.fake_quantize(Format::Q8_0, w, expected);
  ctx.fake_quantize(Format::Q8_0, w, w);  // in place
  EXPECT_EQ(w, expected);
  std::vector<float> small(3);
  EXPECT_EQ(ctx.try_fake_quantize(Format::Q8_0, w, small).needed_len(), w.size());
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { ctx.fake_quantize(Format::Q8_0, nyxq::Span<const float>(w.data(), 31), w); });
}

TEST(CppApi, Matvec) {
  nyxq::Context ctx = cpu();
  const uint64_t rows = 4, cols = 64;
  std::vector<float> w(rows * cols, 0.0f);
  for (uint64_t r = 0; r < rows; ++r) w[r * cols + r] = 1.0f;  // the first rows of the identity
  std::vector<uint8_t> wq(nyxq::quantized_size(Format::F32, w.size()));
  ctx.quantize(Format::F32, w, wq);
  const std::vector<float> x = sine(cols, 0.3f);
  const std::vector<float> bias{1, 2, 3, 4};
  std::vector<float> y(rows);
  ctx.matvec(Format::F32, wq, rows, cols, x, 1, bias, y);
  for (uint64_t r = 0; r < rows; ++r) EXPECT_FLOAT_EQ(y[r], x[r] + bias[r]);
  ctx.matvec(Format::F32, wq, rows, cols, x, 1, {}, y);  // no bias
  EXPECT_FLOAT_EQ(y[1], x[1]);
  std::vector<float> yt(cols);
  ctx.matvec_transposed(Format::F32, wq, rows, cols, bias, 1, yt);
  EXPECT_FLOAT_EQ(yt[2], 3.0f);
  EXPECT_FLOAT_EQ(yt[10], 0.0f);

  std::vector<float> y_small(2);
  EXPECT_EQ(ctx.try_matvec(Format::F32, wq, rows, cols, x, 1, {}, y_small).needed_len(), rows);
  nyxq::Error e = expect_error(NYXQ_ERROR_BUFFER_TOO_SMALL,
                               [&] { ctx.matvec_transposed(Format::F32, wq, rows, cols, bias, 1, y_small); });
  EXPECT_EQ(e.needed_len(), cols);
  EXPECT_EQ(ctx.try_matvec_transposed(Format::F32, wq, rows, cols, bias, 9, yt).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { ctx.matvec(Format::F32, wq, rows, cols, x, 0, {}, y); });
}

TEST(CppApi, Tensors) {
  nyxq::Context ctx = cpu();
  const std::vector<uint64_t> shape{4, 64};
  nyxq::Tensor t = ctx.create_tensor("layer.w", shape, Format::Q8_0);
  const nyxq::TensorInfo info = t.info();
  EXPECT_STREQ(info.name, "layer.w");
  EXPECT_EQ(nyxq::from_c<Format>(info.format), Format::Q8_0);
  EXPECT_EQ(info.rank, 2u);
  EXPECT_EQ(info.numel, 256u);
  EXPECT_EQ(t.placement(), nyxq::Placement::Host);

  const std::vector<float> values = sine(256, 0.01f);
  t.upload(values);
  std::vector<float> back(256);
  t.download(back);
  for (size_t i = 0; i < back.size(); ++i) EXPECT_NEAR(back[i], values[i], 0.01);
  const nyxq::Span<const uint8_t> bytes = t.data();
  EXPECT_EQ(bytes.size(), info.byte_len);
  std::vector<uint8_t> direct(bytes.size());
  ctx.quantize(Format::Q8_0, values, direct);
  EXPECT_TRUE(std::equal(direct.begin(), direct.end(), bytes.begin()));

  nyxq::Tensor t4 = t.convert(Format::Q4_0);
  EXPECT_EQ(nyxq::from_c<Format>(t4.info().format), Format::Q4_0);
  t.migrate(nyxq::Placement::Host);  // already there: nothing to do

  // Errors in both forms.
  EXPECT_EQ(t.try_upload(nyxq::Span<const float>(values.data(), 10)).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  std::vector<float> with_inf = values;
  with_inf[200] = INFINITY;
  EXPECT_EQ(expect_error(NYXQ_ERROR_NON_FINITE, [&] { t.upload(with_inf); }).index(), 200);
  std::vector<float> small(3);
  EXPECT_EQ(expect_error(NYXQ_ERROR_BUFFER_TOO_SMALL, [&] { t.download(small); }).needed_len(), 256u);
  EXPECT_EQ(t.try_download(small).needed_len(), 256u);
  EXPECT_EQ(t.try_vk_buffer(0).status(), NYXQ_ERROR_UNSUPPORTED);
  expect_error(NYXQ_ERROR_UNSUPPORTED, [&] { (void)t.vk_buffer(0); });
  EXPECT_EQ(ctx.try_create_tensor_in("d", shape, Format::Q8_0, nyxq::Placement::Device).status(),
            NYXQ_ERROR_UNSUPPORTED);
  nyxq::Tensor host = ctx.create_tensor_in("h", {32}, Format::F16, nyxq::Placement::Host);
  EXPECT_EQ(host.placement(), nyxq::Placement::Host);
  EXPECT_EQ(host.try_migrate(nyxq::Placement::Device).status(), NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(ctx.try_create_tensor("bad", {4, 33}, Format::Q8_0).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { (void)ctx.create_tensor("bad", {}, Format::Q8_0); });
  EXPECT_EQ(t.try_convert(static_cast<Format>(77)).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  nyxq::Tensor empty;
  EXPECT_EQ(empty.try_data().status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(empty.try_placement().status(), NYXQ_ERROR_NULL_POINTER);
}

TEST(CppApi, GgufFiles) {
  nyxq::Context ctx = cpu();
  nyxq::Tensor w = ctx.create_tensor("blk.0.ffn_up.weight", {2, 256}, Format::Q4_K);
  w.upload(sine(512, 0.01f));
  nyxq::Tensor norm = ctx.create_tensor("blk.0.norm.weight", {256}, Format::F32);
  norm.upload(sine(256, 0.02f));
  const std::string path = ::testing::TempDir() + "cpp_api.gguf";
  nyxq::write_gguf(path, {&w, &norm}, {{"nyxq.plan", "{}"}});
  nyxq::Gguf file = nyxq::Gguf::read(ctx, path);
  ASSERT_EQ(file.tensor_count(), 2u);
  nyxq::Tensor back = file.tensor(0);
  EXPECT_STREQ(back.info().name, "blk.0.ffn_up.weight");
  const nyxq::Span<const uint8_t> a = w.data(), b = back.data();
  EXPECT_TRUE(a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin()));
  EXPECT_EQ(file.metadata("nyxq.plan"), std::optional<std::string>("{}"));
  EXPECT_EQ(file.metadata("general.name"), std::nullopt);
  std::remove(path.c_str());

  // Errors in both forms.
  EXPECT_EQ(file.try_tensor(2).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { (void)file.tensor(2); });
  EXPECT_EQ(nyxq::try_write_gguf(path, {&w, &w}).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_IO, [&] { nyxq::write_gguf("/nonexistent-dir/x.gguf", {&w}); });
  EXPECT_EQ(nyxq::Gguf::try_read(ctx, path).status(), NYXQ_ERROR_IO);
  const std::vector<uint8_t> garbage{'G', 'G', 'U', 'X'};
  EXPECT_EQ(nyxq::Gguf::try_parse(ctx, garbage).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { (void)nyxq::Gguf::parse(ctx, garbage); });
  nyxq::Gguf empty;
  EXPECT_EQ(empty.try_tensor_count().status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(empty.try_metadata("k").status(), NYXQ_ERROR_NULL_POINTER);
}

TEST(CppApi, ConfigPolicyAndWarnings) {
  const std::string text =
      "[quantization]\nenabled = true\nprecision_level = INT4\nattention_precision = INT8\n"
      "quantized_training_enabled = true\n";
  nyxq::Config cfg = nyxq::Config::parse(text, "inline.ini");
  const nyxq::PlanPolicy policy = cfg.policy(true);
  EXPECT_EQ(policy.raw().role_formats[NYXQ_ROLE_ATTENTION], NYXQ_FORMAT_Q8_0);
  EXPECT_EQ(policy.raw().optimizer_state, NYXQ_OPTIMIZER_BLOCKWISE8);
  EXPECT_EQ(cfg.warnings().str(), "");

  nyxq::Config quiet_off = nyxq::Config::parse("[quantization]\nenabled = false\n", "off.ini");
  const nyxq::String warnings = quiet_off.warnings();
  EXPECT_NE(warnings.view().find("off.ini:2:"), std::string_view::npos) << warnings.c_str();
  EXPECT_EQ(quiet_off.try_warnings().value().str(), warnings.str());

  const std::string bad = "[quantization]\nenabled = true\nprecision_level = INT8\nmlp_precision = INT4\n";
  nyxq::Error e = expect_error(NYXQ_ERROR_CONFIG, [&] { (void)nyxq::Config::parse(bad, "bad.ini"); });
  EXPECT_NE(e.message().find("bad.ini:4:"), std::string::npos) << e.message();
  nyxq::Result<nyxq::Config> r = nyxq::Config::try_parse(bad, "bad.ini");
  EXPECT_EQ(r.status(), NYXQ_ERROR_CONFIG);
  EXPECT_EQ(r.message(), e.message());

  const std::string path = std::string(NYXQ_SOURCE_DIR) + "/tests/fixtures/nyx_trainer_quantization.ini";
  nyxq::Config trainer = nyxq::Config::load(path);
  EXPECT_FALSE(trainer.warnings().str().empty());
  EXPECT_EQ(nyxq::Config::try_load("/nonexistent.ini").status(), NYXQ_ERROR_IO);
  expect_error(NYXQ_ERROR_IO, [] { (void)nyxq::Config::load("/nonexistent.ini"); });
  nyxq::Config none;
  EXPECT_EQ(none.try_policy(false).status(), NYXQ_ERROR_NULL_POINTER);
}

TEST(CppApi, HardwareProfiles) {
  const size_t count = nyxq::hardware_profile_count();
  ASSERT_GT(count, 0u);
  EXPECT_EQ(nyxq::try_hardware_profile_count().value(), count);
  const nyxq::Hardware first = nyxq::hardware_profile_at(0);
  EXPECT_EQ(std::string(nyxq::hardware_profile(first.name).name), first.name);
  EXPECT_EQ(nyxq::try_hardware_profile_at(count).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [] { (void)nyxq::hardware_profile("no-such-gpu"); });
  EXPECT_EQ(nyxq::try_hardware_load("/nonexistent.json").status(), NYXQ_ERROR_IO);
  expect_error(NYXQ_ERROR_IO, [] { (void)nyxq::hardware_load("/nonexistent.json"); });
}

TEST(CppApi, ModelsAndPlans) {
  nyxq::Model model = small_model();
  const nyxq::Hardware h200 = nyxq::hardware_profile("nvidia-h200-141gb");
  nyxq::Plan plan = nyxq::Plan::create(model, h200, nyxq::PlanPolicy().min_snr_db(15));
  const nyxq::PlanSummary summary = plan.summary();
  EXPECT_EQ(summary.tensor_count, 5u);
  const std::vector<nyxq::PlanEntry> entries = plan.entries();
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_STREQ(entries[3].name, "norm");
  EXPECT_EQ(nyxq::from_c<Format>(entries[3].format), Format::F32);
  EXPECT_NE(plan.explain().view().find("lm_head"), std::string_view::npos);
  EXPECT_EQ(plan.to_json().view().substr(0, 1), "{");
  EXPECT_EQ(nyxq::Plan::create(model).summary().tensor_count, 5u);  // host memory
  EXPECT_TRUE(nyxq::Plan::feasibility(model, h200).feasible);
  EXPECT_TRUE(nyxq::Plan::try_feasibility(model).value().feasible);

  // Overrides, role formats and a replan into a smaller budget.
  nyxq::Plan forced = nyxq::Plan::create(
      model, h200, nyxq::PlanPolicy().overrides("^mlp$=Q4_0").role_format(nyxq::Role::Attention, Format::Q8_0));
  const std::vector<nyxq::PlanEntry> forced_entries = forced.entries();
  EXPECT_EQ(nyxq::from_c<Format>(forced_entries[2].format), Format::Q4_0);
  EXPECT_EQ(nyxq::from_c<Format>(forced_entries[1].format), Format::Q8_0);
  nyxq::Plan smaller = plan.replan(summary.device_bytes / 2);
  EXPECT_LE(smaller.summary().device_bytes, summary.device_bytes / 2);
  EXPECT_EQ(plan.try_replan(16).status(), NYXQ_ERROR_INFEASIBLE_PLAN);
  expect_error(NYXQ_ERROR_INFEASIBLE_PLAN, [&] { (void)plan.replan(16); });

  // An infeasible plan: the message has the shortfall; feasibility reports it as a result.
  nyxq::Hardware tiny = h200;
  tiny.device_local_bytes = 1 << 20;
  tiny.device_budget_bytes = 0;
  tiny.host_bytes = 0;
  const nyxq::PlanPolicy training = nyxq::PlanPolicy().training(true);
  nyxq::Error e = expect_error(NYXQ_ERROR_INFEASIBLE_PLAN, [&] { (void)nyxq::Plan::create(model, tiny, training); });
  EXPECT_EQ(nyxq::Plan::try_create(model, tiny, training).message(), e.message());
  const nyxq::PlanFeasibility f = nyxq::Plan::feasibility(model, tiny, training);
  EXPECT_EQ(f.feasible, 0);
  EXPECT_GT(f.shortfall_bytes, 0u);
  EXPECT_EQ(nyxq::Plan::try_create(model, h200, nyxq::PlanPolicy().overrides("(=Q4_0")).status(),
            NYXQ_ERROR_INVALID_ARGUMENT);

  // Model errors.
  EXPECT_EQ(model.try_add_tensor("embed", nyxq::Role::Mlp, {32}).status(), NYXQ_ERROR_INVALID_ARGUMENT);  // duplicate
  std::vector<float> data = sine(64, 0.01f);
  model.add_tensor("measured", nyxq::Role::Mlp, {2, 32}, -1.0, data);
  data[5] = NAN;
  EXPECT_EQ(expect_error(NYXQ_ERROR_NON_FINITE, [&] { model.add_tensor("nan", nyxq::Role::Mlp, {2, 32}, -1.0, data); })
                .index(),
            5);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { model.add_tensor("x", static_cast<nyxq::Role>(50), {32}); });
  EXPECT_EQ(nyxq::Model::try_load("/nonexistent.json").status(), NYXQ_ERROR_IO);
  expect_error(NYXQ_ERROR_IO, [] { (void)nyxq::Model::load("/nonexistent.json"); });
  EXPECT_EQ(nyxq::Model::try_create("m").status(), NYXQ_OK);
  nyxq::Plan none;
  EXPECT_EQ(none.try_entries().status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(none.try_explain().status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(none.try_to_json().status(), NYXQ_ERROR_NULL_POINTER);
}

TEST(CppApi, StringsAreReleasedOnce) {
  nyxq::Plan plan = nyxq::Plan::create(small_model(), nyxq::hardware_profile("nvidia-h200-141gb"));
  nyxq::String text = plan.explain();
  char *raw = text.release();
  EXPECT_EQ(text.c_str(), std::string(""));  // an empty owner reads as ""
  EXPECT_EQ(nyxq_string_destroy(raw), NYXQ_OK);
  EXPECT_EQ(nyxq_string_destroy(raw), NYXQ_ERROR_INVALID_ARGUMENT);  // already released
  nyxq::String json = plan.to_json();
  nyxq::String moved = std::move(json);
  EXPECT_EQ(json.get(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_FALSE(moved.str().empty());
}

TEST(CppApi, LossScaler) {
  nyxq::LossScaler scaler = nyxq::LossScaler::create(nyxq::LossScalerOptions().initial_scale(4).growth_interval(1));
  EXPECT_EQ(scaler.scale(), 4.0f);
  std::vector<float> grads{4, 8, -12, 16};
  nyxq::UnscaleCheck check = scaler.unscale_and_check(grads);
  EXPECT_FALSE(check.found_non_finite);
  EXPECT_EQ(check.first_bad_index, -1);
  EXPECT_EQ(grads, (std::vector<float>{1, 2, -3, 4}));
  EXPECT_TRUE(scaler.update());
  EXPECT_EQ(scaler.scale(), 8.0f);  // grew after one finite step

  grads[2] = INFINITY;
  check = scaler.try_unscale_and_check(grads).value();
  EXPECT_TRUE(check.found_non_finite);
  EXPECT_EQ(check.first_bad_index, 2);
  EXPECT_FALSE(scaler.update());
  EXPECT_EQ(scaler.scale(), 4.0f);
  scaler.report_non_finite(true);
  EXPECT_FALSE(scaler.try_update().value());

  nyxq::LossScaler floor = nyxq::LossScaler::create(nyxq::LossScalerOptions().initial_scale(1).min_scale(1));
  floor.report_non_finite(true);
  EXPECT_EQ(floor.try_update().status(), NYXQ_ERROR_LOSS_SCALE_UNDERFLOW);
  floor.report_non_finite(true);
  expect_error(NYXQ_ERROR_LOSS_SCALE_UNDERFLOW, [&] { (void)floor.update(); });

  EXPECT_EQ(nyxq::LossScaler::try_create(nyxq::LossScalerOptions().growth_factor(0.5f)).status(),
            NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT,
               [] { (void)nyxq::LossScaler::create(nyxq::LossScalerOptions().backoff_factor(2.0f)); });
  nyxq::LossScaler check_only = nyxq::LossScaler::create(nyxq::LossScalerOptions().enabled(false));
  EXPECT_EQ(check_only.scale(), 1.0f);
  nyxq::LossScaler none;
  EXPECT_EQ(none.try_scale().status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(none.try_report_non_finite(false).status(), NYXQ_ERROR_NULL_POINTER);
}

TEST(CppApi, Adam) {
  const size_t n = 8192;
  nyxq::Adam adam = nyxq::Adam::create(n, nyxq::AdamOptions().state(nyxq::AdamState::Int8).weight_decay(0.01f));
  std::vector<float> params(n, 1.0f), grads(n, 0.5f);
  adam.step(0.1f, params, grads);
  EXPECT_LT(params[0], 1.0f);
  const nyxq::AdamStateBytes bytes = adam.state_bytes();
  EXPECT_EQ(bytes.fp32_bytes, 8 * n);
  EXPECT_LT(bytes.bytes, bytes.fp32_bytes / 3);

  const std::vector<float> before = params;
  EXPECT_EQ(adam.try_step(0.1f, params, nyxq::Span<const float>(grads.data(), 5)).status(),
            NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { adam.step(-1.0f, params, grads); });
  EXPECT_EQ(params, before);  // nothing updated on error
  EXPECT_EQ(nyxq::Adam::try_create(n, nyxq::AdamOptions().beta1(1.5f)).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [] { (void)nyxq::Adam::create(4, nyxq::AdamOptions().eps(0)); });
  nyxq::Adam fp32 = nyxq::Adam::create(16, nyxq::AdamOptions().beta2(0.99f));
  EXPECT_EQ(fp32.state_bytes().bytes, 16u * 8u);
  nyxq::Adam none;
  EXPECT_EQ(none.try_state_bytes().status(), NYXQ_ERROR_NULL_POINTER);
}

TEST(CppApi, CheckpointsSaveAndLoad) {
  const size_t n = 8192;
  const nyxq::AdamOptions options = nyxq::AdamOptions().state(nyxq::AdamState::Int8);
  nyxq::Adam adam = nyxq::Adam::create(n, options);
  std::vector<float> params(n, 1.0f), grads(n, 0.5f);
  adam.step(0.1f, params, grads);
  const std::vector<uint8_t> bytes = adam.save();
  nyxq::Adam restored = nyxq::Adam::create(n, options);
  restored.load(bytes);
  EXPECT_EQ(restored.save(), bytes);
  std::vector<float> again = params;
  adam.step(0.1f, params, grads);
  restored.step(0.1f, again, grads);
  EXPECT_EQ(params, again);
  nyxq::Adam other = nyxq::Adam::create(n);
  EXPECT_EQ(other.try_load(bytes).status(), NYXQ_ERROR_INVALID_ARGUMENT);
  expect_error(NYXQ_ERROR_INVALID_ARGUMENT, [&] { other.load(nyxq::Span<const uint8_t>(bytes.data(), 40)); });

  nyxq::LossScaler scaler = nyxq::LossScaler::create(nyxq::LossScalerOptions().growth_interval(1));
  (void)scaler.update();
  const std::vector<uint8_t> scaler_bytes = scaler.save();
  EXPECT_EQ(scaler_bytes.size(), 68u);
  nyxq::LossScaler back = nyxq::LossScaler::create(nyxq::LossScalerOptions().growth_interval(1));
  back.load(scaler_bytes);
  EXPECT_EQ(back.scale(), scaler.scale());
  EXPECT_EQ(nyxq::LossScaler().try_save().status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(nyxq::LossScaler::create().try_load(scaler_bytes).status(), NYXQ_ERROR_INVALID_ARGUMENT);
}

TEST(CppApi, RecordingCallsOnACpuContextReportUnsupported) {
  nyxq::Context ctx = cpu();
  nyxq::LossScaler scaler = nyxq::LossScaler::create();
  // Distinct (never dereferenced) buffers, so that no range overlaps another.
  const nyxq::VkBufferRange range{reinterpret_cast<void *>(0x10), 0, 256};
  const nyxq::VkBufferRange other{reinterpret_cast<void *>(0x30), 0, 256};
  const nyxq::VkBufferRange third{reinterpret_cast<void *>(0x50), 0, 256};
  void *cmd = reinterpret_cast<void *>(0x20);
  EXPECT_EQ(ctx.try_vk_cmd_quantize(cmd, Format::Q8_0, 32, range, other).status(), NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(ctx.try_vk_cmd_dequantize(cmd, Format::Q8_0, 32, range, other).status(), NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(ctx.try_vk_cmd_fake_quantize(cmd, Format::Q8_0, 32, range, other).status(), NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(ctx.try_vk_cmd_unscale_and_check(scaler, cmd, range, 32, other).status(), NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(ctx.try_vk_cmd_matvec(cmd, Format::F32, 1, 32, 1, range, other, nullptr, third).status(),
            NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(ctx.try_vk_cmd_matvec_transposed(cmd, Format::F32, 1, 32, 1, range, other, third).status(),
            NYXQ_ERROR_UNSUPPORTED);
  nyxq::VkAdam adam;
  EXPECT_EQ(ctx.try_vk_cmd_adam_step(adam, cmd, 0.1f, range, other, 32, &third).status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(nyxq::VkAdam::try_create(ctx, 32).status(), NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(adam.try_save().status(), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(ctx.try_vk_release(1).status(), NYXQ_ERROR_UNSUPPORTED);
  EXPECT_EQ(ctx.try_vk_recorder_usage().status(), NYXQ_ERROR_UNSUPPORTED);
  expect_error(NYXQ_ERROR_UNSUPPORTED, [&] { (void)ctx.vk_cmd_quantize(cmd, Format::Q8_0, 32, range, other); });
  expect_error(NYXQ_ERROR_UNSUPPORTED, [&] { ctx.vk_release(1); });
  int semaphore = 0;  // never read: a CPU context refuses first
  EXPECT_EQ(ctx.try_vk_release_when(1, &semaphore, 1).status(), NYXQ_ERROR_UNSUPPORTED);
  expect_error(NYXQ_ERROR_UNSUPPORTED, [&] { ctx.vk_release_when(1, &semaphore, 1); });
  expect_error(NYXQ_ERROR_UNSUPPORTED, [&] { (void)ctx.vk_recorder_usage(); });
  nyxq::VulkanHandles handles{};
  EXPECT_EQ(nyxq::Context::try_create_vulkan_borrowed(handles).status(), NYXQ_ERROR_NULL_POINTER);
  expect_error(NYXQ_ERROR_NULL_POINTER, [&] { (void)nyxq::Context::create_vulkan_borrowed(handles); });
}

}  // namespace
