// Quantize, fake-quantize and dequantize through the C ABI against the
// reference of reference_quant.hpp:
// - nearest rounding (and error-minimising for F32/F16/BF16) gives exactly
//   the reference's bytes, saturation clamps as documented, NaN/Inf and
//   out-of-range values are NYXQ_ERROR_NON_FINITE naming first_index + i;
// - stochastic rounding keeps nearest's scales and stays within one step;
// - error-minimising rounding is never worse than nearest in any block
//   (weighted by the importance), and both depend on first_index only:
//   quantizing the tail of a tensor equals the tail of the whole;
// - dequantize gives the reference's floats for any bytes, and
//   fake_quantize equals dequantize(quantize(x)).
#include <cinttypes>
#include <cfloat>
#include <cmath>

#include "harness.hpp"
#include "reference_quant.hpp"

namespace {

using namespace nyxq_fuzz;
namespace ref = nyxq_reference;

std::string hex(const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

std::string hexfloat(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%a", x);
  return text;
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || ref::bits_of(a) == ref::bits_of(b); }

float value_from(Input &in, uint8_t mode) {
  switch (mode % 4) {
    case 0: return in.take<float>();                                        // any bits
    case 1: return static_cast<float>(static_cast<int8_t>(in.byte())) / 8;  // small, many ties
    case 2: return std::ldexp(static_cast<float>(static_cast<int8_t>(in.byte())), in.byte() % 74 - 32);
    default:
      return in.pick<float>({0.0f, -0.0f, NAN, INFINITY, -INFINITY, 65504.0f, 65520.0f, -65520.0f, 524160.0f,
                             8.32e6f, 3.3895e38f, FLT_MIN, -FLT_MIN / 4, 1e-40f, FLT_MAX});
  }
}

// Sum over a block of weight * (x - y)^2, in double.
double block_error(const float *x, const float *y, const float *weight, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += static_cast<double>(weight[i]) * (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
  return sum;
}

void check_dequantize_of_any_bytes(Input &in, int32_t format) {
  std::string_view raw = in.rest();
  ref::Layout l = ref::layout(format);
  std::vector<float> y(raw.size() / l.block_bytes * l.block_size + 1, 7.0f);
  NyxqStatus s = NYXQ_CALL(nyxq_dequantize, cpu_context(), format, raw.data(), raw.size(), y.data(), y.size());
  if (!ref::known_format(format)) return expect(s, NYXQ_ERROR_INVALID_ARGUMENT, "dequantize of an unknown format");
  if (raw.size() % l.block_bytes != 0) return expect(s, NYXQ_ERROR_INVALID_ARGUMENT, "dequantize of partial blocks");
  expect(s, NYXQ_OK, "dequantize of whole blocks");
  std::vector<float> want = ref::dequantize(format, reinterpret_cast<const uint8_t *>(raw.data()), raw.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (!same_float(y[i], want[i])) {
      fail("dequantize of format " + std::to_string(format) + " differs at " + std::to_string(i) + ": " +
           std::to_string(y[i]) + " vs " + std::to_string(want[i]));
    }
  }
  if (y[want.size()] != 7.0f) fail("dequantize wrote past the values it holds");
}

struct Case {
  int32_t format;
  NyxqQuantizeOptions options;
  std::vector<float> x;
  std::vector<float> importance;
  bool well_formed;  // every argument in its domain, so the status is predictable
};

Case read_case(Input &in) {
  Case c{};
  uint8_t format_byte = in.byte();
  c.format = format_byte < 0xf0 ? format_byte % ref::kFormats : static_cast<int32_t>(format_byte) - 0x100;
  nyxq_quantize_options_default(&c.options);
  uint8_t mode = in.byte();
  c.options.rounding = mode % 3;
  c.options.non_finite = (mode / 3) % 2;
  c.options.seed = in.take<uint64_t>();
  uint8_t index_mode = in.byte();
  c.options.first_index = index_mode < 0xc0 ? index_mode : in.take<uint64_t>();
  c.well_formed = ref::known_format(c.format);
  size_t block = c.well_formed ? ref::layout(c.format).block_size : 32;
  uint8_t count = in.byte();
  size_t n = (count % 5) * block * (1 + count / 64) + ((count & 0x20) ? count % 3 : 0);
  if (n % block != 0) c.well_formed = false;
  uint8_t values = in.byte();
  for (size_t i = 0; i < n; ++i) c.x.push_back(value_from(in, (values & 0x80) ? in.byte() : values));
  uint8_t importance = in.byte();
  if (c.options.rounding == NYXQ_ROUNDING_ERROR_MINIMISING && (importance & 1)) {
    size_t len = block * (1 + importance / 64);
    for (size_t i = 0; i < len; ++i) c.importance.push_back(static_cast<float>(in.byte()) / 16);
    c.options.importance = c.importance.data();
    c.options.importance_len = len;
    if (n % len != 0) c.well_formed = false;
  }
  if (c.options.first_index > static_cast<uint64_t>(INT64_MAX) - n) c.well_formed = false;
  return c;
}

std::vector<uint8_t> quantized(const Case &c, std::vector<float> x, uint64_t first_index) {
  NyxqQuantizeOptions options = c.options;
  options.first_index = first_index;
  std::vector<uint8_t> q(x.size() / ref::layout(c.format).block_size * ref::layout(c.format).block_bytes);
  NyxqStatus s = NYXQ_CALL(nyxq_quantize, cpu_context(), c.format, x.data(), x.size(), &options, q.data(), q.size());
  expect(s, NYXQ_OK, "quantizing a tail of a tensor that quantized");
  return q;
}

void check_accepted(const Case &c, const std::vector<uint8_t> &q) {
  const std::vector<float> &x = c.x;
  ref::Layout l = ref::layout(c.format);
  std::vector<float> input = x;
  if (c.options.non_finite == NYXQ_NON_FINITE_SATURATE) {
    for (float &v : input) v = ref::saturated(v, c.format);
  }
  std::vector<uint8_t> nearest = ref::quantize(c.format, input);
  bool scalar = l.block_size == 1;
  bool exact = c.options.rounding == NYXQ_ROUNDING_NEAREST ||
               (c.options.rounding == NYXQ_ROUNDING_ERROR_MINIMISING && scalar) || c.format == NYXQ_FORMAT_F32;
  if (exact && q != nearest) {
    for (size_t b = 0; b < q.size() / l.block_bytes; ++b) {
      if (std::memcmp(q.data() + b * l.block_bytes, nearest.data() + b * l.block_bytes, l.block_bytes) != 0) {
        fail("format " + std::to_string(c.format) + " rounding " + std::to_string(c.options.rounding) + " block " +
             std::to_string(b) + ": nyxq " + hex(q.data() + b * l.block_bytes, l.block_bytes) + ", reference " +
             hex(nearest.data() + b * l.block_bytes, l.block_bytes));
      }
    }
  }
  std::vector<float> back = ref::dequantize(c.format, q.data(), q.size());
  std::vector<float> near_back = ref::dequantize(c.format, nearest.data(), nearest.size());
  size_t scale_bytes = c.format == NYXQ_FORMAT_Q4_1 ? 4 : 2;
  for (size_t b = 0; b < x.size() / l.block_size; ++b) {
    const float *xb = input.data() + b * l.block_size;
    const float *yb = back.data() + b * l.block_size;
    if (c.options.rounding == NYXQ_ROUNDING_STOCHASTIC && ref::k_quant(c.format)) {
      // Nearest's scales; each level floor or ceiling where nearest rounds,
      // so within one step of the sub-block of nearest's value.
      const uint8_t *block = q.data() + b * l.block_bytes, *near_block = nearest.data() + b * l.block_bytes;
      auto [at, len] = ref::k_scale_bytes(c.format);
      if (std::memcmp(block + at, near_block + at, len) != 0) {
        fail("stochastic rounding changed the scales of super-block " + std::to_string(b));
      }
      for (size_t j = 0; j < l.block_size; ++j) {
        double step = ref::k_step(c.format, near_block, static_cast<int>(j));
        // The two values are dequantized in f32 (d·q − m, each product and
        // the difference rounded): up to two ulps of each value's magnitude
        // on top of the step, which can be far below the magnitude when the
        // sub-block's minimum is large.
        double near_value = near_back[b * l.block_size + j];
        double rounding = 2 * FLT_EPSILON * (std::fabs(double(yb[j])) + std::fabs(near_value));
        if (std::fabs(double(yb[j]) - near_value) > step * (1 + 1e-6) + rounding) {
          fail("stochastic rounding of super-block " + std::to_string(b) + " is more than a step (" + hexfloat(step) +
               ") from nearest at " + std::to_string(j) + ": " + hexfloat(yb[j]) + " vs " +
               hexfloat(near_back[b * l.block_size + j]));
        }
      }
    } else if (c.options.rounding == NYXQ_ROUNDING_STOCHASTIC && !scalar) {
      // The scale of nearest rounding (IQ4_NL's: max/-127, before its
      // least-squares fit).
      uint8_t scale_of_nearest[4];
      std::memcpy(scale_of_nearest, nearest.data() + b * l.block_bytes, scale_bytes);
      if (c.format == NYXQ_FORMAT_IQ4_NL) ref::put_f16(scale_of_nearest, ref::block_scale(c.format, xb).d);
      if (std::memcmp(q.data() + b * l.block_bytes, scale_of_nearest, scale_bytes) != 0) {
        fail("stochastic rounding changed the scale of block " + std::to_string(b));
      }
      // One step of the f32 scale the quants were chosen with, plus the
      // f16 rounding of the scale (and of Q4_1's minimum) times the quants.
      ref::BlockScale scale = ref::block_scale(c.format, xb);
      double d = std::fabs(scale.d), stored = std::fabs(ref::get_f16(q.data() + b * l.block_bytes));
      double min_error = c.format == NYXQ_FORMAT_Q4_1 ? std::fabs(scale.min - ref::get_f16(q.data() + b * l.block_bytes + 2)) : 0;
      // A block whose scale is below FLT_MIN is all zero points: within
      // the largest quant times FLT_MIN.
      double bound = (d * ref::widest_gap(c.format) + std::fabs(d - stored) * ref::largest_quant(c.format) + min_error) *
                         (1 + 1e-6) +
                     ref::largest_quant(c.format) * FLT_MIN;
      float step = static_cast<float>(d);
      for (size_t j = 0; j < l.block_size; ++j) {
        if (std::fabs(double(xb[j]) - yb[j]) > bound) {
          fail("stochastic rounding of block " + std::to_string(b) + " is more than a step (" + hexfloat(step) + ") off at " +
               std::to_string(j) + ": " + hexfloat(xb[j]) + " became " + hexfloat(yb[j]));
        }
      }
    }
    if (c.options.rounding == NYXQ_ROUNDING_STOCHASTIC && scalar && c.format != NYXQ_FORMAT_F32) {
      // Between the two neighbours of x in the format.
      int mantissa_bits = c.format == NYXQ_FORMAT_F16 ? 10 : 7;
      int least_exponent = c.format == NYXQ_FORMAT_F16 ? -14 : -126;
      int e = xb[0] == 0 ? least_exponent : std::max(std::ilogb(xb[0]), least_exponent);
      double spacing = std::ldexp(1.0, e - mantissa_bits);
      if (!(std::fabs(double(xb[0]) - yb[0]) <= spacing)) {
        fail("stochastic rounding of element " + std::to_string(b) + " is not a neighbour of x: " + hexfloat(xb[0]) +
             " became " + hexfloat(yb[0]));
      }
    }
    if (c.options.rounding == NYXQ_ROUNDING_ERROR_MINIMISING && !scalar) {
      std::vector<float> weight(l.block_size, 1.0f);
      for (size_t j = 0; j < l.block_size && !c.importance.empty(); ++j) {
        weight[j] = c.importance[(c.options.first_index + b * l.block_size + j) % c.importance.size()];
      }
      double got = block_error(xb, yb, weight.data(), l.block_size);
      double nearest_error = block_error(xb, near_back.data() + b * l.block_size, weight.data(), l.block_size);
      if (got > nearest_error * (1 + 1e-5) + 1e-30) {
        fail("error-minimising block " + std::to_string(b) + " is worse than nearest: " + std::to_string(got) +
             " > " + std::to_string(nearest_error));
      }
    }
  }
  // nyxq's dequantize is the reference's, and fake_quantize is the round trip.
  std::vector<float> y(x.size()), fake(x.size());
  expect(NYXQ_CALL(nyxq_dequantize, cpu_context(), c.format, q.data(), q.size(), y.data(), y.size()), NYXQ_OK,
         "dequantize of what quantize wrote");
  expect(NYXQ_CALL(nyxq_fake_quantize, cpu_context(), c.format, x.data(), x.size(), &c.options, fake.data(),
                   fake.size()),
         NYXQ_OK, "fake_quantize of what quantized");
  for (size_t i = 0; i < x.size(); ++i) {
    if (!same_float(y[i], back[i])) fail("dequantize differs from the reference at " + std::to_string(i));
    if (!same_float(fake[i], y[i])) fail("fake_quantize differs from dequantize(quantize) at " + std::to_string(i));
  }
  // A tail quantized on its own, from its index in the whole, is the whole's tail.
  size_t tail_from = l.block_size * (1 + x.size() / l.block_size / 2);
  bool divides = c.importance.empty() || (x.size() - tail_from) % c.importance.size() == 0;
  if (!scalar && tail_from < x.size() && divides) {
    std::vector<uint8_t> tail = quantized(c, std::vector<float>(x.begin() + tail_from, x.end()),
                                          c.options.first_index + tail_from);
    if (std::memcmp(tail.data(), q.data() + tail_from / l.block_size * l.block_bytes, tail.size()) != 0) {
      fail("quantizing the tail from element " + std::to_string(tail_from) + " differs from the whole's tail");
    }
  }
}

void run(Input &in) {
  Case c = read_case(in);
  if (in.byte() & 1) return check_dequantize_of_any_bytes(in, c.format);

  size_t size = 0;
  NyxqStatus s = NYXQ_CALL(nyxq_quantized_size, c.format, c.x.size(), &size);
  size_t dst_len = s == NYXQ_OK ? size : 64;
  uint8_t room = in.byte();
  if (room >= 0xf0 && dst_len > 0) dst_len -= 1 + room % dst_len;
  std::vector<uint8_t> q(dst_len + 1, 0xa5);
  s = NYXQ_CALL(nyxq_quantize, cpu_context(), c.format, c.x.data(), c.x.size(), &c.options, q.data(), dst_len);
  bool untouched = true;
  if (s != NYXQ_OK) {
    for (uint8_t b : q) untouched = untouched && b == 0xa5;
    if (!untouched) fail("nyxq_quantize wrote its destination and failed");
  }
  if (!c.well_formed) {
    if (s == NYXQ_OK) fail("nyxq_quantize accepted arguments out of their domain");
    return;
  }
  if (dst_len < size) {
    expect(s, NYXQ_ERROR_BUFFER_TOO_SMALL, "quantize into a short buffer");
    if (nyxq_last_error_needed_len() != size) fail("needed length is not nyxq_quantized_size");
    return;
  }
  if (c.options.non_finite == NYXQ_NON_FINITE_REJECT) {
    for (size_t i = 0; i < c.x.size(); ++i) {
      if (!ref::accepted(c.x[i], c.format)) {
        expect(s, NYXQ_ERROR_NON_FINITE, "quantize of a value beyond the format");
        if (nyxq_last_error_index() != static_cast<int64_t>(c.options.first_index + i)) {
          fail("nyxq_last_error_index is " + std::to_string(nyxq_last_error_index()) + ", not first_index + " +
               std::to_string(i));
        }
        return;
      }
    }
  }
  expect(s, NYXQ_OK, "quantize of values the format holds");
  if (q[dst_len] != 0xa5) fail("nyxq_quantize wrote past nyxq_quantized_size bytes");
  q.resize(dst_len);
  check_accepted(c, q);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return nyxq_fuzz::run_one(data, size, run);
}
