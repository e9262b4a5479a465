// Shared by matvec.comp and matvec_t.comp: bindings, push constants, and the
// decoding of W's rows from 32-bit words. FORMAT_* is set by the variant table.
// Push-constant twin: src/vk/family.rs `MatvecPush` (sizes checked by the build).
//
// W is read as uint words only (no 8/16-bit storage) and f16 values are
// decoded with unpackHalf2x16 (no FP16 arithmetic), so every variant runs on
// devices without the optional features. Every block size is even, so a value
// starts on a 16-bit boundary: `bits32` reads 32 bits at any halfword.

#define MAX_BATCH 8
#define MAX_ROWS 8

// Vectors per call (1..8) and, forward only, rows per workgroup (1..8): set
// when the pipeline is made, so the loops over them unroll into registers.
layout(constant_id = 0) const uint BATCH = 1u;
layout(constant_id = 1) const uint NUM_ROWS = 1u;

layout(std430, binding = 0) restrict readonly buffer W { uint w[]; };
// The same words, 16 bytes at a time (for 4 values of F32 that start on a
// 16-byte boundary).
layout(std430, binding = 0) restrict readonly buffer W4 { uvec4 w4[]; };
// And 8 bytes at a time (for 4 values of F16/BF16 on an 8-byte boundary).
layout(std430, binding = 0) restrict readonly buffer W2 { uvec2 w2[]; };
layout(std430, binding = 1) restrict readonly buffer X { float x[]; };
layout(std430, binding = 2) restrict readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) buffer Y { float y[]; };

layout(push_constant) uniform Push {
    uint rows;        // rows of W in this dispatch
    uint cols;
    uint row_first;   // index of this dispatch's first row in the whole matrix
    uint total_rows;  // rows of the whole matrix (stride of y, or of x transposed)
    uint w_half;      // halfword of binding 0 where this dispatch's first row starts
    uint row_halves;  // halfwords per row
    uint has_bias;    // forward: add bias[row]
    uint accumulate;  // transposed: add to y (the row chunks after the first)
} pc;

#if defined(FORMAT_Q8_0)
#define BLOCK_HALVES 17u
#elif defined(FORMAT_Q4_0)
#define BLOCK_HALVES 9u
#elif defined(FORMAT_Q4_1)
#define BLOCK_HALVES 10u
#elif defined(FORMAT_Q5_0)
#define BLOCK_HALVES 11u
#elif defined(FORMAT_IQ4_NL)
#define BLOCK_HALVES 9u
#include "iq4_nl.glsl"
#endif

// The 32 bits of W starting at halfword h.
uint bits32(uint h) {
    uint i = h >> 1;
    if ((h & 1u) == 0u) {
        return w[i];
    }
    return (w[i] >> 16) | (w[i + 1u] << 16);
}

uint half_at(uint h) {
    return (w[h >> 1] >> ((h & 1u) * 16u)) & 0xffffu;
}

// Forward kernels: stores output r (of the workgroup's rows from row0) of
// vector b, plus the row's bias when there is one; rows past the dispatch
// are dropped.
void put(uint row0, uint r, uint b, float v) {
    if (row0 + r >= pc.rows) {
        return;
    }
    uint row = pc.row_first + row0 + r;
    if (pc.has_bias != 0u) {
        v += bias[row];
    }
    y[b * pc.total_rows + row] = v;
}

// First halfword of row r (within this dispatch).
uint row_base(uint r) {
    return pc.w_half + r * pc.row_halves;
}

// A row is processed in blocks of 32 values, each in 4 steps of 8 values.
// Element (within the row) of value i of step s of block k: for the 4-bit
// formats and Q5_0, step s is qs word s (values 4s..4s+3 in its low nibbles,
// 4s+16..4s+19 in its high ones); otherwise 8 consecutive values.
uint element(uint k, uint s, uint i) {
#if defined(FORMAT_Q4_0) || defined(FORMAT_Q4_1) || defined(FORMAT_Q5_0) || defined(FORMAT_IQ4_NL)
    return k * 32u + (i < 4u ? 4u * s + i : 12u + 4u * s + i);
#else
    return k * 32u + 8u * s + i;
#endif
}

