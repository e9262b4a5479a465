#version 450
#extension GL_GOOGLE_include_directive : require
// F32 -> FORMAT -> F32 in one pass (quantization-aware training). Block
// formats by workgroup (block_group.glsl): step 3 writes each lane's values'
// round trips from its registers where they were loaded from (two 16-byte
// stores per round), with the dequantizer's arithmetic (the f16-rounded scale, products
// then sums, no FMA). F16/BF16: 4 values per invocation.

#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#if defined(KQUANT)
// K-quants: a super-block per workgroup (kquant_group.glsl); each
// invocation writes its 8 values' round trips where it loaded them.
#include "kquant_group.glsl"

void main() {
    uint t = gl_LocalInvocationID.x;
    uint first = group_index() * QK_K;
    if (first >= pc.n_elements) {
        return; // the whole workgroup
    }
    vec4 x0, x1;
    k_load_group(first, t, x0, x1);
    uvec4 q0, q1;
    k_quants(x0, x1, first, t, q0, q1);
    uint j = t / K_PER_SUB;
    vec4 y0, y1;
#if defined(AFFINE_K)
    uint sc = k_sc[j];
    precise float scale = f16_value(k_head & 0xffffu) * float(sc & 0xffu);
    precise float minimum = f16_value(k_head >> 16) * float(sc >> 8);
    vec2 sm = vec2(scale, minimum);
    y0 = vec4(affine_value(q0.x, sm), affine_value(q0.y, sm), affine_value(q0.z, sm), affine_value(q0.w, sm));
    y1 = vec4(affine_value(q1.x, sm), affine_value(q1.y, sm), affine_value(q1.z, sm), affine_value(q1.w, sm));
#else
    float scale = q6_scale(k_head, k_sc[j]);
    y0 = vec4(q6_value(q0.x, scale), q6_value(q0.y, scale), q6_value(q0.z, scale), q6_value(q0.w, scale));
    y1 = vec4(q6_value(q1.x, scale), q6_value(q1.y, scale), q6_value(q1.z, scale), q6_value(q1.w, scale));
#endif
    uint at = (first + 8u * t) / 4u;
    dst4[at] = floatBitsToUint(y0);
    dst4[at + 1u] = floatBitsToUint(y1);
}
#elif defined(BLOCK_BYTES)
#define STEP3_WORDS 0u // step 3 needs no shared memory
#include "block_group.glsl"

// One slot's values x (slot k of lane i) through the format and back,
// stored where they were loaded from; `plain`: group_is_plain().
void write_slot(vec4 x, uint i, uint k, uint block_first, BlockParams bp, bool plain) {
    uvec4 q = plain ? quants_fast(x, bp) : quants(x, slot_positions(i, k), block_first, bp);
    float d = f16_value(bp.header & 0xffffu);
    float m = f16_value(bp.header >> 16);
    uvec4 y = floatBitsToUint(vec4(quant_value(q.x, d, m), quant_value(q.y, d, m),
                                   quant_value(q.z, d, m), quant_value(q.w, d, m)));
    dst4[(block_first + slot_positions(i, k).x) / 4u] = y;
}

// Step 3 for round r of lane p (slots x0, x1).
void write_round(uint r, vec4 x0, vec4 x1, uint p, uint first_value, uint n_blocks, bool plain) {
    uint b = r * COLUMNS + p / LANES_PER_BLOCK;
    if (b >= n_blocks) {
        return;
    }
    uint i = p % LANES_PER_BLOCK;
    uint block_first = first_value + b * QK;
    BlockParams bp = params[b];
    write_slot(x0, i, 0u, block_first, bp, plain);
    write_slot(x1, i, 1u, block_first, bp, plain);
}

void main() {
    uint p = gl_LocalInvocationID.x;
    uint first_value;
    uint n_blocks = load_group(first_value);
    if (group_is_plain()) {
#define WRITE_ROUND(r) write_round(r, ROUND_SLOT0(r), ROUND_SLOT1(r), p, first_value, n_blocks, true);
        EACH_ROUND(WRITE_ROUND)
    } else {
        for (uint r = 0u; r < ROUNDS; ++r) {
            write_round(r, load_slot(r, 0u, p, first_value, n_blocks),
                        load_slot(r, 1u, p, first_value, n_blocks), p, first_value, n_blocks, false);
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
GRID_CHECK(4u);
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
