//! Device-local memory at run time: the heaps and, with VK_EXT_memory_budget,
//! the driver's budget and usage for this process, read fresh on each call;
//! nyxq's own ledger of the device-local bytes it holds; and the admission
//! of nyxq's device-local allocations against the budget.

use crate::error::{Error, ErrorKind, Result};
use ash::vk;
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// The device-local heaps of a physical device, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heaps {
    /// Sum of the DEVICE_LOCAL heaps' sizes.
    pub device_local_bytes: u64,
    /// Sum of their VK_EXT_memory_budget budgets; None without the extension.
    pub budget_bytes: Option<u64>,
    /// Sum of their VK_EXT_memory_budget usages (this process's); None
    /// without the extension.
    pub usage_bytes: Option<u64>,
    /// Every heap is DEVICE_LOCAL (one shared pool: UMA or CPU).
    pub unified_memory: bool,
}

/// Reads the heaps of `pd` now; the budget and usage only when `with_budget`
/// (the device lists VK_EXT_memory_budget).
pub fn read_heaps(instance: &ash::Instance, pd: vk::PhysicalDevice, with_budget: bool) -> Heaps {
    let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
    let mut mem2 = vk::PhysicalDeviceMemoryProperties2::default();
    if with_budget {
        mem2 = mem2.push_next(&mut budget);
    }
    // SAFETY: pd was enumerated from this instance; the budget struct is
    // chained only when the device lists the extension (a physical-device
    // query, valid without enabling it on a device).
    unsafe { instance.get_physical_device_memory_properties2(pd, &mut mem2) };
    let mem = mem2.memory_properties;
    let heaps = &mem.memory_heaps[..mem.memory_heap_count as usize];
    let local: Vec<usize> = (0..heaps.len())
        .filter(|&i| heaps[i].flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
        .collect();
    let sum = |values: &[u64]| local.iter().map(|&i| values[i]).sum::<u64>();
    Heaps {
        device_local_bytes: local.iter().map(|&i| heaps[i].size).sum(),
        budget_bytes: with_budget.then(|| sum(&budget.heap_budget)),
        usage_bytes: with_budget.then(|| sum(&budget.heap_usage)),
        unified_memory: local.len() == heaps.len(),
    }
}

/// Where a [`MemoryStatus`]'s budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// VK_EXT_memory_budget: the driver's budget for this process.
    Driver,
    /// No VK_EXT_memory_budget: the device-local heaps' size.
    HeapSize,
    /// A CPU context: the host memory available now.
    Host,
    /// A budget a test set (`Context::inject_device_budget`).
    TestOverride,
}

impl BudgetSource {
    /// A token for JSON (`nyxq hwinfo --json`).
    pub fn key(self) -> &'static str {
        match self {
            BudgetSource::Driver => "driver_budget",
            BudgetSource::HeapSize => "heap_size",
            BudgetSource::Host => "host",
            BudgetSource::TestOverride => "test_override",
        }
    }

    /// Where the budget comes from, in words, for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            BudgetSource::Driver => "the driver's budget (VK_EXT_memory_budget)",
            BudgetSource::HeapSize => "the device-local heap size (no VK_EXT_memory_budget)",
            BudgetSource::Host => "the host memory available",
            BudgetSource::TestOverride => "a budget set by a test",
        }
    }

    /// Whether nyxq refuses its own device-local allocations beyond this
    /// budget. The heap size is no budget for this process (the trainer and
    /// other processes share the heap, unseen), so there the driver alone
    /// decides.
    pub fn enforced(self) -> bool {
        match self {
            BudgetSource::Driver | BudgetSource::TestOverride => true,
            BudgetSource::HeapSize | BudgetSource::Host => false,
        }
    }
}

/// Memory a context may use now and what it uses (`nyxq_context_memory_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStatus {
    pub source: BudgetSource,
    /// Sum of the device-local heaps (a CPU context: the host memory available).
    pub device_local_bytes: u64,
    /// What this process may use in all (see [`BudgetSource`]).
    pub budget_bytes: u64,
    /// This process's usage as the driver reports it (VK_EXT_memory_budget).
    pub driver_usage_bytes: Option<u64>,
    /// Device-local bytes nyxq holds now (its ledger).
    pub nyxq_bytes: u64,
    /// The largest single allocation nyxq makes on the device; 0 on the CPU.
    pub max_allocation_bytes: u64,
}

