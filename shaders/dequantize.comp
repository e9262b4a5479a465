#version 450
#extension GL_GOOGLE_include_directive : require
// FORMAT -> F32 (or F16 bits with OUT_F16). Block formats: lanes of 8 values
// of one block, one per invocation (4 in the `_rte` variants; below).
// F16/BF16: every invocation decodes UNITS
// units of 4 values; a workgroup covers LOCAL_SIZE * UNITS consecutive units,
// unit k of invocation t being k * LOCAL_SIZE + t, so each of its loads and
// stores is coalesced.
//
// HW_F16 (the `_rte` variants): f32 -> f16 by the hardware conversion
// (hw_f16.glsl) where it is exactly f16_bits, else f16_bits.

#ifdef HW_F16
#include "hw_f16.glsl"
#endif
#include "common.glsl"
#include "exact.glsl"
#include "blocks.glsl"


// Binary16 bits of 4 values as two words.
uvec2 f16_pairs(vec4 y) {
    return uvec2(f16_bits(floatBitsToUint(y.x)) | (f16_bits(floatBitsToUint(y.y)) << 16),
                 f16_bits(floatBitsToUint(y.z)) | (f16_bits(floatBitsToUint(y.w)) << 16));
}

// Stores the 4 values of `unit` (output word 0 honours PERTURB).
void store4(uint unit, vec4 y) {
#ifdef OUT_F16
#ifdef HW_F16
    if (hw_f16_exact(y) && (unit != 0u || !PERTURB)) {
        dsth[unit] = f16vec4(y);
        return;
    }
#endif
    uvec2 h = f16_pairs(y);
    dst2[unit] = uvec2(perturbed(2u * unit, h.x), h.y);
#else
    uvec4 b = floatBitsToUint(y);
    dst4[unit] = uvec4(perturbed(4u * unit, b.x), b.yzw);
#endif
}

#if defined(KQUANT)
// K-quants: invocation u decodes values 8u .. 8u+7 (of super-block u / 32):
// its sub-block's header and scale bytes, then two quant words (and Q5_K's
// two qh words; Q6_K's two ql and two qh words).
GRID_CHECK(8u);

// The 4 bytes at even byte offset o (inside one super-block's quants).
uint k_word(uint o) {
    uint i = o >> 2;
    if ((o & 2u) == 0u) {
        return src[i];
    }
    return (src[i] >> 16) | (src[i + 1u] << 16);
}

// The 16 bits at even byte offset o.
uint k_half(uint o) {
    return (src[o >> 2] >> (8u * (o & 2u))) & 0xffffu;
}

