#version 450
#extension GL_GOOGLE_include_directive : require
// FORMAT -> F32 (or F16 bits with OUT_F16). Units as in quantize.comp.

#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#ifdef BLOCK_BYTES
#if BLOCK_BYTES == 20
#define UNIT_BLOCKS 1u
#else
#define UNIT_BLOCKS 2u
#endif
#endif

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

void main() {
    uint unit = unit_index();
#ifdef BLOCK_BYTES
    uint first_block = unit * UNIT_BLOCKS;
    uint n_blocks = pc.n_elements / QK;
    if (first_block >= n_blocks) {
        return;
    }
    uint blocks = min(UNIT_BLOCKS, n_blocks - first_block);
    uint byte0 = first_block * uint(BLOCK_BYTES);
    for (uint b = 0u; b < blocks; ++b) {
        uint bytes[BLOCK_BYTES];
        for (uint k = 0u; k < uint(BLOCK_BYTES); ++k) {
            uint o = byte0 + b * uint(BLOCK_BYTES) + k;
            bytes[k] = (src[o >> 2] >> (8u * (o & 3u))) & 0xffu;
        }
        float y[QK];
        dequantize_block(bytes, y);
        uint base = (first_block + b) * QK;
        for (uint j = 0u; j < QK; j += 2u) {
            put_pair(base + j, y[j], y[j + 1u], true);
        }
    }
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
