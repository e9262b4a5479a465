#version 450
#extension GL_GOOGLE_include_directive : require
// F32 -> FORMAT. Units: F16/BF16 2 elements (1 word), Q8_0/Q4_0 2 blocks
// (17/9 words), Q4_1 1 block (5 words).

#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#ifdef BLOCK_BYTES
#if BLOCK_BYTES == 20
#define UNIT_BLOCKS 1u
#else
#define UNIT_BLOCKS 2u
#endif
#define UNIT_BYTES (UNIT_BLOCKS * uint(BLOCK_BYTES))
#define UNIT_WORDS (UNIT_BYTES / 4u)
#endif

void main() {
    uint unit = unit_index();
#ifdef BLOCK_BYTES
    uint first_block = unit * UNIT_BLOCKS;
    uint n_blocks = pc.n_elements / QK;
    if (first_block >= n_blocks) {
        return;
    }
    uint blocks = min(UNIT_BLOCKS, n_blocks - first_block);
    uint words[UNIT_WORDS];
    for (uint w = 0u; w < UNIT_WORDS; ++w) {
        words[w] = 0u;
    }
    for (uint b = 0u; b < blocks; ++b) {
        uint base = (first_block + b) * QK;
        float x[QK];
        for (uint j = 0u; j < QK; ++j) {
            x[j] = uintBitsToFloat(src[base + j]);
        }
        uint first_lo = pc.first_lo + base;
        uint first_hi = pc.first_hi + (first_lo < pc.first_lo ? 1u : 0u);
        uint bytes[BLOCK_BYTES];
        quantize_block(x, pc.stochastic != 0u, pc.seed_lo, pc.seed_hi, first_lo, first_hi, bytes);
        for (uint k = 0u; k < uint(BLOCK_BYTES); ++k) {
            uint o = b * uint(BLOCK_BYTES) + k;
            words[o >> 2] |= bytes[k] << (8u * (o & 3u));
        }
    }
    uint out_bytes = blocks * uint(BLOCK_BYTES);
    uint word0 = first_block * uint(BLOCK_BYTES) / 4u;
    for (uint w = 0u; w * 4u < out_bytes; ++w) {
        store_word(word0 + w, words[w], byte_mask(out_bytes - w * 4u));
    }
#else
    uint e0 = unit * 2u;
    if (e0 >= pc.n_elements) {
        return;
    }
    bool both = e0 + 1u < pc.n_elements;
    uint a = src[e0];
    uint b = both ? src[e0 + 1u] : 0u;
#if defined(FORMAT_BF16)
    const bool bf16 = true;
#else
    const bool bf16 = false;
#endif
    bool st = pc.stochastic != 0u;
    uint lo = half_bits(a, bf16, st, pc.seed_lo, pc.seed_hi, pc.first_lo, pc.first_hi, e0);
    uint hi = half_bits(b, bf16, st, pc.seed_lo, pc.seed_hi, pc.first_lo, pc.first_hi, e0 + 1u);
    uint w = lo | (hi << 16);
    store_word(unit, w, both ? 0xffffffffu : 0xffffu);
#endif
}
