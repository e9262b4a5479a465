//! Training helpers through the C ABI: the loss scaler and Adam with FP32 or
//! 8-bit state. (Fake quantization is nyxq_fake_quantize; stochastic rounding
//! of master weights to F16/BF16 is nyxq_quantize with NYXQ_ROUNDING_STOCHASTIC.)

use super::guard::guard;
use super::handle::{self, Opaque};
use super::status::NyxqStatus;
use super::{enum_value, ptr};
use crate::error::Result;
use crate::train::adam::{Adam, AdamSettings, StateFormat};
use crate::train::checkpoint;
use crate::train::loss_scale::{LossScaleSettings, LossScaler, StepDecision};
use parking_lot::Mutex;

/// A dynamic loss scaler (PyTorch GradScaler semantics). Not for concurrent
/// use: calls on one scaler must not overlap (each call takes its lock).
pub struct NyxqLossScaler {
    _opaque: [u8; 0],
}

impl Opaque for NyxqLossScaler {
    type Inner = Mutex<LossScaler>;
    const KIND: &'static str = "loss scaler";
}

/// Options for nyxq_loss_scaler_create; fill with nyxq_loss_scaler_options_default.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqLossScalerOptions {
    /// sizeof(NyxqLossScalerOptions).
    pub struct_size: usize,
    /// Starting scale. Default 65536.
    pub initial_scale: f32,
    /// Factor applied after growth_interval finite steps in a row (> 1). Default 2.
    pub growth_factor: f32,
    /// Factor applied on a non-finite gradient (in (0, 1)). Default 0.5.
    pub backoff_factor: f32,
    /// Finite steps in a row before growing (>= 1). Default 2000.
    pub growth_interval: u32,
    /// The floor the scale never goes below (> 0). Default 1.
    pub min_scale: f32,
    /// 1 to scale (FP16 training), 0 to only check (BF16 training). Default 1.
    pub enabled: u32,
}

impl Default for NyxqLossScalerOptions {
    fn default() -> Self {
        let d = LossScaleSettings::default();
        NyxqLossScalerOptions {
            struct_size: size_of::<NyxqLossScalerOptions>(),
            initial_scale: d.initial_scale,
            growth_factor: d.growth_factor,
            backoff_factor: d.backoff_factor,
            growth_interval: d.growth_interval,
            min_scale: d.min_scale,
            enabled: 1,
        }
    }
}

/// Writes the default loss-scaler options into *options_out.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_options_default(
    options_out: *mut NyxqLossScalerOptions,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(options_out, "options_out")?;
        // SAFETY: the caller passes a pointer to a NyxqLossScalerOptions.
        unsafe { out.write(NyxqLossScalerOptions::default()) };
        Ok(())
    })
}

/// Creates a loss scaler; `options` NULL means the defaults. Release with
/// nyxq_loss_scaler_destroy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER (scaler_out), NYXQ_ERROR_INVALID_ARGUMENT
/// (struct_size, a factor or scale out of its domain, enabled not 0 or 1).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_create(
    options: *const NyxqLossScalerOptions,
    scaler_out: *mut *mut NyxqLossScaler,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(scaler_out, "scaler_out")?;
        // SAFETY: NULL or a NyxqLossScalerOptions of struct_size bytes.
        let o = unsafe {
            ptr::options(
                options,
                size_of::<NyxqLossScalerOptions>(),
                "NyxqLossScalerOptions",
            )
        }?;
        let enabled = enum_value(o.enabled as i32, &[(0, false), (1, true)], "enabled flag")?;
        let scaler = LossScaler::new(LossScaleSettings {
            initial_scale: o.initial_scale,
            growth_factor: o.growth_factor,
            backoff_factor: o.backoff_factor,
            growth_interval: o.growth_interval,
            min_scale: o.min_scale,
            enabled,
        })?;
        // SAFETY: scaler_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqLossScaler>(Mutex::new(scaler))) };
        Ok(())
    })
}

/// Releases a loss scaler. NULL is a no-op.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_destroy(scaler: *mut NyxqLossScaler) -> NyxqStatus {
    guard(|| handle::unregister(scaler))
}

/// The factor to multiply this step's loss by.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_scale(
    scaler: *const NyxqLossScaler,
    scale_out: *mut f32,
) -> NyxqStatus {
    guard(|| {
        let s = handle::get(scaler)?;
        let out = ptr::out(scale_out, "scale_out")?;
        // SAFETY: scale_out checked non-NULL.
        unsafe { out.write(s.lock().scale()) };
        Ok(())
    })
}

