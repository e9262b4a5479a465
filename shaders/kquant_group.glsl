// K-quant super-blocks by workgroup (included by quantize.comp and
// fake_quantize.comp after blocks.glsl): a workgroup of 32 invocations
// quantizes one super-block of 256 values, invocation t holding values
// 8t .. 8t+7 in registers from load to quant, exactly as
// crate::quant::kquant's nearest and stochastic rounding:
//   1. each invocation folds its 8 values into partials in shared memory
//      (Q4_K/Q5_K: the minimum and maximum; Q6_K: the first value of
//      largest magnitude, in value order);
//   2. one invocation per sub-block folds its partials: its scale (and
//      minimum);
//   3. one invocation per sub-block computes the f16 super-block scales
//      from all of them (each the same) and its sub-block's 6-bit (8-bit)
//      scale against them;
//   4. every invocation rounds its values against its sub-block's stored
//      scale (k_quants).
// Barriers separate the steps. Every division is div_exact or a power of
// two on the bits; values whose products the GPU may flush are shown below
// to round like the CPU's (or take an exact path).

GRID_CHECK(8u); // 8 values per invocation
STATIC_CHECK(ONE_SUPER_BLOCK, LOCAL_SIZE * 8u == QK_K);

#if defined(AFFINE_K)
const uint K_SUBS = 8u; // sub-blocks of 32
#else
const uint K_SUBS = 16u; // sub-blocks of 16
#endif
const uint K_PER_SUB = QK_K / K_SUBS / 8u; // invocations per sub-block

// Step 1's partials: [t] (Q4_K/Q5_K: sortable minimum; Q6_K: first maximum
// bits) and [32 + t] (sortable maximum).
shared uint k_part[2u * LOCAL_SIZE];
// Step 2's per sub-block f32 bits: the scale, and [16 + j] the minimum.
shared uint k_sub[32];
// Step 3: each sub-block's stored 6-bit scale | minimum << 8 (Q6_K: the i8
// scale's byte), and the header: f16 d | dmin << 16 (Q6_K: d).
shared uint k_sc[16];
shared uint k_head;

// The f32 bits of x / 2^k, rounded to nearest even (subnormal results
// included, which the FPU may flush), for 1 <= k <= 8.
uint pow2_divide(uint bits, uint k) {
    uint sign = bits & 0x80000000u;
    uint a = bits & 0x7fffffffu;
    uint e = a >> 23;
    if (e > k) {
        return sign | (a - (k << 23));
    }
    uint m = (a & 0x7fffffu) | (e > 0u ? 0x800000u : 0u);
    uint s = k + 1u - max(e, 1u); // 1 ..= 9
    uint q = m >> s;
    uint rem = m & ((1u << s) - 1u);
    uint half_unit = 1u << (s - 1u);
    if (rem > half_unit || (rem == half_unit && (q & 1u) != 0u)) {
        q += 1u;
    }
    return sign | q;
}

// Keeps acc unless |b| is strictly larger: the first value of largest
// magnitude in fold order (scalar::signed_max).
uint first_larger(uint acc, uint b) {
    return (b & 0x7fffffffu) > (acc & 0x7fffffffu) ? b : acc;
}

// The f32 bits of the number whose sortable() key is s.
uint unsortable(uint s) {
    return (s & 0x80000000u) != 0u ? (s & 0x7fffffffu) : ~s;
}

// trunc(v + ½) clamped to 0..top (kquant::half_up).
uint half_up(float v, float top) {
    precise float y = v + 0.5;
    return uint(clamp(trunc(y), 0.0, top));
}

// The index of element e (relative to the dispatch) in the whole tensor.
void k_tensor_index(uint e, out uint lo, out uint hi) {
    lo = pc.first_lo + e;
    hi = pc.first_hi + (lo < pc.first_lo ? 1u : 0u);
}

// Step 1 for invocation t's values x0 (8t .. 8t+3) and x1 (8t+4 .. 8t+7).
void k_step1(vec4 x0, vec4 x1, uint t) {
    uvec4 b0 = floatBitsToUint(x0);
    uvec4 b1 = floatBitsToUint(x1);
#if defined(AFFINE_K)
    // Minimum and maximum as numbers; which zero they keep changes nothing
    // (kquant::affine_scales_of).
    uvec4 s0 = uvec4(sortable(b0.x), sortable(b0.y), sortable(b0.z), sortable(b0.w));
    uvec4 s1 = uvec4(sortable(b1.x), sortable(b1.y), sortable(b1.z), sortable(b1.w));
    uvec4 lo = min(s0, s1);
    uvec4 hi = max(s0, s1);
    k_part[t] = min(min(lo.x, lo.y), min(lo.z, lo.w));
    k_part[LOCAL_SIZE + t] = max(max(hi.x, hi.y), max(hi.z, hi.w));
#else
    uint m = first_larger(first_larger(first_larger(b0.x, b0.y), b0.z), b0.w);
    m = first_larger(first_larger(first_larger(first_larger(m, b1.x), b1.y), b1.z), b1.w);
    k_part[t] = m;
#endif
}

