#version 450
#extension GL_GOOGLE_include_directive : require
// F32 -> FORMAT. Block formats by workgroup (block_group.glsl): step 3
// writes the blocks' bytes. F16/BF16: 4 values per invocation.

#if defined(FORMAT_Q8_0) || defined(FORMAT_Q4_0) || defined(FORMAT_Q4_1)
#define LOCAL_SIZE 64 // block_group.glsl: 32 blocks per workgroup
#endif
#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#ifdef BLOCK_BYTES
#include "block_group.glsl"

// Byte `pos` of group block b (parameters p).
uint block_byte(uint b, uint pos, uint first_value, BlockParams p) {
    if (pos < HEADER_BYTES) {
        return (p.header >> (8u * pos)) & 0xffu;
    }
    uint j = pos - HEADER_BYTES;
#if defined(FORMAT_Q8_0)
    return quant_at(b, j, first_value, p);
#else
    return quant_at(b, j, first_value, p) | (quant_at(b, j + QK / 2u, first_value, p) << 4);
#endif
}

// Output word w of the group (its `bytes` low bytes); a word spans at most
// two blocks, whose parameters are read from shared memory once.
uint output_word(uint w, uint bytes, uint first_value) {
    uint k0 = w * 4u;
    uint b0 = k0 / uint(BLOCK_BYTES);
    uint pos0 = k0 - b0 * uint(BLOCK_BYTES);
    BlockParams p0 = params[b0];
    BlockParams p1 = params[min(b0 + 1u, GROUP_BLOCKS - 1u)];
    uint value = 0u;
    for (uint t = 0u; t < bytes; ++t) {
        uint pos = pos0 + t;
        bool next = pos >= uint(BLOCK_BYTES);
        uint byte_value = next ? block_byte(b0 + 1u, pos - uint(BLOCK_BYTES), first_value, p1)
                               : block_byte(b0, pos, first_value, p0);
        value |= byte_value << (8u * t);
    }
    return value;
}

void main() {
    uint first_value;
    uint n_blocks = load_group(first_value);
    uint out_bytes = n_blocks * uint(BLOCK_BYTES);
    uint word0 = group_index() * (GROUP_BLOCKS * uint(BLOCK_BYTES) / 4u);
    for (uint w = gl_LocalInvocationID.x; w * 4u < out_bytes; w += gl_WorkGroupSize.x) {
        uint bytes = min(4u, out_bytes - w * 4u);
        store_word(word0 + w, output_word(w, bytes, first_value), byte_mask(bytes));
    }
}
#else
uint half_of(uint x, uint e) {
#if defined(FORMAT_BF16)
    const bool bf16 = true;
#else
    const bool bf16 = false;
#endif
    return half_bits(x, bf16, pc.stochastic != 0u, pc.seed_lo, pc.seed_hi, pc.first_lo, pc.first_hi, e);
}

// F16/BF16: 4 values per invocation, a 16-byte load and an 8-byte store.
void main() {
    uint unit = unit_index();
    uint e0 = unit * 4u;
    if (e0 >= pc.n_elements) {
        return;
    }
    if (e0 + 4u <= pc.n_elements) {
        uvec4 x = src4[unit];
        dst2[unit] = uvec2(half_of(x.x, e0) | (half_of(x.y, e0 + 1u) << 16),
                           half_of(x.z, e0 + 2u) | (half_of(x.w, e0 + 3u) << 16));
        return;
    }
    // The tail of the dispatch: 1 to 3 values, one at a time.
    for (uint e = e0; e < pc.n_elements; ++e) {
        uint shift = 16u * (e & 1u);
        store_word(e / 2u, half_of(src[e], e) << shift, 0xffffu << shift);
    }
}
#endif
