// Contract tests of the foundation ABI: versions, statuses, the panic guard,
// contexts, formats, quantize/dequantize/fake-quantize, error metrics and
// tensors, with every error class for every function.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using nyxq_test::ContextPtr;
using nyxq_test::TensorPtr;
using nyxq_test::cpu_context;
using nyxq_test::noisy_sine;

namespace {

const int32_t kAllFormats[] = {NYXQ_FORMAT_F32,  NYXQ_FORMAT_F16,  NYXQ_FORMAT_BF16, NYXQ_FORMAT_Q8_0,
                               NYXQ_FORMAT_Q4_0, NYXQ_FORMAT_Q4_1, NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL,
                               NYXQ_FORMAT_Q4_K, NYXQ_FORMAT_Q5_K, NYXQ_FORMAT_Q6_K};
// One past the last format's value: an unknown format.
const int32_t kUnknownFormat = NYXQ_FORMAT_Q6_K + 1;

// The K-quants store super-blocks of 256 values; the other block formats 32.
bool k_quant(int32_t format) {
  return format == NYXQ_FORMAT_Q4_K || format == NYXQ_FORMAT_Q5_K || format == NYXQ_FORMAT_Q6_K;
}
// The block a bound holds over: 256 values for the K-quants, else 32.
size_t block_of(int32_t format) { return k_quant(format) ? 256 : 32; }
// n rounded up to whole blocks of `format`.
size_t whole_blocks(int32_t format, size_t n) { return (n + block_of(format) - 1) / block_of(format) * block_of(format); }

// Under sanitizers and Valgrind the largest inputs are trimmed.
bool light() { return std::getenv("NYXQ_TEST_LIGHT") != nullptr; }

size_t quantized_size(int32_t format, size_t n) {
  size_t bytes = 0;
  EXPECT_EQ(nyxq_quantized_size(format, n, &bytes), NYXQ_OK) << nyxq_last_error_message();
  return bytes;
}

// Largest error a round trip may have per element, relative to the block's
// absmax: Q4_0's and Q5_0's positive ends clip a step short (1/8, 1/16 of the
// range), Q4_1 rounds to steps of 1/15 of it; IQ4_NL's positive end clips 14
// steps of max/127 short, and its least-squares scale moves the levels by up
// to an eighth of the range. The K-quants' bound is of the
// super-block's absmax: half a step of the sub-block plus the 6-bit (Q6_K:
// 8-bit) rounding of its scale and minimum, and Q6_K's step short at +31.
double relative_bound(int32_t format) {
  switch (format) {
    case NYXQ_FORMAT_F32: return 0.0;
    case NYXQ_FORMAT_F16: return 1.0 / 1024;
    case NYXQ_FORMAT_BF16: return 1.0 / 128;
    case NYXQ_FORMAT_Q8_0: return 1.0 / 127;
    case NYXQ_FORMAT_Q4_0: return 1.0 / 7;
    case NYXQ_FORMAT_Q4_1: return 1.0 / 7;
    case NYXQ_FORMAT_Q5_0: return 1.0 / 15;
    case NYXQ_FORMAT_IQ4_NL: return 14.0 / 127 + 1.0 / 8;
    case NYXQ_FORMAT_Q4_K: return 2 * (0.5 / 15 + 2.2 / 126);
    case NYXQ_FORMAT_Q5_K: return 2 * (0.5 / 31 + 2.2 / 126);
    case NYXQ_FORMAT_Q6_K: return 1.0 / 32 + 1.1 / 256;
  }
  ADD_FAILURE() << "no bound for format " << format;
  return 0.0;
}

}  // namespace

TEST(Version, StringAndAbiMatchTheBuild) {
  EXPECT_STREQ(nyxq_version_string(), NYXQ_CARGO_VERSION);
  EXPECT_EQ(nyxq_abi_version(), static_cast<uint32_t>(NYXQ_ABI_VERSION));
}

TEST(Status, EveryStatusHasDistinctText) {
  std::vector<std::string> seen;
  for (int s = NYXQ_OK; s <= NYXQ_ERROR_LOSS_SCALE_UNDERFLOW; ++s) {
    std::string text = nyxq_status_str(s);
    EXPECT_FALSE(text.empty());
    EXPECT_NE(text, "unknown status") << s;
    for (const auto &other : seen) EXPECT_NE(text, other) << s;
    seen.push_back(text);
  }
  EXPECT_STREQ(nyxq_status_str(-1), "unknown status");
  EXPECT_STREQ(nyxq_status_str(100000), "unknown status");
}

TEST(PanicGuard, APanicBecomesInternalNotAnAbort) {
  EXPECT_EQ(nyxq_test_force_panic(), NYXQ_ERROR_INTERNAL);
  EXPECT_NE(std::string(nyxq_last_error_message()).find("nyxq_test_force_panic"), std::string::npos);
  // The library keeps working afterwards.
  ContextPtr ctx = cpu_context();
  EXPECT_NE(ctx, nullptr);
  EXPECT_STREQ(nyxq_last_error_message(), "");
}

TEST(LastError, IsPerThread) {
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(99, 32, nullptr));
  std::string here = nyxq_last_error_message();
  std::string there;
  std::thread([&] { there = nyxq_last_error_message(); }).join();
  EXPECT_FALSE(here.empty());
  EXPECT_EQ(there, "");
}

