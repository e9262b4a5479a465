//! Adam / AdamW on FP32 master weights, with the moments stored either in
//! FP32 or blockwise in 8 bits. The arithmetic of a step is
//! [`super::adam_math`]'s, which the Vulkan kernels repeat bit for bit.
//!
//! The 8-bit state keeps, per block of 256 values, an f32 scale and 256 one-byte
//! codes. The codes are companded (finer near zero, where most moments are):
//! the first moment m as `q = round(127·sign(m)·sqrt(|m|/absmax))`, decoded as
//! `absmax·((q/127)·|q/127|)`; the second moment v ≥ 0 as
//! `q = round(255·(v/max)^(1/4))`, decoded as `max·((q/255)²·(q/255)²)`. State
//! is 2 bytes plus 8/256 bytes per weight: 25.4% of FP32 Adam's 8 bytes.
//! Tensors under [`MIN_8BIT_ELEMENTS`] keep FP32 state (as bitsandbytes
//! does): their state is small and often belongs to sensitive parameters.

use super::adam_math::{
    StepScalars, decode_signed, decode_unsigned, encode_signed, encode_unsigned, update,
};
use crate::alloc;
use crate::error::{Error, Result};

/// Values per quantization block of the 8-bit state.
pub const STATE_BLOCK: usize = 256;
/// Tensors with fewer elements keep FP32 state.
pub const MIN_8BIT_ELEMENTS: usize = 4096;

/// How the optimizer stores its moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFormat {
    Fp32,
    /// Blockwise companded 8-bit codes (FP32 for small tensors).
    Int8Blockwise,
}

/// How the moments of a tensor are actually stored: [`StateFormat`] after
/// the small-tensor rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateLayout {
    /// m and v as f32, `len` each.
    Fp32,
    /// m as i8 codes and v as u8 codes (`len` each), then an f32 scale per
    /// block of [`STATE_BLOCK`] for m, and one for v.
    Int8Blocks,
}

impl StateLayout {
    /// The layout `format` gives a tensor of `len` elements.
    pub fn of(format: StateFormat, len: usize) -> StateLayout {
        if format == StateFormat::Int8Blockwise && len >= MIN_8BIT_ELEMENTS {
            StateLayout::Int8Blocks
        } else {
            StateLayout::Fp32
        }
    }

    /// Bytes of state for `len` elements: 8 per element in FP32; 2 per
    /// element and 8 per block in 8 bits. None when it overflows.
    pub fn bytes(self, len: usize) -> Option<usize> {
        match self {
            StateLayout::Fp32 => len.checked_mul(8),
            StateLayout::Int8Blocks => len
                .checked_mul(2)?
                .checked_add(len.div_ceil(STATE_BLOCK).checked_mul(8)?),
        }
    }
}

/// Adam's hyper-parameters (lr is given per step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamSettings {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay (AdamW); 0 for plain Adam.
    pub weight_decay: f32,
    pub state: StateFormat,
}

impl Default for AdamSettings {
    fn default() -> Self {
        AdamSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            state: StateFormat::Fp32,
        }
    }
}

impl AdamSettings {
    /// Refuses betas outside [0, 1), an eps that is not positive and finite,
    /// a weight decay that is negative or not finite.
    pub fn check(&self) -> Result<()> {
        let in_unit = |b: f32| (0.0..1.0).contains(&b);
        if !(in_unit(self.beta1) && in_unit(self.beta2)) {
            return Err(Error::invalid(format!(
                "adam: beta1 {} and beta2 {} must be in [0, 1)",
                self.beta1, self.beta2
            )));
        }
        let eps_ok = self.eps.is_finite() && self.eps > 0.0;
        let decay_ok = self.weight_decay.is_finite() && self.weight_decay >= 0.0;
        if !(eps_ok && decay_ok) {
            return Err(Error::invalid(format!(
                "adam: eps {} must be positive and weight_decay {} non-negative",
                self.eps, self.weight_decay
            )));
        }
        Ok(())
    }
}

/// Refuses a learning rate that is negative or not finite.
pub fn check_learning_rate(lr: f32) -> Result<()> {
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(Error::invalid(format!(
            "adam: learning rate {lr} must be finite and >= 0"
        )));
    }
    Ok(())
}

/// The moments of one tensor, in the layout [`StateLayout`] names.
#[derive(Debug)]
pub enum Moments {
    Fp32 {
        m: Vec<f32>,
        v: Vec<f32>,
    },
    Int8 {
        m_codes: Vec<i8>,
        v_codes: Vec<u8>,
        m_scale: Vec<f32>,
        v_scale: Vec<f32>,
    },
}

