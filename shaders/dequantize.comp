#version 450
#extension GL_GOOGLE_include_directive : require
// FORMAT -> F32 (or F16 bits with OUT_F16). Every invocation decodes UNITS
// units of 4 values; a workgroup covers LOCAL_SIZE * UNITS consecutive units,
// unit k of invocation t being k * LOCAL_SIZE + t, so each of its loads and
// stores is coalesced. All loads of an invocation are issued before its first
// value is decoded: a warp then has UNITS times as many bytes of the (small)
// quantized input in flight, which is what this kernel waits on.
//
// HW_F16 (the `_rte` variants): f32 -> f16 by the hardware conversion
// (hw_f16.glsl) where it is exactly f16_bits, else f16_bits.

#ifdef HW_F16
#include "hw_f16.glsl"
#endif
#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#ifndef UNITS
#define UNITS 2u // Rust twin: shaders::DEQUANTIZE_UNITS
#endif

// Binary16 bits of 4 values as two words.
uvec2 f16_pairs(vec4 y) {
    return uvec2(f16_bits(floatBitsToUint(y.x)) | (f16_bits(floatBitsToUint(y.y)) << 16),
                 f16_bits(floatBitsToUint(y.z)) | (f16_bits(floatBitsToUint(y.w)) << 16));
}

// Stores the 4 values of `unit` (output word 0 honours pc.perturb).
void store4(uint unit, vec4 y) {
#ifdef OUT_F16
#ifdef HW_F16
    if (hw_f16_exact(y) && (unit != 0u || pc.perturb == 0u)) {
        dsth[unit] = f16vec4(y);
        return;
    }
#endif
    uvec2 h = f16_pairs(y);
    dst2[unit] = uvec2(perturbed(2u * unit, h.x), h.y);
#else
    uvec4 b = floatBitsToUint(y);
    dst4[unit] = uvec4(perturbed(4u * unit, b.x), b.yzw);
#endif
}

// The first unit of this invocation (the others follow LOCAL_SIZE apart).
uint first_unit() {
    return group_index() * (LOCAL_SIZE * UNITS) + gl_LocalInvocationID.x;
}

#ifdef BLOCK_BYTES
// The 4 bytes at byte offset o (any alignment). Both words are loaded
// unconditionally (the second clamped to the binding) so the loads of all
// units issue together.
uint word_at(uint o) {
    uint i = o >> 2;
    uint s = 8u * (o & 3u);
    uint lo = src[i];
    uint hi = src[min(i + 1u, uint(src.length()) - 1u)];
    return s == 0u ? lo : ((lo >> s) | (hi << (32u - s)));
}

// Byte offset of the quants of a block (after its header).
#if defined(FORMAT_Q4_1)
const uint QS_AT = 4u;
#else
const uint QS_AT = 2u;
#endif

// Word of quant bytes that unit's 4 values come from: bytes j0..j0+3 for
// Q8_0, bytes j0%16.. for the nibble formats (low nibbles for j0 < 16).
uint quant_offset(uint base, uint j0) {
#if defined(FORMAT_Q8_0)
    return base + QS_AT + j0;
#else
    return base + QS_AT + (j0 % 16u);
#endif
}

vec4 decode(uint head, uint qs, uint j0) {
    float d = f16_value(head & 0xffffu);
    vec4 y;
#if defined(FORMAT_Q8_0)
    for (uint t = 0u; t < 4u; ++t) {
        int q = int(qs << (24u - 8u * t)) >> 24;
        precise float v = d * float(q);
        y[t] = v;
    }
#else
    uint nib = j0 < 16u ? (qs & 0x0f0f0f0fu) : ((qs >> 4) & 0x0f0f0f0fu);
#if defined(FORMAT_Q4_0)
    for (uint t = 0u; t < 4u; ++t) {
        uint q = (nib >> (8u * t)) & 15u;
        precise float v = d * float(int(q) - 8);
        y[t] = v;
    }
#else
    float m = f16_value(head >> 16);
    for (uint t = 0u; t < 4u; ++t) {
        uint q = (nib >> (8u * t)) & 15u;
        precise float p = d * float(q);
        precise float v = p + m;
        y[t] = v;
    }
#endif
#endif
    return y;
}

void main() {
    uint u0 = first_unit();
    uint units = (pc.n_elements + 3u) / 4u;
    uint head[UNITS];
    uint qs[UNITS];
    for (uint k = 0u; k < UNITS; ++k) {
        uint e = (u0 + k * LOCAL_SIZE) * 4u;
        if (e < pc.n_elements) {
            uint base = (e / QK) * uint(BLOCK_BYTES);
            head[k] = word_at(base);
            qs[k] = word_at(quant_offset(base, e % QK));
        }
    }
    for (uint k = 0u; k < UNITS; ++k) {
        uint unit = u0 + k * LOCAL_SIZE;
        if (unit < units) {
            store4(unit, decode(head[k], qs[k], (unit * 4u) % QK));
        }
    }
}
#else
float half_value(uint h) {
#if defined(FORMAT_F16)
    return f16_value(h);
#else
    return uintBitsToFloat(h << 16);
#endif
}

vec4 decode(uvec2 w) {
    return vec4(half_value(w.x & 0xffffu), half_value(w.x >> 16), half_value(w.y & 0xffffu),
                half_value(w.y >> 16));
}

// One value of the tail of the dispatch (its last 1 to 3 values).
void tail_value(uint e) {
    uint h = (src[e / 2u] >> (16u * (e & 1u))) & 0xffffu;
#ifdef OUT_F16
#if defined(FORMAT_F16)
    uint o = h;
#else
    uint o = f16_bits(floatBitsToUint(half_value(h)));
#endif
    store_word(e / 2u, o << (16u * (e & 1u)), 0xffffu << (16u * (e & 1u)));
#else
    dst[e] = floatBitsToUint(half_value(h));
#endif
}

void main() {
    uint u0 = first_unit();
    uint whole = pc.n_elements / 4u;
    uvec2 w[UNITS];
    for (uint k = 0u; k < UNITS; ++k) {
        uint unit = u0 + k * LOCAL_SIZE;
        if (unit < whole) {
            w[k] = src2[unit];
        }
    }
    for (uint k = 0u; k < UNITS; ++k) {
        uint unit = u0 + k * LOCAL_SIZE;
        if (unit < whole) {
#if defined(OUT_F16) && defined(FORMAT_F16)
            dst2[unit] = uvec2(perturbed(2u * unit, w[k].x), w[k].y);
#else
            store4(unit, decode(w[k]));
#endif
        } else if (unit == whole) {
            for (uint e = unit * 4u; e < pc.n_elements; ++e) {
                tail_value(e);
            }
        }
    }
}
#endif
