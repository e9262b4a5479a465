// IQ4_NL's non-linear levels (ggml's kvalues_iq4nl), as crate::quant::scalar
// has them (included by blocks.glsl, matvec.glsl and matvec_dot.comp): x =
// d * level(q), q the block's 4-bit index.
//
// The 16 levels are held as two's complement bytes in four words and picked
// with selects and shifts, never by indexing an array with a runtime value:
// a compiler may place such an array in per-invocation memory (NVIDIA's puts
// it in local memory, which made IQ4_NL's kernels several times slower than
// Q4_0's). Every level is an integer of at most 8 bits, so the float of its
// byte is the level exactly.
//   -127, -104, -83, -65 | -49, -35, -22, -10 | 1, 13, 25, 38 | 53, 69, 89, 113
const uint IQ4_NL_WORD0 = 0xbfad9881u;
const uint IQ4_NL_WORD1 = 0xf6eaddcfu;
const uint IQ4_NL_WORD2 = 0x26190d01u;
const uint IQ4_NL_WORD3 = 0x71594535u;

// The level of index q (bits 0..3 of q) as a signed byte in bits 0..7.
uint iq4_nl_level_byte(uint q) {
    uint i = q & 15u;
    uint word = i < 8u ? (i < 4u ? IQ4_NL_WORD0 : IQ4_NL_WORD1)
                       : (i < 12u ? IQ4_NL_WORD2 : IQ4_NL_WORD3);
    return (word >> (8u * (i & 3u))) & 0xffu;
}

// The level of index q (0..15).
float iq4_nl_level(uint q) {
    return float(int(iq4_nl_level_byte(q) << 24u) >> 24);
}

// The 4 indices in bytes 0..3 of n (each 0..15) as their 4 levels, packed
// as signed bytes.
uint iq4_nl_level_bytes(uint n) {
    return iq4_nl_level_byte(n) | (iq4_nl_level_byte(n >> 8) << 8) |
           (iq4_nl_level_byte(n >> 16) << 16) | (iq4_nl_level_byte(n >> 24) << 24);
}
