// Block kernels by workgroup (included by quantize.comp and
// fake_quantize.comp after blocks.glsl): a workgroup of LOCAL_SIZE (64)
// invocations handles 32 blocks (1024 values), so that every global load and
// store is coalesced and the exact (slow) scale arithmetic runs once per
// block; small groups keep many groups resident to hide the barriers:
//   1. all invocations load the values into shared memory, 16 each (four
//      16-byte loads), neighbouring invocations reading neighbouring words;
//   2. invocations 0..31 reduce one block each (amax or min/max) and compute
//      its scale, inverse and header (exact integer division);
//   3. the kernel's own step: all invocations produce output words from
//      shared memory, neighbours writing neighbouring words.

const uint GROUP_BLOCKS = LOCAL_SIZE / 2u;
const uint GROUP_VALUES = GROUP_BLOCKS * QK;
// Rows of 33 words: lane b of step 2 reads row b, so the padding keeps the
// reads of neighbouring lanes in different banks.
const uint ROW = QK + 1u;
shared float xs[GROUP_BLOCKS * ROW];
shared BlockParams params[GROUP_BLOCKS];

// The index of element e (relative to the dispatch) in the whole tensor.
void tensor_index(uint e, out uint lo, out uint hi) {
    lo = pc.first_lo + e;
    hi = pc.first_hi + (lo < pc.first_lo ? 1u : 0u);
}

// Quant of value j of group block b, whose parameters are p.
uint quant_at(uint b, uint j, uint first_value, BlockParams p) {
    uint lo, hi;
    tensor_index(first_value + b * QK + j, lo, hi);
    return quant_one(xs[b * ROW + j], p, pc.stochastic != 0u, pc.seed_lo, pc.seed_hi, lo, hi);
}

// The scale, inverse and header of group block b (read from shared memory),
// exactly as crate::quant::scalar.
BlockParams block_params(uint b) {
    uint row = b * ROW;
    BlockParams p;
    p.m = 0.0;
#if defined(FORMAT_Q8_0)
    uint amax_bits = 0u;
    for (uint j = 0u; j < QK; ++j) {
        amax_bits = max(amax_bits, ABS_BITS(xs[row + j]));
    }
    p.d = div_exact(uintBitsToFloat(amax_bits), 127.0);
    p.id = inverse_scale(p.d);
    p.header = f16_bits(floatBitsToUint(p.d));
#elif defined(FORMAT_Q4_0)
    uint amax_bits = 0u;
    uint max_bits = 0u;
    for (uint j = 0u; j < QK; ++j) {
        uint a = ABS_BITS(xs[row + j]);
        if (a > amax_bits) {
            amax_bits = a;
            max_bits = floatBitsToUint(xs[row + j]);
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
    uint min_bits = floatBitsToUint(xs[row]);
    uint max_bits = min_bits;
    for (uint j = 1u; j < QK; ++j) {
        uint b = floatBitsToUint(xs[row + j]);
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

// Steps 1 and 2 for this workgroup; returns the number of blocks it has
// and the dispatch-relative index of its first value.
uint load_group(out uint first_value) {
    uint local = gl_LocalInvocationID.x;
    first_value = group_index() * GROUP_VALUES;
    uint n_values = first_value < pc.n_elements ? min(GROUP_VALUES, pc.n_elements - first_value) : 0u;
    uint n_blocks = n_values / QK;
    if (n_values == GROUP_VALUES) {
        // A whole group: four 16-byte loads per invocation, all issued before
        // the first is used (constant trip counts unroll).
        const uint LOADS = GROUP_VALUES / (4u * LOCAL_SIZE);
        uvec4 v[LOADS];
        for (uint k = 0u; k < LOADS; ++k) {
            v[k] = src4[first_value / 4u + k * LOCAL_SIZE + local];
        }
        for (uint k = 0u; k < LOADS; ++k) {
            uint i = (k * LOCAL_SIZE + local) * 4u;
            uint at = (i / QK) * ROW + (i % QK);
            xs[at] = uintBitsToFloat(v[k].x);
            xs[at + 1u] = uintBitsToFloat(v[k].y);
            xs[at + 2u] = uintBitsToFloat(v[k].z);
            xs[at + 3u] = uintBitsToFloat(v[k].w);
        }
    } else {
        for (uint i = local; i < n_values; i += gl_WorkGroupSize.x) {
            xs[(i / QK) * ROW + (i % QK)] = uintBitsToFloat(src[first_value + i]);
        }
    }
    memoryBarrierShared();
    barrier();
    if (local < n_blocks) {
        params[local] = block_params(local);
    }
    memoryBarrierShared();
    barrier();
    return n_blocks;
}
