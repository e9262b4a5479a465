//! GGUF files through the C ABI: nyxq tensors written to one, and a file's
//! tensors and metadata read back.

use super::context::NyxqContext;
use super::guard::guard;
use super::handle::{self, Opaque};
use super::ptr;
use super::status::NyxqStatus;
use super::strings::give_string;
use super::tensor::{NyxqTensor, wrap};
use crate::context::Context;
use crate::error::Error;
use crate::gguf::{self, GgufFile, Value};
use crate::tensor::{Placement, Tensor};
use std::ffi::c_char;
use std::path::Path;
use std::sync::Arc;

/// A GGUF file read into memory (nyxq_gguf_read, nyxq_gguf_parse): its
/// metadata and tensors. Release with nyxq_gguf_destroy. Calls on one
/// handle may come from several threads.
pub struct NyxqGguf {
    _opaque: [u8; 0],
}

/// A parsed file and the context its tensors are made in.
pub(crate) struct GgufHandle {
    context: Arc<Context>,
    file: GgufFile,
}

impl Opaque for NyxqGguf {
    type Inner = GgufHandle;
    const KIND: &'static str = "GGUF";
}

/// Most array elements shown per array by nyxq_gguf_metadata.
const METADATA_TEXT_ELEMENTS: usize = 64;

/// Writes `tensor_count` HOST tensors and `metadata_count` string key/values
/// (`keys[i]` = `values[i]`, NUL-terminated UTF-8, e.g. "nyxq.plan" and the
/// plan's JSON) as a GGUF file (version 3, alignment 32) at `path`, replacing
/// it. Each tensor keeps its name, shape (GGUF stores it innermost first)
/// and bytes; its format becomes the ggml type of the same name and layout.
/// ggml limits names to 63 bytes and shapes to 4 dimensions. `(NULL, 0)` is
/// an empty list. The file is written beside `path` and renamed over it once
/// complete: on any error `path` keeps what it held.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (two tensors of one name, a name of more
/// than 63 bytes, more than 4 dimensions, a key empty or given twice, a
/// string not UTF-8), NYXQ_ERROR_UNSUPPORTED (a DEVICE tensor: migrate it to
/// the host first), NYXQ_ERROR_IO (the file cannot be created or written).
/// No call may upload to the tensors meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_gguf_write(
    path: *const c_char,
    tensors: *const *const NyxqTensor,
    tensor_count: usize,
    keys: *const *const c_char,
    values: *const *const c_char,
    metadata_count: usize,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let path = unsafe { ptr::string(path, "path") }?;
        // SAFETY: the caller passes tensor_count readable handles at tensors.
        let tensor_ptrs = unsafe { ptr::slice(tensors, tensor_count, "tensors") }?;
        // SAFETY: the caller passes metadata_count readable pointers at keys and values.
        let key_ptrs = unsafe { ptr::slice(keys, metadata_count, "keys") }?;
        // SAFETY: as keys.
        let value_ptrs = unsafe { ptr::slice(values, metadata_count, "values") }?;
        let handles = tensor_ptrs
            .iter()
            .map(|&t| handle::get(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut metadata = Vec::with_capacity(metadata_count);
        for (i, (&k, &v)) in key_ptrs.iter().zip(value_ptrs).enumerate() {
            // SAFETY: each key is a NUL-terminated string (the caller's contract).
            let key = unsafe { ptr::string(k, &format!("keys[{i}]")) }?;
            // SAFETY: each value is a NUL-terminated string (the caller's contract).
            let value = unsafe { ptr::string(v, &format!("values[{i}]")) }?;
            metadata.push((key.to_string(), Value::String(value.to_string())));
        }
        for h in &handles {
            if h.tensor.placement() == Placement::Device {
                return Err(Error::unsupported(format!(
                    "tensor '{}' is in device memory: migrate it to the host before writing it",
                    h.tensor.name()
                )));
            }
        }
        let tensors: Vec<&Tensor> = handles.iter().map(|h| &h.tensor).collect();
        gguf::tensors::write_file(Path::new(path), &metadata, &tensors)
    })
}

