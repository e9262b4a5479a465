// x rounded to int8 per block of 32 values, as the CPU's integer path
// (src/matvec/mod.rs), and the integer dot product of packed 8-bit values:
// shared by matvec_dot.comp (which rounds x in every workgroup) and
// matvec_round.comp (which rounds it once, before the `_dot_pre` product),
// so that both give the same bits. The including kernel declares x as
// `x4` (vec4) and enables GL_EXT_spirv_intrinsics.

// OpSDot (SPV_KHR_integer_dot_product): the sum of the products of the 4
// signed 8-bit values packed in a and b; fmt 0 is PackedVectorFormat4x8Bit.
// Capabilities DotProductInput4x8BitPacked (6018) and DotProduct (6019).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot4x8(int a, int b, spirv_literal int fmt);

// The scale of a block of x holding NaN or ±Inf: such blocks are
// multiplied in f32 from x itself.
#define NON_FINITE_BLOCK (-1.0)

// The 4 values' |v| bits: for non-negative floats the order of the bits
// is the order of the values, and NaN and ±Inf are above 0x7f7fffff.
uvec4 magnitude_bits(vec4 v) {
    return floatBitsToUint(v) & 0x7fffffffu;
}

// Rounds the block of x whose 32 values start at x4[at]: its 32 int8
// values, in order, into lo and hi (4 per word), and returns (s, Σ of the
// rounded values), or (NON_FINITE_BLOCK, 0) for a block holding NaN or
// ±Inf (lo and hi 0 then). The largest magnitude is taken as bits, so that
// NaN cannot hide in a float max; then each value times 127/max|x| (a
// normal number for every max|x| from 2⁻¹¹⁹ up; 1/max|x| would be
// subnormal above 2¹²⁶, and flushed) rounded to an integer; packSnorm4x8
// of those over 127 packs 4 of them exactly into a word. The block's sum
// of the rounded values is the dot product of its words with 1s.
vec2 round_x_block(uint at, out uvec4 lo, out uvec4 hi) {
    vec4 v[8];
    uvec4 top = uvec4(0u);
    for (uint i = 0u; i < 8u; ++i) {
        v[i] = x4[at + i];
        top = max(top, magnitude_bits(v[i]));
    }
    uint amax_bits = max(max(top.x, top.y), max(top.z, top.w));
    if (amax_bits >= 0x7f800000u) {
        lo = uvec4(0u);
        hi = uvec4(0u);
        return vec2(NON_FINITE_BLOCK, 0.0);
    }
    float amax = uintBitsToFloat(amax_bits);
    // 2⁻¹¹⁹ > 127·2⁻¹²⁶: below it the scale would be subnormal.
    bool tiny = amax < 1.5046328e-36;
    // 127/max|x|, with max|x| scaled by 2^-64 first where it is large: a
    // driver may divide as a·(1/b), and 1/b is subnormal (flushed to 0)
    // above 2^126 (the H200 does this). `precise` keeps the compiler from
    // folding the scaling away.
    bool large = amax > 1.8446744e19;
    precise float divisor = large ? amax * 5.421011e-20 : amax;
    precise float quotient = 127.0 / divisor;
    precise float inv_large = quotient * 5.421011e-20;
    float inv = tiny ? 0.0 : (large ? inv_large : quotient);
    uint q[8];
    int sum = 0;
    for (uint i = 0u; i < 8u; ++i) {
        q[i] = packSnorm4x8(round(v[i] * inv) * (1.0 / 127.0));
        sum += sdot4x8(int(q[i]), 0x01010101, 0);
    }
    lo = uvec4(q[0], q[1], q[2], q[3]);
    hi = uvec4(q[4], q[5], q[6], q[7]);
    return vec2(tiny ? 0.0 : amax / 127.0, float(sum));
}
