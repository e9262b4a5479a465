#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// The cooperative-matrix matmul kernels on large tiles (shaders/matmul.glsl):
// the multiply-adds of matmul_coop.comp (16×8×16, f16 inputs, f32 sums, the
// same configuration and device needs, the same error bound) with more of
// them per staged slice. The variant table sets the shape:
//
// - TILE_M tokens × TILE_N outputs a workgroup (set by the build from the
//   variant), INVOCATIONS invocations (subgroups of 32); subgroup g owns
//   FRAG_M·16 tokens × FRAG_N·8 outputs at (FRAG_M·16·(g / SG_COLS),
//   FRAG_N·8·(g % SG_COLS)) as FRAG_M × FRAG_N accumulators of 16 × 8.
// - Slices of TILE_K values of the sum (32 unless the variant sets it).
//   By default they are double-buffered in shared memory: while the matrix
//   units multiply slice s, each invocation holds slice s + 1 in registers
//   (X read as vec4 where aligned, W decoded by weights.glsl), converted to
//   f16 once, and stores it into the other buffer after the multiply-adds;
//   then one barrier. STAGED: the same with one buffer, and a barrier before
//   the store too.
// - Tiles are staged with k contiguous (A: a row of TILE_K + 8 per token, B
//   forward: per output), or for B backward n contiguous (W's rows), padded
//   so that rows of the matrix loads fall on different banks. With PACKED
//   the tiles are arrays of 32-bit words (two f16 each) and each run of 4
//   values is stored as two words; results then leave through the A tile.
// - With X_F16, X (dY) is read as rounded to f16 once per product by
//   matmul_x_f16.comp (the same rounding), half the bytes.
// - Results leave through a 16 × 8 f32 stage per subgroup in shared memory,
//   which store_output writes with the bias, the accumulation and the edges.
//
// Written with GL_NV_cooperative_matrix and rewritten into
// SPV_KHR_cooperative_matrix by the build, as matmul_coop.comp.

layout(local_size_x = INVOCATIONS) in;

#include "matmul.glsl"

// X (dY), 4 floats at a time, for the loads that start on a multiple of 4.
layout(std430, binding = 1) restrict readonly buffer X4 { vec4 x4[]; };

#define SUBGROUPS (uint(INVOCATIONS) / 32u)
#define SG_COLS (TILE_N / (8u * FRAG_N))

#ifdef STAGED
#define BUFFERS 1u
#else
#define BUFFERS 2u
#endif

// Halves a staged row of k: a slice and 8 of padding (80 or 144 bytes: the 8 rows
// of a 16-byte-per-row matrix load fall on 8 different bank groups).
#define K_ROW (TILE_K + 8u)
// A: TILE_M rows of K_ROW per buffer.
#define A_BUFFER (TILE_M * K_ROW)

#ifdef TRANSPOSED
// B backward: TILE_K rows of N_ROW (the tile's outputs and 8 of padding).
#define N_ROW (TILE_N + 8u)
#define B_BUFFER (TILE_K * N_ROW)
#define B_AT(k, n) ((k) * N_ROW + (n))
#define B_ROW N_ROW
#else
// B forward: TILE_N rows of K_ROW.
#define B_BUFFER (TILE_N * K_ROW)
#define B_AT(k, n) ((n) * K_ROW + (k))
#define B_ROW K_ROW
#endif

#ifdef PACKED
// Two f16 a word: offsets and strides of the matrix loads in words.
#define UNIT 2u
shared uint a_tile[BUFFERS * A_BUFFER / 2u];
shared uint b_tile[BUFFERS * B_BUFFER / 2u];
#else
#define UNIT 1u
shared float16_t a_tile[BUFFERS * A_BUFFER];
shared float16_t b_tile[BUFFERS * B_BUFFER];
// Each subgroup's stage for one 16 × 8 accumulator on its way out.
shared float c_stage[SUBGROUPS * 128u];
#endif

