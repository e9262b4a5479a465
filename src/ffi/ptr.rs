//! Every conversion of a C pointer into a Rust reference goes through here.

use crate::error::{Error, ErrorKind, Result};
use std::ffi::{CStr, c_char};

fn null(what: &str) -> Error {
    Error::new(ErrorKind::NullPointer, format!("{what} is NULL"))
}

/// A length of `T`s that no buffer can have: its bytes exceed `isize::MAX`.
pub(crate) fn check_len<T>(len: usize, what: &str) -> Result<()> {
    if len
        .checked_mul(size_of::<T>())
        .is_none_or(|bytes| bytes > isize::MAX as usize)
    {
        return Err(Error::overflow(&format!("{what} length {len}")));
    }
    Ok(())
}

fn check_span<T>(ptr: *const T, len: usize, what: &str) -> Result<()> {
    check_len::<T>(len, what)?;
    if ptr.is_null() {
        return Err(null(what));
    }
    if (ptr as usize) % align_of::<T>() != 0 {
        return Err(Error::invalid(format!(
            "{what} is not aligned to {} bytes",
            align_of::<T>()
        )));
    }
    Ok(())
}

/// The slice C passed as `(ptr, len)`; `(NULL, 0)` is empty.
///
/// # Safety
/// When non-NULL, `ptr` must point to `len` initialised `T`s that stay valid and
/// unmodified for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_span(ptr, len, what)?;
    // SAFETY: non-NULL, aligned, len*size_of::<T>() <= isize::MAX (checked above);
    // validity for 'a is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The writable slice C passed as `(ptr, len)`; `(NULL, 0)` is empty.
///
/// # Safety
/// When non-NULL, `ptr` must point to `len` writable `T`s not aliased elsewhere for `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, what: &str) -> Result<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_span(ptr, len, what)?;
    // SAFETY: as for `slice`, and exclusivity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Fails with NYXQ_ERROR_INVALID_ARGUMENT when the `len` `T`s an output
/// buffer would span at `out` share a byte with `input`: a writable slice must
/// never alias a readable one (undefined behaviour in Rust), so overlapping
/// buffers are refused before the output slice is made. Empty spans never
/// overlap.
pub(crate) fn check_disjoint<T, U>(
    (out, len, out_what): (*const T, usize, &str),
    input: &[U],
    input_what: &str,
) -> Result<()> {
    let out_start = out as usize;
    let out_end = out_start.saturating_add(len.saturating_mul(size_of::<T>()));
    let input = input.as_ptr_range();
    let (in_start, in_end) = (input.start as usize, input.end as usize);
    if out_start < out_end && in_start < in_end && out_start < in_end && in_start < out_end {
        return Err(Error::invalid(format!(
            "{out_what} overlaps {input_what}; pass separate buffers"
        )));
    }
    Ok(())
}

/// The out-pointer `ptr`, checked for NULL, to be written on success only.
pub(crate) fn out<T>(ptr: *mut T, what: &str) -> Result<OutPtr<T>> {
    if ptr.is_null() {
        return Err(null(what));
    }
    Ok(OutPtr(ptr))
}

/// A checked, non-NULL out-pointer.
pub(crate) struct OutPtr<T>(*mut T);

impl<T> OutPtr<T> {
    /// Writes the result; call only once everything else has succeeded.
    ///
    /// # Safety
    /// The pointer C passed must be valid for a write of one `T`.
    pub(crate) unsafe fn write(self, value: T) {
        // SAFETY: non-NULL (checked in `out`); validity is the caller's contract.
        // write() because C memory may be uninitialised: nothing is dropped.
        unsafe { self.0.write(value) }
    }
}

/// A NUL-terminated UTF-8 string from C.
///
/// # Safety
/// When non-NULL, `ptr` must point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL; NUL termination and lifetime are the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes
        .to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// The bytes of a NUL-terminated string from C, without the NUL, in any encoding.
///
/// # Safety
/// When non-NULL, `ptr` must point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_bytes<'a>(ptr: *const c_char, what: &str) -> Result<&'a [u8]> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL; NUL termination and lifetime are the caller's contract.
    Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes())
}

