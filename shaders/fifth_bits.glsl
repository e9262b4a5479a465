// Q5_0's fifth bits (included by blocks.glsl and matvec_dot.comp): bit j of
// the block's 32-bit qh is bit 4 of the quant of element j.

// The fifth bits of 4 quants q (0..31), as bits 0..3.
uint fifth_bits(uvec4 q) {
    return ((q.x >> 4) & 1u) | ((q.y >> 3) & 2u) | ((q.z >> 2) & 4u) | ((q.w >> 1) & 8u);
}

// Bits 0..3 of n moved to bit 4 of bytes 0..3: the fifth bits of 4 quant
// bytes.
uint fifth_bytes(uint n) {
    return ((n & 1u) << 4) | ((n & 2u) << 11) | ((n & 4u) << 18) | ((n & 8u) << 25);
}
