#version 450
#extension GL_GOOGLE_include_directive : require
#ifdef STORE16
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#endif
#ifdef HW_F16
#include "hw_f16.glsl" // the `_rte` variant of F16: hardware conversion where exact
#endif
// F32 -> FORMAT. Block formats by workgroup (block_group.glsl). Step 3:
// Q8_0, Q4_0 and Q5_0 put each block's header and quant bytes into shared
// memory as 16-bit halves (their 34-, 18- and 22-byte blocks start at every
// other half-word; Q5_0's fifth bits, which all 4 lanes of a block
// contribute to, are or'ed into a word per block) and the group then stores
// the output as whole words; Q4_1's lanes store their quant words and
// headers directly. STORE16 (Q8_0's `_s16` variant,
// 16-bit storage): the lanes store their header and quant bytes directly as
// 16-bit halves, with no shared image and no third barrier (on the H200,
// 0.87x copy against 0.81x; Q4_0 measured 0.92x against 0.93x, so it keeps
// the image). F16/BF16: 4 values per invocation.

#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"

#if defined(KQUANT)
// K-quants: a super-block per workgroup (kquant_group.glsl); its bytes are
// or'ed together in shared memory, then stored as words (the first and last
// word of a Q6_K super-block at an odd index, 210 bytes from the previous
// one, are shared with its neighbours: store_word's masked stores).
#include "kquant_group.glsl"
const uint IMAGE_WORDS = (SUPER_BYTES + 3u) / 4u;
shared uint k_image[IMAGE_WORDS];

// Or's `value` into the image at byte `at` (a multiple of 4 for words).
void image_or(uint at, uint value) {
    atomicOr(k_image[at >> 2], value << (8u * (at & 3u)));
}

uint k_image_half(uint h) {
    return (k_image[h >> 1] >> (16u * (h & 1u))) & 0xffffu;
}

void main() {
    uint t = gl_LocalInvocationID.x;
    uint first = group_index() * QK_K;
    if (first >= pc.n_elements) {
        return; // the whole workgroup
    }
    for (uint w = t; w < IMAGE_WORDS; w += LOCAL_SIZE) {
        k_image[w] = 0u;
    }
    vec4 x0, x1;
    k_load_group(first, t, x0, x1); // ends with a barrier
    uvec4 q0, q1;
    k_quants(x0, x1, first, t, q0, q1);
#if defined(AFFINE_K)
    if (t == 0u) {
        image_or(0u, k_head);
    }
    if (t < K_SUBS) {
        // kquant::pack_scales: bytes 4 .. 15 of the super-block.
        uint sc = k_sc[t] & 0xffu;
        uint m = k_sc[t] >> 8;
        if (t < 4u) {
            image_or(4u + t, sc);
            image_or(8u + t, m);
        } else {
            image_or(8u + t, (sc & 15u) | ((m & 15u) << 4));
            image_or(t, (sc >> 4) << 6);
            image_or(4u + t, (m >> 4) << 6);
        }
    }
    // Values 32j + i0 .. +7 of sub-block j: the nibble 4(j % 2) of qs
    // bytes 32(j / 2) + i0 .. +7, and (Q5_K) bit j of qh bytes i0 .. +7.
    uint j = t / K_PER_SUB;
    uint i0 = 8u * (t % K_PER_SUB);
    uint at = KQS_AT + 32u * (j / 2u) + i0;
    image_or(at, pack_bytes(q0 & 15u) << (4u * (j & 1u)));
    image_or(at + 4u, pack_bytes(q1 & 15u) << (4u * (j & 1u)));
#if defined(FORMAT_Q5_K)
    image_or(KQH_AT + i0, pack_bytes(q0 >> 4) << j);
    image_or(KQH_AT + i0 + 4u, pack_bytes(q1 >> 4) << j);
#endif
#else
    if (t == 0u) {
        image_or(KD_AT, k_head);
    }
    if (t < K_SUBS) {
        image_or(KSCALES_AT + t, k_sc[t]);
    }
    uvec4 p0 = q6_places(8u * t);
    uvec4 p1 = q6_places(8u * t + 4u);
    image_or(p0.x, pack_bytes(q0 & 15u) << p0.y);
    image_or(p0.z, pack_bytes(q0 >> 4) << p0.w);
    image_or(p1.x, pack_bytes(q1 & 15u) << p1.y);
    image_or(p1.z, pack_bytes(q1 >> 4) << p1.w);
#endif
    memoryBarrierShared();
    barrier();
    // The super-block's halves h0 .. h0 + HALVES − 1 of the output, as words.
    const uint HALVES = SUPER_BYTES / 2u;
    uint h0 = group_index() * HALVES;
    for (uint w = h0 / 2u + t; 2u * w < h0 + HALVES; w += LOCAL_SIZE) {
        uint value = 0u;
        uint mask = 0u;
        for (uint k = 0u; k < 2u; ++k) {
            uint h = 2u * w + k;
            if (h >= h0 && h < h0 + HALVES) {
                value |= k_image_half(h - h0) << (16u * k);
                mask |= 0xffffu << (16u * k);
            }
        }
        store_word(w, value, mask);
    }
}
#elif defined(BLOCK_BYTES)
#if defined(FORMAT_Q4_1) || defined(STORE16)
#define STEP3_WORDS 0u
#else
// Step 3's image of the group's output bytes: 16 bits per word of scratch.
#define STEP3_WORDS (LOCAL_SIZE * uint(BLOCK_BYTES) / 2u)
#endif
#include "block_group.glsl"

