//! The self-test run when a context is created on a device: every kernel runs
//! once on a small input full of hard cases (rounding ties, zeros of both signs,
//! subnormals, tiny and huge values) and its bytes are compared with the CPU
//! twin. Where faster variants exist (`_rte_dp`, `_rte`, `_s16`) and the device
//! can run them, they are tested first, fastest first; the first that agrees is
//! used, the compatible variant last.
//! A kernel whose every variant disagrees is disabled and the CPU twin is used.
//!
//! The matmul kernels are not byte-identical to a CPU twin: each variant
//! multiplies a product of odd shape (no tile whole) and checks every output
//! against an FP64 product of the dequantized weights within its documented
//! bound ([`crate::vk::matmul::Bound`]), the `_coop128` and `_coop`
//! variants first where the device can run them.
//!
//! The `_dot_pre` matrix-vector kernels (x rounded once per product by a
//! dispatch before it) are checked on every block format where the device
//! runs the integer-dot variants: on a product of odd shape whose rows span
//! several tiles of x, with tiny and huge blocks of x, their results must be
//! the bits of the `_dot` kernels (which round x in every workgroup with the
//! same code) and within the documented bound against an FP64 product. One
//! disagreement disables `_dot_pre` on the device (the context's report says
//! why; products then run as before it existed).
//!
//! The verdicts are kept for the life of the process, keyed by what decides
//! them: the device and its driver, the variants its features let run, the
//! compatible-only setting and a perturbed kernel. A later context on the
//! same device (a second trainer thread, a re-created context, a borrowed
//! device beside nyxq's own) takes them without running the kernels again.
//! A self-test in which a kernel failed to run at all (an error from the
//! driver rather than wrong bytes) is not kept, so the next context tests
//! again.

use super::engine::Engine;
use super::matmul::{self, Bound, MatmulCall};
use super::matvec::{self, Arithmetic, HostOperands, MatvecCall};
use super::ops;
use super::shaders::{KernelId, Op, compatible_kernel, fast_kernels};
use crate::format::{Format, VulkanFamily};
use crate::quant::{self, QuantizeOptions, Rounding};
use parking_lot::Mutex;

/// What the self-test found for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelResult {
    pub kernel: KernelId,
    pub op: Op,
    pub format: Format,
    /// None when it passed, else why it is disabled.
    pub failure: Option<String>,
    /// A faster variant that failed before `kernel` was tested, and why.
    pub rejected: Option<(KernelId, String)>,
}

/// 10 blocks of 32, one per hard case, plus one odd element for the 1-wide
/// formats (the K-quants: 16 blocks, whole super-blocks).
fn input(format: Format) -> Vec<f32> {
    let n = match format.block_size() {
        1 => 321,
        block => 320usize.next_multiple_of(block),
    };
    (0..n)
        .map(|i| {
            let j = (i % 32) as f32;
            match (i / 32) % 10 {
                0 => (j - 16.0) * 0.5, // .5 ties
                1 => {
                    if i % 2 == 0 {
                        0.0
                    } else {
                        -0.0
                    }
                } // zeros
                2 => {
                    f32::from_bits(0x0000_1000 + i as u32 * 977)
                        * if i % 3 == 0 { -1.0 } else { 1.0 }
                } // subnormals
                3 => f32::from_bits(0x0080_0000 + i as u32 * 12_345), // smallest normals
                4 => 60_000.0 - j * 1000.0, // huge for f16
                5 => (j - 15.5) * 1.0e-3 + 1.0e-39, // mixed with a subnormal
                6 => f32::from_bits(0x3f80_8000 + (i as u32 % 2) * 0x1_0000), // bf16 ties
                7 => (j * 0.37).sin() * 3.0,
                8 => f16_ties(format, i % 32),
                // Q4_1: d = 2^-10, m = -7 * 2^-10 - 2^-16, so d*7 + m is the f16
                // subnormal -2^-16 (flushed where f16 subnormals are not kept).
                _ => ((i % 16) as f32 - 7.0) * (1.0 / 1024.0) - 1.0 / 65536.0,
            }
        })
        .collect()
}

