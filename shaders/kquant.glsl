// The K-quants' super-blocks of 256 values (crate::quant::kquant), byte for
// byte: their layout and the decoding of a run of 8 values from words the
// including kernel loads (included by blocks.glsl and weights.glsl).
// FORMAT_Q4_K, FORMAT_Q5_K or FORMAT_Q6_K is set by the variant table.
//
// Q4_K and Q5_K (AFFINE_K): `f16 d; f16 dmin; u8 scales[12]` then (Q5_K)
// `u8 qh[32]` and `u8 qs[128]`; eight sub-blocks of 32 with a 6-bit scale
// and minimum each, x = (d·sc)·q − dmin·m. Q6_K: `u8 ql[128]; u8 qh[64];
// i8 scales[16]; f16 d`; sixteen sub-blocks of 16, x = (d·sc)·(q − 32).

#define QK_K 256u

// f16 bits to f32: exactly (exact.glsl) unless the includer chose otherwise.
#ifndef K_HALF
#define K_HALF(h) f16_value(h)
#endif

#if defined(FORMAT_Q4_K)
#define AFFINE_K
const uint SUPER_BYTES = 144u;
const float NMAX = 15.0;
const uint KQS_AT = 16u; // qs
#elif defined(FORMAT_Q5_K)
#define AFFINE_K
const uint SUPER_BYTES = 176u;
const float NMAX = 31.0;
const uint KQH_AT = 16u; // qh
const uint KQS_AT = 48u; // qs
#elif defined(FORMAT_Q6_K)
const uint SUPER_BYTES = 210u;
const uint KQL_AT = 0u;      // ql
const uint KQH_AT = 128u;    // qh
const uint KSCALES_AT = 192u; // i8 scales[16]
const uint KD_AT = 208u;      // f16 d
#endif

// Byte k of the 32-bit words w (byte 0 in the low bits of w[0]).
uint byte_of(uvec3 w, uint k) {
    return (w[k >> 2] >> (8u * (k & 3u))) & 0xffu;
}

// The low bytes of 4 values packed into a word (value 0 in byte 0).
uint pack_bytes(uvec4 v) {
    return v.x | (v.y << 8) | (v.z << 16) | (v.w << 24);
}

// The 4 bytes of word w, each as one value of a uvec4.
uvec4 bytes4(uint w) {
    return uvec4(w & 0xffu, (w >> 8) & 0xffu, (w >> 16) & 0xffu, w >> 24);
}

#if defined(AFFINE_K)
// Sub-block j's 6-bit scale and minimum from the 12 packed bytes (`scales`,
// as 3 words), as ggml's get_scale_min_k4 reads them.
uvec2 scale_min(uvec3 scales, uint j) {
    if (j < 4u) {
        return uvec2(byte_of(scales, j) & 63u, byte_of(scales, j + 4u) & 63u);
    }
    uint low = byte_of(scales, j + 4u);
    return uvec2((low & 15u) | ((byte_of(scales, j - 4u) >> 6) << 4),
                 (low >> 4) | ((byte_of(scales, j) >> 6) << 4));
}

// Sub-block j's scale d·sc and minimum dmin·m (both exact in f32) from the
// header word (d | dmin << 16) and the packed scales.
vec2 affine_scale(uint head, uvec3 scales, uint j) {
    uvec2 sm = scale_min(scales, j);
    precise float scale = K_HALF(head & 0xffffu) * float(sm.x);
    precise float minimum = K_HALF(head >> 16) * float(sm.y);
    return vec2(scale, minimum);
}

// The levels of 4 values of sub-block j: qs word `qs` (the sub-block's
// nibble: low for even j, high for odd j) and, for Q5_K, the qh word `qh`
// (bit j of each byte is the fifth bit).
uvec4 affine_levels(uint qs, uint qh, uint j) {
    uvec4 q = bytes4(qs >> (4u * (j & 1u))) & 15u;
#if defined(FORMAT_Q5_K)
    q |= ((bytes4(qh) >> j) & 1u) << 4;
#endif
    return q;
}

// x = (d·sc)·q − dmin·m, a product then a difference, as the CPU.
float affine_value(uint q, vec2 sm) {
    precise float v = sm.x * float(q);
    precise float y = v - sm.y;
    return y;
}
#else
// Where the 4 values at element e (a multiple of 4) of a Q6_K super-block
// keep their bits: (byte of ql, nibble shift, byte of qh, bit shift).
// Element 128h + 32k + l: low four bits in ql[64h + 32(k % 2) + l] (low
// nibble for k < 2), top two in bits 2k of qh[32h + l].
uvec4 q6_places(uint e) {
    uint h = e / 128u;
    uint k = (e % 128u) / 32u;
    uint l = e % 32u;
    return uvec4(KQL_AT + 64u * h + 32u * (k % 2u) + l, 4u * (k / 2u), KQH_AT + 32u * h + l, 2u * k);
}

// The levels (0..63) of 4 values from their ql and qh words, shifted as
// q6_places says.
uvec4 q6_levels(uint ql, uint qh, uvec4 place) {
    return (bytes4(ql >> place.y) & 15u) | ((bytes4(qh >> place.w) & 3u) << 4);
}

// The scale d·sc (exact in f32) from the f16 d and the i8 scale byte.
float q6_scale(uint d_bits, uint sc_byte) {
    precise float scale = K_HALF(d_bits) * float(int(sc_byte << 24) >> 24);
    return scale;
}

// x = (d·sc)·(q − 32).
float q6_value(uint q, float scale) {
    precise float y = scale * float(int(q) - 32);
    return y;
}
#endif
