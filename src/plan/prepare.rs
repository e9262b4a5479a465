//! Preparation: each tensor's admissible formats (the fallback chain under
//! the policy and the hardware), its start format with the reasons, and the
//! lower convex hull of (bytes, error) the solver moves along.

use super::estimate::{ErrorSource, estimated_snr_db, snr_text, werr_of};
use super::hardware::Hardware;
use super::model::{Role, TensorDesc};
use super::policy::Policy;
use crate::error::{Error, Result};
use crate::format::{ALL_FORMATS, Format};

/// One way to store a tensor.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    pub(super) format: Format,
    /// Bytes of the weights alone.
    pub(super) weight_bytes: u64,
    /// Bytes with gradients and optimizer state (training).
    pub(super) bytes: u64,
    pub(super) snr_db: f64,
    /// sensitivity × noise power relative to the signal.
    pub(super) werr: f64,
    /// The device grants one allocation of this size.
    pub(super) device_ok: bool,
}

/// Everything about one tensor that does not change between replans.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) shape: Vec<usize>,
    pub(super) source: ErrorSource,
    /// The start choice first, then cheaper admissible choices on the lower
    /// convex hull of (bytes, error), in order of bytes saved.
    pub(super) hull: Vec<Choice>,
    /// Why the start choice is what it is.
    pub(super) start_reason: String,
    /// Whether replans may move this tensor (false for norms, overrides).
    pub(super) fixed: bool,
}

/// Why the hardware or the policy rules a format out for every tensor.
fn excluded(format: Format, hw: &Hardware, policy: &Policy) -> Option<String> {
    if !policy.allows(format) {
        return Some(format!("{} is not allowed by the policy", format.name()));
    }
    hw.device_supports(format)
        .err()
        .map(|why| format!("{} not used: {why}", format.name()))
}

