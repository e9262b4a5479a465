//! Fault injection for the allocation-failure sweep (feature `test-exports`):
//! every allocation [`super::reserve`] makes on a thread is counted, and the
//! one armed by [`fail_nth`] on that thread is refused as if the allocator had
//! run out of memory, so a test can prove that each of them becomes
//! `NYXQ_ERROR_OUT_OF_MEMORY`, never an abort or a leak. Per thread, so that
//! tests running beside the sweep are untouched.

use std::cell::Cell;

thread_local! {
    /// Allocations counted on this thread since the last [`fail_nth`].
    static COUNTED: Cell<u64> = const { Cell::new(0) };
    /// The 1-based allocation of this thread to refuse; 0 refuses none.
    static FAIL_AT: Cell<u64> = const { Cell::new(0) };
}

/// Refuses this thread's `nth` allocation from now on (once; 0: none) and
/// restarts its count.
pub fn fail_nth(nth: u64) {
    COUNTED.set(0);
    FAIL_AT.set(nth);
}

/// This thread's allocations since the last [`fail_nth`], the refused one included.
pub fn counted() -> u64 {
    COUNTED.get()
}

/// Counts one allocation of this thread; true when it is the one to refuse.
pub(super) fn this_allocation_fails() -> bool {
    let this = COUNTED.get() + 1;
    COUNTED.set(this);
    this == FAIL_AT.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::filled;
    use crate::error::ErrorKind;

    #[test]
    fn only_the_armed_allocation_is_refused() {
        fail_nth(2);
        let first = filled(4, 0u8, "first");
        let second = filled(4, 0u8, "second");
        let third = filled(4, 0u8, "third");
        assert_eq!(counted(), 3);
        fail_nth(0);
        assert!(first.is_ok());
        let e = second.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        assert!(e.message().contains("second"), "{}", e.message());
        assert!(third.is_ok());
    }
}
