//! Products of a batch of tokens on the device (the Vulkan twins of
//! [`crate::matvec::matmul`] and [`crate::matvec::matmul_transposed`]): Y =
//! X·Wᵀ (+ bias) and dX = dY·W, W in any nyxq format, X and Y f32, any
//! number of tokens.
//!
//! Three kernels per format and direction, chosen by the self-test like the
//! conversions' variants (shaders/matmul.glsl holds what they share): the
//! compatible `matmul_<tag>_f32` / `matmul_t_<tag>_f32` (f32 tiles in shared
//! memory, f32 fused multiply-adds; no optional feature) and, where the
//! device has VK_KHR_cooperative_matrix with the configuration they use, the
//! `_coop128` and `_coop` variants (f16 tiles multiplied by the matrix
//! units, f32 sums; workgroup tiles of 128 and of 64). Each kernel's tile
//! ([`super::shaders::Kernel::matmul_tile`]) sizes its grid.
//! Their error bounds against an FP64 product of the dequantized weights
//! are [`Bound::Compat`] and [`Bound::Coop`]. Builds with
//! NYXQ_SHADER_EXPERIMENTS=1 add measurement-only shapes of `_coop128`
//! (never chosen; [`record_matmul_with`] records one), some of which read X
//! rounded to f16 by [`KernelId::MATMUL_X_F16`] into a scratch buffer of the
//! ticket first ([`MatmulTile::x_f16`]).
//!
//! W larger than maxStorageBufferRange is split by rows into several
//! dispatches (the backward chunks add into dX, with a barrier between
//! them), and X and Y by tokens; the bias must fit one binding.

use super::dispatch::{Binding, Dispatch, compute_barrier};
use super::engine::Engine;
use super::family::MatmulPush;
use super::matvec::{Chunk, HostOperands, Operands, Sizes, check_binding, chunks, run_recorded};
use super::ranges::{check_command_buffer, check_disjoint, check_range};
use super::recorder::Ticket;
use super::shaders::{KernelId, MatmulTile, Op, experimental_kernels, op_kernels};
use crate::error::{Error, ErrorKind, Result};
use crate::format::{Format, VulkanFamily};
use ash::vk;
use std::cmp::Ordering;

/// One product: W is `rows`×`cols` in `format` (row-major, rows of whole
/// blocks), `tokens` rows of X (cols floats each; dY: rows floats each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulCall {
    pub format: Format,
    pub rows: u64,
    pub cols: u64,
    pub tokens: u64,
    /// dX = dY·W (the backward pass) instead of Y = X·Wᵀ.
    pub transposed: bool,
}

impl MatmulCall {
    /// The job whose kernel runs it.
    pub fn op(&self) -> Op {
        if self.transposed {
            Op::MatmulTransposed
        } else {
            Op::Matmul
        }
    }

    /// Checks the shape and returns the operands' sizes in bytes.
    pub fn sizes(&self) -> Result<Sizes> {
        self.format.require_vulkan(VulkanFamily::Matmul)?;
        if self.rows == 0 || self.cols == 0 {
            return Err(Error::invalid(format!(
                "matmul: a {}x{} matrix is empty",
                self.rows, self.cols
            )));
        }
        if self.tokens == 0 {
            return Err(Error::invalid("matmul: tokens is 0: nothing to multiply"));
        }
        let limit = u64::from(u32::MAX);
        if self.rows > limit || self.cols > limit || self.tokens > limit {
            return Err(Error::invalid(format!(
                "matmul: {}x{} with {} tokens exceeds the kernels' 32-bit indices",
                self.rows, self.cols, self.tokens
            )));
        }
        let cols = usize::try_from(self.cols).map_err(|_| Error::overflow("cols"))?;
        let row_bytes = self
            .format
            .size_of(cols)
            .map_err(|e| Error::invalid(format!("matmul: rows of {cols}: {}", e.message())))?
            as u64;
        let w = row_bytes
            .checked_mul(self.rows)
            .ok_or_else(|| Error::overflow("matmul weights"))?;
        let floats = |n: u64| {
            n.checked_mul(4 * self.tokens)
                .ok_or_else(|| Error::overflow("matmul tokens"))
        };
        let (x, y) = if self.transposed {
            (floats(self.rows)?, floats(self.cols)?)
        } else {
            (floats(self.cols)?, floats(self.rows)?)
        };
        Ok(Sizes {
            row_bytes,
            w,
            x,
            bias: 4 * self.rows,
            y,
        })
    }

