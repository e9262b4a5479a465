// Block kernels by workgroup (included by quantize.comp and fake_quantize.comp
// after blocks.glsl). A workgroup of LOCAL_SIZE invocations ("lanes") handles
// LOCAL_SIZE blocks in 4 rounds. In round r, lane p holds 8 values of group
// block r * COLUMNS + p / 4, the 4 lanes p / 4 * 4 .. +3 covering its 32
// values: with i = p % 4, values 4i .. 4i+3 and 4i+16 .. 4i+19 (two
// 16-byte loads; each load instruction of a warp reads 8 blocks' halves of
// 64 contiguous bytes). Their quants are Q8_0's bytes 4i .. 4i+3 and
// 4i+16 .. 4i+19, and the 4-bit formats' bytes 4i .. 4i+3 (low nibbles, then
// high ones; Q5_0's fifth bits are bits 4i .. 4i+3 and 4i+16 .. 4i+19 of
// qh). (8 lanes per block, each holding 4 or two pairs of values, measured
// slower on the H200: 0.71x copy for Q8_0 quantize instead of 0.74x, 0.67x
// instead of 0.80x for Q4_0.)
// The values stay in registers from load to quant:
//   1. load all rounds, and fold each lane's values of each round into
//      partial reductions in shared memory;
//   2. lane p folds the partials of block (round p % 4, column p / 4) in
//      value order and computes its scale, inverse and header exactly (so
//      every lane does the slow integer division once, for one block:
//      ROUNDS = LANES_PER_BLOCK);
//   3. the kernel's own step, from the registers and the blocks' parameters.
// Barriers separate the steps; the exact per-block arithmetic is spread over
// all lanes instead of being run by a few while the others wait.

// The rounds are written out (EACH_ROUND), so that every round names its
// registers with a constant: as a loop, NVIDIA's compiler kept it rolled and
// put the lane's values in local memory. Not the unroll loop attribute:
// glslc -O's unroller drops the NoContraction decorations of `precise` in the
// copies it makes, and NVIDIA then fuses the quantizers' multiply-adds
// (build_support/shaders.rs refuses the attribute).
#define EACH_ROUND(M) M(0u) M(1u) M(2u) M(3u)
const uint LANES_PER_BLOCK = 4u;
// A lane's values in a round: two vec4s ("slots"), at 4i and 4i + 16.
const uint SLOTS = 2u;

const uint ROUNDS = LANES_PER_BLOCK; // so that each lane reduces one block
const uint COLUMNS = LOCAL_SIZE / LANES_PER_BLOCK; // blocks per round
GRID_CHECK(4u * 8u); // 4 rounds of 8 values per lane
const uint GROUP_BLOCKS = LOCAL_SIZE;
const uint GROUP_VALUES = GROUP_BLOCKS * QK;

// Partial reductions per lane and round. Q4_0's, Q5_0's and IQ4_NL's is the
// first value of largest |x|, which depends on order (it decides the sign of
// d = max / -8, max / -16 or max / -127): a lane folds its two slots apart,
// so that the division lane can fold the partials in value order. Q8_0's
// max |x| and Q4_1's keys need no order.
#if defined(OFFSET_LEVELS) || defined(FORMAT_IQ4_NL)
#define FIRST_MAX
#endif
#if defined(FORMAT_Q8_0)
const uint PARTS = 1u; // max |x| bits
#elif defined(FIRST_MAX)
const uint PARTS = 2u; // per slot: the first value of largest |x|
#else
const uint PARTS = 2u; // zero-blind keys of min and max
#endif
// Rows of LOCAL_SIZE + 1 words: the 32 lanes of a warp in step 2 read 32
// different (round, column) pairs, which the padding puts in 32 banks.
const uint PART_ROW = LOCAL_SIZE + 1u;
const uint PARTIAL_WORDS = PARTS * ROUNDS * PART_ROW;

// Shared words: the partials in steps 1-2, then the kernel's step 3
// (STEP3_WORDS, which the kernel defines before including this file).
shared uint scratch[PARTIAL_WORDS > STEP3_WORDS ? PARTIAL_WORDS : STEP3_WORDS];
shared BlockParams params[GROUP_BLOCKS];

