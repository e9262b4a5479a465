#version 450
// The embedding's gradient: dtable[v][j] = Σ dx[t][k·E + j] over the
// (token t, position k) whose context byte is v, in the order t, then k. One
// invocation per table entry, so no two invocations add into one value and no
// float atomics are needed: the sums are the same on every run.
// n0 = tokens, n1 = context length, n2 = E, n3 = vocabulary.
#include "push.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Context { uint context[]; };
layout(std430, binding = 1) readonly buffer DX { float dx[]; };
layout(std430, binding = 2) writeonly buffer DTable { float dtable[]; };

void main() {
  const uint i = gl_GlobalInvocationID.x, width = push.n2;
  if (i >= push.n3 * width) return;
  const uint v = i / width, j = i % width, positions = push.n0 * push.n1;
  float sum = 0.0;
  for (uint p = 0; p < positions; ++p)
    if (context[p] == v) sum += dx[p * width + j];
  dtable[i] = sum;
}
