//! nyxq-owned tensors through the C ABI.

use super::context::NyxqContext;
use super::format::format_arg;
use super::guard::guard;
use super::handle::{self, Opaque};
use super::plan::NyxqPlacement;
use super::ptr;
use super::quant::{NyxqQuantizeOptions, quantize_options};
use super::status::NyxqStatus;
use crate::error::Error;
use crate::shape::MAX_RANK;
use crate::tensor::{Placement, Tensor};
use std::ffi::{CString, c_char, c_void};

/// A quantized tensor owned by nyxq. Create with nyxq_tensor_create, release
/// with nyxq_tensor_destroy. Calls on one tensor may come from several threads;
/// an upload waits for reads in progress and the other way round.
pub struct NyxqTensor {
    _opaque: [u8; 0],
}

/// A tensor and its name as a C string (kept for nyxq_tensor_info).
pub(crate) struct TensorHandle {
    pub(crate) tensor: Tensor,
    c_name: CString,
}

impl Opaque for NyxqTensor {
    type Inner = TensorHandle;
    const KIND: &'static str = "tensor";
}

/// Most dimensions a tensor may have.
pub const NYXQ_MAX_RANK: usize = 8;
const _: () = assert!(NYXQ_MAX_RANK == MAX_RANK);

/// A tensor's description (nyxq_tensor_info).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqTensorInfo {
    /// The tensor's name; valid until the tensor is destroyed.
    pub name: *const c_char,
    /// Its NyxqFormat.
    pub format: i32,
    /// Number of dimensions (1..=NYXQ_MAX_RANK).
    pub rank: u32,
    /// Dimensions, outermost first; entries past `rank` are 0.
    pub shape: [u64; NYXQ_MAX_RANK],
    /// Number of elements.
    pub numel: u64,
    /// Bytes of quantized data, scales included.
    pub byte_len: u64,
}

pub(crate) fn wrap(tensor: Tensor) -> Result<*mut NyxqTensor, Error> {
    let c_name =
        CString::new(tensor.name()).map_err(|_| Error::invalid("tensor name contains NUL"))?;
    Ok(handle::register::<NyxqTensor>(TensorHandle {
        tensor,
        c_name,
    }))
}

fn placement_arg(placement: i32) -> Result<Placement, Error> {
    super::enum_value(
        placement,
        &[
            (NyxqPlacement::NyxqPlacementDevice as i32, Placement::Device),
            (NyxqPlacement::NyxqPlacementHost as i32, Placement::Host),
        ],
        "placement",
    )
}

/// Creates a zero-filled tensor named `name` (UTF-8, copied) of the given shape
/// (`rank` dimensions, outermost first; the last is the row length and must be
/// a multiple of the format's block size) in `format`, in host memory.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown format, rank 0 or above NYXQ_MAX_RANK, a
/// zero dimension, rows not whole blocks, name not UTF-8),
/// NYXQ_ERROR_SIZE_OVERFLOW, NYXQ_ERROR_OUT_OF_MEMORY. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_create(
    ctx: *const NyxqContext,
    name: *const c_char,
    shape: *const u64,
    rank: usize,
    format: i32,
    tensor_out: *mut *mut NyxqTensor,
) -> NyxqStatus {
    guard(|| create(ctx, name, shape, rank, format, Placement::Host, tensor_out))
}

/// As nyxq_tensor_create, in `placement` (a NyxqPlacement). A DEVICE tensor's
/// bytes live in device-local buffers of the context's Vulkan device, split
/// into chunks of whole rows (nyxq_tensor_vk_buffer). When that allocation
/// fails the result is NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, or, with the context
/// option vulkan_host_fallback, a HOST tensor (nyxq_tensor_placement says
/// which; the log says why).
///
/// Errors: as nyxq_tensor_create, and NYXQ_ERROR_INVALID_ARGUMENT (unknown
/// placement), NYXQ_ERROR_UNSUPPORTED (DEVICE on a CPU context, a row
/// larger than the device's buffer range), NYXQ_ERROR_OUT_OF_DEVICE_MEMORY,
/// NYXQ_ERROR_VULKAN, NYXQ_ERROR_DEVICE_LOST. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_create_in(
    ctx: *const NyxqContext,
    name: *const c_char,
    shape: *const u64,
    rank: usize,
    format: i32,
    placement: i32,
    tensor_out: *mut *mut NyxqTensor,
) -> NyxqStatus {
    guard(|| {
        let placement = placement_arg(placement)?;
        create(ctx, name, shape, rank, format, placement, tensor_out)
    })
}

