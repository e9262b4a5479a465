//! Checkpoints of the training helpers: the loss scaler's and Adam's state
//! as versioned little-endian bytes, which a trainer stores inside its own
//! checkpoint and loads back into an object made with the same settings.
//!
//! Every checkpoint starts with a 32-byte header:
//!
//! | bytes | what |
//! |---|---|
//! | 0..8 | magic `NYXQSTAT` |
//! | 8..12 | u32 version ([`VERSION`]) |
//! | 12..16 | u32 kind: 1 loss scaler, 2 Adam, 3 importance ([`super::importance`]) |
//! | 16..24 | u64 bytes of the body that follows |
//! | 24..32 | u64 FNV-1a (64-bit) of the body |
//!
//! The loss scaler's body (36 bytes): its settings (f32 initial_scale,
//! growth_factor, backoff_factor, u32 growth_interval, f32 min_scale, u32
//! enabled) and its state (f32 scale, u32 finite_steps, u32
//! found_non_finite). Adam's body: its settings (f32 beta1, beta2, eps,
//! weight_decay, u32 state format: 0 FP32, 1 8-bit), u64 parameters, u32
//! steps applied, u32 layout (0 FP32 moments, 1 8-bit blocks), then the
//! moments: m and v as f32 (FP32), or the m codes (i8), the v codes (u8), the
//! m scales and the v scales (f32, one per block of 256).
//!
//! Loading checks everything before it changes anything: the header, the
//! length, the checksum, that the settings equal the object's bit for bit,
//! that the parameter count and layout match, and that the state is one
//! those settings can reach. Any failure is InvalidArgument naming what
//! differs; no input makes it panic.

use super::adam::{Adam, AdamSettings, Moments, STATE_BLOCK, StateFormat, StateLayout};
use super::loss_scale::{LossScaleSettings, LossScaleState, LossScaler};
use crate::error::{Error, Result};

/// The checkpoint format this nyxq writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_BYTES: usize = 32;
const MAGIC: [u8; 8] = *b"NYXQSTAT";
/// Bytes of a loss scaler's body.
const SCALER_BODY: usize = 36;
/// Bytes of Adam's body before the moments.
const ADAM_FIXED: usize = 36;

/// What a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    LossScaler = 1,
    Adam = 2,
    Importance = 3,
}

impl Kind {
    fn name(raw: u32) -> &'static str {
        match raw {
            1 => "a loss scaler",
            2 => "an Adam optimizer",
            3 => "an importance accumulator",
            _ => "an unknown kind",
        }
    }
}

/// 64-bit FNV-1a of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Appends little-endian fields to a byte vector.
#[derive(Default)]
pub(super) struct Fields(pub(super) Vec<u8>);

impl Fields {
    pub(super) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn f32(self, v: f32) -> Self {
        self.u32(v.to_bits())
    }
    pub(super) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
}

/// Reads little-endian fields off the front of a body whose length was
/// checked to hold them.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at gave N bytes")
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }
    pub(super) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Writes the header for `body` (already in `out[HEADER_BYTES..]`).
pub(super) fn write_header(kind: Kind, out: &mut [u8]) {
    let (header, body) = out.split_at_mut(HEADER_BYTES);
    let fields = Fields::default()
        .u32(VERSION)
        .u32(kind as u32)
        .u64(body.len() as u64)
        .u64(fnv1a(body));
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&fields.0);
}

