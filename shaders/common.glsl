// Bindings, push constants and word stores shared by the quantize,
// dequantize and fake-quantize kernels.

#include "grid.glsl"
layout(local_size_x = LOCAL_SIZE) in;

layout(std430, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, binding = 1) buffer Dst { uint dst[]; };
// Vector views of the same bindings, for coalesced 8- and 16-byte accesses.
layout(std430, binding = 0) readonly buffer Src2 { uvec2 src2[]; };
layout(std430, binding = 0) readonly buffer Src4 { uvec4 src4[]; };
layout(std430, binding = 1) buffer Dst2 { uvec2 dst2[]; };
layout(std430, binding = 1) buffer Dst4 { uvec4 dst4[]; };

#include "convert_push.glsl"

// Test only: true in the pipeline of the one kernel a context was asked to
// corrupt (src/vk/pipelines.rs), whose output word 0 then has bit 0 flipped
// for the self-test to catch. A specialization constant, so the drivers
// compile the check out of every other pipeline.
layout(constant_id = 0) const bool PERTURB = false;

// The unit (a group of elements whose output is whole 32-bit words) this
// invocation handles; the grid is 2-D so no group count exceeds the limits.
uint unit_index() {
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
}

// This workgroup's index in the 2-D grid (unit_index() / LOCAL_SIZE).
uint group_index() {
    return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
}

// Test only: `value` with bit 0 flipped when it is output word 0 of a kernel
// the self-test must catch (PERTURB).
uint perturbed(uint index, uint value) {
    return (PERTURB && index == 0u) ? value ^ 1u : value;
}

// Stores the bytes of `value` selected by `mask`, leaving the others alone
// (only the last word of a dispatch can be partial).
void store_word(uint index, uint value, uint mask) {
    value = perturbed(index, value);
    if (mask == 0xffffffffu) {
        dst[index] = value;
    } else {
        atomicAnd(dst[index], ~mask);
        atomicOr(dst[index], value & mask);
    }
}

uint byte_mask(uint bytes) {
    return bytes >= 4u ? 0xffffffffu : ((1u << (8u * bytes)) - 1u);
}
