//! Policy: what the planner may choose and what it must respect.

use super::model::{ALL_ROLES, Role};
use crate::error::{Error, Result};
use crate::format::{ALL_FORMATS, Format};
use regex::Regex;

const MIB: u64 = 1 << 20;

/// How optimizer state is stored in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerState {
    /// Adam's two moments in FP32: 8 bytes per parameter.
    Fp32,
    /// Adam's two moments in 8 bits with an FP32 scale per block of
    /// [`OPTIMIZER_BLOCK`] values: about 2.03 bytes per parameter (FP32 for
    /// tensors under [`OPTIMIZER_MIN_8BIT`] elements), as `train::adam` keeps them.
    Blockwise8,
}

/// Values per scale of the 8-bit blockwise optimizer state (as `train::adam` stores it).
pub const OPTIMIZER_BLOCK: u64 = crate::train::adam::STATE_BLOCK as u64;
/// Tensors smaller than this keep FP32 optimizer state (as `train::adam` does).
pub const OPTIMIZER_MIN_8BIT: u64 = crate::train::adam::MIN_8BIT_ELEMENTS as u64;

/// A per-tensor override: tensors whose name matches `pattern` get `format`
/// (llama.cpp's `--tensor-type regex=type`).
#[derive(Debug, Clone)]
pub struct Override {
    pub pattern: Regex,
    pub format: Format,
    /// The override as written ("attn_v=q8_0").
    pub text: String,
}

/// Converts a cosine-similarity accuracy threshold into the per-tensor SNR it
/// implies: for a reconstruction y = x + e with e uncorrelated to x,
/// cos(x, y) = 1/sqrt(1 + 1/snr), so snr = c²/(1 − c²).
pub fn cosine_to_snr_db(cosine: f64) -> f64 {
    10.0 * (cosine * cosine / (1.0 - cosine * cosine)).log10()
}