fn create(
    ctx: *const NyxqContext,
    name: *const c_char,
    shape: *const u64,
    rank: usize,
    format: i32,
    placement: Placement,
    tensor_out: *mut *mut NyxqTensor,
) -> Result<(), Error> {
    let context = handle::get(ctx)?;
    // SAFETY: the caller passes a NUL-terminated string.
    let name = unsafe { ptr::string(name, "name") }?;
    let format = format_arg(format)?;
    let out = ptr::out(tensor_out, "tensor_out")?;
    if rank == 0 || rank > MAX_RANK {
        return Err(Error::invalid(format!(
            "rank {rank} is outside 1..={MAX_RANK}"
        )));
    }
    // SAFETY: the caller passes `rank` readable u64s at shape.
    let dims = unsafe { ptr::slice(shape, rank, "shape") }?;
    let dims: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| Error::overflow("shape dimension")))
        .collect::<Result<_, _>>()?;
    let tensor = Tensor::new_in(context, name, &dims, format, placement)?;
    let handle = wrap(tensor)?;
    // SAFETY: tensor_out checked non-NULL.
    unsafe { out.write(handle) };
    Ok(())
}

/// Releases a tensor. NULL is a no-op. Views from nyxq_tensor_data become invalid.
///
/// Recorded work: while unreleased tickets of dispatches recorded through the
/// tensor's context (nyxq_vk_cmd_*) bind one of a DEVICE tensor's VkBuffers,
/// the call refuses with NYXQ_ERROR_INVALID_ARGUMENT, destroys nothing, and
/// the message says how many tickets bind them; the tensor stays usable. Wait
/// for those submissions, call nyxq_vk_release, then destroy. nyxq cannot see
/// the trainer's own commands (its shaders binding the buffers from
/// nyxq_tensor_vk_buffer): those must have completed before this call.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE, NYXQ_ERROR_INVALID_ARGUMENT (unreleased
/// recorded tickets bind its buffers). No other call may be using the tensor.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_destroy(tensor: *mut NyxqTensor) -> NyxqStatus {
    guard(|| {
        if tensor.is_null() {
            return Ok(());
        }
        handle::get(tensor)?
            .tensor
            .check_no_unreleased_recordings()?;
        handle::unregister(tensor)
    })
}

/// Quantizes `n` floats (exactly the tensor's element count) into the tensor.
/// `options` as for nyxq_quantize. On error the tensor keeps its old bytes.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (n differs from the element count),
/// NYXQ_ERROR_NON_FINITE; for a DEVICE tensor also (its staging memory and
/// copy) NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, NYXQ_ERROR_VULKAN,
/// NYXQ_ERROR_DEVICE_LOST. Nothing is written when the input is rejected.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_upload(
    tensor: *mut NyxqTensor,
    src: *const f32,
    n: usize,
    options: *const NyxqQuantizeOptions,
) -> NyxqStatus {
    guard(|| {
        let handle = handle::get(tensor)?;
        // SAFETY: the caller passes n readable floats at src.
        let src = unsafe { ptr::slice(src, n, "src") }?;
        // SAFETY: the options contract is the caller's.
        let opts = unsafe { quantize_options(options, handle.tensor.context().threads()) }?;
        handle.tensor.upload(src, &opts)
    })
}

/// Dequantizes the whole tensor into `dst` (`dst_len` floats, at least the
/// element count). `dst` must not overlap the tensor's own bytes.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (needed length in floats); for a DEVICE
/// tensor also (its staging memory and copy) NYXQ_ERROR_OUT_OF_DEVICE_MEMORY,
/// NYXQ_ERROR_VULKAN, NYXQ_ERROR_DEVICE_LOST. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_download(
    tensor: *const NyxqTensor,
    dst: *mut f32,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let handle = handle::get(tensor)?;
        let numel = handle.tensor.numel();
        if dst_len < numel {
            return Err(Error::buffer_too_small("dst", "floats", numel, dst_len));
        }
        // SAFETY: the caller passes dst_len >= numel writable floats at dst.
        let dst = unsafe { ptr::slice_mut(dst, numel, "dst") }?;
        handle.tensor.download(dst)
    })
}

