// The block formats, byte for byte as crate::quant::scalar: quantize one block
// of 32 values into its bytes, and back. FORMAT_* is set by the variant table.

#define QK 32

#if defined(FORMAT_Q8_0)
#define BLOCK_BYTES 34
#elif defined(FORMAT_Q4_0)
#define BLOCK_BYTES 18
#elif defined(FORMAT_Q4_1)
#define BLOCK_BYTES 20
#endif

#ifdef BLOCK_BYTES

void put_f16(inout uint bytes[BLOCK_BYTES], uint at, uint h) {
    bytes[at] = h & 0xffu;
    bytes[at + 1u] = h >> 8;
}

uint get_f16(uint bytes[BLOCK_BYTES], uint at) {
    return bytes[at] | (bytes[at + 1u] << 8);
}

// Nibbles: element j in the low nibble of qs[j], element j+16 in the high one.
void put_nibbles(inout uint bytes[BLOCK_BYTES], uint at, uint q[QK]) {
    for (uint j = 0u; j < QK / 2u; ++j) {
        bytes[at + j] = q[j] | (q[j + QK / 2u] << 4);
    }
}

uint get_nibble(uint bytes[BLOCK_BYTES], uint at, uint j) {
    return j < QK / 2u ? (bytes[at + j] & 15u) : (bytes[at + j - QK / 2u] >> 4);
}

uint clamp_quant(float y, float hi) {
    if (isnan(y)) {
        return 0u;
    }
    return uint(clamp(trunc(y), 0.0, hi));
}

// Quantizes x into one block. `stochastic` selects the rounding; `first_lo/hi`
// is the index of x[0] in the whole tensor.
void quantize_block(float x[QK], bool stochastic, uint seed_lo, uint seed_hi, uint first_lo,
                    uint first_hi, out uint bytes[BLOCK_BYTES]) {
    for (uint k = 0u; k < uint(BLOCK_BYTES); ++k) {
        bytes[k] = 0u;
    }
#if defined(FORMAT_Q8_0)
    uint amax_bits = 0u;
    for (uint j = 0u; j < QK; ++j) {
        amax_bits = max(amax_bits, ABS_BITS(x[j]));
    }
    float d = div_exact(uintBitsToFloat(amax_bits), 127.0);
    float id = inverse_scale(d);
    put_f16(bytes, 0u, f16_bits(floatBitsToUint(d)));
    for (uint j = 0u; j < QK; ++j) {
        float v = mul_exact(x[j], id);
        int q;
        if (stochastic) {
            precise float y = v + rng_uniform(seed_lo, seed_hi, first_lo + j, first_hi + (first_lo + j < first_lo ? 1u : 0u));
            q = int(clamp(floor(y), -127.0, 127.0));
        } else {
            q = int(round_half_away(v));
        }
        bytes[2u + j] = uint(q) & 0xffu;
    }
#elif defined(FORMAT_Q4_0)
    uint amax_bits = 0u;
    uint max_bits = 0u;
    for (uint j = 0u; j < QK; ++j) {
        uint a = ABS_BITS(x[j]);
        if (a > amax_bits) {
            amax_bits = a;
            max_bits = floatBitsToUint(x[j]);
        }
    }
    // d = max / -8: exact on the exponent, or a signed zero where it would be subnormal.
    uint d_bits = amax_bits < 0x02000000u ? ((max_bits ^ 0x80000000u) & 0x80000000u)
                                          : ((max_bits ^ 0x80000000u) - (3u << 23));
    float d = uintBitsToFloat(d_bits);
    float id = inverse_scale(d);
    put_f16(bytes, 0u, f16_bits(d_bits));
    uint q[QK];
    for (uint j = 0u; j < QK; ++j) {
        float v = mul_exact(x[j], id);
        if (stochastic) {
            precise float y = v + 8.0;
            precise float z = y + rng_uniform(seed_lo, seed_hi, first_lo + j, first_hi + (first_lo + j < first_lo ? 1u : 0u));
            q[j] = isnan(z) ? 0u : uint(clamp(floor(z), 0.0, 15.0));
        } else {
            precise float y = v + 8.5;
            q[j] = clamp_quant(y, 15.0);
        }
    }
    put_nibbles(bytes, 2u, q);
#elif defined(FORMAT_Q4_1)
    // Rust's f32::min/max fold (x86): the accumulator changes only when the
    // new value is strictly smaller/larger, so of +0 and -0 the first one stays.
    uint min_bits = floatBitsToUint(x[0]);
    uint max_bits = min_bits;
    for (uint j = 1u; j < QK; ++j) {
        uint b = floatBitsToUint(x[j]);
        bool zeros_min = ((b | min_bits) & 0x7fffffffu) == 0u;
        bool zeros_max = ((b | max_bits) & 0x7fffffffu) == 0u;
        if (!zeros_min && sortable(b) < sortable(min_bits)) {
            min_bits = b;
        }
        if (!zeros_max && sortable(b) > sortable(max_bits)) {
            max_bits = b;
        }
    }
    float mn = uintBitsToFloat(min_bits);
    float mx = uintBitsToFloat(max_bits);
    float d = div_exact(sub_exact(mx, mn), 15.0);
    float id = inverse_scale(d);
    put_f16(bytes, 0u, f16_bits(floatBitsToUint(d)));
    put_f16(bytes, 2u, f16_bits(min_bits));
    uint q[QK];
    for (uint j = 0u; j < QK; ++j) {
        bool scaled;
        float t = sub_scaled(x[j], mn, scaled);
        precise float p = t * id;
        precise float v = scaled ? p * TWO_M24 : p;
        if (stochastic) {
            precise float z = v + rng_uniform(seed_lo, seed_hi, first_lo + j, first_hi + (first_lo + j < first_lo ? 1u : 0u));
            q[j] = isnan(z) ? 0u : uint(clamp(floor(z), 0.0, 15.0));
        } else {
            precise float y = v + 0.5;
            q[j] = clamp_quant(y, 15.0);
        }
    }
    put_nibbles(bytes, 4u, q);
#endif
}

// Dequantizes one block (x = d*q, d*(q-8), d*q + m; products then sums, no FMA).
void dequantize_block(uint bytes[BLOCK_BYTES], out float y[QK]) {
    float d = f16_value(get_f16(bytes, 0u));
#if defined(FORMAT_Q8_0)
    for (uint j = 0u; j < QK; ++j) {
        int q = int(bytes[2u + j] << 24) >> 24;
        precise float v = d * float(q);
        y[j] = v;
    }
#elif defined(FORMAT_Q4_0)
    for (uint j = 0u; j < QK; ++j) {
        precise float v = d * float(int(get_nibble(bytes, 2u, j)) - 8);
        y[j] = v;
    }
#elif defined(FORMAT_Q4_1)
    float m = f16_value(get_f16(bytes, 2u));
    for (uint j = 0u; j < QK; ++j) {
        precise float p = d * float(get_nibble(bytes, 4u, j));
        precise float v = p + m;
        y[j] = v;
    }
#endif
}

#endif
