#version 450
// The step count of one Adam(W) step, dispatched alone (one invocation) before
// the update's dispatches: unless the found flag is set (nyxq_vk_cmd_unscale_
// and_check found a non-finite gradient), t = steps + 1 and the bias
// corrections of step t (crate::train::adam_math::bias_corrections) are
// written for the update to read; the APPLY word says whether it applies.

#include "adam_common.glsl"
GRID_CHECK(1u);

layout(std430, binding = 0) readonly buffer Found { uint found[]; };

// beta^t by square-and-multiply (crate::train::adam_math::power).
uint power(uint beta, uint t) {
    uint result = 0x3f800000u;
    uint square = beta;
    for (uint bits = t; bits != 0u; bits >>= 1) {
        if ((bits & 1u) != 0u) {
            result = sf_mul(result, square);
        }
        square = sf_mul(square, square);
    }
    return result;
}

void main() {
    if (element_index() != 0u) {
        return;
    }
    if (pc.use_found != 0u && found[0] != 0u) {
        control[CONTROL_APPLY] = 0u;
        return;
    }
    uint steps = control[CONTROL_STEPS];
    uint t = steps == 0xffffffffu ? steps : steps + 1u;
    const uint ONE = 0x3f800000u;
    uint c1 = sf_add(ONE, power(pc.beta1, t) ^ 0x80000000u);
    uint c2 = sf_add(ONE, power(pc.beta2, t) ^ 0x80000000u);
    control[CONTROL_STEPS] = t;
    control[CONTROL_K1] = sf_div(ONE, c1);
    control[CONTROL_R2] = sf_div(ONE, sf_sqrt(c2));
    control[CONTROL_APPLY] = 1u;
}