// Step 2: sub-block j's scale (and minimum), for j < K_SUBS.
void k_step2(uint j) {
#if defined(AFFINE_K)
    uint first = K_PER_SUB * j;
    uint lo_key = k_part[first];
    uint hi_key = k_part[LOCAL_SIZE + first];
    for (uint i = 1u; i < K_PER_SUB; ++i) {
        lo_key = min(lo_key, k_part[first + i]);
        hi_key = max(hi_key, k_part[LOCAL_SIZE + first + i]);
    }
    uint lo = unsortable(lo_key);
    uint hi = unsortable(hi_key);
    if ((lo & 0x80000000u) == 0u) {
        lo = 0u; // a positive minimum is 0: the format only subtracts
    }
    // (hi − lo)/NMAX >= 0 (+0 where subnormal; such a scale gives d = 0 and
    // sc = 0 on the CPU too); the minimum −lo.
    k_sub[j] = floatBitsToUint(div_exact(sub_exact(uintBitsToFloat(hi), uintBitsToFloat(lo)), NMAX));
    k_sub[16u + j] = lo ^ 0x80000000u;
#else
    // s = max / −32, rounded as the CPU (subnormals too: the sign of d
    // depends on them); the sub-block's two partials folded in value order.
    uint m = first_larger(k_part[K_PER_SUB * j], k_part[K_PER_SUB * j + 1u]);
    k_sub[j] = pow2_divide(m, 5u) ^ 0x80000000u;
#endif
}

#if defined(AFFINE_K)
// The largest of the first K_SUBS non-negative f32 bits from k_sub[from]
// (a fold from +0 that keeps only larger values: −0 never counts).
uint k_largest(uint from) {
    uint largest = 0u;
    for (uint j = 0u; j < K_SUBS; ++j) {
        uint b = k_sub[from + j];
        largest = (b & 0x80000000u) == 0u ? max(largest, b) : largest;
    }
    return largest;
}

// The f16 bits of the super-block scale over the largest `largest` bits.
uint k_super_scale(uint largest) {
    return f16_bits(floatBitsToUint(div_exact(uintBitsToFloat(largest), 63.0)));
}
#endif

// Step 3: the f16 super-block scale(s) (every invocation j < K_SUBS the
// same; the first stores them) and sub-block j's stored scale.
void k_step3(uint j) {
#if defined(AFFINE_K)
    uint d_bits = k_super_scale(k_largest(0u));
    uint dmin_bits = k_super_scale(k_largest(16u));
    // Products of a scale below 2^-126 (+0 here) are below 2^-102 on the
    // CPU: sc and m are 0 either way.
    precise float sc = uintBitsToFloat(k_sub[j]) * inverse_scale(f16_value(d_bits));
    precise float mn = uintBitsToFloat(k_sub[16u + j]) * inverse_scale(f16_value(dmin_bits));
    k_sc[j] = half_up(sc, 63.0) | (half_up(mn, 63.0) << 8);
    if (j == 0u) {
        k_head = d_bits | (dmin_bits << 16);
    }
#else
    uint smax = 0u;
    for (uint i = 0u; i < K_SUBS; ++i) {
        smax = first_larger(smax, k_sub[i]);
    }
    uint d_bits = f16_bits(pow2_divide(smax, 7u) ^ 0x80000000u);
    // A subnormal s (flushed or not) gives |s·id| < 2^-102: sc = 0 either way.
    precise float v = uintBitsToFloat(k_sub[j]) * inverse_scale(f16_value(d_bits));
    k_sc[j] = uint(int(clamp(round_half_away(v), -128.0, 127.0))) & 0xffu;
    if (j == 0u) {
        k_head = d_bits;
    }
#endif
}