/// Checks the header of `bytes` and returns the body.
pub(super) fn read_header(kind: Kind, bytes: &[u8]) -> Result<&[u8]> {
    let what = Kind::name(kind as u32);
    if bytes.len() < HEADER_BYTES {
        return Err(Error::invalid(format!(
            "checkpoint of {what}: {} bytes, shorter than the {HEADER_BYTES}-byte header \
             (truncated input)",
            bytes.len()
        )));
    }
    let (header, body) = bytes.split_at(HEADER_BYTES);
    if header[..8] != MAGIC {
        return Err(Error::invalid(
            "not an nyxq state checkpoint: the bytes do not start with NYXQSTAT",
        ));
    }
    let mut r = Reader(&header[8..]);
    let (version, raw_kind, body_len, checksum) = (r.u32(), r.u32(), r.u64(), r.u64());
    if version != VERSION {
        return Err(Error::invalid(format!(
            "checkpoint version {version}; this nyxq reads version {VERSION}"
        )));
    }
    if raw_kind != kind as u32 {
        return Err(Error::invalid(format!(
            "the checkpoint holds {} (kind {raw_kind}), not {what}",
            Kind::name(raw_kind)
        )));
    }
    if body_len != body.len() as u64 {
        return Err(Error::invalid(format!(
            "checkpoint of {what}: the header announces {body_len} bytes after it, {} follow{}",
            body.len(),
            if (body.len() as u64) < body_len {
                " (truncated input)"
            } else {
                " (trailing bytes)"
            }
        )));
    }
    if fnv1a(body) != checksum {
        return Err(Error::invalid(format!(
            "checkpoint of {what}: checksum mismatch, the bytes are corrupted"
        )));
    }
    Ok(body)
}

/// Refuses a saved value that differs from the object's.
fn same<T: PartialEq + std::fmt::Debug>(field: &str, saved: T, own: T) -> Result<()> {
    if saved != own {
        return Err(Error::invalid(format!(
            "checkpoint saved with {field} {saved:?}, this object has {own:?}: \
             load into an object made with the saved settings"
        )));
    }
    Ok(())
}

/// Bytes of a loss scaler's checkpoint.
pub fn loss_scaler_len() -> usize {
    HEADER_BYTES + SCALER_BODY
}

/// Writes `scaler`'s checkpoint to the start of `out` and returns its length.
pub fn save_loss_scaler(scaler: &LossScaler, out: &mut [u8]) -> Result<usize> {
    let len = loss_scaler_len();
    Error::ensure_room("checkpoint buffer", "bytes", len, out.len())?;
    let s = scaler.settings();
    let state = scaler.state();
    let body = Fields::default()
        .f32(s.initial_scale)
        .f32(s.growth_factor)
        .f32(s.backoff_factor)
        .u32(s.growth_interval)
        .f32(s.min_scale)
        .u32(u32::from(s.enabled))
        .f32(state.scale)
        .u32(state.finite_steps)
        .u32(u32::from(state.found_non_finite));
    out[HEADER_BYTES..len].copy_from_slice(&body.0);
    write_header(Kind::LossScaler, &mut out[..len]);
    Ok(len)
}

/// Loads a loss scaler's checkpoint into `scaler` (made with the same
/// settings); nothing changes on error.
pub fn load_loss_scaler(scaler: &mut LossScaler, bytes: &[u8]) -> Result<()> {
    let body = read_header(Kind::LossScaler, bytes)?;
    if body.len() != SCALER_BODY {
        return Err(Error::invalid(format!(
            "loss scaler checkpoint: a body of {} bytes, not {SCALER_BODY}",
            body.len()
        )));
    }
    let mut r = Reader(body);
    let saved = LossScaleSettings {
        initial_scale: r.f32(),
        growth_factor: r.f32(),
        backoff_factor: r.f32(),
        growth_interval: r.u32(),
        min_scale: r.f32(),
        enabled: r.u32() != 0,
    };
    let own = *scaler.settings();
    same(
        "initial_scale",
        saved.initial_scale.to_bits(),
        own.initial_scale.to_bits(),
    )?;
    same(
        "growth_factor",
        saved.growth_factor.to_bits(),
        own.growth_factor.to_bits(),
    )?;
    same(
        "backoff_factor",
        saved.backoff_factor.to_bits(),
        own.backoff_factor.to_bits(),
    )?;
    same(
        "growth_interval",
        saved.growth_interval,
        own.growth_interval,
    )?;
    same(
        "min_scale",
        saved.min_scale.to_bits(),
        own.min_scale.to_bits(),
    )?;
    same("enabled", saved.enabled, own.enabled)?;
    let scale = r.f32();
    let finite_steps = r.u32();
    let found = match r.u32() {
        0 => false,
        1 => true,
        other => {
            return Err(Error::invalid(format!(
                "loss scaler checkpoint: found_non_finite is {other}, not 0 or 1"
            )));
        }
    };
    scaler.restore(LossScaleState {
        scale,
        finite_steps,
        found_non_finite: found,
    })
}

