//! Products of a batch of tokens with quantized weights, for training: Y =
//! X·Wᵀ (+ bias) for a layer's forward pass and dX = dY·W for its backward
//! pass, with any number of tokens.
//!
//! W is `[rows, cols]` as for [`super::matvec`]; X is `[tokens, cols]` and Y
//! `[tokens, rows]`, row-major (token t's values at `t·cols` and `t·rows`);
//! the backward pass reads dY `[tokens, rows]` and writes dX `[tokens, cols]`.
//!
//! W is dequantized to f32 once per panel of outputs (rows of W forward; its
//! columns backward, transposed into rows) and per chunk of up to
//! [`TOKEN_CHUNK`] tokens; each panel is then multiplied with the chunk's
//! tokens in f32 fused multiply-adds (tiles of 3 outputs × 4 tokens with
//! AVX2 + FMA where the CPU has them and the sum's length is a multiple of
//! 8, else a portable loop). Dequantizing is exact, so against an FP64
//! product of the dequantized weights `|y − y_ref| ≤ (n + 3)·2⁻²⁴·Σ|w·x|`
//! with n the length of the sum (cols forward, rows backward): the bound of
//! the matvec's f32 path. The matvec's integer path (x rounded to 8 bits) is
//! not used. The bias adds one rounding of its sum. NaN and ±Inf in X
//! propagate as IEEE arithmetic says.
//!
//! The context's threads take disjoint panels of outputs; each writes its
//! outputs for a chunk of tokens into a buffer of its own, which is then
//! copied into Y, so threads never change the result.

use super::{MIN_WEIGHTS_PER_THREAD, check_len, check_matrix};
use crate::alloc;
use crate::error::{Error, Result};
use crate::format::Format;
use crate::quant;
use std::ops::Range;

/// Tokens whose products share one dequantization of W.
pub const TOKEN_CHUNK: usize = 256;
/// Floats of one dequantized panel (128 KiB: it stays in L2 while a chunk's
/// tokens pass over it).
const PANEL_FLOATS: usize = 1 << 15;
/// Most outputs in one panel.
const MAX_PANEL_OUTPUTS: usize = 64;

/// Y[t][r] = Σ_c X[t][c]·W[r][c] (+ bias[r]) for t < tokens.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    format: Format,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    tokens: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    let row_bytes = check_matrix("matmul", format, w, rows, cols)?;
    check_len("x", x.len(), floats(tokens, cols)?, false)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), rows, false)?;
    }
    check_len("y", y.len(), floats(tokens, rows)?, true)?;
    let shape = Shape {
        outputs: rows,
        k: cols,
        granule: 1,
    };
    let dequantize_rows = |range: Range<usize>, panel: &mut [f32]| {
        let bytes = &w[range.start * row_bytes..range.end * row_bytes];
        quant::dequantize(format, bytes, panel, 1)
    };
    product(shape, dequantize_rows, x, tokens, bias, y, threads)
}

/// dX[t][c] = Σ_r dY[t][r]·W[r][c] for t < tokens (the backward pass).
#[allow(clippy::too_many_arguments)]
pub fn matmul_transposed(
    format: Format,
    w: &[u8],
    rows: usize,
    cols: usize,
    dy: &[f32],
    tokens: usize,
    dx: &mut [f32],
    threads: usize,
) -> Result<()> {
    let row_bytes = check_matrix("matmul", format, w, rows, cols)?;
    check_len("dy", dy.len(), floats(tokens, rows)?, false)?;
    check_len("dx", dx.len(), floats(tokens, cols)?, true)?;
    let shape = Shape {
        outputs: cols,
        k: rows,
        // Panels of whole blocks, so each row's part of a panel is whole
        // blocks too.
        granule: format.block_size(),
    };
    let size = |n: usize| format.size_of(n).expect("whole blocks of a checked row");
    let dequantize_columns = |range: Range<usize>, panel: &mut [f32]| {
        let width = range.len();
        let (from, to) = (size(range.start), size(range.end));
        // A K-quant's panel is one super-block (256) wide, past MAX_PANEL_OUTPUTS.
        let mut segment = alloc::filled(width, 0.0f32, "matmul panel segment")?;
        for r in 0..rows {
            let row = &w[r * row_bytes..(r + 1) * row_bytes];
            quant::dequantize(format, &row[from..to], &mut segment[..width], 1)?;
            for (i, v) in segment[..width].iter().enumerate() {
                panel[i * rows + r] = *v;
            }
        }
        Ok(())
    };
    product(shape, dequantize_columns, dy, tokens, None, dx, threads)
}

