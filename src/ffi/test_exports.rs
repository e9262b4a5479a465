//! Exports that exist only in test builds (feature `test-exports`).

use super::context::NyxqContext;
use super::guard::guard;
use super::status::NyxqStatus;
use super::{handle, ptr};

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

/// Fault injection for the allocation-failure sweep: the calling thread's
/// `nth` (1-based) host allocation from now on whose size comes from a caller
/// or a file fails, once, as if the allocator had refused it (the call
/// reports NYXQ_ERROR_OUT_OF_MEMORY); 0 fails none. Restarts the count that
/// nyxq_test_allocations_counted reports. Other threads are untouched. Test
/// builds only.
///
/// Errors: none.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_test_fail_allocation_after(nth: u64) -> NyxqStatus {
    guard(|| {
        crate::alloc::fault::fail_nth(nth);
        Ok(())
    })
}

/// How many such allocations the calling thread attempted since its last
/// nyxq_test_fail_allocation_after, the failed one included: when it is
/// below the `nth` armed, no failure was injected. Test builds only.
///
/// Errors: NYXQ_ERROR_NULL_POINTER.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_test_allocations_counted(count_out: *mut u64) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(count_out, "count_out")?;
        // SAFETY: count_out checked non-NULL; points to a uint64_t per the contract.
        unsafe { out.write(crate::alloc::fault::counted()) };
        Ok(())
    })
}

/// Fault injection for memory pressure: the context's device budget becomes
/// `budget_bytes` (0: the driver's again, or the heaps' size without
/// VK_EXT_memory_budget), as nyxq_context_memory_status reports it (source
/// NYXQ_MEMORY_SOURCE_TEST_OVERRIDE) and as nyxq's own device allocations are
/// admitted against it: one that would take the usage above it fails with
/// NYXQ_ERROR_OUT_OF_DEVICE_MEMORY. Every thread sees it at once. Test
/// builds only.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_UNSUPPORTED (a CPU context).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_test_set_device_budget(
    ctx: *mut NyxqContext,
    budget_bytes: u64,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        context.inject_device_budget((budget_bytes != 0).then_some(budget_bytes))
    })
}
