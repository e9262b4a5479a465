// The block formats, byte for byte as crate::quant::scalar: quantize one block
// of 32 values into its bytes, and back. FORMAT_* is set by the variant table.

#define QK 32

#if defined(FORMAT_Q4_K) || defined(FORMAT_Q5_K) || defined(FORMAT_Q6_K)
#define KQUANT
#include "kquant.glsl"
#endif

#if defined(FORMAT_Q8_0)
#define BLOCK_BYTES 34
#elif defined(FORMAT_Q4_0)
#define BLOCK_BYTES 18
#elif defined(FORMAT_Q4_1)
#define BLOCK_BYTES 20
#elif defined(FORMAT_Q5_0)
#define BLOCK_BYTES 22
#elif defined(FORMAT_IQ4_NL)
#define BLOCK_BYTES 18
#endif

#ifdef BLOCK_BYTES

// Q4_0 and Q5_0 store q + ZERO_POINT, levels 0 .. 2 * ZERO_POINT - 1 (TOP),
// and their scale is d = max / -ZERO_POINT (ZERO_POINT = 2^ZERO_LOG2).
#if defined(FORMAT_Q4_0)
#define OFFSET_LEVELS
const float ZERO_POINT = 8.0;
const float TOP = 15.0;
const uint ZERO_LOG2 = 3u;
#elif defined(FORMAT_Q5_0)
#define OFFSET_LEVELS
const float ZERO_POINT = 16.0;
const float TOP = 31.0;
const uint ZERO_LOG2 = 4u;
#endif

#if defined(FORMAT_IQ4_NL)
#include "iq4_nl.glsl"

// The index of the level nearest t, ties to the upper one: the number of
// midpoints between neighbouring levels at or below t (ggml's
// best_index_int8; scalar::iq4_nl_index). The midpoints are literals, not
// a constant array indexed in a loop: glslang copies such an array into a
// per-invocation variable at every call, which drivers must then take apart
// (lavapipe took 5x as long to create the IQ4_NL quantizers' pipelines).
uint iq4_nl_index(float t) {
    return uint(t >= -115.5) + uint(t >= -93.5) + uint(t >= -74.0) + uint(t >= -57.0) +
           uint(t >= -42.0) + uint(t >= -28.5) + uint(t >= -16.0) + uint(t >= -4.5) +
           uint(t >= 7.0) + uint(t >= 19.0) + uint(t >= 31.5) + uint(t >= 45.5) +
           uint(t >= 61.0) + uint(t >= 79.0) + uint(t >= 101.0);
}

// Stochastic rounding of t between its neighbouring levels lo <= t < hi:
// the upper one when u * (hi - lo) < t - lo (scalar::iq4_nl_index_stochastic).
uint iq4_nl_index_stochastic(float t, float u) {
    if (t >= iq4_nl_level(15u)) {
        return 15u;
    }
    uint k = 0u;
    for (uint i = 1u; i < 16u; ++i) {
        k += t >= iq4_nl_level(i) ? 1u : 0u;
    }
    float lo = iq4_nl_level(k);
    precise float gap = iq4_nl_level(k + 1u) - lo;
    precise float scaled = u * gap;
    precise float above = t - lo;
    return k + (scaled < above ? 1u : 0u);
}
#endif

uint clamp_quant(float y, float hi) {
    if (isnan(y)) {
        return 0u;
    }
    return uint(clamp(trunc(y), 0.0, hi));
}

// What a block's quants are computed from: the scale d, its inverse id, the
// minimum m (Q4_1) and the block's header bytes (f16 d, then f16 m for Q4_1)
// as one little-endian word.
struct BlockParams {
    float d;
    float id;
    float m;
    uint header;
};

// The nearest quant of a value whose product with the block's inverse scale
// (Q4_1: of its difference with the minimum) is v.
uint quant_nearest(float v) {
#if defined(FORMAT_IQ4_NL)
    return iq4_nl_index(v);
#elif defined(FORMAT_Q8_0)
    return uint(int(round_half_away_small(v))) & 0xffu; // |v| <= 127 * (1 + 2^-23)
#elif defined(OFFSET_LEVELS)
    precise float y = v + (ZERO_POINT + 0.5);
    return clamp_quant(y, TOP);
#else
    precise float y = v + 0.5;
    return clamp_quant(y, 15.0);
#endif
}

