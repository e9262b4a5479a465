// Shared by the matmul kernels: bindings, push constants (matmul_push.glsl), the
// tiles of the operands in shared memory and the stores of the results.
// FORMAT_* is set by the variant table, TRANSPOSED for the backward product.
//
// Forward: Y[t][r] = Σ_c X[t][c]·W[r][c] (+ bias[r]); backward (TRANSPOSED):
// dX[t][c] = Σ_r dY[t][r]·W[r][c]. Either way a workgroup computes a tile of
// TILE_M tokens × TILE_N outputs (rows of W forward, its columns backward) as
// C[m][n] = Σ_k A[k][m]·B[k][n], TILE_K values of the sum at a time: A is the
// tile of X (dY) and B the tile of W, dequantized exactly as the CPU does.
// The including kernel stages them in shared memory: with STAGE_K_MAJOR
// (matmul.comp, matmul_coop.comp) through load_tiles below, k-major,
// A_STRIDE and B_STRIDE values a row, into its arrays a_tile and b_tile of
// TILE_T (float, or float16_t), padded by TILE_PAD; otherwise with its own
// loads of x_value / x_quad and w_step.
//
// TILE_M and TILE_N (tokens and outputs of a workgroup's tile) are set by
// the build (build_support/shaders.rs `matmul_tile`), which sizes the grid
// with them. TILE_K (values of the sum a slice, a multiple of 32) is 32
// unless the kernel sets it.

#ifndef TILE_K
#define TILE_K 32u
#endif

layout(std430, binding = 1) restrict readonly buffer X { float x[]; };
layout(std430, binding = 2) restrict readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) buffer Y { float y[]; };

#include "matmul_push.glsl"

#include "weights.glsl"

// Test only: true in the pipeline of the kernel a context was asked to
// corrupt (src/vk/pipelines.rs); its first output of every dispatch is then
// 2·v + 1, which the self-test's bound must catch.
layout(constant_id = 0) const bool PERTURB = false;

// The workgroup's tile: (first token, first output) within the dispatch, or
// false for a workgroup past the last tile (the grid is 2-D).
bool tile_origin(out uint m0, out uint n0) {
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    m0 = group / pc.tiles_n * TILE_M;
    n0 = group % pc.tiles_n * TILE_N;
    return m0 < pc.tokens;
}

#ifdef TRANSPOSED
// Outputs of the dispatch (columns of W) and the length of its sums.
#define OUTPUTS pc.cols
#define SUM_LENGTH pc.rows
#else
#define OUTPUTS pc.rows
#define SUM_LENGTH pc.cols
#endif

// Value k of the sum for token t (of this dispatch): X[t][k] forward,
// dY[t][row_first + k] backward; 0 past the tokens and the sum.
float x_value(uint t, uint k) {
    if (t >= pc.tokens || k >= SUM_LENGTH) {
        return 0.0;
    }
#ifdef TRANSPOSED
    return x[pc.x_first + t * pc.total_rows + pc.row_first + k];
#else
    return x[pc.x_first + t * pc.cols + k];
#endif
}

// The steps of 8 weights (weights.glsl's unit) of the tile of W at outputs
// n0.. and sums k0..k0 + TILE_K: TILE_N · TILE_K / 8 of them. Forward: rows
// n0.. of W, the blocks k0 / 32.. of each (K_STEPS steps a row, 4 a block);
// backward: rows k0.. of W, columns n0.. (TILE_N / 8 steps a row).
#define W_STEPS (TILE_N * TILE_K / 8u)
#define K_STEPS (TILE_K / 8u)

// The 8 weights of step i (zeros outside W): wv[h][j] is value 4h + j, at
// place w_place(n0, i, 4h + j) of the tile.
void w_step(uint n0, uint k0, uint i, out float wv[2][4]) {
    wv = float[2][4](float[4](0.0, 0.0, 0.0, 0.0), float[4](0.0, 0.0, 0.0, 0.0));
#ifdef TRANSPOSED
    uint kk = i / (TILE_N / 8u);
    uint step = i % (TILE_N / 8u);
    uint block = n0 / 32u + step / 4u;
    bool inside = k0 + kk < pc.rows && block * 32u < pc.cols;
    uint base = row_base(k0 + kk);
#else
    uint n = i / K_STEPS;
    uint block = k0 / 32u + i % K_STEPS / 4u;
    bool inside = n0 + n < pc.rows && block * 32u < pc.cols;
    uint base = row_base(n0 + n);
#endif
    if (inside) {
        uint s = i % 4u;
        vec2 scale = block_scale(base, block);
        weights4(base, block, s, 0u, scale, wv[0]);
        weights4(base, block, s, 1u, scale, wv[1]);
    }
}

// The place in the tile (k, n) of value j of step i.
uvec2 w_place(uint n0, uint i, uint j) {
#ifdef TRANSPOSED
    uint step = i % (TILE_N / 8u);
    uint block = n0 / 32u + step / 4u;
    return uvec2(i / (TILE_N / 8u), element(block, step % 4u, j) - n0);
#else
    return uvec2(element(i % K_STEPS / 4u, i % 4u, j), i / K_STEPS);
#endif
}

#ifdef STAGE_K_MAJOR
// Values a row of the staged tiles: TILE_PAD more than the tile (set by
// the kernel: rows stay 16-byte aligned; a padding spreads the stores of
// neighbouring k over the banks, where the memory allows one).
#define A_STRIDE (TILE_M + TILE_PAD)
#define B_STRIDE (TILE_N + TILE_PAD)

// Stages A[k0 .. k0 + TILE_K) for tokens m0.. and B[k0 ..) for outputs n0..
// (zeros past the tokens, the outputs and the sum), between barriers.
void load_tiles(uint m0, uint n0, uint k0) {
    uint t = gl_LocalInvocationID.x;
    // A: TILE_M × TILE_K values, neighbouring invocations on neighbouring k
    // (consecutive floats of X or dY).
    for (uint i = t; i < TILE_M * TILE_K; i += gl_WorkGroupSize.x) {
        uint m = i / TILE_K;
        uint k = i % TILE_K;
        a_tile[k * A_STRIDE + m] = TILE_T(x_value(m0 + m, k0 + k));
    }
    // B: the steps of 8 weights, each decoded in two halves of 4.
    for (uint i = t; i < W_STEPS; i += gl_WorkGroupSize.x) {
        float wv[2][4];
        w_step(n0, k0, i, wv);
        for (uint j = 0u; j < 8u; ++j) {
            uvec2 place = w_place(n0, i, j);
            b_tile[place.x * B_STRIDE + place.y] = TILE_T(wv[j / 4u][j % 4u]);
        }
    }
}
#endif

// Stores output n of token m of the tile at (m0, n0): plus the bias
// (forward), or added to dX (backward, after the first chunk of W's rows);
// outputs past the dispatch are dropped.
void store_output(uint m0, uint n0, uint m, uint n, float v) {
    uint t = m0 + m;
    uint o = n0 + n;
    if (t >= pc.tokens || o >= OUTPUTS) {
        return;
    }
    if (PERTURB && t == 0u && o == 0u) {
        v = 2.0 * v + 1.0;
    }
#ifdef TRANSPOSED
    uint at = pc.y_first + t * pc.cols + o;
    y[at] = pc.accumulate != 0u ? y[at] + v : v;
#else
    uint row = pc.row_first + o;
    if (pc.has_bias != 0u) {
        v += bias[row];
    }
    y[pc.y_first + t * pc.total_rows + row] = v;
#endif
}