#if !defined(AFFINE_K)
// Whether the CPU's f32 product v·id rounds to a nonzero value, for
// |v| < 2^-100 (where the product is below 2^-76 and may be subnormal, which
// the GPU may flush): |v·id| > 2^-150, on the integer mantissas.
bool tiny_product_nonzero(uint v_bits, float id) {
    uint a = v_bits & 0x7fffffffu;
    uint ai = ABS_BITS(id);
    if (a == 0u || ai == 0u) {
        return false;
    }
    uint ev = a >> 23;
    uint mv = (a & 0x7fffffu) | (ev > 0u ? 0x800000u : 0u);
    uint mi = (ai & 0x7fffffu) | 0x800000u;
    // |v| = mv·2^(max(ev,1) − 150), |id| = mi·2^(ei − 150): the product
    // exceeds 2^-150 when mv·mi > 2^k.
    int k = 150 - int(max(ev, 1u)) - int(ai >> 23);
    if (k < 0) {
        return true;
    }
    if (k >= 48) {
        return false;
    }
    uint hi, lo;
    umulExtended(mv, mi, hi, lo);
    uint bound_hi = k >= 32 ? (1u << uint(k - 32)) : 0u;
    uint bound_lo = k >= 32 ? 0u : (1u << uint(k));
    return hi > bound_hi || (hi == bound_hi && lo > bound_lo);
}
#endif

// Step 4: the level of value x (element e of the dispatch) of sub-block j.
uint k_quant(float x, uint j, uint e) {
    uint sc = k_sc[j];
#if defined(AFFINE_K)
    precise float scale = f16_value(k_head & 0xffffu) * float(sc & 0xffu);
    precise float minimum = f16_value(k_head >> 16) * float(sc >> 8);
    float id = inverse_scale(scale);
    // A subnormal x meets a minimum of 0 (then |x·id| < 2^-102) or one of at
    // least 2^-24 (then x + M = M): flushed or not, the level is the same.
    precise float shifted = x + minimum;
    precise float v = shifted * id;
    if (pc.stochastic == 0u) {
        return half_up(v, NMAX);
    }
    uint lo, hi;
    k_tensor_index(e, lo, hi);
    // u >= 2^-24 absorbs any product below 2^-76; with u = 0 a negative
    // one is clamped to 0 anyway.
    precise float y = v + rng_uniform(pc.seed_lo, pc.seed_hi, lo, hi);
    return uint(clamp(floor(y), 0.0, NMAX));
#else
    float scale = q6_scale(k_head, sc);
    float id = inverse_scale(scale);
    precise float v = x * id;
    if (pc.stochastic == 0u) {
        // A product of |x| < 2^-100 is below 2^-76: level 32 either way.
        return uint(int(clamp(round_half_away(v), -32.0, 31.0)) + 32);
    }
    uint lo, hi;
    k_tensor_index(e, lo, hi);
    float u = rng_uniform(pc.seed_lo, pc.seed_hi, lo, hi);
    uint x_bits = floatBitsToUint(x);
    if (u == 0.0 && (x_bits & 0x7fffffffu) < SMALL_BITS) {
        // ⌊x·id⌋ of the CPU's (possibly subnormal) product: −1 where it is
        // negative and nonzero.
        bool negative = ((x_bits ^ floatBitsToUint(id)) & 0x80000000u) != 0u;
        return negative && tiny_product_nonzero(x_bits, id) ? 31u : 32u;
    }
    precise float y = v + u;
    return uint(int(clamp(floor(y), -32.0, 31.0)) + 32);
#endif
}

// Steps 1 to 3 for the workgroup's super-block, whose first value has
// dispatch-relative index `first`: loads invocation t's values into x0 and
// x1 and leaves the scales in shared memory, after a last barrier.
void k_load_group(uint first, uint t, out vec4 x0, out vec4 x1) {
    x0 = uintBitsToFloat(src4[(first + 8u * t) / 4u]);
    x1 = uintBitsToFloat(src4[(first + 8u * t) / 4u + 1u]);
    k_step1(x0, x1, t);
    memoryBarrierShared();
    barrier();
    if (t < K_SUBS) {
        k_step2(t);
    }
    memoryBarrierShared();
    barrier();
    if (t < K_SUBS) {
        k_step3(t);
    }
    memoryBarrierShared();
    barrier();
}

// Step 4 for invocation t: the levels of its values x0 and x1.
void k_quants(vec4 x0, vec4 x1, uint first, uint t, out uvec4 q0, out uvec4 q1) {
    uint j = t / K_PER_SUB;
    uint e = first + 8u * t;
    q0 = uvec4(k_quant(x0.x, j, e), k_quant(x0.y, j, e + 1u), k_quant(x0.z, j, e + 2u),
               k_quant(x0.w, j, e + 3u));
    q1 = uvec4(k_quant(x1.x, j, e + 4u), k_quant(x1.y, j, e + 5u), k_quant(x1.z, j, e + 6u),
               k_quant(x1.w, j, e + 7u));
}