    /// Floats per token of X (dY) and of Y (dX).
    fn per_token(&self) -> (u64, u64) {
        if self.transposed {
            (self.rows, self.cols)
        } else {
            (self.cols, self.rows)
        }
    }
}

/// An error bound of the product's kernels against an FP64 product of the
/// dequantized weights, for one output: a sum of `n` products w·x, whose
/// magnitudes sum to `sum_wx` (Σ|w·x|) and whose factors' magnitudes sum to
/// `sum_w_and_x` (Σ(|w| + |x|)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The f32 kernels: `(n + 3)·2⁻²⁴·Σ|w·x|`, a sum of exact products
    /// (fused multiply-adds) rounded n − 1 times in any order, plus a block
    /// scale's rounding (as the CPU's f32 path; products that GPUs flush as
    /// subnormals add at most 2⁻¹²⁶ each).
    Compat,
    /// The `_coop128` and `_coop` kernels: W and X rounded to f16 (each value by at most
    /// 2⁻¹⁰ of itself, or 2⁻²⁴ in f16's subnormal range, whichever way the
    /// device rounds), their products added in f32 by matrix units that may
    /// truncate: `(2⁻⁹ + (n + 12)·2⁻²³)·Σ|w·x| + 2⁻²³·Σ(|w| + |x|)`, for
    /// magnitudes below 65520 (larger ones become ±Inf in f16).
    Coop,
}

impl Bound {
    /// The bound the kernel `kernel` meets.
    pub fn of(kernel: KernelId) -> Bound {
        if kernel.kernel().needs.cooperative_matrix {
            Bound::Coop
        } else {
            Bound::Compat
        }
    }

    /// The bound for one output.
    pub fn at(self, n: usize, sum_wx: f64, sum_w_and_x: f64) -> f64 {
        let n = n as f64;
        match self {
            Bound::Compat => (n + 3.0) * 2f64.powi(-24) * sum_wx,
            Bound::Coop => {
                (2f64.powi(-9) + (n + 12.0) * 2f64.powi(-23)) * sum_wx
                    + 2f64.powi(-23) * sum_w_and_x
            }
        }
    }
}

/// A run of tokens that one dispatch binds: its X (dY) and Y (dX) ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenChunk {
    first: u64,
    pub(super) tokens: u64,
    /// (offset within the caller's range, bytes) of the X binding, and the
    /// float of that binding where the first token starts.
    pub(super) x_bind: (u64, u64),
    pub(super) x_first: u32,
    y_bind: (u64, u64),
    y_first: u32,
}

/// Splits the tokens so that neither the X binding (`x_per` floats a
/// token) nor the Y binding (`y_per`) exceeds `max_range` bytes, each
/// starting at a multiple of `align` at or before its first token.
pub(super) fn token_chunks(
    tokens: u64,
    (x_per, y_per): (u64, u64),
    max_range: u64,
    align: u64,
) -> Result<Vec<TokenChunk>> {
    let widest = 4 * x_per.max(y_per);
    let per = max_range.saturating_sub(align) / widest;
    if per == 0 {
        return Err(Error::unsupported(format!(
            "matmul: one token's values ({widest} bytes) do not fit the device's \
             maxStorageBufferRange ({max_range} bytes)"
        )));
    }
    let bind = |first: u64, n: u64, floats: u64| {
        let start = 4 * first * floats;
        let offset = start / align * align;
        let end = 4 * (first + n) * floats;
        ((offset, end - offset), ((start - offset) / 4) as u32)
    };
    let mut out = Vec::new();
    let mut first = 0;
    while first < tokens {
        let n = per.min(tokens - first);
        let (x_bind, x_first) = bind(first, n, x_per);
        let (y_bind, y_first) = bind(first, n, y_per);
        out.push(TokenChunk {
            first,
            tokens: n,
            x_bind,
            x_first,
            y_bind,
            y_first,
        });
        first += n;
    }
    Ok(out)
}