TEST(Context, CreateDestroyAndInfo) {
  NyxqContext *ctx = nullptr;
  CHECK_OK(nyxq_context_create(nullptr, &ctx));
  NyxqContextInfo info;
  CHECK_OK(nyxq_context_info(ctx, &info));
  EXPECT_GE(info.thread_count, 1u);
  EXPECT_GT(std::strlen(info.backend_name), 0u);
  CHECK_OK(nyxq_context_destroy(ctx));
  CHECK_OK(nyxq_context_destroy(nullptr));
}

TEST(Context, OptionsAreValidated) {
  NyxqContext *ctx = reinterpret_cast<NyxqContext *>(0x1);  // must stay untouched on failure
  NyxqContextOptions options;
  CHECK_OK(nyxq_context_options_default(&options));
  EXPECT_EQ(options.struct_size, sizeof(NyxqContextOptions));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_options_default(nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_create(&options, nullptr));

  options.backend = 42;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_context_create(&options, &ctx));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("backend"), std::string::npos);
  nyxq_context_options_default(&options);
  options.log_level = -3;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_context_create(&options, &ctx));
  nyxq_context_options_default(&options);
  options.struct_size = 4;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_context_create(&options, &ctx));
  EXPECT_EQ(ctx, reinterpret_cast<NyxqContext *>(0x1));
}

// VULKAN with no loader (the path points at nothing) is refused, with the reason.
TEST(Context, VulkanWithoutALoaderIsUnsupported) {
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_VULKAN;
  options.vulkan_loader_path = "/nonexistent/libvulkan.so.1";
  NyxqContext *ctx = reinterpret_cast<NyxqContext *>(0x1);  // must stay untouched on failure
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_context_create(&options, &ctx));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("no Vulkan loader"), std::string::npos)
      << nyxq_last_error_message();
  EXPECT_EQ(ctx, reinterpret_cast<NyxqContext *>(0x1));
}

// VULKAN where a device is installed runs on it. Under ctest
// (NYXQ_TEST_REQUIRE_RESOURCES=1) scripts/bootstrap.sh has installed the
// loader and lavapipe; elsewhere lavapipe's manifest tells.
TEST(Context, VulkanIsUsedWhereADeviceIsInstalled) {
  const char *lavapipe = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";
  if (!std::ifstream(lavapipe).good()) SKIP_MISSING("lavapipe is not installed (" << lavapipe << ")");
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_VULKAN;
  NyxqContext *raw = nullptr;
  CHECK_OK(nyxq_context_create(&options, &raw));
  ContextPtr ctx(raw);
  NyxqContextInfo info;
  CHECK_OK(nyxq_context_info(ctx.get(), &info));
  EXPECT_EQ(info.backend, NYXQ_BACKEND_VULKAN);
}

TEST(Handles, DestroyedAndForeignHandlesAreDetected) {
  NyxqContext *ctx = nullptr;
  CHECK_OK(nyxq_context_create(nullptr, &ctx));
  CHECK_OK(nyxq_context_destroy(ctx));
  NyxqContextInfo info;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_context_info(ctx, &info));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_context_destroy(ctx));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_info(nullptr, &info));
  int not_a_handle = 0;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_context_info(reinterpret_cast<NyxqContext *>(&not_a_handle), &info));

  ContextPtr live = cpu_context();
  uint64_t shape[] = {32};
  NyxqTensor *t = nullptr;
  CHECK_OK(nyxq_tensor_create(live.get(), "t", shape, 1, NYXQ_FORMAT_F32, &t));
  TensorPtr tensor(t);
  // A tensor handle is not a context handle.
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_context_info(reinterpret_cast<NyxqContext *>(t), &info));
}

TEST(Format, InfoForEveryFormat) {
  struct Expect { int32_t format; const char *name; uint32_t block, bytes; double bits; };
  const Expect table[] = {{NYXQ_FORMAT_F32, "F32", 1, 4, 32}, {NYXQ_FORMAT_F16, "F16", 1, 2, 16},
                          {NYXQ_FORMAT_BF16, "BF16", 1, 2, 16}, {NYXQ_FORMAT_Q8_0, "Q8_0", 32, 34, 8.5},
                          {NYXQ_FORMAT_Q4_0, "Q4_0", 32, 18, 4.5}, {NYXQ_FORMAT_Q4_1, "Q4_1", 32, 20, 5.0},
                          {NYXQ_FORMAT_Q5_0, "Q5_0", 32, 22, 5.5}, {NYXQ_FORMAT_IQ4_NL, "IQ4_NL", 32, 18, 4.5},
                          {NYXQ_FORMAT_Q4_K, "Q4_K", 256, 144, 4.5}, {NYXQ_FORMAT_Q5_K, "Q5_K", 256, 176, 5.5},
                          {NYXQ_FORMAT_Q6_K, "Q6_K", 256, 210, 6.5625}};
  for (const auto &e : table) {
    NyxqFormatInfo info;
    CHECK_OK(nyxq_format_info(e.format, &info));
    EXPECT_STREQ(info.name, e.name);
    EXPECT_EQ(info.block_size, e.block);
    EXPECT_EQ(info.block_bytes, e.bytes);
    EXPECT_EQ(info.bits_per_weight, e.bits);
  }
  NyxqFormatInfo info;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_format_info(kUnknownFormat, &info));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_format_info(-1, &info));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_format_info(NYXQ_FORMAT_F32, nullptr));
}