/// What an Adam checkpoint describes besides its moments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamImage {
    pub settings: AdamSettings,
    pub len: usize,
    pub steps: u32,
    pub layout: StateLayout,
}

/// The step count and each section's bytes of a checked Adam checkpoint.
pub type AdamParts<'a> = (u32, Vec<(Section, &'a [u8])>);

/// One run of an Adam checkpoint's moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// FP32: m (f32); 8-bit: the m codes (i8).
    M,
    /// FP32: v (f32); 8-bit: the v codes (u8).
    V,
    /// 8-bit: the m scales (f32 per block).
    MScale,
    /// 8-bit: the v scales (f32 per block).
    VScale,
}

/// The sections of `layout` for `len` parameters, with their bytes, in
/// checkpoint order; None when the sizes overflow.
pub fn sections(layout: StateLayout, len: usize) -> Option<Vec<(Section, usize)>> {
    Some(match layout {
        StateLayout::Fp32 => {
            let bytes = len.checked_mul(4)?;
            vec![(Section::M, bytes), (Section::V, bytes)]
        }
        StateLayout::Int8Blocks => {
            let scales = len.div_ceil(STATE_BLOCK).checked_mul(4)?;
            vec![
                (Section::M, len),
                (Section::V, len),
                (Section::MScale, scales),
                (Section::VScale, scales),
            ]
        }
    })
}

/// Bytes of an Adam checkpoint of `image`.
pub fn adam_len(image: &AdamImage) -> Result<usize> {
    let overflow = || Error::overflow("the checkpoint's bytes");
    let moments = sections(image.layout, image.len)
        .ok_or_else(overflow)?
        .iter()
        .try_fold(0usize, |sum, &(_, bytes)| sum.checked_add(bytes))
        .ok_or_else(overflow)?;
    moments
        .checked_add(HEADER_BYTES + ADAM_FIXED)
        .ok_or_else(overflow)
}

fn state_code(format: StateFormat) -> u32 {
    match format {
        StateFormat::Fp32 => 0,
        StateFormat::Int8Blockwise => 1,
    }
}

fn layout_code(layout: StateLayout) -> u32 {
    match layout {
        StateLayout::Fp32 => 0,
        StateLayout::Int8Blocks => 1,
    }
}

/// Writes an Adam checkpoint of `image` to the start of `out`, each section
/// of moments produced by `fill(section, bytes)`; returns its length.
pub fn save_adam(
    image: &AdamImage,
    out: &mut [u8],
    mut fill: impl FnMut(Section, &mut [u8]) -> Result<()>,
) -> Result<usize> {
    let len = adam_len(image)?;
    Error::ensure_room("checkpoint buffer", "bytes", len, out.len())?;
    let s = &image.settings;
    let fixed = Fields::default()
        .f32(s.beta1)
        .f32(s.beta2)
        .f32(s.eps)
        .f32(s.weight_decay)
        .u32(state_code(s.state))
        .u64(image.len as u64)
        .u32(image.steps)
        .u32(layout_code(image.layout));
    let mut at = HEADER_BYTES + ADAM_FIXED;
    out[HEADER_BYTES..at].copy_from_slice(&fixed.0);
    for (section, bytes) in sections(image.layout, image.len).unwrap_or_default() {
        fill(section, &mut out[at..at + bytes])?;
        at += bytes;
    }
    write_header(Kind::Adam, &mut out[..len]);
    Ok(len)
}