/// Checks every range of `ops` against `call`'s sizes and the device's
/// limits; returns the bound (whole-word) size of the bias.
fn check_operands(engine: &Engine, call: &MatmulCall, ops: &Operands) -> Result<u64> {
    let sizes = call.sizes()?;
    if call.transposed && ops.bias.is_some() {
        return Err(Error::invalid(
            "matmul: the backward product has no bias (pass none)",
        ));
    }
    let device = &engine.device;
    let (x_name, y_name) = if call.transposed {
        ("dy", "dx")
    } else {
        ("x", "y")
    };
    let w = check_range(device, &ops.w, sizes.w, "w")?;
    let x = check_range(device, &ops.x, sizes.x, x_name)?;
    let y = check_range(device, &ops.y, sizes.y, y_name)?;
    check_disjoint(&ops.w, w, &ops.y, y)?;
    check_disjoint(&ops.x, x, &ops.y, y)?;
    match &ops.bias {
        Some(b) => {
            let bound = check_range(device, b, sizes.bias, "bias")?;
            check_binding(engine, bound, "matmul: bias")?;
            check_disjoint(b, bound, &ops.y, y)?;
            Ok(bound)
        }
        None => Ok(0),
    }
}

/// Records `call` on `ops` into `cmd`: one dispatch per chunk of W's rows
/// and chunk of tokens (forward chunks write disjoint outputs; backward
/// chunks of W's rows after the first add into dX, after a compute
/// barrier). Returns the ticket whose release
/// ([`super::recorder::Recorder::release`]) frees the descriptor sets.
///
/// Records no barrier before the first dispatch or after the last: the
/// caller orders its writes of W, X and bias before, and its reads of Y after.
///
/// # Safety
/// `cmd` is a command buffer of the engine's device in the recording state,
/// outside a render pass; the buffers are live buffers of that device with
/// STORAGE_BUFFER usage and hold the given ranges.
pub unsafe fn record_matmul(
    engine: &Engine,
    cmd: vk::CommandBuffer,
    call: &MatmulCall,
    ops: &Operands,
) -> Result<Ticket> {
    let kernel = engine.kernel(call.op(), call.format)?;
    // SAFETY: this function's contract.
    unsafe { record_matmul_with(engine, cmd, call, ops, kernel) }
}

/// [`record_matmul`] with `kernel` instead of the self-test's choice: any
/// variant of the product (a fast one, the compatible one or a
/// measurement-only one) that the device can run. For benchmarks; its
/// results meet [`Bound::of`] `kernel` where the kernel is correct on the
/// device, which only the self-test establishes for the chosen one.
///
/// # Safety
/// As [`record_matmul`].
pub unsafe fn record_matmul_with(
    engine: &Engine,
    cmd: vk::CommandBuffer,
    call: &MatmulCall,
    ops: &Operands,
    kernel: KernelId,
) -> Result<Ticket> {
    let (op, format) = (call.op(), call.format);
    let known = op_kernels(op, format)
        .iter()
        .chain(experimental_kernels(op, format))
        .any(|&k| k == kernel);
    if !known || !engine.variant_supported(kernel) {
        return Err(Error::unsupported(format!(
            "matmul: {kernel} is not a kernel of {op:?} on {} that this device runs",
            format.name()
        )));
    }
    check_command_buffer(cmd)?;
    let bias_size = check_operands(engine, call, ops)?;
    let sizes = call.sizes()?;
    let info = &engine.device.info;
    let align = info.min_storage_offset_alignment.max(4);
    let max_range = u64::from(info.max_storage_buffer_range);
    let rows_plan = chunks(call.rows, sizes.row_bytes, max_range, align)?;
    let tokens_plan = token_chunks(call.tokens, call.per_token(), max_range, align)?;
    let tile = kernel.kernel().matmul_tile;
    let bound: Vec<vk::Buffer> = [Some(ops.w), Some(ops.x), ops.bias, Some(ops.y)]
        .iter()
        .flatten()
        .map(|r| r.buffer)
        .collect();
    let products = rows_plan.len() * tokens_plan.len();
    // A kernel that reads X rounded to f16 gets it in a scratch buffer of
    // the ticket, one chunk of tokens at a time.
    let (ticket, sets, x_halves) = if tile.x_f16 {
        let most = tokens_plan.iter().map(|c| c.tokens).max().unwrap_or(0);
        let bytes = x_half_bytes(call.per_token().0 * most);
        let kernels = [(X_F16, &[][..]), (kernel, &[][..])];
        let dispatches = products + tokens_plan.len();
        let (ticket, sets, scratch) =
            engine.reserve_with_scratch(&kernels, dispatches, &bound, bytes)?;
        (ticket, sets, Some((scratch, 0, bytes)))
    } else {
        let (ticket, sets) = engine.reserve(kernel, &[], products, &bound)?;
        (ticket, sets, None)
    };
    let mut sets = sets.into_iter();
    let mut next_set = || {
        sets.next()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "a set per dispatch was reserved"))
    };
    let device = &engine.device.device;
    for (j, tokens) in tokens_plan.iter().enumerate() {
        if let Some(halves) = x_halves {
            if j > 0 {
                // SAFETY: cmd is recording (this function's contract). The
                // previous chunk's products read the scratch.
                unsafe { compute_barrier(device, cmd) };
            }
            let (push, bindings, groups) =
                x_f16_dispatch(call, ops, (&rows_plan[0], tokens), halves);
            let dispatch = Dispatch {
                kernel: X_F16,
                specialization: &[],
                set: next_set()?,
                bindings: &bindings,
                push,
                groups,
            };
            // SAFETY: per this function's contract; X was checked to lie in
            // the caller's range, the scratch is the ticket's, the set fresh.
            unsafe { engine.record(cmd, &dispatch) }?;
            // SAFETY: as above; the products read what it wrote.
            unsafe { compute_barrier(device, cmd) };
        }
        for (i, rows) in rows_plan.iter().enumerate() {
            if call.transposed && i > 0 {
                // SAFETY: cmd is recording (this function's contract).
                unsafe { compute_barrier(device, cmd) };
            }
            let (mut push, mut bindings, groups) = chunk_dispatch(
                call,
                ops,
                (rows, tokens),
                (sizes.row_bytes, bias_size),
                tile,
            );
            if let Some(halves) = x_halves {
                push.x_first = 0;
                bindings[1] = halves;
            }
            let dispatch = Dispatch {
                kernel,
                specialization: &[],
                set: next_set()?,
                bindings: &bindings,
                push,
                groups,
            };
            // SAFETY: per this function's contract; the ranges were checked
            // to lie inside the caller's, and the set is fresh.
            unsafe { engine.record(cmd, &dispatch) }?;
        }
    }
    Ok(ticket)
}