TEST(Format, QuantizedSizeIsCheckedForBlocksAndOverflow) {
  EXPECT_EQ(quantized_size(NYXQ_FORMAT_Q4_0, 64), 36u);
  EXPECT_EQ(quantized_size(NYXQ_FORMAT_Q4_1, 0), 0u);
  size_t bytes = 7;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(NYXQ_FORMAT_Q8_0, 33, &bytes));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("multiple of 32"), std::string::npos);
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_quantized_size(NYXQ_FORMAT_F32, std::numeric_limits<size_t>::max() / 2, &bytes));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(17, 32, &bytes));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_quantized_size(NYXQ_FORMAT_F32, 32, nullptr));
  EXPECT_EQ(bytes, 7u);
}

// nyxq_live_handles counts what the caller has not destroyed, of every kind.
TEST(Handles, LiveHandlesCountsWhatIsNotDestroyed) {
  size_t before = 0, now = 0;
  CHECK_OK(nyxq_live_handles(&before));
  {
    ContextPtr ctx = cpu_context();
    NyxqConfig *config = nullptr;
    CHECK_OK(nyxq_config_parse("[quantization]\n", "live.ini", &config));
    CHECK_OK(nyxq_live_handles(&now));
    EXPECT_EQ(now, before + 2);
    nyxq_test::ConfigPtr config_owner(config);
    char *warnings = nullptr;
    CHECK_OK(nyxq_config_warnings(config, &warnings));
    nyxq_test::StringPtr warnings_owner(warnings);
    CHECK_OK(nyxq_live_handles(&now));
    EXPECT_EQ(now, before + 3);
  }
  CHECK_OK(nyxq_live_handles(&now));
  EXPECT_EQ(now, before);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_live_handles(nullptr));
}

// Device ranges are whole 32-bit words: Q4_0's 18-byte blocks and odd counts
// of 16-bit values round up; whole words stay as they are.
TEST(Format, DeviceRangeSizeIsWholeWords) {
  size_t bytes = 0;
  CHECK_OK(nyxq_device_range_size(NYXQ_FORMAT_Q4_0, 32, &bytes));
  EXPECT_EQ(bytes, 20u);
  CHECK_OK(nyxq_device_range_size(NYXQ_FORMAT_Q4_0, 64, &bytes));
  EXPECT_EQ(bytes, 36u);
  CHECK_OK(nyxq_device_range_size(NYXQ_FORMAT_F16, 3, &bytes));
  EXPECT_EQ(bytes, 8u);
  CHECK_OK(nyxq_device_range_size(NYXQ_FORMAT_Q8_0, 32, &bytes));
  EXPECT_EQ(bytes, 36u);
  CHECK_OK(nyxq_device_range_size(NYXQ_FORMAT_F32, 0, &bytes));
  EXPECT_EQ(bytes, 0u);
  bytes = 7;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_device_range_size(NYXQ_FORMAT_Q4_1, 33, &bytes));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_device_range_size(42, 32, &bytes));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_device_range_size(NYXQ_FORMAT_F32, std::numeric_limits<size_t>::max() / 4, &bytes));
  // 2^62-1 F16 values take 2^63-2 bytes, which fit a size; the whole words
  // (2^63 bytes) do not.
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_device_range_size(NYXQ_FORMAT_F16, std::numeric_limits<size_t>::max() / 4, &bytes));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_device_range_size(NYXQ_FORMAT_F32, 32, nullptr));
  EXPECT_EQ(bytes, 7u);
}

TEST(Quantize, RoundTripsEveryFormatOnOddSizes) {
  ContextPtr ctx = cpu_context();
  std::vector<size_t> sizes = {32, 64 * 1023};
  if (!light()) sizes.push_back((1u << 20) + 32);
  for (int32_t format : kAllFormats) {
    for (size_t odd : sizes) {
      const size_t n = whole_blocks(format, odd), block = block_of(format);
      std::vector<float> x = noisy_sine(n, static_cast<uint32_t>(n));
      std::vector<unsigned char> q(quantized_size(format, n));
      std::vector<float> y(n);
      CHECK_OK(nyxq_quantize(ctx.get(), format, x.data(), n, nullptr, q.data(), q.size()));
      CHECK_OK(nyxq_dequantize(ctx.get(), format, q.data(), q.size(), y.data(), y.size()));
      double bound = relative_bound(format) * 1.2;  // 20% headroom for the f16 rounding of block scales
      for (size_t b = 0; b < n; b += block) {
        float absmax = 0;
        for (size_t i = b; i < b + block; ++i) absmax = std::max(absmax, std::fabs(x[i]));
        for (size_t i = b; i < b + block; ++i)
          ASSERT_LE(std::fabs(x[i] - y[i]), bound * absmax + 1e-30) << "format " << format << " n " << n << " i " << i;
      }
      NyxqErrorMetrics m;
      CHECK_OK(nyxq_quant_error(format, x.data(), n, q.data(), q.size(), &m));
      if (format == NYXQ_FORMAT_F32) EXPECT_TRUE(std::isinf(m.snr_db));
      else EXPECT_GT(m.snr_db, 15.0) << format;
      EXPECT_GT(m.cosine, 0.98);
    }
  }
}

