//! Dynamic loss scaling with PyTorch GradScaler's semantics, plus a floor.
//!
//! The loss is multiplied by `scale` before the backward pass; the gradients
//! are unscaled (multiplied by 1/scale) and checked for Inf/NaN; a step with a
//! non-finite gradient is skipped and the scale backs off; after
//! `growth_interval` finite steps in a row it grows.

use crate::error::{Error, ErrorKind, Result};

/// The scaler's settings (GradScaler's defaults, and a floor of 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaleSettings {
    pub initial_scale: f32,
    pub growth_factor: f32,
    pub backoff_factor: f32,
    pub growth_interval: u32,
    /// The scale never goes below this; a non-finite gradient at the floor is
    /// reported as [`ErrorKind::LossScaleUnderflow`].
    pub min_scale: f32,
    /// False for BF16 training (its range makes scaling needless): the scale
    /// stays 1, and unscale-and-check only checks.
    pub enabled: bool,
}

impl Default for LossScaleSettings {
    fn default() -> Self {
        LossScaleSettings {
            initial_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            min_scale: 1.0,
            enabled: true,
        }
    }
}

/// What the trainer should do with this step's gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDecision {
    /// All gradients were finite: apply the optimizer step.
    Apply,
    /// A gradient was non-finite: skip the optimizer step.
    Skip,
}

/// A scaler's state between two steps: what a checkpoint holds besides the
/// settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaleState {
    pub scale: f32,
    /// Finite steps in a row since the scale last changed.
    pub finite_steps: u32,
    /// A non-finite gradient was found since the last update.
    pub found_non_finite: bool,
}

/// A dynamic loss scaler.
#[derive(Debug, Clone)]
pub struct LossScaler {
    settings: LossScaleSettings,
    scale: f32,
    finite_steps: u32,
    found_non_finite: bool,
}

