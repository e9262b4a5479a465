// The push constants of the Convert family (quantize, dequantize,
// fake-quantize, copy). Rust twin: src/vk/family.rs `ConvertPush` (the build
// reads this block's size from each kernel's SPIR-V; src/vk/shaders.rs
// asserts it equals the twin's at compile time).
layout(push_constant) uniform Push {
    uint n_elements;   // elements in this dispatch
    uint stochastic;   // 1: stochastic rounding
    uint seed_lo;
    uint seed_hi;
    uint first_lo;     // index of this dispatch's first element in the tensor
    uint first_hi;
} pc;
