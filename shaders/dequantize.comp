#version 450
#extension GL_GOOGLE_include_directive : require
// FORMAT -> F32 (or F16 bits with OUT_F16), 4 values per invocation.
// Block formats: each invocation decodes 4 neighbouring values from one or
// two word loads and stores them as one 16-byte (or 8-byte) vector.
// F16/BF16: an 8-byte load and a 16-byte (or 8-byte) store per invocation.

#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

// Binary16 bits of 4 values as two words.
uvec2 f16_pairs(float y[4]) {
    return uvec2(f16_bits(floatBitsToUint(y[0])) | (f16_bits(floatBitsToUint(y[1])) << 16),
                 f16_bits(floatBitsToUint(y[2])) | (f16_bits(floatBitsToUint(y[3])) << 16));
}

void store4(uint unit, float y[4]) {
#ifdef OUT_F16
    dst2[unit] = f16_pairs(y);
#else
    dst4[unit] = uvec4(floatBitsToUint(y[0]), floatBitsToUint(y[1]), floatBitsToUint(y[2]),
                       floatBitsToUint(y[3]));
#endif
}

#ifdef BLOCK_BYTES
// The 4 bytes at byte offset o (any alignment), from one or two word loads;
// bytes past the binding are never read when o is word-aligned.
uint word_at(uint o) {
    uint s = 8u * (o & 3u);
    uint lo = src[o >> 2];
    return s == 0u ? lo : ((lo >> s) | (src[(o >> 2) + 1u] << (32u - s)));
}

// Nibbles j0..j0+3 of a block whose quant bytes start at byte `at`
// (element j in the low nibble of byte j, element j+16 in the high one).
uint nibbles4(uint at, uint j0) {
    uint w = word_at(at + (j0 % 16u));
    return j0 < 16u ? (w & 0x0f0f0f0fu) : ((w >> 4) & 0x0f0f0f0fu);
}

// One invocation per 4 consecutive outputs: neighbouring invocations read
// neighbouring bytes (one or two word loads for the scale, the same for the
// 4 quants) and write neighbouring 16 (or 8) bytes.
void main() {
    uint unit = unit_index();
    uint e = unit * 4u;
    if (e >= pc.n_elements) {
        return;
    }
    uint blk = e / QK;
    uint j0 = e % QK;
    uint base = blk * uint(BLOCK_BYTES);
    uint head = word_at(base);
    float d = f16_value(head & 0xffffu);
    float y[4];
#if defined(FORMAT_Q8_0)
    uint qs = word_at(base + 2u + j0);
    for (uint t = 0u; t < 4u; ++t) {
        int q = int(qs << (24u - 8u * t)) >> 24;
        precise float v = d * float(q);
        y[t] = v;
    }
#elif defined(FORMAT_Q4_0)
    uint qs = nibbles4(base + 2u, j0);
    for (uint t = 0u; t < 4u; ++t) {
        uint q = (qs >> (8u * t)) & 15u;
        precise float v = d * float(int(q) - 8);
        y[t] = v;
    }
#elif defined(FORMAT_Q4_1)
    float m = f16_value(head >> 16);
    uint qs = nibbles4(base + 4u, j0);
    for (uint t = 0u; t < 4u; ++t) {
        uint q = (qs >> (8u * t)) & 15u;
        precise float p = d * float(q);
        precise float v = p + m;
        y[t] = v;
    }
#endif
    store4(unit, y);
}
#else
float half_value(uint h) {
#if defined(FORMAT_F16)
    return f16_value(h);
#else
    return uintBitsToFloat(h << 16);
#endif
}

void main() {
    uint unit = unit_index();
    uint e0 = unit * 4u;
    if (e0 >= pc.n_elements) {
        return;
    }
    if (e0 + 4u <= pc.n_elements) {
        uvec2 w = src2[unit];
#if defined(OUT_F16) && defined(FORMAT_F16)
        dst2[unit] = w;
#else
        float y[4] = float[4](half_value(w.x & 0xffffu), half_value(w.x >> 16),
                              half_value(w.y & 0xffffu), half_value(w.y >> 16));
        store4(unit, y);
#endif
        return;
    }
    // The tail of the dispatch: 1 to 3 values, one at a time.
    for (uint e = e0; e < pc.n_elements; ++e) {
        uint h = (src[e / 2u] >> (16u * (e & 1u))) & 0xffffu;
#ifdef OUT_F16
#if defined(FORMAT_F16)
        uint o = h;
#else
        uint o = f16_bits(floatBitsToUint(half_value(h)));
#endif
        store_word(e / 2u, o << (16u * (e & 1u)), 0xffffu << (16u * (e & 1u)));
#else
        dst[e] = floatBitsToUint(half_value(h));
#endif
    }
}
#endif
