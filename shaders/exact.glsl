// Exact f32 arithmetic that gives the same bits as IEEE binary32 on the CPU
// (crate::quant::scalar). Vulkan lets a driver flush subnormals, divide with
// 2.5 ulp error and round ties as it likes; everything here avoids those:
// division and f16 rounding are done on integer bits, and values below 2^-100
// are scaled by 2^24 before they meet the floating-point unit.

#define ABS_BITS(x) (floatBitsToUint(x) & 0x7fffffffu)
#define SIGN_BITS(x) (floatBitsToUint(x) & 0x80000000u)
const uint MIN_NORMAL_BITS = 0x00800000u;
const uint SMALL_BITS = 0x0d800000u; // 2^-100

// |x| as f32 times 2^24, exact for |x| < 2^-100 (subnormals included).
float scaled_small(uint bits) {
    uint a = bits & 0x7fffffffu;
    precise float v;
    if (a < MIN_NORMAL_BITS) {
        v = float(a) * uintBitsToFloat(0x01000000u); // mantissa * 2^-125
    } else {
        v = uintBitsToFloat(a + (24u << 23));
    }
    return (bits & 0x80000000u) != 0u ? -v : v;
}

const float TWO_M24 = 5.9604644775390625e-8;

// a * b rounded as IEEE f32, for a possibly subnormal or tiny and |b| <= 2^127;
// results below 2^-126 may come back as zero (callers only add them to >= 0.5).
float mul_exact(float a, float b) {
    uint abits = floatBitsToUint(a);
    if ((abits & 0x7fffffffu) < SMALL_BITS) {
        precise float p = scaled_small(abits) * b;
        precise float r = p * TWO_M24;
        return r;
    }
    precise float r = a * b;
    return r;
}

// a - b rounded as IEEE f32 (subnormal operands honoured; a tiny result may
// come back as zero).
float sub_exact(float a, float b) {
    uint ab = floatBitsToUint(a), bb = floatBitsToUint(b);
    if ((ab & 0x7fffffffu) < SMALL_BITS && (bb & 0x7fffffffu) < SMALL_BITS) {
        precise float d = scaled_small(ab) - scaled_small(bb);
        precise float r = d * TWO_M24;
        return r;
    }
    precise float r = a - b;
    return r;
}

// Like sub_exact, but returns the difference times 2^24 when both are tiny
// (flag set), so a following product can stay exact.
float sub_scaled(float a, float b, out bool scaled) {
    uint ab = floatBitsToUint(a), bb = floatBitsToUint(b);
    scaled = (ab & 0x7fffffffu) < SMALL_BITS && (bb & 0x7fffffffu) < SMALL_BITS;
    if (scaled) {
        precise float d = scaled_small(ab) - scaled_small(bb);
        return d;
    }
    precise float r = a - b;
    return r;
}

// Correctly rounded a / b (round to nearest even) for finite a >= 0 and
// normal b > 0, on the integer mantissas. A result below 2^-126 is returned
// as +0 (the CPU twin treats such scales as zero), +inf for a = +inf.
float div_exact(float a, float b) {
    uint ab = floatBitsToUint(a), bb = floatBitsToUint(b);
    if (ab >= 0x7f800000u) {
        return a;
    }
    if (ab < MIN_NORMAL_BITS) {
        return 0.0;
    }
    int ea = int(ab >> 23), eb = int(bb >> 23);
    uint ma = (ab & 0x7fffffu) | 0x800000u;
    uint mb = (bb & 0x7fffffu) | 0x800000u;
    if (ma < mb) {
        ma <<= 1;
        ea -= 1;
    }
    // 1 <= ma/mb < 2: q = floor(ma * 2^23 / mb), 24 bits. The FPU's quotient
    // (within a few units, whatever the driver's division accuracy) is
    // corrected with the exact 64-bit remainder ma * 2^23 - q * mb.
    uint nhi = ma >> 9;
    uint nlo = ma << 23;
    precise float estimate = float(ma) / float(mb) * 8388608.0;
    uint q = uint(estimate);
    uint phi, plo, borrow;
    umulExtended(q, mb, phi, plo);
    uint rlo = usubBorrow(nlo, plo, borrow);
    int rhi = int(nhi - phi - borrow);
    for (int i = 0; i < 8 && rhi < 0; ++i) {
        uint carry;
        q -= 1u;
        rlo = uaddCarry(rlo, mb, carry);
        rhi += int(carry);
    }
    for (int i = 0; i < 8 && (rhi > 0 || rlo >= mb); ++i) {
        uint b;
        q += 1u;
        rlo = usubBorrow(rlo, mb, b);
        rhi -= int(b);
    }
    // rlo is the remainder (< mb): round up when twice it exceeds mb, ties
    // (impossible for a non-power-of-two b, kept for completeness) to even.
    uint r = rlo << 1;
    if (r > mb || (r == mb && (q & 1u) != 0u)) {
        q += 1u;
    }
    int e = ea - eb + 127;
    if (q == 0x1000000u) {
        q = 0x800000u;
        e += 1;
    }
    if (e <= 0) {
        return 0.0;
    }
    if (e >= 255) {
        return uintBitsToFloat(0x7f800000u);
    }
    return uintBitsToFloat((uint(e) << 23) | (q & 0x7fffffu));
}

// 1/d with the CPU twin's rule: 0 for a zero, subnormal or infinite scale.
float inverse_scale(float d) {
    uint a = ABS_BITS(d);
    if (a < MIN_NORMAL_BITS || a >= 0x7f800000u) {
        return (a >= 0x7f800000u) ? 0.0 : 0.0;
    }
    float r = div_exact(1.0, uintBitsToFloat(a));
    return SIGN_BITS(d) != 0u ? -r : r;
}

