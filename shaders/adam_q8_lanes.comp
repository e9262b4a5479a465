#version 450
// One Adam(W) step with 8-bit blockwise moments, as adam_q8.comp (the same
// state layout and results), in lanes: one block of 256 elements per
// workgroup of 64 invocations, 4 consecutive elements per invocation, so
// that an invocation reads and writes whole words of codes (no shared
// atomics). Every operation by the floating-point unit, division and square
// root corrected and checked (adam_common.glsl), an element it cannot do
// exactly redone on the bits; the codes from the FPU's roots where clearly
// off a rounding boundary (adam_codes.glsl); the block's largest |m| and v by
// subgroupMax and one barrier across the workgroup's subgroups (a subgroup
// lies within the workgroup, so within one block, whatever its size).

#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "adam_common.glsl"
#define CODE_SQRT sqrt_bits
#include "adam_codes.glsl"
GRID_CHECK(4u);
STATIC_CHECK(ONE_BLOCK_PER_WORKGROUP, LOCAL_SIZE * 4 == 256);

// Each subgroup's largest |m| and v (at most one subgroup per invocation).
shared uint subgroup_m[LOCAL_SIZE];
shared uint subgroup_v[LOCAL_SIZE];

void main() {
    uint block = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (control[CONTROL_APPLY] == 0u || block * 256u >= pc.n_elements) {
        return;
    }
    uint lane = gl_LocalInvocationID.x;
    uint first = block * 256u + 4u * lane;
    uint word = block * LOCAL_SIZE + lane;
    bool any_in_range = first < pc.n_elements;
    Scalars s = step_scalars();
    bool scalars_normal = scalars_are_normal(s);
    uint p[4], g[4], m[4], v[4];
    uint m_codes = 0u, v_codes = 0u, m_scale = 0u, v_scale = 0u;
    if (any_in_range) {
        m_codes = state[pc.m_at + word];
        v_codes = state[pc.v_at + word];
        m_scale = state[pc.m_scale_at + block];
        v_scale = state[pc.v_scale_at + block];
    }
    for (uint k = 0u; k < 4u; ++k) {
        if (first + k < pc.n_elements) {
            p[k] = params[first + k];
            g[k] = grads[first + k];
        }
    }
    uvec3 r[4];
    uint largest_m = 0u, largest_v = 0u;
    for (uint k = 0u; k < 4u; ++k) {
        uint i = first + k;
        r[k] = uvec3(0u);
        if (i < pc.n_elements) {
            m[k] = mul_bits(m_scale, control[SIGNED_TABLE + ((m_codes >> (8u * k)) & 0xffu)]);
            v[k] = mul_bits(v_scale, control[UNSIGNED_TABLE + ((v_codes >> (8u * k)) & 0xffu)]);
            bool exact;
            r[k] = adam_update_checked(s, scalars_normal, p[k], g[k], m[k], v[k], exact);
            if (!exact) {
                r[k] = adam_update_soft(s, p[k], g[k], m[k], v[k]);
            }
            params[i] = r[k].x;
            // The block's largest |m| and v, NaN ignored (Rust's f32::max);
            // on non-negative floats the bits order as the values.
            largest_m = max(largest_m, sf_is_nan(r[k].y) ? 0u : r[k].y & 0x7fffffffu);
            largest_v = max(largest_v,
                            sf_is_nan(r[k].z) || (r[k].z & 0x80000000u) != 0u ? 0u : r[k].z);
        }
    }
    largest_m = subgroupMax(largest_m);
    largest_v = subgroupMax(largest_v);
    if (subgroupElect()) {
        subgroup_m[gl_SubgroupID] = largest_m;
        subgroup_v[gl_SubgroupID] = largest_v;
    }
    barrier();
    uint absmax = 0u, max_v = 0u;
    for (uint i = 0u; i < gl_NumSubgroups; ++i) {
        absmax = max(absmax, subgroup_m[i]);
        max_v = max(max_v, subgroup_v[i]);
    }
    if (lane == 0u) {
        state[pc.m_scale_at + block] = absmax;
        state[pc.v_scale_at + block] = max_v;
    }
    if (!any_in_range) {
        return;
    }
    // The same in every invocation of the workgroup.
    uint inverse_m = absmax != 0u ? inverse_bits(absmax) : 0u;
    uint inverse_v = max_v != 0u ? inverse_bits(max_v) : 0u;
    uint m_word = 0u, v_word = 0u;
    for (uint k = 0u; k < 4u; ++k) {
        if (first + k < pc.n_elements) {
            m_word |= signed_code_fast(r[k].y, inverse_m) << (8u * k);
            v_word |= unsigned_code_fast(r[k].z, inverse_v) << (8u * k);
        }
    }
    state[pc.m_at + word] = m_word;
    state[pc.v_at + word] = v_word;
}