#ifdef STORE16
layout(std430, binding = 1) writeonly buffer Dst16 { uint16_t dst16[]; };
#endif
const uint BLOCK_HALVES = uint(BLOCK_BYTES) / 2u;
const uint QS_HALVES = QS_AT / 2u; // where the quant bytes start

#if defined(FORMAT_Q5_0)
#if defined(STORE16)
#error "Q5_0's qh is gathered in shared memory and stored with the image: no STORE16 variant"
#endif
// Each block's qh, or'ed together by its 4 lanes in step 3a (zeroed before
// step 1's barrier).
shared uint block_qh[GROUP_BLOCKS];
#endif

#if !defined(FORMAT_Q4_1)
// Half-word h of the group's output (Q8_0, Q4_0): into the shared image, or
// with STORE16 straight to the output (half 0 of the dispatch honours
// PERTURB there; the image's words do in step 3b).
void put_half(uint h, uint value) {
#if defined(STORE16)
    uint at = group_index() * (GROUP_BLOCKS * BLOCK_HALVES) + h;
    dst16[at] = uint16_t(perturbed(at, value));
#else
    scratch[h] = value;
#endif
}
#endif

// Step 3a for round r of lane p (slots x0, x1), whose values make quant bytes
// 4i .. 4i+3 of its block (and 4i+16 .. 4i+19 for Q8_0): Q8_0, Q4_0: those
// bytes (and, for lane 0 of the block, the header) into the image; Q4_1: that
// word (and lane 0 the header word) into the output. `plain`: the group is
// plain (group_is_plain).
void quantize_round(uint r, vec4 x0, vec4 x1, uint p, uint first_value, uint n_blocks, bool plain) {
    uint b = r * COLUMNS + p / LANES_PER_BLOCK;
    if (b >= n_blocks) {
        return;
    }
    uint i = p % LANES_PER_BLOCK;
    uint block_first = first_value + b * QK;
    BlockParams bp = params[b];
    uvec4 q = plain ? quants_fast(x0, bp) : quants(x0, slot_positions(i, 0u), block_first, bp);
    uvec4 q1 = plain ? quants_fast(x1, bp) : quants(x1, slot_positions(i, 1u), block_first, bp);
#if defined(FORMAT_Q8_0)
    // Quant bytes 4i .. 4i+3 and 4i+16 .. 4i+19.
    uint word = q.x | (q.y << 8) | (q.z << 16) | (q.w << 24);
    uint word1 = q1.x | (q1.y << 8) | (q1.z << 16) | (q1.w << 24);
#elif defined(FORMAT_Q5_0)
    // Quant bytes 4i .. 4i+3: the low 4 bits of values 4i+t low, of 4i+16+t
    // high; their fifth bits are bits 4i+t and 4i+16+t of qh.
    uvec4 bytes = (q & 15u) | ((q1 & 15u) << 4);
    uint word = bytes.x | (bytes.y << 8) | (bytes.z << 16) | (bytes.w << 24);
    atomicOr(block_qh[b], (fifth_bits(q) << (4u * i)) | (fifth_bits(q1) << (16u + 4u * i)));
#else
    // Quant bytes 4i .. 4i+3: values 4i+t low, 4i+16+t high.
    uvec4 bytes = q | (q1 << 4);
    uint word = bytes.x | (bytes.y << 8) | (bytes.z << 16) | (bytes.w << 24);
#endif
#if defined(FORMAT_Q4_1)
    uint word0 = (group_index() * GROUP_BLOCKS + b) * (uint(BLOCK_BYTES) / 4u);
    if (i == 0u) {
        store_word(word0, bp.header, 0xffffffffu);
    }
    store_word(word0 + 1u + i, word, 0xffffffffu);
#else
    uint at = b * BLOCK_HALVES + QS_HALVES + 2u * i;
    if (i == 0u) {
        put_half(b * BLOCK_HALVES, bp.header & 0xffffu);
    }
    put_half(at, word & 0xffffu);
    put_half(at + 1u, word >> 16);
#if defined(FORMAT_Q8_0)
    // Bytes 4i+16 .. (8 halves further).
    put_half(at + 8u, word1 & 0xffffu);
    put_half(at + 9u, word1 >> 16);
#endif
#endif
}