void main() {
    uint lane = unit_index();
    if (lane >= pc.n_elements / 8u) {
        return;
    }
    uint t = lane % 32u;
    uint base = (lane / 32u) * SUPER_BYTES;
    vec4 y0, y1;
#if defined(AFFINE_K)
    // Q4_K's and Q5_K's super-blocks (144 and 176 bytes) start on words.
    uint w0 = base / 4u;
    vec2 sm = affine_scale(src[w0], uvec3(src[w0 + 1u], src[w0 + 2u], src[w0 + 3u]), t / 4u);
    uint j = t / 4u;
    uint i0 = 8u * (t % 4u);
    uint qs = (base + KQS_AT + 32u * (j / 2u) + i0) / 4u;
#if defined(FORMAT_Q5_K)
    uint qh = (base + KQH_AT + i0) / 4u;
    uvec4 l0 = affine_levels(src[qs], src[qh], j);
    uvec4 l1 = affine_levels(src[qs + 1u], src[qh + 1u], j);
#else
    uvec4 l0 = affine_levels(src[qs], 0u, j);
    uvec4 l1 = affine_levels(src[qs + 1u], 0u, j);
#endif
    y0 = vec4(affine_value(l0.x, sm), affine_value(l0.y, sm), affine_value(l0.z, sm), affine_value(l0.w, sm));
    y1 = vec4(affine_value(l1.x, sm), affine_value(l1.y, sm), affine_value(l1.z, sm), affine_value(l1.w, sm));
#else
    // Sub-block t / 2 of 16; its i8 scale is byte t / 2 of the scales.
    uint j = t / 2u;
    float scale = q6_scale(k_half(base + KD_AT), (k_half(base + KSCALES_AT + (j & ~1u)) >> (8u * (j & 1u))) & 0xffu);
    uvec4 p0 = q6_places(8u * t);
    uvec4 p1 = q6_places(8u * t + 4u);
    uvec4 l0 = q6_levels(k_word(base + p0.x), k_word(base + p0.z), p0);
    uvec4 l1 = q6_levels(k_word(base + p1.x), k_word(base + p1.z), p1);
    y0 = vec4(q6_value(l0.x, scale), q6_value(l0.y, scale), q6_value(l0.z, scale), q6_value(l0.w, scale));
    y1 = vec4(q6_value(l1.x, scale), q6_value(l1.y, scale), q6_value(l1.z, scale), q6_value(l1.w, scale));
#endif
    store4(2u * lane, y0);
    store4(2u * lane + 1u, y1);
}
#elif defined(BLOCK_BYTES)
// Block formats. Lane t is lane i = t % 4 of block t / 4 and decodes
// the block's values 4i..4i+3 and 4i+16..4i+19: one header load for 8
// values, and for the nibble formats both halves come from the same 4 quant
// bytes (low and high nibbles; Q5_0 adds their fifth bits from qh). The 4
// lanes of a block store 64 contiguous bytes of f32 (32 of f16) for each
// half, whole 32-byte sectors.
//
// No int -> float conversion (quant_value, blocks.glsl): on the H200 the old
// kernels' one or two conversions per value (int -> float, then f32 -> f16)
// took -> F16 as long as -> F32. F16_MATH (the Q8_0, Q4_0 and Q5_0 `_rte`
// variants and Q4_1's `_rte_dp`, which need shaderFloat16): the f16 results
// are computed in f16 arithmetic, with no f32 -> f16 conversion either
// (H200: Q4_1 -> F16 0.80x -> 0.92x copy).

#ifdef FOUR_LANES
GRID_CHECK(4u * 8u); // 4 lanes of 8 values
#else
GRID_CHECK(8u);
#endif

#if defined(F16_MATH) && defined(FORMAT_Q4_1)
// Q4_1's d*q + m: one f16 fma, whose result may be an f16 subnormal (d*q
// close to -m), which must not be flushed: the variant needs
// shaderDenormPreserveFloat16 (where it is missing, `_rte` runs).
spirv_execution_mode(capabilities = [4464], 4459, 16); // DenormPreserve, 16-bit
#endif

#ifdef STAGE_SHARED
// The blocks a workgroup decodes, 2 sets of 64 at a time (main, below).
const uint SET_BYTES = 64u * uint(BLOCK_BYTES);
const uint SET_VEC4 = SET_BYTES / 16u; // 16-byte chunks of a set
const uint HALF_VEC4 = 2u * SET_VEC4;  // chunks of 2 sets: at most 2 per invocation
STATIC_CHECK(CHUNKS_FIT, 2u * LOCAL_SIZE >= HALF_VEC4);
shared uvec4 staged[HALF_VEC4];

// Word w of the blocks being decoded: the staged copy in shared memory.
uint block_word(uint w) {
    return staged[w >> 2][w & 3u];
}
#else
// Word w of the blocks being decoded: the input.
uint block_word(uint w) {
    return src[w];
}
#endif

// The 4 bytes at byte offset o, which is even: one load where o is a
// multiple of 4, else two (the field then ends inside its block, so the
// second word starts inside the binding or the staged sets).
uint word_at_even(uint o) {
    uint i = o >> 2;
    uint lo = block_word(i);
    if ((o & 2u) == 0u) {
        return lo;
    }
    return (lo >> 16) | (block_word(i + 1u) << 16);
}

// The 4 values d * q (+ m for Q4_1) of the quant bytes of w.
vec4 values4(uint w, float d, float m) {
    vec4 y;
    for (uint t = 0u; t < 4u; ++t) {
        y[t] = quant_value((w >> (8u * t)) & 0xffu, d, m);
    }
    return y;
}

