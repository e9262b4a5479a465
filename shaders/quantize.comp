#version 450
#extension GL_GOOGLE_include_directive : require
#ifdef HW_F16
#include "hw_f16.glsl" // the `_rte` variant of F16: hardware conversion where exact
#endif
// F32 -> FORMAT. Block formats by workgroup (block_group.glsl): step 3
// computes the blocks' quant bytes into shared memory (4 bytes per lane at a
// time), then the group stores the output as whole words. F16/BF16: 4 values per invocation.

#if defined(FORMAT_Q8_0) || defined(FORMAT_Q4_0) || defined(FORMAT_Q4_1)
#define LOCAL_SIZE 64 // block_group.glsl: 32 blocks per workgroup
#endif
#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#ifdef BLOCK_BYTES
#include "block_group.glsl"

// Each block's quant bytes (its payload after the header), word-aligned per
// block, so that step 3a writes whole words without atomics; step 3b then
// cuts the output words out of headers and payloads with funnel shifts.
#if defined(FORMAT_Q8_0)
const uint PAYLOAD_WORDS = QK / 4u; // 32 quants, one byte each
#else
const uint PAYLOAD_WORDS = QK / 8u; // 32 nibbles
#endif
shared uint payload[GROUP_BLOCKS * PAYLOAD_WORDS];

// The 4 bytes at byte `pos` of block b's bytes (header, then payload), with 0
// past the end of the block.
uint block_window(uint b, uint pos) {
    uint base = b * PAYLOAD_WORDS;
    if (pos < HEADER_BYTES) {
        uint head = HEADER_BYTES == 4u ? params[b].header : (params[b].header & 0xffffu);
        uint shift = 8u * (HEADER_BYTES - pos);
        uint rest = shift >= 32u ? 0u : (payload[base] << shift);
        return (head >> (8u * pos)) | rest;
    }
    uint i = pos - HEADER_BYTES;
    uint w = i >> 2;
    uint s = 8u * (i & 3u);
    uint lo = w < PAYLOAD_WORDS ? payload[base + w] : 0u;
    uint hi = w + 1u < PAYLOAD_WORDS ? payload[base + w + 1u] : 0u;
    return s == 0u ? lo : ((lo >> s) | (hi << (32u - s)));
}

// Payload word `quad` of the group: quants 4 at a time (Q8_0) or nibble
// pairs (Q4_0, Q4_1) of one block.
void make_payload(uint quad, uint first_value) {
    uint b = quad / PAYLOAD_WORDS;
    uint j = (quad - b * PAYLOAD_WORDS) * 4u;
    BlockParams p = params[b];
    uint value = 0u;
    for (uint t = 0u; t < 4u; ++t) {
#if defined(FORMAT_Q8_0)
        uint byte_value = quant_at(b, j + t, first_value, p);
#else
        uint byte_value = quant_at(b, j + t, first_value, p) |
                          (quant_at(b, j + t + QK / 2u, first_value, p) << 4);
#endif
        value |= byte_value << (8u * t);
    }
    payload[quad] = value;
}

// Output word w of the group: the window of its block, completed by the next
// block's first bytes where it crosses into it.
uint output_word(uint w, uint n_blocks) {
    uint k = w * 4u;
    uint b = k / uint(BLOCK_BYTES);
    uint pos = k - b * uint(BLOCK_BYTES);
    uint value = block_window(b, pos);
    uint left = uint(BLOCK_BYTES) - pos;
    if (left < 4u && b + 1u < n_blocks) {
        value |= block_window(b + 1u, 0u) << (8u * left);
    }
    return value;
}

void main() {
    uint local = gl_LocalInvocationID.x;
    uint first_value;
    uint n_blocks = load_group(first_value); // steps 1 and 2, then a barrier
    // Step 3a: each lane makes one payload word (4 bytes) of a block at a
    // time; a whole group runs a constant trip count, which unrolls into
    // independent work that hides shared-memory latency.
    const uint GROUP_PAYLOAD = GROUP_BLOCKS * PAYLOAD_WORDS;
    if (n_blocks == GROUP_BLOCKS) {
        for (uint r = 0u; r < GROUP_PAYLOAD / LOCAL_SIZE; ++r) {
            make_payload(r * LOCAL_SIZE + local, first_value);
        }
    } else {
        for (uint quad = local; quad < n_blocks * PAYLOAD_WORDS; quad += LOCAL_SIZE) {
            make_payload(quad, first_value);
        }
    }
    memoryBarrierShared();
    barrier();
    // Step 3b: the output words, neighbours storing neighbouring words.
    uint out_bytes = n_blocks * uint(BLOCK_BYTES);
    uint word0 = group_index() * (GROUP_BLOCKS * uint(BLOCK_BYTES) / 4u);
    const uint GROUP_OUT_WORDS = GROUP_BLOCKS * uint(BLOCK_BYTES) / 4u;
    if (n_blocks == GROUP_BLOCKS) {
        for (uint r = 0u; r < (GROUP_OUT_WORDS + LOCAL_SIZE - 1u) / LOCAL_SIZE; ++r) {
            uint w = r * LOCAL_SIZE + local;
            if (w < GROUP_OUT_WORDS) {
                store_word(word0 + w, output_word(w, n_blocks), 0xffffffffu);
            }
        }
    } else {
        for (uint w = local; w * 4u < out_bytes; w += LOCAL_SIZE) {
            store_word(word0 + w, output_word(w, n_blocks), byte_mask(min(4u, out_bytes - w * 4u)));
        }
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
#ifdef HW_F16
        vec4 y = uintBitsToFloat(x);
        if (pc.stochastic == 0u && hw_f16_exact(y) && (unit != 0u || pc.perturb == 0u)) {
            dsth[unit] = f16vec4(y);
            return;
        }
#endif
        dst2[unit] = uvec2(perturbed(2u * unit, half_of(x.x, e0) | (half_of(x.y, e0 + 1u) << 16)),
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
