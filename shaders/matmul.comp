#version 450
#extension GL_GOOGLE_include_directive : require
// The compatible matmul kernel (shaders/matmul.glsl): f32 tiles in shared
// memory (16 KiB, the least any Vulkan device has: so unpadded), f32 fused
// multiply-adds, no optional device feature.
//
// A workgroup of 256 invocations computes a tile of 64 tokens × 64 outputs:
// invocation (ty, tx) of a 16 × 16 square keeps the 4 × 4 sums of tokens
// 4·ty.. and outputs 4·tx.. in registers and, for each k of the tile, reads
// 4 neighbouring values of A and 4 of B from shared memory for its 16 fused
// multiply-adds.
//
// Error against an FP64 product of the dequantized weights: each output is
// a sum of n products (n = cols forward, rows backward) in any order, with
// the products exact inside fused multiply-adds: (n + 3)·2⁻²⁴·Σ|w·x|, as
// the CPU's (GPUs may flush subnormal products to zero: at most 2⁻¹²⁶ more
// per term).

layout(local_size_x = 256) in;

#define STAGE_K_MAJOR
#define TILE_T float
#define TILE_PAD 0u
// TILE_K × A_STRIDE and TILE_K × B_STRIDE (shaders/matmul.glsl).
shared float a_tile[32u * 64u];
shared float b_tile[32u * 64u];

#include "matmul.glsl"

void main() {
    uint m0, n0;
    if (!tile_origin(m0, n0)) {
        return;
    }
    uint ty = gl_LocalInvocationID.x / 16u;
    uint tx = gl_LocalInvocationID.x % 16u;
    float acc[4][4];
    for (uint i = 0u; i < 4u; ++i) {
        for (uint j = 0u; j < 4u; ++j) {
            acc[i][j] = 0.0;
        }
    }
    for (uint k0 = 0u; k0 < SUM_LENGTH; k0 += TILE_K) {
        barrier();
        load_tiles(m0, n0, k0);
        barrier();
        for (uint k = 0u; k < TILE_K; ++k) {
            float a[4];
            float b[4];
            for (uint i = 0u; i < 4u; ++i) {
                a[i] = a_tile[k * A_STRIDE + 4u * ty + i];
                b[i] = b_tile[k * B_STRIDE + 4u * tx + i];
            }
            for (uint i = 0u; i < 4u; ++i) {
                for (uint j = 0u; j < 4u; ++j) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
    }
    for (uint i = 0u; i < 4u; ++i) {
        for (uint j = 0u; j < 4u; ++j) {
            store_output(m0, n0, 4u * ty + i, 4u * tx + j, acc[i][j]);
        }
    }
}
