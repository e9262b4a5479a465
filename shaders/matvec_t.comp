#version 450
#extension GL_GOOGLE_include_directive : require
// The transposed product (backward pass): y[b][c] = Σ_row x[b][row]·W[row][c].
//
// One workgroup per block of 32 columns: invocation t takes step t % 4 (8
// columns) of the rows t / 4, t / 4 + 32, ... and keeps 8 x BATCH f32 sums;
// the 32 row lanes are then summed through shared memory, one vector at a
// time. With `accumulate` the sums are added to y (row chunks after the
// first, when W is split over several dispatches). Needs no optional feature.

#include "matvec.glsl"

#define LANES 32u
shared float partial[LANES * 32u];

void main() {
    uint k = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (k * 32u >= pc.cols) {
        return;
    }
    uint t = gl_LocalInvocationID.x;
    uint s = t % 4u;
    uint lane = t / 4u;
    float acc[8][MAX_BATCH];
    for (uint i = 0u; i < 8u; ++i) {
        for (uint b = 0u; b < MAX_BATCH; ++b) {
            acc[i][b] = 0.0;
        }
    }
    for (uint r = lane; r < pc.rows; r += LANES) {
        uint base = row_base(r);
        vec2 scale = block_scale(base, k);
        float wv[2][4];
        weights4(base, k, s, 0u, scale, wv[0]);
        weights4(base, k, s, 1u, scale, wv[1]);
        for (uint b = 0u; b < BATCH; ++b) {
            float xv = x[b * pc.total_rows + pc.row_first + r];
            for (uint i = 0u; i < 8u; ++i) {
                acc[i][b] = fma(wv[i / 4u][i % 4u], xv, acc[i][b]);
            }
        }
    }
    for (uint b = 0u; b < BATCH; ++b) {
        for (uint i = 0u; i < 8u; ++i) {
            partial[lane * 32u + element(0u, s, i)] = acc[i][b];
        }
        barrier();
        if (t < 32u && k * 32u + t < pc.cols) {
            float sum = 0.0;
            for (uint l = 0u; l < LANES; ++l) {
                sum += partial[l * 32u + t];
            }
            uint at = b * pc.cols + k * 32u + t;
            y[at] = pc.accumulate != 0u ? y[at] + sum : sum;
        }
        barrier();
    }
}
