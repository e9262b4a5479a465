// The push constants of the matrix-vector kernels (matvec.glsl's and
// matvec_round.comp's). Rust twin: src/vk/family.rs `MatvecPush` (sizes
// checked by the build).

layout(push_constant) uniform Push {
    uint rows;        // rows of W in this dispatch
    uint cols;
    uint row_first;   // index of this dispatch's first row in the whole matrix
    uint total_rows;  // rows of the whole matrix (stride of y, or of x transposed)
    uint w_half;      // halfword of binding 0 where this dispatch's first row starts
    uint row_halves;  // halfwords per row
    uint has_bias;    // forward: add bias[row]
    uint accumulate;  // transposed: add to y (the row chunks after the first)
} pc;
