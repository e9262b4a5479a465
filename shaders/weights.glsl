// W's rows decoded from 32-bit words, shared by the product kernels
// (matvec.comp, matvec_t.comp, matvec_dot.comp, matmul.comp,
// matmul_coop.comp). FORMAT_* is set by the variant table. The including
// kernel declares its push-constant block `pc` first, with the members
// `cols` (values per row), `w_half` (halfword of binding 0 where the
// dispatch's first row starts) and `row_halves` (halfwords per row).
//
// W is read as uint words only (no 8/16-bit storage) and f16 values are
// decoded with unpackHalf2x16 (no FP16 arithmetic), so every kernel that
// decodes W this way runs on devices without the optional features. Every
// block size is even, so a value starts on a 16-bit boundary: `bits32` reads
// 32 bits at any halfword.

layout(std430, binding = 0) restrict readonly buffer W { uint w[]; };
// The same words, 16 bytes at a time (for 4 values of F32 that start on a
// 16-byte boundary).
layout(std430, binding = 0) restrict readonly buffer W4 { uvec4 w4[]; };
// And 8 bytes at a time (for 4 values of F16/BF16 on an 8-byte boundary).
layout(std430, binding = 0) restrict readonly buffer W2 { uvec2 w2[]; };

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
#elif defined(FORMAT_Q4_K) || defined(FORMAT_Q5_K) || defined(FORMAT_Q6_K)
// The K-quants: "block" k of a row is its values 32k .. 32k+31, sub-block
// k % 8 of super-block k / 8 (Q6_K: sub-blocks 2(k % 8) and 2(k % 8) + 1);
// BLOCK_HALVES is a super-block's.
#define KQUANT
#define K_HALF(h) unpackHalf2x16(h).x
#include "kquant.glsl"
#define BLOCK_HALVES (SUPER_BYTES / 2u)
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
#if defined(AFFINE_K)
    // (d·sc, dmin·m) of sub-block k % 8.
    uint sb = base + k / 8u * BLOCK_HALVES;
    return affine_scale(bits32(sb), uvec3(bits32(sb + 2u), bits32(sb + 4u), bits32(sb + 6u)), k % 8u);
#elif defined(KQUANT)
    // d·sc of sub-blocks 2(k % 8) and 2(k % 8) + 1 (bytes of one halfword).
    uint sb = base + k / 8u * BLOCK_HALVES;
    uint d = half_at(sb + KD_AT / 2u);
    uint sc = half_at(sb + KSCALES_AT / 2u + k % 8u);
    return vec2(q6_scale(d, sc & 0xffu), q6_scale(d, sc >> 8));
#elif defined(FORMAT_Q4_1)
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
#if defined(AFFINE_K)
    // Values i0 .. i0+3 of sub-block j: qs bytes 32(j / 2) + i0 .., nibble
    // j % 2 (Q5_K: and bit j of qh bytes i0 ..).
    uint sb = base + k / 8u * BLOCK_HALVES;
    uint j = k % 8u;
    uint i0 = 8u * s + 4u * h;
    uint qs = bits32(sb + (KQS_AT + 32u * (j / 2u) + i0) / 2u);
#if defined(FORMAT_Q5_K)
    uint qh = bits32(sb + (KQH_AT + i0) / 2u);
#else
    uint qh = 0u;
#endif
    uvec4 q = affine_levels(qs, qh, j);
    for (uint i = 0u; i < 4u; ++i) {
        wv[i] = affine_value(q[i], scale);
    }
#elif defined(KQUANT)
    uint sb = base + k / 8u * BLOCK_HALVES;
    uvec4 place = q6_places(32u * (k % 8u) + 8u * s + 4u * h);
    uvec4 q = q6_levels(bits32(sb + place.x / 2u), bits32(sb + place.z / 2u), place);
    float sub_scale = s < 2u ? scale.x : scale.y;
    for (uint i = 0u; i < 4u; ++i) {
        wv[i] = q6_value(q[i], sub_scale);
    }
#elif defined(FORMAT_Q4_0) || defined(FORMAT_Q4_1) || defined(FORMAT_IQ4_NL)
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