/// A read-only view of a HOST tensor's quantized bytes (the format's exact
/// layout). The pointer stays valid until the tensor is destroyed or migrated;
/// its contents change when the tensor is uploaded to. Never write through it
/// or free it. A DEVICE tensor has no host view: download it, or bind its
/// buffers (nyxq_tensor_vk_buffer).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_UNSUPPORTED (a DEVICE tensor). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_data(
    tensor: *const NyxqTensor,
    data_out: *mut *const c_void,
    len_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        let handle = handle::get(tensor)?;
        let data = ptr::out(data_out, "data_out")?;
        let len = ptr::out(len_out, "len_out")?;
        let bytes = handle.tensor.bytes_ptr().ok_or_else(|| {
            Error::unsupported(format!(
                "tensor '{}' is in device memory: download it or bind nyxq_tensor_vk_buffer",
                handle.tensor.name()
            ))
        })?;
        // SAFETY: both out-pointers checked non-NULL.
        unsafe {
            data.write(bytes.cast());
            len.write(handle.tensor.byte_len());
        }
        Ok(())
    })
}

/// Makes a new tensor holding this one's values in another format (dequantize,
/// then quantize with `options`), placed as nyxq_tensor_create_in places it
/// in the source's placement. The source is unchanged.
///
/// Errors: as nyxq_tensor_create_in and nyxq_tensor_upload (a value the new
/// format cannot hold is NYXQ_ERROR_NON_FINITE unless `options` saturate; a
/// DEVICE source needs a format with a Vulkan kernel), without
/// NYXQ_ERROR_SIZE_OVERFLOW: the source's size bounds the copy's. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_convert(
    tensor: *const NyxqTensor,
    format: i32,
    options: *const NyxqQuantizeOptions,
    tensor_out: *mut *mut NyxqTensor,
) -> NyxqStatus {
    guard(|| {
        let handle = handle::get(tensor)?;
        let format = format_arg(format)?;
        let out = ptr::out(tensor_out, "tensor_out")?;
        // SAFETY: the options contract is the caller's.
        let opts = unsafe { quantize_options(options, handle.tensor.context().threads()) }?;
        let converted = wrap(handle.tensor.convert(format, &opts)?)?;
        // SAFETY: tensor_out checked non-NULL.
        unsafe { out.write(converted) };
        Ok(())
    })
}

