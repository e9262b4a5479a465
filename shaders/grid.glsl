// How the grid of a quantize/dequantize kernel is sized. The build
// (build_support/shaders.rs, `grid`) decides, per variant, the invocations
// per workgroup (LOCAL_SIZE) and the elements each invocation handles
// (PER_INVOCATION), passes both here and writes them into the variant table
// that sizes every dispatch. Each kernel states the elements its code
// handles with GRID_CHECK, so a table that disagrees fails the build.
#ifndef LOCAL_SIZE
#error "LOCAL_SIZE comes from the build (build_support/shaders.rs)"
#endif
#ifndef PER_INVOCATION
#error "PER_INVOCATION comes from the build (build_support/shaders.rs)"
#endif

// A compile-time check: an array of negative size fails the build.
#define STATIC_CHECK(name, condition) const uint name[(condition) ? 1 : -1] = uint[](0u)
// This kernel's code handles `n` elements per invocation.
#define GRID_CHECK(n) STATIC_CHECK(PER_INVOCATION_MATCHES, PER_INVOCATION == (n))
