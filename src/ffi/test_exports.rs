//! Exports that exist only in test builds (feature `test-exports`).

use super::guard::guard;
use super::status::NyxqStatus;

/// Panics inside the guard, to prove that a panic becomes
/// NYXQ_ERROR_INTERNAL instead of unwinding into C. Test builds only.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_test_force_panic() -> NyxqStatus {
    guard(|| panic!("nyxq_test_force_panic was called"))
}

/// Allocates `bytes` bytes inside nyxq and drops every reference to them, so
/// that LeakSanitizer must report a leak whose stack lies in libnyxq: the
/// sanitizer tests' suppressions are proven not to hide nyxq's own leaks.
/// (A handle the caller never destroys is not such a leak: the handle
/// registry still reaches it.) Test builds only.
///
/// Errors: none.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_test_leak(bytes: usize) -> NyxqStatus {
    guard(|| {
        let block = vec![0x5Au8; bytes].into_boxed_slice();
        // The address is forgotten on purpose: this is the leak.
        let leaked = Box::leak(block);
        std::hint::black_box(leaked.as_ptr());
        Ok(())
    })
}
