//! nyxq-owned tensors through the C ABI.

use super::context::NyxqContext;
use super::format::format_arg;
use super::guard::guard;
use super::handle::{self, Opaque};
use super::ptr;
use super::quant::{NyxqQuantizeOptions, quantize_options};
use super::status::NyxqStatus;
use crate::error::Error;
use crate::tensor::{MAX_RANK, Tensor};
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

fn wrap(tensor: Tensor) -> Result<*mut NyxqTensor, Error> {
    let c_name =
        CString::new(tensor.name()).map_err(|_| Error::invalid("tensor name contains NUL"))?;
    Ok(handle::register::<NyxqTensor>(TensorHandle {
        tensor,
        c_name,
    }))
}

/// Creates a zero-filled tensor named `name` (UTF-8, copied) of the given shape
/// (`rank` dimensions, outermost first; the last is the row length and must be
/// a multiple of the format's block size) in `format`.
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
    guard(|| {
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
        let tensor = Tensor::new(context, name, &dims, format)?;
        let handle = wrap(tensor)?;
        // SAFETY: tensor_out checked non-NULL.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Releases a tensor. NULL is a no-op. Views from nyxq_tensor_data become invalid.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE. No other call may be using the tensor.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_destroy(tensor: *mut NyxqTensor) -> NyxqStatus {
    guard(|| handle::unregister(tensor))
}

/// Quantizes `n` floats (exactly the tensor's element count) into the tensor.
/// `options` as for nyxq_quantize. On error the tensor keeps its old bytes.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (n differs from the element count),
/// NYXQ_ERROR_NON_FINITE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_tensor_upload(
    tensor: *const NyxqTensor,
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
/// element count).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (needed length in floats). Thread-safe.
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

/// A read-only view of the tensor's quantized bytes (the format's exact layout).
/// The pointer stays valid until the tensor is destroyed; its contents change
/// when the tensor is uploaded to. Never write through it or free it.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
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
        // SAFETY: both out-pointers checked non-NULL.
        unsafe {
            data.write(handle.tensor.bytes_ptr().cast());
            len.write(handle.tensor.byte_len());
        }
        Ok(())
    })
}

/// Makes a new tensor holding this one's values in another format (dequantize,
/// then quantize with `options`). The source is unchanged.
///
/// Errors: as nyxq_tensor_create and nyxq_tensor_upload. Thread-safe.
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