TEST(Quantize, ArgumentErrorsWriteNothing) {
  ContextPtr ctx = cpu_context();
  std::vector<float> x = noisy_sine(64);
  std::vector<unsigned char> q(quantized_size(NYXQ_FORMAT_Q4_0, 64), 0xAB);
  const std::vector<unsigned char> untouched = q;
  auto quantize = [&](const NyxqContext *c, int32_t f, const float *src, size_t n, const NyxqQuantizeOptions *o,
                      void *dst, size_t len) { return nyxq_quantize(c, f, src, n, o, dst, len); };

  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, quantize(nullptr, NYXQ_FORMAT_Q4_0, x.data(), 64, nullptr, q.data(), q.size()));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, nullptr, 64, nullptr, q.data(), q.size()));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 64, nullptr, nullptr, q.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, quantize(ctx.get(), kUnknownFormat, x.data(), 64, nullptr, q.data(), q.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 48, nullptr, q.data(), q.size()));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                quantize(ctx.get(), NYXQ_FORMAT_F32, x.data(), std::numeric_limits<size_t>::max() / 2, nullptr, q.data(), q.size()));

  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 64, nullptr, q.data(), 35));
  EXPECT_EQ(nyxq_last_error_needed_len(), 36u);

  NyxqQuantizeOptions options = {};
  options.struct_size = sizeof(options);
  options.rounding = 7;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 64, &options, q.data(), q.size()));
  options.rounding = NYXQ_ROUNDING_NEAREST;
  options.non_finite = 5;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 64, &options, q.data(), q.size()));
  options.non_finite = NYXQ_NON_FINITE_REJECT;
  options.struct_size = 2;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 64, &options, q.data(), q.size()));
  options.struct_size = sizeof(options);
  options.importance = nullptr;
  options.importance_len = 32;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 64, &options, q.data(), q.size()));

  NyxqContext *dead_raw = nyxq_test::destroyed(cpu_context());
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, quantize(dead_raw, NYXQ_FORMAT_Q4_0, x.data(), 64, nullptr, q.data(), q.size()));
  EXPECT_EQ(q, untouched);

  // An empty input is fine and writes nothing.
  CHECK_OK(quantize(ctx.get(), NYXQ_FORMAT_Q4_0, nullptr, 0, nullptr, nullptr, 0));
}

TEST(Quantize, NonFiniteInputIsReportedWithItsIndexOrSaturated) {
  ContextPtr ctx = cpu_context();
  const float bad_values[] = {std::nanf(""), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()};
  for (int32_t format : kAllFormats) {
    const size_t n = whole_blocks(format, 128);
    for (size_t where : {size_t{0}, size_t{77}, size_t{127}}) {
      for (float bad : bad_values) {
        std::vector<float> x = noisy_sine(n);
        x[where] = bad;
        std::vector<unsigned char> q(quantized_size(format, n), 0x5A);
        const std::vector<unsigned char> untouched = q;
        EXPECT_STATUS(NYXQ_ERROR_NON_FINITE, nyxq_quantize(ctx.get(), format, x.data(), n, nullptr, q.data(), q.size()));
        EXPECT_EQ(nyxq_last_error_index(), static_cast<int64_t>(where));
        EXPECT_EQ(q, untouched);

        NyxqQuantizeOptions options = {};
        options.struct_size = sizeof(options);
        options.non_finite = NYXQ_NON_FINITE_SATURATE;
        CHECK_OK(nyxq_quantize(ctx.get(), format, x.data(), n, &options, q.data(), q.size()));
        std::vector<float> y(n);
        CHECK_OK(nyxq_dequantize(ctx.get(), format, q.data(), q.size(), y.data(), y.size()));
        for (float v : y) ASSERT_TRUE(std::isfinite(v)) << format;
      }
    }
  }
}

TEST(Dequantize, ArgumentErrors) {
  ContextPtr ctx = cpu_context();
  std::vector<unsigned char> q(quantized_size(NYXQ_FORMAT_Q8_0, 64));
  std::vector<float> y(64, 3.0f);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_dequantize(ctx.get(), NYXQ_FORMAT_Q8_0, q.data(), q.size(), y.data(), 63));
  EXPECT_EQ(nyxq_last_error_needed_len(), 64u);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_dequantize(ctx.get(), NYXQ_FORMAT_Q8_0, q.data(), 35, y.data(), y.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_dequantize(ctx.get(), 77, q.data(), q.size(), y.data(), y.size()));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_dequantize(ctx.get(), NYXQ_FORMAT_Q8_0, nullptr, q.size(), y.data(), y.size()));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_dequantize(ctx.get(), NYXQ_FORMAT_Q8_0, q.data(), q.size(), nullptr, y.size()));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_dequantize(nullptr, NYXQ_FORMAT_Q8_0, q.data(), q.size(), y.data(), y.size()));
  for (float v : y) EXPECT_EQ(v, 3.0f);
}