/// Unscales one gradient buffer in place (multiplies by 1/scale) and checks it
/// for Inf/NaN in one pass. *found_non_finite_out is 1 if this buffer had one
/// (the scaler remembers it until nyxq_loss_scaler_update), else 0;
/// *first_bad_index_out (may be NULL) is the first such index, or -1.
/// Call once per gradient buffer of the step.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE, NYXQ_ERROR_SIZE_OVERFLOW.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_unscale_and_check(
    scaler: *mut NyxqLossScaler,
    grads: *mut f32,
    n: usize,
    found_non_finite_out: *mut u32,
    first_bad_index_out: *mut i64,
) -> NyxqStatus {
    guard(|| {
        let s = handle::get(scaler)?;
        let found_out = ptr::out(found_non_finite_out, "found_non_finite_out")?;
        // SAFETY: the caller passes n writable floats at grads.
        let grads = unsafe { ptr::slice_mut(grads, n, "grads") }?;
        let found = s.lock().unscale_and_check(grads);
        let first = if found {
            grads
                .iter()
                .position(|g| !g.is_finite())
                .map_or(-1, |i| i as i64)
        } else {
            -1
        };
        // SAFETY: found_out checked non-NULL; first_bad_index_out is optional.
        unsafe { found_out.write(u32::from(found)) };
        if !first_bad_index_out.is_null() {
            // SAFETY: non-NULL; the caller passes a pointer to an int64_t.
            unsafe { ptr::out(first_bad_index_out, "first_bad_index_out")?.write(first) };
        }
        Ok(())
    })
}

/// Tells the scaler what a check made elsewhere found (the flag that
/// nyxq_vk_cmd_unscale_and_check wrote on the device): nonzero counts as a
/// non-finite gradient this step, remembered until nyxq_loss_scaler_update,
/// exactly like nyxq_loss_scaler_unscale_and_check's finding.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_report_non_finite(
    scaler: *mut NyxqLossScaler,
    found_non_finite: u32,
) -> NyxqStatus {
    guard(|| {
        let s = handle::get(scaler)?;
        s.lock().report_non_finite(found_non_finite != 0);
        Ok(())
    })
}

/// Ends the step: *apply_step_out is 1 when every gradient since the last
/// update was finite (apply the optimizer step), 0 when the step must be
/// skipped; the scale grows or backs off as GradScaler's does.
///
/// Errors: NYXQ_ERROR_LOSS_SCALE_UNDERFLOW when a gradient was non-finite with
/// the scale already at its floor (skip the step; *apply_step_out untouched),
/// NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_update(
    scaler: *mut NyxqLossScaler,
    apply_step_out: *mut u32,
) -> NyxqStatus {
    guard(|| {
        let s = handle::get(scaler)?;
        let out = ptr::out(apply_step_out, "apply_step_out")?;
        let decision = s.lock().update()?;
        // SAFETY: apply_step_out checked non-NULL.
        unsafe { out.write(u32::from(decision == StepDecision::Apply)) };
        Ok(())
    })
}

/// Adam's state for one parameter tensor. Calls on one optimizer must not
/// overlap (each call takes its lock); different optimizers run in parallel.
pub struct NyxqAdam {
    _opaque: [u8; 0],
}

impl Opaque for NyxqAdam {
    type Inner = Mutex<Adam>;
    const KIND: &'static str = "adam optimizer";
}

/// How Adam stores its moments (NyxqAdamOptions.state).
#[repr(i32)]
pub enum NyxqAdamState {
    /// FP32 moments: 8 bytes per parameter (the default).
    NyxqAdamStateFp32 = 0,
    /// Blockwise 8-bit moments (blocks of 256, an f32 scale each): about 25.4%
    /// of FP32; tensors under 4096 elements keep FP32 state.
    NyxqAdamStateInt8 = 1,
}

/// Options for nyxq_adam_create; fill with nyxq_adam_options_default.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqAdamOptions {
    /// sizeof(NyxqAdamOptions).
    pub struct_size: usize,
    /// Default 0.9.
    pub beta1: f32,
    /// Default 0.999.
    pub beta2: f32,
    /// Default 1e-8.
    pub eps: f32,
    /// Decoupled (AdamW) weight decay; default 0 (Adam).
    pub weight_decay: f32,
    /// A NyxqAdamState value. Default NYXQ_ADAM_STATE_FP32.
    pub state: i32,
}

