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

#ifdef RTE_F32
// A code from the floating-point unit's y (square roots of any accuracy
// Vulkan allows, a few units in the last place) where y lies clearly off a
// rounding boundary (a half-integer): more than y * 2^-16 (128 units and
// more) from it, where the correctly rounded chain's y rounds to the same
// whole number. `t` is the exact product |m| * inverse (or v * inverse),
// zero or normal and finite, else `decided` is false. Returns y rounded.
uint rounded_off_boundary(float y, out bool decided) {
    precise float f = floor(y);
    precise float off = abs(y - f - 0.5);
    precise float margin = y * (1.0 / 65536.0) + (1.0 / 1048576.0);
    decided = off > margin && y < 8388608.0;
    return uint(f) + (y - f > 0.5 ? 1u : 0u);
}

// The FPU's square root for the codes (the tests' skewed unit: off by up
// to 32 units in the last place).
float code_root(float x) {
    precise float r = sqrt(x);
#ifdef SKEWED_UNIT
    r = skewed(r, (floatBitsToUint(x) % 5u - 2u) * 16u);
#endif
    return r;
}

bool zero_or_normal(uint t) {
    return t == 0u || exponent_field(t) - 1u < 254u;
}

#ifdef CODE_BOUND
// The codes from their boundaries on t (crate::train::adam_math::
// code_bounds; CODE_BOUND(i) reads control word i, from wherever the kernel
// keeps it): the exact t, the FPU's estimate of the code (its roots of any
// accuracy Vulkan allows), and the code kept where t lies between its two
// boundaries (comparisons on the bits), else the exact chain. No margin to
// a rounding boundary: the chain is redone only where the estimate is a
// code off.

// signed_code by its boundaries.
uint signed_code_bounded(uint m, uint inverse) {
    uint t = mul_bits(m & 0x7fffffffu, inverse);
    if (t >= 0x7f800000u) {
        return signed_code(m, inverse);
    }
    precise float y = 127.0 * code_root(uintBitsToFloat(t));
    uint q = min(uint(y + 0.5), 128u);
    if (t < CODE_BOUND(SIGNED_BOUNDS + q) || t >= CODE_BOUND(SIGNED_BOUNDS + q + 1u)) {
        return signed_code(m, inverse);
    }
    return (m & 0x80000000u) != 0u ? (256u - q) & 0xffu : min(q, 127u);
}

// unsigned_code by its boundaries (a negative or non-finite t: the chain).
uint unsigned_code_bounded(uint v, uint inverse) {
    uint t = mul_bits(v, inverse);
    if (t >= 0x7f800000u) {
        return unsigned_code(v, inverse);
    }
    precise float y = 255.0 * code_root(code_root(uintBitsToFloat(t)));
    uint q = min(uint(y + 0.5), 255u);
    if (t < CODE_BOUND(UNSIGNED_BOUNDS + q) || t >= CODE_BOUND(UNSIGNED_BOUNDS + q + 1u)) {
        return unsigned_code(v, inverse);
    }
    return q;
}
#endif

// signed_code by the FPU where that decides the code, else signed_code.
uint signed_code_fast(uint m, uint inverse) {
    uint t = mul_bits(m & 0x7fffffffu, inverse);
    bool decided = false;
    uint q = 0u;
    if (zero_or_normal(t)) {
        precise float y = 127.0 * code_root(uintBitsToFloat(t));
        q = rounded_off_boundary(y, decided);
    }
    if (!decided) {
        return signed_code(m, inverse);
    }
    return (m & 0x80000000u) != 0u ? (256u - min(q, 128u)) & 0xffu : min(q, 127u);
}

// unsigned_code by the FPU where that decides the code, else unsigned_code.
uint unsigned_code_fast(uint v, uint inverse) {
    uint t = mul_bits(v, inverse);
    bool decided = false;
    uint q = 0u;
    if (zero_or_normal(t) && (t & 0x80000000u) == 0u) {
        precise float y = 255.0 * code_root(code_root(uintBitsToFloat(t)));
        q = rounded_off_boundary(y, decided);
    }
    if (!decided) {
        return unsigned_code(v, inverse);
    }
    return min(q, 255u);
}
#endif
