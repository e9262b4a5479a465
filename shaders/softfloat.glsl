// IEEE binary32 arithmetic on the bits, rounded to nearest even with
// subnormals kept, as the CPU computes it: the reference path of the Adam
// kernels, for the elements (and devices) where the floating-point unit
// cannot be trusted to give the same bits (Vulkan lets a driver flush
// subnormals, divide within 2.5 ulp and take square roots within several).
// A NaN result is the quiet NaN 0x7fc00000 whatever the operands' payloads.
//
// Rounding follows Berkeley SoftFloat's roundPackToF32: a significand with
// its leading one at bit 30 and 7 bits below the result's last place (the
// lowest one "sticky": ORed with everything shifted out), and an exponent
// `e` such that the value is sig * 2^(e - 156) (e + 1 is the biased
// exponent of a normal result).

const uint SF_NAN = 0x7fc00000u;
const uint SF_INF = 0x7f800000u;

bool sf_is_nan(uint a) {
    return (a & 0x7fffffffu) > SF_INF;
}

// `sig` shifted right by `count`, with every bit shifted out ORed into bit 0.
uint sf_shift_right_jam(uint sig, uint count) {
    if (count == 0u) {
        return sig;
    }
    if (count >= 31u) {
        return sig != 0u ? 1u : 0u;
    }
    return (sig >> count) | ((sig << (32u - count)) != 0u ? 1u : 0u);
}

uint sf_round_pack(uint sign, int e, uint sig) {
    if (e < 0) {
        sig = sf_shift_right_jam(sig, uint(-e));
        e = 0;
    }
    uint round_bits = sig & 0x7fu;
    sig = (sig + 0x40u) >> 7;
    if (round_bits == 0x40u) {
        sig &= ~1u;
    }
    if (e >= 0xfe) {
        // Past the largest exponent, or rounded up into it.
        uint packed = e >= 0x100 ? SF_INF : (uint(e) << 23) + sig;
        return sign | min(packed, SF_INF);
    }
    return sign | ((uint(e) << 23) + sig);
}

// The significand (implicit bit included, leading one at bit 23) and the
// biased exponent of a finite nonzero `a`, a subnormal normalised (its
// exponent then below 1).
void sf_unpack(uint a, out uint m, out int e) {
    uint field = (a >> 23) & 0xffu;
    m = a & 0x7fffffu;
    if (field == 0u) {
        int shift = 23 - findMSB(m);
        m <<= uint(shift);
        e = 1 - shift;
    } else {
        m |= 0x800000u;
        e = int(field);
    }
}

uint sf_mul(uint a, uint b) {
    uint sign = (a ^ b) & 0x80000000u;
    uint aa = a & 0x7fffffffu, ab = b & 0x7fffffffu;
    if (aa > SF_INF || ab > SF_INF) {
        return SF_NAN;
    }
    if (aa == SF_INF || ab == SF_INF) {
        return (aa == 0u || ab == 0u) ? SF_NAN : sign | SF_INF;
    }
    if (aa == 0u || ab == 0u) {
        return sign;
    }
    uint ma, mb;
    int ea, eb;
    sf_unpack(aa, ma, ea);
    sf_unpack(ab, mb, eb);
    // ma * mb in [2^46, 2^48): its leading one to bit 30, the rest jammed.
    uint hi, lo;
    umulExtended(ma << 8, mb << 8, hi, lo);
    // Now the product is (hi, lo) * 2^-16 with its leading one at bit 62 or 63
    // of the 64-bit pair: keep 31 bits and jam the rest.
    int e = ea + eb - 128;
    uint sig;
    if ((hi & 0x80000000u) != 0u) {
        sig = (hi >> 1) | (((hi & 1u) | lo) != 0u ? 1u : 0u);
        e += 1;
    } else {
        sig = hi | (lo != 0u ? 1u : 0u);
    }
    return sf_round_pack(sign, e, sig);
}

uint sf_add(uint a, uint b) {
    uint aa = a & 0x7fffffffu, ab = b & 0x7fffffffu;
    if (aa > SF_INF || ab > SF_INF) {
        return SF_NAN;
    }
    if (aa == SF_INF || ab == SF_INF) {
        if (aa == SF_INF && ab == SF_INF && ((a ^ b) & 0x80000000u) != 0u) {
            return SF_NAN;
        }
        return aa == SF_INF ? a : b;
    }
    if (aa == 0u && ab == 0u) {
        return a & b; // -0 only when both are -0 (round to nearest)
    }
    if (aa == 0u) {
        return b;
    }
    if (ab == 0u) {
        return a;
    }
    // |a| >= |b| from here.
    if (ab > aa) {
        uint t = a;
        a = b;
        b = t;
        t = aa;
        aa = ab;
        ab = t;
    }
    uint sign = a & 0x80000000u;
    uint fa = aa >> 23, fb = ab >> 23;
    // Significands with 7 bits below their last place; subnormals have the
    // exponent of the smallest normals and no implicit bit.
    uint sa = ((aa & 0x7fffffu) | (fa != 0u ? 0x800000u : 0u)) << 7;
    uint sb = ((ab & 0x7fffffu) | (fb != 0u ? 0x800000u : 0u)) << 7;
    int ea = int(max(fa, 1u)), eb = int(max(fb, 1u));
    sb = sf_shift_right_jam(sb, uint(ea - eb));
    int e = ea - 1;
    uint sig;
    if (((a ^ b) & 0x80000000u) == 0u) {
        sig = sa + sb;
        if ((sig & 0x80000000u) != 0u) {
            sig = sf_shift_right_jam(sig, 1u);
            e += 1;
        }
    } else {
        sig = sa - sb;
        if (sig == 0u) {
            return 0u; // x - x is +0 when rounding to nearest
        }
        int lead = findMSB(sig);
        if (lead < 30) {
            sig <<= uint(30 - lead);
            e -= 30 - lead;
        }
    }
    return sf_round_pack(sign, e, sig);
}