impl MemoryStatus {
    /// The status of a device whose heaps read `heaps` now.
    pub fn of_device(heaps: &Heaps, ledger: &Ledger, max_allocation_bytes: u64) -> MemoryStatus {
        let (source, budget_bytes) = match (ledger.budget_override(), heaps.budget_bytes) {
            (Some(bytes), _) => (BudgetSource::TestOverride, bytes),
            (None, Some(bytes)) => (BudgetSource::Driver, bytes),
            (None, None) => (BudgetSource::HeapSize, heaps.device_local_bytes),
        };
        MemoryStatus {
            source,
            device_local_bytes: heaps.device_local_bytes,
            budget_bytes,
            driver_usage_bytes: heaps.usage_bytes,
            nyxq_bytes: ledger.held(),
            max_allocation_bytes,
        }
    }

    /// What counts against the budget: the driver's usage where known (it
    /// includes nyxq's), never less than nyxq's own ledger.
    pub fn usage_bytes(&self) -> u64 {
        self.driver_usage_bytes
            .map_or(self.nyxq_bytes, |d| d.max(self.nyxq_bytes))
    }

    /// The budget less the usage; 0 when the usage is above the budget.
    pub fn available_bytes(&self) -> u64 {
        self.budget_bytes.saturating_sub(self.usage_bytes())
    }

    /// One line for logs and `nyxq hwinfo`.
    pub fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        let usage = match (self.source, self.driver_usage_bytes) {
            (BudgetSource::Host, _) => String::new(),
            (_, Some(_)) => format!(", usage {:.1} MiB (the driver's)", mib(self.usage_bytes())),
            (_, None) => format!(", usage {:.1} MiB (nyxq's own)", mib(self.usage_bytes())),
        };
        format!(
            "budget {:.1} MiB from {}{usage}, nyxq holds {:.1} MiB, available {:.1} MiB",
            mib(self.budget_bytes),
            self.source.name(),
            mib(self.nyxq_bytes),
            mib(self.available_bytes()),
        )
    }
}

/// nyxq's ledger of one device: the device-local bytes its buffers hold, the
/// budget a test set, and the lock that makes admission and allocation one
/// step for nyxq's own allocations.
#[derive(Debug, Default)]
pub struct Ledger {
    held: AtomicU64,
    /// A test's budget in bytes; 0: none.
    budget_override: AtomicU64,
    admission: Mutex<()>,
}

impl Ledger {
    /// Device-local bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Relaxed)
    }

    /// The budget a test set, if any.
    pub fn budget_override(&self) -> Option<u64> {
        Some(self.budget_override.load(Relaxed)).filter(|&b| b != 0)
    }

    /// Sets (Some, at least 1 byte) or clears (None) a test's budget.
    pub fn set_budget_override(&self, bytes: Option<u64>) {
        self.budget_override.store(bytes.unwrap_or(0), Relaxed);
    }

    /// Admits a device-local allocation of `bytes`. A `refusable` one (data
    /// kept on the device) is refused with OutOfDeviceMemory when the budget
    /// `status()` reads is enforced and the usage plus `bytes` would exceed
    /// it; the others (the staging memory that moves data off the device,
    /// which must work under pressure) are counted only. nyxq's own
    /// admissions are serialised until the returned admission is committed
    /// or dropped, so two of them never both take the last bytes.
    pub fn admit(
        &self,
        bytes: u64,
        refusable: bool,
        status: impl FnOnce() -> MemoryStatus,
    ) -> Result<Admission<'_>> {
        let lock = self.admission.lock();
        if !refusable {
            return Ok(Admission {
                ledger: self,
                bytes,
                _lock: lock,
            });
        }
        let now = status();
        let after = now.usage_bytes().saturating_add(bytes);
        if now.source.enforced() && after > now.budget_bytes {
            return Err(Error::new(
                ErrorKind::OutOfDeviceMemory,
                format!(
                    "a device allocation of {bytes} bytes would take device-local memory use to \
                     {after} bytes, above the budget of {} bytes ({}; nyxq holds {} bytes): \
                     nyxq_context_memory_status reports it; replan for less device memory \
                     (nyxq_plan_replan) and move what the new plan offloads to the host",
                    now.budget_bytes,
                    now.source.name(),
                    now.nyxq_bytes
                ),
            ));
        }
        Ok(Admission {
            ledger: self,
            bytes,
            _lock: lock,
        })
    }

    /// Takes `bytes` off the ledger (a counted buffer's memory was freed).
    pub fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Relaxed);
    }
}