TEST(FakeQuantize, EqualsQuantizeThenDequantizeAndWorksInPlace) {
  ContextPtr ctx = cpu_context();
  const size_t n = 4096;
  for (int32_t format : kAllFormats) {
    std::vector<float> x = noisy_sine(n, 9);
    std::vector<unsigned char> q(quantized_size(format, n));
    std::vector<float> via_bytes(n), fused(n);
    CHECK_OK(nyxq_quantize(ctx.get(), format, x.data(), n, nullptr, q.data(), q.size()));
    CHECK_OK(nyxq_dequantize(ctx.get(), format, q.data(), q.size(), via_bytes.data(), n));
    CHECK_OK(nyxq_fake_quantize(ctx.get(), format, x.data(), n, nullptr, fused.data(), n));
    EXPECT_EQ(0, std::memcmp(via_bytes.data(), fused.data(), n * sizeof(float))) << format;
    CHECK_OK(nyxq_fake_quantize(ctx.get(), format, x.data(), n, nullptr, x.data(), n));
    EXPECT_EQ(0, std::memcmp(via_bytes.data(), x.data(), n * sizeof(float))) << format;
  }
  std::vector<float> x = noisy_sine(64);
  std::vector<float> y(64);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_fake_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 64, nullptr, y.data(), 32));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_fake_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), 40, nullptr, y.data(), 64));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_fake_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, nullptr, 64, nullptr, y.data(), 64));
}

TEST(Rounding, StochasticIsSeededAndErrorMinimisingIsNoWorse) {
  ContextPtr ctx = cpu_context();
  const size_t n = 8192;
  std::vector<float> x = noisy_sine(n, 3);
  std::vector<unsigned char> a(quantized_size(NYXQ_FORMAT_Q4_0, n)), b(a.size()), c(a.size()), near(a.size()), best(a.size());
  NyxqQuantizeOptions options = {};
  options.struct_size = sizeof(options);
  options.rounding = NYXQ_ROUNDING_STOCHASTIC;
  options.seed = 1234;
  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), n, &options, a.data(), a.size()));
  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), n, &options, b.data(), b.size()));
  options.seed = 1235;
  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), n, &options, c.data(), c.size()));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);

  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), n, nullptr, near.data(), near.size()));
  options.rounding = NYXQ_ROUNDING_ERROR_MINIMISING;
  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q4_0, x.data(), n, &options, best.data(), best.size()));
  NyxqErrorMetrics m_near, m_best;
  CHECK_OK(nyxq_quant_error(NYXQ_FORMAT_Q4_0, x.data(), n, near.data(), near.size(), &m_near));
  CHECK_OK(nyxq_quant_error(NYXQ_FORMAT_Q4_0, x.data(), n, best.data(), best.size(), &m_best));
  EXPECT_GT(m_best.snr_db, m_near.snr_db);
}

TEST(QuantError, ArgumentErrors) {
  std::vector<float> x = noisy_sine(64);
  std::vector<unsigned char> q(quantized_size(NYXQ_FORMAT_Q8_0, 64));
  NyxqErrorMetrics m;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quant_error(NYXQ_FORMAT_Q8_0, x.data(), 32, q.data(), q.size(), &m));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quant_error(NYXQ_FORMAT_Q8_0, x.data(), 64, q.data(), 33, &m));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quant_error(12, x.data(), 64, q.data(), q.size(), &m));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_quant_error(NYXQ_FORMAT_Q8_0, x.data(), 64, q.data(), q.size(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_quant_error(NYXQ_FORMAT_Q8_0, nullptr, 64, q.data(), q.size(), &m));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_quant_error(NYXQ_FORMAT_Q8_0, x.data(), 64, nullptr, q.size(), &m));
}

TEST(Tensor, LifecycleUploadDownloadViewConvert) {
  ContextPtr ctx = cpu_context();
  const uint64_t shape[] = {48, 96};
  const size_t n = 48 * 96;
  NyxqTensor *raw = nullptr;
  CHECK_OK(nyxq_tensor_create(ctx.get(), "blk.0.attn_q", shape, 2, NYXQ_FORMAT_Q8_0, &raw));
  TensorPtr t(raw);
  NyxqTensorInfo info;
  CHECK_OK(nyxq_tensor_info(t.get(), &info));
  EXPECT_STREQ(info.name, "blk.0.attn_q");
  EXPECT_EQ(info.rank, 2u);
  EXPECT_EQ(info.shape[0], 48u);
  EXPECT_EQ(info.shape[1], 96u);
  EXPECT_EQ(info.numel, n);
  EXPECT_EQ(info.byte_len, quantized_size(NYXQ_FORMAT_Q8_0, n));

  std::vector<float> x = noisy_sine(n, 5);
  CHECK_OK(nyxq_tensor_upload(t.get(), x.data(), n, nullptr));
  const void *view = nullptr;
  size_t view_len = 0;
  CHECK_OK(nyxq_tensor_data(t.get(), &view, &view_len));
  std::vector<unsigned char> expect(quantized_size(NYXQ_FORMAT_Q8_0, n));
  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, x.data(), n, nullptr, expect.data(), expect.size()));
  ASSERT_EQ(view_len, expect.size());
  EXPECT_EQ(0, std::memcmp(view, expect.data(), view_len));

  std::vector<float> y(n);
  CHECK_OK(nyxq_tensor_download(t.get(), y.data(), y.size()));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_tensor_download(t.get(), y.data(), n - 1));
  EXPECT_EQ(nyxq_last_error_needed_len(), n);

  NyxqTensor *converted_raw = nullptr;
  CHECK_OK(nyxq_tensor_convert(t.get(), NYXQ_FORMAT_Q4_1, nullptr, &converted_raw));
  TensorPtr converted(converted_raw);
  CHECK_OK(nyxq_tensor_info(converted.get(), &info));
  EXPECT_EQ(info.format, NYXQ_FORMAT_Q4_1);
  EXPECT_EQ(info.byte_len, quantized_size(NYXQ_FORMAT_Q4_1, n));

  // A failed upload keeps the old bytes.
  x[100] = std::numeric_limits<float>::infinity();
  EXPECT_STATUS(NYXQ_ERROR_NON_FINITE, nyxq_tensor_upload(t.get(), x.data(), n, nullptr));
  EXPECT_EQ(0, std::memcmp(view, expect.data(), view_len));
}