impl Default for NyxqAdamOptions {
    fn default() -> Self {
        let d = AdamSettings::default();
        NyxqAdamOptions {
            struct_size: size_of::<NyxqAdamOptions>(),
            beta1: d.beta1,
            beta2: d.beta2,
            eps: d.eps,
            weight_decay: d.weight_decay,
            state: 0,
        }
    }
}

/// The settings `options` (NULL for the defaults) give, checked.
///
/// # Safety
/// `options` is NULL or points to a NyxqAdamOptions of struct_size bytes.
pub(crate) unsafe fn adam_settings(options: *const NyxqAdamOptions) -> Result<AdamSettings> {
    // SAFETY: per this function's contract.
    let o = unsafe { ptr::options(options, size_of::<NyxqAdamOptions>(), "NyxqAdamOptions") }?;
    let state = enum_value(
        o.state,
        &[(0, StateFormat::Fp32), (1, StateFormat::Int8Blockwise)],
        "adam state",
    )?;
    let settings = AdamSettings {
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weight_decay: o.weight_decay,
        state,
    };
    settings.check()?;
    Ok(settings)
}

/// Writes the default Adam options into *options_out.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_options_default(options_out: *mut NyxqAdamOptions) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(options_out, "options_out")?;
        // SAFETY: the caller passes a pointer to a NyxqAdamOptions.
        unsafe { out.write(NyxqAdamOptions::default()) };
        Ok(())
    })
}

/// Creates Adam state for a tensor of `n` parameters; `options` NULL means
/// the defaults. Release with nyxq_adam_destroy.
///
/// The state is allocated here (8 bytes per parameter for FP32 state, about
/// 2 for 8-bit state); a size that cannot be allocated is reported, never
/// fatal to the process.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (struct_size,
/// betas outside [0, 1), eps <= 0, negative weight decay, unknown state),
/// NYXQ_ERROR_SIZE_OVERFLOW (the state's bytes for `n` exceed the address
/// space), NYXQ_ERROR_OUT_OF_MEMORY (host memory for the state could not be
/// allocated; the message gives the bytes).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_create(
    options: *const NyxqAdamOptions,
    n: usize,
    adam_out: *mut *mut NyxqAdam,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(adam_out, "adam_out")?;
        // SAFETY: the caller's options contract.
        let settings = unsafe { adam_settings(options) }?;
        let adam = Adam::new(settings, n)?;
        // SAFETY: adam_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqAdam>(Mutex::new(adam))) };
        Ok(())
    })
}

/// Releases Adam state. NULL is a no-op.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_destroy(adam: *mut NyxqAdam) -> NyxqStatus {
    guard(|| handle::unregister(adam))
}

/// One Adam(W) step at learning rate `lr`: updates the `n` FP32 master
/// weights at `params` in place from the `n` gradients at `grads`.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (n differs from the size given at creation,
/// lr negative or not finite, `params` overlapping `grads`); on error nothing
/// is updated.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_step(
    adam: *mut NyxqAdam,
    lr: f32,
    params: *mut f32,
    n: usize,
    grads: *const f32,
    grads_len: usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        // SAFETY: the caller passes grads_len readable floats at grads.
        let grads = unsafe { ptr::slice(grads, grads_len, "grads") }?;
        ptr::check_disjoint((params, n, "params"), grads, "grads")?;
        // SAFETY: the caller passes n writable floats at params, disjoint from grads (checked).
        let params = unsafe { ptr::slice_mut(params, n, "params") }?;
        a.lock().step(lr, params, grads)
    })
}

/// Bytes of optimizer state held (*bytes_out) and what FP32 Adam would hold
/// for the same tensor (*fp32_bytes_out, 8 per parameter).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_state_bytes(
    adam: *const NyxqAdam,
    bytes_out: *mut usize,
    fp32_bytes_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        let held_out = ptr::out(bytes_out, "bytes_out")?;
        let fp32_out = ptr::out(fp32_bytes_out, "fp32_bytes_out")?;
        let (held, fp32) = a.lock().state_bytes();
        // SAFETY: both out-pointers checked non-NULL.
        unsafe {
            held_out.write(held);
            fp32_out.write(fp32);
        }
        Ok(())
    })
}