/// Reads the GGUF file at `path` (versions 2 and 3, little-endian) into
/// memory and checks it whole: every count, size and offset, and that every
/// tensor is of a ggml type nyxq has as a format (F32, F16, BF16, Q8_0, Q4_0,
/// Q4_1, Q5_0, IQ4_NL, Q4_K, Q5_K, Q6_K). Tensors made from it
/// (nyxq_gguf_tensor) belong to `ctx`. *gguf_out is written only on success.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (not a GGUF file, or a malformed one: the
/// message says what and where), NYXQ_ERROR_UNSUPPORTED (another GGUF
/// version, or a tensor of a ggml type nyxq does not have: the message names
/// the tensor and the type), NYXQ_ERROR_IO (the file cannot be read),
/// NYXQ_ERROR_OUT_OF_MEMORY. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_gguf_read(
    ctx: *const NyxqContext,
    path: *const c_char,
    gguf_out: *mut *mut NyxqGguf,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        // SAFETY: the caller passes a NUL-terminated string.
        let path = unsafe { ptr::string(path, "path") }?;
        let out = ptr::out(gguf_out, "gguf_out")?;
        let file = gguf::tensors::read_file(Path::new(path))?;
        // SAFETY: gguf_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqGguf>(GgufHandle { context, file })) };
        Ok(())
    })
}

/// As nyxq_gguf_read, from the `len` bytes of a GGUF file at `data` (copied).
///
/// Errors: as nyxq_gguf_read, without NYXQ_ERROR_IO. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_gguf_parse(
    ctx: *const NyxqContext,
    data: *const u8,
    len: usize,
    gguf_out: *mut *mut NyxqGguf,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        // SAFETY: the caller passes len readable bytes at data.
        let bytes = unsafe { ptr::slice(data, len, "data") }?;
        let out = ptr::out(gguf_out, "gguf_out")?;
        let file = gguf::tensors::parse_bytes(bytes)?;
        // SAFETY: gguf_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqGguf>(GgufHandle { context, file })) };
        Ok(())
    })
}

/// Releases a GGUF handle. NULL is a no-op. Tensors made from it stay valid.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE. No other call may be using the handle.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_gguf_destroy(gguf: *mut NyxqGguf) -> NyxqStatus {
    guard(|| {
        if gguf.is_null() {
            return Ok(());
        }
        handle::unregister(gguf)
    })
}

/// How many tensors the file has.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_gguf_tensor_count(
    gguf: *const NyxqGguf,
    count_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        let h = handle::get(gguf)?;
        let out = ptr::out(count_out, "count_out")?;
        // SAFETY: count_out checked non-NULL.
        unsafe { out.write(h.file.tensors.len()) };
        Ok(())
    })
}

/// Tensor `index` (in file order) as a new HOST tensor of the handle's
/// context: the file's name, shape (outermost first) and bytes, in the nyxq
/// format of its ggml type (nyxq_tensor_info describes it). The caller owns
/// it: release it with nyxq_tensor_destroy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (index >= the tensor count),
/// NYXQ_ERROR_OUT_OF_MEMORY. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_gguf_tensor(
    gguf: *const NyxqGguf,
    index: usize,
    tensor_out: *mut *mut NyxqTensor,
) -> NyxqStatus {
    guard(|| {
        let h = handle::get(gguf)?;
        let out = ptr::out(tensor_out, "tensor_out")?;
        let tensor = gguf::tensors::load_tensor(&h.context, &h.file, index)?;
        let wrapped = wrap(tensor)?;
        // SAFETY: tensor_out checked non-NULL.
        unsafe { out.write(wrapped) };
        Ok(())
    })
}

/// The value of metadata `key` as text: a string as itself, a number in
/// decimal, a bool as true or false, an array as `[a, b, …]` (strings quoted,
/// at most 64 elements shown, then how many in all). *text_out receives a
/// NUL-terminated string to release with nyxq_string_destroy, or NULL when
/// the file has no such key.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (key not UTF-8). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_gguf_metadata(
    gguf: *const NyxqGguf,
    key: *const c_char,
    text_out: *mut *mut c_char,
) -> NyxqStatus {
    guard(|| {
        let h = handle::get(gguf)?;
        // SAFETY: the caller passes a NUL-terminated string.
        let key = unsafe { ptr::string(key, "key") }?;
        let out = ptr::out(text_out, "text_out")?;
        let text = h.file.metadata(key).map_or(std::ptr::null_mut(), |v| {
            give_string(&v.to_text(METADATA_TEXT_ELEMENTS))
        });
        // SAFETY: text_out checked non-NULL.
        unsafe { out.write(text) };
        Ok(())
    })
}
