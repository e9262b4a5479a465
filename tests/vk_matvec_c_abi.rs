//! nyxq_vk_cmd_matvec and nyxq_vk_cmd_matvec_transposed through the C
//! ABI, on a context that borrows the test context's device (so the
//! test can make buffers and command buffers on it): results, and every
//! error path with its status, ticket_out untouched and nothing recorded.

use crate::matvec_support::{bound, check_value, reference, uniform, weights};
use crate::vk_support::env::{DEFAULT, Env, FORCE_COMPAT};
use crate::vk_support::run_under;
use nyxq::format::Format;
use nyxq::vk::Engine;
use nyxq::vk::matvec::MatvecCall;

use ash::vk::Handle;
use nyxq::ffi::NyxqStatus;
use nyxq::ffi::context::{
    NyxqBackend, NyxqContext, NyxqContextOptions, nyxq_context_create, nyxq_context_destroy,
};
use nyxq::ffi::guard::{nyxq_last_error_message, nyxq_last_error_needed_len};
use nyxq::ffi::vk::{NyxqVulkanHandles, nyxq_context_create_vulkan_borrowed};
use nyxq::ffi::vk_cmd::{
    NyxqVkBufferRange, NyxqVkRecorderUsage, nyxq_vk_recorder_usage, nyxq_vk_release,
};
use nyxq::ffi::vk_matvec::{nyxq_vk_cmd_matvec, nyxq_vk_cmd_matvec_transposed};
use std::ffi::{CStr, c_void};
use std::ptr::{null, null_mut};

fn borrowed_context(engine: &Engine) -> *mut NyxqContext {
    let device = &engine.device;
    let handles = NyxqVulkanHandles {
        instance: device.instance.instance.handle().as_raw() as *mut c_void,
        physical_device: device.physical.as_raw() as *mut c_void,
        device: device.device.handle().as_raw() as *mut c_void,
        queue_family: device.queue_family,
        queue: device.queue.as_raw() as *mut c_void,
        get_instance_proc_addr: device.instance.entry.static_fn().get_instance_proc_addr
            as *mut c_void,
        ..Default::default()
    };
    let mut ctx = null_mut();
    let status = nyxq_context_create_vulkan_borrowed(null(), &handles, &mut ctx);
    assert_eq!(status, NyxqStatus::NyxqOk);
    ctx
}

fn c_range(b: &nyxq::vk::memory::Buffer, offset: u64, size: u64) -> NyxqVkBufferRange {
    NyxqVkBufferRange {
        buffer: b.buffer.as_raw() as *mut c_void,
        offset,
        size,
    }
}

fn unreleased(ctx: *const NyxqContext) -> u64 {
    let mut usage = NyxqVkRecorderUsage::default();
    assert_eq!(nyxq_vk_recorder_usage(ctx, &mut usage), NyxqStatus::NyxqOk);
    usage.unreleased_sets
}