/// Everything the solver needs about tensor `t`: its start choice, with the
/// reasons for it, and the cheaper choices it may be lowered to.
pub(super) fn prepare(t: &TensorDesc, hw: &Hardware, policy: &Policy) -> Result<Prepared> {
    let weight = t.weight();
    let max_alloc = hw.max_allocation_bytes;
    let choice = |format: Format| -> Option<Choice> {
        let weight_bytes = t.bytes_in(format)?;
        let snr_db = match (format, &t.measured_snr_db) {
            (Format::F32, _) => f64::INFINITY,
            (_, Some(m)) => m[format as usize],
            (_, None) => estimated_snr_db(format, t.role),
        };
        let bytes = weight_bytes + policy.training_extra(t.numel(), format != Format::F32);
        Some(Choice {
            format,
            weight_bytes,
            bytes,
            snr_db,
            werr: werr_of(weight, snr_db),
            device_ok: max_alloc == 0 || weight_bytes <= max_alloc,
        })
    };
    let source = if t.measured_snr_db.is_some() {
        ErrorSource::Measured
    } else {
        ErrorSource::Estimated
    };
    let mut reason = Vec::new();
    let fixed_choice = |format: Format, why: String| -> Result<Prepared> {
        let c = choice(format).ok_or_else(|| {
            Error::invalid(format!(
                "tensor '{}': {why}, but rows of {} are not whole {} blocks of {}",
                t.name,
                t.row_len(),
                format.name(),
                format.block_size()
            ))
        })?;
        Ok(Prepared {
            name: t.name.clone(),
            role: t.role,
            shape: t.shape.clone(),
            source: if format == Format::F32 {
                ErrorSource::Exact
            } else {
                source
            },
            hull: vec![c],
            start_reason: why,
            fixed: true,
        })
    };
    if t.role.keeps_f32() {
        return fixed_choice(Format::F32, "F32: norms and biases stay FP32".to_string());
    }
    if let Some(o) = policy.override_for(&t.name) {
        return fixed_choice(
            o.format,
            format!("{}: override '{}'", o.format.name(), o.text),
        );
    }
    // The fallback chain: usable formats from fewest to most bits; among equal
    // sizes the less accurate first, so the chain climbs INT4 → Q5_0 → INT8 → FP16 →
    // FP32.
    let mut chain: Vec<Choice> = ALL_FORMATS
        .iter()
        .copied()
        .filter(|&f| {
            (f == Format::F32 && policy.fallback_to_fp32)
                || (policy.allows(f) && hw.device_supports(f).is_ok())
        })
        .filter_map(choice)
        .collect();
    chain.sort_by(|a, b| {
        a.weight_bytes
            .cmp(&b.weight_bytes)
            .then(a.snr_db.total_cmp(&b.snr_db))
    });
    // Of two formats of one size keep the more accurate (F16 over BF16), unless
    // the policy prefers the other.
    let preferred = policy.preferred_for(t.role);
    chain.dedup_by(|later, earlier| {
        if later.weight_bytes != earlier.weight_bytes {
            return false;
        }
        if Some(earlier.format) == preferred {
            return true;
        }
        std::mem::swap(later, earlier);
        true
    });
    if chain.is_empty() {
        return Err(Error::invalid(format!(
            "tensor '{}': no allowed format stores rows of {}",
            t.name,
            t.row_len()
        )));
    }
    let mut at = match preferred {
        Some(p) => match chain.iter().position(|c| c.format == p) {
            Some(i) => {
                reason.push(format!("preferred {}", p.name()));
                i
            }
            None => {
                let bits = p.bits_per_weight();
                let i = chain
                    .iter()
                    .position(|c| c.format.bits_per_weight() >= bits)
                    .unwrap_or(chain.len() - 1);
                let why = if !t.fits_blocks(p) {
                    format!("rows of {} are not whole {} blocks", t.row_len(), p.name())
                } else {
                    excluded(p, hw, policy).unwrap_or_default()
                };
                reason.push(format!(
                    "preferred {} unavailable ({why}) → {}",
                    p.name(),
                    chain[i].format.name()
                ));
                i
            }
        },
        None => chain.len() - 1,
    };
    // One format per size, in order of size: each step up has more bits.
    while chain[at].snr_db < policy.min_snr_db && at + 1 < chain.len() {
        let next = at + 1;
        reason.push(format!(
            "{} {} < {:.1} dB threshold → {}",
            chain[at].format.name(),
            snr_text(chain[at].snr_db),
            policy.min_snr_db,
            chain[next].format.name()
        ));
        at = next;
    }
    if chain[at].snr_db < policy.min_snr_db {
        reason.push(format!(
            "no allowed format reaches {:.1} dB and fallback_to_fp32 is off: keeps {} ({})",
            policy.min_snr_db,
            chain[at].format.name(),
            snr_text(chain[at].snr_db)
        ));
    }
    if reason.is_empty() {
        reason.push(format!(
            "{}: the most accurate allowed format",
            chain[at].format.name()
        ));
    }
    let start = chain[at].clone();
    let mut hull = vec![start.clone()];
    if policy.adaptive {
        let mut cheaper: Vec<&Choice> = chain[..at]
            .iter()
            .filter(|c| c.bytes < start.bytes && c.snr_db >= policy.min_snr_db)
            .collect();
        cheaper.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.werr.total_cmp(&b.werr)));
        cheaper.dedup_by(|b, a| a.bytes == b.bytes);
        for c in cheaper {
            // Keep the lower convex hull: drop points that lie on or above the
            // segment from their predecessor to the new point.
            while hull.len() >= 2 {
                let (o, a) = (&hull[hull.len() - 2], &hull[hull.len() - 1]);
                let (ax, ay) = ((o.bytes - a.bytes) as f64, a.werr - o.werr);
                let (bx, by) = ((o.bytes - c.bytes) as f64, c.werr - o.werr);
                if ax * by - ay * bx <= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(c.clone());
        }
    }
    Ok(Prepared {
        name: t.name.clone(),
        role: t.role,
        shape: t.shape.clone(),
        source: if start.format == Format::F32 && hull.len() == 1 {
            ErrorSource::Exact
        } else {
            source
        },
        hull,
        start_reason: reason.join("; "),
        fixed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hull_formats(snr: [f64; ALL_FORMATS.len()]) -> Vec<Format> {
        let mut t = matrix();
        t.measured_snr_db = Some(snr);
        let policy = Policy {
            min_snr_db: 10.0,
            allowed: vec![Format::F32, Format::Q8_0, Format::Q4_0],
            ..Policy::default()
        };
        let hw = h200();
        let p = prepare(&t, &hw, &policy).unwrap();
        p.hull.iter().map(|c| c.format).collect()
    }

    fn h200() -> Hardware {
        Hardware::profile("nvidia-h200-141gb").unwrap()
    }

    /// A 64 × 64 MLP matrix named "w".
    fn matrix() -> TensorDesc {
        TensorDesc::new("w", Role::Mlp, &[64, 64]).unwrap()
    }

    fn start(t: &TensorDesc, hw: &Hardware, policy: &Policy) -> Prepared {
        prepare(t, hw, policy).unwrap()
    }

    #[test]
    fn an_unavailable_preferred_format_says_why_and_climbs_to_the_next_size() {
        let t = matrix();
        let hw = h200();
        // Forbidden by the policy: the next format of at least its bits.
        let policy = Policy {
            min_snr_db: 10.0,
            allowed: vec![Format::F32, Format::F16, Format::Q4_0],
            default_format: Some(Format::Q8_0),
            ..Policy::default()
        };
        let p = start(&t, &hw, &policy);
        assert_eq!(
            p.start_reason,
            "preferred Q8_0 unavailable (Q8_0 is not allowed by the policy) → F16"
        );
        assert_eq!(p.hull[0].format, Format::F16);
        // Allowed but not on this device: the device's reason.
        let mut no_fp16 = hw.clone();
        no_fp16.fp16_arithmetic = false;
        let policy = Policy {
            allowed: vec![Format::F32, Format::F16, Format::Q8_0],
            default_format: Some(Format::F16),
            ..policy
        };
        let p = start(&t, &no_fp16, &policy);
        assert_eq!(
            p.start_reason,
            "preferred F16 unavailable (F16 not used: the device has no FP16 arithmetic) → F32"
        );
    }

    #[test]
    fn a_preferred_format_above_every_allowed_one_starts_at_the_largest() {
        let hw = h200();
        let policy = Policy {
            min_snr_db: 10.0,
            allowed: vec![Format::Q4_0, Format::Q8_0],
            fallback_to_fp32: false,
            default_format: Some(Format::F16),
            ..Policy::default()
        };
        let t = matrix();
        let p = start(&t, &hw, &policy);
        assert_eq!(
            p.start_reason,
            "preferred F16 unavailable (F16 is not allowed by the policy) → Q8_0"
        );
        // Rows that are not whole blocks of the preferred format say so.
        let policy = Policy {
            allowed: vec![Format::F32, Format::F16, Format::Q8_0],
            default_format: Some(Format::Q8_0),
            ..policy
        };
        let odd = TensorDesc::new("w", Role::Mlp, &[64, 48]).unwrap();
        let p = start(&odd, &hw, &policy);
        assert_eq!(
            p.start_reason,
            "preferred Q8_0 unavailable (rows of 48 are not whole Q8_0 blocks) → F16"
        );
    }

    #[test]
    fn a_threshold_nothing_reaches_keeps_the_most_accurate_without_fp32() {
        let hw = h200();
        let policy = Policy {
            min_snr_db: 100.0,
            allowed: vec![Format::Q4_0, Format::Q8_0],
            fallback_to_fp32: false,
            ..Policy::default()
        };
        let t = matrix();
        let p = start(&t, &hw, &policy);
        assert_eq!(p.hull[0].format, Format::Q8_0);
        assert_eq!(
            p.start_reason,
            "no allowed format reaches 100.0 dB and fallback_to_fp32 is off: keeps Q8_0 (SNR 45.3 dB)"
        );
    }

    #[test]
    fn norms_are_exact_and_overrides_keep_their_error_source() {
        let hw = h200();
        let norm = TensorDesc::new("ln", Role::Norm, &[64]).unwrap();
        let p = start(&norm, &hw, &Policy::default());
        assert_eq!((p.source, p.fixed), (ErrorSource::Exact, true));
        assert_eq!(p.start_reason, "F32: norms and biases stay FP32");
        let policy = Policy {
            overrides: Policy::parse_overrides("w=q8_0").unwrap(),
            ..Policy::default()
        };
        let t = matrix();
        let p = start(&t, &hw, &policy);
        assert_eq!((p.source, p.fixed), (ErrorSource::Estimated, true));
        assert_eq!(p.hull[0].format, Format::Q8_0);
    }

    #[test]
    fn only_quantized_choices_carry_a_master_copy_in_training() {
        let t = matrix();
        let hw = h200();
        let policy = |preferred| Policy {
            training: true,
            master_weights: true,
            min_snr_db: 10.0,
            allowed: vec![Format::F32, Format::Q8_0],
            default_format: Some(preferred),
            ..Policy::default()
        };
        let numel = 64 * 64;
        let of = |f: Format| start(&t, &hw, &policy(f)).hull[0].clone();
        let (f32, q8) = (of(Format::F32), of(Format::Q8_0));
        assert_eq!((f32.format, q8.format), (Format::F32, Format::Q8_0));
        let policy = policy(Format::F32);
        assert_eq!(
            f32.bytes - f32.weight_bytes,
            policy.training_extra(numel, false)
        );
        assert_eq!(
            q8.bytes - q8.weight_bytes,
            policy.training_extra(numel, true)
        );
        assert_eq!(
            policy.training_extra(numel, true) - policy.training_extra(numel, false),
            4 * numel
        );
    }

    /// Measured SNRs: `given` for their formats, 10 dB for the rest.
    fn measured(given: &[(Format, f64)]) -> [f64; ALL_FORMATS.len()] {
        let mut snr = [10.0; ALL_FORMATS.len()];
        snr[Format::F32 as usize] = f64::INFINITY;
        for &(f, db) in given {
            snr[f as usize] = db;
        }
        snr
    }

    #[test]
    fn a_start_below_the_threshold_climbs_one_size_at_a_time() {
        let mut t = matrix();
        t.measured_snr_db = Some(measured(&[
            (Format::Q4_0, 20.0),
            (Format::Q5_0, 26.0),
            (Format::Q8_0, 40.0),
        ]));
        let hw = h200();
        let policy = |min_snr_db| Policy {
            min_snr_db,
            allowed: vec![Format::F32, Format::Q8_0, Format::Q5_0, Format::Q4_0],
            default_format: Some(Format::Q4_0),
            adaptive: false,
            ..Policy::default()
        };
        let p = start(&t, &hw, &policy(30.0));
        assert_eq!(
            p.start_reason,
            "preferred Q4_0; Q4_0 SNR 20.0 dB < 30.0 dB threshold → Q5_0; \
             Q5_0 SNR 26.0 dB < 30.0 dB threshold → Q8_0"
        );
        assert_eq!(p.hull[0].format, Format::Q8_0);
        assert_eq!(p.source, ErrorSource::Measured);
        // A threshold the last step meets exactly is reached.
        let p = start(&t, &hw, &policy(40.0));
        assert_eq!(p.hull[0].format, Format::Q8_0);
        assert!(p.start_reason.ends_with("→ Q8_0"), "{}", p.start_reason);
    }

    #[test]
    fn an_f32_start_alone_is_exact() {
        let t = matrix();
        let hw = h200();
        let policy = |format| Policy {
            default_format: Some(format),
            adaptive: false,
            ..Policy::default()
        };
        assert_eq!(
            start(&t, &hw, &policy(Format::F32)).source,
            ErrorSource::Exact
        );
        assert_eq!(
            start(&t, &hw, &policy(Format::Q8_0)).source,
            ErrorSource::Estimated
        );
    }

    /// The hull of a 64 × 64 tensor over F32, Q8_0, Q5_0 and Q4_0 with the
    /// measured SNRs given.
    fn hull_of(given: &[(Format, f64)]) -> Vec<Format> {
        let mut t = matrix();
        t.measured_snr_db = Some(measured(given));
        let policy = Policy {
            min_snr_db: 10.0,
            allowed: vec![Format::F32, Format::Q8_0, Format::Q5_0, Format::Q4_0],
            ..Policy::default()
        };
        let hw = h200();
        start(&t, &hw, &policy)
            .hull
            .iter()
            .map(|c| c.format)
            .collect()
    }

    #[test]
    fn the_hull_drops_a_point_above_its_neighbours_segment_and_keeps_one_below() {
        // Bytes 16384, 4352, 2816, 2304; errors 0, 1e-4, then Q5_0's, 5e-3.
        // On the segment from Q8_0 to Q4_0, 2816 bytes sits at 3.775e-3.
        let (q8, q4) = ((Format::Q8_0, 40.0), (Format::Q4_0, 23.0103));
        assert_eq!(
            hull_of(&[q8, (Format::Q5_0, 23.98), q4]),
            [Format::F32, Format::Q8_0, Format::Q4_0]
        );
        assert_eq!(
            hull_of(&[q8, (Format::Q5_0, 30.0), q4]),
            [Format::F32, Format::Q8_0, Format::Q5_0, Format::Q4_0]
        );
        // Decided from Q8_0's point, whose error is not zero: with Q8_0 at
        // 1e-3 the segment to Q4_0 passes 4e-3 at Q5_0's bytes; Q5_0 at
        // 4.1e-3 lies above it, at 3.9e-3 below.
        let q8 = (Format::Q8_0, 30.0);
        assert_eq!(
            hull_of(&[q8, (Format::Q5_0, 23.8722), q4]),
            [Format::F32, Format::Q8_0, Format::Q4_0]
        );
        assert_eq!(
            hull_of(&[q8, (Format::Q5_0, 24.0894), q4]),
            [Format::F32, Format::Q8_0, Format::Q5_0, Format::Q4_0]
        );
    }

    #[test]
    fn the_hull_keeps_convex_options_and_drops_dominated_ones() {
        let inf = f64::INFINITY;
        assert_eq!(
            hull_formats([
                inf, 70.0, 55.0, 45.0, 21.0, 22.0, 27.0, 21.5, 22.8, 28.0, 33.0
            ]),
            [Format::F32, Format::Q8_0, Format::Q4_0]
        );
        // A Q8_0 worse than Q4_0 is never worth its extra bytes.
        assert_eq!(
            hull_formats([
                inf, 70.0, 55.0, 20.0, 21.0, 22.0, 27.0, 21.5, 22.8, 28.0, 33.0
            ]),
            [Format::F32, Format::Q4_0]
        );
    }
}
