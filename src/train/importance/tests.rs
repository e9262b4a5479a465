use super::*;
use crate::format::Format;
use crate::quant::{self, QuantizeOptions, Rounding};

/// Deterministic values in [-1, 1) (an LCG).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn sums_and_counts_are_the_squares_per_column() {
    let mut acc = Importance::new(3).unwrap();
    acc.add(&[1.0, -2.0, 0.5, 3.0, 0.0, -0.5], 2).unwrap();
    acc.add(&[], 0).unwrap();
    acc.add(&[2.0, 1.0, 1.0], 1).unwrap();
    assert_eq!(acc.sums(), &[14.0, 5.0, 1.5]);
    assert_eq!(acc.tokens(), 3);
    let mut values = [0.0f32; 6];
    acc.values(&mut values).unwrap();
    assert_eq!(values, [14.0 / 3.0, 5.0 / 3.0, 0.5].repeat(2)[..]);
    assert_eq!(
        acc.values(&mut [0.0; 4]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    acc.add_sums(&[1.0, 1.0, 1.5], 1).unwrap();
    assert_eq!((acc.sums()[2], acc.tokens()), (3.0, 4));
    acc.reset();
    assert_eq!((acc.sums(), acc.tokens()), (&[0.0; 3][..], 0));
}

#[test]
fn f64_sums_keep_every_token() {
    // 2^25 tokens of 1.0 and one column of 1 + 2^-12: an f32 sum stops
    // growing at 2^24; the f64 one is exact.
    let mut acc = Importance::new(1).unwrap();
    let x = vec![1.0f32; 1 << 16];
    for _ in 0..(1 << 9) {
        acc.add(&x, x.len()).unwrap();
    }
    assert_eq!(acc.sums()[0], (1u64 << 25) as f64);
    let mut f32_sum = 0.0f32;
    for _ in 0..(1u32 << 25) {
        f32_sum += 1.0;
    }
    assert_eq!(f32_sum, (1u32 << 24) as f32);
}

#[test]
fn bad_input_is_refused_and_adds_nothing() {
    let mut acc = Importance::new(2).unwrap();
    acc.add(&[1.0, 1.0], 1).unwrap();
    let before = acc.clone();
    let e = acc.add(&[1.0, 2.0, f32::NAN, 0.0], 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite { index: 2 });
    let e = acc.add(&[1.0, 2.0, 3.0], 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        acc.add(&[], usize::MAX).unwrap_err().kind(),
        ErrorKind::SizeOverflow
    );
    let e = acc.add_sums(&[1.0, f32::INFINITY], 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite { index: 1 });
    let e = acc.add_sums(&[-1.0, 0.0], 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = acc.add_sums(&[1.0, 0.0], u64::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SizeOverflow);
    assert_eq!(acc, before);
    assert_eq!(
        Importance::new(0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        Importance::new(usize::MAX / 4).unwrap_err().kind(),
        ErrorKind::SizeOverflow
    );
    let empty = Importance::new(2).unwrap();
    let mut out = [7.0f32; 2];
    assert_eq!(
        empty.values(&mut out).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        acc.values(&mut out[..1]).unwrap_err().kind(),
        ErrorKind::BufferTooSmall { needed: 2 }
    );
    assert_eq!(out, [7.0; 2]);
}

#[test]
fn save_and_load_round_trip() {
    let mut acc = Importance::new(5).unwrap();
    acc.add(&noise(35, 1), 7).unwrap();
    let mut bytes = vec![0u8; acc.save_len() + 3];
    let len = acc.save(&mut bytes).unwrap();
    assert_eq!(len, 32 + 16 + 40);
    let mut back = Importance::new(5).unwrap();
    back.load(&bytes[..len]).unwrap();
    assert_eq!(back, acc);
    assert_eq!(
        acc.save(&mut bytes[..len - 1]).unwrap_err().kind(),
        ErrorKind::BufferTooSmall { needed: len }
    );
}

#[test]
fn corrupted_truncated_and_foreign_bytes_are_refused() {
    let mut acc = Importance::new(4).unwrap();
    acc.add(&noise(8, 2), 2).unwrap();
    let mut bytes = vec![0u8; acc.save_len()];
    acc.save(&mut bytes).unwrap();
    let mut target = Importance::new(4).unwrap();
    target.add(&[1.0; 4], 1).unwrap();
    let before = target.clone();
    let refuse = |target: &mut Importance, bad: &[u8], says: &str| {
        let e = target.load(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains(says), "{e}");
    };
    for at in [0, 9, 13, 40, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        target.load(&bad).unwrap_err();
    }
    let mut flipped = bytes.clone();
    flipped[60] ^= 1;
    refuse(&mut target, &flipped, "checksum");
    refuse(&mut target, &bytes[..bytes.len() - 8], "truncated");
    refuse(&mut target, &bytes[..10], "truncated");
    let mut longer = bytes.clone();
    longer.push(0);
    refuse(&mut target, &longer, "trailing");
    let mut other = Importance::new(3).unwrap();
    refuse(&mut other, &bytes, "4 columns");
    let mut scaler_bytes = vec![0u8; checkpoint::loss_scaler_len()];
    let scaler = crate::train::loss_scale::LossScaler::new(Default::default()).unwrap();
    checkpoint::save_loss_scaler(&scaler, &mut scaler_bytes).unwrap();
    refuse(&mut target, &scaler_bytes, "a loss scaler");
    assert_eq!(target, before);
}

/// Σ_i importance[i % cols]·(w − ŵ)² of `w` through `format`.
fn weighted_error(format: Format, w: &[f32], importance: &[f32], with: Option<&[f32]>) -> f64 {
    let mut bytes = vec![0u8; format.size_of(w.len()).unwrap()];
    let opts = QuantizeOptions {
        rounding: Rounding::ErrorMinimising,
        importance: with,
        ..Default::default()
    };
    quant::quantize(format, w, &mut bytes, &opts).unwrap();
    let mut back = vec![0.0f32; w.len()];
    quant::dequantize(format, &bytes, &mut back, 1).unwrap();
    w.iter()
        .zip(&back)
        .enumerate()
        .map(|(i, (&a, &b))| {
            f64::from(importance[i % importance.len()]) * (f64::from(a) - f64::from(b)).powi(2)
        })
        .sum()
}

#[test]
fn importance_from_activations_lowers_the_weighted_error_of_real_weights() {
    // Real [rows, cols] weights; activations whose columns differ in scale
    // over three orders of magnitude, as layer inputs do (a few outlier
    // channels). Element (r, c) of a row-major matrix is element r·cols + c,
    // so the [cols] importance is the quantizer's per-element importance as
    // it stands (importance[i % cols]).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/weights/");
    let tensors = [
        (
            "minilm-l6-v2__encoder.layer.0.attention.self.query.weight.f32",
            384,
        ),
        (
            "minilm-l6-v2__encoder.layer.0.output.dense.weight.f32",
            1536,
        ),
    ];
    let (mut with_total, mut without_total) = (0.0f64, 0.0f64);
    for (file, cols) in tensors {
        let w = crate::data::read_f32_file(std::path::Path::new(&format!("{dir}{file}"))).unwrap();
        // The first 128 rows keep the test short at opt-level 1.
        let w = &w[..128 * cols];
        let scale: Vec<f32> = noise(cols, 3).iter().map(|u| 10f32.powf(1.5 * u)).collect();
        let tokens = 64;
        let x: Vec<f32> = noise(tokens * cols, 4)
            .iter()
            .enumerate()
            .map(|(i, v)| v * scale[i % cols])
            .collect();
        let mut acc = Importance::new(cols).unwrap();
        acc.add(&x, tokens).unwrap();
        for format in [Format::Q4_0, Format::Q4_1, Format::IQ4_NL, Format::Q4_K] {
            // Whole rows covering whole blocks: 384 columns take 768 values
            // for Q4_K's 256.
            let mut len = cols;
            while len % format.block_size() != 0 {
                len += cols;
            }
            let mut importance = vec![0.0f32; len];
            acc.values(&mut importance).unwrap();
            let with = weighted_error(format, w, &importance, Some(&importance));
            let without = weighted_error(format, w, &importance, None);
            eprintln!(
                "{file} {format:?}: weighted error {with:.6e} with importance, {without:.6e} without"
            );
            assert!(with <= without, "{file} {format:?}: {with} > {without}");
            with_total += with;
            without_total += without;
        }
    }
    assert!(
        with_total < 0.9 * without_total,
        "{with_total} vs {without_total}"
    );
}
