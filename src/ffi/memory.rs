//! Memory pressure through the C ABI: what a context may use now and what it
//! uses (nyxq_context_memory_status).

use super::context::NyxqContext;
use super::guard::guard;
use super::handle;
use super::ptr;
use super::status::NyxqStatus;
use crate::vk::budget::{BudgetSource, MemoryStatus};

/// Where NyxqMemoryStatus.budget_bytes comes from.
#[repr(i32)]
pub enum NyxqMemorySource {
    /// VK_EXT_memory_budget: the driver's budget for this process, summed over
    /// the device-local heaps and read at the call. nyxq refuses its own
    /// device allocations beyond it.
    NyxqMemorySourceDriverBudget = 0,
    /// The device lacks VK_EXT_memory_budget: the device-local heaps' size.
    /// The usage is nyxq's own allocations only (add the trainer's), and the
    /// driver alone refuses allocations.
    NyxqMemorySourceHeapSize = 1,
    /// A CPU context: the host memory available now (MemAvailable, what
    /// nyxq_hardware_detect plans with); no usage is counted against it.
    NyxqMemorySourceHost = 2,
    /// A budget set with nyxq_test_set_device_budget (test builds): enforced
    /// as the driver's budget would be.
    NyxqMemorySourceTestOverride = 3,
}

/// Memory a context may use now and what it uses (nyxq_context_memory_status).
/// Set struct_size to sizeof(NyxqMemoryStatus) before the call; nyxq writes
/// as many bytes as both sides know and sets struct_size to that. New fields
/// are only ever appended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyxqMemoryStatus {
    /// In: sizeof(NyxqMemoryStatus) as the caller compiled it. Out: the bytes
    /// nyxq wrote.
    pub struct_size: usize,
    /// A NyxqMemorySource value.
    pub source: i32,
    /// 1 when driver_usage_bytes is the driver's (VK_EXT_memory_budget).
    pub has_driver_usage: u32,
    /// What this process may use in all, in bytes (see source).
    pub budget_bytes: u64,
    /// What counts against the budget: driver_usage_bytes where the driver
    /// reports it (the trainer's allocations included), never less than
    /// nyxq_bytes; nyxq_bytes without it; 0 for a CPU context.
    pub usage_bytes: u64,
    /// budget_bytes - usage_bytes, or 0 when the usage is above the budget.
    pub available_bytes: u64,
    /// This process's device-local usage as the driver reports it; 0 when
    /// has_driver_usage is 0.
    pub driver_usage_bytes: u64,
    /// Device-local bytes nyxq holds now: DEVICE tensors and the transient
    /// buffers of calls in progress. 0 for a CPU context.
    pub nyxq_bytes: u64,
    /// Sum of the device-local heaps' sizes (a CPU context: as budget_bytes).
    pub device_local_bytes: u64,
    /// The largest single device allocation nyxq makes (1 GiB or
    /// maxMemoryAllocationSize, whichever is smaller; a DEVICE tensor is
    /// split into chunks no larger); 0 for a CPU context.
    pub max_allocation_bytes: u64,
}

/// The size of the first published NyxqMemoryStatus.
const FIRST_STATUS_SIZE: usize = size_of::<NyxqMemoryStatus>();

fn source_to_c(source: BudgetSource) -> NyxqMemorySource {
    match source {
        BudgetSource::Driver => NyxqMemorySource::NyxqMemorySourceDriverBudget,
        BudgetSource::HeapSize => NyxqMemorySource::NyxqMemorySourceHeapSize,
        BudgetSource::Host => NyxqMemorySource::NyxqMemorySourceHost,
        BudgetSource::TestOverride => NyxqMemorySource::NyxqMemorySourceTestOverride,
    }
}

fn status_to_c(s: &MemoryStatus) -> NyxqMemoryStatus {
    NyxqMemoryStatus {
        struct_size: size_of::<NyxqMemoryStatus>(),
        source: source_to_c(s.source) as i32,
        has_driver_usage: u32::from(s.driver_usage_bytes.is_some()),
        budget_bytes: s.budget_bytes,
        usage_bytes: s.usage_bytes(),
        available_bytes: s.available_bytes(),
        driver_usage_bytes: s.driver_usage_bytes.unwrap_or(0),
        nyxq_bytes: s.nyxq_bytes,
        device_local_bytes: s.device_local_bytes,
        max_allocation_bytes: s.max_allocation_bytes,
    }
}

/// What the context may use now and what it uses, for a trainer that watches
/// memory pressure between steps. On a Vulkan context the budget is read from
/// the driver at each call (VK_EXT_memory_budget), so it follows other
/// processes and the trainer's own allocations. nyxq refuses a device
/// allocation for data it keeps on the device (a DEVICE tensor's buffers, the
/// device buffers of GPU work) that would take usage_bytes above a
/// DRIVER_BUDGET or TEST_OVERRIDE budget, with
/// NYXQ_ERROR_OUT_OF_DEVICE_MEMORY (or host memory, with the context option
/// vulkan_host_fallback); the staging memory it maps to move data to and from
/// the device is counted but never refused, so tensors can always leave the
/// device. To respond to pressure, replan (nyxq_plan_replan) and move each
/// tensor where the new plan puts it (nyxq_tensor_migrate); docs/planning.md,
/// "Memory pressure while training", shows the loop. A CPU context reports
/// the host memory available (NYXQ_MEMORY_SOURCE_HOST). *status_out is
/// written only on success.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (status_out->struct_size below the first
/// version's size), NYXQ_ERROR_UNSUPPORTED (a CPU context where
/// /proc/meminfo cannot be read). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_context_memory_status(
    ctx: *const NyxqContext,
    status_out: *mut NyxqMemoryStatus,
) -> NyxqStatus {
    guard(|| {
        let context = handle::get(ctx)?;
        // SAFETY: NULL or a NyxqMemoryStatus of struct_size bytes, per the contract.
        let out = unsafe { ptr::versioned_out(status_out, FIRST_STATUS_SIZE, "status_out") }?;
        let status = status_to_c(&context.memory_status()?);
        // SAFETY: checked above; the struct begins with struct_size.
        unsafe { out.write(status) };
        Ok(())
    })
}
