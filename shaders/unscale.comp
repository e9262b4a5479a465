#version 450
#extension GL_GOOGLE_include_directive : require
// Loss-scaler unscale-and-check (crate::train::LossScaler::unscale_and_check):
// g *= 1/scale in place, and found[0] |= 1 when a result is NaN or ±Inf.
// With `exact_pow2` set the inverse is 2^-pow2_shift (scale >= 1, a power of
// two) and the product is made exactly in integers (subnormal inputs kept and
// subnormal results rounded to nearest even, as the CPU does; GPUs may flush
// subnormal floats). One element per invocation.

#include "grid.glsl"
GRID_CHECK(1u);
layout(local_size_x = LOCAL_SIZE) in;

layout(std430, binding = 0) buffer Grads { uint g[]; };
layout(std430, binding = 1) buffer Found { uint found[]; };

// Rust twin: src/vk/family.rs `UnscalePush` (sizes checked by the build).
layout(push_constant) uniform Push {
    uint n_elements;
    uint inverse_bits;  // 1/scale as f32 bits (used when exact_pow2 == 0)
    uint pow2_shift;    // k >= 0: the inverse is exactly 2^-k
    uint exact_pow2;    // 1: scale by 2^-k on the bits
} pc;

// x * 2^-k, correctly rounded (to nearest even) including subnormal results.
uint scale_down_pow2(uint x, uint k) {
    uint sign = x & 0x80000000u;
    uint a = x & 0x7fffffffu;
    if (a >= 0x7f800000u || k == 0u) {
        return x;
    }
    uint e = a >> 23;
    if (e > k) {
        return sign | (a - (k << 23));
    }
    uint m = e == 0u ? a : ((a & 0x7fffffu) | 0x800000u);
    uint shift = e == 0u ? k : k - e + 1u;
    if (shift >= 26u) {
        return sign;
    }
    uint q = m >> shift;
    uint rem = m & ((1u << shift) - 1u);
    uint half_ulp = 1u << (shift - 1u);
    if (rem > half_ulp || (rem == half_ulp && (q & 1u) != 0u)) {
        q += 1u;
    }
    return sign | q;
}

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (i >= pc.n_elements) {
        return;
    }
    uint bits;
    if (pc.exact_pow2 != 0u) {
        bits = scale_down_pow2(g[i], pc.pow2_shift);
    } else {
        precise float v = uintBitsToFloat(g[i]) * uintBitsToFloat(pc.inverse_bits);
        bits = floatBitsToUint(v);
    }
    g[i] = bits;
    if ((bits & 0x7f800000u) == 0x7f800000u) {
        atomicOr(found[0], 1u);
    }
}
