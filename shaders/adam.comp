#version 450
// One Adam(W) step with FP32 moments (crate::train::adam, StateLayout::Fp32):
// one element per invocation; the state binding holds this dispatch's m at
// word m_at and v at word v_at. A skipped step (control word APPLY = 0,
// written by adam_count.comp) changes nothing.

#include "adam_common.glsl"
GRID_CHECK(1u);

void main() {
    if (control[CONTROL_APPLY] == 0u) {
        return;
    }
    uint i = element_index();
    if (i >= pc.n_elements) {
        return;
    }
    Scalars s = step_scalars();
    uvec3 r = adam_update(s, scalars_are_normal(s), params[i], grads[i], state[pc.m_at + i],
                          state[pc.v_at + i]);
    params[i] = r.x;
    state[pc.m_at + i] = r.y;
    state[pc.v_at + i] = r.z;
}