TEST(Tensor, ArgumentErrors) {
  ContextPtr ctx = cpu_context();
  const uint64_t shape[] = {4, 48};
  NyxqTensor *t = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_create(ctx.get(), "x", shape, 2, NYXQ_FORMAT_Q4_0, &t));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("blocks"), std::string::npos);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_create(ctx.get(), "x", shape, 0, NYXQ_FORMAT_F32, &t));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_create(ctx.get(), "x", shape, 9, NYXQ_FORMAT_F32, &t));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_create(ctx.get(), "x", shape, 2, 99, &t));
  const uint64_t zero[] = {0, 32};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_create(ctx.get(), "x", zero, 2, NYXQ_FORMAT_F32, &t));
  const uint64_t huge[] = {1ull << 40, 1ull << 40};
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_tensor_create(ctx.get(), "x", huge, 2, NYXQ_FORMAT_F32, &t));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_create(ctx.get(), nullptr, shape, 2, NYXQ_FORMAT_F32, &t));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_create(ctx.get(), "x", nullptr, 2, NYXQ_FORMAT_F32, &t));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_create(ctx.get(), "x", shape, 2, NYXQ_FORMAT_F32, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_create(nullptr, "x", shape, 2, NYXQ_FORMAT_F32, &t));
  const char bad_utf8[] = {'\xff', '\xfe', 0};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_create(ctx.get(), bad_utf8, shape, 2, NYXQ_FORMAT_F32, &t));
  EXPECT_EQ(t, nullptr);

  CHECK_OK(nyxq_tensor_create(ctx.get(), "x", shape, 2, NYXQ_FORMAT_F32, &t));
  std::vector<float> x(4 * 48, 1.0f);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_upload(t, x.data(), x.size() - 1, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_upload(t, nullptr, x.size(), nullptr));
  const void *view = nullptr;
  size_t len = 0;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_data(t, nullptr, &len));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_data(t, &view, nullptr));
  NyxqTensor *c = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_convert(t, 99, nullptr, &c));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_convert(t, NYXQ_FORMAT_Q4_0, nullptr, &c));  // rows of 48
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_convert(t, NYXQ_FORMAT_F16, nullptr, nullptr));
  CHECK_OK(nyxq_tensor_destroy(t));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_upload(t, x.data(), x.size(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_download(t, x.data(), x.size()));
  NyxqTensorInfo info;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_info(t, &info));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_destroy(t));
  CHECK_OK(nyxq_tensor_destroy(nullptr));
}

// An F32 tensor holds values F16 cannot: converting it names the first one,
// makes nothing, and converts with saturation when asked.
TEST(Tensor, ConvertingToAFormatThatCannotHoldAValueIsRefused) {
  ContextPtr ctx = cpu_context(1);
  const uint64_t shape[] = {2, 32};
  NyxqTensor *raw = nullptr;
  CHECK_OK(nyxq_tensor_create(ctx.get(), "wide", shape, 2, NYXQ_FORMAT_F32, &raw));
  TensorPtr wide(raw);
  std::vector<float> x = nyxq_test::ramp(64);
  x[37] = 1.0e6f;
  CHECK_OK(nyxq_tensor_upload(wide.get(), x.data(), x.size(), nullptr));
  NyxqTensor *converted = reinterpret_cast<NyxqTensor *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_NON_FINITE, nyxq_tensor_convert(wide.get(), NYXQ_FORMAT_F16, nullptr, &converted));
  EXPECT_EQ(nyxq_last_error_index(), 37);
  EXPECT_EQ(converted, reinterpret_cast<NyxqTensor *>(0x1));
  NyxqQuantizeOptions saturate;
  CHECK_OK(nyxq_quantize_options_default(&saturate));
  saturate.non_finite = NYXQ_NON_FINITE_SATURATE;
  CHECK_OK(nyxq_tensor_convert(wide.get(), NYXQ_FORMAT_F16, &saturate, &raw));
  TensorPtr narrow(raw);
  std::vector<float> back(64);
  CHECK_OK(nyxq_tensor_download(narrow.get(), back.data(), back.size()));
  EXPECT_EQ(back[37], 65504.0f);
}