/// Describes a tensor.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_info(
    tensor: *const NyxqTensor,
    info_out: *mut NyxqTensorInfo,
) -> NyxqStatus {
    guard(|| {
        let handle = handle::get(tensor)?;
        let out = ptr::out(info_out, "info_out")?;
        let t = &handle.tensor;
        let mut shape = [0u64; NYXQ_MAX_RANK];
        for (slot, &d) in shape.iter_mut().zip(t.shape()) {
            *slot = d as u64;
        }
        let info = NyxqTensorInfo {
            name: handle.c_name.as_ptr(),
            format: t.format() as i32,
            rank: t.shape().len() as u32,
            shape,
            numel: t.numel() as u64,
            byte_len: t.byte_len() as u64,
        };
        // SAFETY: info_out checked non-NULL.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// Where a tensor's bytes are now (a NyxqPlacement).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_placement(
    tensor: *const NyxqTensor,
    placement_out: *mut i32,
) -> NyxqStatus {
    guard(|| {
        let handle = handle::get(tensor)?;
        let out = ptr::out(placement_out, "placement_out")?;
        let value = match handle.tensor.placement() {
            Placement::Host => NyxqPlacement::NyxqPlacementHost,
            Placement::Device => NyxqPlacement::NyxqPlacementDevice,
        };
        // SAFETY: placement_out checked non-NULL.
        unsafe { out.write(value as i32) };
        Ok(())
    })
}

/// Moves a tensor's bytes to `placement` (a NyxqPlacement), unchanged, through
/// staging buffers; moving to where it already is does nothing. To the device,
/// everything is allocated before anything is freed: when that fails the
/// tensor stays on the host, intact, and the result is
/// NYXQ_ERROR_OUT_OF_DEVICE_MEMORY (or NYXQ_OK with the context option
/// vulkan_host_fallback: check nyxq_tensor_placement). A view from
/// nyxq_tensor_data is invalid once a HOST tensor moved; the VkBuffers of a
/// DEVICE tensor are destroyed when it moves to the host, so your command
/// buffers that use them must have completed; while unreleased tickets of
/// dispatches recorded through the tensor's context bind them, moving to the
/// host refuses with NYXQ_ERROR_INVALID_ARGUMENT and changes nothing (as
/// nyxq_tensor_destroy).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown placement, unreleased recorded
/// tickets), NYXQ_ERROR_UNSUPPORTED (DEVICE on a CPU context),
/// NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, NYXQ_ERROR_OUT_OF_MEMORY,
/// NYXQ_ERROR_VULKAN, NYXQ_ERROR_DEVICE_LOST. No other call may be using the
/// tensor.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_migrate(tensor: *mut NyxqTensor, placement: i32) -> NyxqStatus {
    guard(|| {
        let handle = handle::get(tensor)?;
        handle.tensor.migrate(placement_arg(placement)?)
    })
}

/// One chunk of a DEVICE tensor's bytes (nyxq_tensor_vk_buffer).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqVkTensorBuffer {
    /// VkBuffer (a `void *` on 64-bit platforms; assign it to a VkBuffer with
    /// one cast: `(VkBuffer)buffer`), created with STORAGE_BUFFER,
    /// TRANSFER_SRC and TRANSFER_DST usage. Owned by nyxq: never destroy it.
    pub buffer: *mut c_void,
    /// Byte offset of the chunk's data in `buffer` (0 today).
    pub offset: u64,
    /// Bytes of quantized data in this chunk (whole rows); the buffer itself
    /// may be up to 3 bytes larger (whole 32-bit words).
    pub size: u64,
    /// Position of the chunk's first byte in the tensor's bytes.
    pub first_byte: u64,
    /// Chunks of the tensor (each at most 1 GiB and maxStorageBufferRange).
    pub chunk_count: u64,
}

/// The VkBuffer, offset and size of chunk `index` of a DEVICE tensor, so the
/// trainer's shaders can bind the quantized bytes (layout as the format
/// defines; chunks hold whole rows, in order). Valid until the tensor is
/// destroyed or migrated. nyxq writes those buffers only in nyxq_tensor_upload
/// and nyxq_tensor_migrate; your command buffers that read them must not run
/// at the same time as those calls.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (index >= chunk_count), NYXQ_ERROR_UNSUPPORTED
/// (a HOST tensor). *buffer_out is written only on success. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_vk_buffer(
    tensor: *const NyxqTensor,
    index: u64,
    buffer_out: *mut NyxqVkTensorBuffer,
) -> NyxqStatus {
    guard(|| {
        use ash::vk::Handle;
        let handle = handle::get(tensor)?;
        let out = ptr::out(buffer_out, "buffer_out")?;
        let chunks = handle.tensor.device_chunks().ok_or_else(|| {
            Error::unsupported(format!(
                "tensor '{}' is in host memory: migrate it to the device first",
                handle.tensor.name()
            ))
        })?;
        let count = chunks.len() as u64;
        let &(buffer, size, first_byte) = usize::try_from(index)
            .ok()
            .and_then(|i| chunks.get(i))
            .ok_or_else(|| {
            Error::invalid(format!(
                "chunk index {index} is not below the chunk count {count}"
            ))
        })?;
        // SAFETY: buffer_out checked non-NULL.
        unsafe {
            out.write(NyxqVkTensorBuffer {
                buffer: buffer.as_raw() as *mut c_void,
                offset: 0,
                size,
                first_byte,
                chunk_count: count,
            })
        };
        Ok(())
    })
}