/// The kernel that rounds X (dY) to f16 for the kernels with
/// [`MatmulTile::x_f16`].
const X_F16: KernelId = KernelId::MATMUL_X_F16;
/// Invocations per workgroup of [`X_F16`] (4 values each).
const X_F16_GROUP: u64 = 256;

/// Bytes of the f16 copy of `values` values of X: whole 8-byte writes.
fn x_half_bytes(values: u64) -> u64 {
    values.div_ceil(4) * 8
}

/// The push constants, bindings and workgroups of the dispatch of
/// [`X_F16`] that rounds the X (dY) of one chunk of tokens into `halves`
/// (the scratch: buffer, offset, bytes).
fn x_f16_dispatch(
    call: &MatmulCall,
    ops: &Operands,
    (rows, tokens): (&Chunk, &TokenChunk),
    halves: Binding,
) -> (MatmulPush, [Binding; 4], u32) {
    let per = call.per_token().0;
    let x = (
        ops.x.buffer,
        ops.x.offset + tokens.x_bind.0,
        tokens.x_bind.1.div_ceil(4) * 4,
    );
    let w = (
        ops.w.buffer,
        ops.w.offset + rows.bind_offset,
        rows.bind_size,
    );
    let push = MatmulPush {
        cols: per as u32,
        tokens: tokens.tokens as u32,
        x_first: tokens.x_first,
        ..MatmulPush::default()
    };
    let groups = (per * tokens.tokens).div_ceil(4 * X_F16_GROUP);
    (push, [w, x, x, halves], groups as u32)
}