TEST(Threads, EightThreadsSharingOneContextGiveTheSameBytes) {
  ContextPtr ctx = cpu_context();
  const size_t odd = light() ? 64 * 1024 : (1u << 20) + 32;
  for (int32_t format : kAllFormats) {
    const size_t n = whole_blocks(format, odd);
    std::vector<float> x = noisy_sine(n, 11);
    std::vector<unsigned char> reference(quantized_size(format, n));
    CHECK_OK(nyxq_quantize(ctx.get(), format, x.data(), n, nullptr, reference.data(), reference.size()));
    std::vector<std::vector<unsigned char>> results(8, std::vector<unsigned char>(reference.size()));
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
      threads.emplace_back([&, i] {
        if (nyxq_quantize(ctx.get(), format, x.data(), n, nullptr, results[i].data(), results[i].size()) != NYXQ_OK)
          ++failures;
      });
    for (auto &t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    for (const auto &r : results) EXPECT_EQ(r, reference) << format;
  }
  // One thread and many threads inside a call give the same bytes.
  const size_t n = odd;
  std::vector<float> x = noisy_sine(n, 11);
  ContextPtr single = cpu_context(1);
  std::vector<unsigned char> a(quantized_size(NYXQ_FORMAT_Q4_1, n)), b(a.size());
  CHECK_OK(nyxq_quantize(single.get(), NYXQ_FORMAT_Q4_1, x.data(), n, nullptr, a.data(), a.size()));
  ContextPtr many = cpu_context(4);
  CHECK_OK(nyxq_quantize(many.get(), NYXQ_FORMAT_Q4_1, x.data(), n, nullptr, b.data(), b.size()));
  EXPECT_EQ(a, b);
}

TEST(Handles, EveryContextFunctionRejectsADestroyedOrNullContext) {
  NyxqContext *dead = nullptr;
  CHECK_OK(nyxq_context_create(nullptr, &dead));
  CHECK_OK(nyxq_context_destroy(dead));
  std::vector<float> x = noisy_sine(64);
  std::vector<float> y(64);
  std::vector<unsigned char> q(quantized_size(NYXQ_FORMAT_Q8_0, 64));
  const uint64_t shape[] = {64};
  NyxqTensor *t = nullptr;
  NyxqContextInfo info;
  for (NyxqContext *ctx : {dead, static_cast<NyxqContext *>(nullptr)}) {
    const NyxqStatus expected = ctx ? NYXQ_ERROR_INVALID_HANDLE : NYXQ_ERROR_NULL_POINTER;
    EXPECT_STATUS(expected, nyxq_context_info(ctx, &info));
    EXPECT_STATUS(expected, nyxq_quantize(ctx, NYXQ_FORMAT_Q8_0, x.data(), 64, nullptr, q.data(), q.size()));
    EXPECT_STATUS(expected, nyxq_dequantize(ctx, NYXQ_FORMAT_Q8_0, q.data(), q.size(), y.data(), y.size()));
    EXPECT_STATUS(expected, nyxq_fake_quantize(ctx, NYXQ_FORMAT_Q8_0, x.data(), 64, nullptr, y.data(), y.size()));
    EXPECT_STATUS(expected, nyxq_tensor_create(ctx, "t", shape, 1, NYXQ_FORMAT_Q8_0, &t));
  }
  EXPECT_EQ(t, nullptr);
  ContextPtr live = cpu_context();
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_info(live.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_fake_quantize(live.get(), NYXQ_FORMAT_Q8_0, x.data(), 64, nullptr, nullptr, 64));
}

TEST(Tensor, OutlivesItsContextHandle) {
  NyxqContext *ctx = nullptr;
  CHECK_OK(nyxq_context_create(nullptr, &ctx));
  const uint64_t shape[] = {2, 32};
  NyxqTensor *raw = nullptr;
  CHECK_OK(nyxq_tensor_create(ctx, "w", shape, 2, NYXQ_FORMAT_Q4_1, &raw));
  TensorPtr t(raw);
  CHECK_OK(nyxq_context_destroy(ctx));
  std::vector<float> x = noisy_sine(64);
  std::vector<float> y(64);
  CHECK_OK(nyxq_tensor_upload(t.get(), x.data(), x.size(), nullptr));
  CHECK_OK(nyxq_tensor_download(t.get(), y.data(), y.size()));
  for (size_t i = 0; i < 64; ++i) EXPECT_NEAR(x[i], y[i], 0.1);
}

// Hostile inputs (issue 20): no abort, no wrap, no panic, nothing on stderr.

TEST(PanicGuard, ACaughtPanicPrintsNothing) {
  testing::internal::CaptureStderr();
  NyxqStatus status = nyxq_test_force_panic();
  std::string printed = testing::internal::GetCapturedStderr();
  EXPECT_EQ(status, NYXQ_ERROR_INTERNAL);
  EXPECT_EQ(printed, "");
  // The message and where it happened are in the last error instead.
  std::string message = nyxq_last_error_message();
  EXPECT_NE(message.find("nyxq_test_force_panic was called"), std::string::npos) << message;
  EXPECT_NE(message.find(".rs:"), std::string::npos) << message;
}

TEST(HostileSizes, AdamStateTooLargeIsAnErrorNotAnAbort) {
  NyxqAdam *adam = reinterpret_cast<NyxqAdam *>(0x1);
  // 2^62 parameters: 8 bytes each overflow the address space.
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_adam_create(nullptr, size_t{1} << 62, &adam));
  EXPECT_EQ(adam, reinterpret_cast<NyxqAdam *>(0x1));
  if (light()) GTEST_SKIP() << "sanitizers and Valgrind report huge allocations themselves";
  // 2^50 parameters: 8 PiB of state, refused by the allocator.
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, nyxq_adam_create(nullptr, size_t{1} << 50, &adam));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("bytes"), std::string::npos);
  EXPECT_EQ(adam, reinterpret_cast<NyxqAdam *>(0x1));
}

