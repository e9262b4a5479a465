use super::*;
use crate::train::adam::MIN_8BIT_ELEMENTS;
use crate::train::loss_scale::StepDecision;

fn gradient(i: usize, step: usize) -> f32 {
    (((i * 7919 + step * 104_729) % 2001) as f32 - 1000.0) * 1e-3
}

fn settings(state: StateFormat) -> AdamSettings {
    AdamSettings {
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-6,
        weight_decay: 0.01,
        state,
    }
}

/// A short training loop: a scaler deciding each step (step 3 overflows)
/// and Adam applying the steps it allows.
struct Run {
    scaler: LossScaler,
    adam: Adam,
    params: Vec<f32>,
}

impl Run {
    fn new(state: StateFormat, n: usize) -> Run {
        Run {
            scaler: LossScaler::new(LossScaleSettings {
                growth_interval: 2,
                ..Default::default()
            })
            .unwrap(),
            adam: Adam::new(settings(state), n).unwrap(),
            params: (0..n).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect(),
        }
    }

    fn step(&mut self, step: usize) {
        let mut grads: Vec<f32> = (0..self.params.len())
            .map(|i| gradient(i, step) * self.scaler.scale())
            .collect();
        if step == 3 {
            grads[5] = f32::INFINITY;
        }
        self.scaler.unscale_and_check(&mut grads);
        if self.scaler.update().unwrap() == StepDecision::Apply {
            self.adam
                .step(0.01 / step as f32, &mut self.params, &grads)
                .unwrap();
        }
    }

    /// Saves both, destroys them, and makes and loads new ones.
    fn reload(self, state: StateFormat) -> Run {
        let mut scaler_bytes = vec![0u8; loss_scaler_len()];
        save_loss_scaler(&self.scaler, &mut scaler_bytes).unwrap();
        let mut adam_bytes = vec![0u8; adam_len(&host_image(&self.adam)).unwrap()];
        assert_eq!(
            save_host_adam(&self.adam, &mut adam_bytes).unwrap(),
            adam_bytes.len()
        );
        let params = self.params;
        let mut fresh = Run::new(state, params.len());
        fresh.params = params;
        load_loss_scaler(&mut fresh.scaler, &scaler_bytes).unwrap();
        load_host_adam(&mut fresh.adam, &adam_bytes).unwrap();
        fresh
    }
}

#[test]
fn a_restored_run_continues_bit_for_bit() {
    for (state, n) in [
        (StateFormat::Fp32, 37),
        (StateFormat::Int8Blockwise, MIN_8BIT_ELEMENTS + 300),
    ] {
        let mut whole = Run::new(state, n);
        for step in 1..=8 {
            whole.step(step);
        }
        // Saved after step 2 (before the overflow) and after step 3 (the
        // skipped one, with the scaler's growth count reset).
        for k in [2, 3] {
            let mut split = Run::new(state, n);
            for step in 1..=k {
                split.step(step);
            }
            let mut split = split.reload(state);
            for step in k + 1..=8 {
                split.step(step);
            }
            let bits = |p: &[f32]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&split.params),
                bits(&whole.params),
                "{state:?} saved after {k}"
            );
            assert_eq!(split.adam.steps(), whole.adam.steps());
            assert_eq!(split.scaler.state(), whole.scaler.state());
        }
    }
}

fn scaler_bytes() -> Vec<u8> {
    let scaler = LossScaler::new(LossScaleSettings::default()).unwrap();
    let mut bytes = vec![0u8; loss_scaler_len()];
    save_loss_scaler(&scaler, &mut bytes).unwrap();
    bytes
}

fn message_of(scaler: &mut LossScaler, bytes: &[u8]) -> String {
    let before = scaler.state();
    let err = load_loss_scaler(scaler, bytes).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    assert_eq!(scaler.state(), before, "nothing changes on error");
    err.message().to_string()
}