#if defined(F16_MATH)
// The f16 values d * q of the quant bytes of w (Q8_0's sign bits flipped),
// in f16 arithmetic under RTE: 1024 + byte and its difference with
// 1024 + QUANT_BIAS are exact, and one f16 multiply rounds the exact product d*q as f16_bits
// rounds its (exact) f32 value. For a normal d: d*q is then 0 or normal.
f16vec4 f16_values(uint w, float16_t d, float16_t m) {
    const float16_t off = float16_t(1024.0 + QUANT_BIAS);
    f16vec2 even = unpackFloat2x16((w & 0x00ff00ffu) | 0x64006400u);       // bytes 0, 2
    f16vec2 odd = unpackFloat2x16(((w >> 8) & 0x00ff00ffu) | 0x64006400u); // bytes 1, 3
    precise f16vec2 qe = even - f16vec2(off);
    precise f16vec2 qo = odd - f16vec2(off);
#if defined(FORMAT_Q4_1)
    precise f16vec2 ye = fma(qe, f16vec2(d), f16vec2(m));
    precise f16vec2 yo = fma(qo, f16vec2(d), f16vec2(m));
#else
    precise f16vec2 ye = qe * d;
    precise f16vec2 yo = qo * d;
#endif
    return f16vec4(ye.x, yo.x, ye.y, yo.y);
}

// Whether f16_values gives f16_bits of the f32 value for this header.
// Q8_0/Q4_0/Q5_0: d normal, so d*q is 0 or normal. Q4_1: d and m finite, and
// d*q + m exact in f32 (then the fma's one rounding is f16_bits' one), which
// holds when d or m is zero or -12 <= exp(d) - exp(m) <= 8: d*q is an
// integer below 2^15 times d's unit, m one below 2^11 times its own.
bool f16_math_exact(uint head) {
    uint ed = (head >> 10) & 0x1fu;
#if defined(FORMAT_Q4_1)
    uint em = (head >> 26) & 0x1fu;
    bool zero = (head & 0x7fffu) == 0u || (head & 0x7fff0000u) == 0u;
    return ed != 31u && em != 31u && (zero || max(ed, 1u) + 12u - max(em, 1u) <= 20u);
#else
    return ed - 1u < 30u;
#endif
}
#endif

// What lane `lane` loads: its block's header word (Q4_1: d | m << 16; the
// others: d in the low half) and its quant words (qb: Q8_0's second; Q5_0:
// the block's qh).
struct Loaded {
    uint head;
    uint qa;
    uint qb;
};

// Lane i of the block at byte `base` of block_word's bytes.
Loaded load_block_lane(uint base, uint i) {
    uint word = block_word(base >> 2);
    Loaded l;
    l.head = (base & 2u) != 0u ? word >> 16 : word;
    l.qa = word_at_even(base + QS_AT + 4u * i);
#if defined(FORMAT_Q8_0)
    l.qb = word_at_even(base + QS_AT + 16u + 4u * i);
#elif defined(FORMAT_Q5_0)
    l.qb = word_at_even(base + 2u);
#else
    l.qb = 0u;
#endif
    return l;
}

#ifndef STAGE_SHARED
// Lane `lane` of the dispatch, loaded from the input.
Loaded load_lane(uint lane) {
    return load_block_lane((lane / 4u) * uint(BLOCK_BYTES), lane % 4u);
}
#endif

#if defined(F16_MATH)
// Whether lane `lane` of a block with this header word decodes in f16
// arithmetic (the test-only perturbation of output word 0 takes the f32 path).
bool takes_f16_math(uint lane, uint head) {
    return f16_math_exact(head) && (lane != 0u || !PERTURB);
}
#endif