/// Checks an Adam checkpoint against `own` (the object's settings, length
/// and layout; its steps are ignored) and returns the saved step count and
/// each section's bytes. Nothing is read from the sections but their length.
pub fn read_adam<'a>(own: &AdamImage, bytes: &'a [u8]) -> Result<AdamParts<'a>> {
    let body = read_header(Kind::Adam, bytes)?;
    if body.len() < ADAM_FIXED {
        return Err(Error::invalid(format!(
            "Adam checkpoint: a body of {} bytes, shorter than its {ADAM_FIXED} fixed bytes",
            body.len()
        )));
    }
    let (fixed, mut rest) = body.split_at(ADAM_FIXED);
    let mut r = Reader(fixed);
    let s = &own.settings;
    same("beta1", r.f32().to_bits(), s.beta1.to_bits())?;
    same("beta2", r.f32().to_bits(), s.beta2.to_bits())?;
    same("eps", r.f32().to_bits(), s.eps.to_bits())?;
    same("weight_decay", r.f32().to_bits(), s.weight_decay.to_bits())?;
    same("state format", r.u32(), state_code(s.state))?;
    same("parameter count", r.u64(), own.len as u64)?;
    let steps = r.u32();
    same("moment layout", r.u32(), layout_code(own.layout))?;
    let expected = adam_len(own)? - HEADER_BYTES;
    if body.len() != expected {
        return Err(Error::invalid(format!(
            "Adam checkpoint: a body of {} bytes, but {} parameters in this layout take {expected}",
            body.len(),
            own.len
        )));
    }
    let mut out = Vec::new();
    for (section, len) in sections(own.layout, own.len).unwrap_or_default() {
        let (head, tail) = rest.split_at(len);
        out.push((section, head));
        rest = tail;
    }
    Ok((steps, out))
}

/// The image of a host Adam.
pub fn host_image(adam: &Adam) -> AdamImage {
    AdamImage {
        settings: *adam.settings(),
        len: adam.len(),
        steps: adam.steps(),
        layout: adam.layout(),
    }
}

fn put_f32s(values: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(values) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

fn get_f32s(bytes: &[u8], values: &mut [f32]) {
    for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Writes a host Adam's checkpoint to the start of `out`; returns its length.
pub fn save_host_adam(adam: &Adam, out: &mut [u8]) -> Result<usize> {
    save_adam(&host_image(adam), out, |section, bytes| {
        match (adam.moments(), section) {
            (Moments::Fp32 { m, .. }, Section::M) => put_f32s(m, bytes),
            (Moments::Fp32 { v, .. }, Section::V) => put_f32s(v, bytes),
            (Moments::Int8 { m_codes, .. }, Section::M) => {
                for (b, &q) in bytes.iter_mut().zip(m_codes) {
                    *b = q as u8;
                }
            }
            (Moments::Int8 { v_codes, .. }, Section::V) => bytes.copy_from_slice(v_codes),
            (Moments::Int8 { m_scale, .. }, Section::MScale) => put_f32s(m_scale, bytes),
            (Moments::Int8 { v_scale, .. }, Section::VScale) => put_f32s(v_scale, bytes),
            (Moments::Fp32 { .. }, Section::MScale | Section::VScale) => {}
        }
        Ok(())
    })
}

/// Loads a checkpoint into a host Adam made with the same settings and
/// length; nothing changes on error.
pub fn load_host_adam(adam: &mut Adam, bytes: &[u8]) -> Result<()> {
    let (steps, parts) = read_adam(&host_image(adam), bytes)?;
    let (moments, own_steps) = adam.state_mut();
    for (section, part) in parts {
        match (&mut *moments, section) {
            (Moments::Fp32 { m, .. }, Section::M) => get_f32s(part, m),
            (Moments::Fp32 { v, .. }, Section::V) => get_f32s(part, v),
            (Moments::Int8 { m_codes, .. }, Section::M) => {
                for (q, &b) in m_codes.iter_mut().zip(part) {
                    *q = b as i8;
                }
            }
            (Moments::Int8 { v_codes, .. }, Section::V) => v_codes.copy_from_slice(part),
            (Moments::Int8 { m_scale, .. }, Section::MScale) => get_f32s(part, m_scale),
            (Moments::Int8 { v_scale, .. }, Section::VScale) => get_f32s(part, v_scale),
            (Moments::Fp32 { .. }, Section::MScale | Section::VScale) => {}
        }
    }
    *own_steps = steps;
    Ok(())
}

#[cfg(test)]
mod tests;
