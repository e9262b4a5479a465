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

// What a block's quants are computed from: the scale d, its inverse id, the
// minimum m (Q4_1) and the block's header bytes (f16 d, then f16 m for Q4_1)
// as one little-endian word.
struct BlockParams {
    float d;
    float id;
    float m;
    uint header;
};

// The scale, inverse and header of one block, exactly as crate::quant::scalar.
BlockParams block_params(float x[QK]) {
    BlockParams p;
    p.m = 0.0;
#if defined(FORMAT_Q8_0)
    uint amax_bits = 0u;
    for (uint j = 0u; j < QK; ++j) {
        amax_bits = max(amax_bits, ABS_BITS(x[j]));
    }
    p.d = div_exact(uintBitsToFloat(amax_bits), 127.0);
    p.id = inverse_scale(p.d);
    p.header = f16_bits(floatBitsToUint(p.d));
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
    p.d = uintBitsToFloat(d_bits);
    p.id = inverse_scale(p.d);
    p.header = f16_bits(d_bits);
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
    p.m = uintBitsToFloat(min_bits);
    p.d = div_exact(sub_exact(uintBitsToFloat(max_bits), p.m), 15.0);
    p.id = inverse_scale(p.d);
    p.header = f16_bits(floatBitsToUint(p.d)) | (f16_bits(min_bits) << 16);
#endif
    return p;
}

// The quant of one value of a block (its low 8 bits for Q8_0, 0..15 for the
// 4-bit formats). `index_lo/hi` is the value's index in the whole tensor.
uint quant_one(float x, BlockParams p, bool stochastic, uint seed_lo, uint seed_hi, uint index_lo,
               uint index_hi) {
#if defined(FORMAT_Q8_0)
    float v = mul_exact(x, p.id);
    int q;
    if (stochastic) {
        precise float y = v + rng_uniform(seed_lo, seed_hi, index_lo, index_hi);
        q = int(clamp(floor(y), -127.0, 127.0));
    } else {
        q = int(round_half_away(v));
    }
    return uint(q) & 0xffu;
#elif defined(FORMAT_Q4_0)
    float v = mul_exact(x, p.id);
    if (stochastic) {
        precise float y = v + 8.0;
        precise float z = y + rng_uniform(seed_lo, seed_hi, index_lo, index_hi);
        return isnan(z) ? 0u : uint(clamp(floor(z), 0.0, 15.0));
    }
    precise float y = v + 8.5;
    return clamp_quant(y, 15.0);
#elif defined(FORMAT_Q4_1)
    bool scaled;
    float t = sub_scaled(x, p.m, scaled);
    precise float prod = t * p.id;
    precise float v = scaled ? prod * TWO_M24 : prod;
    if (stochastic) {
        precise float z = v + rng_uniform(seed_lo, seed_hi, index_lo, index_hi);
        return isnan(z) ? 0u : uint(clamp(floor(z), 0.0, 15.0));
    }
    precise float y = v + 0.5;
    return clamp_quant(y, 15.0);
#endif
}

// Bytes of the block header (2 for Q8_0/Q4_0, 4 for Q4_1).
#if defined(FORMAT_Q4_1)
#define HEADER_BYTES 4u
#else
#define HEADER_BYTES 2u
#endif

// Quantizes x into one block. `stochastic` selects the rounding; `first_lo/hi`
// is the index of x[0] in the whole tensor.
void quantize_block(float x[QK], bool stochastic, uint seed_lo, uint seed_hi, uint first_lo,
                    uint first_hi, out uint bytes[BLOCK_BYTES]) {
    BlockParams p = block_params(x);
    for (uint k = 0u; k < HEADER_BYTES; ++k) {
        bytes[k] = (p.header >> (8u * k)) & 0xffu;
    }
    uint q[QK];
    for (uint j = 0u; j < QK; ++j) {
        uint lo = first_lo + j;
        uint hi = first_hi + (lo < first_lo ? 1u : 0u);
        q[j] = quant_one(x[j], p, stochastic, seed_lo, seed_hi, lo, hi);
    }
#if defined(FORMAT_Q8_0)
    for (uint j = 0u; j < QK; ++j) {
        bytes[HEADER_BYTES + j] = q[j];
    }
#else
    put_nibbles(bytes, HEADER_BYTES, q);
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
