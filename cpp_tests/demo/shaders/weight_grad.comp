#version 450
// dW = dYᵀ·X: dw[o][i] = Σ_t dy[t][o] · x[t][i], over the tokens in order
// (deterministic). A workgroup computes a 16-row × 64-column tile; the tokens'
// slices of dY and X it needs pass through shared memory 16 tokens at a time.
// n0 = rows (dY's width), n1 = cols (X's width), n2 = tokens.
#include "push.glsl"
layout(local_size_x = 64, local_size_y = 4) in;
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer DW { float dw[]; };

const uint kRows = 16, kCols = 64, kTokens = 16;
shared float dy_tile[kTokens][kRows];
shared float x_tile[kTokens][kCols];

void main() {
  const uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y, lid = ly * 64 + lx;
  const uint rows = push.n0, cols = push.n1, tokens = push.n2;
  const uint row0 = gl_WorkGroupID.y * kRows, col = gl_WorkGroupID.x * kCols + lx;
  float sum[4] = float[4](0.0, 0.0, 0.0, 0.0);
  for (uint t0 = 0; t0 < tokens; t0 += kTokens) {
    for (uint e = lid; e < kTokens * kCols; e += 256) {
      const uint t = t0 + e / kCols, c = gl_WorkGroupID.x * kCols + e % kCols;
      x_tile[e / kCols][e % kCols] = (t < tokens && c < cols) ? x[t * cols + c] : 0.0;
    }
    if (lid < kTokens * kRows) {
      const uint t = t0 + lid / kRows, r = row0 + lid % kRows;
      dy_tile[lid / kRows][lid % kRows] = (t < tokens && r < rows) ? dy[t * rows + r] : 0.0;
    }
    barrier();
    for (uint t = 0; t < kTokens; ++t) {
      const float xv = x_tile[t][lx];
      for (uint k = 0; k < 4; ++k) sum[k] += dy_tile[t][ly * 4 + k] * xv;
    }
    barrier();
  }
  if (col >= cols) return;
  for (uint k = 0; k < 4; ++k) {
    const uint r = row0 + ly * 4 + k;
    if (r < rows) dw[r * cols + col] = sum[k];
  }
}
