#version 450
#extension GL_GOOGLE_include_directive : require
// The transposed product (backward pass): y[b][c] = Σ_row x[b][row]·W[row][c].
//
// One workgroup of 256 per block of 32 columns: invocation t takes step t % 4
// (8 columns) of the rows t / 4, t / 4 + 64, ... (4 rows per iteration, so
// their loads are in flight together) and keeps 8 x BATCH f32 sums; the 64
// row lanes are then summed through shared memory in two stages, one vector
// at a time. With `accumulate` the sums are added to y (the row chunks after
// the first, when W is split over several dispatches). Needs no optional
// feature.

layout(local_size_x = 256) in;

#include "matvec.glsl"

#define LANES 64u
shared float partial[LANES * 32u];

// acc += W[r][the invocation's 8 columns] * x[b][r] for every vector.
void add_row(uint r, uint k, uint s, inout float acc[8][MAX_BATCH]) {
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
    uint r = lane;
    for (; r + 3u * LANES < pc.rows; r += 4u * LANES) {
        for (uint u = 0u; u < 4u; ++u) {
            add_row(r + u * LANES, k, s, acc);
        }
    }
    for (; r < pc.rows; r += LANES) {
        add_row(r, k, s, acc);
    }
    uint column = t % 32u;
    uint part = t / 32u;
    for (uint b = 0u; b < BATCH; ++b) {
        for (uint i = 0u; i < 8u; ++i) {
            partial[lane * 32u + element(0u, s, i)] = acc[i][b];
        }
        barrier();
        // 8 parts of 8 lanes per column, then the 8 parts.
        float sum = 0.0;
        for (uint l = 0u; l < 8u; ++l) {
            sum += partial[(part * 8u + l) * 32u + column];
        }
        barrier();
        partial[part * 32u + column] = sum;
        barrier();
        if (t < 32u && k * 32u + t < pc.cols) {
            float total = 0.0;
            for (uint p = 0u; p < 8u; ++p) {
                total += partial[p * 32u + t];
            }
            uint at = b * pc.cols + k * 32u + t;
            y[at] = pc.accumulate != 0u ? y[at] + total : total;
        }
        barrier();
    }
}
