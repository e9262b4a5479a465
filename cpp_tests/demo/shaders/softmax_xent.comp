#version 450
// One workgroup per token: p = softmax(logits + bias); loss[t] = −log p[target];
// dlogits = (p − onehot(target)) · factor, where factor is the loss scale over
// the batch size (the gradient of the scaled mean loss).
// n0 = vocabulary (at most 256, one invocation each).
#include "push.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) readonly buffer Bias { float bias[]; };
layout(std430, binding = 2) readonly buffer Targets { uint targets[]; };
layout(std430, binding = 3) writeonly buffer DLogits { float dlogits[]; };
layout(std430, binding = 4) writeonly buffer Loss { float loss[]; };

shared float reduce[256];

void main() {
  const uint t = gl_WorkGroupID.x, o = gl_LocalInvocationID.x, v = push.n0;
  const bool live = o < v;
  const float z = live ? logits[t * v + o] + bias[o] : -3.0e38;
  reduce[o] = z;
  barrier();
  for (uint s = 128; s > 0; s >>= 1) {
    if (o < s) reduce[o] = max(reduce[o], reduce[o + s]);
    barrier();
  }
  const float top = reduce[0];
  barrier();
  const float e = live ? exp(z - top) : 0.0;
  reduce[o] = e;
  barrier();
  for (uint s = 128; s > 0; s >>= 1) {
    if (o < s) reduce[o] += reduce[o + s];
    barrier();
  }
  const float p = e / reduce[0];
  const uint target = targets[t];
  if (live) dlogits[t * v + o] = p * push.factor - (o == target ? push.factor : 0.0);
  if (o == target) loss[t] = -log(max(p, 1.0e-30));
}
