//! Memory at run time on Vulkan: the status a context reports (budget, the
//! driver's usage, nyxq's ledger), and a budget a test injects, which the
//! status reports and nyxq's own device allocations respect.

use crate::vk_support::env::{DEFAULT, EMULATE_IRIS_XE_ANV, EMULATE_RX580_RADV};
use crate::vk_support::run_under;
use nyxq::context::{Context, ContextSettings};
use nyxq::format::Format;
use nyxq::tensor::{Placement, Tensor};
use nyxq::vk::budget::BudgetSource;
use std::sync::Arc;

/// Q8_0 rows of 1024 values: 1088 bytes each.
const ROW: usize = 1024;

fn vulkan_context(host_fallback: bool) -> Option<Arc<Context>> {
    crate::vk_support::context_with(ContextSettings {
        vulkan_host_fallback: host_fallback,
        ..crate::vk_support::device_settings()
    })
}

fn weights(rows: usize) -> Vec<f32> {
    (0..rows * ROW).map(|i| (i as f32 * 0.021).sin()).collect()
}

fn host_tensor(ctx: &Arc<Context>, name: &str, rows: usize) -> (Tensor, Vec<f32>) {
    let t = Tensor::new(ctx.clone(), name, &[rows, ROW], Format::Q8_0).unwrap();
    let x = weights(rows);
    t.upload(&x, &Default::default()).unwrap();
    let mut values = vec![0f32; x.len()];
    t.download(&mut values).unwrap();
    (t, values)
}

fn downloaded(t: &Tensor) -> Vec<u32> {
    let mut out = vec![0f32; t.numel()];
    t.download(&mut out).unwrap();
    out.iter().map(|v| v.to_bits()).collect()
}

/// The status reads the device's budget where VK_EXT_memory_budget is
/// listed (the heaps' size elsewhere, as on lavapipe), within the device's
/// facts (an emulated device's capped memory), and nyxq's ledger follows
/// every DEVICE tensor: up by at least its bytes when it moves to the
/// device, back to where it was when it leaves.
#[test]
fn the_status_reads_the_budget_and_counts_nyxqs_device_memory() {
    if run_under(&[&DEFAULT, &EMULATE_RX580_RADV, &EMULATE_IRIS_XE_ANV]).is_none() {
        return;
    }
    let Some(ctx) = vulkan_context(false) else {
        return;
    };
    let info = ctx.device_info().unwrap().clone();
    let before = ctx.memory_status().unwrap();
    let expected_source = match info.budget_bytes {
        Some(_) => BudgetSource::Driver,
        None => BudgetSource::HeapSize,
    };
    assert_eq!(before.source, expected_source);
    assert_eq!(
        before.driver_usage_bytes.is_some(),
        info.budget_bytes.is_some()
    );
    assert_eq!(before.device_local_bytes, info.device_local_bytes);
    assert!(before.budget_bytes > 0 && before.budget_bytes <= info.device_local_bytes);
    assert_eq!(
        before.max_allocation_bytes,
        info.max_allocation_bytes.min(1 << 30)
    );
    assert!(before.usage_bytes() >= before.nyxq_bytes);
    assert_eq!(
        before.available_bytes(),
        before.budget_bytes.saturating_sub(before.usage_bytes())
    );

    let (t, values) = host_tensor(&ctx, "w", 64);
    t.migrate(Placement::Device).unwrap();
    let on_device = ctx.memory_status().unwrap();
    assert!(
        on_device.nyxq_bytes >= before.nyxq_bytes + t.byte_len() as u64,
        "{on_device:?} after a tensor of {} bytes",
        t.byte_len()
    );
    t.migrate(Placement::Host).unwrap();
    assert_eq!(ctx.memory_status().unwrap().nyxq_bytes, before.nyxq_bytes);
    let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(downloaded(&t), bits);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// A budget injected below what a DEVICE tensor needs: the status reports
/// it, the planner's detected hardware carries it, and moving the tensor to
/// the device is refused (OutOfDeviceMemory, the tensor intact on the host),
/// or with host fallback leaves it on the host; cleared, the move succeeds.
#[test]
fn an_injected_budget_is_reported_and_refuses_device_allocations() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    for host_fallback in [false, true] {
        let Some(ctx) = vulkan_context(host_fallback) else {
            return;
        };
        let (t, values) = host_tensor(&ctx, "w", 64);
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        let held = ctx.memory_status().unwrap().nyxq_bytes;
        let budget = held + t.byte_len() as u64 / 2;
        ctx.inject_device_budget(Some(budget)).unwrap();
        let status = ctx.memory_status().unwrap();
        assert_eq!(status.source, BudgetSource::TestOverride);
        assert_eq!(status.budget_bytes, budget);
        assert_eq!(ctx.hardware().unwrap().device_budget_bytes, budget);

        crate::vk_support::expect_refused_or_fell_back(
            t.migrate(Placement::Device),
            host_fallback,
            "above the budget",
        );
        assert_eq!(t.placement(), Placement::Host);
        assert_eq!(ctx.memory_status().unwrap().nyxq_bytes, held);
        assert_eq!(downloaded(&t), bits);

        ctx.inject_device_budget(None).unwrap();
        assert_ne!(
            ctx.memory_status().unwrap().source,
            BudgetSource::TestOverride
        );
        t.migrate(Placement::Device).unwrap();
        assert_eq!(t.placement(), Placement::Device);
        assert_eq!(downloaded(&t), bits);
        assert_eq!(
            ctx.inject_device_budget(Some(0)).unwrap_err().kind(),
            nyxq::ErrorKind::InvalidArgument
        );
        assert_eq!(ctx.vulkan_validation_errors(), 0);
    }
}