#if !defined(FORMAT_Q4_1) && !defined(STORE16)
// Half-word h of the group's output: the image, except Q5_0's qh, which
// comes from block_qh.
uint image_half(uint h) {
#if defined(FORMAT_Q5_0)
    uint b = h / BLOCK_HALVES;
    uint at = h - b * BLOCK_HALVES;
    if (at == 1u || at == 2u) {
        return (block_qh[b] >> (16u * (at - 1u))) & 0xffffu;
    }
#endif
    return scratch[h];
}
#endif

void main() {
    uint p = gl_LocalInvocationID.x;
#if defined(FORMAT_Q5_0)
    block_qh[p] = 0u; // LOCAL_SIZE = GROUP_BLOCKS
#endif
    uint first_value;
    uint n_blocks = load_group(first_value); // steps 1 and 2, then a barrier
    if (group_is_plain()) {
#define QUANTIZE_ROUND(r) quantize_round(r, ROUND_SLOT0(r), ROUND_SLOT1(r), p, first_value, n_blocks, true);
        EACH_ROUND(QUANTIZE_ROUND)
    } else {
        for (uint r = 0u; r < ROUNDS; ++r) {
            quantize_round(r, load_slot(r, 0u, p, first_value, n_blocks),
                           load_slot(r, 1u, p, first_value, n_blocks), p, first_value, n_blocks,
                           false);
        }
    }
#if !defined(FORMAT_Q4_1) && !defined(STORE16)
    memoryBarrierShared();
    barrier();
    // Step 3b: the output words, neighbours storing neighbouring words.
    uint out_bytes = n_blocks * uint(BLOCK_BYTES);
    const uint GROUP_OUT_WORDS = GROUP_BLOCKS * uint(BLOCK_BYTES) / 4u;
    uint word0 = group_index() * GROUP_OUT_WORDS;
    if (n_blocks == GROUP_BLOCKS) {
        for (uint k = 0u; k < (GROUP_OUT_WORDS + LOCAL_SIZE - 1u) / LOCAL_SIZE; ++k) {
            uint w = k * LOCAL_SIZE + p;
            if (w < GROUP_OUT_WORDS) {
                store_word(word0 + w, image_half(2u * w) | (image_half(2u * w + 1u) << 16), 0xffffffffu);
            }
        }
    } else {
        for (uint w = p; w * 4u < out_bytes; w += LOCAL_SIZE) {
            // A last word of 2 bytes takes only the first half.
            uint bytes = min(4u, out_bytes - w * 4u);
            uint high = bytes == 4u ? image_half(2u * w + 1u) << 16 : 0u;
            store_word(word0 + w, image_half(2u * w) | high, byte_mask(bytes));
        }
    }
#endif
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
GRID_CHECK(4u);
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
        if (pc.stochastic == 0u && hw_f16_exact(y) && (unit != 0u || !PERTURB)) {
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