/// Bytes of the loss scaler's checkpoint (nyxq_loss_scaler_save): 68, the
/// same for every scaler.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_save_size(
    scaler: *const NyxqLossScaler,
    size_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        handle::get(scaler)?;
        let out = ptr::out(size_out, "size_out")?;
        // SAFETY: size_out checked non-NULL.
        unsafe { out.write(checkpoint::loss_scaler_len()) };
        Ok(())
    })
}

/// Writes the scaler's state (its settings, scale, finite steps in a row and
/// the pending non-finite finding) as versioned little-endian bytes into
/// the first nyxq_loss_scaler_save_size bytes of `dst`, for the trainer to
/// keep in its own checkpoint. The layout is documented in docs/guide.md
/// (Checkpoints).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (dst_len below the checkpoint's size, which
/// nyxq_last_error_needed_len gives). Calls on one scaler must not overlap.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_save(
    scaler: *const NyxqLossScaler,
    dst: *mut u8,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let s = handle::get(scaler)?;
        // SAFETY: the caller passes dst_len writable bytes at dst.
        let dst = unsafe { ptr::slice_mut(dst, dst_len, "dst") }?;
        checkpoint::save_loss_scaler(&s.lock(), dst).map(|_| ())
    })
}

/// Restores a state written by nyxq_loss_scaler_save into `scaler`, which
/// must have been made with the same options: the run continues bit for bit
/// as the saved one would have.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (not an nyxq checkpoint, another version,
/// another kind of object, truncated or trailing bytes, a checksum that does
/// not match, options that differ from the scaler's, a state these options
/// cannot reach; the message says which). Nothing changes on error. Calls on
/// one scaler must not overlap.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_loss_scaler_load(
    scaler: *mut NyxqLossScaler,
    src: *const u8,
    src_len: usize,
) -> NyxqStatus {
    guard(|| {
        let s = handle::get(scaler)?;
        // SAFETY: the caller passes src_len readable bytes at src.
        let src = unsafe { ptr::slice(src, src_len, "src") }?;
        checkpoint::load_loss_scaler(&mut s.lock(), src)
    })
}

/// Bytes of the optimizer's checkpoint (nyxq_adam_save): 68 plus its state
/// (8 bytes per parameter for FP32 state; for 8-bit state 2 per parameter
/// and 8 per block of 256).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Calls on one
/// optimizer must not overlap.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_save_size(adam: *const NyxqAdam, size_out: *mut usize) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        let out = ptr::out(size_out, "size_out")?;
        let len = checkpoint::adam_len(&checkpoint::host_image(&a.lock()))?;
        // SAFETY: size_out checked non-NULL.
        unsafe { out.write(len) };
        Ok(())
    })
}

/// Writes the optimizer's state (settings, parameter count, steps applied,
/// moments) as versioned little-endian bytes into the first
/// nyxq_adam_save_size bytes of `dst`. The bytes equal those a device
/// optimizer with the same state writes (nyxq_vk_adam_save), so either
/// loads the other's.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (dst_len below the checkpoint's size, which
/// nyxq_last_error_needed_len gives). Calls on one optimizer must not overlap.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_save(
    adam: *const NyxqAdam,
    dst: *mut u8,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        // SAFETY: the caller passes dst_len writable bytes at dst.
        let dst = unsafe { ptr::slice_mut(dst, dst_len, "dst") }?;
        checkpoint::save_host_adam(&a.lock(), dst).map(|_| ())
    })
}

/// Restores a state written by nyxq_adam_save or nyxq_vk_adam_save into
/// `adam`, which must have the same options and parameter count: later steps
/// give the bits the saved optimizer would have given.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (not an nyxq checkpoint, another version,
/// another kind of object, truncated or trailing bytes, a checksum that does
/// not match, options or a parameter count that differ; the message says
/// which). Nothing changes on error. Calls on one optimizer must not overlap.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_adam_load(
    adam: *mut NyxqAdam,
    src: *const u8,
    src_len: usize,
) -> NyxqStatus {
    guard(|| {
        let a = handle::get(adam)?;
        // SAFETY: the caller passes src_len readable bytes at src.
        let src = unsafe { ptr::slice(src, src_len, "src") }?;
        checkpoint::load_host_adam(&mut a.lock(), src)
    })
}
