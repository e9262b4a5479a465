#version 450
// y[t][o] = tanh(y[t][o] + bias[o]), in place: the hidden layer's activation.
// n0 = tokens · width, n1 = width.
#include "push.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer Bias { float bias[]; };

void main() {
  const uint i = gl_GlobalInvocationID.x;
  if (i >= push.n0) return;
  y[i] = tanh(y[i] + bias[i % push.n1]);
}
