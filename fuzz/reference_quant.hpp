// An independent reference of nyxq's formats, written from docs/quant.md and
// the byte layouts of nyxq.h (ggml's): nearest rounding operation for
// operation, the magnitude limits, saturation, and dequantization. The fuzz
// targets compare nyxq's bytes and floats with it. Compiled with
// -ffp-contract=off: every product and sum is rounded on its own, as the
// definition says.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "nyxq.h"

namespace nyxq_reference {

inline uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
inline float float_of(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// v >> shift, rounded to nearest, ties to even.
inline uint32_t shift_nearest_even(uint32_t v, int shift) {
  uint32_t kept = v >> shift;
  uint32_t rest = v & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  return kept + ((rest > half || (rest == half && (kept & 1))) ? 1 : 0);
}

// IEEE binary16, round to nearest even (subnormals included, overflow to Inf).
inline uint16_t f16_bits(float x) {
  uint32_t b = bits_of(x);
  uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000);
  uint32_t a = b & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;                  // NaN
  if (a >= 0x477ff000) return sign | 0x7c00;                 // >= 65520: Inf
  if (a >= 0x38800000) {                                     // normal in f16
    return sign | static_cast<uint16_t>(shift_nearest_even(a - (112u << 23), 13));
  }
  if (a < 0x33000000) return sign;                           // <= 2^-25: zero
  uint32_t exponent = a >> 23;                               // subnormal in f16
  uint32_t mantissa = (a & 0x7fffff) | 0x800000;
  return sign | static_cast<uint16_t>(shift_nearest_even(mantissa, static_cast<int>(126 - exponent)));
}

inline float f16_value(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0x1f) return float_of(sign | 0x7f800000 | (mantissa << 13));
  if (exponent == 0) {
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return float_of(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// bfloat16: (bits + 0x7fff + ((bits >> 16) & 1)) >> 16, NaN kept NaN.
inline uint16_t bf16_bits(float x) {
  uint32_t b = bits_of(x);
  if ((b & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((b >> 16) | 0x40);
  return static_cast<uint16_t>((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}
inline float bf16_value(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

struct Layout {
  size_t block_size;
  size_t block_bytes;
};
inline Layout layout(int32_t format) {
  switch (format) {
    case NYXQ_FORMAT_F32: return {1, 4};
    case NYXQ_FORMAT_F16:
    case NYXQ_FORMAT_BF16: return {1, 2};
    case NYXQ_FORMAT_Q8_0: return {32, 34};
    case NYXQ_FORMAT_Q4_0: return {32, 18};
    case NYXQ_FORMAT_Q5_0: return {32, 22};
    case NYXQ_FORMAT_IQ4_NL: return {32, 18};
    case NYXQ_FORMAT_Q4_K: return {256, 144};
    case NYXQ_FORMAT_Q5_K: return {256, 176};
    case NYXQ_FORMAT_Q6_K: return {256, 210};
    default: return {32, 20};  // Q4_1
  }
}
// How many formats there are (their values run from 0).
constexpr int32_t kFormats = NYXQ_FORMAT_Q6_K + 1;
inline bool known_format(int32_t format) { return format >= NYXQ_FORMAT_F32 && format < kFormats; }
inline bool k_quant(int32_t format) {
  return format == NYXQ_FORMAT_Q4_K || format == NYXQ_FORMAT_Q5_K || format == NYXQ_FORMAT_Q6_K;
}

// IQ4_NL's levels (ggml's kvalues_iq4nl) and the index of the level nearest
// t as ggml's best_index_int8 finds it: a binary search between the ends,
// then the nearer of the two levels around t, the upper one on a tie.
const int8_t kIq4NlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
inline int iq4_nl_best_index(float t) {
  if (t <= kIq4NlLevels[0]) return 0;
  if (t >= kIq4NlLevels[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (t < kIq4NlLevels[mid]) hi = mid; else lo = mid;
  }
  return t - kIq4NlLevels[lo] < kIq4NlLevels[hi] - t ? lo : hi;
}

// IQ4_NL's nearest rounding (docs/quant.md): the first element of largest
// magnitude max; below 1e-15 the block is d = +0 with every index 8; else
// the indices nearest x/d0 with d0 = max/-127, and the stored scale the
// least-squares one for them with weights x^2, summed in element order on
// the block times 2^s (s brings the largest magnitude into [1, 2)).
inline float iq4_nl_block(const float *x, int *q) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax < 1e-15f) {
    for (int j = 0; j < 32; ++j) q[j] = 8;
    return 0.0f;
  }
  float id = 1.0f / (max / -127.0f);
  int e = std::ilogb(amax);
  float up = std::ldexp(1.0f, -e), down = std::ldexp(1.0f, e);
  float sumqx = 0.0f, sumq2 = 0.0f;
  for (int j = 0; j < 32; ++j) {
    q[j] = iq4_nl_best_index(x[j] * id);
    float xs = x[j] * up;
    float level = static_cast<float>(kIq4NlLevels[q[j]]);
    float wq = xs * xs * level;
    sumqx += wq * xs;
    sumq2 += wq * level;
  }
  return sumq2 > 0.0f ? sumqx / sumq2 * down : 0.0f;
}

// The exclusive magnitude limit: |x| below it is accepted (docs/quant.md,
// "Huge values": the first value whose result or f16 scale overflows).
inline float limit(int32_t format) {
  switch (format) {
    case NYXQ_FORMAT_F32: return INFINITY;
    case NYXQ_FORMAT_BF16: return float_of(0x7f7f8000);
    case NYXQ_FORMAT_Q4_0: return 524160.0f;
    case NYXQ_FORMAT_Q5_0: return 1048320.0f;
    case NYXQ_FORMAT_IQ4_NL: {
      // The smallest a whose worst block overflows the f16 scale: -a, then
      // 31 values just below 101/127 a (on the level 89, which lifts the
      // least-squares scale the most).
      static const float iq4 = [] {
        auto overflows = [](float a) {
          float id = 1.0f / (-a / -127.0f);
          float below = 101.0f / 127.0f * a;
          while (below * id >= 101.0f) below = float_of(bits_of(below) - 1);
          while (float_of(bits_of(below) + 1) * id < 101.0f) below = float_of(bits_of(below) + 1);
          float x[32];
          for (float &v : x) v = below;
          x[0] = -a;
          int q[32];
          return f16_bits(iq4_nl_block(x, q)) == 0x7c00;
        };
        uint32_t lo = bits_of(65520.0f * 100), hi = bits_of(65520.0f * 128);
        while (lo < hi) {
          uint32_t mid = lo + (hi - lo) / 2;
          if (overflows(float_of(mid))) hi = mid; else lo = mid + 1;
        }
        return float_of(lo);
      }();
      return iq4;
    }
    case NYXQ_FORMAT_Q4_K:
    case NYXQ_FORMAT_Q5_K: return 4127760.0f;  // dmin = max(-min)/63 finite in f16
    case NYXQ_FORMAT_Q6_K: return 268369920.0f;  // d = max/4096 finite in f16
    case NYXQ_FORMAT_Q8_0: {
      // The smallest a whose scale a/127 rounds to Inf in f16.
      static const float q8 = [] {
        uint32_t lo = bits_of(65520.0f), hi = bits_of(65520.0f * 128);
        while (lo < hi) {
          uint32_t mid = lo + (hi - lo) / 2;
          if (f16_bits(float_of(mid) / 127.0f) == 0x7c00) hi = mid; else lo = mid + 1;
        }
        return float_of(lo);
      }();
      return q8;
    }
    default: return 65520.0f;  // F16, Q4_1
  }
}

// What saturation clamps to: the largest value of the format below the limit
// (of f32 for F32, Q8_0 and Q4_0, whose f32 inputs are scaled).
inline float saturation_bound(int32_t format) {
  switch (format) {
    case NYXQ_FORMAT_F32: return FLT_MAX;
    case NYXQ_FORMAT_BF16: return float_of(0x7f7f0000);
    case NYXQ_FORMAT_F16:
    case NYXQ_FORMAT_Q4_1: return 65504.0f;
    default: return float_of(bits_of(limit(format)) - 1);
  }
}

inline bool accepted(float x, int32_t format) { return std::fabs(x) < limit(format); }

inline float saturated(float x, int32_t format) {
  if (std::isnan(x)) return 0.0f;
  float bound = saturation_bound(format);
  return x > bound ? bound : (x < -bound ? -bound : x);
}

// The reciprocal of a block scale; 0 below the smallest normal float, which
// puts every quant at the zero point (docs/quant.md, "Subnormal and zero blocks").
inline float inverse_scale(float d) { return std::fabs(d) >= FLT_MIN ? 1.0f / d : 0.0f; }

inline void put_f16(uint8_t *out, float x) {
  uint16_t h = f16_bits(x);
  std::memcpy(out, &h, 2);
}
inline float get_f16(const uint8_t *in) {
  uint16_t h;
  std::memcpy(&h, in, 2);
  return f16_value(h);
}

// A block's scale d in f32, before it is stored as f16 (and Q4_1's minimum).
struct BlockScale {
  float d;
  float min;
};
inline BlockScale block_scale(int32_t format, const float *x) {
  if (format == NYXQ_FORMAT_Q8_0) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    return {amax / 127.0f, 0.0f};
  }
  if (format == NYXQ_FORMAT_Q4_0 || format == NYXQ_FORMAT_Q5_0 || format == NYXQ_FORMAT_IQ4_NL) {
    // The first element of largest magnitude, with its sign (IQ4_NL: the
    // scale of stochastic rounding).
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    float zero = format == NYXQ_FORMAT_Q4_0 ? -8.0f : (format == NYXQ_FORMAT_Q5_0 ? -16.0f : -127.0f);
    return {max / zero, 0.0f};
  }
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  return {(max - min) / 15.0f, min};
}

// The largest quant magnitude a block holds (for error bounds).
inline float largest_quant(int32_t format) {
  switch (format) {
    case NYXQ_FORMAT_Q8_0: return 127.0f;
    case NYXQ_FORMAT_Q4_0: return 8.0f;
    case NYXQ_FORMAT_Q5_0: return 16.0f;
    case NYXQ_FORMAT_IQ4_NL: return 127.0f;
    default: return 15.0f;
  }
}

// ---- K-quants (docs/quant.md, "K-quants") ----

// The top level of Q4_K (15) or Q5_K (31).
inline float k_top(int32_t format) { return format == NYXQ_FORMAT_Q4_K ? 15.0f : 31.0f; }

// Q4_K or Q5_K nearest rounding of a super-block of 256.
inline void quantize_affine_k(int32_t format, const float *x, uint8_t *out) {
  float top = k_top(format);
  float scale[8], min[8], largest_scale = 0.0f, largest_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int i = 0; i < 32; ++i) {
      if (x[32 * j + i] < lo) lo = x[32 * j + i];
      if (x[32 * j + i] > hi) hi = x[32 * j + i];
    }
    if (lo > 0.0f) lo = 0.0f;
    scale[j] = (hi - lo) / top;
    min[j] = -lo;
    if (scale[j] > largest_scale) largest_scale = scale[j];
    if (min[j] > largest_min) largest_min = min[j];
  }
  float d = f16_value(f16_bits(largest_scale / 63.0f)), dmin = f16_value(f16_bits(largest_min / 63.0f));
  float id = inverse_scale(d), idmin = inverse_scale(dmin);
  uint8_t sc[8], m[8], q[256];
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(std::fmin(63.0f, std::trunc(scale[j] * id + 0.5f)));
    m[j] = static_cast<uint8_t>(std::fmin(63.0f, std::trunc(min[j] * idmin + 0.5f)));
    float step = d * static_cast<float>(sc[j]), offset = dmin * static_cast<float>(m[j]);
    float istep = inverse_scale(step);
    for (int i = 0; i < 32; ++i) {
      float level = std::trunc((x[32 * j + i] + offset) * istep + 0.5f);
      q[32 * j + i] = static_cast<uint8_t>(std::fmax(0.0f, std::fmin(top, level)));
    }
  }
  put_f16(out, d);
  put_f16(out + 2, dmin);
  uint8_t *scales = out + 4;
  std::memset(scales, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] |= sc[j];
      scales[j + 4] |= m[j];
    } else {
      scales[j + 4] = static_cast<uint8_t>((sc[j] & 0xf) | ((m[j] & 0xf) << 4));
      scales[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      scales[j] |= static_cast<uint8_t>((m[j] >> 4) << 6);
    }
  }
  uint8_t *qs = out + (format == NYXQ_FORMAT_Q4_K ? 16 : 48);
  if (format == NYXQ_FORMAT_Q5_K) {
    uint8_t *qh = out + 16;
    std::memset(qh, 0, 32);
    for (int e = 0; e < 256; ++e) qh[e % 32] |= static_cast<uint8_t>((q[e] >> 4) << (e / 32));
  }
  for (int c = 0; c < 4; ++c) {
    for (int i = 0; i < 32; ++i) {
      qs[32 * c + i] = static_cast<uint8_t>((q[64 * c + i] & 0xf) | ((q[64 * c + 32 + i] & 0xf) << 4));
    }
  }
}

// Sub-block j's scale and minimum of Q4_K or Q5_K.
inline void affine_k_scale_min(const uint8_t *block, int j, float *step, float *offset) {
  const uint8_t *s = block + 4;
  int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
  int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  *step = get_f16(block) * static_cast<float>(sc);
  *offset = get_f16(block + 2) * static_cast<float>(m);
}

inline void dequantize_affine_k(int32_t format, const uint8_t *in, float *y) {
  const uint8_t *qs = in + (format == NYXQ_FORMAT_Q4_K ? 16 : 48);
  for (int e = 0; e < 256; ++e) {
    uint8_t byte = qs[32 * (e / 64) + e % 32];
    int q = e % 64 < 32 ? byte & 0xf : byte >> 4;
    if (format == NYXQ_FORMAT_Q5_K) q |= ((in[16 + e % 32] >> (e / 32)) & 1) << 4;
    float step, offset;
    affine_k_scale_min(in, e / 32, &step, &offset);
    y[e] = step * static_cast<float>(q) - offset;
  }
}

// The first element of largest magnitude, with its sign.
inline float signed_max(const float *x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

inline void quantize_q6_k(const float *x, uint8_t *out) {
  float scale[16];
  for (int j = 0; j < 16; ++j) scale[j] = signed_max(x + 16 * j, 16) / -32.0f;
  float d = f16_value(f16_bits(signed_max(scale, 16) / -128.0f));
  float id = inverse_scale(d);
  int8_t sc[16];
  uint8_t q[256];
  for (int j = 0; j < 16; ++j) {
    sc[j] = static_cast<int8_t>(std::fmax(-128.0f, std::fmin(127.0f, std::round(scale[j] * id))));
    float istep = inverse_scale(d * static_cast<float>(sc[j]));
    for (int i = 0; i < 16; ++i) {
      float level = std::fmax(-32.0f, std::fmin(31.0f, std::round(x[16 * j + i] * istep)));
      q[16 * j + i] = static_cast<uint8_t>(static_cast<int>(level) + 32);
    }
  }
  uint8_t *ql = out, *qh = out + 128;
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t *v = q + 128 * h + l;
      ql[64 * h + l] = static_cast<uint8_t>((v[0] & 0xf) | ((v[64] & 0xf) << 4));
      ql[64 * h + 32 + l] = static_cast<uint8_t>((v[32] & 0xf) | ((v[96] & 0xf) << 4));
      qh[32 * h + l] = static_cast<uint8_t>((v[0] >> 4) | ((v[32] >> 4) << 2) | ((v[64] >> 4) << 4) | ((v[96] >> 4) << 6));
    }
  }
  for (int j = 0; j < 16; ++j) out[192 + j] = static_cast<uint8_t>(sc[j]);
  put_f16(out + 208, d);
}

// Sub-block j's scale of Q6_K.
inline float q6_k_step(const uint8_t *block, int j) {
  return get_f16(block + 208) * static_cast<float>(static_cast<int8_t>(block[192 + j]));
}

inline void dequantize_q6_k(const uint8_t *in, float *y) {
  for (int e = 0; e < 256; ++e) {
    int h = e / 128, k = e % 128 / 32, l = e % 32;
    uint8_t byte = in[64 * h + 32 * (k % 2) + l];
    int low = k < 2 ? byte & 0xf : byte >> 4;
    int high = (in[128 + 32 * h + l] >> (2 * k)) & 3;
    y[e] = q6_k_step(in, e / 16) * static_cast<float>((low | (high << 4)) - 32);
  }
}

// The magnitude of the step of element e's sub-block in a K-quant block.
inline float k_step(int32_t format, const uint8_t *block, int e) {
  if (format == NYXQ_FORMAT_Q6_K) return std::fabs(q6_k_step(block, e / 16));
  float step, offset;
  affine_k_scale_min(block, e / 32, &step, &offset);
  return step;
}

// Where a K-quant block keeps its scales (the bytes stochastic rounding
// shares with nearest): the header of Q4_K and Q5_K, Q6_K's tail.
inline std::pair<size_t, size_t> k_scale_bytes(int32_t format) {
  return format == NYXQ_FORMAT_Q6_K ? std::pair<size_t, size_t>{192, 18} : std::pair<size_t, size_t>{0, 16};
}

// The widest distance between two neighbouring levels, in steps of d
// (IQ4_NL's 89 to 113; 1 for the uniform formats).
inline float widest_gap(int32_t format) { return format == NYXQ_FORMAT_IQ4_NL ? 24.0f : 1.0f; }

// Nearest rounding of one block (32 values for Q formats, 256 for K-quants, 1 otherwise).
inline void quantize_block(int32_t format, const float *x, uint8_t *out) {
  switch (format) {
    case NYXQ_FORMAT_Q4_K:
    case NYXQ_FORMAT_Q5_K: quantize_affine_k(format, x, out); return;
    case NYXQ_FORMAT_Q6_K: quantize_q6_k(x, out); return;
    case NYXQ_FORMAT_F32: std::memcpy(out, x, 4); return;
    case NYXQ_FORMAT_F16: put_f16(out, x[0]); return;
    case NYXQ_FORMAT_BF16: {
      uint16_t h = bf16_bits(x[0]);
      std::memcpy(out, &h, 2);
      return;
    }
    case NYXQ_FORMAT_Q8_0: {
      float d = block_scale(format, x).d;
      float id = inverse_scale(d);
      put_f16(out, d);
      for (int j = 0; j < 32; ++j) out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
      return;
    }
    case NYXQ_FORMAT_Q4_0: {
      float d = block_scale(format, x).d;
      float id = inverse_scale(d);
      put_f16(out, d);
      for (int j = 0; j < 16; ++j) {
        int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
        int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
        out[2 + j] = static_cast<uint8_t>(lo | (hi << 4));
      }
      return;
    }
    case NYXQ_FORMAT_Q5_0: {
      // The low four bits as Q4_0 packs them; bit j of the 32-bit qh is the
      // fifth bit of element j.
      float d = block_scale(format, x).d;
      float id = inverse_scale(d);
      put_f16(out, d);
      uint32_t qh = 0;
      for (int j = 0; j < 16; ++j) {
        int lo = std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f)));
        int hi = std::min(31, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 16.5f)));
        out[6 + j] = static_cast<uint8_t>((lo & 0xf) | ((hi & 0xf) << 4));
        qh |= static_cast<uint32_t>(lo >> 4) << j;
        qh |= static_cast<uint32_t>(hi >> 4) << (j + 16);
      }
      for (int k = 0; k < 4; ++k) out[2 + k] = static_cast<uint8_t>(qh >> (8 * k));
      return;
    }
    case NYXQ_FORMAT_IQ4_NL: {
      int q[32];
      put_f16(out, iq4_nl_block(x, q));
      for (int j = 0; j < 16; ++j) out[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
      return;
    }
    default: {  // Q4_1
      BlockScale scale = block_scale(format, x);
      float d = scale.d, min = scale.min;
      float id = inverse_scale(d);
      put_f16(out, d);
      put_f16(out + 2, min);
      for (int j = 0; j < 16; ++j) {
        int lo = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
        int hi = std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - min) * id + 0.5f)));
        out[4 + j] = static_cast<uint8_t>(lo | (hi << 4));
      }
      return;
    }
  }
}

