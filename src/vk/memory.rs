//! Device memory: storage buffers, each with its own allocation, mapped for
//! their whole life when host-visible; each device-local allocation admitted
//! against the budget and counted in the device's ledger.

use super::budget::MemoryStatus;
use super::device::Device;
use super::error::vk_err;
use crate::error::{Error, ErrorKind, Result};
use ash::vk;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Largest single allocation nyxq makes.
pub const MAX_ALLOCATION: u64 = 1 << 30;

/// A buffer with its own memory (one allocation per buffer, never above
/// [`MAX_ALLOCATION`] or the device's maxMemoryAllocationSize).
pub struct Buffer {
    device: Arc<Device>,
    pub buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    pub size: u64,
    mapped: Option<*mut u8>,
    /// Bytes of device-local memory counted in the device's ledger (0 for
    /// memory of other heaps).
    counted: u64,
}

// SAFETY: the mapped pointer is only dereferenced through &mut self or by
// callers holding exclusive access to the buffer; Vulkan handles are plain values.
unsafe impl Send for Buffer {}
// SAFETY: as above; shared references never write through `mapped`.
unsafe impl Sync for Buffer {}

impl Buffer {
    /// A storage buffer of `size` bytes; `host_visible` asks for mapped
    /// memory. Each Vulkan object belongs to the returned value from the
    /// moment it exists, so a step that fails (memory type, allocation,
    /// bind, map) drops what the earlier steps made.
    ///
    /// Memory of a device-local heap is counted in the device's ledger and,
    /// unless `host_visible` (staging, which must work under pressure so that
    /// tensors can leave the device), admitted against the budget first
    /// ([`super::budget::Ledger::admit`]): where the budget is the driver's
    /// (or a test's), an allocation that would take the process's usage above
    /// it is refused with OutOfDeviceMemory before Vulkan is asked.
    ///
    /// Fault injection (`Device::fail_allocation`): the chosen allocation
    /// fails where binding its memory would, after the buffer and its memory
    /// exist, so that the tests exercise that cleanup.
    pub fn new(device: &Arc<Device>, size: u64, host_visible: bool) -> Result<Buffer> {
        let limit = MAX_ALLOCATION.min(device.info.max_allocation_bytes);
        if size > limit {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!("a buffer of {size} bytes exceeds the allocation limit {limit}"),
            ));
        }
        device.check_lost()?;
        let nth = device.allocations.fetch_add(1, Relaxed) + 1;
        let injected_failure = device.fail_allocation.load(Relaxed) == nth;
        let d = &device.device;
        let size = size.max(4);
        let mut made = Buffer {
            device: device.clone(),
            buffer: vk::Buffer::null(),
            memory: vk::DeviceMemory::null(),
            size,
            mapped: None,
            counted: 0,
        };
        // SAFETY: a live device; the info lives across the call.
        made.buffer = unsafe {
            d.create_buffer(
                &vk::BufferCreateInfo::default()
                    .size(size)
                    .usage(
                        vk::BufferUsageFlags::STORAGE_BUFFER
                            | vk::BufferUsageFlags::TRANSFER_SRC
                            | vk::BufferUsageFlags::TRANSFER_DST,
                    )
                    .sharing_mode(vk::SharingMode::EXCLUSIVE),
                None,
            )
        }
        .map_err(|e| vk_err("vkCreateBuffer", e))?;
        // SAFETY: the buffer was just created.
        let req = unsafe { d.get_buffer_memory_requirements(made.buffer) };
        let (type_index, device_local) = memory_type(device, req.memory_type_bits, host_visible)
            .ok_or_else(|| Error::new(ErrorKind::Vulkan, "no suitable memory type"))?;
        let admission = device_local
            .then(|| {
                device
                    .ledger
                    .admit(req.size, !host_visible, || status(device))
            })
            .transpose()?;
        // SAFETY: a valid allocation info for this device.
        made.memory = unsafe {
            d.allocate_memory(
                &vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(type_index),
                None,
            )
        }
        .map_err(|e| vk_err("vkAllocateMemory", e))?;
        made.counted = admission.map_or(0, |a| a.commit());
        if injected_failure {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!("device allocation {nth} of {size} bytes failed (fault injection)"),
            ));
        }
        // SAFETY: the memory is fresh, of a type the buffer allows, and large
        // enough for it.
        unsafe { d.bind_buffer_memory(made.buffer, made.memory, 0) }
            .map_err(|e| vk_err("vkBindBufferMemory", e))?;
        if host_visible {
            // SAFETY: host-visible memory, mapped once for the buffer's life.
            let p = unsafe {
                d.map_memory(made.memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
            }
            .map_err(|e| vk_err("vkMapMemory", e))?;
            made.mapped = Some(p.cast::<u8>());
        }
        Ok(made)
    }

    /// Copies `data` to the start of a mapped buffer.
    pub fn write(&mut self, data: &[u8]) {
        let p = self.mapped.expect("write needs a host-visible buffer");
        assert!(data.len() as u64 <= self.size);
        // SAFETY: p maps `size` bytes; no GPU work uses the buffer now (the
        // caller waited), and &mut self excludes other host access.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }

    /// The whole mapped memory, for producing bytes in place.
    pub fn mapped_mut(&mut self) -> &mut [u8] {
        let p = self.mapped.expect("mapped_mut needs a host-visible buffer");
        // SAFETY: p maps `size` bytes; no GPU work uses the buffer now (every
        // submission is waited on), and &mut self excludes other host access.
        unsafe { std::slice::from_raw_parts_mut(p, self.size as usize) }
    }

    /// The whole mapped memory, for reading results in place.
    pub fn mapped(&self) -> &[u8] {
        let p = self.mapped.expect("mapped needs a host-visible buffer");
        // SAFETY: p maps `size` bytes; GPU writes finished (fence waited) and
        // the memory is coherent; shared access only reads.
        unsafe { std::slice::from_raw_parts(p, self.size as usize) }
    }

    /// Copies the first `out.len()` bytes of a mapped buffer into `out`.
    pub fn read(&self, out: &mut [u8]) {
        let p = self.mapped.expect("read needs a host-visible buffer");
        assert!(out.len() as u64 <= self.size);
        // SAFETY: p maps `size` bytes; GPU writes finished (fence waited) and
        // the memory is coherent.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
    }
}

