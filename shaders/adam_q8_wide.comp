#version 450
// One Adam(W) step with 8-bit blockwise moments, as adam_q8.comp (the same
// state layout and results), several blocks per workgroup: LOCAL_SIZE / 64
// blocks of 256 elements, 4 consecutive elements per invocation (a word of
// codes each), the weights and gradients read and written as one 16-byte
// vector where all four are in range. Every operation by the
// floating-point unit, division and square root corrected and checked
// (adam_common.glsl), an element it cannot do exactly redone on the bits;
// the codes from the FPU's roots where clearly off a rounding boundary
// (adam_codes.glsl), or (CODES_CHECKED) from roots corrected and checked
// exact. Each block's largest |m| and v: subgroupMax where a
// subgroup lies within one block (whatever the device's subgroup size and
// layout), then a shared atomicMax per subgroup, between two barriers.
//
// Measurement only (never chosen, results not the host's): CUT_UPDATE,
// CUT_CODES, CUT_REDUCE and CUT_DECODE replace the update, the codes, the
// block reduction or the table decode by a trivial stand-in, so that
// `nyxq bench-vk` shows what each part costs.

#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "adam_common.glsl"
#define CODE_SQRT sqrt_bits
#include "adam_codes.glsl"
GRID_CHECK(4u);
STATIC_CHECK(WHOLE_BLOCKS, LOCAL_SIZE % 64u == 0u);
const uint GROUP_BLOCKS = LOCAL_SIZE / 64u;

// The weights and gradients again, four to a vector (the same bindings).
layout(std430, binding = 0) buffer Params4 { uvec4 params4[]; };
layout(std430, binding = 1) readonly buffer Grads4 { uvec4 grads4[]; };

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
#ifdef HOIST_FMA_PROBE
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
    uvec4 pn = p, mn = uvec4(0u), vn = uvec4(0u);
    uint largest_m = 0u, largest_v = 0u;
    for (uint k = 0u; k < 4u; ++k) {
        if (first + k < pc.n_elements) {
            uint m_code = (m_codes >> (8u * k)) & 0xffu, v_code = (v_codes >> (8u * k)) & 0xffu;
#ifdef CUT_DECODE
            uint m = mul_bits(m_scale, (m_code << 20) | 0x3c000000u);
            uint v = mul_bits(v_scale, (v_code << 20) | 0x3c000000u);
#else
            uint m = mul_bits(m_scale, control[SIGNED_TABLE + m_code]);
            uint v = mul_bits(v_scale, control[UNSIGNED_TABLE + v_code]);
#endif
#ifdef CUT_UPDATE
            uvec3 r = uvec3(p[k] ^ g[k], m ^ g[k], v ^ (g[k] & 0x7fffffffu));
#else
            bool exact;
            uvec3 r = adam_update_checked(s, scalars_normal, p[k], g[k], m, v, exact);
            if (!exact) {
                r = adam_update_soft(s, p[k], g[k], m, v);
            }
#endif
            pn[k] = r.x;
            mn[k] = r.y;
            vn[k] = r.z;
            // The block's largest |m| and v, NaN ignored (Rust's f32::max);
            // on non-negative floats the bits order as the values.
            largest_m = max(largest_m, sf_is_nan(r.y) ? 0u : r.y & 0x7fffffffu);
            largest_v = max(largest_v, sf_is_nan(r.z) || (r.z & 0x80000000u) != 0u ? 0u : r.z);
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
    barrier();
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
#ifdef CODES_CHECKED
            m_word |= signed_code_checked(mn[k], inverse_m) << (8u * k);
            v_word |= unsigned_code_checked(vn[k], inverse_v) << (8u * k);
#else
            m_word |= signed_code_fast(mn[k], inverse_m) << (8u * k);
            v_word |= unsigned_code_fast(vn[k], inverse_v) << (8u * k);
#endif
        }
    }
#endif
    state[pc.m_at + word] = m_word;
    state[pc.v_at + word] = v_word;
}
