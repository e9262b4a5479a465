#version 450
// x[b][k·E + j] = table[context[b][k]][j]: the embedding lookup of a batch.
// n0 = tokens, n1 = context length, n2 = embedding width E.
#include "push.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Context { uint context[]; };
layout(std430, binding = 1) readonly buffer Table { float table[]; };
layout(std430, binding = 2) writeonly buffer X { float x[]; };

void main() {
  const uint i = gl_GlobalInvocationID.x, row = push.n1 * push.n2;
  if (i >= push.n0 * row) return;
  const uint b = i / row, k = (i % row) / push.n2, j = i % push.n2;
  x[i] = table[context[b * push.n1 + k] * push.n2 + j];
}