// The scale (and minimum) of block k of the row at `base`; unused for the
// 1-value formats.
vec2 block_scale(uint base, uint k) {
#if defined(FORMAT_Q4_1)
    return unpackHalf2x16(bits32(base + k * BLOCK_HALVES));
#elif defined(BLOCK_HALVES)
    return vec2(unpackHalf2x16(half_at(base + k * BLOCK_HALVES)).x, 0.0);
#else
    return vec2(0.0);
#endif
}

#ifndef BLOCK_HALVES
// One value of a 1-value format at element e of the row at `base`.
float plain_value(uint base, uint e) {
#if defined(FORMAT_F32)
    return uintBitsToFloat(bits32(base + 2u * e));
#elif defined(FORMAT_F16)
    return unpackHalf2x16(half_at(base + e)).x;
#else
    return uintBitsToFloat(half_at(base + e) << 16);
#endif
}
#endif

// The 4 weights of half h of step s of block k of the row at `base` (the
// values element(k, s, 4h) .. element(k, s, 4h + 3)), dequantized exactly as
// the CPU does (d*q, d*q + m and the f16/bf16 conversions are exact in f32).
// Values past `cols` (1-value formats only) are 0.
void weights4(uint base, uint k, uint s, uint h, vec2 scale, out float wv[4]) {
#if defined(FORMAT_Q4_0) || defined(FORMAT_Q4_1) || defined(FORMAT_IQ4_NL)
#if defined(FORMAT_Q4_0) || defined(FORMAT_IQ4_NL)
    uint qw = bits32(base + k * BLOCK_HALVES + 1u + 2u * s);
#else
    uint qw = bits32(base + k * BLOCK_HALVES + 2u + 2u * s);
#endif
    for (uint i = 0u; i < 4u; ++i) {
        uint q = (qw >> (8u * i + 4u * h)) & 15u;
#if defined(FORMAT_Q4_0)
        wv[i] = scale.x * float(int(q) - 8);
#elif defined(FORMAT_IQ4_NL)
        wv[i] = scale.x * iq4_nl_level(q);
#else
        wv[i] = scale.x * float(q) + scale.y;
#endif
    }
#elif defined(FORMAT_Q5_0)
    // qh at halfword 1 of the block, qs at 3; bit 4s + 16h + i of qh is the
    // fifth bit of the value of byte i's nibble h.
    uint qh = bits32(base + k * BLOCK_HALVES + 1u) >> (4u * s + 16u * h);
    uint qw = bits32(base + k * BLOCK_HALVES + 3u + 2u * s);
    for (uint i = 0u; i < 4u; ++i) {
        uint q = ((qw >> (8u * i + 4u * h)) & 15u) | (((qh >> i) & 1u) << 4);
        wv[i] = scale.x * float(int(q) - 16);
    }
#elif defined(FORMAT_Q8_0)
    uint qw = bits32(base + k * BLOCK_HALVES + 1u + 4u * s + 2u * h);
    for (uint i = 0u; i < 4u; ++i) {
        wv[i] = scale.x * float(int(qw << (24u - 8u * i)) >> 24);
    }
#else
    uint e0 = element(k, s, 4u * h);
    if (e0 + 4u <= pc.cols) {
#if defined(FORMAT_F32)
        uint at = base + 2u * e0;
        uvec4 v = at % 8u == 0u
            ? w4[at / 8u]
            : uvec4(bits32(at), bits32(at + 2u), bits32(at + 4u), bits32(at + 6u));
        wv = float[4](uintBitsToFloat(v.x), uintBitsToFloat(v.y), uintBitsToFloat(v.z),
                      uintBitsToFloat(v.w));
#else
        uint at = base + e0;
        uvec2 v = (at & 3u) == 0u ? w2[at / 4u] : uvec2(bits32(at), bits32(at + 2u));
        uint pairs[2] = uint[2](v.x, v.y);
        for (uint j = 0u; j < 2u; ++j) {
#if defined(FORMAT_F16)
            vec2 v = unpackHalf2x16(pairs[j]);
            wv[2u * j] = v.x;
            wv[2u * j + 1u] = v.y;
#else
            wv[2u * j] = uintBitsToFloat(pairs[j] << 16);
            wv[2u * j + 1u] = uintBitsToFloat(pairs[j] & 0xffff0000u);
#endif
        }
#endif
    } else {
        for (uint i = 0u; i < 4u; ++i) {
            wv[i] = e0 + i < pc.cols ? plain_value(base, e0 + i) : 0.0;
        }
    }
#endif
}
