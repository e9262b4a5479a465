// Shared by matvec.comp, matvec_t.comp and matvec_dot.comp: bindings and
// push constants (matvec_push.glsl); W's rows are decoded by weights.glsl.
// FORMAT_* is set by the variant table. Binding 4 (x rounded to int8 by
// matvec_round.comp) is read by matvec_dot.comp's PRE_ROUNDED variant alone.

#define MAX_BATCH 8
#define MAX_ROWS 8

// Vectors per call (1..8) and, forward only, rows per workgroup (1..8): set
// when the pipeline is made, so the loops over them unroll into registers.
layout(constant_id = 0) const uint BATCH = 1u;
layout(constant_id = 1) const uint NUM_ROWS = 1u;

layout(std430, binding = 1) restrict readonly buffer X { float x[]; };
layout(std430, binding = 2) restrict readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) buffer Y { float y[]; };

#include "matvec_push.glsl"

#include "weights.glsl"

// Forward kernels: stores output r (of the workgroup's rows from row0) of
// vector b, plus the row's bias when there is one; rows past the dispatch
// are dropped.
void put(uint row0, uint r, uint b, float v) {
    if (row0 + r >= pc.rows) {
        return;
    }
    uint row = pc.row_first + row0 + r;
    if (pc.has_bias != 0u) {
        v += bias[row];
    }
    y[b * pc.total_rows + row] = v;
}
