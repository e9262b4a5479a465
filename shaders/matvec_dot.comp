#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_spirv_intrinsics : require
// y[b][row] = Σ_c W[row][c]·x[b][c] (+ bias[row]) for Q8_0, Q4_0, Q4_1,
// Q5_0 and IQ4_NL weights, with integer dot products of packed 8-bit values (the `_dot`
// variant; needs subgroup arithmetic with subgroups of 4 to 32 invocations
// and shaderIntegerDotProduct, checked on the Rust side).
//
// x is quantized inside the kernel (`_dot`), or once per product by
// matvec_round.comp before it (PRE_ROUNDED, `_dot_pre`), with the same
// code (round_x.glsl) and so the same bits. A workgroup of 128 invocations
// handles NUM_ROWS rows (1..32). Columns go in tiles of TILE_BLOCKS blocks
// of 32. `_dot`: the workgroup first rounds the tile of every vector to
// int8, one block of 32 values per invocation, with the block scale
// s = max|x|/127 (the CPU's integer path, src/matvec/mod.rs), into shared
// memory with each block's sum of the rounded values; then its rows consume
// the tile. `_dot_pre` reads the rounded blocks from binding 4 instead (no
// barrier, no rounding), in the same tiles, so that every sum is made in
// the same order as `_dot`'s and the results are the same bits. Invocations form 4
// row slots of 32 lanes: slot i takes rows i, i + 4, ... of the workgroup,
// lane l the blocks l, l + 32, ... of the tile, so that 32 neighbouring lanes
// read one row's neighbouring blocks and each word of W is loaded once and
// applied to every vector. Per block: the quants are loaded as 32-bit words,
// 4-bit ones split into two words of 4 values each with a mask and a shift
// (Q5_0's fifth bits or'ed in from qh; IQ4_NL's indices replaced by their
// levels' bytes), and multiplied with x's packed int8
// words by OpSDot (4 products and their sum per instruction, exact in
// int32); the block's sum is then scaled in f32: d·s·Σq·q_x for Q8_0 and
// IQ4_NL,
// d·s·(Σq·q_x − 8·Σq_x) for Q4_0, d·s·(Σq·q_x − 16·Σq_x) for Q5_0 and
// s·(d·Σq·q_x + m·Σq_x) for Q4_1.
//
// Error against an FP64 product of the dequantized weights: the f32 bound
// of the other variants, (n + 3)·2⁻²⁴·Σ|w·x|, plus x's rounding,
// Σ_blocks (s/2)·Σ|w| (half a step of x per weight): the CPU integer path's
// bound. A block of x with max|x| < 2⁻¹¹⁹ counts as zero (its scale would
// be subnormal, which GPUs flush): at most 2⁻¹¹⁹·Σ|w| more for that block.
// A block of x holding NaN or ±Inf is marked (scale −1) and multiplied in f32
// from x itself, so NaN and infinities propagate as IEEE arithmetic says.
//
// Rows are reduced with subgroupAdd, then through shared memory (the tile's
// space) across the subgroups of a row slot.

#define WG_SIZE 128u
layout(local_size_x = 128) in;

#include "matvec.glsl"

layout(std430, binding = 1) restrict readonly buffer X4 { vec4 x4[]; };

#include "round_x.glsl"

#if defined(PRE_ROUNDED)
// x rounded by matvec_round.comp: block k of vector b (j = b·blocks + k)
// has its 32 int8 values at xq[2j] and xq[2j + 1], and its (s, Σq_x) at
// xs[4·BATCH·blocks + j] (after every block's values).
layout(std430, binding = 4) restrict readonly buffer XQ { uvec4 xq[]; };
layout(std430, binding = 4) restrict readonly buffer XS { vec2 xs_blocks[]; };
#endif

// Row slots per workgroup (1, 2 or 4; chosen on the Rust side so that a slot
// keeps at most MAX_SLOT_ROWS rows and the partial sums fit the tile): slot i
// takes rows i, i + SLOTS, ... and its LANES lanes neighbouring blocks of
// them. Fewer slots make longer runs of one row's bytes per step (for DRAM),
// more slots fewer rows per lane (for registers). Subgroups of at most 32
// invocations never span two slots.
layout(constant_id = 2) const uint SLOTS = 4u;
const uint LANES = WG_SIZE / SLOTS;
#define MAX_SLOT_ROWS 8u
// Blocks of x in shared memory, all vectors together: 8 KiB of quants and
// 2 KiB of scales and sums (lavapipe allows 32 KiB).
#define TILE 256u