/// A block whose f16 results are halfway between two f16 values, of both
/// parities: for F16/BF16 the inputs themselves; for the block formats, a
/// block whose scale is d = 1 + 2^-10 and whose quants make d*q such ties
/// (3d, 6d, 12d) when dequantized to f16; for IQ4_NL, whose levels hold
/// none of those, d = 1.40625 (its least-squares scale for levels times d)
/// and the levels −83 (an odd lower neighbour), −65, −49, 53, 69 and 89.
fn f16_ties(format: Format, j: usize) -> f32 {
    let d = 1.0 + 1.0 / 1024.0;
    let jf = j as f32;
    match format {
        Format::Q8_0 if j == 31 => 127.0 * d, // sets the scale to d
        Format::Q8_0 => (jf - 16.0) * d,
        Format::Q4_0 if j == 31 => -8.0 * d, // sets the scale to d
        Format::Q4_0 => ((j % 16) as f32 - 8.0) * d,
        Format::Q4_1 => (j % 16) as f32 * d,
        Format::Q5_0 => (jf - 16.0) * d, // -16d, first, sets the scale to d
        Format::IQ4_NL => {
            const TIES: [f32; 6] = [-83.0, -65.0, -49.0, 53.0, 69.0, 89.0];
            let d = 1.40625;
            if j == 0 { -127.0 * d } else { TIES[j % 6] * d } // -127d, first, sets d
        }
        _ => {
            let tie = f32::from_bits(0x3f80_1000 + j as u32 * 0x2000);
            if j % 3 == 0 { -tie } else { tie }
        }
    }
}

fn compare(what: &str, cpu: &[u8], gpu: &[u8]) -> Option<String> {
    cpu.iter().zip(gpu).position(|(a, b)| a != b).map(|i| {
        format!(
            "{what}: byte {i} is {:#04x}, the CPU twin gives {:#04x}",
            gpu[i], cpu[i]
        )
    })
}

fn as_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// Deterministic values in [-1, 1) times `scale`, every 7th 0 and every
/// 11th 300 times larger (f16 still holds them).
fn product_values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut h = seed.wrapping_mul(0x9e37_79b9) | 1;
    (0..n)
        .map(|i| {
            h ^= h << 13;
            h ^= h >> 17;
            h ^= h << 5;
            let v = (h >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
            match (i % 7, i % 11) {
                (0, _) => 0.0,
                (_, 0) => v * scale * 300.0,
                _ => v * scale,
            }
        })
        .collect()
}

/// Runs the product `op` on `format` with the engine's current variant on a
/// shape that cuts every tile (37 rows, 96 columns (a K-quant's 256), 19
/// tokens; for a kernel with tiles wider than 64, a whole tile and a cut
/// one of tokens and of outputs both ways: tile + 9 rows, 160 columns, tile
/// + 3 tokens) and checks it against FP64 within the variant's bound.
fn test_product(engine: &Engine, op: Op, format: Format) -> crate::Result<Option<String>> {
    let kernel = engine.kernel(op, format)?;
    let shape = kernel.kernel().matmul_tile;
    let tile = shape.tokens.max(shape.outputs) as usize;
    let (rows, cols, tokens): (usize, usize, usize) = if tile > 64 {
        (tile + 9, 160, tile + 3)
    } else {
        (37, 96, 19)
    };
    let cols = cols.next_multiple_of(format.block_size());
    let call = MatmulCall {
        format,
        rows: rows as u64,
        cols: cols as u64,
        tokens: tokens as u64,
        transposed: op == Op::MatmulTransposed,
    };
    let values = product_values(rows * cols, 1, 0.5);
    let mut w = vec![0u8; format.size_of(values.len())?];
    quant::quantize(format, &values, &mut w, &QuantizeOptions::default())?;
    let mut dequantized = vec![0f32; values.len()];
    quant::dequantize(format, &w, &mut dequantized, 1)?;
    let n = if call.transposed { rows } else { cols };
    let x = product_values(tokens * n, 2, 2.0);
    let bias = product_values(rows, 3, 1.0);
    let bias = (!call.transposed).then_some(&bias[..]);
    let outputs = if call.transposed { cols } else { rows };
    let mut y = vec![0f32; tokens * outputs];
    let host = HostOperands { w: &w, x: &x, bias };
    matmul::run_on_host_data(engine, &call, &host, &mut y)?;
    let bound = Bound::of(kernel);
    Ok(matmul::first_violation(
        &call,
        &dequantized,
        &x,
        bias,
        &y,
        bound,
    ))
}

