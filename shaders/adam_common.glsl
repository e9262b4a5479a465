// The Adam family (src/vk/family.rs `Family::Adam`): bindings, push
// constants, the control words, and one element's update in the order of
// crate::train::adam_math (the CPU twin), on two paths:
//
// - `adam_update_soft`: every operation on the bits (softfloat.glsl), exact
//   on any device;
// - `adam_update_fast` (the `_rte` variants, which declare
//   round-to-nearest-even for f32): products and sums by the floating-point
//   unit, each checked to be one where the unit's result is the IEEE one (no
//   subnormal operand or result); division and square root always on the
//   bits. An element that fails a check is redone on the soft path.

#extension GL_GOOGLE_include_directive : require
#include "grid.glsl"
#include "softfloat.glsl"
layout(local_size_x = LOCAL_SIZE) in;

#ifdef RTE_F32
#extension GL_EXT_spirv_intrinsics : require
spirv_execution_mode(capabilities = [4467], 4462, 32); // RoundingModeRTE, 32-bit
#endif
#ifdef DENORM_PRESERVE
spirv_execution_mode(capabilities = [4464], 4459, 32); // DenormPreserve, 32-bit
#define PLAIN_OPS
#endif

// Binding 0: the trainer's f32 master weights (read and written); binding 1:
// its gradients; binding 2: the optimizer's control words; binding 3: this
// dispatch's chunk of the optimizer state. adam_count.comp binds the found
// flag at 0 instead.
layout(std430, binding = 0) buffer Params { uint params[]; };
layout(std430, binding = 1) readonly buffer Grads { uint grads[]; };
layout(std430, binding = 2) buffer Control { uint control[]; };
layout(std430, binding = 3) buffer State { uint state[]; };

// The control words (src/vk/adam.rs writes the tables at creation).
const uint CONTROL_STEPS = 0u;  // steps applied (t of the last one)
const uint CONTROL_K1 = 1u;     // 1 / (1 - beta1^t), f32 bits
const uint CONTROL_R2 = 2u;     // 1 / sqrt(1 - beta2^t), f32 bits
const uint CONTROL_APPLY = 3u;  // 1: this step applies; 0: it is skipped
const uint CONTROL_FMA_PROBE = 4u; // 2 f32: 1 + 2^-12 and -(1 + 2^-11)
const uint SIGNED_TABLE = 64u;  // 256 f32: the first moment's decode table
const uint UNSIGNED_TABLE = 320u; // 256 f32: the second moment's
const uint SIGNED_BOUNDS = 576u;  // 130 f32: the first moment's codes' boundaries
const uint UNSIGNED_BOUNDS = 706u; // 257 f32: the second moment's

// Rust twin: src/vk/family.rs `AdamPush` (sizes checked by the build).
layout(push_constant) uniform Push {
    uint n_elements;      // elements of this dispatch
    uint lr;              // f32 bits, as are the next six
    uint beta1;
    uint one_minus_beta1;
    uint beta2;
    uint one_minus_beta2;
    uint eps;
    uint weight_decay;
    uint use_found;       // adam_count: 1 reads the found flag, 0 always applies
    uint m_at;            // word of the state binding where m (or its codes) starts
    uint v_at;
    uint m_scale_at;      // 8-bit state: the per-block scales
    uint v_scale_at;
} pc;

// This invocation's element in the 2-D grid.
uint element_index() {
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
}

// The per-step scalars (crate::train::adam_math::StepScalars), as bits.
struct Scalars {
    uint lr, beta1, omb1, beta2, omb2, eps, wd, k1, r2;
};

Scalars step_scalars() {
    Scalars s;
    s.lr = pc.lr;
    s.beta1 = pc.beta1;
    s.omb1 = pc.one_minus_beta1;
    s.beta2 = pc.beta2;
    s.omb2 = pc.one_minus_beta2;
    s.eps = pc.eps;
    s.wd = pc.weight_decay;
    s.k1 = control[CONTROL_K1];
    s.r2 = control[CONTROL_R2];
    return s;
}

bool is_subnormal(uint a) {
    return (a & 0x7f800000u) == 0u && (a & 0x7fffffu) != 0u;
}

// (p, g, m, v) -> (p', m', v') as bits, every operation on the bits.
uvec3 adam_update_soft(Scalars s, uint p, uint g, uint m, uint v) {
    uint mn = sf_add(sf_mul(s.beta1, m), sf_mul(s.omb1, g));
    uint vn = sf_add(sf_mul(s.beta2, v), sf_mul(sf_mul(s.omb2, g), g));
    uint u = sf_div(mn, sf_add(sf_mul(sf_sqrt(vn), s.r2), s.eps));
    uint step = sf_mul(s.lr, sf_add(sf_mul(s.k1, u), sf_mul(s.wd, p)));
    return uvec3(sf_add(p, step ^ 0x80000000u), mn, vn);
}