// Words per block that load_block gives: the quants, and Q5_0's qh last.
// IQ4_NL's indices are replaced by their levels' bytes as the block is
// loaded, so its words are Q8_0's and each batch vector reuses them.
#if defined(FORMAT_Q8_0) || defined(FORMAT_IQ4_NL)
#define QS_WORDS 8u
#elif defined(FORMAT_Q5_0)
#define QS_WORDS 5u
#define QH_WORD 4u
#include "fifth_bits.glsl"
#else
#define QS_WORDS 4u
#endif

// The stored level of weight q is q + LEVEL_OFFSET (Q4_0, Q5_0); Q8_0's and
// IQ4_NL's levels are signed bytes (IQ4_NL's looked up from its indices).
#if defined(FORMAT_Q4_0)
#define LEVEL_OFFSET 8
#elif defined(FORMAT_Q5_0)
#define LEVEL_OFFSET 16
#endif
#if defined(FORMAT_Q8_0) || defined(FORMAT_IQ4_NL)
#define SIGNED_LEVELS
#endif

// Rows each invocation accumulates, and blocks per vector in one tile.
const uint SLOT_ROWS = (NUM_ROWS + SLOTS - 1u) / SLOTS;
const uint TILE_BLOCKS = TILE / BATCH;

// Block j of vector b of the tile (`_dot`): its 32 int8 values at
// tile_q[2·(b·TILE_BLOCKS + j)] and the next, its (scale, sum of the values)
// at tile_s[b·TILE_BLOCKS + j]. After the last tile (both variants), tile_q
// holds the reduction's partial sums: NUM_ROWS × BATCH × (LANES / subgroup
// size) floats, which the Rust side keeps within its 2048.
shared uvec4 tile_q[2u * TILE];
#if !defined(PRE_ROUNDED)
shared vec2 tile_s[TILE];

// Rounds blocks k0 .. k0 + count - 1 of every vector of x into the tile,
// one block per invocation (round_x.glsl).
void quantize_tile(uint k0, uint count) {
    for (uint job = gl_LocalInvocationID.x; job < count * BATCH; job += WG_SIZE) {
        uint b = job / count;
        uint j = job % count;
        uint slot = b * TILE_BLOCKS + j;
        uvec4 lo;
        uvec4 hi;
        tile_s[slot] = round_x_block((b * pc.cols + (k0 + j) * 32u) / 4u, lo, hi);
        tile_q[2u * slot] = lo;
        tile_q[2u * slot + 1u] = hi;
    }
}
#endif

// Words of W covering a block that starts at an even halfword (the count
// for an odd one is the same for Q8_0, Q4_0 and Q5_0, one more for Q4_1).
#define BLOCK_WORDS ((BLOCK_HALVES + 1u) / 2u)

// The block starting at halfword h: its quants (after d, d and m for Q4_1,
// or d and qh for Q5_0, whose qh comes last in qs) and (d, m) (m = 0 but for
// Q4_1). Reads only the
// aligned words that hold the block, each once, and shifts by a halfword
// what starts mid-word.
void load_block(uint h, out uint qs[QS_WORDS], out vec2 dm) {
    uint i = h >> 1;
    bool odd = (h & 1u) != 0u;
    uint a[BLOCK_WORDS + 1u];
    for (uint j = 0u; j < BLOCK_WORDS; ++j) {
        a[j] = w[i + j];
    }
#if defined(FORMAT_Q4_1)
    // 10 halfwords: 6 words when the block starts mid-word.
    a[BLOCK_WORDS] = odd ? w[i + BLOCK_WORDS] : 0u;
#else
    a[BLOCK_WORDS] = 0u;
#endif
    // The 32 bits at halfword h + 2j, j = 0..BLOCK_WORDS - 1.
    uint b[BLOCK_WORDS];
    for (uint j = 0u; j < BLOCK_WORDS; ++j) {
        b[j] = odd ? (a[j] >> 16) | (a[j + 1u] << 16) : a[j];
    }
#if defined(FORMAT_Q4_1)
    dm = unpackHalf2x16(b[0]);
    for (uint j = 0u; j < QS_WORDS; ++j) {
        qs[j] = b[j + 1u];
    }
#elif defined(FORMAT_Q5_0)
    // qh one halfword after d, the quants three.
    dm = vec2(unpackHalf2x16(b[0]).x, 0.0);
    qs[QH_WORD] = (b[0] >> 16) | (b[1] << 16);
    for (uint j = 0u; j < QH_WORD; ++j) {
        qs[j] = (b[j + 1u] >> 16) | (b[j + 2u] << 16);
    }
#elif defined(FORMAT_IQ4_NL)
    // The indices start one halfword after d: elements 4j..4j+3 in the low
    // nibbles of word j, 16+4j.. in its high ones; each becomes its level's
    // byte, in Q8_0's order.
    dm = vec2(unpackHalf2x16(b[0]).x, 0.0);
    for (uint j = 0u; j < 4u; ++j) {
        uint n = (b[j] >> 16) | (b[j + 1u] << 16);
        qs[j] = iq4_nl_level_bytes(n & 0x0f0f0f0fu);
        qs[4u + j] = iq4_nl_level_bytes((n >> 4) & 0x0f0f0f0fu);
    }
#else
    // The quants start one halfword after d.
    dm = vec2(unpackHalf2x16(b[0]).x, 0.0);
    for (uint j = 0u; j < QS_WORDS; ++j) {
        qs[j] = (b[j] >> 16) | (b[j + 1u] << 16);
    }
#endif
}