// The shape's arithmetic, checked at compile time (an array of negative
// size fails the build): the subgroups tile the workgroup's tile, every
// invocation loads whole quads and steps, and (PACKED) the stages of the
// results fit in the A tile.
#define SHAPE_CHECK(name, condition) const uint name[(condition) ? 1 : -1] = uint[](0u)
SHAPE_CHECK(SUBGROUPS_TILE, SUBGROUPS == TILE_M / (16u * FRAG_M) * SG_COLS);
SHAPE_CHECK(WHOLE_QUADS, TILE_M * TILE_K / 4u % INVOCATIONS == 0u && TILE_M * TILE_K >= 4u * INVOCATIONS);
SHAPE_CHECK(WHOLE_STEPS, W_STEPS % INVOCATIONS == 0u && W_STEPS >= INVOCATIONS);
#ifdef PACKED
SHAPE_CHECK(STAGES_FIT, SUBGROUPS * 128u <= BUFFERS * A_BUFFER / 2u);
#endif

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

#ifdef X_F16
// X (dY) as rounded to f16 by matmul_x_f16.comp: binding 1 is then the
// recorder's scratch, halves from 0 (x_first is 0), 4 at a time where
// aligned.
layout(std430, binding = 1) restrict readonly buffer XH { uint xh[]; };
layout(std430, binding = 1) restrict readonly buffer XH2 { uvec2 xh2[]; };

// Value k of the sum for token t in f16 (zeros past the tokens and the sum).
float16_t x_half(uint t, uint k, uint at) {
    if (t >= pc.tokens || k >= SUM_LENGTH) {
        return float16_t(0.0);
    }
    return unpackFloat2x16(xh[at / 2u])[at % 2u];
}
#endif

// 4 values of the sum, k .. k + 3, for token t in f16 (x_value's zeros
// outside).
f16vec4 x_quad(uint t, uint k) {
#ifdef TRANSPOSED
    uint at = pc.x_first + t * pc.total_rows + pc.row_first + k;
#else
    uint at = pc.x_first + t * pc.cols + k;
#endif
    bool whole = t < pc.tokens && k + 4u <= SUM_LENGTH && at % 4u == 0u;
#ifdef X_F16
    if (whole) {
        uvec2 v = xh2[at / 4u];
        return f16vec4(unpackFloat2x16(v.x), unpackFloat2x16(v.y));
    }
    return f16vec4(x_half(t, k, at), x_half(t, k + 1u, at + 1u), x_half(t, k + 2u, at + 2u),
                   x_half(t, k + 3u, at + 3u));
#else
    if (whole) {
        return f16vec4(x4[at / 4u]);
    }
    return f16vec4(vec4(x_value(t, k), x_value(t, k + 1u), x_value(t, k + 2u),
                        x_value(t, k + 3u)));
#endif
}

// Quad q of A's slice: (token, first k) within the tile; 8 quads a token,
// neighbouring invocations on neighbouring quads of a token's row.
uvec2 a_quad_place(uint q) {
    return uvec2(q / (TILE_K / 4u), 4u * (q % (TILE_K / 4u)));
}

#if defined(FORMAT_F16) && defined(PACKED)
// F16 with PACKED: the 8 weights of step i (w_step's) as they lie in W, 16
// bytes, where they are whole inside the row and on a 16-byte boundary
// (false otherwise, and w_step decodes them). The values of a step are 8
// consecutive elements of one row: forward row n0 + i / K_STEPS from k0 +
// 8·(i % K_STEPS), backward row k0 + i / (TILE_N / 8) from n0 + 8·(i %
// (TILE_N / 8)).
#define F16_STRAIGHT
bool f16_step(uint n0, uint k0, uint i, out f16vec4 lo, out f16vec4 hi) {
#ifdef TRANSPOSED
    uint r = k0 + i / (TILE_N / 8u);
    uint e = n0 + 8u * (i % (TILE_N / 8u));
#else
    uint r = n0 + i / K_STEPS;
    uint e = k0 + 8u * (i % K_STEPS);
#endif
    if (r >= pc.rows || e + 8u > pc.cols) {
        return false;
    }
    uint at = row_base(r) + e;
    if (at % 8u != 0u) {
        return false;
    }
    uvec4 v = w4[at / 8u];
    lo = f16vec4(unpackFloat2x16(v.x), unpackFloat2x16(v.y));
    hi = f16vec4(unpackFloat2x16(v.z), unpackFloat2x16(v.w));
    return true;
}
#endif

