#version 450
// One Adam(W) step with 8-bit blockwise moments, as adam_q8.comp (the same
// state layout and results), several blocks per workgroup: LOCAL_SIZE / 64
// blocks of 256 elements, 4 consecutive elements per invocation (a word of
// codes each), the weights and gradients read and written as one 16-byte
// vector where all four are in range. Every operation by the
// floating-point unit, division and square root corrected and checked
// (adam_common.glsl), an element it cannot do exactly redone on the bits;
// the codes from the FPU's estimate between the codes' boundaries
// (adam_codes.glsl; FAST_CODES, a measurement twin: where clearly off a
// rounding boundary). The decode tables and the boundaries are read from
// workgroup memory. Each block's largest |m| and v: subgroupMax where a
// subgroup lies within one block (whatever the device's subgroup size and
// layout), then a shared atomicMax per subgroup, between two barriers.
//
// Measurement only (never chosen, results not the host's): CUT_UPDATE,
// CUT_CODES, CUT_REDUCE and CUT_DECODE replace the update, the codes, the
// block reduction or the table decode by a trivial stand-in, so that
// `nyxq bench-vk` shows what each part costs.

#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define FMA_PROBE_ONCE
#include "adam_common.glsl"
GRID_CHECK(4u);
STATIC_CHECK(WHOLE_BLOCKS, LOCAL_SIZE % 64u == 0u);
const uint GROUP_BLOCKS = LOCAL_SIZE / 64u;

// The decode tables and the codes' boundaries: control words SIGNED_TABLE
// to UNSIGNED_BOUNDS + 257, copied into workgroup memory (or, with
// GLOBAL_TABLES, a measurement twin, read from the control buffer).
const uint TABLE_WORDS = UNSIGNED_BOUNDS + 257u - SIGNED_TABLE;
#ifdef GLOBAL_TABLES
#define TABLE(i) control[i]
#else
shared uint tables[TABLE_WORDS];
#define TABLE(i) tables[(i) - SIGNED_TABLE]
#endif
#define CODE_BOUND(i) TABLE(i)
#define CODE_SQRT sqrt_bits
#include "adam_codes.glsl"

// The weights and gradients again, four to a vector (the same bindings).
layout(std430, binding = 0) buffer Params4 { uvec4 params4[]; };
layout(std430, binding = 1) readonly buffer Grads4 { uvec4 grads4[]; };

// Element k's moments, decoded from their words of codes.
uint decoded_m(uint scale, uint codes, uint k) {
    uint code = (codes >> (8u * k)) & 0xffu;
#ifdef CUT_DECODE
    return mul_bits(scale, (code << 20) | 0x3c000000u);
#else
    return mul_bits(scale, TABLE(SIGNED_TABLE + code));
#endif
}

uint decoded_v(uint scale, uint codes, uint k) {
    uint code = (codes >> (8u * k)) & 0xffu;
#ifdef CUT_DECODE
    return mul_bits(scale, (code << 20) | 0x3c000000u);
#else
    return mul_bits(scale, TABLE(UNSIGNED_TABLE + code));
#endif
}

// Each block's largest |m| (first GROUP_BLOCKS) and v.
shared uint block_max[2u * GROUP_BLOCKS];

