#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_spirv_intrinsics : require
// x rounded to int8 per block of 32 values, once per product, for the
// `_dot_pre` matrix-vector kernels (matvec_dot.comp with PRE_ROUNDED), which
// read it from binding 4 after a barrier: one block of one vector per
// invocation, with round_x.glsl (the code `_dot` runs in every workgroup).
// For j = b·blocks + k (block k of vector b): its 32 int8 values at xq[2j]
// and xq[2j + 1], its (s, Σq_x) at xs[4·BATCH·blocks + j], s =
// NON_FINITE_BLOCK where the block holds NaN or ±Inf. 40 bytes per block of
// x (src/vk/matvec.rs `rounded_x_bytes`).

layout(local_size_x = 128) in;

// Vectors per call (1..8), as matvec.glsl's.
layout(constant_id = 0) const uint BATCH = 1u;

#include "matvec_push.glsl"

layout(std430, binding = 1) restrict readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 4) writeonly buffer XQ { uvec4 xq[]; };
layout(std430, binding = 4) writeonly buffer XS { vec2 xs[]; };

#include "round_x.glsl"

void main() {
    uint blocks = pc.cols / 32u;
    uint job = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 128u;
    if (job >= BATCH * blocks) {
        return;
    }
    uvec4 lo;
    uvec4 hi;
    // Block k of vector b starts at float b·cols + 32k = 32j.
    vec2 s = round_x_block(8u * job, lo, hi);
    xq[2u * job] = lo;
    xq[2u * job + 1u] = hi;
    xs[4u * BATCH * blocks + job] = s;
}