// Reads the slice at k0 of the tile at (m0, n0) into a_next and b_next.
void fetch_slice(uint m0, uint n0, uint k0) {
    uint t = gl_LocalInvocationID.x;
    for (uint j = 0u; j < A_QUADS; ++j) {
        uvec2 place = a_quad_place(t + j * gl_WorkGroupSize.x);
        a_next[j] = x_quad(m0 + place.x, k0 + place.y);
    }
    for (uint j = 0u; j < B_STEPS; ++j) {
#ifdef F16_STRAIGHT
        if (f16_step(n0, k0, t + j * gl_WorkGroupSize.x, b_next[j][0], b_next[j][1])) {
            continue;
        }
#endif
        float wv[2][4];
        w_step(n0, k0, t + j * gl_WorkGroupSize.x, wv);
        b_next[j][0] = f16vec4(wv[0][0], wv[0][1], wv[0][2], wv[0][3]);
        b_next[j][1] = f16vec4(wv[1][0], wv[1][1], wv[1][2], wv[1][3]);
    }
}

#ifdef PACKED
// Stores the 4 values v at halves at .. at + 3 (at a multiple of 4) of a
// tile of words.
#define PUT4(tile, at, v) \
    tile[(at) / 2u] = packFloat2x16((v).xy); \
    tile[(at) / 2u + 1u] = packFloat2x16((v).zw);
#else
#define PUT4(tile, at, v) \
    for (uint c = 0u; c < 4u; ++c) { \
        tile[(at) + c] = (v)[c]; \
    }
#endif

// Stores a_next and b_next into `which` (0 or 1) of the tiles. The 4
// values of a quad or a half step are consecutive in the tile: k forward,
// n backward (weights.glsl's element), starting on a multiple of 4.
void put_slice(uint n0, uint which) {
    uint t = gl_LocalInvocationID.x;
    for (uint j = 0u; j < A_QUADS; ++j) {
        uvec2 place = a_quad_place(t + j * gl_WorkGroupSize.x);
        uint at = which * A_BUFFER + place.x * K_ROW + place.y;
        PUT4(a_tile, at, a_next[j])
    }
    for (uint j = 0u; j < B_STEPS; ++j) {
        uint i = t + j * gl_WorkGroupSize.x;
        for (uint h = 0u; h < 2u; ++h) {
            uvec2 place = w_place(n0, i, 4u * h);
            uint at = which * B_BUFFER + B_AT(place.x, place.y);
            PUT4(b_tile, at, b_next[j][h])
        }
    }
}

// The subgroup's accumulators c<i><j> (tokens 16i.., outputs 8j.. of its
// FRAG_M·16 × FRAG_N·8) and the matrices of A it multiplies, a<i>, are
// separate variables, not arrays: the driver placed an array of matrices
// indexed in loops in local memory (NVIDIA 580: 256 bytes an invocation).
#if FRAG_M == 2
#define FOR_EACH_I(F) F(0) F(1)
#define FOR_EACH_I_OF(F, j) F(0, j) F(1, j)
#elif FRAG_M == 4
#define FOR_EACH_I(F) F(0) F(1) F(2) F(3)
#define FOR_EACH_I_OF(F, j) F(0, j) F(1, j) F(2, j) F(3, j)
#endif
#if FRAG_N == 2
#define FOR_EACH_J(F) F(0) F(1)
#define FOR_EACH_J_OF(F, i) F(i, 0) F(i, 1)
#elif FRAG_N == 4
#define FOR_EACH_J(F) F(0) F(1) F(2) F(3)
#define FOR_EACH_J_OF(F, i) F(i, 0) F(i, 1) F(i, 2) F(i, 3)
#endif
#define ROW_OF(i) FOR_EACH_J_OF(EACH_IJ, i)
#define FOR_EACH_IJ FOR_EACH_I(ROW_OF)

