//! Status codes: what every exported function returns.

use crate::error::ErrorKind;
use std::ffi::c_char;

/// The result of every nyxq function. `NYXQ_OK` is 0; the list only grows
/// (values are never reused or renumbered).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NyxqStatus {
    /// Success.
    NyxqOk = 0,
    /// A bug in nyxq or a caught panic; the message says where.
    NyxqErrorInternal = 1,
    /// An argument is out of its documented domain (unknown enum value, bad count, ...).
    NyxqErrorInvalidArgument = 2,
    /// A required pointer was NULL.
    NyxqErrorNullPointer = 3,
    /// A handle was destroyed, is not a nyxq handle, or is of another type.
    NyxqErrorInvalidHandle = 4,
    /// A destination buffer is too small; nyxq_last_error_needed_len() says how large it must be.
    NyxqErrorBufferTooSmall = 5,
    /// A size computation overflowed (element count times bytes).
    NyxqErrorSizeOverflow = 6,
    /// NaN/Inf (or a value out of the target format's range) in the input; nyxq_last_error_index() names the first.
    NyxqErrorNonFinite = 7,
    /// Valid but not supported by this build, backend or device.
    NyxqErrorUnsupported = 8,
    /// Host memory could not be allocated.
    NyxqErrorOutOfMemory = 9,
    /// Device memory could not be allocated.
    NyxqErrorOutOfDeviceMemory = 10,
    /// The Vulkan device was lost; the context stays in this state.
    NyxqErrorDeviceLost = 11,
    /// Another Vulkan failure; the message has the VkResult.
    NyxqErrorVulkan = 12,
    /// No plan fits the budget; the message gives the shortfall in bytes.
    NyxqErrorInfeasiblePlan = 13,
    /// A configuration file or value is wrong; the message gives file, line and reason.
    NyxqErrorConfig = 14,
    /// A file could not be read or written.
    NyxqErrorIo = 15,
    /// The loss scale would fall below its floor.
    NyxqErrorLossScaleUnderflow = 16,
}

/// Every status, in order of value (for tests and nyxq_status_str).
pub(crate) const ALL_STATUSES: [NyxqStatus; 17] = [
    NyxqStatus::NyxqOk,
    NyxqStatus::NyxqErrorInternal,
    NyxqStatus::NyxqErrorInvalidArgument,
    NyxqStatus::NyxqErrorNullPointer,
    NyxqStatus::NyxqErrorInvalidHandle,
    NyxqStatus::NyxqErrorBufferTooSmall,
    NyxqStatus::NyxqErrorSizeOverflow,
    NyxqStatus::NyxqErrorNonFinite,
    NyxqStatus::NyxqErrorUnsupported,
    NyxqStatus::NyxqErrorOutOfMemory,
    NyxqStatus::NyxqErrorOutOfDeviceMemory,
    NyxqStatus::NyxqErrorDeviceLost,
    NyxqStatus::NyxqErrorVulkan,
    NyxqStatus::NyxqErrorInfeasiblePlan,
    NyxqStatus::NyxqErrorConfig,
    NyxqStatus::NyxqErrorIo,
    NyxqStatus::NyxqErrorLossScaleUnderflow,
];

impl NyxqStatus {
    /// The status C sees for an error of `kind`.
    pub fn from_kind(kind: ErrorKind) -> NyxqStatus {
        match kind {
            ErrorKind::Internal => NyxqStatus::NyxqErrorInternal,
            ErrorKind::InvalidArgument => NyxqStatus::NyxqErrorInvalidArgument,
            ErrorKind::NullPointer => NyxqStatus::NyxqErrorNullPointer,
            ErrorKind::InvalidHandle => NyxqStatus::NyxqErrorInvalidHandle,
            ErrorKind::BufferTooSmall { .. } => NyxqStatus::NyxqErrorBufferTooSmall,
            ErrorKind::SizeOverflow => NyxqStatus::NyxqErrorSizeOverflow,
            ErrorKind::NonFinite { .. } => NyxqStatus::NyxqErrorNonFinite,
            ErrorKind::Unsupported => NyxqStatus::NyxqErrorUnsupported,
            ErrorKind::OutOfMemory => NyxqStatus::NyxqErrorOutOfMemory,
            ErrorKind::OutOfDeviceMemory => NyxqStatus::NyxqErrorOutOfDeviceMemory,
            ErrorKind::DeviceLost => NyxqStatus::NyxqErrorDeviceLost,
            ErrorKind::Vulkan => NyxqStatus::NyxqErrorVulkan,
            ErrorKind::InfeasiblePlan { .. } => NyxqStatus::NyxqErrorInfeasiblePlan,
            ErrorKind::Config => NyxqStatus::NyxqErrorConfig,
            ErrorKind::Io => NyxqStatus::NyxqErrorIo,
            ErrorKind::LossScaleUnderflow => NyxqStatus::NyxqErrorLossScaleUnderflow,
        }
    }

    /// The status's description as a NUL-terminated static string.
    fn text(self) -> &'static [u8] {
        match self {
            NyxqStatus::NyxqOk => b"success\0",
            NyxqStatus::NyxqErrorInternal => b"internal error in nyxq\0",
            NyxqStatus::NyxqErrorInvalidArgument => b"invalid argument\0",
            NyxqStatus::NyxqErrorNullPointer => b"required pointer is NULL\0",
            NyxqStatus::NyxqErrorInvalidHandle => b"invalid, destroyed or foreign handle\0",
            NyxqStatus::NyxqErrorBufferTooSmall => b"destination buffer too small\0",
            NyxqStatus::NyxqErrorSizeOverflow => b"size computation overflows\0",
            NyxqStatus::NyxqErrorNonFinite => b"non-finite or out-of-range value in input\0",
            NyxqStatus::NyxqErrorUnsupported => b"not supported by this build, backend or device\0",
            NyxqStatus::NyxqErrorOutOfMemory => b"out of host memory\0",
            NyxqStatus::NyxqErrorOutOfDeviceMemory => b"out of device memory\0",
            NyxqStatus::NyxqErrorDeviceLost => b"Vulkan device lost\0",
            NyxqStatus::NyxqErrorVulkan => b"Vulkan error\0",
            NyxqStatus::NyxqErrorInfeasiblePlan => b"no precision plan fits the memory budget\0",
            NyxqStatus::NyxqErrorConfig => b"configuration error\0",
            NyxqStatus::NyxqErrorIo => b"file input/output error\0",
            NyxqStatus::NyxqErrorLossScaleUnderflow => b"loss scale would fall below its floor\0",
        }
    }
}

/// Describes a status code in words. Unknown values give "unknown status".
///
/// Returns a static NUL-terminated string; never NULL; never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_status_str(status: i32) -> *const c_char {
    let text: &'static [u8] = ALL_STATUSES
        .iter()
        .find(|s| **s as i32 == status)
        .map_or(b"unknown status\0", |s| s.text());
    text.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_numbered_in_order_and_each_has_text() {
        for (i, s) in ALL_STATUSES.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            let text = s.text();
            assert!(text.len() > 1 && text.ends_with(b"\0"));
        }
    }
}