#ifdef RTE_F32
// x * y by the floating-point unit; `exact` stays true only where that is
// the IEEE product: an operand is zero (bits), or the result is at least
// 2^-125 in magnitude (so no operand was a subnormal read as zero and no
// result was flushed or rounded at the subnormal scale).
float fast_mul(float x, float y, inout bool exact) {
    precise float r = x * y;
    uint zero = min(floatBitsToUint(x) << 1, floatBitsToUint(y) << 1);
    exact = exact && ((floatBitsToUint(r) & 0x7fffffffu) >= 0x01000000u || zero == 0u);
    return r;
}

// x + y by the floating-point unit, for operands that are not subnormal;
// `exact` stays true where the result is not a subnormal (flushed or not)
// that the IEEE sum would have kept.
float fast_add(float x, float y, inout bool exact) {
    precise float r = x + y;
    exact = exact && ((floatBitsToUint(r) & 0x7f800000u) != 0u || x == -y);
    return r;
}

// adam_update_soft's result by the fast path, or the soft path where a
// check fails. `scalars_normal`: no scalar is a subnormal.
uvec3 adam_update(Scalars s, bool scalars_normal, uint p, uint g, uint m, uint v) {
    bool exact = scalars_normal && !is_subnormal(p);
    float fp = uintBitsToFloat(p), fg = uintBitsToFloat(g);
    float mn = fast_add(fast_mul(uintBitsToFloat(s.beta1), uintBitsToFloat(m), exact),
                        fast_mul(uintBitsToFloat(s.omb1), fg, exact), exact);
    float vn = fast_add(fast_mul(uintBitsToFloat(s.beta2), uintBitsToFloat(v), exact),
                        fast_mul(fast_mul(uintBitsToFloat(s.omb2), fg, exact), fg, exact), exact);
    float root = uintBitsToFloat(sf_sqrt(floatBitsToUint(vn)));
    float denom = fast_add(fast_mul(root, uintBitsToFloat(s.r2), exact), uintBitsToFloat(s.eps), exact);
    float u = uintBitsToFloat(sf_div(floatBitsToUint(mn), floatBitsToUint(denom)));
    float step = fast_mul(uintBitsToFloat(s.lr),
                          fast_add(fast_mul(uintBitsToFloat(s.k1), u, exact),
                                   fast_mul(uintBitsToFloat(s.wd), fp, exact), exact),
                          exact);
    float pn = fast_add(fp, -step, exact);
    if (exact) {
        return uvec3(floatBitsToUint(pn), floatBitsToUint(mn), floatBitsToUint(vn));
    }
    return adam_update_soft(s, p, g, m, v);
}

// The biased exponent field of `a`, and its significand with the implicit
// bit (of a normal `a`).
uint exponent_field(uint a) {
    return (a >> 23) & 0xffu;
}

uint significand(uint a) {
    return (a & 0x7fffffu) | 0x800000u;
}

#ifdef SKEWED_UNIT
// The test kernels' unit: a normal result moved by `units` in the last
// place (no zero made a NaN, which a driver may assume never happens).
float skewed(float v, uint units) {
    uint bits = floatBitsToUint(v);
    return exponent_field(bits) - 1u < 253u ? uintBitsToFloat(bits + units) : v;
}
#endif

#ifdef PROBE
// The measurement twin's record of why an element was redone on the bits.
uint probe = 0u;
#endif

#ifdef FMA_CHECK
// Division and square root checked by residuals from fma, which must round
// once: Vulkan does not promise it, so each check also asks
// fma_rounds_once (where it does not, every element is redone on the
// bits). |x| * 2^(e - 127 - below) for the biased exponent e of a result
// (below 23: its unit in the last place times |x|; 24: half of that),
// exact where normal; 0 where the scaling leaves the normal range (no check
// can then pass).
float times_unit(float x, uint result, int below) {
    int e = int(exponent_field(result)) - below;
    precise float scaled = abs(x) * uintBitsToFloat(uint(max(e, 1)) << 23);
    uint bits = floatBitsToUint(scaled);
    return e >= 1 && exponent_field(bits) - 1u < 254u ? scaled : 0.0;
}