// f32 bits -> IEEE binary16 bits, round to nearest even (half's from_f32).
uint f16_bits(uint x) {
    uint sign = (x >> 16) & 0x8000u;
    uint a = x & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u | ((a >> 13) & 0x3ffu);
    }
    if (a >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {
        uint m = a - 0x38000000u;
        m = m + 0x0fffu + ((m >> 13) & 1u);
        return sign | (m >> 13);
    }
    if (a < 0x33000000u) {
        return sign;
    }
    uint e = a >> 23;
    uint m = (a & 0x7fffffu) | 0x800000u;
    uint shift = 126u - e;
    uint q = m >> shift;
    uint rem = m & ((1u << shift) - 1u);
    uint halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u) != 0u)) {
        q += 1u;
    }
    return sign | q;
}

// binary16 bits -> f32 (exact).
float f16_value(uint h) {
    uint s = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1fu;
    uint m = h & 0x3ffu;
    if (e == 0u) {
        precise float v = float(m) * TWO_M24;
        return s != 0u ? -v : v;
    }
    if (e == 31u) {
        return uintBitsToFloat(s | 0x7f800000u | (m << 13));
    }
    return uintBitsToFloat(s | ((e + 112u) << 23) | (m << 13));
}

// f32 bits -> bfloat16 bits as ggml: NaN kept (quiet), else nearest even on bits.
uint bf16_bits(uint u) {
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return ((u >> 16) | 64u) & 0xffffu;
    }
    // u + 0x7fff + lsb can carry past 32 bits only for negative NaN-free values
    // near 0xffffffff, which are NaNs; no overflow here.
    return ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) & 0xffffu;
}

// C's roundf (half away from zero) in exact steps (scalar::round_half_away).
float round_half_away(float v) {
    precise float a = abs(v);
    precise float f = floor(a);
    precise float t = 2.0 * (a - f);
    precise float b = f + floor(t);
    return v < 0.0 ? -b : b;
}

// round_half_away for |v| < 2^22 in fewer steps: 0 below 0.5, else
// trunc(|v| + 0.5). Exact under any rounding of the addition: for
// 0.5 <= a < 2^22, a + 0.5 is a multiple of ulp(a), and it can only be
// rounded where it has crossed into the next binade, which starts at an
// integer it has already reached, so its integer part never changes.
float round_half_away_small(float v) {
    precise float a = abs(v);
    precise float s = a + 0.5;
    float r = a < 0.5 ? 0.0 : trunc(s);
    return v < 0.0 ? -r : r;
}

// Orders f32 bits like the numbers (and -0 below +0), as Rust's min/max do here.
uint sortable(uint bits) {
    return (bits & 0x80000000u) != 0u ? ~bits : (bits | 0x80000000u);
}

// Stochastic rounding numbers (crate::quant::rng), 32-bit integers only.
uint rng_mix(uint h) {
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return h;
}

uint rng_u32(uint seed_lo, uint seed_hi, uint index_lo, uint index_hi) {
    return rng_mix(index_lo ^ rng_mix(seed_lo ^ rng_mix(seed_hi ^ rng_mix(index_hi ^ 0x9e3779b9u))));
}

float rng_uniform(uint seed_lo, uint seed_hi, uint index_lo, uint index_hi) {
    return float(rng_u32(seed_lo, seed_hi, index_lo, index_hi) >> 8) * TWO_M24;
}

// F16 stochastic rounding of f32 bits x with random r (scalar::f16_bits_stochastic):
// f32 subnormals count as zero, below 2^-24 the result is 0 or 2^-24 with
// probability |x|*2^24, otherwise random bits are added below the kept ones
// and the rest truncated; clamped to 65504.
uint f16_bits_stochastic(uint x, uint r) {
    uint sign = (x >> 16) & 0x8000u;
    uint a = x & 0x7fffffffu;
    if (a < 0x00800000u) {
        return sign;
    }
    int exponent = int(a >> 23) - 127;
    uint rounded;
    if (exponent < -24) {
        precise float scaled = uintBitsToFloat(a) * 16777216.0 * 16777216.0;
        rounded = float(r >> 8) < scaled ? 0x33800000u : 0u;
    } else {
        uint dropped = exponent >= -14 ? 13u : 13u + uint(-14 - exponent);
        uint mask = (1u << dropped) - 1u;
        rounded = (a + (r & mask)) & ~mask;
    }
    if (rounded > 0x477fe000u) {
        rounded = 0x477fe000u;
    }
    return sign | f16_bits(rounded);
}

// BF16 stochastic rounding (scalar::bf16_bits_stochastic): add 16 random bits
// below the kept ones, truncate, clamp to the largest finite bfloat16.
uint bf16_bits_stochastic(uint x, uint r) {
    uint sign = (x >> 16) & 0x8000u;
    uint a = x & 0x7fffffffu;
    return sign | min((a + (r & 0xffffu)) >> 16, 0x7f7fu);
}

// The binary16 or bfloat16 bits of element `index` (relative to the
// dispatch's first element), by nearest or stochastic rounding.
uint half_bits(uint x, bool bf16, bool stochastic, uint seed_lo, uint seed_hi,
               uint first_lo, uint first_hi, uint index) {
    if (!stochastic) {
        return bf16 ? bf16_bits(x) : f16_bits(x);
    }
    uint lo = first_lo + index;
    uint hi = first_hi + (lo < first_lo ? 1u : 0u);
    uint r = rng_u32(seed_lo, seed_hi, lo, hi);
    return bf16 ? bf16_bits_stochastic(x, r) : f16_bits_stochastic(x, r);
}
