#version 450
#extension GL_GOOGLE_include_directive : require
// F32 -> FORMAT -> F32 in one pass (quantization-aware training). One block
// (or one element for F16/BF16) per invocation.

#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

void main() {
    uint unit = unit_index();
#ifdef BLOCK_BYTES
    uint base = unit * QK;
    if (base >= pc.n_elements) {
        return;
    }
    float x[QK];
    for (uint j = 0u; j < QK; ++j) {
        x[j] = uintBitsToFloat(src[base + j]);
    }
    uint first_lo = pc.first_lo + base;
    uint first_hi = pc.first_hi + (first_lo < pc.first_lo ? 1u : 0u);
    uint bytes[BLOCK_BYTES];
    quantize_block(x, pc.stochastic != 0u, pc.seed_lo, pc.seed_hi, first_lo, first_hi, bytes);
    float y[QK];
    dequantize_block(bytes, y);
    for (uint j = 0u; j < QK; ++j) {
        dst[base + j] = floatBitsToUint(y[j]);
    }
#else
    if (unit >= pc.n_elements) {
        return;
    }
    uint a = src[unit];
    bool st = pc.stochastic != 0u;
#if defined(FORMAT_F16)
    dst[unit] = floatBitsToUint(f16_value(
        half_bits(a, false, st, pc.seed_lo, pc.seed_hi, pc.first_lo, pc.first_hi, unit)));
#elif defined(FORMAT_BF16)
    dst[unit] = half_bits(a, true, st, pc.seed_lo, pc.seed_hi, pc.first_lo, pc.first_hi, unit) << 16;
#endif
#endif
}