/// Runs the `_dot_pre` product on `format` and compares it with `_dot`'s
/// bits and with FP64 within its bound: f32's `(n + 3)·2⁻²⁴·Σ|w·x|` plus
/// x's rounding, `Σ_blocks (s/2)·Σ|w|`.
fn test_pre_rounded(engine: &Engine, format: Format) -> crate::Result<Option<String>> {
    // 90 blocks a row: two tiles of x at batch 3 (85 blocks each).
    let (rows, cols, batch) = (37usize, 32 * 90, 3usize);
    let values = product_values(rows * cols, 4, 0.5);
    let mut w = vec![0u8; format.size_of(values.len())?];
    quant::quantize(format, &values, &mut w, &QuantizeOptions::default())?;
    let mut dequantized = vec![0f32; values.len()];
    quant::dequantize(format, &w, &mut dequantized, 1)?;
    let mut x = product_values(batch * cols, 5, 2.0);
    for v in &mut x[32..64] {
        *v *= 1e-37; // a block counted as zero
    }
    x[cols + 64] = 1e30; // a block whose 1/max|x| needs the scaled division
    let call = MatvecCall {
        format,
        rows: rows as u64,
        cols: cols as u64,
        batch: batch as u32,
        transposed: false,
        compat: false,
    };
    let choice = engine.matvec();
    let before = choice.arithmetic();
    let run = |arithmetic| {
        choice.set_arithmetic(arithmetic);
        let mut y = vec![0f32; batch * rows];
        let host = HostOperands {
            w: &w,
            x: &x,
            bias: None,
        };
        matvec::run_on_host_data(engine, &call, &host, &mut y).map(|_| y)
    };
    let pre = run(Arithmetic::PreRounded);
    let dot = run(Arithmetic::IntegerDot);
    choice.set_arithmetic(before);
    let (pre, dot) = (pre?, dot?);
    if let Some(i) = (0..pre.len()).find(|&i| pre[i].to_bits() != dot[i].to_bits()) {
        return Ok(Some(format!(
            "output {i} is {} where `_dot` gives {}",
            pre[i], dot[i]
        )));
    }
    for (i, &got) in pre.iter().enumerate() {
        let (b, r) = (i / rows, i % rows);
        let (xs, ws) = (&x[b * cols..][..cols], &dequantized[r * cols..][..cols]);
        let (mut exact, mut magnitude, mut rounding) = (0f64, 0f64, 0f64);
        for (xb, wb) in xs.chunks(32).zip(ws.chunks(32)) {
            let amax = xb.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
            let mut w_sum = 0f64;
            for (&xv, &wv) in xb.iter().zip(wb) {
                let p = f64::from(xv) * f64::from(wv);
                exact += p;
                magnitude += p.abs();
                w_sum += f64::from(wv.abs());
            }
            rounding += amax / 254.0 * w_sum;
        }
        let bound = (cols as f64 + 3.0) * 2f64.powi(-24) * magnitude + 1.01 * rounding;
        if (f64::from(got) - exact).abs() > bound {
            return Ok(Some(format!(
                "output {i} is {got}, the FP64 product {exact} (bound {bound:e})"
            )));
        }
    }
    Ok(None)
}

/// Checks `_dot_pre` on every format with integer-dot kernels where the
/// device runs them (not with `force_compat`), and disables it at the first
/// disagreement.
/// Returns false when a product failed to run (a driver error, not a
/// verdict).
fn check_pre_rounded(engine: &Engine, force_compat: bool) -> bool {
    let choice = engine.matvec();
    choice.set_pre_rounded_failure(None);
    if force_compat || !choice.dot_supported() {
        return true;
    }
    for format in Format::with_vulkan(VulkanFamily::MatvecDot) {
        let (failure, ran) = match test_pre_rounded(engine, format) {
            Ok(failure) => (failure, true),
            Err(e) => (Some(format!("failed to run: {e}")), false),
        };
        if let Some(why) = failure {
            let why = format!("matvec_{}_f32_dot_pre: {why}", format.name().to_lowercase());
            log::warn!("nyxq vulkan self-test: {why}; `_dot` and the f32 variant are used instead");
            choice.set_pre_rounded_failure(Some(why));
            return ran;
        }
        log::debug!(
            "nyxq vulkan self-test: matvec_{}_f32_dot_pre agrees with `_dot` and FP64",
            format.name().to_lowercase()
        );
    }
    true
}

