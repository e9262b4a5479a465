//! What the matrix-vector product tests share: deterministic data, the FP64
//! reference with its documented bounds, the check of one product on the
//! device and on the CPU kernel, and the check that a row of the
//! environment table chose the kernels it asks for.

#![allow(dead_code)]

use crate::vk_support::env::Env;
use nyxq::format::Format;
use nyxq::quant::{self, QuantizeOptions};
use nyxq::vk::Engine;
use nyxq::vk::matvec::{Arithmetic, HostOperands, MatvecCall, MatvecChoice, run_on_host_data};
use nyxq::vk::ranges::BufferRange;
use nyxq::vk::shaders::MatvecVariant as Variant;

/// Deterministic numbers in [-1, 1).
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut h = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A rows×cols matrix in `format` (the CPU quantizer's bytes) and its
/// dequantized values.
pub fn weights(format: Format, rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let values = uniform(rows * cols, seed);
    let mut bytes = vec![0u8; format.size_of(rows * cols).unwrap()];
    quant::quantize(format, &values, &mut bytes, &QuantizeOptions::default()).unwrap();
    let mut deq = vec![0f32; rows * cols];
    quant::dequantize(format, &bytes, &mut deq, 1).unwrap();
    (bytes, deq)
}

/// W·x of a `rows`×`cols` matrix in `format` on `batch` vectors.
pub fn forward_call(
    format: Format,
    rows: usize,
    cols: usize,
    batch: u32,
    compat: bool,
) -> MatvecCall {
    MatvecCall {
        format,
        rows: rows as u64,
        cols: cols as u64,
        batch,
        transposed: false,
        compat,
    }
}

/// The FP64 product and Σ|w·x| of one output.
pub struct Reference {
    /// The product.
    pub value: f64,
    /// Σ|w·x| (and |bias|) of its terms.
    pub magnitude: f64,
}

/// FP64 y = W·x (+ bias) or xᵀ·W over the dequantized weights.
pub fn reference(call: &MatvecCall, w: &[f32], x: &[f32], bias: Option<&[f32]>) -> Vec<Reference> {
    let (rows, cols, batch) = (call.rows as usize, call.cols as usize, call.batch as usize);
    let (outputs, n) = if call.transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut out = Vec::with_capacity(batch * outputs);
    for b in 0..batch {
        for o in 0..outputs {
            let mut value = 0.0f64;
            let mut magnitude = 0.0f64;
            for i in 0..n {
                let (wv, xv) = if call.transposed {
                    (w[i * cols + o], x[b * rows + i])
                } else {
                    (w[o * cols + i], x[b * cols + i])
                };
                let p = f64::from(wv) * f64::from(xv);
                value += p;
                magnitude += p.abs();
            }
            if let Some(bias) = bias {
                value += f64::from(bias[o]);
                magnitude += f64::from(bias[o]).abs();
            }
            out.push(Reference { value, magnitude });
        }
    }
    out
}

/// The documented bound of the f32 path for sums of n terms.
pub fn bound(n: usize, magnitude: f64) -> f64 {
    (n as f64 + 3.0) * 2f64.powi(-24) * magnitude
}

/// Whether one output passes [`check_value`].
pub fn within(got: f32, r: &Reference, tolerance: f64) -> bool {
    if r.value.is_nan() {
        got.is_nan()
    } else if r.value.is_infinite() {
        f64::from(got) == r.value
    } else {
        (f64::from(got) - r.value).abs() <= tolerance
    }
}

/// Checks one output against its reference: NaN where the reference is NaN,
/// the same infinity, else within `tolerance`.
pub fn check_value(got: f32, r: &Reference, tolerance: f64, what: &str) {
    if r.value.is_nan() {
        assert!(got.is_nan(), "{what}: {got}, expected NaN");
    } else if r.value.is_infinite() {
        assert_eq!(f64::from(got), r.value, "{what}");
    } else {
        let err = (f64::from(got) - r.value).abs();
        assert!(
            err <= tolerance,
            "{what}: {got} vs {} (error {err:e} > bound {tolerance:e})",
            r.value
        );
    }
}

/// The extra error of rounding x to int8 per block (the CPU integer path
/// and the `_dot` variant) for output `o` of vector `b`: Σ over the finite
/// blocks of x (the others are multiplied in f32) of
/// (max|x_blk|/127/2)·Σ|w_blk|.
pub fn rounding_term(call: &MatvecCall, w: &[f32], x: &[f32], b: usize, o: usize) -> f64 {
    if call.transposed || !call.format.is_block() {
        return 0.0;
    }
    let cols = call.cols as usize;
    let xs = &x[b * cols..(b + 1) * cols];
    let ws = &w[o * cols..(o + 1) * cols];
    xs.chunks(32)
        .zip(ws.chunks(32))
        .filter(|(xb, _)| xb.iter().all(|v| v.is_finite()))
        .map(|(xb, wb)| {
            let amax = xb.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
            let wsum: f64 = wb.iter().map(|v| f64::from(v.abs())).sum();
            amax / 127.0 / 2.0 * wsum * 1.01
        })
        .sum()
}

/// The variant `call` runs on `engine`.
pub fn variant_of(engine: &Engine, call: &MatvecCall) -> Variant {
    if call.transposed {
        return Variant::Transposed;
    }
    engine
        .matvec()
        .forward_variant(call.compat, call.format, call.batch)
}

/// The device's extra error for output `o` of vector `b`: x's rounding
/// where `call` runs a `_dot` variant.
pub fn device_term(
    engine: &Engine,
    call: &MatvecCall,
    w: &[f32],
    x: &[f32],
    b: usize,
    o: usize,
) -> f64 {
    if matches!(variant_of(engine, call), Variant::Dot | Variant::DotPre) {
        rounding_term(call, w, x, b, o)
    } else {
        0.0
    }
}

/// Runs `call` on the device and on the CPU kernel and checks both against
/// the FP64 reference.
pub fn check_call(
    engine: &Engine,
    call: &MatvecCall,
    wq: &[u8],
    w: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
) {
    let (rows, cols, batch) = (call.rows as usize, call.cols as usize, call.batch as usize);
    let outputs = if call.transposed { cols } else { rows };
    let n = if call.transposed { rows } else { cols };
    let mut gpu = vec![f32::from_bits(0x7fc0_dead); batch * outputs + 3];
    let host = HostOperands { w: wq, x, bias };
    run_on_host_data(engine, call, &host, &mut gpu).unwrap();
    assert!(
        gpu[batch * outputs..]
            .iter()
            .all(|v| v.to_bits() == 0x7fc0_dead),
        "{call:?}: wrote past y"
    );
    let variant = variant_of(engine, call);
    let device_rounds_x = matches!(variant, Variant::Dot | Variant::DotPre);
    let x_finite = x.iter().all(|v| v.is_finite());
    let mut cpu = vec![0f32; batch * outputs];
    if call.transposed {
        nyxq::matvec::matvec_transposed(call.format, wq, rows, cols, x, batch, &mut cpu, 2)
            .unwrap();
    } else {
        nyxq::matvec::matvec(call.format, wq, rows, cols, x, batch, bias, &mut cpu, 2).unwrap();
    }
    let refs = reference(call, w, x, bias);
    for (i, r) in refs.iter().enumerate() {
        // Built only for a failure's message: the sweeps check millions of outputs.
        let what = || format!("{call:?} {variant:?} output {i}");
        let tol = bound(n, r.magnitude);
        // The extra error of x rounded to int8 per block (rounding_term),
        // computed once: the device's where it runs a `_dot` kernel
        // (device_term), the CPU kernel's on its integer path where x is
        // finite.
        let (b, o) = (i / outputs, i % outputs);
        let x_term = if device_rounds_x || x_finite {
            rounding_term(call, w, x, b, o)
        } else {
            0.0
        };
        let gpu_term = if device_rounds_x { x_term } else { 0.0 };
        let cpu_term = if x_finite { x_term } else { 0.0 };
        if !within(gpu[i], r, tol + gpu_term) {
            check_value(gpu[i], r, tol + gpu_term, &format!("GPU {}", what()));
        }
        let cpu_ref = Reference {
            value: f64::from(cpu[i]),
            magnitude: r.magnitude,
        };
        if r.value.is_finite() {
            let tolerance = 2.0 * tol + cpu_term + gpu_term;
            if !within(gpu[i], &cpu_ref, tolerance) {
                check_value(
                    gpu[i],
                    &cpu_ref,
                    tolerance,
                    &format!("GPU vs CPU {}", what()),
                );
            }
        } else {
            // src/matvec/mod.rs promises NaN or ±Inf here (its Q4_1 path
            // factors out the block minimum, which can turn an infinity into NaN).
            assert!(!cpu[i].is_finite(), "CPU {}: {}", what(), cpu[i]);
        }
    }
}

/// The engine chose what `row` asks for: the compatible kernels where it
/// forces them, the arithmetic of its NYXQ_VK_MATVEC_VARIANT and the forward
/// variant that gives Q4_0 at batch 8 (`_dot_pre` by default), its
/// NYXQ_VK_MATVEC_ROWS (capped at 8 for the f32 variants) and its
/// NYXQ_VK_MATVEC_SLOTS (the rows ask only for slots that hold their rows,
/// so none is raised). The expectations come from the table, not from the
/// process's environment, so a setting that did not reach the engine fails.
pub fn assert_row_chosen(row: &Env, compat: bool, choice: &MatvecChoice) {
    assert_eq!(compat, row.force_compat(), "compat under row {}", row.name);
    let arithmetic = match row.matvec_variant() {
        Some("f32") => Arithmetic::F32,
        Some("dot") => Arithmetic::IntegerDot,
        Some("dot_pre") => Arithmetic::PreRounded,
        _ => Arithmetic::Auto,
    };
    assert_eq!(choice.arithmetic(), arithmetic, "row {}", row.name);
    assert_eq!(choice.pre_rounded_failure(), None, "row {}", row.name);
    let variant = choice.forward_variant(compat, Format::Q4_0, 8);
    let expected = match arithmetic {
        _ if compat || !choice.subgroup_supported() => Variant::Compat,
        Arithmetic::IntegerDot if choice.dot_supported() => Variant::Dot,
        Arithmetic::Auto | Arithmetic::PreRounded if choice.dot_supported() => Variant::DotPre,
        _ => Variant::Subgroup,
    };
    assert_eq!(variant, expected, "row {}", row.name);
    if let Some(rows) = row.matvec_rows() {
        for batch in [1, 8] {
            let used = choice.rows_per_group(Variant::Dot, batch, Format::Q4_0, 4097);
            assert_eq!(used, rows, "_dot rows per group at batch {batch}");
            let used = choice.rows_per_group(Variant::Subgroup, batch, Format::Q4_0, 4097);
            assert_eq!(used, rows.min(8), "f32 rows per group at batch {batch}");
        }
        if let Some(slots) = row.matvec_slots() {
            assert_eq!(choice.dot_slots(rows, 1), slots, "row slots at batch 1");
        }
    }
}

/// `size` bytes of `b` from `offset`.
pub fn range(b: &nyxq::vk::memory::Buffer, offset: u64, size: u64) -> BufferRange {
    BufferRange {
        buffer: b.buffer,
        offset,
        size,
    }
}