/// An options struct from C whose first field is `size_t struct_size`.
///
/// NULL gives `T::default()`. Otherwise `struct_size` must be at least `minimum`
/// (the size of the struct's first version); fields beyond `struct_size` (the
/// caller was built against an older header) keep their defaults, and a larger
/// `struct_size` (a newer header) reads only the fields this version knows.
///
/// # Safety
/// When non-NULL, `ptr` must point to `struct_size` readable bytes.
pub(crate) unsafe fn options<T: Default + Copy>(
    ptr: *const T,
    minimum: usize,
    what: &str,
) -> Result<T> {
    let mut value = T::default();
    if ptr.is_null() {
        return Ok(value);
    }
    // SAFETY: every options struct begins with a size_t struct_size; read_unaligned
    // because C need not align the struct for Rust's view of it.
    let struct_size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if struct_size < minimum {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {struct_size}; it must be at least {minimum} (set it to sizeof({what}))"
        )));
    }
    let known = struct_size.min(size_of::<T>());
    // SAFETY: C provides struct_size readable bytes and we copy at most that many,
    // into a T that has at least `known` bytes. T is a plain repr(C) struct of
    // integers, floats and pointers, for which any byte pattern C wrote is a value.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&raw mut value).cast::<u8>(), known)
    };
    Ok(value)
}

/// An out-struct from C whose first field is `size_t struct_size`, which the
/// caller sets to the size it compiled. It must be at least `minimum` (the
/// size of the struct's first version); the result is written only as far as
/// both sides know the struct, and `struct_size` then says how far that was.
///
/// # Safety
/// When non-NULL, `ptr` must point to `struct_size` writable bytes whose first
/// `size_t` is initialised.
pub(crate) unsafe fn versioned_out<T: Copy>(
    ptr: *mut T,
    minimum: usize,
    what: &str,
) -> Result<VersionedOut<T>> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL; the caller set the first size_t (read_unaligned:
    // C need not align the struct for Rust's view of it).
    let struct_size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if struct_size < minimum {
        return Err(Error::invalid(format!(
            "{what}->struct_size is {struct_size}; it must be at least {minimum} (set it to sizeof the struct)"
        )));
    }
    Ok(VersionedOut {
        ptr,
        known: struct_size.min(size_of::<T>()),
    })
}

/// A checked versioned out-struct (see [`versioned_out`]).
pub(crate) struct VersionedOut<T> {
    ptr: *mut T,
    known: usize,
}

impl<T: Copy> VersionedOut<T> {
    /// Writes the first `known` bytes of `value`, then `known` as its
    /// `struct_size`; call only once everything else has succeeded.
    ///
    /// # Safety
    /// As for [`versioned_out`]; `T` begins with a `usize` struct_size.
    pub(crate) unsafe fn write(self, value: T) {
        // SAFETY: `known` <= size_of::<T>() bytes of `value` are read and
        // <= struct_size bytes written, which C provides; the regions are
        // distinct (a local and C's memory).
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&raw const value).cast::<u8>(),
                self.ptr.cast::<u8>(),
                self.known,
            );
            self.ptr.cast::<usize>().write_unaligned(self.known);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_disjoint;

    #[test]
    fn only_shared_bytes_are_an_overlap() {
        let buf = [0f32; 16];
        let input = &buf[4..8];
        let at = |i: usize| buf[i..].as_ptr();
        // Adjacent on either side, or empty: disjoint.
        assert!(check_disjoint((at(0), 4, "y"), input, "x").is_ok());
        assert!(check_disjoint((at(8), 4, "y"), input, "x").is_ok());
        assert!(check_disjoint((at(5), 0, "y"), input, "x").is_ok());
        assert!(check_disjoint((at(5), 2, "y"), &buf[4..4], "x").is_ok());
        // One shared float at either end, inside, or around: refused.
        assert!(check_disjoint((at(1), 4, "y"), input, "x").is_err());
        assert!(check_disjoint((at(7), 4, "y"), input, "x").is_err());
        assert!(check_disjoint((at(5), 1, "y"), input, "x").is_err());
        assert!(check_disjoint((at(0), 16, "y"), input, "x").is_err());
        // Spans are compared in bytes, whatever the element types.
        assert!(check_disjoint((at(7).cast::<u8>(), 4, "y"), input, "x").is_err());
        assert!(check_disjoint((at(8).cast::<u8>(), 4, "y"), input, "x").is_ok());
    }
}
