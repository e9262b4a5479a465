// Block kernels by workgroup (included by quantize.comp and
// fake_quantize.comp after blocks.glsl): a workgroup of 256 invocations
// handles 128 blocks (4096 values), so that every global load and store is
// coalesced and the exact (slow) scale arithmetic runs once per block:
//   1. all invocations load the values into shared memory, 16 each, with
//      neighbouring invocations reading neighbouring words;
//   2. invocations 0..127 reduce one block each (amax or min/max) and compute
//      its scale, inverse and header (exact integer division);
//   3. the kernel's own step: all invocations produce output words from
//      shared memory, neighbours writing neighbouring words.

const uint GROUP_BLOCKS = 128u;
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

// Quant of value j of group block b.
uint quant_at(uint b, uint j, uint first_value) {
    uint lo, hi;
    tensor_index(first_value + b * QK + j, lo, hi);
    return quant_one(xs[b * ROW + j], params[b], pc.stochastic != 0u, pc.seed_lo, pc.seed_hi, lo, hi);
}

// Steps 1 and 2 for this workgroup; returns the number of blocks it has
// and the dispatch-relative index of its first value.
uint load_group(out uint first_value) {
    uint local = gl_LocalInvocationID.x;
    first_value = group_index() * GROUP_VALUES;
    uint n_values = first_value < pc.n_elements ? min(GROUP_VALUES, pc.n_elements - first_value) : 0u;
    uint n_blocks = n_values / QK;
    for (uint i = local; i < n_values; i += gl_WorkGroupSize.x) {
        xs[(i / QK) * ROW + (i % QK)] = uintBitsToFloat(src[first_value + i]);
    }
    memoryBarrierShared();
    barrier();
    if (local < n_blocks) {
        float x[QK];
        for (uint j = 0u; j < QK; ++j) {
            x[j] = xs[local * ROW + j];
        }
        params[local] = block_params(x);
    }
    memoryBarrierShared();
    barrier();
    return n_blocks;
}
