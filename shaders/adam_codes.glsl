// The 8-bit state's codes (crate::train::adam_math::encode_signed and
// encode_unsigned) of an updated moment against its block's inverse
// largest magnitude, shared by adam_q8.comp and adam_q8_lanes.comp. Each
// square root by CODE_SQRT: sf_sqrt unless the kernel defines it (as
// sqrt_bits: the floating-point unit's root where checked exact).
#ifndef CODE_SQRT
#define CODE_SQRT sf_sqrt
#endif

const uint F127 = 0x42fe0000u;
const uint F255 = 0x437f0000u;

// Rust's `y.round()` for y >= 0 (a root times 127 or 255), as an integer
// capped at 256: rounding half away from zero, exactly (floor and the
// differences below 2^23 are exact).
uint rounded(uint y) {
    if (y >= 0x4b000000u) {
        return 256u;
    }
    float a = uintBitsToFloat(y);
    precise float f = floor(a);
    precise float t = 2.0 * (a - f);
    precise float b = f + floor(t);
    return min(uint(b), 256u);
}

// encode_signed's code of m against the block's 1/absmax: q =
// round(127 * sqrt(|m| * inverse)) with m's sign, saturated as `as i8`.
uint signed_code(uint m, uint inverse) {
    uint y = mul_bits(F127, CODE_SQRT(mul_bits(m & 0x7fffffffu, inverse)));
    if (sf_is_nan(y)) {
        return 0u;
    }
    uint q = rounded(y);
    return (m & 0x80000000u) != 0u ? (256u - min(q, 128u)) & 0xffu : min(q, 127u);
}

// encode_unsigned's code of v against the block's 1/max: q =
// round(255 * (v * inverse)^(1/4)), saturated as `as u8`.
uint unsigned_code(uint v, uint inverse) {
    uint y = mul_bits(F255, CODE_SQRT(CODE_SQRT(mul_bits(v, inverse))));
    if (sf_is_nan(y) || (y & 0x80000000u) != 0u) {
        return 0u;
    }
    return min(rounded(y), 255u);
}
