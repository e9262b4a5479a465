// The push constants of the Matmul family (matmul.glsl's kernels and
// matmul_x_f16.comp). Twin: src/vk/family.rs `MatmulPush` (sizes checked by
// the build).

layout(push_constant) uniform Push {
    uint rows;        // rows of W in this dispatch
    uint cols;
    uint row_first;   // index of this dispatch's first row in the whole matrix
    uint total_rows;  // rows of the whole matrix (values per token of Y, or of dY)
    uint w_half;      // halfword of binding 0 where this dispatch's first row starts
    uint row_halves;  // halfwords per row
    uint has_bias;    // forward: add bias[row]
    uint accumulate;  // backward: add to dX (the row chunks after the first)
    uint tokens;      // tokens in this dispatch
    uint x_first;     // float of binding 1 where this dispatch's first token starts
    uint y_first;     // float of binding 3 where this dispatch's first token starts
    uint tiles_n;     // output tiles per tile of tokens
} pc;
