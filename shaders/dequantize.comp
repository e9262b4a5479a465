#version 450
#extension GL_GOOGLE_include_directive : require
// FORMAT -> F32 (or F16 bits with OUT_F16), 4 values per invocation.
// Block formats: a workgroup first copies its 32 blocks into shared memory
// with coalesced word loads, then each invocation decodes 4 neighbouring
// values from there and stores them as one 16-byte (or 8-byte) vector.
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
const uint GROUP_BLOCKS = 32u; // 256 invocations x 4 values
const uint GROUP_WORDS = GROUP_BLOCKS * uint(BLOCK_BYTES) / 4u;
shared uint raw[GROUP_WORDS];

uint byte_at(uint o) {
    return (raw[o >> 2] >> (8u * (o & 3u))) & 0xffu;
}

void main() {
    uint local = gl_LocalInvocationID.x;
    uint first_block = group_index() * GROUP_BLOCKS;
    uint total_blocks = pc.n_elements / QK;
    uint n_blocks = first_block < total_blocks ? min(GROUP_BLOCKS, total_blocks - first_block) : 0u;
    uint words = (n_blocks * uint(BLOCK_BYTES) + 3u) / 4u;
    uint word0 = first_block * uint(BLOCK_BYTES) / 4u;
    for (uint w = local; w < words; w += gl_WorkGroupSize.x) {
        raw[w] = src[word0 + w];
    }
    memoryBarrierShared();
    barrier();
    uint e = local * 4u;
    if (e >= n_blocks * QK) {
        return;
    }
    uint blk = e / QK;
    uint j0 = e % QK;
    uint base = blk * uint(BLOCK_BYTES);
    float d = f16_value(byte_at(base) | (byte_at(base + 1u) << 8));
    float y[4];
#if defined(FORMAT_Q8_0)
    for (uint t = 0u; t < 4u; ++t) {
        int q = int(byte_at(base + 2u + j0 + t) << 24) >> 24;
        precise float v = d * float(q);
        y[t] = v;
    }
#elif defined(FORMAT_Q4_0)
    for (uint t = 0u; t < 4u; ++t) {
        uint j = j0 + t;
        uint b = byte_at(base + 2u + (j % 16u));
        uint q = j < 16u ? (b & 15u) : (b >> 4);
        precise float v = d * float(int(q) - 8);
        y[t] = v;
    }
#elif defined(FORMAT_Q4_1)
    float m = f16_value(byte_at(base + 2u) | (byte_at(base + 3u) << 8));
    for (uint t = 0u; t < 4u; ++t) {
        uint j = j0 + t;
        uint b = byte_at(base + 4u + (j % 16u));
        uint q = j < 16u ? (b & 15u) : (b >> 4);
        precise float p = d * float(q);
        precise float v = p + m;
        y[t] = v;
    }
#endif
    store4(group_index() * gl_WorkGroupSize.x + local, y);
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