fn last_error() -> String {
    // SAFETY: nyxq returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(nyxq_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

const Q4_0: i32 = Format::Q4_0 as i32;

/// The arguments of one call, changed one at a time by the error cases.
#[derive(Clone, Copy)]
struct Args {
    ctx: *mut NyxqContext,
    cmd: *mut c_void,
    format: i32,
    rows: u64,
    cols: u64,
    batch: u32,
    w: *const NyxqVkBufferRange,
    x: *const NyxqVkBufferRange,
    bias: *const NyxqVkBufferRange,
    y: *const NyxqVkBufferRange,
    ticket: *mut u64,
}

fn forward(a: &Args) -> NyxqStatus {
    nyxq_vk_cmd_matvec(
        a.ctx, a.cmd, a.format, a.rows, a.cols, a.batch, a.w, a.x, a.bias, a.y, a.ticket,
    )
}

fn transposed(a: &Args) -> NyxqStatus {
    nyxq_vk_cmd_matvec_transposed(
        a.ctx, a.cmd, a.format, a.rows, a.cols, a.batch, a.w, a.x, a.y, a.ticket,
    )
}

#[test]
fn c_abi_records_products_and_checks_every_argument() {
    let Some(rust_ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    let engine = rust_ctx.vulkan().unwrap();
    let ctx = borrowed_context(engine);
    let (rows, cols, batch) = (20usize, 64usize, 2u32);
    let (wq, w) = weights(Format::Q4_0, rows, cols, 41);
    let x = uniform(batch as usize * cols, 43);
    let xt = uniform(batch as usize * rows, 47);
    let bias = uniform(rows, 53);
    let mut arena = nyxq::vk::memory::Buffer::new(&engine.device, 1 << 16, true).unwrap();
    let mut bytes = vec![0u8; 1 << 16];
    bytes[..wq.len()].copy_from_slice(&wq);
    for (at, v) in [(1024usize, &x), (2048, &bias), (3072, &xt)] {
        for (i, f) in v.iter().enumerate() {
            bytes[at + 4 * i..at + 4 * i + 4].copy_from_slice(&f.to_le_bytes());
        }
    }
    arena.write(&bytes);
    let wr = c_range(&arena, 0, 720);
    let xr = c_range(&arena, 1024, 512);
    let br = c_range(&arena, 2048, 80);
    let xtr = c_range(&arena, 3072, 160);
    let yr = c_range(&arena, 4096, 160);
    let ytr = c_range(&arena, 8192, 512);
    let mut ticket = 0u64;
    let mut t2 = 0u64;
    engine
        .submit_recorded(false, |cmd| {
            let a = Args {
                ctx,
                cmd: cmd.as_raw() as *mut c_void,
                format: Q4_0,
                rows: rows as u64,
                cols: cols as u64,
                batch,
                w: &wr,
                x: &xr,
                bias: &br,
                y: &yr,
                ticket: &mut ticket,
            };
            assert_eq!(forward(&a), NyxqStatus::NyxqOk, "{}", last_error());
            let t = Args {
                x: &xtr,
                bias: null(),
                y: &ytr,
                ticket: &mut t2,
                ..a
            };
            assert_eq!(transposed(&t), NyxqStatus::NyxqOk, "{}", last_error());
            Ok(())
        })
        .unwrap();
    assert!(t2 > ticket && ticket > 0);
    assert_eq!(unreleased(ctx), 2);
    assert_eq!(nyxq_vk_release(ctx, t2), NyxqStatus::NyxqOk);
    assert_eq!(unreleased(ctx), 0);
    let mut out = vec![0u8; 1 << 16];
    arena.read(&mut out);
    let read = |at: usize| f32::from_le_bytes(out[at..at + 4].try_into().unwrap());
    for (transposed, at, xs, b) in [(false, 4096, &x, Some(&bias[..])), (true, 8192, &xt, None)] {
        let call = MatvecCall {
            format: Format::Q4_0,
            rows: rows as u64,
            cols: cols as u64,
            batch,
            transposed,
            compat: false,
        };
        let n = if transposed { rows } else { cols };
        for (i, r) in reference(&call, &w, xs, b).iter().enumerate() {
            check_value(
                read(at + 4 * i),
                r,
                bound(n, r.magnitude),
                &format!("C ABI {call:?} {i}"),
            );
        }
    }

    // Every error path: status, message, ticket untouched, nothing recorded.
    let mut cpu_ctx = null_mut();
    let options = NyxqContextOptions {
        backend: NyxqBackend::NyxqBackendCpu as i32,
        ..Default::default()
    };
    assert_eq!(
        nyxq_context_create(&options, &mut cpu_ctx),
        NyxqStatus::NyxqOk
    );
    let mut dead = null_mut();
    assert_eq!(nyxq_context_create(&options, &mut dead), NyxqStatus::NyxqOk);
    assert_eq!(nyxq_context_destroy(dead), NyxqStatus::NyxqOk);
    let null_buffer = NyxqVkBufferRange {
        buffer: null_mut(),
        ..wr
    };
    let misaligned = c_range(&arena, 2, 720);
    let short_w = c_range(&arena, 0, 716);
    let short_y = c_range(&arena, 4096, 156);
    let overlapping_y = c_range(&arena, 512, 512);
    use NyxqStatus::*;
    engine
        .submit_recorded(false, |cmd| {
            let mut untouched = 0xdead_u64;
            let good = Args {
                ctx,
                cmd: cmd.as_raw() as *mut c_void,
                format: Q4_0,
                rows: rows as u64,
                cols: cols as u64,
                batch,
                w: &wr,
                x: &xr,
                bias: &br,
                y: &yr,
                ticket: &mut untouched,
            };
            let cases: Vec<(Args, NyxqStatus, &str)> = vec![
                (
                    Args {
                        ctx: null_mut(),
                        ..good
                    },
                    NyxqErrorNullPointer,
                    "context handle is NULL",
                ),
                (
                    Args { ctx: dead, ..good },
                    NyxqErrorInvalidHandle,
                    "context",
                ),
                (
                    Args {
                        ctx: cpu_ctx,
                        ..good
                    },
                    NyxqErrorUnsupported,
                    "CPU",
                ),
                (
                    Args {
                        cmd: null_mut(),
                        ..good
                    },
                    NyxqErrorNullPointer,
                    "command_buffer",
                ),
                (
                    Args { format: 99, ..good },
                    NyxqErrorInvalidArgument,
                    "format",
                ),
                (
                    Args { w: null(), ..good },
                    NyxqErrorNullPointer,
                    "w is NULL",
                ),
                (
                    Args { x: null(), ..good },
                    NyxqErrorNullPointer,
                    "x is NULL",
                ),
                (
                    Args { y: null(), ..good },
                    NyxqErrorNullPointer,
                    "y is NULL",
                ),
                (
                    Args {
                        ticket: null_mut(),
                        ..good
                    },
                    NyxqErrorNullPointer,
                    "ticket_out",
                ),
                (Args { rows: 0, ..good }, NyxqErrorInvalidArgument, "empty"),
                (
                    Args { cols: 48, ..good },
                    NyxqErrorInvalidArgument,
                    "multiple of",
                ),
                (
                    Args { batch: 0, ..good },
                    NyxqErrorInvalidArgument,
                    "batch 0",
                ),
                (
                    Args { batch: 9, ..good },
                    NyxqErrorInvalidArgument,
                    "batch 9",
                ),
                (
                    Args {
                        rows: u64::MAX,
                        ..good
                    },
                    NyxqErrorInvalidArgument,
                    "32-bit",
                ),
                (
                    Args {
                        w: &null_buffer,
                        ..good
                    },
                    NyxqErrorNullPointer,
                    "VK_NULL_HANDLE",
                ),
                (
                    Args {
                        w: &misaligned,
                        ..good
                    },
                    NyxqErrorInvalidArgument,
                    "alignment",
                ),
                (
                    Args {
                        w: &short_w,
                        ..good
                    },
                    NyxqErrorBufferTooSmall,
                    "needed",
                ),
                (
                    Args {
                        y: &short_y,
                        ..good
                    },
                    NyxqErrorBufferTooSmall,
                    "needed",
                ),
                (
                    Args {
                        y: &overlapping_y,
                        ..good
                    },
                    NyxqErrorInvalidArgument,
                    "overlap",
                ),
            ];
            for (args, status, text) in &cases {
                for (name, call) in [
                    ("forward", forward as fn(&Args) -> NyxqStatus),
                    ("transposed", transposed),
                ] {
                    if name == "transposed" && std::ptr::eq(args.y, &short_y) {
                        continue; // the transposed y is batch·cols floats: another size
                    }
                    // The transposed product's x and y have other sizes.
                    let swap = |p, from: &NyxqVkBufferRange, to| {
                        if std::ptr::eq(p, from) { to } else { p }
                    };
                    let args = if name == "transposed" {
                        Args {
                            x: swap(args.x, &xr, &xtr),
                            y: swap(args.y, &yr, &ytr),
                            ..*args
                        }
                    } else {
                        *args
                    };
                    assert_eq!(call(&args), *status, "{name} {text}: {}", last_error());
                    assert!(
                        last_error().contains(text),
                        "{name} {text}: {}",
                        last_error()
                    );
                }
            }
            let a = Args {
                w: &short_w,
                ..good
            };
            assert_eq!(forward(&a), NyxqErrorBufferTooSmall);
            assert_eq!(nyxq_last_error_needed_len(), 720);
            assert_eq!(untouched, 0xdead);
            Ok(())
        })
        .unwrap();
    assert_eq!(unreleased(ctx), 0);
    assert_eq!(nyxq_context_destroy(cpu_ctx), NyxqStatus::NyxqOk);
    assert_eq!(nyxq_context_destroy(ctx), NyxqStatus::NyxqOk);
    assert_eq!(rust_ctx.vulkan_validation_errors(), 0);
}
