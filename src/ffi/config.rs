//! The trainer config's [quantization] section through the C ABI.

use super::context::NyxqContext;
use super::guard::guard;
use super::handle::{self, Opaque};
use super::plan_policy::{NyxqPlanPolicy, policy_to_c};
use super::ptr;
use super::status::NyxqStatus;
use super::strings::give_string;
use crate::config::QuantConfig;
use std::ffi::c_char;
use std::path::Path;

/// A parsed [quantization] section. Create with nyxq_config_load or
/// nyxq_config_parse, release with nyxq_config_destroy. Immutable: any thread
/// may use it at once.
pub struct NyxqConfig {
    _opaque: [u8; 0],
}

impl Opaque for NyxqConfig {
    type Inner = QuantConfig;
    const KIND: &'static str = "config";
}

/// Reads the [quantization] section of the INI file at `path`.
///
/// The file is read as bytes: a UTF-8 byte order mark at its start is
/// skipped; the [quantization] section must be UTF-8 (comments aside), while
/// other sections and comments may hold any bytes.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (`path` not
/// UTF-8), NYXQ_ERROR_IO (unreadable), NYXQ_ERROR_CONFIG (unknown key, bad
/// value, duplicate key, impossible combination, a line of the section that
/// is not UTF-8: the message gives "file:line: reason"). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_config_load(
    path: *const c_char,
    config_out: *mut *mut NyxqConfig,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let path = unsafe { ptr::string(path, "path") }?;
        let out = ptr::out(config_out, "config_out")?;
        let cfg = QuantConfig::load(Path::new(path))?;
        // SAFETY: config_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqConfig>(cfg)) };
        Ok(())
    })
}

/// Parses INI `text` (NUL-terminated, encoded as nyxq_config_load reads a
/// file); `origin` (UTF-8) names it in error messages.
///
/// Errors: as nyxq_config_load, without NYXQ_ERROR_IO; NYXQ_ERROR_INVALID_ARGUMENT
/// only for an `origin` that is not UTF-8. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_config_parse(
    text: *const c_char,
    origin: *const c_char,
    config_out: *mut *mut NyxqConfig,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes NUL-terminated strings.
        let text = unsafe { ptr::c_bytes(text, "text") }?;
        // SAFETY: as above.
        let origin = unsafe { ptr::string(origin, "origin") }?;
        let out = ptr::out(config_out, "config_out")?;
        let cfg = QuantConfig::parse_bytes(text, origin)?;
        // SAFETY: config_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqConfig>(cfg)) };
        Ok(())
    })
}

/// Writes the planning policy the config asks for into *policy_out, for
/// training when `training` is nonzero (overrides: NULL).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_config_policy(
    config: *const NyxqConfig,
    training: i32,
    policy_out: *mut NyxqPlanPolicy,
) -> NyxqStatus {
    guard(|| {
        let cfg = handle::get(config)?;
        let out = ptr::out(policy_out, "policy_out")?;
        // SAFETY: policy_out checked non-NULL.
        unsafe { out.write(policy_to_c(&cfg.policy(training != 0))) };
        Ok(())
    })
}

/// Writes the planning policy of the config the context was created with
/// (NyxqContextOptions.config_path; the defaults without one) into
/// *policy_out, for training when `training` is nonzero.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_plan_policy(
    ctx: *const NyxqContext,
    training: i32,
    policy_out: *mut NyxqPlanPolicy,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        let out = ptr::out(policy_out, "policy_out")?;
        // SAFETY: policy_out checked non-NULL.
        unsafe { out.write(policy_to_c(&context.plan_policy(training != 0))) };
        Ok(())
    })
}

/// The config's warnings, one per line ("file:line: what and why"), or an
/// empty string: keys that do not apply (quantization disabled, per-role
/// precisions with mixed precision off, precisions below precision_level while
/// quantization is disabled) and an accuracy_threshold whose SNR floor every
/// format passes. They are also logged at warn level when the config is
/// parsed, and become notes of the plans made from it by the Rust API and the
/// `nyxq plan --config` command. *text_out receives a NUL-terminated string to
/// release with nyxq_string_destroy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_config_warnings(
    config: *const NyxqConfig,
    text_out: *mut *mut c_char,
) -> NyxqStatus {
    guard(|| {
        let cfg = handle::get(config)?;
        let out = ptr::out(text_out, "text_out")?;
        // SAFETY: text_out checked non-NULL.
        unsafe { out.write(give_string(&cfg.warnings.join("\n"))) };
        Ok(())
    })
}

/// Releases a config. NULL is a no-op.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE. No other call may be using it.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_config_destroy(config: *mut NyxqConfig) -> NyxqStatus {
    guard(|| handle::unregister(config))
}