#define DECLARE_A(i) MatA a##i;
#define LOAD_A(i) \
    coopMatLoadNV(a##i, a_tile, (a_at + (sm + 16u * i) * K_ROW + k) / UNIT, K_ROW / UNIT, false);
// Forward, B[k][n] at n·K_ROW + k: column-major as a K × N matrix.
#ifdef TRANSPOSED
#define B_COLUMN_MAJOR false
#else
#define B_COLUMN_MAJOR true
#endif
#define LOAD_B(j) \
    coopMatLoadNV(b, b_tile, (b_at + B_AT(k, sn + 8u * j)) / UNIT, B_ROW / UNIT, B_COLUMN_MAJOR);
#define MULTIPLY_ADD(i, j) c##i##j = coopMatMulAddNV(a##i, b, c##i##j);
#define MULTIPLY_COLUMN(j) \
    LOAD_B(j) \
    FOR_EACH_I_OF(MULTIPLY_ADD, j)

// Writes one 16 × 8 accumulator at (m, n) of the tile at (m0, n0) through
// the subgroup's stage (PACKED: its 128 words of the A tile, free after the
// last slice's barrier).
void store_accumulator(MatC c, uint m0, uint n0, uint m, uint n) {
    uint stage = gl_SubgroupID * 128u;
#ifdef PACKED
    coopMatStoreNV(c, a_tile, stage, 8u, false);
#else
    coopMatStoreNV(c, c_stage, stage, 8u, false);
#endif
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    for (uint e = gl_SubgroupInvocationID; e < 128u; e += gl_SubgroupSize) {
#ifdef PACKED
        float v = uintBitsToFloat(a_tile[stage + e]);
#else
        float v = c_stage[stage + e];
#endif
        store_output(m0, n0, m + e / 8u, n + e % 8u, v);
    }
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}

void main() {
    uint m0, n0;
    if (!tile_origin(m0, n0)) {
        return;
    }
    // This subgroup's tokens × outputs within the tile.
    uint sm = gl_SubgroupID / SG_COLS * (16u * FRAG_M);
    uint sn = gl_SubgroupID % SG_COLS * (8u * FRAG_N);
#define DECLARE_C(i, j) MatC c##i##j = MatC(0.0);
#define EACH_IJ DECLARE_C
    FOR_EACH_IJ
#undef EACH_IJ
    uint slices = (SUM_LENGTH + TILE_K - 1u) / TILE_K;
    fetch_slice(m0, n0, 0u);
    put_slice(n0, 0u);
    barrier();
    for (uint slice = 0u; slice < slices; ++slice) {
        bool more = slice + 1u < slices;
        if (more) {
            fetch_slice(m0, n0, (slice + 1u) * TILE_K);
        }
        uint a_at = slice % BUFFERS * A_BUFFER;
        uint b_at = slice % BUFFERS * B_BUFFER;
        for (uint k = 0u; k < TILE_K; k += 16u) {
            FOR_EACH_I(DECLARE_A)
            FOR_EACH_I(LOAD_A)
            MatB b;
            FOR_EACH_J(MULTIPLY_COLUMN)
        }
#ifdef STAGED
        barrier();
#endif
        if (more) {
            put_slice(n0, (slice + 1u) % BUFFERS);
        }
        barrier();
    }
#define STORE_C(i, j) store_accumulator(c##i##j, m0, n0, sm + 16u * i, sn + 8u * j);
#define EACH_IJ STORE_C
    FOR_EACH_IJ
}
