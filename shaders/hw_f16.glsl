// f32 -> f16 by the hardware conversion, for the `_rte` variants. Included
// first (before common.glsl): it declares the execution mode RoundingModeRTE
// for 16-bit floats, which makes every conversion to f16 round to nearest
// even, as f16_bits (half's from_f32) does. The device must report
// shaderRoundingModeRTEFloat16 and have storageBuffer16BitAccess enabled;
// the self-test checks each such variant against the CPU before it is used.
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_spirv_intrinsics : require
spirv_execution_mode(capabilities = [4467], 4462, 16); // RoundingModeRTE, 16-bit

// The destination as f16 values, 4 at a time.
layout(std430, binding = 1) writeonly buffer DstH { f16vec4 dsth[]; };

// Whether the hardware conversion of y gives f16_bits exactly: no NaN (whose
// payload f16_bits keeps) and every magnitude zero or at least 2^-14 (a
// driver may flush f16 subnormals; f32 subnormal inputs may be flushed too).
bool hw_f16_exact(vec4 y) {
    uvec4 a = floatBitsToUint(y) & 0x7fffffffu;
    bvec4 zero = equal(a, uvec4(0u));
    bvec4 normal = greaterThanEqual(a, uvec4(0x38800000u));
    bvec4 not_nan = lessThanEqual(a, uvec4(0x7f800000u));
    return all(not_nan) && all(bvec4(zero.x || normal.x, zero.y || normal.y, zero.z || normal.z,
                                     zero.w || normal.w));
}