/// The kernel's verdict (None: it agrees), or Err when it could not run.
fn test_one(engine: &Engine, op: Op, format: Format) -> crate::Result<Option<String>> {
    let x = input(format);
    let n = x.len();
    let nearest = QuantizeOptions::default();
    let mut q = vec![0u8; format.size_of(n)?];
    if let Err(e) = quant::quantize(format, &x, &mut q, &nearest) {
        return Ok(Some(format!("CPU twin failed: {e}")));
    }
    match op {
        Op::Matmul | Op::MatmulTransposed => test_product(engine, op, format),
        Op::Quantize => {
            let mut gpu = vec![0u8; q.len()];
            ops::quantize(engine, format, &x, &mut gpu, Rounding::Nearest)
                .map(|_| compare("nearest", &q, &gpu))
                .and_then(|nearest_diff| {
                    if nearest_diff.is_some() || format.block_size() == 1 {
                        return Ok(nearest_diff);
                    }
                    let rounding = Rounding::Stochastic { seed: 0x5eed };
                    let opts = QuantizeOptions {
                        rounding,
                        ..Default::default()
                    };
                    let mut cpu = vec![0u8; q.len()];
                    quant::quantize(format, &x, &mut cpu, &opts)?;
                    ops::quantize(engine, format, &x, &mut gpu, rounding)?;
                    Ok(compare("stochastic", &cpu, &gpu))
                })
        }
        Op::Dequantize => {
            let mut cpu = vec![0f32; n];
            let mut gpu = vec![0f32; n];
            quant::dequantize(format, &q, &mut cpu, 1)
                .and_then(|_| ops::dequantize(engine, format, &q, &mut gpu))
                .map(|_| compare("dequantize", &as_bytes(&cpu), &as_bytes(&gpu)))
        }
        Op::DequantizeF16 => {
            let mut cpu = vec![0u16; n];
            let mut gpu = vec![0u16; n];
            let bytes = |v: &[u16]| v.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<_>>();
            quant::dequantize_to_f16(format, &q, &mut cpu, 1)
                .and_then(|_| ops::dequantize_to_f16(engine, format, &q, &mut gpu))
                .map(|_| compare("dequantize to f16", &bytes(&cpu), &bytes(&gpu)))
        }
        Op::FakeQuantize => {
            let mut cpu = vec![0f32; n];
            let mut gpu = vec![0f32; n];
            quant::fake_quantize(format, &x, &mut cpu, &nearest)
                .and_then(|_| ops::fake_quantize(engine, format, &x, &mut gpu, Rounding::Nearest))
                .map(|_| compare("fake-quantize", &as_bytes(&cpu), &as_bytes(&gpu)))
        }
    }
}

/// The variants to try for `op` on `format`, fastest first, the compatible
/// one last.
fn candidates(engine: &Engine, op: Op, format: Format, force_compat: bool) -> Vec<KernelId> {
    let fast = fast_kernels(op, format)
        .iter()
        .copied()
        .filter(|&k| !force_compat && engine.variant_supported(k));
    fast.chain(compatible_kernel(op, format)).collect()
}

/// What one self-test decided: each kernel's result and why `_dot_pre` was
/// disabled, if it was.
#[derive(Clone)]
struct Verdicts {
    results: Vec<KernelResult>,
    pre_rounded_failure: Option<String>,
}

/// The verdicts of the self-tests run in this process, by [`verdict_key`].
static VERDICTS: Mutex<Vec<(String, Verdicts)>> = Mutex::new(Vec::new());

/// Every (op, format) the self-test covers.
fn tested_kernels() -> impl Iterator<Item = (Op, Format)> {
    let conversions = Format::with_vulkan(VulkanFamily::Conversions)
        .flat_map(|format| Op::CONVERSIONS.map(|op| (op, format)));
    let products = Format::with_vulkan(VulkanFamily::Matmul)
        .flat_map(|format| Op::PRODUCTS.map(|op| (op, format)));
    conversions.chain(products)
}

/// What decides the self-test's verdicts on `engine`'s device: the device
/// and driver, the limits that shape its dispatches, the variants that
/// would be tested, whether `_dot_pre` is checked, and the perturbed kernel.
fn verdict_key(engine: &Engine, force_compat: bool) -> String {
    let info = &engine.device.info;
    let tested: Vec<_> = tested_kernels()
        .map(|(op, format)| candidates(engine, op, format, force_compat))
        .collect();
    format!(
        "{} {:#x}:{:#x} {} {} {:#x} {:#x} sg{} wg{} {} {:?} {force_compat} {} {:?} {tested:?}",
        info.index,
        info.vendor_id,
        info.device_id,
        info.driver_name,
        info.driver_info,
        info.driver_version,
        info.api_version,
        info.subgroup_size,
        info.max_workgroup_bytes,
        info.max_storage_buffer_range,
        info.max_workgroup_count,
        engine.matvec().dot_supported(),
        engine.perturbed(),
    )
}

