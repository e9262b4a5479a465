#version 450
#extension GL_GOOGLE_include_directive : require
// FORMAT -> F32 (or F16 bits with OUT_F16). Block formats: 4 outputs per
// invocation; F16/BF16: 2.

#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

void put_pair(uint first_element, float a, float b, bool both) {
#ifdef OUT_F16
    uint w = f16_bits(floatBitsToUint(a)) | (both ? (f16_bits(floatBitsToUint(b)) << 16) : 0u);
    store_word(first_element / 2u, w, both ? 0xffffffffu : 0xffffu);
#else
    dst[first_element] = floatBitsToUint(a);
    if (both) {
        dst[first_element + 1u] = floatBitsToUint(b);
    }
#endif
}

layout(std430, binding = 1) buffer Dst4 { uvec4 dst4[]; };

uint byte_at(uint o) {
    return (src[o >> 2] >> (8u * (o & 3u))) & 0xffu;
}

void main() {
    uint unit = unit_index();
#ifdef BLOCK_BYTES
    // One invocation per 4 consecutive outputs: neighbouring invocations read
    // neighbouring bytes and write neighbouring 16 (or 8) bytes, so memory
    // accesses coalesce.
    uint e = unit * 4u;
    if (e >= pc.n_elements) {
        return;
    }
    uint blk = e / QK;
    uint j0 = e % QK;
    uint base = blk * uint(BLOCK_BYTES);
    float d = f16_value(byte_at(base) | (byte_at(base + 1u) << 8));
    float y[4];
#if defined(FORMAT_Q8_0)
    for (uint t = 0u; t < 4u; ++t) {
        int q = int(byte_at(base + 2u + j0 + t) << 24) >> 24;
        precise float v = d * float(q);
        y[t] = v;
    }
#elif defined(FORMAT_Q4_0)
    for (uint t = 0u; t < 4u; ++t) {
        uint j = j0 + t;
        uint b = byte_at(base + 2u + (j % 16u));
        uint q = j < 16u ? (b & 15u) : (b >> 4);
        precise float v = d * float(int(q) - 8);
        y[t] = v;
    }
#elif defined(FORMAT_Q4_1)
    float m = f16_value(byte_at(base + 2u) | (byte_at(base + 3u) << 8));
    for (uint t = 0u; t < 4u; ++t) {
        uint j = j0 + t;
        uint b = byte_at(base + 4u + (j % 16u));
        uint q = j < 16u ? (b & 15u) : (b >> 4);
        precise float p = d * float(q);
        precise float v = p + m;
        y[t] = v;
    }
#endif
#ifdef OUT_F16
    dst[e / 2u] = f16_bits(floatBitsToUint(y[0])) | (f16_bits(floatBitsToUint(y[1])) << 16);
    dst[e / 2u + 1u] = f16_bits(floatBitsToUint(y[2])) | (f16_bits(floatBitsToUint(y[3])) << 16);
#else
    dst4[unit] = uvec4(floatBitsToUint(y[0]), floatBitsToUint(y[1]), floatBitsToUint(y[2]), floatBitsToUint(y[3]));
#endif
#else
    uint e0 = unit * 2u;
    if (e0 >= pc.n_elements) {
        return;
    }
    bool both = e0 + 1u < pc.n_elements;
    uint w = src[unit];
#if defined(FORMAT_F16)
    float a = f16_value(w & 0xffffu);
    float b = f16_value(w >> 16);
#elif defined(FORMAT_BF16)
    float a = uintBitsToFloat(w << 16);
    float b = uintBitsToFloat(w & 0xffff0000u);
#endif
#if defined(OUT_F16) && defined(FORMAT_F16)
    store_word(unit, w, both ? 0xffffffffu : 0xffffu);
#else
    put_pair(e0, a, b, both);
#endif
#endif
}
