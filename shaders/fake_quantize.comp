#version 450
#extension GL_GOOGLE_include_directive : require
// F32 -> FORMAT -> F32 in one pass (quantization-aware training). Block
// formats by workgroup (block_group.glsl): step 3 writes each value's round
// trip (4 per lane, one 16-byte store), with the dequantizer's arithmetic (the f16-rounded scale, products
// then sums, no FMA). F16/BF16: 4 values per invocation.

#if defined(FORMAT_Q8_0) || defined(FORMAT_Q4_0) || defined(FORMAT_Q4_1)
#define LOCAL_SIZE 64 // block_group.glsl: 32 blocks per workgroup
#endif
#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#ifdef BLOCK_BYTES
#include "block_group.glsl"

// Value j of group block b through the format and back, with the
// dequantizer's arithmetic.
float round_trip_at(uint b, uint j, uint first_value, BlockParams p, float d, float m) {
    uint q = quant_at(b, j, first_value, p);
#if defined(FORMAT_Q8_0)
    precise float v = d * float(int(q << 24) >> 24);
#elif defined(FORMAT_Q4_0)
    precise float v = d * float(int(q) - 8);
#else
    precise float prod = d * float(q);
    precise float v = prod + m;
#endif
    return v;
}

// Values 4*quad .. 4*quad+3 of the group, through the format and back.
void write_quad(uint quad, uint first_value) {
    uint i = quad * 4u;
    uint b = i / QK;
    uint j = i - b * QK;
    BlockParams p = params[b];
    float d = f16_value(p.header & 0xffffu);
    float m = f16_value(p.header >> 16);
    dst4[(first_value + i) / 4u] = uvec4(
        floatBitsToUint(round_trip_at(b, j, first_value, p, d, m)),
        floatBitsToUint(round_trip_at(b, j + 1u, first_value, p, d, m)),
        floatBitsToUint(round_trip_at(b, j + 2u, first_value, p, d, m)),
        floatBitsToUint(round_trip_at(b, j + 3u, first_value, p, d, m)));
}

void main() {
    uint first_value;
    uint n_blocks = load_group(first_value);
    // Step 3: each lane writes 4 neighbouring values as one 16-byte store; a
    // whole group runs a constant trip count (unrolled, independent work).
    if (n_blocks == GROUP_BLOCKS) {
        for (uint r = 0u; r < GROUP_VALUES / (4u * LOCAL_SIZE); ++r) {
            write_quad(r * LOCAL_SIZE + gl_LocalInvocationID.x, first_value);
        }
    } else {
        for (uint quad = gl_LocalInvocationID.x; quad < n_blocks * (QK / 4u); quad += LOCAL_SIZE) {
            write_quad(quad, first_value);
        }
    }
}
#else
uint round_trip(uint x, uint e) {
    bool st = pc.stochastic != 0u;
#if defined(FORMAT_F16)
    return floatBitsToUint(f16_value(half_bits(x, false, st, pc.seed_lo, pc.seed_hi, pc.first_lo, pc.first_hi, e)));
#else
    return half_bits(x, true, st, pc.seed_lo, pc.seed_hi, pc.first_lo, pc.first_hi, e) << 16;
#endif
}

// F16/BF16: 4 values per invocation, 16-byte loads and stores.
void main() {
    uint unit = unit_index();
    uint e0 = unit * 4u;
    if (e0 >= pc.n_elements) {
        return;
    }
    if (e0 + 4u <= pc.n_elements) {
        uvec4 x = src4[unit];
        dst4[unit] = uvec4(round_trip(x.x, e0), round_trip(x.y, e0 + 1u), round_trip(x.z, e0 + 2u),
                           round_trip(x.w, e0 + 3u));
        return;
    }
    for (uint e = e0; e < pc.n_elements; ++e) {
        dst[e] = round_trip(src[e], e);
    }
}
#endif