#[test]
fn damaged_checkpoints_are_refused_with_what_is_wrong() {
    let good = scaler_bytes();
    let mut scaler = LossScaler::new(LossScaleSettings::default()).unwrap();
    for len in 0..good.len() {
        let m = message_of(&mut scaler, &good[..len]);
        assert!(m.contains("truncated"), "{len} bytes: {m}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(message_of(&mut scaler, &longer).contains("trailing"));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(message_of(&mut scaler, &magic).contains("NYXQSTAT"));
    let mut version = good.clone();
    version[8] = 2;
    assert!(message_of(&mut scaler, &version).contains("version 2"));
    let mut kind = good.clone();
    kind[12] = 2;
    assert!(message_of(&mut scaler, &kind).contains("Adam"));
    let mut flipped = good.clone();
    flipped[HEADER_BYTES + 30] ^= 1;
    assert!(message_of(&mut scaler, &flipped).contains("checksum"));
    let mut other = LossScaler::new(LossScaleSettings {
        growth_interval: 7,
        ..Default::default()
    })
    .unwrap();
    assert!(message_of(&mut other, &good).contains("growth_interval 2000"));
    // An Adam checkpoint is not a loss scaler's, and the reverse.
    let adam = Adam::new(AdamSettings::default(), 4).unwrap();
    let mut adam_bytes = vec![0u8; adam_len(&host_image(&adam)).unwrap()];
    save_host_adam(&adam, &mut adam_bytes).unwrap();
    assert!(message_of(&mut scaler, &adam_bytes).contains("holds an Adam optimizer"));
    let mut adam = Adam::new(AdamSettings::default(), 4).unwrap();
    let err = load_host_adam(&mut adam, &good).unwrap_err();
    assert!(err.message().contains("holds a loss scaler"), "{err}");
}

/// Rewrites the body of `bytes` with `edit` and fixes the checksum, so that
/// only the body's meaning is wrong.
fn with_body(bytes: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut out = bytes.to_vec();
    edit(&mut out[HEADER_BYTES..]);
    let sum = fnv1a(&out[HEADER_BYTES..]);
    out[24..32].copy_from_slice(&sum.to_le_bytes());
    out
}

#[test]
fn impossible_states_are_refused() {
    let good = scaler_bytes();
    let mut scaler = LossScaler::new(LossScaleSettings::default()).unwrap();
    let found_two = with_body(&good, |b| b[32] = 2);
    assert!(message_of(&mut scaler, &found_two).contains("found_non_finite"));
    let nan_scale = with_body(&good, |b| {
        b[24..28].copy_from_slice(&f32::NAN.to_le_bytes())
    });
    assert!(message_of(&mut scaler, &nan_scale).contains("scale NaN"));
    let below_floor = with_body(&good, |b| b[24..28].copy_from_slice(&0.5f32.to_le_bytes()));
    assert!(message_of(&mut scaler, &below_floor).contains("impossible"));
    let grown = with_body(&good, |b| b[28..32].copy_from_slice(&2000u32.to_le_bytes()));
    assert!(message_of(&mut scaler, &grown).contains("2000 finite steps"));
    let fine = with_body(&good, |b| b[28..32].copy_from_slice(&1999u32.to_le_bytes()));
    load_loss_scaler(&mut scaler, &fine).unwrap();
    assert_eq!(scaler.state().finite_steps, 1999);
}

#[test]
fn adam_checkpoints_must_match_the_optimizer() {
    let n = MIN_8BIT_ELEMENTS;
    let saved = Adam::new(settings(StateFormat::Int8Blockwise), n).unwrap();
    let mut bytes = vec![0u8; adam_len(&host_image(&saved)).unwrap()];
    save_host_adam(&saved, &mut bytes).unwrap();
    assert_eq!(
        bytes.len(),
        HEADER_BYTES + ADAM_FIXED + 2 * n + 8 * (n / 256)
    );
    let refused = |adam: &mut Adam, bytes: &[u8], needle: &str| {
        let err = load_host_adam(adam, bytes).unwrap_err();
        assert!(err.message().contains(needle), "{needle}: {err}");
    };
    let mut fp32 = Adam::new(settings(StateFormat::Fp32), n).unwrap();
    refused(&mut fp32, &bytes, "state format");
    let mut shorter = Adam::new(settings(StateFormat::Int8Blockwise), n - 1).unwrap();
    refused(&mut shorter, &bytes, "parameter count");
    let mut other_beta = Adam::new(
        AdamSettings {
            beta1: 0.9,
            ..settings(StateFormat::Int8Blockwise)
        },
        n,
    )
    .unwrap();
    refused(&mut other_beta, &bytes, "beta1");
    let mut same = Adam::new(settings(StateFormat::Int8Blockwise), n).unwrap();
    let layout = with_body(&bytes, |b| b[32] = 0);
    refused(&mut same, &layout, "moment layout");
    let cut = {
        let mut b = bytes[..bytes.len() - 4].to_vec();
        let body_len = (b.len() - HEADER_BYTES) as u64;
        b[16..24].copy_from_slice(&body_len.to_le_bytes());
        with_body(&b, |_| {})
    };
    refused(&mut same, &cut, "take");
    let too_small = save_host_adam(&saved, &mut [0u8; 10]).unwrap_err();
    assert_eq!(
        too_small.kind(),
        crate::ErrorKind::BufferTooSmall {
            needed: bytes.len()
        }
    );
    load_host_adam(&mut same, &bytes).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any bytes, and any damage to a good checkpoint, are an error or a
    /// load, never a panic.
    #[test]
    fn no_input_makes_a_load_panic(
        noise in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        at in 0usize..68,
        byte in proptest::num::u8::ANY,
    ) {
        let mut scaler = LossScaler::new(LossScaleSettings::default()).unwrap();
        let _ = load_loss_scaler(&mut scaler, &noise);
        let mut damaged = scaler_bytes();
        damaged[at] = byte;
        let _ = load_loss_scaler(&mut scaler, &damaged);
        let _ = load_loss_scaler(&mut scaler, &with_body(&damaged, |_| {}));
        let mut adam = Adam::new(AdamSettings::default(), 3).unwrap();
        let _ = load_host_adam(&mut adam, &noise);
        let mut adam_bytes = vec![0u8; adam_len(&host_image(&adam)).unwrap()];
        save_host_adam(&adam, &mut adam_bytes).unwrap();
        let at = at.min(adam_bytes.len() - 1);
        adam_bytes[at] = byte;
        let _ = load_host_adam(&mut adam, &with_body(&adam_bytes, |_| {}));
    }
}
