//! AVX2 kernels (placeholder until written).
use crate::format::Format;
pub fn quantize_nearest(_format: Format, _src: &[f32], _dst: &mut [u8]) -> bool {
    false
}
pub fn dequantize(_format: Format, _src: &[u8], _dst: &mut [f32]) -> bool {
    false
}
