//! Allocations sized by a caller's numbers or a file's length. A size the
//! caller chose must never abort the host process: these return
//! [`ErrorKind::SizeOverflow`] when the size does not fit the address space
//! and [`ErrorKind::OutOfMemory`] when the allocator refuses it, each naming
//! what was being allocated.

use crate::error::{Error, ErrorKind, Result};
use std::io::Read;
use std::path::Path;

#[cfg(feature = "test-exports")]
pub mod fault;

/// A vector of `len` copies of `value`, allocated fallibly; `what` names it in errors.
pub fn filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, len, what)?;
    v.resize(len, value);
    Ok(v)
}

/// A copy of `items`, allocated fallibly; `what` names it in errors.
pub fn copied<T: Clone>(items: &[T], what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, items.len(), what)?;
    v.extend_from_slice(items);
    Ok(v)
}

/// The bytes of the file at `path`, in a buffer allocated fallibly for the
/// length the file reports when opened, and no more than that length (a
/// device or pipe reports 0 and gives no bytes). A file that cannot be
/// opened or read is [`ErrorKind::Io`].
pub fn file_bytes(path: &Path) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let what = format!("the contents of {}", path.display());
    let len = usize::try_from(len).map_err(|_| Error::overflow(&what))?;
    let mut bytes = Vec::new();
    reserve(&mut bytes, len, &what)?;
    // At most the length the file had when opened: a device or pipe (length
    // 0, e.g. /dev/zero) or a file that grows meanwhile cannot make the
    // read grow without end.
    file.take(len as u64).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Makes room in `v` for `additional` more elements, fallibly. The growth is
/// amortised (the capacity at least doubles), so a vector grown one element
/// at a time is copied O(log n) times, not n times; an empty vector gets
/// what it asks for (a few elements at least).
pub fn reserve<T>(v: &mut Vec<T>, additional: usize, what: &str) -> Result<()> {
    let bytes = v
        .len()
        .checked_add(additional)
        .and_then(|n| n.checked_mul(size_of::<T>()))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            Error::overflow(&format!(
                "{what} ({additional} elements of {} bytes)",
                size_of::<T>()
            ))
        })?;
    let refused = || {
        Error::new(
            ErrorKind::OutOfMemory,
            format!("{what}: cannot allocate {bytes} bytes of host memory"),
        )
    };
    #[cfg(feature = "test-exports")]
    if fault::this_allocation_fails() {
        return Err(refused());
    }
    v.try_reserve(additional).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_address_space_are_size_overflow() {
        let e = filled(usize::MAX / 2, 0f32, "adam moments").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeOverflow);
        assert!(e.message().contains("adam moments"), "{}", e.message());
    }

    #[test]
    fn sizes_the_allocator_refuses_are_out_of_memory() {
        // 2^61 bytes: within isize::MAX, beyond any machine.
        let e = filled(1usize << 59, 0f32, "scratch").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        assert!(e.message().contains("scratch"), "{}", e.message());
        assert!(
            e.message().contains(&(1u64 << 61).to_string()),
            "{}",
            e.message()
        );
    }

    #[test]
    fn growing_one_element_at_a_time_reallocates_rarely() {
        let mut v: Vec<u64> = Vec::new();
        let mut reallocations = 0;
        for i in 0..4096 {
            let before = v.capacity();
            reserve(&mut v, 1, "items").unwrap();
            reallocations += usize::from(v.capacity() != before);
            v.push(i);
        }
        assert!(
            reallocations <= 16,
            "{reallocations} reallocations for 4096 pushes"
        );
    }

    #[test]
    fn a_file_is_read_whole_and_a_missing_one_is_io() {
        let path = std::env::temp_dir().join(format!("nyxq-file-bytes-{}", std::process::id()));
        std::fs::write(&path, b"{\"name\": 1}").unwrap();
        let bytes = file_bytes(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes.unwrap(), b"{\"name\": 1}");
        let e = file_bytes(&path).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("cannot read"), "{}", e.message());
    }

    #[test]
    fn small_sizes_are_allocated_and_filled() {
        assert_eq!(filled(3, 7u8, "x").unwrap(), vec![7, 7, 7]);
        assert_eq!(copied(&[1, 2], "y").unwrap(), vec![1, 2]);
    }
}