// Decodes and stores the 8 values of lane `lane`.
void decode_store(uint lane, Loaded l) {
    uint head = l.head;
#if defined(FORMAT_Q8_0)
    uint qa = l.qa;
    uint qb = l.qb;
#elif defined(FORMAT_Q5_0)
    // The fifth bits of values 4i .. 4i+3 and 4i+16 .. 4i+19 (i = lane % 4)
    // under their low four bits.
    uint i = lane % 4u;
    uint qa = (l.qa & 0x0f0f0f0fu) | fifth_bytes(l.qb >> (4u * i));
    uint qb = ((l.qa >> 4) & 0x0f0f0f0fu) | fifth_bytes(l.qb >> (16u + 4u * i));
#else
    uint qb = (l.qa >> 4) & 0x0f0f0f0fu;
    uint qa = l.qa & 0x0f0f0f0fu;
#endif
    uint ua = (lane / 4u) * 8u + lane % 4u;
    uint ub = ua + 4u;
#if defined(F16_MATH)
    if (takes_f16_math(lane, head)) {
        f16vec2 dm = unpackFloat2x16(head);
        dsth[ua] = f16_values(qa ^ (QUANT_FLIP * 0x01010101u), dm.x, dm.y);
        dsth[ub] = f16_values(qb ^ (QUANT_FLIP * 0x01010101u), dm.x, dm.y);
        return;
    }
#endif
    float d = f16_value(head & 0xffffu);
#if defined(FORMAT_Q4_1)
    float m = f16_value(head >> 16);
#else
    float m = 0.0;
#endif
    store4(ua, values4(qa, d, m));
    store4(ub, values4(qb, d, m));
}

#ifdef STAGE_SHARED
// The f16-arithmetic variants (Q8_0, Q4_0 and Q5_0 `_rte`, Q4_1 `_rte_dp`): the
// input goes through shared memory, copied with 16-byte loads. The 4 lanes
// of an invocation decode 4 sets of 64 blocks of its workgroup (a set starts
// at a multiple of 64 blocks, so of 16 bytes, from the binding's start).
// Sets 0-1 are copied, then the loads of sets 2-3 are issued into registers
// before sets 0-1 are decoded, so they are in flight meanwhile; after a
// barrier they replace sets 0-1 in shared memory and are decoded.
//
// On the H200 the direct 4-byte loads at 18- or 34-byte strides were the
// limit (Q4_0 -> F16, loads alone: 115 us of the 190). Copying all 4 sets
// before one barrier took Q4_0 from 0.86x to 0.91x copy but Q8_0 from 0.89x
// to 0.79x (8.7 KB of shared memory per group; 0.89x with 2 sets at a time);
// this pipelined form: Q8_0 0.94x, Q4_0 0.93x, Q4_1 0.93x (0.92x direct).
// What lane i of this invocation loads for the set in shared slot `slot`
// (0 or 1).
Loaded load_staged(uint slot, uint i) {
    return load_block_lane(slot * SET_BYTES + (gl_LocalInvocationID.x / 4u) * uint(BLOCK_BYTES), i);
}

// Chunk j of the pair of sets `pair` (sets 2*pair and 2*pair + 1) of this
// workgroup, zeros past the input. Where the dispatch's last bytes are not
// a whole chunk they are loaded as words (each starts inside the binding,
// which covers whole words).
uvec4 pair_chunk(uint pair, uint j, uint stride) {
    uint slot = j / SET_VEC4;
    uint set = 2u * pair + slot;
    uint bytes = (pc.n_elements / QK) * uint(BLOCK_BYTES);
    uint at = ((set * stride + group_index() * LOCAL_SIZE) / 4u) * uint(BLOCK_BYTES) +
              16u * (j - slot * SET_VEC4);
    if (at + 16u <= bytes) {
        return src4[at >> 4];
    }
    uvec4 v = uvec4(0u);
    for (uint c = 0u; c < 4u; ++c) {
        if (at + 4u * c < bytes) {
            v[c] = src[(at >> 2) + c];
        }
    }
    return v;
}