// Whether this device's fma rounds once (the probe words of the control
// buffer, which the compiler cannot fold): 2^-24, where rounding twice
// gives 0.
bool fma_probe_passes() {
    float x = uintBitsToFloat(control[CONTROL_FMA_PROBE]);
    precise float probe = fma(x, x, uintBitsToFloat(control[CONTROL_FMA_PROBE + 1u]));
    return probe == 5.9604644775390625e-8;
}

#ifdef FMA_PROBE_ONCE
// The probe's answer, asked once per invocation (hoist_fma_probe, first in
// main; adam.comp and adam_q8_wide.comp): the control buffer may alias the
// weights, so a compiler could not keep the probe's loads across the stores
// between two checks. (The H100 ran adam_q8_lanes.comp slower so.)
bool fma_once = false;

void hoist_fma_probe() {
    fma_once = fma_probe_passes();
}

bool fma_rounds_once() {
    return fma_once;
}
#else
bool fma_rounds_once() {
    return fma_probe_passes();
}
#endif

// a / b by the floating-point unit, one correction q + r / b from the fma
// residual r = a - qb; `exact` stays true only where the residual of the
// corrected quotient is below half its unit times |b| (within half a unit
// of the exact quotient; quotients never tie), the operands and quotient
// normal and finite and the quotient's significand not a power of two.
uint checked_div(uint a, uint b, inout bool exact) {
    float fa = uintBitsToFloat(a), fb = uintBitsToFloat(b);
#ifdef RAW_UNIT
    return floatBitsToUint(fa / fb);
#endif
    precise float q = fa / fb;
#ifdef SKEWED_UNIT
    q = skewed(q, (a ^ b) % 5u - 2u);
#endif
    precise float r = fma(-q, fb, fa);
    precise float q1 = fma(r, 1.0 / fb, q);
    exact = exact && fma_rounds_once();
    uint bits = floatBitsToUint(q1);
#ifdef SKEWED_UNIT
    q1 = skewed(q1, a % 3u - 1u);
    bits = floatBitsToUint(q1);
#endif
    precise float r1 = fma(-q1, fb, fa);
    float half_unit = times_unit(fb, bits, 24);
    exact = exact && exponent_field(a) - 1u < 254u && exponent_field(b) - 1u < 254u &&
            exponent_field(bits) - 1u < 254u && (bits & 0x7fffffu) != 0u &&
            ((bits ^ a ^ b) & 0x80000000u) == 0u && abs(r1) < half_unit;
    return bits;
}

// sqrt(x) by the floating-point unit, one correction s + r / 2s from the
// fma residual r = x - s^2; `exact` stays true only where the residual of
// the corrected root is below its unit times s (then the exact root is
// within half a unit: x - s^2 is a whole multiple of the unit squared;
// roots never tie), x and the root positive, normal and finite and the
// root's significand not a power of two.
uint checked_sqrt(uint x, inout bool exact) {
    float fx = uintBitsToFloat(x);
#ifdef RAW_UNIT
    return floatBitsToUint(sqrt(fx));
#endif
    precise float s0 = sqrt(fx);
#ifdef SKEWED_UNIT
    s0 = skewed(s0, x % 5u - 2u);
#endif
    precise float r = fma(-s0, s0, fx);
    precise float s1 = fma(r, 0.5 / s0, s0);
    exact = exact && fma_rounds_once();
    uint bits = floatBitsToUint(s1);
#ifdef SKEWED_UNIT
    s1 = skewed(s1, x % 3u - 1u);
    bits = floatBitsToUint(s1);
#endif
    precise float r1 = fma(-s1, s1, fx);
    float unit_times_root = times_unit(s1, bits, 23);
    exact = exact && (x & 0x80000000u) == 0u && exponent_field(x) - 1u < 254u &&
            (bits & 0x80000000u) == 0u && exponent_field(bits) - 1u < 254u &&
            (bits & 0x7fffffu) != 0u && abs(r1) < unit_times_root;
    return bits;
}
#else
// The units in the last place an FPU result is off by, from the exact
// 64-bit remainder (hi, lo) of the result against the operands and `unit`,
// the remainder's size per unit: the whole number nearest to the remainder
// over `unit`, at most 4 either way (the caller checks the corrected
// result). `small`: the remainder fits 32 bits (else it is far off).
int units_off(uint hi, uint lo, uint unit, out bool small) {
    small = hi + (lo >> 31) == 0u;
    int nearest = int(round(float(int(lo)) / float(unit)));
#ifdef SKEWED_UNIT
    // The test kernels: a count off by one two times in three, for the
    // check of the corrected result to catch.
    nearest += int(lo % 3u) - 1;
#endif
    return clamp(nearest, -4, 4);
}