/// The push constants, bindings and workgroups of the dispatch of one chunk
/// of W's rows and one chunk of tokens, for a kernel whose workgroups take
/// the tokens × outputs of `tile`.
fn chunk_dispatch(
    call: &MatmulCall,
    ops: &Operands,
    (rows, tokens): (&Chunk, &TokenChunk),
    (row_bytes, bias_size): (u64, u64),
    tile: MatmulTile,
) -> (MatmulPush, [Binding; 4], u32) {
    let outputs = if call.transposed {
        call.cols
    } else {
        rows.rows
    };
    let tiles_n = outputs.div_ceil(u64::from(tile.outputs));
    let push = MatmulPush {
        rows: rows.rows as u32,
        cols: call.cols as u32,
        row_first: rows.first_row as u32,
        total_rows: call.rows as u32,
        w_half: rows.w_half,
        row_halves: (row_bytes / 2) as u32,
        has_bias: u32::from(ops.bias.is_some()),
        accumulate: u32::from(call.transposed && rows.first_row > 0),
        tokens: tokens.tokens as u32,
        x_first: tokens.x_first,
        y_first: tokens.y_first,
        tiles_n: tiles_n as u32,
    };
    let words = |bytes: u64| bytes.div_ceil(4) * 4;
    let w = (
        ops.w.buffer,
        ops.w.offset + rows.bind_offset,
        rows.bind_size,
    );
    let x = (
        ops.x.buffer,
        ops.x.offset + tokens.x_bind.0,
        words(tokens.x_bind.1),
    );
    let y = (
        ops.y.buffer,
        ops.y.offset + tokens.y_bind.0,
        words(tokens.y_bind.1),
    );
    // Without a bias, binding 2 repeats X (the kernel does not read it).
    let bias = ops.bias.map_or(x, |b| (b.buffer, b.offset, bias_size));
    let groups = tiles_n * tokens.tokens.div_ceil(u64::from(tile.tokens));
    (push, [w, x, bias, y], groups as u32)
}

/// Uploads `host`, runs `call` on the device (submit and wait) and writes
/// the results to `y` (at least the product's tokens·(rows or cols) floats;
/// only those are written). For tests, the self-test and tools: a trainer
/// records [`record_matmul`] on its own device-resident buffers instead.
pub fn run_on_host_data(
    engine: &Engine,
    call: &MatmulCall,
    host: &HostOperands,
    y: &mut [f32],
) -> Result<()> {
    let kernel = engine.kernel(call.op(), call.format)?;
    run_on_host_data_with(engine, call, host, y, kernel)
}

/// [`run_on_host_data`] with `kernel` ([`record_matmul_with`]'s rules): for
/// tests and benchmarks of the variants the self-test did not choose.
pub fn run_on_host_data_with(
    engine: &Engine,
    call: &MatmulCall,
    host: &HostOperands,
    y: &mut [f32],
    kernel: KernelId,
) -> Result<()> {
    let sizes = call.sizes()?;
    run_recorded(engine, &sizes, host, y, |cmd, ops| {
        // SAFETY: the engine's command buffer is recording; the buffers are
        // nyxq's own, alive until after the wait, and hold the ranges.
        unsafe { record_matmul_with(engine, cmd, call, ops, kernel) }
    })
}

