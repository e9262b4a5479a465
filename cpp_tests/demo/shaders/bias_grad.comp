#version 450
// db[o] = Σ_t dy[t][o], summed over the tokens in order (deterministic).
// n0 = width, n1 = tokens.
#include "push.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) writeonly buffer DB { float db[]; };

void main() {
  const uint o = gl_GlobalInvocationID.x;
  if (o >= push.n0) return;
  float sum = 0.0;
  for (uint t = 0; t < push.n1; ++t) sum += dy[t * push.n0 + o];
  db[o] = sum;
}