// The quant of one value of a block (its low 8 bits for Q8_0, 0..15 for the
// 4-bit formats, 0..31 for Q5_0). `index_lo/hi` is the value's index in the
// whole tensor.
uint quant_one(float x, BlockParams p, bool stochastic, uint seed_lo, uint seed_hi, uint index_lo,
               uint index_hi) {
#if defined(FORMAT_IQ4_NL)
    // The product as the CPU rounds it, x subnormal included: stochastic
    // rounding compares u * 11 with t + 10 (ulp 2^-20), which a product of
    // up to 2^-19 from a flushed subnormal x would change. Only a product
    // below 2^-126 may come back as zero, and then t + 10 = 10 on both sides.
    float t = mul_exact(x, p.id);
    if (stochastic) {
        return iq4_nl_index_stochastic(t, rng_uniform(seed_lo, seed_hi, index_lo, index_hi));
    }
    return iq4_nl_index(t);
#elif defined(FORMAT_Q8_0)
    float v = mul_exact(x, p.id);
    if (stochastic) {
        precise float y = v + rng_uniform(seed_lo, seed_hi, index_lo, index_hi);
        return uint(int(clamp(floor(y), -127.0, 127.0))) & 0xffu;
    }
    return quant_nearest(v);
#elif defined(OFFSET_LEVELS)
    float v = mul_exact(x, p.id);
    if (stochastic) {
        precise float y = v + ZERO_POINT;
        precise float z = y + rng_uniform(seed_lo, seed_hi, index_lo, index_hi);
        return isnan(z) ? 0u : uint(clamp(floor(z), 0.0, TOP));
    }
    return quant_nearest(v);
#elif defined(FORMAT_Q4_1)
    bool scaled;
    float t = sub_scaled(x, p.m, scaled);
    precise float prod = t * p.id;
    precise float v = scaled ? prod * TWO_M24 : prod;
    if (stochastic) {
        precise float z = v + rng_uniform(seed_lo, seed_hi, index_lo, index_hi);
        return isnan(z) ? 0u : uint(clamp(floor(z), 0.0, 15.0));
    }
    return quant_nearest(v);
#endif
}

// The value d * q (+ m for Q4_1) of a quant as the block stores it (its
// byte: Q8_0's two's complement, the nibble formats' 0..15, Q5_0's 0..31;
// IQ4_NL's level of its index), as crate::quant::scalar dequantizes it. The byte, Q8_0's with its sign bit
// flipped, is q + QUANT_BIAS; read as the float 2^23 + byte (or'ed into
// 0x4b000000) less 2^23 + QUANT_BIAS it is exactly q, with no int -> float
// conversion (NVIDIA documents those at 1/8 of its f32 rate).
#if defined(FORMAT_Q8_0)
const float QUANT_BIAS = 128.0;
const uint QUANT_FLIP = 0x80u;
#elif defined(OFFSET_LEVELS)
const float QUANT_BIAS = ZERO_POINT;
const uint QUANT_FLIP = 0u;
#else
const float QUANT_BIAS = 0.0;
const uint QUANT_FLIP = 0u;
#endif
float quant_value(uint byte, float d, float m) {
#if defined(FORMAT_IQ4_NL)
    precise float q = iq4_nl_level(byte);
#else
    precise float q = uintBitsToFloat((byte ^ QUANT_FLIP) | 0x4b000000u) - (8388608.0 + QUANT_BIAS);
#endif
    precise float v = d * q;
#if defined(FORMAT_Q4_1)
    precise float s = v + m;
    return s;
#else
    return v;
#endif
}

// The byte offset of the quants in a block: after d (Q8_0, Q4_0), d and m
// (Q4_1), or d and the 4 bytes of fifth bits qh (Q5_0).
#if defined(FORMAT_Q4_1)
const uint QS_AT = 4u;
#elif defined(FORMAT_Q5_0)
const uint QS_AT = 6u;
#else
const uint QS_AT = 2u;
#endif

#if defined(FORMAT_Q5_0)
#include "fifth_bits.glsl"
#endif

#endif