/// The optimizer state of one parameter tensor.
#[derive(Debug)]
pub struct Adam {
    settings: AdamSettings,
    len: usize,
    steps: u32,
    moments: Moments,
}

impl Adam {
    /// State for a tensor of `len` parameters; a `len` whose state cannot be
    /// allocated is SizeOverflow or OutOfMemory, never an abort.
    pub fn new(settings: AdamSettings, len: usize) -> Result<Adam> {
        settings.check()?;
        let moments = match StateLayout::of(settings.state, len) {
            StateLayout::Int8Blocks => {
                let blocks = len.div_ceil(STATE_BLOCK);
                Moments::Int8 {
                    m_codes: alloc::filled(len, 0, "adam: first-moment codes")?,
                    v_codes: alloc::filled(len, 0, "adam: second-moment codes")?,
                    m_scale: alloc::filled(blocks, 0.0, "adam: first-moment scales")?,
                    v_scale: alloc::filled(blocks, 0.0, "adam: second-moment scales")?,
                }
            }
            StateLayout::Fp32 => Moments::Fp32 {
                m: alloc::filled(len, 0.0, "adam: first moments")?,
                v: alloc::filled(len, 0.0, "adam: second moments")?,
            },
        };
        Ok(Adam {
            settings,
            len,
            steps: 0,
            moments,
        })
    }