/// An admitted allocation, not yet made: commit it once the memory exists.
pub struct Admission<'a> {
    ledger: &'a Ledger,
    bytes: u64,
    _lock: MutexGuard<'a, ()>,
}

impl Admission<'_> {
    /// Adds the allocation to the ledger; returns its bytes, which the
    /// owner gives back through [`Ledger::release`] when it frees the memory.
    pub fn commit(self) -> u64 {
        self.ledger.held.fetch_add(self.bytes, Relaxed);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heaps(budget: Option<u64>, usage: Option<u64>) -> Heaps {
        Heaps {
            device_local_bytes: 1000,
            budget_bytes: budget,
            usage_bytes: usage,
            unified_memory: false,
        }
    }

    #[test]
    fn the_source_is_the_override_then_the_driver_then_the_heap() {
        let ledger = Ledger::default();
        let status = |h: &Heaps, l: &Ledger| MemoryStatus::of_device(h, l, 64);
        let s = status(&heaps(None, None), &ledger);
        assert_eq!((s.source, s.budget_bytes), (BudgetSource::HeapSize, 1000));
        let s = status(&heaps(Some(800), Some(100)), &ledger);
        assert_eq!((s.source, s.budget_bytes), (BudgetSource::Driver, 800));
        ledger.set_budget_override(Some(300));
        let s = status(&heaps(Some(800), Some(100)), &ledger);
        assert_eq!(
            (s.source, s.budget_bytes),
            (BudgetSource::TestOverride, 300)
        );
        assert_eq!(s.driver_usage_bytes, Some(100));
        ledger.set_budget_override(None);
        assert_eq!(
            status(&heaps(None, None), &ledger).source,
            BudgetSource::HeapSize
        );
    }

    #[test]
    fn usage_is_the_drivers_but_never_below_the_ledger() {
        let ledger = Ledger::default();
        ledger
            .admit(300, true, || {
                MemoryStatus::of_device(&heaps(None, None), &Ledger::default(), 0)
            })
            .unwrap()
            .commit();
        let s = MemoryStatus::of_device(&heaps(Some(1000), Some(500)), &ledger, 0);
        assert_eq!((s.usage_bytes(), s.available_bytes()), (500, 500));
        let s = MemoryStatus::of_device(&heaps(Some(1000), Some(100)), &ledger, 0);
        assert_eq!(s.usage_bytes(), 300);
        let s = MemoryStatus::of_device(&heaps(None, None), &ledger, 0);
        assert_eq!((s.usage_bytes(), s.available_bytes()), (300, 700));
        let s = MemoryStatus::of_device(&heaps(Some(200), Some(400)), &ledger, 0);
        assert_eq!(s.available_bytes(), 0);
        ledger.release(300);
        assert_eq!(ledger.held(), 0);
    }

    #[test]
    fn only_an_enforced_budget_refuses_data_and_a_refusal_counts_nothing() {
        let ledger = Ledger::default();
        let status = |h: Heaps| move || MemoryStatus::of_device(&h, &Ledger::default(), 0);
        // The heap size is not enforced: the driver decides.
        let bytes = ledger
            .admit(5000, true, status(heaps(None, None)))
            .unwrap()
            .commit();
        ledger.release(bytes);
        // The driver's budget is: usage 900 + 200 > 1000.
        let err = ledger
            .admit(200, true, status(heaps(Some(1000), Some(900))))
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory);
        assert!(
            err.message().contains("above the budget of 1000 bytes"),
            "{err}"
        );
        assert_eq!(ledger.held(), 0);
        // Staging memory is counted, never refused.
        let staging = ledger
            .admit(200, false, status(heaps(Some(1000), Some(900))))
            .unwrap()
            .commit();
        assert_eq!(ledger.held(), 200);
        ledger.release(staging);
        // Exactly the budget is admitted.
        let bytes = ledger
            .admit(100, true, status(heaps(Some(1000), Some(900))))
            .unwrap()
            .commit();
        assert_eq!((bytes, ledger.held()), (100, 100));
        // A dropped admission counts nothing.
        drop(ledger.admit(7, true, status(heaps(None, None))).unwrap());
        assert_eq!(ledger.held(), 100);
    }
}