void main() {
    uint t = unit_index();
    uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * LOCAL_SIZE;
    uint lanes = (pc.n_elements / QK) * 4u;
    uint i = gl_LocalInvocationID.x % 4u;
    uint j0 = gl_LocalInvocationID.x;
    uint j1 = j0 + LOCAL_SIZE;
    uvec4 c0 = j0 < HALF_VEC4 ? pair_chunk(0u, j0, stride) : uvec4(0u);
    uvec4 c1 = j1 < HALF_VEC4 ? pair_chunk(0u, j1, stride) : uvec4(0u);
    if (j0 < HALF_VEC4) {
        staged[j0] = c0;
    }
    if (j1 < HALF_VEC4) {
        staged[j1] = c1;
    }
    barrier();
    c0 = j0 < HALF_VEC4 ? pair_chunk(1u, j0, stride) : uvec4(0u);
    c1 = j1 < HALF_VEC4 ? pair_chunk(1u, j1, stride) : uvec4(0u);
    if (t < lanes) {
        decode_store(t, load_staged(0u, i));
    }
    if (t + stride < lanes) {
        decode_store(t + stride, load_staged(1u, i));
    }
    barrier();
    if (j0 < HALF_VEC4) {
        staged[j0] = c0;
    }
    if (j1 < HALF_VEC4) {
        staged[j1] = c1;
    }
    barrier();
    if (t + 2u * stride < lanes) {
        decode_store(t + 2u * stride, load_staged(0u, i));
    }
    if (t + 3u * stride < lanes) {
        decode_store(t + 3u * stride, load_staged(1u, i));
    }
}
#elif defined(FOUR_LANES)
// The `_rte` variants: 4 lanes per invocation, the dispatch's invocation
// count apart (each load and store instruction stays coalesced), all loaded
// before the first is decoded. On the H200: Q4_1 -> F16 0.68x -> 0.81x copy,
// Q4_0 0.85x -> 0.86x, Q8_0 equal; the -> F32 kernels lost 0.01-0.05x, so
// they keep one lane. Written out, not as a loop over an array: NVIDIA puts
// arrays indexed by a loop variable in local memory.
void main() {
    uint t = unit_index();
    uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * LOCAL_SIZE;
    uint lanes = (pc.n_elements / QK) * 4u;
    Loaded l0, l1, l2, l3;
    if (t < lanes) {
        l0 = load_lane(t);
    }
    if (t + stride < lanes) {
        l1 = load_lane(t + stride);
    }
    if (t + 2u * stride < lanes) {
        l2 = load_lane(t + 2u * stride);
    }
    if (t + 3u * stride < lanes) {
        l3 = load_lane(t + 3u * stride);
    }
    if (t < lanes) {
        decode_store(t, l0);
    }
    if (t + stride < lanes) {
        decode_store(t + stride, l1);
    }
    if (t + 2u * stride < lanes) {
        decode_store(t + 2u * stride, l2);
    }
    if (t + 3u * stride < lanes) {
        decode_store(t + 3u * stride, l3);
    }
}
#else
void main() {
    uint lane = unit_index();
    if (lane / 4u >= pc.n_elements / QK) {
        return;
    }
    decode_store(lane, load_lane(lane));
}
#endif
#else
#ifndef UNITS
#error "UNITS comes from the build (build_support/shaders.rs)"
#endif
GRID_CHECK(4u * UNITS);

// The first unit of this invocation (the others follow LOCAL_SIZE apart).
uint first_unit() {
    return group_index() * (LOCAL_SIZE * UNITS) + gl_LocalInvocationID.x;
}

float half_value(uint h) {
#if defined(FORMAT_F16)
    return f16_value(h);
#else
    return uintBitsToFloat(h << 16);
#endif
}

vec4 decode(uvec2 w) {
    return vec4(half_value(w.x & 0xffffu), half_value(w.x >> 16), half_value(w.y & 0xffffu),
                half_value(w.y >> 16));
}

// One value of the tail of the dispatch (its last 1 to 3 values).
void tail_value(uint e) {
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

void main() {
    uint u0 = first_unit();
    uint whole = pc.n_elements / 4u;
    uvec2 w[UNITS];
    for (uint k = 0u; k < UNITS; ++k) {
        uint unit = u0 + k * LOCAL_SIZE;
        if (unit < whole) {
            w[k] = src2[unit];
        }
    }
    for (uint k = 0u; k < UNITS; ++k) {
        uint unit = u0 + k * LOCAL_SIZE;
        if (unit < whole) {
#if defined(OUT_F16) && defined(FORMAT_F16)
            dst2[unit] = uvec2(perturbed(2u * unit, w[k].x), w[k].y);
#else
            store4(unit, decode(w[k]));
#endif
        } else if (unit == whole) {
            for (uint e = unit * 4u; e < pc.n_elements; ++e) {
                tail_value(e);
            }
        }
    }
}
#endif
