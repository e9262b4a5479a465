//! The C ABI, and nothing else: argument checks, handle conversion, error
//! mapping and the panic guard. Every export is `nyxq_<object>_<verb>`, and its
//! body is one call to [`guard::guard`] (see DESIGN.md, "Rules at the C boundary").

// The exports are for C callers, whose pointer contracts are documented in the
// header and checked here as far as they can be; Rust code uses the safe modules.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod config;
pub mod context;
pub mod format;
pub mod gguf;
pub mod guard;
pub mod handle;
pub mod hardware;
pub mod importance;
#[cfg(feature = "test-exports")]
pub mod layout;
pub mod log;
pub mod matvec;
pub mod memory;
pub mod model;
pub mod plan;
pub mod plan_policy;
pub mod ptr;
pub mod quant;
pub mod status;
pub mod strings;
pub mod tensor;
#[cfg(feature = "test-exports")]
pub mod test_exports;
pub mod train;
pub mod version;
pub mod vk;
pub mod vk_adam;
pub mod vk_cmd;
pub mod vk_matvec;
pub mod vk_train;

pub use status::NyxqStatus;

use crate::error::Error;

/// Copies `text` into a fixed C char array, truncated on a UTF-8 boundary and
/// always NUL-terminated.
pub(crate) fn copy_to_c_array(text: &str, dst: &mut [std::ffi::c_char]) {
    let mut end = text.len().min(dst.len().saturating_sub(1));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (d, &b) in dst.iter_mut().zip(&text.as_bytes()[..end]) {
        *d = b as std::ffi::c_char;
    }
    if let Some(nul) = dst.get_mut(end) {
        *nul = 0;
    }
}

/// An integer from C that must be one of an enum's values.
pub(crate) fn enum_value<T: Copy>(value: i32, table: &[(i32, T)], what: &str) -> Result<T, Error> {
    table
        .iter()
        .find(|(raw, _)| *raw == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let known: Vec<String> = table.iter().map(|(raw, _)| raw.to_string()).collect();
            Error::invalid(format!(
                "unknown {what} value {value} (known: {})",
                known.join(", ")
            ))
        })
}