TEST(HostileSizes, PaddingAdviceDoesNotWrap) {
  size_t bytes = 7;
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_quantized_size(NYXQ_FORMAT_Q4_0, std::numeric_limits<size_t>::max() - 2, &bytes));
  EXPECT_EQ(std::string(nyxq_last_error_message()).find("pad the row to 0"), std::string::npos);
  EXPECT_EQ(bytes, 7u);
}

TEST(HostileSizes, AHugeTransformerFileIsAConfigErrorNamingTheLimit) {
  std::string path = testing::TempDir() + "nyxq_huge_model.json";
  FILE *f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(R"({"name":"m","transformer":{"hidden":64,"heads":1,"high_layers":100000000000,"vocab":32}})", f);
  std::fclose(f);
  NyxqModel *model = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_CONFIG, nyxq_model_load(path.c_str(), &model));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("limit of 10000 blocks"), std::string::npos)
      << nyxq_last_error_message();
  EXPECT_EQ(model, nullptr);
  std::remove(path.c_str());
}

TEST(FirstIndex, ImportanceAndTheBadIndexCountFromFirstIndex) {
  ContextPtr ctx = cpu_context(1);
  std::vector<float> x = noisy_sine(32), importance(32, 1.0f);
  for (int32_t format : {NYXQ_FORMAT_Q8_0, NYXQ_FORMAT_Q4_0, NYXQ_FORMAT_Q4_1, NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL}) {
    NyxqQuantizeOptions opts;
    nyxq_quantize_options_default(&opts);
    opts.rounding = NYXQ_ROUNDING_ERROR_MINIMISING;
    opts.importance = importance.data();
    opts.importance_len = importance.size();
    opts.first_index = 1;
    std::vector<uint8_t> q(64);
    CHECK_OK(nyxq_quantize(ctx.get(), format, x.data(), x.size(), &opts, q.data(), q.size()));
    std::vector<float> y(32);
    CHECK_OK(nyxq_fake_quantize(ctx.get(), format, x.data(), x.size(), &opts, y.data(), y.size()));
  }
  NyxqQuantizeOptions opts;
  nyxq_quantize_options_default(&opts);
  opts.first_index = 1000;
  x[3] = std::nanf("");
  std::vector<uint8_t> q(34);
  EXPECT_STATUS(NYXQ_ERROR_NON_FINITE,
                nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, x.data(), 32, &opts, q.data(), q.size()));
  EXPECT_EQ(nyxq_last_error_index(), 1003);
  opts.first_index = std::numeric_limits<uint64_t>::max();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, x.data(), 32, &opts, q.data(), q.size()));
  EXPECT_EQ(nyxq_last_error_index(), -1);
}

struct LogSeen {
  std::atomic<int> count{0};
  int32_t last_level = 0;
  std::string last_message;
};

extern "C" void record_log(void *user_data, int32_t level, const char *message) {
  auto *seen = static_cast<LogSeen *>(user_data);
  seen->last_level = level;
  seen->last_message = message;
  seen->count++;
}

TEST(Log, TheCallbackGetsMessagesUpToItsLevelUntilRemoved) {
  // By default nothing is printed: an error logs at debug level, unseen.
  testing::internal::CaptureStderr();
  size_t bytes = 0;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(99, 32, &bytes));
  ContextPtr quiet = cpu_context();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");

  LogSeen seen;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_set_log_callback(record_log, &seen, 99));
  CHECK_OK(nyxq_set_log_callback(record_log, &seen, NYXQ_LOG_DEBUG));
  testing::internal::CaptureStderr();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(99, 32, &bytes));
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_GE(seen.count.load(), 1);
  EXPECT_EQ(seen.last_level, NYXQ_LOG_DEBUG);
  EXPECT_NE(seen.last_message.find("unknown format"), std::string::npos) << seen.last_message;

  // At WARN the debug message is filtered out.
  CHECK_OK(nyxq_set_log_callback(record_log, &seen, NYXQ_LOG_WARN));
  int before = seen.count.load();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(99, 32, &bytes));
  EXPECT_EQ(seen.count.load(), before);

  // Removed: nothing more arrives, and nothing is printed either.
  CHECK_OK(nyxq_set_log_callback(nullptr, nullptr, 0));
  CHECK_OK(nyxq_set_log_callback(record_log, &seen, NYXQ_LOG_TRACE));
  CHECK_OK(nyxq_set_log_callback(nullptr, nullptr, 0));
  before = seen.count.load();
  testing::internal::CaptureStderr();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(99, 32, &bytes));
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(seen.count.load(), before);
}

TEST(Log, AContextsLevelPrintsOnlyWhileItLives) {
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_CPU;
  options.log_level = NYXQ_LOG_DEBUG;
  NyxqContext *raw = nullptr;
  CHECK_OK(nyxq_context_create(&options, &raw));
  ContextPtr ctx(raw);
  size_t bytes = 0;
  testing::internal::CaptureStderr();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(99, 32, &bytes));
  std::string printed = testing::internal::GetCapturedStderr();
  if (std::getenv("NYXQ_LOG") == nullptr) {
    EXPECT_NE(printed.find("unknown format"), std::string::npos) << printed;
  }
  ctx.reset();
  testing::internal::CaptureStderr();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_quantized_size(99, 32, &bytes));
  printed = testing::internal::GetCapturedStderr();
  if (std::getenv("NYXQ_LOG") == nullptr) {
    EXPECT_EQ(printed, "");
  }
}