impl LossScaler {
    /// A scaler with checked settings.
    pub fn new(settings: LossScaleSettings) -> Result<LossScaler> {
        let s = &settings;
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !(positive(s.initial_scale) && positive(s.min_scale) && s.initial_scale >= s.min_scale) {
            return Err(Error::invalid(format!(
                "loss scale: initial_scale {} and min_scale {} must be finite, positive, and initial >= min",
                s.initial_scale, s.min_scale
            )));
        }
        if !(s.growth_factor.is_finite() && s.growth_factor > 1.0) {
            return Err(Error::invalid(format!(
                "loss scale: growth_factor {} must be > 1",
                s.growth_factor
            )));
        }
        if !(s.backoff_factor > 0.0 && s.backoff_factor < 1.0) {
            return Err(Error::invalid(format!(
                "loss scale: backoff_factor {} must be in (0, 1)",
                s.backoff_factor
            )));
        }
        if s.growth_interval == 0 {
            return Err(Error::invalid(
                "loss scale: growth_interval must be at least 1",
            ));
        }
        let scale = if s.enabled { s.initial_scale } else { 1.0 };
        Ok(LossScaler {
            settings,
            scale,
            finite_steps: 0,
            found_non_finite: false,
        })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &LossScaleSettings {
        &self.settings
    }

    /// Its state now.
    pub fn state(&self) -> LossScaleState {
        LossScaleState {
            scale: self.scale,
            finite_steps: self.finite_steps,
            found_non_finite: self.found_non_finite,
        }
    }

    /// Takes `state` (a checkpoint's) as its own, after checking that these
    /// settings can reach it: a finite scale, 1 when scaling is disabled, at
    /// least the floor otherwise, and fewer finite steps than the growth
    /// interval. Nothing changes on error.
    pub fn restore(&mut self, state: LossScaleState) -> Result<()> {
        let s = &self.settings;
        let scale_ok = if s.enabled {
            state.scale.is_finite() && state.scale >= s.min_scale
        } else {
            state.scale == 1.0
        };
        if !scale_ok {
            return Err(Error::invalid(format!(
                "loss scale checkpoint: scale {} is impossible for these settings \
                 (enabled {}, min_scale {})",
                state.scale, s.enabled, s.min_scale
            )));
        }
        if s.enabled && state.finite_steps >= s.growth_interval {
            return Err(Error::invalid(format!(
                "loss scale checkpoint: {} finite steps, but the scale grows after {}",
                state.finite_steps, s.growth_interval
            )));
        }
        self.scale = state.scale;
        self.finite_steps = state.finite_steps;
        self.found_non_finite = state.found_non_finite;
        Ok(())
    }

    /// The factor to multiply the loss by.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Unscales `grads` in place (×1/scale) and checks them; returns whether a
    /// non-finite value was found (remembered until [`LossScaler::update`]).
    pub fn unscale_and_check(&mut self, grads: &mut [f32]) -> bool {
        let inverse = 1.0 / self.scale;
        let mut finite = true;
        for g in grads.iter_mut() {
            *g *= inverse;
            finite &= g.is_finite();
        }
        self.found_non_finite |= !finite;
        !finite
    }

    /// 1/scale, the factor unscale_and_check multiplies by.
    pub fn inverse(&self) -> f32 {
        1.0 / self.scale
    }

    /// Notes the outcome of a check made elsewhere (the Vulkan kernel's flag),
    /// remembered until [`LossScaler::update`] like unscale_and_check's.
    pub fn report_non_finite(&mut self, found: bool) {
        self.found_non_finite |= found;
    }

    /// Ends the step: decides whether to apply it and adjusts the scale.
    /// At the floor, a non-finite step is [`ErrorKind::LossScaleUnderflow`]
    /// (the step must be skipped; the scale stays at the floor).
    pub fn update(&mut self) -> Result<StepDecision> {
        let non_finite = std::mem::take(&mut self.found_non_finite);
        if !non_finite {
            self.finite_steps += 1;
            if self.settings.enabled && self.finite_steps >= self.settings.growth_interval {
                self.scale = (self.scale * self.settings.growth_factor).min(f32::MAX);
                self.finite_steps = 0;
            }
            return Ok(StepDecision::Apply);
        }
        self.finite_steps = 0;
        if !self.settings.enabled || self.scale <= self.settings.min_scale {
            return Err(Error::new(
                ErrorKind::LossScaleUnderflow,
                format!(
                    "non-finite gradients with the loss scale already at its floor {} (skip this step; the gradients overflow unscaled)",
                    self.scale
                ),
            ));
        }
        self.scale = (self.scale * self.settings.backoff_factor).max(self.settings.min_scale);
        Ok(StepDecision::Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_after_the_interval_and_backs_off_on_overflow() {
        let mut s = LossScaler::new(LossScaleSettings {
            growth_interval: 3,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.scale(), 65536.0);
        for _ in 0..2 {
            assert_eq!(s.update().unwrap(), StepDecision::Apply);
        }
        assert_eq!(s.scale(), 65536.0);
        s.update().unwrap();
        assert_eq!(s.scale(), 131072.0);
        let mut g = [1.0, f32::INFINITY];
        assert!(s.unscale_and_check(&mut g));
        assert_eq!(s.update().unwrap(), StepDecision::Skip);
        assert_eq!(s.scale(), 65536.0);
        // The growth count restarted.
        s.update().unwrap();
        s.update().unwrap();
        assert_eq!(s.scale(), 65536.0);
    }

    #[test]
    fn the_floor_holds_and_is_reported() {
        let mut s = LossScaler::new(LossScaleSettings {
            initial_scale: 3.0,
            min_scale: 1.0,
            ..Default::default()
        })
        .unwrap();
        let mut g = [f32::NAN];
        s.unscale_and_check(&mut g);
        assert_eq!(s.update().unwrap(), StepDecision::Skip);
        assert_eq!(s.scale(), 1.5);
        s.unscale_and_check(&mut g);
        assert_eq!(s.update().unwrap(), StepDecision::Skip);
        assert_eq!(s.scale(), 1.0);
        s.unscale_and_check(&mut g);
        assert_eq!(
            s.update().unwrap_err().kind(),
            ErrorKind::LossScaleUnderflow
        );
        assert_eq!(s.scale(), 1.0);
    }

    #[test]
    fn disabled_scaling_checks_only() {
        let mut s = LossScaler::new(LossScaleSettings {
            enabled: false,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.scale(), 1.0);
        let mut g = [2.0f32, 4.0];
        assert!(!s.unscale_and_check(&mut g));
        assert_eq!(g, [2.0, 4.0]);
        for _ in 0..5000 {
            s.update().unwrap();
        }
        assert_eq!(s.scale(), 1.0);
    }

    #[test]
    fn unscale_multiplies_by_the_inverse_and_remembers_until_update() {
        let mut s = LossScaler::new(LossScaleSettings {
            initial_scale: 8.0,
            growth_interval: 1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.inverse(), 0.125);
        let mut g = [16.0f32, -4.0, 0.5];
        assert!(!s.unscale_and_check(&mut g));
        assert_eq!(g, [2.0, -0.5, 0.0625]);
        // A non-finite value anywhere is found, not only in the last element.
        let mut g = [f32::INFINITY, 1.0];
        assert!(s.unscale_and_check(&mut g));
        // A later finite check does not clear it: the step is still skipped.
        let mut g = [1.0f32];
        assert!(!s.unscale_and_check(&mut g));
        assert_eq!(s.update().unwrap(), StepDecision::Skip);
        assert_eq!(s.scale(), 4.0);
        // update() consumed the flag: the next step applies (and grows, interval 1).
        assert_eq!(s.update().unwrap(), StepDecision::Apply);
        assert_eq!(s.scale(), 8.0);
    }

    #[test]
    fn a_reported_overflow_counts_like_a_found_one() {
        let mut s = LossScaler::new(LossScaleSettings::default()).unwrap();
        s.report_non_finite(false);
        assert_eq!(s.update().unwrap(), StepDecision::Apply);
        s.report_non_finite(true);
        s.report_non_finite(false);
        assert_eq!(s.update().unwrap(), StepDecision::Skip);
        assert_eq!(s.scale(), 32768.0);
    }

    #[test]
    fn backoff_stops_at_the_floor_and_growth_at_f32_max() {
        let mut s = LossScaler::new(LossScaleSettings {
            initial_scale: 3.0,
            min_scale: 2.0,
            ..Default::default()
        })
        .unwrap();
        s.report_non_finite(true);
        assert_eq!(s.update().unwrap(), StepDecision::Skip);
        assert_eq!(s.scale(), 2.0, "1.5 is clamped to the floor");
        let mut s = LossScaler::new(LossScaleSettings {
            initial_scale: f32::MAX,
            growth_interval: 1,
            ..Default::default()
        })
        .unwrap();
        s.update().unwrap();
        assert_eq!(s.scale(), f32::MAX);
    }

    #[test]
    fn disabled_scaling_reports_every_overflow_as_underflow() {
        let mut s = LossScaler::new(LossScaleSettings {
            enabled: false,
            ..Default::default()
        })
        .unwrap();
        s.report_non_finite(true);
        assert_eq!(
            s.update().unwrap_err().kind(),
            ErrorKind::LossScaleUnderflow
        );
        assert_eq!(s.scale(), 1.0);
    }

    #[test]
    fn bad_settings_are_rejected() {
        for bad in [
            LossScaleSettings {
                initial_scale: 0.5,
                ..Default::default()
            },
            LossScaleSettings {
                growth_factor: 1.0,
                ..Default::default()
            },
            LossScaleSettings {
                backoff_factor: 1.0,
                ..Default::default()
            },
            LossScaleSettings {
                growth_interval: 0,
                ..Default::default()
            },
            LossScaleSettings {
                min_scale: f32::NAN,
                ..Default::default()
            },
            LossScaleSettings {
                min_scale: 0.0,
                ..Default::default()
            },
            LossScaleSettings {
                initial_scale: f32::INFINITY,
                ..Default::default()
            },
            LossScaleSettings {
                initial_scale: 2.0,
                min_scale: 4.0,
                ..Default::default()
            },
            LossScaleSettings {
                growth_factor: f32::INFINITY,
                ..Default::default()
            },
            LossScaleSettings {
                backoff_factor: 0.0,
                ..Default::default()
            },
            LossScaleSettings {
                backoff_factor: f32::NAN,
                ..Default::default()
            },
        ] {
            assert!(LossScaler::new(bad).is_err(), "{bad:?}");
        }
        // The edges that are allowed.
        for good in [
            LossScaleSettings {
                initial_scale: 1.0,
                min_scale: 1.0,
                ..Default::default()
            },
            LossScaleSettings {
                growth_interval: 1,
                growth_factor: 1.0001,
                backoff_factor: 0.9999,
                ..Default::default()
            },
        ] {
            assert!(LossScaler::new(good).is_ok(), "{good:?}");
        }
    }
}
