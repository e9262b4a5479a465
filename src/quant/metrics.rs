//! Error metrics between an original tensor and its reconstruction.

/// How far a reconstruction is from the original.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ErrorMetrics {
    /// Root mean squared error.
    pub rmse: f64,
    /// Largest absolute error.
    pub max_abs: f64,
    /// Signal-to-noise ratio in dB: 10·log10(Σx² / Σ(x−y)²); +∞ when the error is zero.
    pub snr_db: f64,
    /// Cosine similarity of the two vectors (1 when both are zero).
    pub cosine: f64,
}

/// Measures `reconstructed` against `original` (same length), in f64.
pub fn measure(original: &[f32], reconstructed: &[f32]) -> ErrorMetrics {
    assert_eq!(
        original.len(),
        reconstructed.len(),
        "metrics need equal lengths"
    );
    let (mut signal, mut noise, mut recon, mut dot, mut max_abs) =
        (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in original.iter().zip(reconstructed) {
        let (x, y) = (x as f64, y as f64);
        let e = x - y;
        signal += x * x;
        noise += e * e;
        recon += y * y;
        dot += x * y;
        max_abs = max_abs.max(e.abs());
    }
    let n = original.len().max(1) as f64;
    let snr_db = if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    };
    let cosine = if signal == 0.0 && recon == 0.0 {
        1.0
    } else if signal == 0.0 || recon == 0.0 {
        0.0
    } else {
        dot / (signal.sqrt() * recon.sqrt())
    };
    ErrorMetrics {
        rmse: (noise / n).sqrt(),
        max_abs,
        snr_db,
        cosine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_reconstruction_has_infinite_snr() {
        let x = [1.0f32, -2.0, 3.5];
        let m = measure(&x, &x);
        assert_eq!(m.rmse, 0.0);
        assert_eq!(m.snr_db, f64::INFINITY);
        assert!((m.cosine - 1.0).abs() < 1e-15);
    }

    #[test]
    fn known_error_gives_known_metrics() {
        let x = [3.0f32, 4.0];
        let y = [3.0f32, 3.0];
        let m = measure(&x, &y);
        assert!((m.rmse - (0.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(m.max_abs, 1.0);
        assert!((m.snr_db - 10.0 * 25f64.log10()).abs() < 1e-12);
        assert!((m.cosine - 21.0 / (5.0 * 18f64.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn zero_vectors_have_a_defined_cosine() {
        // Both zero: 1; one of them zero: 0 (no direction to compare).
        assert_eq!(measure(&[0.0; 3], &[0.0; 3]).cosine, 1.0);
        assert_eq!(measure(&[1.0, 2.0], &[0.0, 0.0]).cosine, 0.0);
        assert_eq!(measure(&[0.0, 0.0], &[1.0, 2.0]).cosine, 0.0);
        let m = measure(&[1.0, 2.0], &[0.0, 0.0]);
        assert_eq!(m.snr_db, 0.0);
        assert_eq!(m.max_abs, 2.0);
    }
}