/// Four threads move four tensors to the device at once under a budget with
/// room for two: nyxq admits its allocations one at a time, so the tensors
/// on the device never take more than the budget (one or two move: a
/// thread's staging, counted while it copies, can crowd out another's
/// tensor), and every refused one is intact on the host. The status is read
/// meanwhile from the same threads.
#[test]
fn concurrent_allocations_never_overrun_the_budget() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let Some(ctx) = vulkan_context(false) else {
        return;
    };
    let tensors: Vec<(Tensor, Vec<f32>)> = (0..4)
        .map(|i| host_tensor(&ctx, &format!("w{i}"), 64))
        .collect();
    let before = ctx.memory_status().unwrap();
    let held = before.nyxq_bytes;
    tensors[0].0.migrate(Placement::Device).unwrap();
    let one = ctx.memory_status().unwrap();
    let each = one.nyxq_bytes - held;
    // The budget is compared with the usage, which is the driver's where it
    // reports one (VK_EXT_memory_budget: nyxq's memory, the driver's own and
    // its allocation granularity), so room for two and a half tensors is
    // measured in the usage's units.
    let each_in_usage = one.usage_bytes() - before.usage_bytes();
    tensors[0].0.migrate(Placement::Host).unwrap();
    let budget = ctx.memory_status().unwrap().usage_bytes() + 2 * each_in_usage + each_in_usage / 2;
    ctx.inject_device_budget(Some(budget)).unwrap();
    let moved: Vec<bool> = std::thread::scope(|scope| {
        let threads: Vec<_> = tensors
            .iter()
            .map(|(t, _)| {
                let ctx = &ctx;
                scope.spawn(move || {
                    let result = t.migrate(Placement::Device);
                    // Staging buffers of the others may be counted now.
                    assert!(ctx.memory_status().unwrap().nyxq_bytes >= held);
                    match result {
                        Ok(()) => true,
                        Err(e) => {
                            assert_eq!(e.kind(), nyxq::ErrorKind::OutOfDeviceMemory, "{e}");
                            false
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let on_device = moved.iter().filter(|&&m| m).count();
    assert!((1..=2).contains(&on_device), "{on_device} tensors moved");
    assert_eq!(
        ctx.memory_status().unwrap().nyxq_bytes,
        held + on_device as u64 * each
    );
    for ((t, values), moved) in tensors.iter().zip(&moved) {
        let expected = if *moved {
            Placement::Device
        } else {
            Placement::Host
        };
        assert_eq!(t.placement(), expected);
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(downloaded(t), bits);
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}