// The values one block holds.
inline void dequantize_block(int32_t format, const uint8_t *in, float *y) {
  switch (format) {
    case NYXQ_FORMAT_Q4_K:
    case NYXQ_FORMAT_Q5_K: dequantize_affine_k(format, in, y); return;
    case NYXQ_FORMAT_Q6_K: dequantize_q6_k(in, y); return;
    case NYXQ_FORMAT_F32: std::memcpy(y, in, 4); return;
    case NYXQ_FORMAT_F16: y[0] = get_f16(in); return;
    case NYXQ_FORMAT_BF16: {
      uint16_t h;
      std::memcpy(&h, in, 2);
      y[0] = bf16_value(h);
      return;
    }
    case NYXQ_FORMAT_Q8_0: {
      float d = get_f16(in);
      for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(in[2 + j]));
      return;
    }
    case NYXQ_FORMAT_Q4_0: {
      float d = get_f16(in);
      for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>((in[2 + j] & 0xf) - 8);
        y[j + 16] = d * static_cast<float>((in[2 + j] >> 4) - 8);
      }
      return;
    }
    case NYXQ_FORMAT_Q5_0: {
      float d = get_f16(in);
      uint32_t qh = 0;
      for (int k = 0; k < 4; ++k) qh |= static_cast<uint32_t>(in[2 + k]) << (8 * k);
      for (int j = 0; j < 16; ++j) {
        int lo = (in[6 + j] & 0xf) | static_cast<int>(((qh >> j) & 1) << 4);
        int hi = (in[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * static_cast<float>(lo - 16);
        y[j + 16] = d * static_cast<float>(hi - 16);
      }
      return;
    }
    case NYXQ_FORMAT_IQ4_NL: {
      float d = get_f16(in);
      for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(kIq4NlLevels[in[2 + j] & 0xf]);
        y[j + 16] = d * static_cast<float>(kIq4NlLevels[in[2 + j] >> 4]);
      }
      return;
    }
    default: {  // Q4_1: a product, then a sum
      float d = get_f16(in), m = get_f16(in + 2);
      for (int j = 0; j < 16; ++j) {
        float lo = d * static_cast<float>(in[4 + j] & 0xf);
        float hi = d * static_cast<float>(in[4 + j] >> 4);
        y[j] = lo + m;
        y[j + 16] = hi + m;
      }
      return;
    }
  }
}

inline std::vector<uint8_t> quantize(int32_t format, const std::vector<float> &x) {
  Layout l = layout(format);
  std::vector<uint8_t> out(x.size() / l.block_size * l.block_bytes);
  for (size_t b = 0; b * l.block_size < x.size(); ++b) {
    quantize_block(format, x.data() + b * l.block_size, out.data() + b * l.block_bytes);
  }
  return out;
}

inline std::vector<float> dequantize(int32_t format, const uint8_t *bytes, size_t len) {
  Layout l = layout(format);
  std::vector<float> y(len / l.block_bytes * l.block_size);
  for (size_t b = 0; b < len / l.block_bytes; ++b) {
    dequantize_block(format, bytes + b * l.block_bytes, y.data() + b * l.block_size);
  }
  return y;
}

}  // namespace nyxq_reference