// Weight e (0..31) of a block: the CPU's dequantization.
float weight(uint qs[QS_WORDS], vec2 dm, uint e) {
#if defined(FORMAT_Q8_0) || defined(FORMAT_IQ4_NL)
    return dm.x * float(int(qs[e / 4u] << (24u - 8u * (e % 4u))) >> 24);
#else
    uint byte = qs[(e % 16u) / 4u] >> (8u * (e % 4u));
    uint q = (e < 16u ? byte : byte >> 4) & 15u;
#if defined(FORMAT_Q5_0)
    q |= ((qs[QH_WORD] >> e) & 1u) << 4;
#endif
#if defined(LEVEL_OFFSET)
    return dm.x * float(int(q) - LEVEL_OFFSET);
#else
    return dm.x * float(q) + dm.y;
#endif
#endif
}

// Σ w·x in f32 over block k of vector b, x read from the binding: for
// blocks of x with NaN or ±Inf.
float block_dot_f32(uint qs[QS_WORDS], vec2 dm, uint b, uint k) {
    uint at = (b * pc.cols + k * 32u) / 4u;
    float sum = 0.0;
    for (uint i = 0u; i < 8u; ++i) {
        vec4 xv = x4[at + i];
        for (uint c = 0u; c < 4u; ++c) {
            sum = fma(weight(qs, dm, 4u * i + c), xv[c], sum);
        }
    }
    return sum;
}

// Σ q_w·q_x of one block, exact: xq are x's 32 int8 values, in order.
int block_dot_int(uint qs[QS_WORDS], uvec4 xlo, uvec4 xhi) {
    int sum = 0;
#if defined(FORMAT_Q8_0) || defined(FORMAT_IQ4_NL)
    // IQ4_NL's words hold its levels' bytes (load_block).
    for (uint j = 0u; j < 4u; ++j) {
        sum += sdot4x8(int(qs[j]), int(xlo[j]), 0);
        sum += sdot4x8(int(qs[4u + j]), int(xhi[j]), 0);
    }
#elif defined(FORMAT_Q5_0)
    // As the 4-bit formats', with each byte's fifth bit from qh; values
    // 0..31 are the same as signed bytes.
    for (uint j = 0u; j < 4u; ++j) {
        uint lo = (qs[j] & 0x0f0f0f0fu) | fifth_bytes(qs[QH_WORD] >> (4u * j));
        uint hi = ((qs[j] >> 4) & 0x0f0f0f0fu) | fifth_bytes(qs[QH_WORD] >> (16u + 4u * j));
        sum += sdot4x8(int(lo), int(xlo[j]), 0);
        sum += sdot4x8(int(hi), int(xhi[j]), 0);
    }
#else
    // Word j of the quants: elements 4j..4j+3 in its low nibbles, 16+4j..
    // 19+4j in its high ones; values 0..15 are the same as signed bytes.
    for (uint j = 0u; j < 4u; ++j) {
        sum += sdot4x8(int(qs[j] & 0x0f0f0f0fu), int(xlo[j]), 0);
        sum += sdot4x8(int((qs[j] >> 4) & 0x0f0f0f0fu), int(xhi[j]), 0);
    }
#endif
    return sum;
}