// 1 where a block of the group needs the general quantizer (see
// group_is_plain).
shared uint group_general;

// The lane's values, from step 1 to step 3: round r's slot k in
// xv[SLOTS * r + k], indexed only with constants (EACH_ROUND). (Loading them
// again in step 3 instead, to free registers across step 2, measured 10-20%
// slower on the H200.)
vec4 xv[ROUNDS * SLOTS];

// The block positions of the 4 values of slot k of lane i of a block.
uvec4 slot_positions(uint i, uint k) {
    return QK / 2u * k + 4u * i + uvec4(0u, 1u, 2u, 3u);
}

// The index of element e (relative to the dispatch) in the whole tensor.
void tensor_index(uint e, out uint lo, out uint hi) {
    lo = pc.first_lo + e;
    hi = pc.first_hi + (lo < pc.first_lo ? 1u : 0u);
}

// Q4_0's, Q5_0's and IQ4_NL's fold: keeps acc unless |b| is strictly larger.
uint fold_amax_value(uint acc, uint b) {
    return ABS_BITS(uintBitsToFloat(b)) > ABS_BITS(uintBitsToFloat(acc)) ? b : acc;
}

// Q4_1's min and max are Rust's f32::min/max folds (x86): the accumulator
// changes only when the new value is strictly smaller/larger, so they give
// the first of the block's values that equal the minimum (maximum) as
// numbers. Values equal as numbers have equal bits except +0 and -0, so the
// folds are: the minimum (maximum) of keys that order the values as numbers
// with both zeros 0, which needs no order; where that is 0, the sign of the
// block's first zero (block_first_zero).

// The key of f32 bits b: its magnitude bits, negated for a negative sign (a
// total order like the numbers', NaNs beyond the infinities).
int zero_blind_key(uint b) {
    int magnitude = int(b & 0x7fffffffu);
    return (b & 0x80000000u) != 0u ? -magnitude : magnitude;
}

// The f32 bits of a nonzero key.
uint key_bits(int k) {
    return k < 0 ? (uint(-k) | 0x80000000u) : uint(k);
}

// The bits of the first zero among the 32 values of the block at
// dispatch-relative index block_first (read again from the input: only
// blocks whose minimum or maximum is zero need it).
uint block_first_zero(uint block_first) {
    for (uint j = 0u; j < QK; ++j) {
        uint b = src[block_first + j];
        if ((b & 0x7fffffffu) == 0u) {
            return b;
        }
    }
    return 0u;
}

// Where partial `part` of (round r, lane p) lives in `scratch`.
uint partial_at(uint part, uint r, uint p) {
    return (part * ROUNDS + r) * PART_ROW + p;
}

// Step 1's fold of this lane's values of round r (slots x and x1) into its
// partials.
void store_partials(vec4 x, vec4 x1, uint r, uint p) {
    uvec4 b = floatBitsToUint(x);
#if defined(FORMAT_Q8_0)
    scratch[partial_at(0u, r, p)] = max(max(max(ABS_BITS(x.x), ABS_BITS(x.y)), max(ABS_BITS(x.z), ABS_BITS(x.w))),
                                        max(max(ABS_BITS(x1.x), ABS_BITS(x1.y)), max(ABS_BITS(x1.z), ABS_BITS(x1.w))));
#elif defined(FIRST_MAX)
    uvec4 b1 = floatBitsToUint(x1);
    scratch[partial_at(0u, r, p)] = fold_amax_value(fold_amax_value(fold_amax_value(b.x, b.y), b.z), b.w);
    scratch[partial_at(1u, r, p)] = fold_amax_value(fold_amax_value(fold_amax_value(b1.x, b1.y), b1.z), b1.w);
#else
    uvec4 b1 = floatBitsToUint(x1);
    ivec4 k0 = ivec4(zero_blind_key(b.x), zero_blind_key(b.y), zero_blind_key(b.z), zero_blind_key(b.w));
    ivec4 k1 = ivec4(zero_blind_key(b1.x), zero_blind_key(b1.y), zero_blind_key(b1.z), zero_blind_key(b1.w));
    ivec4 lo = min(k0, k1);
    ivec4 hi = max(k0, k1);
    scratch[partial_at(0u, r, p)] = uint(min(min(lo.x, lo.y), min(lo.z, lo.w)));
    scratch[partial_at(1u, r, p)] = uint(max(max(hi.x, hi.y), max(hi.z, hi.w)));
#endif
}

