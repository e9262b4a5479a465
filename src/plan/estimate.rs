//! What a format is expected to cost a tensor in accuracy, when no data was
//! measured, and how that error enters the planner's objective.

use super::model::Role;
use crate::format::Format;

/// Where a tensor's expected error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// F32: no error.
    Exact = 0,
    /// Quantized from the tensor's data and measured.
    Measured = 1,
    /// Estimated from the format and the role (no data given).
    Estimated = 2,
}

impl ErrorSource {
    /// The source as reports and JSON name it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorSource::Exact => "exact",
            ErrorSource::Measured => "measured",
            ErrorSource::Estimated => "estimated",
        }
    }
}

/// SNR in dB a format is expected to give on weights of `role` without data:
/// the format table's estimate (round-to-nearest measured on the real
/// MiniLM-L6 weights; embeddings, attention and FFN matrices agree within
/// 0.5 dB, and tests/plan_measured.rs checks the estimates stay within 4 dB),
/// less half a dB for the heavier-tailed embedding and output matrices.
pub fn estimated_snr_db(format: Format, role: Role) -> f64 {
    let base = format.spec().estimated_snr_db;
    match role {
        Role::Embedding | Role::Output => base - 0.5,
        _ => base,
    }
}

/// A tensor's contribution to the planner's objective: its sensitivity
/// `weight` times its noise power relative to the signal (0 for F32).
pub(super) fn werr_of(weight: f64, snr_db: f64) -> f64 {
    if snr_db == f64::INFINITY {
        0.0
    } else {
        weight * 10f64.powf(-snr_db / 10.0)
    }
}

/// An SNR as a reason states it: "exact" for F32, else "SNR 21.1 dB".
pub(super) fn snr_text(snr: f64) -> String {
    if snr.is_infinite() {
        "exact".to_string()
    } else {
        format!("SNR {snr:.1} dB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_named_as_reports_name_them() {
        assert_eq!(ErrorSource::Exact.name(), "exact");
        assert_eq!(ErrorSource::Measured.name(), "measured");
        assert_eq!(ErrorSource::Estimated.name(), "estimated");
    }

    #[test]
    fn embedding_and_output_matrices_are_estimated_half_a_db_lower() {
        for format in [Format::Q4_0, Format::Q8_0, Format::F16] {
            let base = format.spec().estimated_snr_db;
            for role in [Role::Embedding, Role::Output] {
                assert_eq!(estimated_snr_db(format, role), base - 0.5, "{role:?}");
            }
            for role in [
                Role::Attention,
                Role::Mlp,
                Role::Norm,
                Role::Bias,
                Role::Other,
            ] {
                assert_eq!(estimated_snr_db(format, role), base, "{role:?}");
            }
        }
        assert_eq!(estimated_snr_db(Format::F32, Role::Output), f64::INFINITY);
    }

    #[test]
    fn the_objective_is_the_weighted_noise_power_over_the_signal() {
        // 20 dB is a noise power of 1/100 of the signal; 10 dB of 1/10.
        assert!((werr_of(3.0, 20.0) - 0.03).abs() < 1e-15);
        assert!((werr_of(1.0, 10.0) - 0.1).abs() < 1e-15);
        assert!((werr_of(2.0, 0.0) - 2.0).abs() < 1e-15);
        assert_eq!(werr_of(5.0, f64::INFINITY), 0.0);
    }

    #[test]
    fn snr_text_says_exact_for_f32() {
        assert_eq!(snr_text(f64::INFINITY), "exact");
        assert_eq!(snr_text(21.14), "SNR 21.1 dB");
    }
}
