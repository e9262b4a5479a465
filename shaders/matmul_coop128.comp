#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// The cooperative-matrix matmul kernel on tiles of 128 tokens × 128 outputs
// (shaders/matmul.glsl; TILE = 128): the multiply-adds of matmul_coop.comp
// (16×8×16, f16 inputs, f32 sums, the same configuration and device needs,
// the same error bound) with more of them per staged slice and one barrier
// per slice:
//
// - A workgroup of 8 subgroups; subgroup g owns the 64 tokens × 32 outputs
//   at (64·(g / 4), 32·(g % 4)) as 4 × 4 accumulators of 16 × 8, so each
//   slice of 32 values of the sum feeds it 32 multiply-adds from 8 loads of
//   A and 8 of B.
// - Slices are double-buffered in shared memory: while the matrix units
//   multiply slice s, each invocation holds slice s + 1 in registers (X read
//   as vec4 where aligned, W decoded by weights.glsl), converted to f16 once,
//   and stores it into the other buffer after the multiply-adds; then one
//   barrier.
// - Tiles are staged with k contiguous (A: a row of 32 + 8 per token, B
//   forward: per output), or for B backward n contiguous (W's rows), padded
//   so that rows of the matrix loads fall on different banks.
// - Results leave through a 16 × 8 f32 stage per subgroup in shared memory,
//   which store_output writes with the bias, the accumulation and the edges.
//
// 44 KiB of shared memory forward, 41 KiB backward (NVIDIA offers 48).
//
// Written with GL_NV_cooperative_matrix and rewritten into
// SPV_KHR_cooperative_matrix by the build, as matmul_coop.comp.

layout(local_size_x = 256) in;

#include "matmul.glsl"

// X (dY), 4 floats at a time, for the loads that start on a multiple of 4.
layout(std430, binding = 1) restrict readonly buffer X4 { vec4 x4[]; };

// Halves a staged row of k: a slice and 8 of padding (80 bytes: the 8 rows
// of a 16-byte-per-row matrix load fall on 8 different bank groups).
#define K_ROW (TILE_K + 8u)
// A: TILE_M rows of K_ROW per buffer.
#define A_BUFFER (TILE_M * K_ROW)
shared float16_t a_tile[2u * A_BUFFER];

#ifdef TRANSPOSED
// B backward: TILE_K rows of N_ROW (the tile's outputs and 8 of padding).
#define N_ROW (TILE_N + 8u)
#define B_BUFFER (TILE_K * N_ROW)
#define B_AT(k, n) ((k) * N_ROW + (n))
#else
// B forward: TILE_N rows of K_ROW.
#define B_BUFFER (TILE_N * K_ROW)
#define B_AT(k, n) ((n) * K_ROW + (k))
#endif
shared float16_t b_tile[2u * B_BUFFER];

// Each subgroup's stage for one 16 × 8 accumulator on its way out.
#define SUBGROUPS 8u
shared float c_stage[SUBGROUPS * 128u];

#define MatA fcoopmatNV<16, 3, 16, 16>
#define MatB fcoopmatNV<16, 3, 16, 8>
#define MatC fcoopmatNV<32, 3, 16, 8>

// The next slice, held by this invocation between the load and the store:
// A_QUADS quads of A (4 consecutive k of one token) and B_STEPS steps of 8
// weights.
#define A_QUADS (TILE_M * TILE_K / 4u / gl_WorkGroupSize.x)
#define B_STEPS (W_STEPS / gl_WorkGroupSize.x)
f16vec4 a_next[A_QUADS];
f16vec4 b_next[B_STEPS][2];

// 4 values of the sum, k .. k + 3, for token t (x_value's zeros outside).
vec4 x_quad(uint t, uint k) {
#ifdef TRANSPOSED
    uint at = pc.x_first + t * pc.total_rows + pc.row_first + k;
#else
    uint at = pc.x_first + t * pc.cols + k;
#endif
    if (t < pc.tokens && k + 4u <= SUM_LENGTH && at % 4u == 0u) {
        return x4[at / 4u];
    }
    return vec4(x_value(t, k), x_value(t, k + 1u), x_value(t, k + 2u), x_value(t, k + 3u));
}

// Quad q of A's slice: (token, first k) within the tile; 8 quads a token,
// neighbouring invocations on neighbouring quads of a token's row.
uvec2 a_quad_place(uint q) {
    return uvec2(q / (TILE_K / 4u), 4u * (q % (TILE_K / 4u)));
}

// Reads the slice at k0 of the tile at (m0, n0) into a_next and b_next.
void fetch_slice(uint m0, uint n0, uint k0) {
    uint t = gl_LocalInvocationID.x;
    for (uint j = 0u; j < A_QUADS; ++j) {
        uvec2 place = a_quad_place(t + j * gl_WorkGroupSize.x);
        a_next[j] = f16vec4(x_quad(m0 + place.x, k0 + place.y));
    }
    for (uint j = 0u; j < B_STEPS; ++j) {
        float wv[2][4];
        w_step(n0, k0, t + j * gl_WorkGroupSize.x, wv);
        b_next[j][0] = f16vec4(wv[0][0], wv[0][1], wv[0][2], wv[0][3]);
        b_next[j][1] = f16vec4(wv[1][0], wv[1][1], wv[1][2], wv[1][3]);
    }
}