#if defined(FIRST_MAX)
// The bits of the first value of largest |x| of the block of round r whose
// lanes start at first_lane, its partials folded in value order (slot 0 of
// every lane, values 0 .. 15, then slot 1) from +0 like the CPU's fold (an
// all-zero block keeps it).
uint block_first_max(uint r, uint first_lane) {
    uint max_bits = 0u;
    for (uint slot = 0u; slot < 2u; ++slot) {
        for (uint i = 0u; i < LANES_PER_BLOCK; ++i) {
            max_bits = fold_amax_value(max_bits, scratch[partial_at(slot, r, first_lane + i)]);
        }
    }
    return max_bits;
}
#endif

#if defined(FORMAT_IQ4_NL)
// 1e-15 (ggml's GROUP_MAX_EPS): blocks whose largest magnitude is below it
// store d = +0 and every index 8.
const uint IQ4_NL_EPS_BITS = 0x26901d7du;

// The least-squares scale of the block at dispatch-relative index
// block_first for the indices nearest x * id, weights x^2, summed in element
// order on the block times 2^-e (its largest magnitude, amax_bits, in
// [1, 2)) as scalar::iq4_nl_refit. A term that is subnormal on the CPU (and
// flushed here) is below 2^-100 while each sum passes 127 at the largest
// value, so it changes no sum's rounding. The values are read again from the
// input: one lane folds its block's 32 values in order.
float iq4_nl_refit(uint block_first, float id, uint amax_bits) {
    uint e = amax_bits >> 23;
    float up = uintBitsToFloat((254u - e) << 23);
    float down = uintBitsToFloat(e << 23);
    precise float sumqx = 0.0;
    precise float sumq2 = 0.0;
    for (uint j = 0u; j < QK; ++j) {
        float x = uintBitsToFloat(src[block_first + j]);
        precise float t = x * id;
        float level = iq4_nl_level(iq4_nl_index(t));
        precise float xs = x * up;
        precise float w = xs * xs;
        precise float wq = w * level;
        precise float qx = wq * xs;
        precise float q2 = wq * level;
        sumqx = sumqx + qx;
        sumq2 = sumq2 + q2;
    }
    if (!(sumq2 > 0.0)) {
        return 0.0;
    }
    float magnitude = div_exact(abs(sumqx), sumq2);
    precise float d = (sumqx < 0.0 ? -magnitude : magnitude) * down;
    return d;
}
#endif

