#version 450
#extension GL_GOOGLE_include_directive : require
// y[b][row] = Σ_c W[row][c]·x[b][c] (+ bias[row]) for b < BATCH.
//
// One workgroup per NUM_ROWS rows; invocation t takes the steps of 8 values
// t, t + 128, ... of those rows. For each 4 values it loads x once for every vector and
// applies it to every row, and each word of W is loaded once and
// applied to every vector, so a batch of 8 reads W once. Partial sums (f32)
// are reduced with subgroupAdd (SUBGROUP) or through shared memory.

#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#define WG_SIZE 128u
layout(local_size_x = 128) in;

#include "matvec.glsl"

// x 16 bytes at a time: for the block formats cols is a multiple of 32, so
// the 4 values at element(k, s, 0) and at element(k, s, 4) are aligned; for
// the others, where cols is a multiple of 4.
layout(std430, binding = 1) restrict readonly buffer X4 { vec4 x4[]; };

// x for the 4 values of half h of step s of block k, every vector (0 past
// cols).
void load_x(uint k, uint s, uint h, out float xv[4][MAX_BATCH]) {
    uint e = element(k, s, 4u * h);
#ifdef BLOCK_HALVES
    for (uint b = 0u; b < BATCH; ++b) {
        vec4 v = x4[(b * pc.cols + e) / 4u];
        for (uint i = 0u; i < 4u; ++i) {
            xv[i][b] = v[i];
        }
    }
#else
    if ((pc.cols & 3u) == 0u && e + 4u <= pc.cols) {
        // Rows of x start on 16-byte boundaries: one 16-byte load per vector.
        for (uint b = 0u; b < BATCH; ++b) {
            vec4 v = x4[(b * pc.cols + e) / 4u];
            for (uint i = 0u; i < 4u; ++i) {
                xv[i][b] = v[i];
            }
        }
    } else {
        for (uint i = 0u; i < 4u; ++i) {
            for (uint b = 0u; b < BATCH; ++b) {
                xv[i][b] = e + i < pc.cols ? x[b * pc.cols + e + i] : 0.0;
            }
        }
    }
#endif
}

#ifdef SUBGROUP
// Needs subgroups of at least 4 invocations (checked on the Rust side).
shared float partial[MAX_ROWS * MAX_BATCH * (WG_SIZE / 4u)];

void reduce_and_store(uint row0, float acc[MAX_ROWS][MAX_BATCH]) {
    for (uint r = 0u; r < NUM_ROWS; ++r) {
        for (uint b = 0u; b < BATCH; ++b) {
            float v = subgroupAdd(acc[r][b]);
            if (subgroupElect()) {
                partial[(r * MAX_BATCH + b) * (WG_SIZE / 4u) + gl_SubgroupID] = v;
            }
        }
    }
    barrier();
    uint t = gl_LocalInvocationID.x;
    if (t < NUM_ROWS * BATCH) {
        uint r = t / BATCH;
        uint b = t % BATCH;
        float sum = 0.0;
        for (uint g = 0u; g < gl_NumSubgroups; ++g) {
            sum += partial[(r * MAX_BATCH + b) * (WG_SIZE / 4u) + g];
        }
        put(row0, r, b, sum);
    }
}
#else
// Outputs reduced per round: 16 x 128 floats (8 KiB) of shared memory;
// 16 outputs x 8 invocations = the workgroup.
#define ROUND 16u
shared float partial[ROUND * WG_SIZE];

// Sums the 128 partial sums of each of `count` outputs in two stages: 8
// invocations per output add 16 each, then one adds those 8.
void finish_round(uint row0, uint first, uint count) {
    barrier();
    uint t = gl_LocalInvocationID.x;
    uint slot = t / 8u;
    float sum = 0.0;
    if (slot < count) {
        for (uint i = 0u; i < 16u; ++i) {
            sum += partial[slot * WG_SIZE + (t % 8u) * 16u + i];
        }
    }
    barrier();
    partial[t] = sum;
    barrier();
    if (t < count) {
        float total = 0.0;
        for (uint i = 0u; i < 8u; ++i) {
            total += partial[t * 8u + i];
        }
        uint o = first + t;
        put(row0, o / BATCH, o % BATCH, total);
    }
    barrier();
}

void reduce_and_store(uint row0, float acc[MAX_ROWS][MAX_BATCH]) {
    uint t = gl_LocalInvocationID.x;
    uint total = NUM_ROWS * BATCH;
    uint o = 0u;
    for (uint r = 0u; r < NUM_ROWS; ++r) {
        for (uint b = 0u; b < BATCH; ++b) {
            partial[(o % ROUND) * WG_SIZE + t] = acc[r][b];
            ++o;
            if (o % ROUND == 0u || o == total) {
                finish_round(row0, (o - 1u) / ROUND * ROUND, (o - 1u) % ROUND + 1u);
            }
        }
    }
}
#endif

void main() {
    uint row0 = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * NUM_ROWS;
    if (row0 >= pc.rows) {
        return;
    }
    uint t = gl_LocalInvocationID.x;
    float acc[MAX_ROWS][MAX_BATCH];
    for (uint r = 0u; r < MAX_ROWS; ++r) {
        for (uint b = 0u; b < MAX_BATCH; ++b) {
            acc[r][b] = 0.0;
        }
    }
    // Invocation t takes steps of 8 values (a quarter of a block for the
    // block formats), so neighbouring invocations read neighbouring words of
    // W: 4 invocations cover one block's quants, 32 cover 8 whole blocks.
    uint units = (pc.cols + 7u) / 8u;
    const uint steps = 1u;
    for (uint u = t; u < units; u += WG_SIZE) {
        uint k = u * steps / 4u;
        vec2 scale[MAX_ROWS];
        for (uint r = 0u; r < NUM_ROWS; ++r) {
            scale[r] = row0 + r < pc.rows ? block_scale(row_base(row0 + r), k) : vec2(0.0);
        }
        for (uint j = 0u; j < steps; ++j) {
            uint s = (u * steps + j) % 4u;
            // Half a step at a time: 4 values of x per vector stay in
            // registers while every row uses them.
            for (uint h = 0u; h < 2u; ++h) {
                float xv[4][MAX_BATCH];
                load_x(k, s, h, xv);
                for (uint r = 0u; r < NUM_ROWS; ++r) {
                    if (row0 + r < pc.rows) {
                        float wv[4];
                        weights4(row_base(row0 + r), k, s, h, scale[r], wv);
                        for (uint i = 0u; i < 4u; ++i) {
                            for (uint b = 0u; b < BATCH; ++b) {
                                acc[r][b] = fma(wv[i], xv[i][b], acc[r][b]);
                            }
                        }
                    }
                }
            }
        }
    }
    reduce_and_store(row0, acc);
}