// a / b by the floating-point unit (any accuracy), corrected to the IEEE
// quotient where it is a few units off; `exact` stays true only where the
// result is the IEEE quotient: operands and quotient normal and finite and,
// with significands A, B, Q and d = Ea - Eb - Eq + 150 (A * 2^d is Q * B for
// the exact quotient), D = 2A * 2^d - 2QB is 2B times the units the exact
// quotient lies above Q. Q + delta, delta the nearest whole number to D /
// 2B, is the rounded quotient where |D - 2B delta| < B (within half a unit;
// quotients never tie) and it stays inside its binade, off its power of two
// (whose lower neighbour is nearer).
uint checked_div(uint a, uint b, inout bool exact) {
    precise float quotient = uintBitsToFloat(a) / uintBitsToFloat(b);
    uint q = floatBitsToUint(quotient);
#ifdef SKEWED_UNIT
    // The test kernels' unit: quotients off by up to two units in the last
    // place, for the correction to mend.
    q += (a ^ b) % 5u - 2u;
#endif
    uint ea = exponent_field(a), eb = exponent_field(b), eq = exponent_field(q);
    int d = int(ea) - int(eb) - int(eq) + 150;
    bool ok = ea - 1u < 254u && eb - 1u < 254u && eq - 1u < 254u &&
              ((q ^ a ^ b) & 0x80000000u) == 0u && (d == 23 || d == 24);
    uint shift = ok ? uint(d + 1) : 24u;
    uint big_b = significand(b);
    uint nhi = significand(a) >> (32u - shift), nlo = significand(a) << shift;
    uint mhi, mlo, borrow;
    umulExtended(significand(q), big_b << 1, mhi, mlo);
    uint dlo = usubBorrow(nlo, mlo, borrow);
    bool small;
    int delta = units_off(nhi - mhi - borrow, dlo, big_b << 1, small);
    int rest = int(dlo) - int(big_b << 1) * delta;
    uint corrected = significand(q) + uint(delta);
#ifdef PROBE
    probe |= (ok ? 0u : 1u) | (small ? 0u : 2u) | (abs(rest) < int(big_b) ? 0u : 4u) |
             (corrected > 0x800000u && corrected < 0x1000000u ? 0u : 8u) |
             (uint(delta + 4) << 24);
#endif
    exact = exact && ok && small && abs(rest) < int(big_b) && corrected > 0x800000u &&
            corrected < 0x1000000u;
    return q + uint(delta);
}

// sqrt(x) by the floating-point unit (any accuracy), corrected to the IEEE
// root where it is a few units off; `exact` stays true only where the
// result is the IEEE root: x and the root positive, normal and finite and,
// with significands X, S and k = Ex + 150 - 2 Es (X * 2^k is S^2 for the
// exact root), D = X * 2^k - S^2 (about 2S times the units the exact root
// lies above S). S' = S + delta, delta the nearest whole number to D / 2S,
// is the rounded root where -S' < X * 2^k - S'^2 <= S' (within half a unit:
// X * 2^k is a whole number; roots never tie) and S' stays inside its
// binade, off its power of two.
uint checked_sqrt(uint x, inout bool exact) {
    precise float root = sqrt(uintBitsToFloat(x));
    uint s = floatBitsToUint(root);
#ifdef SKEWED_UNIT
    s += x % 5u - 2u;
#endif
    uint ex = exponent_field(x), es = exponent_field(s);
    int k = int(ex) + 150 - 2 * int(es);
    bool ok = (x & 0x80000000u) == 0u && (s & 0x80000000u) == 0u && ex - 1u < 254u &&
              es - 1u < 254u && (k == 23 || k == 24);
    uint shift = ok ? uint(k) : 23u;
    uint big_s = significand(s);
    uint nhi = significand(x) >> (32u - shift), nlo = significand(x) << shift;
    uint shi, slo, borrow;
    umulExtended(big_s, big_s, shi, slo);
    uint dlo = usubBorrow(nlo, slo, borrow);
    bool small;
    int delta = units_off(nhi - shi - borrow, dlo, big_s << 1, small);
    int corrected = int(big_s) + delta;
    int rest = int(dlo) - int(big_s << 1) * delta - delta * delta;
#ifdef PROBE
    probe |= (ok ? 0u : 16u) | (small ? 0u : 32u) | (-corrected < rest && rest <= corrected ? 0u : 64u) |
             (corrected > 0x800000 && corrected < 0x1000000 ? 0u : 128u) | (uint(delta + 4) << 28);
#endif
    exact = exact && ok && small && -corrected < rest && rest <= corrected &&
            corrected > 0x800000 && corrected < 0x1000000;
    return s + uint(delta);
}

