#version 450
// dpre = dh · (1 − h²): the gradient through tanh. n0 = elements.
#include "push.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer DH { float dh[]; };
layout(std430, binding = 1) readonly buffer H { float h[]; };
layout(std430, binding = 2) writeonly buffer DPre { float dpre[]; };

void main() {
  const uint i = gl_GlobalInvocationID.x;
  if (i >= push.n0) return;
  dpre[i] = dh[i] * (1.0 - h[i] * h[i]);
}
