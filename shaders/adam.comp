#version 450
// One Adam(W) step with FP32 moments (crate::train::adam, StateLayout::Fp32);
// the state binding holds this dispatch's m at word m_at and v at word
// v_at. A skipped step (control word APPLY = 0, written by adam_count.comp)
// changes nothing.
//
// By adam_update (`_rte`, `_rte_x4`, and the compatible kernel), or with
// CHECKED (`_rte_hw`, `_rte_hw_x4`) every operation by the floating-point
// unit, division and square root checked exact on the integers
// (adam_update_checked), the elements it cannot do exactly redone on the
// bits after the others are stored. ELEMENTS (1 unless the build says) per
// invocation, LOCAL_SIZE apart (each load coalesced), every load issued
// before any arithmetic, so that more bytes are in flight per invocation.

#define FMA_PROBE_ONCE
#include "adam_common.glsl"
#ifndef ELEMENTS
#define ELEMENTS 1
#endif
const uint PER_LANE = ELEMENTS;
GRID_CHECK(PER_LANE);

#if defined(CHECKED) || ELEMENTS > 1
void main() {
    if (control[CONTROL_APPLY] == 0u) {
        return;
    }
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint first = group * (PER_LANE * LOCAL_SIZE) + gl_LocalInvocationID.x;
#ifdef FMA_CHECK
    hoist_fma_probe();
#endif
    Scalars s = step_scalars();
    bool scalars_normal = scalars_are_normal(s);
    uint p[ELEMENTS], g[ELEMENTS], m[ELEMENTS], v[ELEMENTS];
    for (uint k = 0u; k < PER_LANE; ++k) {
        uint i = first + k * LOCAL_SIZE;
        if (i < pc.n_elements) {
            p[k] = params[i];
            g[k] = grads[i];
            m[k] = state[pc.m_at + i];
            v[k] = state[pc.v_at + i];
        }
    }
    uint redo = 0u;
    for (uint k = 0u; k < PER_LANE; ++k) {
        uint i = first + k * LOCAL_SIZE;
        if (i < pc.n_elements) {
#ifdef CHECKED
            bool exact;
#ifdef PROBE
            probe = 0u;
#endif
            uvec3 r = adam_update_checked(s, scalars_normal, p[k], g[k], m[k], v[k], exact);
#ifdef PROBE
            if (!exact) {
                // Measurement only: the weight marked with why (the state untouched).
                params[i] = (0x2b5au << 9) | 0x100u | probe;
                continue;
            }
#endif
#else
            const bool exact = true;
            uvec3 r = adam_update(s, scalars_normal, p[k], g[k], m[k], v[k]);
#endif
            if (exact) {
                params[i] = r.x;
                state[pc.m_at + i] = r.y;
                state[pc.v_at + i] = r.z;
            } else {
                redo |= 1u << k;
            }
        }
    }
    for (uint k = 0u; k < PER_LANE; ++k) {
        if ((redo & (1u << k)) != 0u) {
            uint i = first + k * LOCAL_SIZE;
            uvec3 r = adam_update_soft(s, p[k], g[k], m[k], v[k]);
            params[i] = r.x;
            state[pc.m_at + i] = r.y;
            state[pc.v_at + i] = r.z;
        }
    }
}
#else
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
#endif