#endif

#ifdef PLAIN_OPS
// With subnormals preserved (`_dp`), the unit's products and sums are the
// IEEE ones (round-to-nearest-even declared too): nothing to check.
float checked_mul(float x, float y, inout bool exact) {
    precise float r = x * y;
    return r;
}

float checked_add(float x, float y, inout bool exact) {
    precise float r = x + y;
    return r;
}

bool operands_exact(bool scalars_normal, uint p) {
    return true;
}
#else
float checked_mul(float x, float y, inout bool exact) {
    return fast_mul(x, y, exact);
}

float checked_add(float x, float y, inout bool exact) {
    return fast_add(x, y, exact);
}

// No subnormal scalar or weight meets the unit (which may flush it).
bool operands_exact(bool scalars_normal, uint p) {
    return scalars_normal && !is_subnormal(p);
}
#endif

// adam_update_soft's result with every operation by the floating-point
// unit, products and sums checked (checked_mul, checked_add), division and
// square root checked and corrected (checked_div, checked_sqrt); `exact`
// false where a check fails (the result is then to be discarded).
uvec3 adam_update_checked(Scalars s, bool scalars_normal, uint p, uint g, uint m, uint v,
                          out bool exact) {
    exact = operands_exact(scalars_normal, p);
    float fp = uintBitsToFloat(p), fg = uintBitsToFloat(g);
    float mn = checked_add(checked_mul(uintBitsToFloat(s.beta1), uintBitsToFloat(m), exact),
                           checked_mul(uintBitsToFloat(s.omb1), fg, exact), exact);
    float vn = checked_add(
        checked_mul(uintBitsToFloat(s.beta2), uintBitsToFloat(v), exact),
        checked_mul(checked_mul(uintBitsToFloat(s.omb2), fg, exact), fg, exact), exact);
    uint vb = floatBitsToUint(vn);
    uint root = (vb << 1) == 0u ? vb : checked_sqrt(vb, exact);
    float denom = checked_add(checked_mul(uintBitsToFloat(root), uintBitsToFloat(s.r2), exact),
                              uintBitsToFloat(s.eps), exact);
    uint mb = floatBitsToUint(mn), db = floatBitsToUint(denom);
    uint u;
    if ((mb << 1) == 0u) {
        // A zero over a normal finite denominator: the zero, signed.
        exact = exact && exponent_field(db) - 1u < 254u;
        u = (mb ^ db) & 0x80000000u;
    } else {
        u = checked_div(mb, db, exact);
    }
    float step = checked_mul(
        uintBitsToFloat(s.lr),
        checked_add(checked_mul(uintBitsToFloat(s.k1), uintBitsToFloat(u), exact),
                    checked_mul(uintBitsToFloat(s.wd), fp, exact), exact),
        exact);
    float pn = checked_add(fp, -step, exact);
    return uvec3(floatBitsToUint(pn), mb, vb);
}

// The square root on the bits: by the floating-point unit where checked
// exact, else sf_sqrt.
uint sqrt_bits(uint x) {
    bool exact = true;
    uint s = checked_sqrt(x, exact);
    return exact ? s : sf_sqrt(x);
}

// 1 / x on the bits: by the floating-point unit where checked exact, else
// sf_div.
uint inverse_bits(uint x) {
    bool exact = true;
    uint q = checked_div(0x3f800000u, x, exact);
    return exact ? q : sf_div(0x3f800000u, x);
}

bool scalars_are_normal(Scalars s) {
    return !(is_subnormal(s.lr) || is_subnormal(s.beta1) || is_subnormal(s.omb1) ||
             is_subnormal(s.beta2) || is_subnormal(s.omb2) || is_subnormal(s.eps) ||
             is_subnormal(s.wd) || is_subnormal(s.k1) || is_subnormal(s.r2));
}

uint mul_bits(uint x, uint y) {
    bool exact = true;
    float r = checked_mul(uintBitsToFloat(x), uintBitsToFloat(y), exact);
    return exact ? floatBitsToUint(r) : sf_mul(x, y);
}
#else
uvec3 adam_update(Scalars s, bool scalars_normal, uint p, uint g, uint m, uint v) {
    return adam_update_soft(s, p, g, m, v);
}

bool scalars_are_normal(Scalars s) {
    return false;
}

uint mul_bits(uint x, uint y) {
    return sf_mul(x, y);
}
#endif