// Step 2: the scale, inverse and header of the block of round r whose lanes
// are first_lane .. first_lane + LANES_PER_BLOCK - 1 and whose first value
// has dispatch-relative index block_first, exactly as crate::quant::scalar.
BlockParams block_params(uint r, uint first_lane, uint block_first) {
    BlockParams p;
    p.m = 0.0;
#if defined(FORMAT_Q8_0)
    uint amax_bits = 0u;
    for (uint i = 0u; i < LANES_PER_BLOCK; ++i) {
        amax_bits = max(amax_bits, scratch[partial_at(0u, r, first_lane + i)]);
    }
    p.d = div_exact(uintBitsToFloat(amax_bits), 127.0);
    p.id = inverse_scale(p.d);
    p.header = f16_bits(floatBitsToUint(p.d));
#elif defined(OFFSET_LEVELS)
    uint max_bits = block_first_max(r, first_lane);
    uint amax_bits = max_bits & 0x7fffffffu;
    // d = max / -2^ZERO_LOG2: exact on the exponent, or a signed zero where
    // it would be subnormal (|max| < 2^(ZERO_LOG2 - 126)).
    uint d_bits = amax_bits < ((ZERO_LOG2 + 1u) << 23) ? ((max_bits ^ 0x80000000u) & 0x80000000u)
                                                       : ((max_bits ^ 0x80000000u) - (ZERO_LOG2 << 23));
    p.d = uintBitsToFloat(d_bits);
    p.id = inverse_scale(p.d);
    p.header = f16_bits(d_bits);
#elif defined(FORMAT_IQ4_NL)
    uint max_bits = block_first_max(r, first_lane);
    uint amax_bits = max_bits & 0x7fffffffu;
    // d0 = max / -127, the first scale (a signed zero where it would be
    // subnormal); stochastic rounding stores it, nearest rounding the
    // least-squares fit for the indices it gives, or +0 and every index 8
    // below 1e-15.
    uint d0_bits = floatBitsToUint(div_exact(uintBitsToFloat(amax_bits), 127.0)) |
                   ((max_bits ^ 0x80000000u) & 0x80000000u);
    p.d = uintBitsToFloat(d0_bits);
    p.id = inverse_scale(p.d);
    if (pc.stochastic != 0u) {
        p.header = f16_bits(d0_bits);
    } else if (amax_bits < IQ4_NL_EPS_BITS) {
        p.d = 0.0;
        p.id = 0.0;
        p.header = 0u;
    } else {
        p.header = f16_bits(floatBitsToUint(iq4_nl_refit(block_first, p.id, amax_bits)));
    }
#elif defined(FORMAT_Q4_1)
    int min_key = int(scratch[partial_at(0u, r, first_lane)]);
    int max_key = int(scratch[partial_at(1u, r, first_lane)]);
    for (uint i = 1u; i < LANES_PER_BLOCK; ++i) {
        min_key = min(min_key, int(scratch[partial_at(0u, r, first_lane + i)]));
        max_key = max(max_key, int(scratch[partial_at(1u, r, first_lane + i)]));
    }
    uint zero_bits = (min_key == 0 || max_key == 0) ? block_first_zero(block_first) : 0u;
    uint min_bits = min_key == 0 ? zero_bits : key_bits(min_key);
    uint max_bits = max_key == 0 ? zero_bits : key_bits(max_key);
    p.m = uintBitsToFloat(min_bits);
    p.d = div_exact(sub_exact(uintBitsToFloat(max_bits), p.m), 15.0);
    p.id = inverse_scale(p.d);
    p.header = f16_bits(floatBitsToUint(p.d)) | (f16_bits(min_bits) << 16);
#endif
    return p;
}

// Whether quant_fast gives quant_one's result for every value of a block
// with parameters p (nearest rounding). quant_one differs from the plain
// formulas only for |x| < 2^-100 (Q8_0, Q4_0, Q5_0) or |m| < 2^-100 (Q4_1).
// For those with |id| < 2^107, such an x either is normal, where the
// plain product is exact unless it is subnormal, or gives |x * id| < 2^-19:
// either way the quant is that of 0 on both paths.
bool block_is_plain(BlockParams p) {
#if defined(FORMAT_Q4_1)
    return ABS_BITS(p.m) >= SMALL_BITS;
#else
    return ABS_BITS(p.id) < ((107u + 127u) << 23);
#endif
}

// quant_one's nearest rounding without its paths for tiny values (valid
// where block_is_plain): the plain product, then the same rounding.
uint quant_fast(float x, BlockParams p) {
#if defined(FORMAT_Q4_1)
    precise float t = x - p.m;
    precise float v = t * p.id;
#else
    precise float v = x * p.id;
#endif
    return quant_nearest(v);
}

// The quants of 4 values x of a block with parameters p, where
// block_is_plain(p) and rounding is to nearest.
uvec4 quants_fast(vec4 x, BlockParams p) {
    return uvec4(quant_fast(x.x, p), quant_fast(x.y, p), quant_fast(x.z, p), quant_fast(x.w, p));
}