// acc += the block's Σ w·x from its integer dot product; `xs` is (s, Σq_x).
float add_block(float acc, int dot, vec2 dm, vec2 xs) {
#if defined(SIGNED_LEVELS)
    return fma(dm.x * float(dot), xs.x, acc);
#elif defined(LEVEL_OFFSET)
    return fma(dm.x * float(dot - LEVEL_OFFSET * int(xs.y)), xs.x, acc);
#else
    return fma(fma(dm.x, float(dot), dm.y * xs.y), xs.x, acc);
#endif
}

void main() {
    uint row0 = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * NUM_ROWS;
    if (row0 >= pc.rows) {
        return;
    }
    // Slot and lane from the subgroup's numbering, so that a subgroup (of at
    // most 32 invocations) lies inside one slot whatever order the device
    // gives invocations; the 128 invocations form whole subgroups (a power
    // of 2 from 4 to 32), as on every driver measured.
    uint linear = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
    uint slot = linear / LANES;
    uint lane = linear % LANES;
    float acc[MAX_SLOT_ROWS][MAX_BATCH];
    for (uint i = 0u; i < MAX_SLOT_ROWS; ++i) {
        for (uint b = 0u; b < MAX_BATCH; ++b) {
            acc[i][b] = 0.0;
        }
    }
    uint blocks = pc.cols / 32u;
    for (uint k0 = 0u; k0 < blocks; k0 += TILE_BLOCKS) {
        uint count = min(TILE_BLOCKS, blocks - k0);
#if !defined(PRE_ROUNDED)
        barrier();
        quantize_tile(k0, count);
        barrier();
#endif
        for (uint j = lane; j < count; j += LANES) {
            uint k = k0 + j;
            // Every row's block first, so their loads are in flight together.
            uint qs[MAX_SLOT_ROWS][QS_WORDS];
            vec2 dm[MAX_SLOT_ROWS];
            for (uint i = 0u; i < SLOT_ROWS; ++i) {
                uint r = slot + SLOTS * i;
                if (r < NUM_ROWS && row0 + r < pc.rows) {
                    load_block(row_base(row0 + r) + k * BLOCK_HALVES, qs[i], dm[i]);
                } else {
                    for (uint c = 0u; c < QS_WORDS; ++c) {
                        qs[i][c] = 0u;
                    }
                    dm[i] = vec2(0.0);
                }
            }
            for (uint b = 0u; b < BATCH; ++b) {
#if defined(PRE_ROUNDED)
                uint at = b * blocks + k;
                vec2 xs = xs_blocks[4u * BATCH * blocks + at];
                uvec4 xlo = xq[2u * at];
                uvec4 xhi = xq[2u * at + 1u];
#else
                uint at = b * TILE_BLOCKS + j;
                vec2 xs = tile_s[at];
                uvec4 xlo = tile_q[2u * at];
                uvec4 xhi = tile_q[2u * at + 1u];
#endif
                if (xs.x == NON_FINITE_BLOCK) {
                    for (uint i = 0u; i < SLOT_ROWS; ++i) {
                        acc[i][b] += block_dot_f32(qs[i], dm[i], b, k);
                    }
                    continue;
                }
                for (uint i = 0u; i < SLOT_ROWS; ++i) {
                    acc[i][b] = add_block(acc[i][b], block_dot_int(qs[i], xlo, xhi), dm[i], xs);
                }
            }
        }
    }
    // Reduction: each subgroup's sum per output, then the sums of the
    // subgroups of a slot, in tile_q (as float bits).
    uint parts = LANES / gl_SubgroupSize;
    uint part = lane / gl_SubgroupSize;
    barrier();
    for (uint i = 0u; i < SLOT_ROWS; ++i) {
        uint r = slot + SLOTS * i;
        for (uint b = 0u; b < BATCH; ++b) {
            float v = subgroupAdd(acc[i][b]);
            if (subgroupElect() && r < NUM_ROWS) {
                uint p = (r * BATCH + b) * parts + part;
                tile_q[p / 4u][p % 4u] = floatBitsToUint(v);
            }
        }
    }
    barrier();
    for (uint o = gl_LocalInvocationID.x; o < NUM_ROWS * BATCH; o += WG_SIZE) {
        float sum = 0.0;
        for (uint p = o * parts; p < (o + 1u) * parts; ++p) {
            sum += uintBitsToFloat(tile_q[p / 4u][p % 4u]);
        }
        put(row0, o / BATCH, o % BATCH, sum);
    }
}