/// `n` floats per token, or a size overflow.
fn floats(tokens: usize, n: usize) -> Result<usize> {
    if tokens == 0 {
        return Err(Error::invalid("matmul: tokens is 0: nothing to multiply"));
    }
    tokens
        .checked_mul(n)
        .ok_or_else(|| Error::overflow("matmul tokens"))
}

/// A product's outputs per token, the length of each output's sum, and the
/// count panels of outputs are made of (whole blocks of W's columns).
#[derive(Debug, Clone, Copy)]
struct Shape {
    outputs: usize,
    k: usize,
    granule: usize,
}

impl Shape {
    /// Outputs per panel: about [`PANEL_FLOATS`] of f32, whole granules.
    fn panel_outputs(&self) -> usize {
        let fit = (PANEL_FLOATS / self.k).clamp(1, MAX_PANEL_OUTPUTS);
        (fit / self.granule).max(1) * self.granule
    }
}

/// out[t·stride + o] = Σ_i panel[o·k + i]·x[t·k + i] for o < outputs, t < tokens.
fn panel_dots(
    panel: &[f32],
    outputs: usize,
    k: usize,
    x: &[f32],
    tokens: usize,
    out: &mut [f32],
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_x86::panel_dots(panel, outputs, k, x, tokens, out, stride) {
        return;
    }
    for t in 0..tokens {
        let xs = &x[t * k..(t + 1) * k];
        for o in 0..outputs {
            let ws = &panel[o * k..(o + 1) * k];
            out[t * stride + o] = ws.iter().zip(xs).map(|(w, v)| w * v).sum::<f32>();
        }
    }
}

/// One thread's outputs `outputs` for the tokens of a chunk, token-major
/// (out[t·len + i] for output outputs.start + i).
fn panels_product(
    shape: Shape,
    fill: &(impl Fn(Range<usize>, &mut [f32]) -> Result<()> + Sync),
    outputs: Range<usize>,
    x: &[f32],
    tokens: usize,
) -> Result<Vec<f32>> {
    let (k, width) = (shape.k, shape.panel_outputs());
    let len = outputs.len();
    let mut out = alloc::filled(tokens * len, 0.0f32, "matmul outputs")?;
    let mut panel = alloc::filled(width * k, 0.0f32, "matmul panel")?;
    for first in outputs.clone().step_by(width) {
        let range = first..(first + width).min(outputs.end);
        let n = range.len();
        let start = first - outputs.start;
        fill(range, &mut panel[..n * k])?;
        panel_dots(&panel, n, k, x, tokens, &mut out[start..], len);
    }
    Ok(out)
}

/// Runs a product: `fill(range, panel)` dequantizes the outputs `range` into
/// `panel` (one row of k floats each); x holds `tokens` rows of k floats, y
/// `tokens` rows of `shape.outputs`.
fn product(
    shape: Shape,
    fill: impl Fn(Range<usize>, &mut [f32]) -> Result<()> + Sync,
    x: &[f32],
    tokens: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    let (outputs, k) = (shape.outputs, shape.k);
    let width = shape.panel_outputs();
    let panels = outputs.div_ceil(width);
    let threads = threads
        .max(1)
        .min((outputs * k / MIN_WEIGHTS_PER_THREAD).max(1))
        .min(panels);
    let per_thread = panels.div_ceil(threads) * width;
    let ranges: Vec<Range<usize>> = (0..outputs)
        .step_by(per_thread)
        .map(|first| first..(first + per_thread).min(outputs))
        .collect();
    for t0 in (0..tokens).step_by(TOKEN_CHUNK) {
        let chunk = TOKEN_CHUNK.min(tokens - t0);
        let xs = &x[t0 * k..(t0 + chunk) * k];
        let fill = &fill;
        let parts: Vec<Result<Vec<f32>>> = if ranges.len() == 1 {
            vec![panels_product(shape, fill, ranges[0].clone(), xs, chunk)]
        } else {
            let catching = crate::quiet_panic::is_catching();
            std::thread::scope(|scope| {
                let handles: Vec<_> = ranges
                    .iter()
                    .map(|range| {
                        let range = range.clone();
                        scope.spawn(move || {
                            crate::quiet_panic::inherit(catching, || {
                                panels_product(shape, fill, range, xs, chunk)
                            })
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        for (range, part) in ranges.iter().zip(parts) {
            let part = part?;
            let len = range.len();
            for t in 0..chunk {
                let dst = &mut y[(t0 + t) * outputs + range.start..][..len];
                dst.copy_from_slice(&part[t * len..(t + 1) * len]);
                if let Some(bias) = bias {
                    for (v, b) in dst.iter_mut().zip(&bias[range.clone()]) {
                        *v += b;
                    }
                }
            }
        }
    }
    Ok(())
}