// Stores a_next and b_next into `which` (0 or 1) of the tiles.
void put_slice(uint n0, uint which) {
    uint t = gl_LocalInvocationID.x;
    for (uint j = 0u; j < A_QUADS; ++j) {
        uvec2 place = a_quad_place(t + j * gl_WorkGroupSize.x);
        uint at = which * A_BUFFER + place.x * K_ROW + place.y;
        for (uint c = 0u; c < 4u; ++c) {
            a_tile[at + c] = a_next[j][c];
        }
    }
    for (uint j = 0u; j < B_STEPS; ++j) {
        uint i = t + j * gl_WorkGroupSize.x;
        for (uint v = 0u; v < 8u; ++v) {
            uvec2 place = w_place(n0, i, v);
            b_tile[which * B_BUFFER + B_AT(place.x, place.y)] = b_next[j][v / 4u][v % 4u];
        }
    }
}

// The subgroup's accumulators c<i><j> (tokens 16i.., outputs 8j.. of its
// 64 × 32) and the matrices of A it multiplies, a<i>, are separate
// variables, not arrays: the driver placed an array of matrices indexed in
// loops in local memory (NVIDIA 580: 256 bytes an invocation).
#define FOR_EACH_J(F, i) F(i, 0) F(i, 1) F(i, 2) F(i, 3)
#define FOR_EACH_IJ(F) FOR_EACH_J(F, 0) FOR_EACH_J(F, 1) FOR_EACH_J(F, 2) FOR_EACH_J(F, 3)
#define DECLARE_C(i, j) MatC c##i##j = MatC(0.0);
#define LOAD_A(i) \
    coopMatLoadNV(a##i, a_tile, a_at + (sm + 16u * i) * K_ROW + k, K_ROW, false);
#ifdef TRANSPOSED
#define LOAD_B(j) coopMatLoadNV(b, b_tile, b_at + B_AT(k, sn + 8u * j), N_ROW, false);
#else
// B[k][n] at n·K_ROW + k: column-major as a K × N matrix.
#define LOAD_B(j) coopMatLoadNV(b, b_tile, b_at + B_AT(k, sn + 8u * j), K_ROW, true);
#endif
#define MULTIPLY_COLUMN(j) \
    LOAD_B(j) \
    c0##j = coopMatMulAddNV(a0, b, c0##j); \
    c1##j = coopMatMulAddNV(a1, b, c1##j); \
    c2##j = coopMatMulAddNV(a2, b, c2##j); \
    c3##j = coopMatMulAddNV(a3, b, c3##j);
#define STORE_C(i, j) store_accumulator(c##i##j, m0, n0, sm + 16u * i, sn + 8u * j);

// Writes one 16 × 8 accumulator at (m, n) of the tile at (m0, n0) through
// the subgroup's stage.
void store_accumulator(MatC c, uint m0, uint n0, uint m, uint n) {
    uint stage = gl_SubgroupID * 128u;
    coopMatStoreNV(c, c_stage, stage, 8u, false);
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    for (uint e = gl_SubgroupInvocationID; e < 128u; e += gl_SubgroupSize) {
        store_output(m0, n0, m + e / 8u, n + e % 8u, c_stage[stage + e]);
    }
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}

void main() {
    uint m0, n0;
    if (!tile_origin(m0, n0)) {
        return;
    }
    // This subgroup's 64 tokens × 32 outputs within the tile.
    uint sm = gl_SubgroupID / 4u * 64u;
    uint sn = gl_SubgroupID % 4u * 32u;
    FOR_EACH_IJ(DECLARE_C)
    uint slices = (SUM_LENGTH + TILE_K - 1u) / TILE_K;
    fetch_slice(m0, n0, 0u);
    put_slice(n0, 0u);
    barrier();
    for (uint slice = 0u; slice < slices; ++slice) {
        bool more = slice + 1u < slices;
        if (more) {
            fetch_slice(m0, n0, (slice + 1u) * TILE_K);
        }
        uint a_at = slice % 2u * A_BUFFER;
        uint b_at = slice % 2u * B_BUFFER;
        for (uint k = 0u; k < TILE_K; k += 16u) {
            MatA a0, a1, a2, a3;
            LOAD_A(0) LOAD_A(1) LOAD_A(2) LOAD_A(3)
            MatB b;
            MULTIPLY_COLUMN(0) MULTIPLY_COLUMN(1) MULTIPLY_COLUMN(2) MULTIPLY_COLUMN(3)
        }
        if (more) {
            put_slice(n0, (slice + 1u) % 2u);
        }
        barrier();
    }
    FOR_EACH_IJ(STORE_C)
}