    /// Parameters this state is for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &AdamSettings {
        &self.settings
    }

    /// Steps applied so far (the t of the last step).
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// How its moments are stored.
    pub fn layout(&self) -> StateLayout {
        match self.moments {
            Moments::Fp32 { .. } => StateLayout::Fp32,
            Moments::Int8 { .. } => StateLayout::Int8Blocks,
        }
    }

    /// The moments (for checkpoints and tests).
    pub fn moments(&self) -> &Moments {
        &self.moments
    }

    /// The moments and the step count, to be replaced together (a
    /// checkpoint's load, which checked the layout first).
    pub(crate) fn state_mut(&mut self) -> (&mut Moments, &mut u32) {
        (&mut self.moments, &mut self.steps)
    }

    /// Bytes of optimizer state held, and what FP32 Adam would hold (8 per parameter).
    pub fn state_bytes(&self) -> (usize, usize) {
        let held = match &self.moments {
            Moments::Fp32 { m, v } => 4 * (m.len() + v.len()),
            Moments::Int8 {
                m_codes,
                v_codes,
                m_scale,
                v_scale,
            } => m_codes.len() + v_codes.len() + 4 * (m_scale.len() + v_scale.len()),
        };
        (held, 8 * self.len)
    }

    /// One optimizer step at learning rate `lr`: updates `params` from `grads`.
    pub fn step(&mut self, lr: f32, params: &mut [f32], grads: &[f32]) -> Result<()> {
        if params.len() != self.len || grads.len() != self.len {
            return Err(Error::invalid(format!(
                "adam: state is for {} parameters but params has {} and grads {}",
                self.len,
                params.len(),
                grads.len()
            )));
        }
        check_learning_rate(lr)?;
        self.steps = self.steps.saturating_add(1);
        let s = StepScalars::new(&self.settings, self.steps, lr);
        match &mut self.moments {
            Moments::Fp32 { m, v } => {
                for i in 0..params.len() {
                    (params[i], m[i], v[i]) = update(&s, params[i], grads[i], m[i], v[i]);
                }
            }
            Moments::Int8 {
                m_codes,
                v_codes,
                m_scale,
                v_scale,
            } => {
                let (mut m, mut v) = ([0.0f32; STATE_BLOCK], [0.0f32; STATE_BLOCK]);
                for (b, start) in (0..self.len).step_by(STATE_BLOCK).enumerate() {
                    let end = (start + STATE_BLOCK).min(self.len);
                    let width = end - start;
                    decode_signed(&m_codes[start..end], m_scale[b], &mut m[..width]);
                    decode_unsigned(&v_codes[start..end], v_scale[b], &mut v[..width]);
                    for j in 0..width {
                        let i = start + j;
                        (params[i], m[j], v[j]) = update(&s, params[i], grads[i], m[j], v[j]);
                    }
                    m_scale[b] = encode_signed(&m[..width], &mut m_codes[start..end]);
                    v_scale[b] = encode_unsigned(&v[..width], &mut v_codes[start..end]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises Σ c_i (p_i − t_i)² from p = 0 and returns the final loss.
    fn quadratic(state: StateFormat, steps: usize) -> (Vec<f32>, f32) {
        let n = 8192;
        let target: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let curvature: Vec<f32> = (0..n).map(|i| 0.1 + (i % 7) as f32).collect();
        let mut p = vec![0.0f32; n];
        let mut adam = Adam::new(
            AdamSettings {
                state,
                ..Default::default()
            },
            n,
        )
        .unwrap();
        let mut g = vec![0.0f32; n];
        for _ in 0..steps {
            for i in 0..n {
                g[i] = 2.0 * curvature[i] * (p[i] - target[i]);
            }
            adam.step(0.01, &mut p, &g).unwrap();
        }
        let loss = (0..n)
            .map(|i| curvature[i] * (p[i] - target[i]).powi(2))
            .sum::<f32>()
            / n as f32;
        (p, loss)
    }

    #[test]
    fn eight_bit_state_tracks_fp32_adam_on_a_quadratic() {
        let (p32, loss32) = quadratic(StateFormat::Fp32, 400);
        let (p8, loss8) = quadratic(StateFormat::Int8Blockwise, 400);
        let start = {
            let (_, l) = quadratic(StateFormat::Fp32, 0);
            l
        };
        assert!(
            loss32 < 0.01 * start,
            "fp32 Adam converges: {loss32} from {start}"
        );
        assert!(
            loss8 < 0.02 * start,
            "8-bit Adam converges: {loss8} from {start}"
        );
        let max_gap = p32
            .iter()
            .zip(&p8)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max_gap < 0.1, "parameters differ by up to {max_gap}");
    }

    #[test]
    fn state_is_about_a_quarter_of_fp32_and_small_tensors_stay_fp32() {
        let big = Adam::new(
            AdamSettings {
                state: StateFormat::Int8Blockwise,
                ..Default::default()
            },
            1 << 20,
        )
        .unwrap();
        let (held, fp32) = big.state_bytes();
        assert!((held as f64) <= 0.26 * fp32 as f64, "{held} of {fp32}");
        let small = Adam::new(
            AdamSettings {
                state: StateFormat::Int8Blockwise,
                ..Default::default()
            },
            4095,
        )
        .unwrap();
        assert_eq!(small.state_bytes(), (8 * 4095, 8 * 4095));
    }

    #[test]
    fn codes_round_trip_closely() {
        let values: Vec<f32> = (0..256).map(|i| ((i as f32) - 128.0) * 1e-3).collect();
        let mut codes = [0i8; 256];
        let mut back = [0.0f32; 256];
        let absmax = encode_signed(&values, &mut codes);
        decode_signed(&codes, absmax, &mut back);
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() <= 0.016 * absmax.max(1e-12), "{a} vs {b}");
        }
    }

    /// PyTorch's AdamW update of one value in f64, the specification the f32
    /// step follows; returns (p, m, v).
    fn reference_step(
        s: &AdamSettings,
        t: i32,
        lr: f64,
        (p, m, v): (f64, f64, f64),
        g: f64,
    ) -> (f64, f64, f64) {
        let (b1, b2) = (s.beta1 as f64, s.beta2 as f64);
        let m = b1 * m + (1.0 - b1) * g;
        let v = b2 * v + (1.0 - b2) * g * g;
        let m_hat = m / (1.0 - b1.powi(t));
        let v_hat = v / (1.0 - b2.powi(t));
        let p = p - lr * (m_hat / (v_hat.sqrt() + s.eps as f64) + s.weight_decay as f64 * p);
        (p, m, v)
    }

    fn gradient(i: usize, step: usize) -> f32 {
        (((i * 7919 + step * 104_729) % 2001) as f32 - 1000.0) * 1e-3
    }

    #[test]
    fn fp32_steps_follow_the_reference_formula() {
        // Distinct betas, an eps that matters, and decay: every term shows.
        let settings = AdamSettings {
            beta1: 0.8,
            beta2: 0.95,
            eps: 1e-2,
            weight_decay: 0.05,
            state: StateFormat::Fp32,
        };
        let n = 37;
        let mut adam = Adam::new(settings, n).unwrap();
        let mut params: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 1.5).collect();
        let mut reference: Vec<(f64, f64, f64)> =
            params.iter().map(|&p| (p as f64, 0.0, 0.0)).collect();
        for step in 1..=5 {
            let lr = 0.05 * step as f32;
            let grads: Vec<f32> = (0..n).map(|i| gradient(i, step)).collect();
            adam.step(lr, &mut params, &grads).unwrap();
            for (r, &g) in reference.iter_mut().zip(&grads) {
                *r = reference_step(&settings, step as i32, lr as f64, *r, g as f64);
            }
            for (i, (&p, r)) in params.iter().zip(&reference).enumerate() {
                // f32 arithmetic on values of order 1: a few ulps of 1.
                assert!(
                    (p as f64 - r.0).abs() <= 1e-5,
                    "step {step}, parameter {i}: {p} vs {}",
                    r.0
                );
            }
        }
        let Moments::Fp32 { m, v } = &adam.moments else {
            panic!("small tensors keep FP32 state");
        };
        for i in 0..n {
            assert!((m[i] as f64 - reference[i].1).abs() <= 1e-6, "m[{i}]");
            assert!((v[i] as f64 - reference[i].2).abs() <= 1e-7, "v[{i}]");
        }
    }

    #[test]
    fn eight_bit_state_holds_the_moments_within_one_code() {
        // Not a multiple of the block: the last block is partial.
        let n = MIN_8BIT_ELEMENTS + STATE_BLOCK + 3;
        let settings = AdamSettings {
            beta1: 0.8,
            beta2: 0.95,
            eps: 1e-2,
            weight_decay: 0.0,
            state: StateFormat::Int8Blockwise,
        };
        let mut adam = Adam::new(settings, n).unwrap();
        let mut fp32 = Adam::new(
            AdamSettings {
                state: StateFormat::Fp32,
                ..settings
            },
            n,
        )
        .unwrap();
        let mut p8 = vec![0.5f32; n];
        let mut p32 = p8.clone();
        let grads: Vec<f32> = (0..n).map(|i| gradient(i, 1)).collect();
        adam.step(0.1, &mut p8, &grads).unwrap();
        fp32.step(0.1, &mut p32, &grads).unwrap();
        // From zero state the first step reads exact zeros: identical updates.
        assert_eq!(p8, p32);
        let Moments::Fp32 { m, v } = &fp32.moments else {
            panic!("FP32 state asked for");
        };
        let Moments::Int8 {
            m_codes,
            v_codes,
            m_scale,
            v_scale,
        } = &adam.moments
        else {
            panic!("a tensor of {n} elements has 8-bit state");
        };
        assert_eq!(m_scale.len(), n.div_ceil(STATE_BLOCK));
        let mut decoded = [0.0f32; STATE_BLOCK];
        for (b, start) in (0..n).step_by(STATE_BLOCK).enumerate() {
            let end = (start + STATE_BLOCK).min(n);
            let block_m = &m[start..end];
            let absmax = block_m.iter().fold(0.0f32, |a, x| a.max(x.abs()));
            assert_eq!(m_scale[b], absmax, "block {b}'s first-moment scale");
            decode_signed(&m_codes[start..end], m_scale[b], &mut decoded);
            for (j, (&d, &x)) in decoded.iter().zip(block_m).enumerate() {
                // r = round(127·s)/127 for s = √(|x|/absmax) ≤ 1, so
                // |r² − s²| = |r − s|·(r + s) ≤ (0.5/127)·2.
                let bound = absmax / 127.0 * 1.0001;
                assert!((d - x).abs() <= bound, "m[{}]: {d} vs {x}", start + j);
            }
            let block_v = &v[start..end];
            let max = block_v.iter().fold(0.0f32, |a, &x| a.max(x));
            assert_eq!(v_scale[b], max, "block {b}'s second-moment scale");
            decode_unsigned(&v_codes[start..end], v_scale[b], &mut decoded);
            for (j, (&d, &x)) in decoded.iter().zip(block_v).enumerate() {
                // r = round(255·s)/255 for s = (x/max)^¼ ≤ 1, so
                // |r⁴ − s⁴| ≤ |r − s|·4 ≤ (0.5/255)·4.
                let bound = max * 2.0 / 255.0 * 1.0001;
                assert!((d - x).abs() <= bound, "v[{}]: {d} vs {x}", start + j);
            }
        }
    }

    #[test]
    fn codes_follow_the_companding_rules() {
        let mut codes = [0i8; 4];
        let absmax = encode_signed(&[1.0, -0.25, 0.0, 0.01], &mut codes);
        assert_eq!(absmax, 1.0);
        // 127·√0.25 = 63.5 rounds away from zero; 127·√0.01 = 12.7.
        assert_eq!(codes, [127, -64, 0, 13]);
        let mut back = [0.0f32; 4];
        decode_signed(&codes, 2.0, &mut back);
        assert_eq!(back[0], 2.0);
        let r = 64.0f32 / 127.0;
        assert_eq!(back[1], 2.0 * -(r * r));
        assert_eq!(back[2], 0.0);

        let mut codes = [0u8; 3];
        let max = encode_unsigned(&[0.0625, 1.0, 0.0], &mut codes);
        assert_eq!(max, 1.0);
        // 255·0.0625^(1/4) = 127.5 rounds up.
        assert_eq!(codes, [128, 255, 0]);
        let mut back = [0.0f32; 3];
        decode_unsigned(&codes, 3.0, &mut back);
        let r = 128.0f32 / 255.0;
        assert_eq!(back, [3.0 * ((r * r) * (r * r)), 3.0, 0.0]);

        // An all-zero block has scale 0 and zero codes.
        let mut codes = [5i8; 2];
        assert_eq!(encode_signed(&[0.0, -0.0], &mut codes), 0.0);
        assert_eq!(codes, [0, 0]);
        let mut codes = [5u8; 2];
        assert_eq!(encode_unsigned(&[0.0, 0.0], &mut codes), 0.0);
        assert_eq!(codes, [0, 0]);
    }

    #[test]
    fn state_bytes_and_length_are_exact() {
        let n = MIN_8BIT_ELEMENTS + 1;
        let adam = Adam::new(
            AdamSettings {
                state: StateFormat::Int8Blockwise,
                ..Default::default()
            },
            n,
        )
        .unwrap();
        let blocks = n.div_ceil(STATE_BLOCK);
        assert_eq!(adam.state_bytes(), (2 * n + 8 * blocks, 8 * n));
        assert_eq!(adam.len(), n);
        assert!(!adam.is_empty());
        let at_threshold = Adam::new(
            AdamSettings {
                state: StateFormat::Int8Blockwise,
                ..Default::default()
            },
            MIN_8BIT_ELEMENTS,
        )
        .unwrap();
        assert_eq!(
            at_threshold.state_bytes().0,
            2 * MIN_8BIT_ELEMENTS + 8 * (MIN_8BIT_ELEMENTS / STATE_BLOCK)
        );
        let empty = Adam::new(AdamSettings::default(), 0).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.state_bytes(), (0, 0));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(
            Adam::new(
                AdamSettings {
                    beta1: 1.0,
                    ..Default::default()
                },
                10
            )
            .is_err()
        );
        assert!(
            Adam::new(
                AdamSettings {
                    eps: 0.0,
                    ..Default::default()
                },
                10
            )
            .is_err()
        );
        for bad in [
            AdamSettings {
                beta2: 1.0,
                ..Default::default()
            },
            AdamSettings {
                beta1: -0.1,
                ..Default::default()
            },
            AdamSettings {
                eps: f32::INFINITY,
                ..Default::default()
            },
            AdamSettings {
                eps: -1e-8,
                ..Default::default()
            },
            AdamSettings {
                weight_decay: -0.01,
                ..Default::default()
            },
            AdamSettings {
                weight_decay: f32::NAN,
                ..Default::default()
            },
        ] {
            assert!(Adam::new(bad, 10).is_err(), "{bad:?}");
        }
        let edges = AdamSettings {
            beta1: 0.0,
            beta2: 0.0,
            weight_decay: 0.0,
            ..Default::default()
        };
        assert!(Adam::new(edges, 10).is_ok());
        let mut adam = Adam::new(AdamSettings::default(), 4).unwrap();
        assert!(adam.step(0.1, &mut [0.0; 3], &[0.0; 4]).is_err());
        assert!(adam.step(0.1, &mut [0.0; 4], &[0.0; 5]).is_err());
        assert!(adam.step(f32::NAN, &mut [0.0; 4], &[0.0; 4]).is_err());
        assert!(adam.step(f32::INFINITY, &mut [0.0; 4], &[0.0; 4]).is_err());
        assert!(adam.step(-1e-3, &mut [0.0; 4], &[0.0; 4]).is_err());
        // A refused step changes nothing; lr 0 is a step that moves nothing.
        let mut params = [1.0f32; 4];
        adam.step(0.0, &mut params, &[1.0; 4]).unwrap();
        assert_eq!(params, [1.0; 4]);
    }
}
