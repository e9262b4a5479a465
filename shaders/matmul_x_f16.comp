#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// X (dY) rounded to f16 once per product, for the matmul kernels that read
// it so (matmul_coop128.comp with X_F16; src/vk/matmul.rs records this
// dispatch and a barrier before them): the dispatch's tokens × cols floats
// from float x_first of binding 1, as halves 0.. of binding 3 (the
// recorder's scratch), 4 values an invocation. The conversion is the one
// the other cooperative-matrix kernels apply to X themselves (f16vec4 of a
// vec4), so the bound (src/vk/matmul.rs `Bound::Coop`) is theirs.

layout(local_size_x = 256) in;

#include "matmul_push.glsl"

layout(std430, binding = 1) restrict readonly buffer X { float x[]; };
layout(std430, binding = 1) restrict readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) restrict writeonly buffer Halves { uvec2 halves[]; };

void main() {
    uint q = gl_GlobalInvocationID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint n = pc.tokens * pc.cols;
    uint i = 4u * q;
    if (i >= n) {
        return;
    }
    vec4 v = vec4(0.0);
    if (i + 4u <= n && pc.x_first % 4u == 0u) {
        v = x4[(pc.x_first + i) / 4u];
    } else {
        for (uint c = 0u; c < 4u && i + c < n; ++c) {
            v[c] = x[pc.x_first + i + c];
        }
    }
    f16vec4 h = f16vec4(v);
    halves[q] = uvec2(packFloat2x16(h.xy), packFloat2x16(h.zw));
}
