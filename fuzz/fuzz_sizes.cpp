// Size arithmetic through the C ABI: nyxq_quantized_size,
// nyxq_device_range_size and nyxq_format_info against the block layouts,
// with counts up to SIZE_MAX (never a wrap, outputs untouched on failure);
// the Adam state for hostile parameter counts (an error, never an abort);
// nyxq_last_error_index and nyxq_last_error_needed_len after the failures
// that set them, for any first_index; and text for every status value.
#include "harness.hpp"
#include "reference_quant.hpp"

namespace {

using namespace nyxq_fuzz;
namespace ref = nyxq_reference;

constexpr size_t kUntouched = 0x5a5a5a5a;
constexpr size_t kLargestObject = static_cast<size_t>(PTRDIFF_MAX);

size_t count_from(Input &in) {
  switch (in.byte() % 4) {
    case 0: return in.byte();
    case 1: return SIZE_MAX - in.byte();
    case 2: return (SIZE_MAX / in.pick<size_t>({1, 2, 4, 8, 18, 20, 32, 34})) + in.byte() - 128;
    default: return in.take<size_t>();
  }
}

// What nyxq_quantized_size must say: OK with the bytes (at most PTRDIFF_MAX,
// the most one object may take), or the error.
NyxqStatus expected_size(int32_t format, size_t n, size_t *bytes) {
  if (!ref::known_format(format)) return NYXQ_ERROR_INVALID_ARGUMENT;
  ref::Layout l = ref::layout(format);
  if (n % l.block_size != 0) {
    size_t missing = l.block_size - n % l.block_size;
    return n > SIZE_MAX - missing ? NYXQ_ERROR_SIZE_OVERFLOW : NYXQ_ERROR_INVALID_ARGUMENT;
  }
  if (n / l.block_size > kLargestObject / l.block_bytes) return NYXQ_ERROR_SIZE_OVERFLOW;
  *bytes = n / l.block_size * l.block_bytes;
  return NYXQ_OK;
}

void check_sizes(Input &in) {
  uint8_t f = in.byte();
  int32_t format = f < 0xf0 ? f % ref::kFormats : in.take<int32_t>();
  size_t n = count_from(in);
  size_t bytes = kUntouched, want = 0;
  NyxqStatus s = NYXQ_CALL(nyxq_quantized_size, format, n, &bytes);
  NyxqStatus expected = expected_size(format, n, &want);
  expect(s, expected, "nyxq_quantized_size");
  if (s == NYXQ_OK && bytes != want) fail("nyxq_quantized_size gave " + std::to_string(bytes));
  if (s != NYXQ_OK && bytes != kUntouched) fail("nyxq_quantized_size wrote its output and failed");

  size_t range = kUntouched;
  s = NYXQ_CALL(nyxq_device_range_size, format, n, &range);
  if (expected == NYXQ_OK && want > kLargestObject - 3) expected = NYXQ_ERROR_SIZE_OVERFLOW;
  expect(s, expected, "nyxq_device_range_size");
  if (s == NYXQ_OK && range != (want + 3) / 4 * 4) fail("nyxq_device_range_size gave " + std::to_string(range));
  if (s != NYXQ_OK && range != kUntouched) fail("nyxq_device_range_size wrote its output and failed");
  if (ref::known_format(format)) {
    expect(NYXQ_CALL(nyxq_quantized_size, format, n, nullptr), NYXQ_ERROR_NULL_POINTER, "NULL bytes_out");
  }

  NyxqFormatInfo info{};
  s = NYXQ_CALL(nyxq_format_info, format, &info);
  expect(s, ref::known_format(format) ? NYXQ_OK : NYXQ_ERROR_INVALID_ARGUMENT, "nyxq_format_info");
  if (s == NYXQ_OK) {
    ref::Layout l = ref::layout(format);
    if (info.block_size != l.block_size || info.block_bytes != l.block_bytes || info.name == nullptr ||
        info.bits_per_weight != 8.0 * l.block_bytes / l.block_size) {
      fail("nyxq_format_info disagrees with the layout of format " + std::to_string(format));
    }
  }
}

// Adam's state for a parameter count: 8 bytes each in FP32.
void check_adam(Input &in) {
  size_t n = in.pick<size_t>({size_t{1} << 37, size_t{1} << 62, SIZE_MAX, SIZE_MAX / 8 + 1, size_t{1} << 50,
                               size_t{1} << 40, 0, 1, 4095, 4096, 4097});
  NyxqAdamOptions options;
  nyxq_adam_options_default(&options);
  options.state = in.byte() & 1;
  NyxqAdam *adam = nullptr;
  NyxqStatus s = NYXQ_CALL(nyxq_adam_create, &options, n, &adam);
  if (n > SIZE_MAX / 8) {
    if (s != NYXQ_ERROR_SIZE_OVERFLOW && s != NYXQ_ERROR_OUT_OF_MEMORY) fail("Adam state beyond the address space");
  } else if (n >= size_t{1} << 37) {
    // Beyond any host (and ASan's largest allocation): refused, never fatal.
    expect(s, NYXQ_ERROR_OUT_OF_MEMORY, "Adam state of 2^37 parameters or more");
  }
  if (s != NYXQ_OK) {
    if (adam != nullptr) fail("nyxq_adam_create wrote its output and failed");
    return;
  }
  size_t held = 0, fp32 = 0;
  NYXQ_CALL(nyxq_adam_state_bytes, adam, &held, &fp32);
  if (fp32 != 8 * n) fail("FP32 Adam state of " + std::to_string(n) + " parameters is not 8 bytes each");
  expect(NYXQ_CALL(nyxq_adam_destroy, adam), NYXQ_OK, "nyxq_adam_destroy");
}

// NaN at `bad` in 32 values quantized from `first_index`: the index reported
// is first_index + bad, or the call is refused when first_index + 32 passes INT64_MAX.
void check_error_index(Input &in) {
  uint64_t first_index = in.byte() & 1 ? in.take<uint64_t>() : static_cast<uint64_t>(INT64_MAX) - in.byte();
  size_t bad = in.byte() % 32;
  std::vector<float> x(32, 1.0f);
  x[bad] = NAN;
  NyxqQuantizeOptions options;
  nyxq_quantize_options_default(&options);
  options.first_index = first_index;
  uint8_t q[34];
  NyxqStatus s = NYXQ_CALL(nyxq_quantize, cpu_context(), NYXQ_FORMAT_Q8_0, x.data(), 32, &options, q, sizeof q);
  if (first_index > static_cast<uint64_t>(INT64_MAX) - 32) {
    expect(s, NYXQ_ERROR_INVALID_ARGUMENT, "first_index + n beyond INT64_MAX");
    if (nyxq_last_error_index() != -1) fail("nyxq_last_error_index after another error is not -1");
  } else {
    expect(s, NYXQ_ERROR_NON_FINITE, "a NaN");
    if (nyxq_last_error_index() != static_cast<int64_t>(first_index + bad)) fail("the index is not first_index + i");
  }
  if (nyxq_last_error_needed_len() != 0) fail("nyxq_last_error_needed_len after another error is not 0");

  // A short destination: the needed length in floats.
  float y[64];
  size_t room = in.byte() % 32;
  s = NYXQ_CALL(nyxq_dequantize, cpu_context(), NYXQ_FORMAT_Q8_0, q, sizeof q, y, room);
  expect(s, NYXQ_ERROR_BUFFER_TOO_SMALL, "dequantize into a short buffer");
  if (nyxq_last_error_needed_len() != 32) fail("the needed length of 32 floats is not reported");
}

void run(Input &in) {
  check_sizes(in);
  check_adam(in);
  check_error_index(in);
  int32_t status = in.take<int32_t>();
  const char *text = nyxq_status_str(status);
  if (text == nullptr || text[0] == '\0') fail("nyxq_status_str(" + std::to_string(status) + ") has no text");
  expect_no_live_handles("size arithmetic");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return nyxq_fuzz::run_one(data, size, run);
}
