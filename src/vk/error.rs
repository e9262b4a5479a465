//! Vulkan results as nyxq errors.

use crate::error::{Error, ErrorKind};
use ash::vk;

/// A Vulkan failure of `what` as a nyxq error (out-of-memory and device-lost
/// keep their kinds).
pub(crate) fn vk_err(what: &str, e: vk::Result) -> Error {
    let kind = match e {
        vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => ErrorKind::OutOfDeviceMemory,
        vk::Result::ERROR_OUT_OF_HOST_MEMORY => ErrorKind::OutOfMemory,
        vk::Result::ERROR_DEVICE_LOST => ErrorKind::DeviceLost,
        _ => ErrorKind::Vulkan,
    };
    Error::new(kind, format!("{what}: {e}"))
}
