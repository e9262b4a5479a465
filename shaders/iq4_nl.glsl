// IQ4_NL's non-linear levels (ggml's kvalues_iq4nl), as crate::quant::scalar
// has them (included by blocks.glsl, matvec.glsl and matvec_dot.comp): x =
// d * IQ4_NL_LEVELS[q], q the block's 4-bit index.

const float IQ4_NL_LEVELS[16] = float[16](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                          1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

// The levels as two's complement bytes, for the integer dot products.
const uint IQ4_NL_BYTES[16] = uint[16](0x81u, 0x98u, 0xadu, 0xbfu, 0xcfu, 0xddu, 0xeau, 0xf6u,
                                       0x01u, 0x0du, 0x19u, 0x26u, 0x35u, 0x45u, 0x59u, 0x71u);

// The level of index q (0..15).
float iq4_nl_level(uint q) {
    return IQ4_NL_LEVELS[q & 15u];
}

// The 4 indices in bytes 0..3 of n (each 0..15) as their 4 levels, packed
// as signed bytes.
uint iq4_nl_level_bytes(uint n) {
    return IQ4_NL_BYTES[n & 15u] | (IQ4_NL_BYTES[(n >> 8) & 15u] << 8) |
           (IQ4_NL_BYTES[(n >> 16) & 15u] << 16) | (IQ4_NL_BYTES[(n >> 24) & 15u] << 24);
}
