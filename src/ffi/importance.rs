//! Importance from activations through the C ABI: the accumulator of Σx² per
//! input column ([`crate::train::importance`]) the trainer feeds with each
//! layer's input, and its checkpoint.

use super::guard::guard;
use super::handle::{self, Opaque};
use super::ptr;
use super::status::NyxqStatus;
use crate::train::importance::Importance;
use parking_lot::Mutex;

/// Σx² per input column of one layer and the tokens added: the importance
/// the error-minimising quantizers take (ggml's imatrix). Calls on one
/// accumulator must not overlap (each takes its lock); different
/// accumulators run in parallel.
pub struct NyxqImportance {
    _opaque: [u8; 0],
}

impl Opaque for NyxqImportance {
    type Inner = Mutex<Importance>;
    const KIND: &'static str = "importance accumulator";
}

/// Creates an empty accumulator for a layer input of `cols` columns (the
/// weight matrix's columns: W is [rows, cols], y = W·x). It holds 8 bytes per
/// column. Release with nyxq_importance_destroy.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (cols of 0),
/// NYXQ_ERROR_SIZE_OVERFLOW (cols * 8 beyond the address space),
/// NYXQ_ERROR_OUT_OF_MEMORY (the sums could not be allocated). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_create(
    cols: usize,
    importance_out: *mut *mut NyxqImportance,
) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(importance_out, "importance_out")?;
        let acc = Importance::new(cols)?;
        // SAFETY: importance_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqImportance>(Mutex::new(acc))) };
        Ok(())
    })
}

/// Releases an accumulator. NULL is a no-op.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_destroy(importance: *mut NyxqImportance) -> NyxqStatus {
    guard(|| handle::unregister(importance))
}

/// Adds `tokens` rows of one layer's input activations: `x` holds
/// tokens × cols floats, row-major (token t's column c at x[t * cols + c]),
/// and x_len must equal tokens * cols. Each column's sum grows by Σ_t x[t][c]²
/// (in f64) and the token count by `tokens`.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (x_len is not tokens * cols),
/// NYXQ_ERROR_SIZE_OVERFLOW (tokens * cols), NYXQ_ERROR_NON_FINITE (NaN or
/// ±Inf in x; nyxq_last_error_index() gives its index in x). Nothing is added
/// on error.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_add(
    importance: *mut NyxqImportance,
    x: *const f32,
    x_len: usize,
    tokens: usize,
) -> NyxqStatus {
    guard(|| {
        let acc = handle::get(importance)?;
        // SAFETY: the caller passes x_len readable floats at x.
        let x = unsafe { ptr::slice(x, x_len, "x") }?;
        acc.lock().add(x, tokens)
    })
}

/// Adds Σx² per column made elsewhere over `tokens` tokens: the f32 sums that
/// nyxq_vk_cmd_importance_add accumulated on the device, read back by the
/// caller (sums_len must equal cols). Zero the device sums after adding them
/// here, or they are counted twice.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (sums_len is not cols, a negative sum),
/// NYXQ_ERROR_NON_FINITE (NaN or ±Inf in sums; nyxq_last_error_index() gives
/// its index), NYXQ_ERROR_SIZE_OVERFLOW (the token count beyond 2^64 - 1).
/// Nothing is added on error.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_add_sums(
    importance: *mut NyxqImportance,
    sums: *const f32,
    sums_len: usize,
    tokens: u64,
) -> NyxqStatus {
    guard(|| {
        let acc = handle::get(importance)?;
        // SAFETY: the caller passes sums_len readable floats at sums.
        let sums = unsafe { ptr::slice(sums, sums_len, "sums") }?;
        acc.lock().add_sums(sums, tokens)
    })
}

/// Writes the per-column importance, the mean Σx²/tokens of each column as
/// f32, into values[0 .. values_len], repeated: values[i] is column
/// i % cols, and values_len must be a positive multiple of cols. Pass it as
/// NyxqQuantizeOptions.importance (with importance_len = values_len) and
/// NYXQ_ROUNDING_ERROR_MINIMISING to quantize the layer's row-major
/// [rows, cols] weight matrix, whose element i is column i % cols: cols
/// values when cols is a whole number of the format's blocks, else
/// lcm(cols, block size) values (384 columns in Q4_K, blocks of 256: 768).
/// *tokens_out (may be NULL) gets the tokens added.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (values_len below cols, which
/// nyxq_last_error_needed_len gives), NYXQ_ERROR_INVALID_ARGUMENT (values_len
/// not a multiple of cols, no tokens added yet). Nothing is written on error.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_values(
    importance: *const NyxqImportance,
    values: *mut f32,
    values_len: usize,
    tokens_out: *mut u64,
) -> NyxqStatus {
    guard(|| {
        let acc = handle::get(importance)?;
        // SAFETY: the caller passes values_len writable floats at values.
        let values = unsafe { ptr::slice_mut(values, values_len, "values") }?;
        let acc = acc.lock();
        acc.values(values)?;
        if !tokens_out.is_null() {
            // SAFETY: non-NULL; the caller passes a pointer to a uint64_t.
            unsafe { ptr::out(tokens_out, "tokens_out")?.write(acc.tokens()) };
        }
        Ok(())
    })
}

/// Sets every sum and the token count back to zero (a new calibration run).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_reset(importance: *mut NyxqImportance) -> NyxqStatus {
    guard(|| {
        handle::get(importance)?.lock().reset();
        Ok(())
    })
}

/// Bytes of the accumulator's checkpoint (nyxq_importance_save): 48 plus 8
/// per column.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_save_size(
    importance: *const NyxqImportance,
    size_out: *mut usize,
) -> NyxqStatus {
    guard(|| {
        let acc = handle::get(importance)?;
        let out = ptr::out(size_out, "size_out")?;
        let len = acc.lock().save_len();
        // SAFETY: size_out checked non-NULL.
        unsafe { out.write(len) };
        Ok(())
    })
}

/// Writes the accumulator (columns, tokens, the f64 sums) as versioned,
/// checksummed little-endian bytes into the first
/// nyxq_importance_save_size bytes of `dst`. The layout is in docs/guide.md
/// (Importance from activations).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_BUFFER_TOO_SMALL (dst_len below the checkpoint's size, which
/// nyxq_last_error_needed_len gives).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_save(
    importance: *const NyxqImportance,
    dst: *mut u8,
    dst_len: usize,
) -> NyxqStatus {
    guard(|| {
        let acc = handle::get(importance)?;
        // SAFETY: the caller passes dst_len writable bytes at dst.
        let dst = unsafe { ptr::slice_mut(dst, dst_len, "dst") }?;
        acc.lock().save(dst).map(|_| ())
    })
}

/// Restores what nyxq_importance_save wrote into an accumulator of the same
/// column count, replacing its sums and tokens.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (not an nyxq checkpoint, another version,
/// another kind of object, truncated or trailing bytes, a checksum that does
/// not match, another column count; the message says which). Nothing
/// changes on error.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_importance_load(
    importance: *mut NyxqImportance,
    src: *const u8,
    src_len: usize,
) -> NyxqStatus {
    guard(|| {
        let acc = handle::get(importance)?;
        // SAFETY: the caller passes src_len readable bytes at src.
        let src = unsafe { ptr::slice(src, src_len, "src") }?;
        acc.lock().load(src)
    })
}
