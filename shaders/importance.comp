#version 450
#extension GL_GOOGLE_include_directive : require
// Importance from activations (crate::train::importance): sums[c] += Σ_t
// x[t][c]² over the dispatch's tokens, x row-major (token t's column c at
// x_first + t·cols + c). One column per invocation, its tokens summed in
// order in f32 and added to the sum once, so no two invocations write one
// float and no atomics are needed. Uses no optional feature (the compatible
// variant).

#include "grid.glsl"
GRID_CHECK(1u);
layout(local_size_x = LOCAL_SIZE) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Sums { float sums[]; };

// Rust twin: src/vk/family.rs `ImportancePush` (sizes checked by the build).
layout(push_constant) uniform Push {
    uint cols;
    uint tokens;
    uint x_first;  // float of binding 0 where the first token starts
} pc;

void main() {
    uint c = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    if (c >= pc.cols) {
        return;
    }
    float acc = 0.0;
    uint at = pc.x_first + c;
    for (uint t = 0u; t < pc.tokens; ++t) {
        float v = x[at];
        acc += v * v;
        at += pc.cols;
    }
    sums[c] += acc;
}
