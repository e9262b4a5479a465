#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// The cooperative-matrix matmul kernel (shaders/matmul.glsl): the tiles are
// staged in f16 and multiplied by the device's matrix units in 16×8×16
// steps (f16 inputs, f32 accumulation), then written through an f32 tile in
// shared memory (27 KiB in all).
//
// Written with GL_NV_cooperative_matrix, the cooperative-matrix syntax the
// pinned glslang (11.13) has; the build rewrites the module into
// SPV_KHR_cooperative_matrix (build_support/spirv.rs), which the device must
// offer (VK_KHR_cooperative_matrix with the 16×8×16 f16 × f16 + f32
// configuration at subgroup scope, subgroups of 32: checked on the Rust side).
//
// A workgroup of 4 subgroups computes a tile of 64 tokens × 64 outputs;
// subgroup g takes the quadrant of 32 × 32 at (32·(g / 2), 32·(g % 2)) as
// 2 × 4 matrices of 16 × 8 sums.
//
// Error against an FP64 product of the dequantized weights: W and X are
// rounded to f16 (magnitudes of 65520 and more become ±Inf), each product
// of the rounded values is added in f32 (the matrix units may truncate
// instead of rounding): (2⁻⁹ + (n + 12)·2⁻²³)·Σ|w·x| + 2⁻²³·Σ(|w| + |x|)
// for a sum of n products (src/vk/matmul.rs derives it).

layout(local_size_x = 128) in;

#define STAGE_K_MAJOR
#define TILE_T float16_t
#define TILE_PAD 8u
// TILE_K × A_STRIDE and TILE_K × B_STRIDE (shaders/matmul.glsl).
shared float16_t a_tile[32u * (64u + 8u)];
shared float16_t b_tile[32u * (64u + 8u)];

#include "matmul.glsl"

// The results, row-major, C_STRIDE floats a token (rows 16-byte aligned).
#define C_STRIDE (TILE_N + 4u)
shared float c_tile[TILE_M * C_STRIDE];

#define MatA fcoopmatNV<16, 3, 16, 16>
#define MatB fcoopmatNV<16, 3, 16, 8>
#define MatC fcoopmatNV<32, 3, 16, 8>

void main() {
    uint m0, n0;
    if (!tile_origin(m0, n0)) {
        return;
    }
    uint qm = gl_SubgroupID / 2u * 32u;
    uint qn = gl_SubgroupID % 2u * 32u;
    MatC acc[2][4];
    for (uint i = 0u; i < 2u; ++i) {
        for (uint j = 0u; j < 4u; ++j) {
            acc[i][j] = MatC(0.0);
        }
    }
    for (uint k0 = 0u; k0 < SUM_LENGTH; k0 += TILE_K) {
        barrier();
        load_tiles(m0, n0, k0);
        barrier();
        for (uint k = 0u; k < TILE_K; k += 16u) {
            // A[k][m] is k-major: column-major as an M × K matrix.
            MatA a[2];
            for (uint i = 0u; i < 2u; ++i) {
                coopMatLoadNV(a[i], a_tile, k * A_STRIDE + qm + 16u * i, A_STRIDE, true);
            }
            for (uint j = 0u; j < 4u; ++j) {
                MatB b;
                coopMatLoadNV(b, b_tile, k * B_STRIDE + qn + 8u * j, B_STRIDE, false);
                for (uint i = 0u; i < 2u; ++i) {
                    acc[i][j] = coopMatMulAddNV(a[i], b, acc[i][j]);
                }
            }
        }
    }
    for (uint i = 0u; i < 2u; ++i) {
        for (uint j = 0u; j < 4u; ++j) {
            coopMatStoreNV(acc[i][j], c_tile, (qm + 16u * i) * C_STRIDE + qn + 8u * j, C_STRIDE,
                           false);
        }
    }
    barrier();
    for (uint i = gl_LocalInvocationID.x; i < TILE_M * TILE_N; i += gl_WorkGroupSize.x) {
        uint m = i / TILE_N;
        uint n = i % TILE_N;
        store_output(m0, n0, m, n, c_tile[m * C_STRIDE + n]);
    }
}
