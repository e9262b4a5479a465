// The push constants every demo shader takes (the C++ twin: PushConstants in
// vk_trainer.hpp): up to four sizes and one factor, named per shader.
layout(push_constant) uniform Push {
  uint n0;
  uint n1;
  uint n2;
  uint n3;
  float factor;
} push;