// The stochastic quant of x, element e (dispatch-relative) of the tensor.
uint quant_stochastic(float x, BlockParams p, uint e) {
    uint lo, hi;
    tensor_index(e, lo, hi);
    return quant_one(x, p, true, pc.seed_lo, pc.seed_hi, lo, hi);
}

// The quants of 4 values x at block positions `at` of a block (whose first
// value has dispatch-relative index block_first), with parameters p.
uvec4 quants(vec4 x, uvec4 at, uint block_first, BlockParams p) {
    if (pc.stochastic != 0u) {
        uvec4 e = block_first + at;
        return uvec4(quant_stochastic(x.x, p, e.x), quant_stochastic(x.y, p, e.y),
                     quant_stochastic(x.z, p, e.z), quant_stochastic(x.w, p, e.w));
    }
    if (block_is_plain(p)) {
        return quants_fast(x, p);
    }
    return uvec4(quant_one(x.x, p, false, 0u, 0u, 0u, 0u), quant_one(x.y, p, false, 0u, 0u, 0u, 0u),
                 quant_one(x.z, p, false, 0u, 0u, 0u, 0u), quant_one(x.w, p, false, 0u, 0u, 0u, 0u));
}

// Lane p's 4 values of slot k of round r (zeros past the group's n_blocks
// blocks).
vec4 load_slot(uint r, uint k, uint p, uint first_value, uint n_blocks) {
    uint b = r * COLUMNS + p / LANES_PER_BLOCK;
    if (b >= n_blocks) {
        return vec4(0.0);
    }
    uint block_first = first_value + b * QK;
    uint i = p % LANES_PER_BLOCK;
    return uintBitsToFloat(src4[(block_first + slot_positions(i, k).x) / 4u]);
}

// Lane p's values of round r: the first slot, then the second.
#define ROUND_SLOT0(r) xv[SLOTS * (r)]
#define ROUND_SLOT1(r) xv[SLOTS * (r) + 1u]

// Steps 1 and 2 for this workgroup: the lane's values into xv and the
// blocks' parameters into `params`; returns the number of blocks the group
// has and the dispatch-relative index of its first value.
uint load_group(out uint first_value) {
    uint p = gl_LocalInvocationID.x;
    first_value = group_index() * GROUP_VALUES;
    uint n_values = first_value < pc.n_elements ? min(GROUP_VALUES, pc.n_elements - first_value) : 0u;
    uint n_blocks = n_values / QK;
    if (p == 0u) {
        group_general = 0u;
    }
    // All loads are issued before the first value is used.
#define LOAD_ROUND(r)                                                                               \
    ROUND_SLOT0(r) = load_slot(r, 0u, p, first_value, n_blocks);                                    \
    ROUND_SLOT1(r) = load_slot(r, 1u, p, first_value, n_blocks);
#define PARTIALS_ROUND(r) LOAD_ROUND(r) store_partials(ROUND_SLOT0(r), ROUND_SLOT1(r), r, p);
    EACH_ROUND(PARTIALS_ROUND)
    memoryBarrierShared();
    barrier();
    // Lane p reduces block (round p % ROUNDS, column p / ROUNDS).
    uint r = p % ROUNDS;
    uint column = p / ROUNDS;
    uint b = r * COLUMNS + column;
    if (b < n_blocks) {
        BlockParams bp = block_params(r, column * LANES_PER_BLOCK, first_value + b * QK);
        params[b] = bp;
        if (!block_is_plain(bp)) {
            atomicOr(group_general, 1u);
        }
    }
    // After this barrier the partials are read: scratch is free for step 3.
    memoryBarrierShared();
    barrier();
    return n_blocks;
}

// Whether step 3 may use quants_fast for every block of the group: nearest
// rounding and no block that needs quant_one's paths for tiny values. The
// same for the whole group, so the kernels branch on it once: the plain path
// written out per round (EACH_ROUND), the general one as a loop, which keeps
// the shader small.
bool group_is_plain() {
    return pc.stochastic == 0u && group_general == 0u;
}
