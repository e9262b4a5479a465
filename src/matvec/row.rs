//! What a row kernel computes — sums[b] = Σ_c row[c]·x[b·cols + c] for each
//! of `batch` vectors — and its portable definition, which dequantizes 32
//! weights (a K-quant's 256) at a time with the format's dequantize kernel.

use crate::format::{Format, QK_K};

/// Most vectors one call multiplies.
pub const MAX_BATCH: usize = 8;

/// One sum per vector (the first `batch` are written).
pub type Sums = [f32; MAX_BATCH];

/// Elements processed per step: one block of the 32-element block formats.
const CHUNK: usize = 32;

/// The portable row kernel: dequantize 32 weights (or one block, when
/// larger) with `dequantize` (`format`'s, whole blocks), then a dot per vector.
pub fn portable(
    format: Format,
    dequantize: fn(&[u8], &mut [f32]),
    row: &[u8],
    cols: usize,
    x: &[f32],
    batch: usize,
    sums: &mut Sums,
) {
    sums.fill(0.0);
    let size = |n: usize| format.size_of(n).expect("whole blocks");
    let chunk = CHUNK.max(format.block_size());
    let mut buffer = [0.0f32; QK_K];
    let weights = &mut buffer[..chunk];
    let mut start = 0;
    while start < cols {
        // A multiple of 32 and, for block formats, whole blocks.
        let len = chunk.min(cols - start);
        dequantize(&row[size(start)..size(start + len)], &mut weights[..len]);
        for (b, sum) in sums.iter_mut().enumerate().take(batch) {
            let xs = &x[b * cols + start..b * cols + start + len];
            *sum += weights[..len]
                .iter()
                .zip(xs)
                .map(|(w, v)| w * v)
                .sum::<f32>();
        }
        start += len;
    }
}
