//! nyxq-owned device tensors: upload, download and migration keep the bytes
//! of a host tensor exactly; a tensor over maxStorageBufferRange is split into
//! chunks of whole rows; a failed device allocation leaves the data intact.

use crate::vk_support::env::{DEFAULT, Env, FORCE_COMPAT};
use crate::vk_support::run_under;
use nyxq::context::{BackendPreference, Context, ContextSettings};
use nyxq::format::{Format, VulkanFamily};
use nyxq::quant::{QuantizeOptions, Rounding};
use nyxq::tensor::{Placement, Tensor};
use std::sync::Arc;

fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.013).cos() * 2.5).collect()
}

fn host_bytes(t: &Tensor) -> Vec<u8> {
    let p = t.bytes_ptr().expect("a host tensor");
    // SAFETY: p points to byte_len bytes that live as long as t, unchanged here.
    unsafe { std::slice::from_raw_parts(p, t.byte_len()) }.to_vec()
}

#[test]
fn device_tensors_hold_the_same_bytes_as_host_tensors() {
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    for format in Format::with_vulkan(VulkanFamily::Matvec) {
        // Rows of 160 (a K-quant's: 256, whole super-blocks).
        let shape = [96, 160usize.next_multiple_of(format.block_size())];
        let x = values(shape[0] * shape[1]);
        for rounding in [
            Rounding::Nearest,
            Rounding::Stochastic { seed: 9 },
            Rounding::ErrorMinimising,
        ] {
            let opts = QuantizeOptions {
                rounding,
                ..Default::default()
            };
            let host = Tensor::new(ctx.clone(), "w", &shape, format).unwrap();
            host.upload(&x, &opts).unwrap();
            let dev = Tensor::new_in(ctx.clone(), "w", &shape, format, Placement::Device).unwrap();
            assert_eq!(dev.placement(), Placement::Device);
            assert!(dev.bytes_ptr().is_none());
            dev.upload(&x, &opts).unwrap();
            let mut a = vec![0f32; x.len()];
            let mut b = vec![0f32; x.len()];
            host.download(&mut a).unwrap();
            dev.download(&mut b).unwrap();
            assert!(
                a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{format:?}"
            );
            let chunks = dev.device_chunks().unwrap();
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].1 as usize, host.byte_len());
            dev.migrate(Placement::Host).unwrap();
            assert_eq!(dev.placement(), Placement::Host);
            assert_eq!(
                host_bytes(&dev),
                host_bytes(&host),
                "{format:?} {rounding:?}"
            );
            dev.migrate(Placement::Device).unwrap();
            dev.migrate(Placement::Device).unwrap(); // already there: nothing happens
            dev.migrate(Placement::Host).unwrap();
            assert_eq!(host_bytes(&dev), host_bytes(&host));
        }
    }
    // Input errors reject before anything is written.
    let dev = Tensor::new_in(ctx.clone(), "w", &[1, 64], Format::Q8_0, Placement::Device).unwrap();
    dev.upload(&values(64), &QuantizeOptions::default())
        .unwrap();
    let mut bad = values(64);
    bad[40] = f32::NAN;
    let err = dev.upload(&bad, &QuantizeOptions::default()).unwrap_err();
    assert!(
        matches!(err.kind(), nyxq::ErrorKind::NonFinite { index: 40 }),
        "{err}"
    );
    let mut back = vec![0f32; 64];
    dev.download(&mut back).unwrap();
    let mut expect = vec![0f32; 64];
    let host = Tensor::new(ctx.clone(), "w", &[1, 64], Format::Q8_0).unwrap();
    host.upload(&values(64), &QuantizeOptions::default())
        .unwrap();
    host.download(&mut expect).unwrap();
    assert_eq!(back, expect);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn a_tensor_over_the_storage_buffer_range_is_split_into_whole_rows() {
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    let range = ctx.device_info().unwrap().max_storage_buffer_range as usize;
    if range > 256 << 20 {
        println!(
            "SKIP: the device's storage-buffer range ({range} bytes) is too large to exceed here"
        );
        return;
    }
    // F32 rows of 4 KiB (1024 floats), a few rows past the range.
    let cols = 1024;
    let rows = range / (4 * cols) + 3;
    let x: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let t = Tensor::new_in(
        ctx.clone(),
        "big",
        &[rows, cols],
        Format::F32,
        Placement::Device,
    )
    .unwrap();
    t.upload(&x, &QuantizeOptions::default()).unwrap();
    let chunks = t.device_chunks().unwrap();
    assert_eq!(chunks.len(), 2);
    assert!(
        chunks
            .iter()
            .all(|c| c.1 as usize <= range && c.1 % (4 * cols as u64) == 0)
    );
    assert_eq!(chunks[1].2, chunks[0].1);
    let mut back = vec![0f32; x.len()];
    t.download(&mut back).unwrap();
    assert!(back == x);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

fn context_failing_allocation(nth: u64, host_fallback: bool) -> Option<Arc<Context>> {
    let settings = ContextSettings {
        backend: BackendPreference::Vulkan,
        vulkan_validation: true,
        vulkan_fail_allocation: Some(nth),
        vulkan_host_fallback: host_fallback,
        threads: 1,
        ..Default::default()
    };
    Context::new(&settings).ok().map(Arc::new)
}

#[test]
fn a_failed_device_allocation_keeps_the_data_or_falls_back_to_the_host() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let x = values(4 * 256);
    for host_fallback in [false, true] {
        let Some(ctx) = context_failing_allocation(1, host_fallback) else {
            crate::vk_support::skip_missing("no Vulkan device");
            return;
        };
        let t = Tensor::new(ctx.clone(), "w", &[4, 256], Format::Q4_0).unwrap();
        t.upload(&x, &QuantizeOptions::default()).unwrap();
        let before = host_bytes(&t);
        crate::vk_support::expect_refused_or_fell_back(
            t.migrate(Placement::Device),
            host_fallback,
            "fault injection",
        );
        assert_eq!(t.placement(), Placement::Host);
        assert_eq!(host_bytes(&t), before, "the data is intact");
        // The next allocation succeeds: the tensor moves and keeps its bytes.
        t.migrate(Placement::Device).unwrap();
        assert_eq!(t.placement(), Placement::Device);
        t.migrate(Placement::Host).unwrap();
        assert_eq!(host_bytes(&t), before);
        // Creating in DEVICE placement on a context whose first allocation fails.
        let Some(ctx) = context_failing_allocation(1, host_fallback) else {
            return;
        };
        let made = Tensor::new_in(ctx.clone(), "w", &[4, 256], Format::Q4_0, Placement::Device);
        match (host_fallback, made) {
            (true, Ok(t)) => assert_eq!(t.placement(), Placement::Host),
            (false, Err(e)) => assert_eq!(e.kind(), nyxq::ErrorKind::OutOfDeviceMemory),
            (_, other) => panic!("unexpected {other:?}"),
        }
        assert_eq!(ctx.vulkan_validation_errors(), 0);
    }
}

#[test]
fn a_cpu_context_has_no_device_placement() {
    let ctx = Arc::new(
        Context::new(&ContextSettings {
            backend: BackendPreference::Cpu,
            ..Default::default()
        })
        .unwrap(),
    );
    let err = Tensor::new_in(ctx, "w", &[32], Format::Q8_0, Placement::Device).unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::Unsupported);
    assert!(err.message().contains("CPU"), "{err}");
}