// Correctly rounded a / b (every operand, subnormal results included). The
// quotient of the 24-bit significands comes from the floating-point unit
// (within a few units whatever its accuracy) and is corrected with the exact
// 64-bit remainder.
uint sf_div(uint a, uint b) {
    uint sign = (a ^ b) & 0x80000000u;
    uint aa = a & 0x7fffffffu, ab = b & 0x7fffffffu;
    if (aa > SF_INF || ab > SF_INF) {
        return SF_NAN;
    }
    if (aa == SF_INF) {
        return ab == SF_INF ? SF_NAN : sign | SF_INF;
    }
    if (ab == SF_INF) {
        return sign;
    }
    if (ab == 0u) {
        return aa == 0u ? SF_NAN : sign | SF_INF;
    }
    if (aa == 0u) {
        return sign;
    }
    uint ma, mb;
    int ea, eb;
    sf_unpack(aa, ma, ea);
    sf_unpack(ab, mb, eb);
    if (ma < mb) {
        ma <<= 1;
        ea -= 1;
    }
    // 1 <= ma/mb < 2: q = floor(ma * 2^23 / mb) has 24 bits.
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
        uint b2;
        q += 1u;
        rlo = usubBorrow(rlo, mb, b2);
        rhi -= int(b2);
    }
    // The remainder rlo < mb, as the 7 bits below q's last place: above,
    // at or below one half, or zero.
    uint twice = rlo << 1;
    uint below = twice > mb ? 0x41u : (twice == mb ? 0x40u : (rlo != 0u ? 1u : 0u));
    return sf_round_pack(sign, ea - eb + 126, (q << 7) | below);
}

// Correctly rounded square root (never a tie, never subnormal). The root of
// the significand comes from the floating-point unit and is corrected with
// the exact 64-bit remainder.
uint sf_sqrt(uint a) {
    uint aa = a & 0x7fffffffu;
    if (aa > SF_INF) {
        return SF_NAN;
    }
    if (aa == 0u) {
        return a;
    }
    if ((a & 0x80000000u) != 0u) {
        return SF_NAN;
    }
    if (aa == SF_INF) {
        return a;
    }
    uint m;
    int e;
    sf_unpack(aa, m, e);
    int unbiased = e - 127;
    // value = m * 2^(unbiased - 23); with an odd exponent take one bit of it
    // into the significand, so that the root's exponent is whole: N = m *
    // 2^23 (or 2^24) and the root's significand is floor(sqrt(N)), 24 bits.
    bool odd = (unbiased & 1) != 0;
    uint nhi = odd ? (m >> 8) : (m >> 9);
    uint nlo = odd ? (m << 24) : (m << 23);
    int root_exponent = (odd ? unbiased - 1 : unbiased) / 2;
    precise float f = uintBitsToFloat((odd ? 0x40000000u : 0x3f800000u) | (m & 0x7fffffu));
    precise float root = sqrt(f) * 8388608.0;
    uint s = uint(root);
    for (int i = 0; i < 8; ++i) {
        // s * s <= N, else one down.
        uint shi, slo;
        umulExtended(s, s, shi, slo);
        if (shi > nhi || (shi == nhi && slo > nlo)) {
            s -= 1u;
        } else {
            break;
        }
    }
    for (int i = 0; i < 8; ++i) {
        // (s + 1)^2 > N, else one up.
        uint shi, slo;
        umulExtended(s + 1u, s + 1u, shi, slo);
        if (shi < nhi || (shi == nhi && slo <= nlo)) {
            s += 1u;
        } else {
            break;
        }
    }
    // Round up when N - s^2 > s, that is sqrt(N) > s + 1/2.
    uint shi, slo, borrow;
    umulExtended(s, s, shi, slo);
    uint rlo = usubBorrow(nlo, slo, borrow);
    uint rhi = nhi - shi - borrow;
    if (rhi != 0u || rlo > s) {
        s += 1u;
    }
    return uint(root_exponent + 126) * 0x800000u + s;
}