/// Device-local memory of `device` now (`nyxq_context_memory_status`): the
/// heaps, the driver's budget and usage (read fresh where VK_EXT_memory_budget
/// is listed) or a test's budget, nyxq's ledger, and the largest allocation
/// nyxq makes. The device's facts bound what the driver reports: an emulated
/// device (crate::vk::emulation) keeps its capped memory and, where it has
/// no VK_EXT_memory_budget, no budget. A physical-device query: it works on
/// a lost device too.
pub fn status(device: &Device) -> MemoryStatus {
    let info = &device.info;
    let now = super::budget::read_heaps(
        &device.instance.instance,
        device.physical,
        info.budget_bytes.is_some(),
    );
    let heaps = super::budget::Heaps {
        device_local_bytes: info.device_local_bytes,
        budget_bytes: now.budget_bytes.map(|b| b.min(info.device_local_bytes)),
        ..now
    };
    MemoryStatus::of_device(
        &heaps,
        &device.ledger,
        MAX_ALLOCATION.min(device.info.max_allocation_bytes),
    )
}

/// The first memory type of `device` among `allowed` (a bit per type) with
/// host-visible coherent memory, or device-local memory; and whether its heap
/// is device-local.
fn memory_type(device: &Device, allowed: u32, host_visible: bool) -> Option<(u32, bool)> {
    // SAFETY: the physical device belongs to this instance.
    let props = unsafe {
        device
            .instance
            .instance
            .get_physical_device_memory_properties(device.physical)
    };
    let wanted = if host_visible {
        vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT
    } else {
        vk::MemoryPropertyFlags::DEVICE_LOCAL
    };
    let index = (0..props.memory_type_count).find(|&i| {
        allowed & (1 << i) != 0
            && props.memory_types[i as usize]
                .property_flags
                .contains(wanted)
    })?;
    let heap = props.memory_types[index as usize].heap_index as usize;
    let device_local = props.memory_heaps[heap]
        .flags
        .contains(vk::MemoryHeapFlags::DEVICE_LOCAL);
    Some((index, device_local))
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let d = &self.device.device;
        // SAFETY: no pending work uses the buffer (submissions are waited on
        // before buffers are dropped); destroy the buffer, then free its
        // memory (which unmaps it). Either handle may be null when
        // Buffer::new failed before making it, which both calls accept.
        unsafe {
            d.destroy_buffer(self.buffer, None);
            d.free_memory(self.memory, None);
        }
        self.device.ledger.release(self.counted);
    }
}