/// Runs every kernel once, chooses for each the fastest variant that agrees
/// with the CPU (only the compatible ones with `force_compat`), and reports;
/// then checks the `_dot_pre` products (their outcome is the matvec choice's
/// [`super::matvec::MatvecChoice::pre_rounded_failure`], not a result here).
/// Where a context of this process has already tested the same device
/// with the same key ([`verdict_key`]), its verdicts are applied instead.
pub fn run(engine: &Engine, force_compat: bool) -> Vec<KernelResult> {
    let key = verdict_key(engine, force_compat);
    let known = VERDICTS
        .lock()
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone());
    if let Some(verdicts) = known {
        for r in &verdicts.results {
            engine.choose_kernel(r.op, r.format, r.kernel);
        }
        engine
            .matvec()
            .set_pre_rounded_failure(verdicts.pre_rounded_failure);
        log::debug!(
            "nyxq vulkan self-test: the verdicts of an earlier context on '{}' apply",
            engine.device.info.name
        );
        return verdicts.results;
    }
    let (results, kernels_ran) = test_every_kernel(engine, force_compat);
    let products_ran = check_pre_rounded(engine, force_compat);
    if kernels_ran && products_ran {
        let verdicts = Verdicts {
            results: results.clone(),
            pre_rounded_failure: engine.matvec().pre_rounded_failure(),
        };
        VERDICTS.lock().push((key, verdicts));
    }
    results
}

/// The kernels' part of [`run`]; false beside the results when a kernel
/// failed to run.
fn test_every_kernel(engine: &Engine, force_compat: bool) -> (Vec<KernelResult>, bool) {
    let mut out = Vec::new();
    let mut ran = true;
    for (op, format) in tested_kernels() {
        let mut rejected = None;
        let mut result = None;
        let compatible = compatible_kernel(op, format);
        for kernel in candidates(engine, op, format, force_compat) {
            engine.choose_kernel(op, format, kernel);
            let failure = test_one(engine, op, format).unwrap_or_else(|e| {
                ran = false;
                Some(format!("failed to run: {e}"))
            });
            match &failure {
                None => {
                    log::debug!("nyxq vulkan self-test: {kernel} agrees with the CPU twin")
                }
                Some(why) => log::warn!(
                    "nyxq vulkan self-test: {kernel} DISABLED ({why}); {}",
                    if Some(kernel) == compatible {
                        "the CPU twin is used instead"
                    } else {
                        "the next variant is tried instead"
                    }
                ),
            }
            let passed = failure.is_none();
            if let (Some(why), None) = (&failure, &rejected) {
                if Some(kernel) != compatible {
                    rejected = Some((kernel, why.clone()));
                }
            }
            result = Some(KernelResult {
                kernel,
                op,
                format,
                failure,
                rejected: rejected.clone(),
            });
            if passed {
                break;
            }
        }
        out.extend(result);
    }
    (out, ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_q4_1_input_has_a_subnormal_f16_result() {
        let x = input(Format::Q4_1);
        let mut q = vec![0u8; Format::Q4_1.size_of(x.len()).unwrap()];
        let nearest = QuantizeOptions::default();
        quant::quantize(Format::Q4_1, &x, &mut q, &nearest).unwrap();
        let mut y = vec![0u16; x.len()];
        quant::dequantize_to_f16(Format::Q4_1, &q, &mut y, 1).unwrap();
        let subnormal = |h: &u16| h & 0x7c00 == 0 && h & 0x03ff != 0;
        assert!(y[288..320].iter().any(subnormal), "{:04x?}", &y[288..320]);
    }

    #[test]
    fn the_iq4_nl_input_has_f16_ties_of_both_parities() {
        let x = input(Format::IQ4_NL);
        let mut q = vec![0u8; Format::IQ4_NL.size_of(x.len()).unwrap()];
        quant::quantize(Format::IQ4_NL, &x, &mut q, &QuantizeOptions::default()).unwrap();
        let mut y = vec![0.0f32; x.len()];
        quant::dequantize(Format::IQ4_NL, &q, &mut y, 1).unwrap();
        // Block 8: d = 1.40625 exactly, so every value is its input, and
        // each is halfway between two f16 values (the lower odd or even).
        assert_eq!(&q[8 * 18..8 * 18 + 2], &0x3da0u16.to_le_bytes());
        assert_eq!(&y[256..288], &x[256..288]);
        let mut parities = std::collections::HashSet::new();
        for &v in &y[257..288] {
            let h = half::f16::from_f32(v);
            let other = half::f16::from_bits(if f32::from(h).abs() < v.abs() {
                h.to_bits() + 1
            } else {
                h.to_bits() - 1
            });
            assert_eq!(
                (f64::from(v) - f64::from(f32::from(h))).abs(),
                (f64::from(v) - f64::from(f32::from(other))).abs(),
                "{v} is no f16 tie"
            );
            parities.insert(h.to_bits().min(other.to_bits()) & 1);
        }
        assert_eq!(parities.len(), 2);
    }
}