/// Everything the planner is told besides the model and the hardware.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Formats the planner may choose (F32 is always possible for norms and
    /// biases, and as the end of the fallback chain when `fallback_to_fp32`).
    pub allowed: Vec<Format>,
    /// Least acceptable SNR of a tensor, in dB.
    pub min_snr_db: f64,
    /// Training: gradients, optimizer state and an activation reserve count too.
    pub training: bool,
    pub optimizer_state: OptimizerState,
    /// Format gradients are kept in (F32, F16 or BF16).
    pub gradient_format: Format,
    /// Training keeps an FP32 master copy of every quantized weight.
    pub master_weights: bool,
    /// Device bytes kept for activations and workspace; None = the default
    /// (in training 1/8 of the device, at most 1 GiB; 0 in inference).
    pub activation_reserve_bytes: Option<u64>,
    /// Device bytes kept free; None = the default: 1024 MiB or 10% of the
    /// device, whichever is smaller.
    pub safety_margin_bytes: Option<u64>,
    /// Extra cap on the device bytes the plan may use (0 = none).
    pub device_cap_bytes: u64,
    /// Cap on the plan's device bytes as a fraction of what the model takes with
    /// every tensor in F32 on the device (1 = none; memory_reduction_target).
    pub max_fraction_of_fp32: f64,
    /// Tensors may be placed in host memory when the device is too small.
    pub allow_host_offload: bool,
    /// Lower precision before offloading (true) or offload before lowering.
    pub prefer_device: bool,
    /// The planner may lower formats below the preferred ones to fit the budget.
    pub adaptive: bool,
    /// F32 ends the fallback chain; when false a tensor that no allowed format
    /// serves within the threshold keeps the most accurate allowed format.
    pub fallback_to_fp32: bool,
    /// Preferred format for all roles (None = the most accurate allowed).
    pub default_format: Option<Format>,
    /// Preferred format per role (indexed like [`ALL_ROLES`]), over `default_format`.
    pub role_formats: [Option<Format>; 7],
    /// Per-name overrides; the first matching wins.
    pub overrides: Vec<Override>,
    /// Notes from where the policy came from (the config's warnings), copied
    /// into the notes of every plan made with it.
    pub notes: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed: vec![
                Format::F32,
                Format::F16,
                Format::BF16,
                Format::Q8_0,
                Format::Q6_K,
                Format::Q5_K,
                Format::Q5_0,
                Format::Q4_0,
            ],
            min_snr_db: 20.0,
            training: false,
            optimizer_state: OptimizerState::Fp32,
            gradient_format: Format::F32,
            master_weights: false,
            activation_reserve_bytes: None,
            safety_margin_bytes: None,
            device_cap_bytes: 0,
            max_fraction_of_fp32: 1.0,
            allow_host_offload: true,
            prefer_device: true,
            adaptive: true,
            fallback_to_fp32: true,
            default_format: None,
            role_formats: [None; 7],
            overrides: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl Policy {
    /// Checks the policy is coherent.
    pub fn check(&self) -> Result<()> {
        if self.allowed.is_empty() {
            return Err(Error::invalid("the policy allows no format"));
        }
        if self.min_snr_db.is_nan() {
            return Err(Error::invalid("the accuracy threshold (min_snr_db) is NaN"));
        }
        if !matches!(
            self.gradient_format,
            Format::F32 | Format::F16 | Format::BF16
        ) {
            return Err(Error::invalid(format!(
                "gradients can be kept in F32, F16 or BF16, not {}",
                self.gradient_format.name()
            )));
        }
        if !(self.max_fraction_of_fp32 > 0.0 && self.max_fraction_of_fp32 <= 1.0) {
            return Err(Error::invalid(format!(
                "max_fraction_of_fp32 {} is outside (0, 1]",
                self.max_fraction_of_fp32
            )));
        }
        Ok(())
    }

    /// Whether `format` is allowed.
    pub fn allows(&self, format: Format) -> bool {
        self.allowed.contains(&format)
    }

    /// Sets the allowed formats from a bit mask (bit i = format with C value i).
    pub fn set_allowed_mask(&mut self, mask: u32) -> Result<()> {
        if mask >> ALL_FORMATS.len() != 0 {
            return Err(Error::invalid(format!(
                "allowed-format mask {mask:#x} has bits beyond the {} formats",
                ALL_FORMATS.len()
            )));
        }
        self.allowed = ALL_FORMATS
            .iter()
            .copied()
            .filter(|f| mask & (1 << *f as u32) != 0)
            .collect();
        Ok(())
    }

    /// The allowed formats as a bit mask.
    pub fn allowed_mask(&self) -> u32 {
        self.allowed.iter().fold(0, |m, f| m | 1 << *f as u32)
    }

    /// Parses overrides written as `regex=format[,regex=format...]`.
    pub fn parse_overrides(text: &str) -> Result<Vec<Override>> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (pattern, format) = item.rsplit_once('=').ok_or_else(|| {
                    Error::invalid(format!(
                        "override '{item}' must be written regex=format (e.g. attn_v=q8_0)"
                    ))
                })?;
                let regex = Regex::new(pattern.trim())
                    .map_err(|e| Error::invalid(format!("override '{item}': bad pattern: {e}")))?;
                Ok(Override {
                    pattern: regex,
                    format: Format::from_name(format)?,
                    text: item.to_string(),
                })
            })
            .collect()
    }

    /// The override for `name`, if any.
    pub fn override_for(&self, name: &str) -> Option<&Override> {
        self.overrides.iter().find(|o| o.pattern.is_match(name))
    }

    /// The preferred format of `role`, if the policy names one.
    pub fn preferred_for(&self, role: Role) -> Option<Format> {
        let index = ALL_ROLES.iter().position(|r| *r == role).unwrap_or(0);
        self.role_formats[index].or(self.default_format)
    }

    /// Device bytes kept free on a device of `device_bytes`.
    pub fn safety_margin(&self, device_bytes: u64) -> u64 {
        self.safety_margin_bytes
            .unwrap_or_else(|| (1024 * MIB).min(device_bytes / 10))
    }

    /// Device bytes kept for activations on a device of `device_bytes`.
    pub fn activation_reserve(&self, device_bytes: u64) -> u64 {
        self.activation_reserve_bytes.unwrap_or(if self.training {
            (device_bytes / 8).min(1024 * MIB)
        } else {
            0
        })
    }

    /// Bytes a tensor of `numel` parameters needs besides its weights: in
    /// training its gradient, its optimizer state and an FP32 master copy when
    /// asked for (`quantized` = the weight format is not F32).
    pub fn training_extra(&self, numel: u64, quantized: bool) -> u64 {
        if !self.training {
            return 0;
        }
        let gradients = numel * self.gradient_format.block_bytes() as u64;
        let optimizer = match self.optimizer_state {
            OptimizerState::Fp32 => 8 * numel,
            OptimizerState::Blockwise8 if numel < OPTIMIZER_MIN_8BIT => 8 * numel,
            OptimizerState::Blockwise8 => 2 * (numel + 4 * numel.div_ceil(OPTIMIZER_BLOCK)),
        };
        let master = if self.master_weights && quantized {
            4 * numel
        } else {
            0
        };
        gradients + optimizer + master
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_check_refuses_its_case_and_the_bounds_are_inclusive_above() {
        assert!(Policy::default().check().is_ok());
        let refused = |p: Policy, words: &str| {
            let e = p.check().unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
            assert!(e.message().contains(words), "{}", e.message());
        };
        refused(
            Policy {
                allowed: Vec::new(),
                ..Policy::default()
            },
            "allows no format",
        );
        refused(
            Policy {
                min_snr_db: f64::NAN,
                ..Policy::default()
            },
            "is NaN",
        );
        refused(
            Policy {
                gradient_format: Format::Q8_0,
                ..Policy::default()
            },
            "not Q8_0",
        );
        for fraction in [0.0, -0.5, 1.0001, f64::NAN] {
            refused(
                Policy {
                    max_fraction_of_fp32: fraction,
                    ..Policy::default()
                },
                "is outside (0, 1]",
            );
        }
        for fraction in [1.0, 0.01] {
            let p = Policy {
                max_fraction_of_fp32: fraction,
                ..Policy::default()
            };
            assert!(p.check().is_ok(), "{fraction}");
        }
        for gradients in [Format::F32, Format::F16, Format::BF16] {
            let p = Policy {
                gradient_format: gradients,
                ..Policy::default()
            };
            assert!(p.check().is_ok(), "{gradients:?}");
        }
    }

    #[test]
    fn the_allowed_formats_round_trip_through_their_mask() {
        let mut p = Policy::default();
        let mask = (1 << Format::Q4_0 as u32) | (1 << Format::F16 as u32);
        p.set_allowed_mask(mask).unwrap();
        assert_eq!(p.allowed, [Format::F16, Format::Q4_0]);
        assert_eq!(p.allowed_mask(), mask);
        p.set_allowed_mask(0).unwrap();
        assert!(p.allowed.is_empty());
        assert_eq!(p.allowed_mask(), 0);
        let every = (1u32 << ALL_FORMATS.len()) - 1;
        p.set_allowed_mask(every).unwrap();
        assert_eq!(p.allowed, ALL_FORMATS);
        assert_eq!(p.allowed_mask(), every);
        let e = p.set_allowed_mask(every + 1).unwrap_err();
        assert!(e.message().contains("has bits beyond"), "{}", e.message());
        assert_eq!(p.allowed, ALL_FORMATS, "a refused mask changes nothing");
        // A format listed twice is one bit.
        p.allowed = vec![Format::Q8_0, Format::Q8_0];
        assert_eq!(p.allowed_mask(), 1 << Format::Q8_0 as u32);
    }

    #[test]
    fn training_needs_gradients_moments_and_a_master_copy_per_parameter() {
        let training = |optimizer_state, master_weights| Policy {
            training: true,
            gradient_format: Format::F16,
            optimizer_state,
            master_weights,
            ..Policy::default()
        };
        assert_eq!(Policy::default().training_extra(1 << 20, true), 0);
        let n = 3 * OPTIMIZER_BLOCK + 5;
        // Gradients in F16 (2 bytes), FP32 moments (8), the master copy (4)
        // only for a quantized weight.
        let fp32 = training(OptimizerState::Fp32, true);
        assert_eq!(fp32.training_extra(n, true), (2 + 8 + 4) * n);
        assert_eq!(fp32.training_extra(n, false), (2 + 8) * n);
        assert_eq!(
            training(OptimizerState::Fp32, false).training_extra(n, true),
            10 * n
        );
        // 8-bit moments: a byte each and an f32 scale per block of each,
        // from OPTIMIZER_MIN_8BIT parameters; FP32 moments below.
        let q8 = training(OptimizerState::Blockwise8, false);
        let big = OPTIMIZER_MIN_8BIT + 5;
        let blocks = big.div_ceil(OPTIMIZER_BLOCK);
        assert_eq!(
            q8.training_extra(big, true),
            2 * big + 2 * (big + 4 * blocks)
        );
        let small = OPTIMIZER_MIN_8BIT - 1;
        assert_eq!(q8.training_extra(small, true), (2 + 8) * small);
        let least = OPTIMIZER_MIN_8BIT;
        let blocks = least.div_ceil(OPTIMIZER_BLOCK);
        assert_eq!(
            q8.training_extra(least, true),
            2 * least + 2 * (least + 4 * blocks)
        );
    }

    #[test]
    fn cosine_maps_to_snr() {
        assert!((cosine_to_snr_db(0.99) - 16.92).abs() < 0.01);
        assert!((cosine_to_snr_db(0.999) - 26.98).abs() < 0.01);
    }

    #[test]
    fn overrides_parse_and_match() {
        let o = Policy::parse_overrides(r"attn_v=q8_0, lm_head\..*=f16").unwrap();
        assert_eq!(o.len(), 2);
        let p = Policy {
            overrides: o,
            ..Policy::default()
        };
        assert_eq!(
            p.override_for("lm_head.weight").unwrap().format,
            Format::F16
        );
        assert!(p.override_for("mlp").is_none());
        assert!(Policy::parse_overrides("attn_v").is_err());
        assert!(Policy::parse_overrides("(=q8_0").is_err());
        assert!(Policy::parse_overrides("x=q5_1").is_err());
    }

    #[test]
    fn default_margin_is_the_smaller_of_1gib_and_10_percent() {
        let p = Policy::default();
        assert_eq!(p.safety_margin(16 << 30), 1 << 30);
        assert_eq!(p.safety_margin(4 << 30), (4u64 << 30) / 10);
    }
}
