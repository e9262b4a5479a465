//! The checks of the caller's buffer ranges and counts that every recording
//! call makes before it records anything.

use super::device::Device;
use crate::error::{Error, ErrorKind, Result};
use ash::vk;

/// A range of a caller's buffer that a dispatch binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferRange {
    pub buffer: vk::Buffer,
    pub offset: u64,
    pub size: u64,
}

/// Checks a range: aligned offset, no overflow, at least `needed` bytes,
/// inside the buffer's memory requirement, and returns `needed` rounded up to
/// whole 32-bit words (what the kernel binds).
///
/// The memory requirement's size is the tightest bound nyxq can read for a
/// buffer it did not create (the creation size is not queryable); it is at
/// least the creation size and may exceed it by alignment, so a range past
/// it is out of bounds for certain, and one inside it may still run past the
/// creation size (the validation layer reports that).
/// Nothing is recorded for a lost device: every recording call checks its
/// ranges first, so each refuses with the first loss's reason.
pub fn check_range(device: &Device, range: &BufferRange, needed: u64, what: &str) -> Result<u64> {
    device.check_lost()?;
    if range.buffer == vk::Buffer::null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            format!("{what}.buffer is VK_NULL_HANDLE"),
        ));
    }
    let align = device.info.min_storage_offset_alignment.max(4);
    if range.offset % align != 0 {
        return Err(Error::invalid(format!(
            "{what}.offset {} is not a multiple of the device's storage-buffer offset alignment {align}",
            range.offset
        )));
    }
    if range.offset.checked_add(range.size).is_none() {
        return Err(Error::overflow(&format!("{what}.offset + {what}.size")));
    }
    let bound = needed.div_ceil(4) * 4;
    Error::ensure_room(
        &format!("{what}.size (whole 32-bit words)"),
        "bytes",
        bound as usize,
        usize::try_from(range.size).unwrap_or(usize::MAX),
    )?;
    // SAFETY: the caller promises a live buffer of this device (the
    // recording functions' contract); the query reads nothing else.
    let memory = unsafe { device.device.get_buffer_memory_requirements(range.buffer) };
    if range.offset + range.size > memory.size {
        return Err(Error::invalid(format!(
            "{what} (VkBuffer {:#x}, offset {} + size {} = {} bytes) runs past the end of the \
             buffer, whose memory requirement is {} bytes",
            vk::Handle::as_raw(range.buffer),
            range.offset,
            range.size,
            range.offset + range.size,
            memory.size
        )));
    }
    Ok(bound)
}

/// Rejects two ranges of one buffer that overlap (the kernels read one and
/// write the other in parallel).
pub fn check_disjoint(a: &BufferRange, a_len: u64, b: &BufferRange, b_len: u64) -> Result<()> {
    let overlap =
        a.buffer == b.buffer && a.offset < b.offset + b_len && b.offset < a.offset + a_len;
    if overlap {
        return Err(Error::invalid(
            "src and dst overlap in the same buffer; use separate ranges",
        ));
    }
    Ok(())
}

/// The command buffer is a handle (not VK_NULL_HANDLE).
pub fn check_command_buffer(cmd: vk::CommandBuffer) -> Result<()> {
    if cmd == vk::CommandBuffer::null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            "command_buffer is VK_NULL_HANDLE",
        ));
    }
    Ok(())
}

/// The command buffer is a handle and `n` a positive count that fits usize.
pub fn checked_count(cmd: vk::CommandBuffer, n: u64) -> Result<usize> {
    check_command_buffer(cmd)?;
    if n == 0 {
        return Err(Error::invalid("n is 0: nothing to record"));
    }
    usize::try_from(n).map_err(|_| Error::overflow("n"))
}
