#version 450
// One Adam(W) step with 8-bit blockwise moments (crate::train::adam,
// StateLayout::Int8Blocks): one block of 256 elements per workgroup. The
// state binding holds this dispatch's m codes (i8, four to a word) at word
// m_at, the v codes (u8) at v_at, and one f32 scale per block for each at
// m_scale_at and v_scale_at. Each element is decoded (scale times the
// code's table entry), updated, and re-encoded against the block's new
// largest magnitude (crate::train::adam_math::encode_signed and
// encode_unsigned). A skipped step (control word APPLY = 0) changes nothing.

#include "adam_common.glsl"
#include "adam_codes.glsl"
GRID_CHECK(1u);
STATIC_CHECK(ONE_BLOCK_PER_WORKGROUP, LOCAL_SIZE == 256);

shared uint largest_m[LOCAL_SIZE];
shared uint largest_v[LOCAL_SIZE];
shared uint inverses[2];
shared uint codes_m[LOCAL_SIZE / 4];
shared uint codes_v[LOCAL_SIZE / 4];

const uint ONE = 0x3f800000u;

uint code_byte(uint word_at, uint i) {
    return (state[word_at + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

void main() {
    uint block = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (control[CONTROL_APPLY] == 0u || block * LOCAL_SIZE >= pc.n_elements) {
        return;
    }
    uint lane = gl_LocalInvocationID.x;
    uint i = block * LOCAL_SIZE + lane;
    bool in_range = i < pc.n_elements;
    uvec3 r = uvec3(0u);
    if (in_range) {
        Scalars s = step_scalars();
        uint m = mul_bits(state[pc.m_scale_at + block], control[SIGNED_TABLE + code_byte(pc.m_at, i)]);
        uint v = mul_bits(state[pc.v_scale_at + block], control[UNSIGNED_TABLE + code_byte(pc.v_at, i)]);
        r = adam_update(s, scalars_are_normal(s), params[i], grads[i], m, v);
        params[i] = r.x;
    }
    // The block's largest |m| and v, NaN ignored (Rust's f32::max); on
    // non-negative floats the bits order as the values.
    largest_m[lane] = in_range && !sf_is_nan(r.y) ? r.y & 0x7fffffffu : 0u;
    largest_v[lane] = in_range && !sf_is_nan(r.z) && (r.z & 0x80000000u) == 0u ? r.z : 0u;
    if (lane < LOCAL_SIZE / 4u) {
        codes_m[lane] = 0u;
        codes_v[lane] = 0u;
    }
    barrier();
    for (uint half_width = LOCAL_SIZE / 2u; half_width > 0u; half_width >>= 1) {
        if (lane < half_width) {
            largest_m[lane] = max(largest_m[lane], largest_m[lane + half_width]);
            largest_v[lane] = max(largest_v[lane], largest_v[lane + half_width]);
        }
        barrier();
    }
    if (lane == 0u) {
        uint absmax = largest_m[0], max_v = largest_v[0];
        inverses[0] = absmax != 0u ? sf_div(ONE, absmax) : 0u;
        inverses[1] = max_v != 0u ? sf_div(ONE, max_v) : 0u;
        state[pc.m_scale_at + block] = absmax;
        state[pc.v_scale_at + block] = max_v;
    }
    barrier();
    if (in_range) {
        uint shift = 8u * (lane % 4u);
        atomicOr(codes_m[lane / 4u], signed_code(r.y, inverses[0]) << shift);
        atomicOr(codes_v[lane / 4u], unsigned_code(r.z, inverses[1]) << shift);
    }
    barrier();
    if (lane < LOCAL_SIZE / 4u && block * LOCAL_SIZE + 4u * lane < pc.n_elements) {
        state[pc.m_at + block * (LOCAL_SIZE / 4u) + lane] = codes_m[lane];
        state[pc.v_at + block * (LOCAL_SIZE / 4u) + lane] = codes_v[lane];
    }
}
