//! Exports that exist only in test builds (feature `test-exports`).

use super::guard::guard;
use super::status::NyxqStatus;

/// Panics inside the guard, to prove that a panic becomes
/// NYXQ_ERROR_INTERNAL instead of unwinding into C. Test builds only.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_test_force_panic() -> NyxqStatus {
    guard(|| panic!("nyxq_test_force_panic was called"))
}