/// The first output of `y` (`call.tokens` rows of outputs) farther from the
/// FP64 product of `w` (the dequantized rows×cols weights, row-major) and
/// `x` than `bound` allows, plus two roundings of the bias's sum: a message
/// naming it, or None. Where the FP64 product is NaN or infinite, the output
/// must be NaN or the same infinity.
pub fn first_violation(
    call: &MatmulCall,
    w: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    y: &[f32],
    bound: Bound,
) -> Option<String> {
    let (rows, cols) = (call.rows as usize, call.cols as usize);
    let (n, outputs) = if call.transposed {
        (rows, cols)
    } else {
        (cols, rows)
    };
    for t in 0..call.tokens as usize {
        for o in 0..outputs {
            let (mut exact, mut sum_wx, mut sum_w_and_x) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..n {
                let wv = f64::from(if call.transposed {
                    w[i * cols + o]
                } else {
                    w[o * cols + i]
                });
                let xv = f64::from(x[t * n + i]);
                exact += wv * xv;
                sum_wx += (wv * xv).abs();
                sum_w_and_x += wv.abs() + xv.abs();
            }
            let b = bias.map_or(0.0, |b| f64::from(b[o]));
            let expected = exact + b;
            let got = f64::from(y[t * outputs + o]);
            let allowed =
                bound.at(n, sum_wx, sum_w_and_x) + 2f64.powi(-23) * (exact.abs() + b.abs());
            let wrong = if expected.is_nan() {
                !got.is_nan()
            } else if expected.is_infinite() {
                got != expected
            } else {
                // A NaN result (no ordering) is wrong too.
                let error = (got - expected).abs();
                !matches!(
                    error.partial_cmp(&allowed),
                    Some(Ordering::Less | Ordering::Equal)
                )
            };
            if wrong {
                return Some(format!(
                    "token {t} output {o}: {got} where the FP64 product is {expected} \
                     (allowed error {allowed:e})"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operands of `size` bytes each on no buffer, for the dispatch arithmetic.
    fn null_operands(size: u64) -> Operands {
        let range = |size| crate::vk::ranges::BufferRange {
            buffer: vk::Buffer::null(),
            offset: 0,
            size,
        };
        Operands {
            w: range(size),
            x: range(size),
            bias: None,
            y: range(size),
        }
    }

    #[test]
    fn token_chunks_cover_every_token_once_within_the_range() {
        for (tokens, per, max, align) in [
            (1u64, (96u64, 37u64), 1u64 << 27, 16u64),
            (8200, (4128, 3), 1 << 27, 16),
            (1000, (5, 7), 4096, 64),
            (70, (33, 1), 256, 16),
        ] {
            let plan = token_chunks(tokens, per, max, align).unwrap();
            let mut next = 0;
            for c in &plan {
                assert_eq!(c.first, next);
                for ((offset, size), first, floats) in
                    [(c.x_bind, c.x_first, per.0), (c.y_bind, c.y_first, per.1)]
                {
                    assert_eq!(offset % align, 0, "{c:?}");
                    assert!(size.div_ceil(4) * 4 <= max, "{c:?}");
                    assert_eq!(offset + 4 * u64::from(first), 4 * c.first * floats);
                    assert_eq!(offset + size, 4 * (c.first + c.tokens) * floats);
                }
                next += c.tokens;
            }
            assert_eq!(next, tokens);
        }
        assert!(token_chunks(3, (1024, 1), 4096, 16).is_err());
    }

    #[test]
    fn the_grid_follows_the_kernels_tile() {
        let ops = null_operands(1 << 20);
        // 4096 rows (outputs forward), 14336 columns (outputs backward).
        for (transposed, tokens, (m, n), tiles_n, groups) in [
            (false, 512, (128, 128), 32, 32 * 4),
            (false, 512, (64, 64), 64, 64 * 8),
            (false, 130, (128, 128), 32, 32 * 2),
            (true, 2048, (128, 128), 112, 112 * 16),
            (true, 1, (64, 64), 224, 224),
            (false, 512, (64, 128), 32, 32 * 8),
            (true, 130, (128, 64), 224, 224 * 2),
        ] {
            let tile = MatmulTile {
                tokens: m,
                outputs: n,
                x_f16: false,
            };
            let call = MatmulCall {
                format: Format::Q4_0,
                rows: 4096,
                cols: 14336,
                tokens,
                transposed,
            };
            let rows = chunks(4096, 8064, 1 << 40, 16).unwrap();
            let per = call.per_token();
            let token_plan = token_chunks(tokens, per, 1 << 40, 16).unwrap();
            let (push, _, got) =
                chunk_dispatch(&call, &ops, (&rows[0], &token_plan[0]), (8064, 0), tile);
            assert_eq!(
                (push.tiles_n, got),
                (tiles_n, groups),
                "{call:?} tile {tile:?}"
            );
        }
    }

    #[test]
    fn the_x_f16_pass_covers_its_chunk_of_tokens_once() {
        let ops = null_operands(1 << 30);
        for (tokens, transposed) in [(1u64, false), (2048, false), (131, true), (3, true)] {
            let call = MatmulCall {
                format: Format::Q4_0,
                rows: 4096,
                cols: 14336,
                tokens,
                transposed,
            };
            let rows = chunks(4096, 8064, 1 << 40, 16).unwrap();
            let plan = token_chunks(tokens, call.per_token(), 1 << 40, 16).unwrap();
            let values = call.per_token().0 * tokens;
            let bytes = x_half_bytes(values);
            assert!(bytes >= 2 * values && bytes % 8 == 0, "{call:?}");
            let halves = (vk::Buffer::null(), 0, bytes);
            let (push, bindings, groups) =
                x_f16_dispatch(&call, &ops, (&rows[0], &plan[0]), halves);
            let per_group = 4 * X_F16_GROUP;
            let groups = u64::from(groups);
            assert!(groups * per_group >= values && (groups - 1) * per_group < values);
            assert_eq!(
                (u64::from(push.cols) * u64::from(push.tokens), bindings[3]),
                (values, halves)
            );
        }
    }

    #[test]
    fn the_coop_bound_is_looser_and_grows_with_the_factors() {
        let compat = Bound::Compat.at(96, 10.0, 50.0);
        let coop = Bound::Coop.at(96, 10.0, 50.0);
        assert!(coop > compat, "{coop} {compat}");
        assert_eq!(compat, 99.0 * 2f64.powi(-24) * 10.0);
        assert!(Bound::Coop.at(96, 10.0, 100.0) > coop);
    }
}
