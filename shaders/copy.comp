#version 450
#extension GL_GOOGLE_include_directive : require
// Copies n_elements 32-bit words, 4 per invocation (the bandwidth yardstick
// of the benchmark, and F32 -> F32).

#include "grid.glsl"
GRID_CHECK(4u);
layout(local_size_x = LOCAL_SIZE) in;
layout(std430, binding = 0) readonly buffer Src { uvec4 src4[]; };
layout(std430, binding = 1) buffer Dst { uvec4 dst4[]; };
layout(std430, binding = 0) readonly buffer Src1 { uint src1[]; };
layout(std430, binding = 1) buffer Dst1 { uint dst1[]; };
#include "convert_push.glsl"

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint e = i * 4u;
    if (e + 4u <= pc.n_elements) {
        dst4[i] = src4[i];
    } else {
        for (uint k = e; k < pc.n_elements; ++k) {
            dst1[k] = src1[k];
        }
    }
}