void main() {
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (control[CONTROL_APPLY] == 0u || group * (LOCAL_SIZE * 4u) >= pc.n_elements) {
        return;
    }
    uint lane = gl_LocalInvocationID.x;
    uint slot = lane / 64u;
    uint block = group * GROUP_BLOCKS + slot;
    uint word = group * LOCAL_SIZE + lane;
    uint first = 4u * word;
    bool any_in_range = first < pc.n_elements;
    bool all_in_range = first + 4u <= pc.n_elements;
    if (lane < 2u * GROUP_BLOCKS) {
        block_max[lane] = 0u;
    }
#ifdef FMA_CHECK
    hoist_fma_probe();
#endif
    Scalars s = step_scalars();
    bool scalars_normal = scalars_are_normal(s);
    uvec4 p = uvec4(0u), g = uvec4(0u);
    uint m_codes = 0u, v_codes = 0u, m_scale = 0u, v_scale = 0u;
    if (all_in_range) {
        p = params4[word];
        g = grads4[word];
    } else {
        for (uint k = 0u; k < 4u; ++k) {
            if (first + k < pc.n_elements) {
                p[k] = params[first + k];
                g[k] = grads[first + k];
            }
        }
    }
    if (any_in_range) {
        m_codes = state[pc.m_at + word];
        v_codes = state[pc.v_at + word];
        m_scale = state[pc.m_scale_at + block];
        v_scale = state[pc.v_scale_at + block];
    }
#ifndef GLOBAL_TABLES
    for (uint i = lane; i < TABLE_WORDS; i += LOCAL_SIZE) {
        tables[i] = control[SIGNED_TABLE + i];
    }
#endif
    barrier();
    // Every element by the FPU first; those it cannot do exactly (`redo`)
    // on the bits after, out of the common path.
    uvec4 pn = p, mn = uvec4(0u), vn = uvec4(0u);
    uint redo = 0u;
    for (uint k = 0u; k < 4u; ++k) {
        if (first + k < pc.n_elements) {
            uint m = decoded_m(m_scale, m_codes, k), v = decoded_v(v_scale, v_codes, k);
#ifdef CUT_UPDATE
            uvec3 r = uvec3(p[k] ^ g[k], m ^ g[k], v ^ (g[k] & 0x7fffffffu));
#else
            bool exact;
            uvec3 r = adam_update_checked(s, scalars_normal, p[k], g[k], m, v, exact);
            redo |= exact ? 0u : 1u << k;
#endif
            pn[k] = r.x;
            mn[k] = r.y;
            vn[k] = r.z;
        }
    }
    if (redo != 0u) {
        for (uint k = 0u; k < 4u; ++k) {
            if ((redo & (1u << k)) != 0u) {
                uint m = decoded_m(m_scale, m_codes, k), v = decoded_v(v_scale, v_codes, k);
                uvec3 r = adam_update_soft(s, p[k], g[k], m, v);
                pn[k] = r.x;
                mn[k] = r.y;
                vn[k] = r.z;
            }
        }
    }
    // The block's largest |m| and v, NaN ignored (Rust's f32::max); on
    // non-negative floats the bits order as the values.
    uint largest_m = 0u, largest_v = 0u;
    for (uint k = 0u; k < 4u; ++k) {
        if (first + k < pc.n_elements) {
            largest_m = max(largest_m, sf_is_nan(mn[k]) ? 0u : mn[k] & 0x7fffffffu);
            largest_v = max(largest_v, sf_is_nan(vn[k]) || (vn[k] & 0x80000000u) != 0u ? 0u : vn[k]);
        }
    }
    if (all_in_range) {
        params4[word] = pn;
    } else {
        for (uint k = 0u; k < 4u; ++k) {
            if (first + k < pc.n_elements) {
                params[first + k] = pn[k];
            }
        }
    }
#ifdef CUT_REDUCE
    uint absmax = largest_m, max_v = largest_v;
#else
    // A subgroup within one block reduces first; one spread over several
    // (a layout Vulkan allows) leaves every invocation to the atomics.
    bool one_block = subgroupMin(slot) == subgroupMax(slot);
    if (one_block) {
        largest_m = subgroupMax(largest_m);
        largest_v = subgroupMax(largest_v);
    }
    if (!one_block || subgroupElect()) {
        atomicMax(block_max[slot], largest_m);
        atomicMax(block_max[GROUP_BLOCKS + slot], largest_v);
    }
    barrier();
    uint absmax = block_max[slot], max_v = block_max[GROUP_BLOCKS + slot];
#endif
    if (!any_in_range) {
        return;
    }
    if (lane % 64u == 0u) {
        state[pc.m_scale_at + block] = absmax;
        state[pc.v_scale_at + block] = max_v;
    }
    uint m_word = 0u, v_word = 0u;
#ifdef CUT_CODES
    for (uint k = 0u; k < 4u; ++k) {
        m_word |= (((mn[k] ^ absmax) >> 24) & 0xffu) << (8u * k);
        v_word |= (((vn[k] ^ max_v) >> 24) & 0xffu) << (8u * k);
    }
#else
    // The same in every invocation of the block.
    uint inverse_m = absmax != 0u ? inverse_bits(absmax) : 0u;
    uint inverse_v = max_v != 0u ? inverse_bits(max_v) : 0u;
    for (uint k = 0u; k < 4u; ++k) {
        if (first + k < pc.n_elements) {
#ifdef FAST_CODES
            m_word |= signed_code_fast(mn[k], inverse_m) << (8u * k);
            v_word |= unsigned_code_fast(vn[k], inverse_v) << (8u * k);
#else
            m_word |= signed_code_bounded(mn[k], inverse_m) << (8u * k);
            v_word |= unsigned_code_bounded(vn[k], inverse_v) << (8u * k);
#endif
        }
    }
#endif
    state[pc.m_at + word] = m_word;
    state[pc.v_at + word] = v_word;
}
