//! Dispatches recorded into a command buffer the test owns (as a trainer's
//! would be): bytes equal the CPU twin for every kernel, nothing is submitted
//! by nyxq, and 10 000 recorded dispatches with releases grow nothing.

use crate::vk_support::commands::Commands;
use crate::vk_support::env::{DEFAULT, EVERY_DEVICE, Env};
use crate::vk_support::run_under;
use ash::vk;
use nyxq::format::{Format, VulkanFamily};
use nyxq::quant::{self, QuantizeOptions, Rounding};
use nyxq::vk::family::Family;
use nyxq::vk::memory::Buffer;
use nyxq::vk::ranges::BufferRange;
use nyxq::vk::record::{self, KernelCall};
use nyxq::vk::recorder::MAX_UNRELEASED;
use nyxq::vk::shaders::Op;

fn range(b: &Buffer, offset: u64, size: u64) -> BufferRange {
    BufferRange {
        buffer: b.buffer,
        offset,
        size,
    }
}

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.618).sin() * 3.0) + if i % 7 == 0 { 0.5 } else { 0.0 })
        .collect()
}

/// A recorded nearest-rounding quantize of `n` values from index 0.
fn quantize_nearest(format: Format, n: usize) -> KernelCall {
    KernelCall {
        op: Op::Quantize,
        format,
        n: n as u64,
        rounding: Rounding::Nearest,
        first_index: 0,
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn recorded_kernels_equal_the_cpu() {
    let Some(ctx) = run_under(&EVERY_DEVICE).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let commands = Commands::new(engine);
    // Whole K-quant super-blocks (19: Q6_K's output ends inside a word),
    // not whole workgroups of the block kernels.
    let n = 4096 + 768;
    let x = data(n);
    // Offsets inside larger buffers, as a trainer's arena would have them.
    let offset = 256;
    let mut input = Buffer::new(&engine.device, offset + 4 * n as u64, true).unwrap();
    let mut staged = vec![0u8; offset as usize];
    staged.extend(f32_bytes(&x));
    input.write(&staged);
    for format in Format::with_vulkan(VulkanFamily::Conversions) {
        for rounding in [Rounding::Nearest, Rounding::Stochastic { seed: 42 }] {
            let bytes = format.size_of(n).unwrap() as u64;
            let q = Buffer::new(&engine.device, offset + bytes.div_ceil(4) * 4, true).unwrap();
            let back = Buffer::new(&engine.device, 4 * n as u64, true).unwrap();
            let fake = Buffer::new(&engine.device, 4 * n as u64, true).unwrap();
            commands.begin();
            let call = |op| KernelCall {
                op,
                format,
                n: n as u64,
                rounding,
                first_index: 0,
            };
            let src = range(&input, offset, 4 * n as u64);
            let qr = range(&q, offset, bytes.div_ceil(4) * 4);
            // SAFETY: recording; buffers of nyxq's device, ranges inside them.
            let t1 = unsafe {
                record::record_kernel(engine, commands.cmd, &call(Op::Quantize), &src, &qr)
            }
            .unwrap();
            let barrier = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::SHADER_WRITE)
                .dst_access_mask(vk::AccessFlags::SHADER_READ);
            // SAFETY: recording.
            unsafe {
                engine.device.device.cmd_pipeline_barrier(
                    commands.cmd,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                    vk::DependencyFlags::empty(),
                    &[barrier],
                    &[],
                    &[],
                )
            };
            // SAFETY: as above.
            let t2 = unsafe {
                record::record_kernel(
                    engine,
                    commands.cmd,
                    &call(Op::Dequantize),
                    &qr,
                    &range(&back, 0, 4 * n as u64),
                )
            }
            .unwrap();
            // SAFETY: as above.
            let t3 = unsafe {
                record::record_kernel(
                    engine,
                    commands.cmd,
                    &call(Op::FakeQuantize),
                    &src,
                    &range(&fake, 0, 4 * n as u64),
                )
            }
            .unwrap();
            assert!(t1 < t2 && t2 < t3);
            assert_eq!(engine.recorder().usage().unreleased_sets, 3);
            commands.submit_and_wait();
            engine
                .recorder()
                .release(&engine.device.device, t3)
                .unwrap();
            assert_eq!(engine.recorder().usage().unreleased_sets, 0);

            let opts = QuantizeOptions {
                rounding,
                ..Default::default()
            };
            let mut cpu = vec![0u8; bytes as usize];
            quant::quantize(format, &x, &mut cpu, &opts).unwrap();
            let mut gpu = vec![0u8; offset as usize + bytes as usize];
            q.read(&mut gpu);
            assert!(
                gpu[offset as usize..] == cpu[..],
                "{format:?} {rounding:?} quantize"
            );
            let mut cpu_back = vec![0f32; n];
            quant::dequantize(format, &cpu, &mut cpu_back, 1).unwrap();
            let mut gpu_back = vec![0u8; 4 * n];
            back.read(&mut gpu_back);
            assert_eq!(gpu_back, f32_bytes(&cpu_back), "{format:?} dequantize");
            let mut gpu_fake = vec![0u8; 4 * n];
            fake.read(&mut gpu_fake);
            assert_eq!(gpu_fake, f32_bytes(&cpu_back), "{format:?} fake-quantize");
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// The inverse of `quant::rng::mix` (each step undone in reverse order).
fn unmix(mut h: u32) -> u32 {
    // The multiplicative inverse of an odd u32, by Newton's iteration.
    let inverse = |a: u32| {
        let mut x = a;
        for _ in 0..5 {
            x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
        }
        x
    };
    h ^= h >> 16;
    h = h.wrapping_mul(inverse(0x846c_a68b));
    h ^= (h >> 15) ^ (h >> 30);
    h = h.wrapping_mul(inverse(0x7feb_352d));
    h ^= h >> 16;
    h
}

/// Q6_K's stochastic rounding where the drawn u is exactly 0 and the value
/// is subnormal: ⌊x·id⌋ of the CPU's negative product is −1 (level 31) where
/// it rounds to a subnormal and 0 where it rounds to −0, though a GPU may
/// flush the value or the product to zero either way. The
/// element whose u is 0 is found by inverting the generator, and the
/// recorded quantize starts at a tensor index that puts it in the
/// super-block.
#[test]
fn q6_k_stochastic_rounding_with_a_zero_draw_keeps_a_subnormal_product() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let seed = 0x5eed_u64;
    // r(s, i) = mix(i_lo ^ mix(s_lo ^ mix(s_hi ^ mix(i_hi ^ 0x9e3779b9)))):
    // with i_hi = 0, the i_lo that makes r = 0.
    let mix = quant::rng::mix;
    let inner = mix(seed as u32 ^ mix((seed >> 32) as u32 ^ mix(0x9e37_79b9)));
    let zero_at = u64::from(unmix(0) ^ inner);
    assert!(zero_at >= 1);
    assert_eq!(quant::rng::uniform(seed, zero_at), 0.0);
    // Each super-block: the largest magnitude −m first, so d = −m/4096, every
    // sc = −128 and 1/(d·sc) = 32/m; at position 1 (the drawn zero) the
    // value x, whose product x·32/m the CPU rounds to a subnormal (level 31)
    // or to −0 (level 32): −2⁻¹²⁷; −2⁻¹⁵², below half the least subnormal;
    // exactly −2⁻¹⁵⁰, a tie to the even zero; −1.5·2⁻¹⁴⁹, a tie to the even
    // −2⁻¹⁴⁸. (lavapipe keeps subnormals; a GPU that flushes them needs the
    // exact path for the first and last.)
    let subnormal = |units: u32| -f32::from_bits(units);
    let cases = [
        (1.0 / 256.0, subnormal(1 << 9), 31u8),
        (256.0, subnormal(1), 32),
        (64.0, subnormal(1), 32),
        (64.0, subnormal(3), 31),
    ];
    let rounding = Rounding::Stochastic { seed };
    let first_index = zero_at - 1;
    let commands = Commands::new(engine);
    let mut input = Buffer::new(&engine.device, 1024, true).unwrap();
    let q = Buffer::new(&engine.device, 212, true).unwrap();
    for (m, value, level) in cases {
        let mut x: Vec<f32> = (0..256)
            .map(|i| ((i % 16) as f32 - 7.5) / 7.5 * m)
            .collect();
        x[0] = -m;
        x[1] = value;
        let mut cpu = vec![0u8; 210];
        let opts = QuantizeOptions {
            rounding,
            first_index,
            ..Default::default()
        };
        quant::quantize(Format::Q6_K, &x, &mut cpu, &opts).unwrap();
        // Element 1's level: the low nibble of ql[1], bits 0-1 of qh[1].
        assert_eq!((cpu[1] & 15) | ((cpu[129] & 3) << 4), level, "m = {m}");

        input.write(&f32_bytes(&x));
        commands.begin();
        let call = KernelCall {
            op: Op::Quantize,
            format: Format::Q6_K,
            n: 256,
            rounding,
            first_index,
        };
        // SAFETY: recording; buffers of nyxq's device, ranges inside them.
        let ticket = unsafe {
            record::record_kernel(
                engine,
                commands.cmd,
                &call,
                &range(&input, 0, 1024),
                &range(&q, 0, 212),
            )
        }
        .unwrap();
        commands.submit_and_wait();
        engine
            .recorder()
            .release(&engine.device.device, ticket)
            .unwrap();
        let mut gpu = vec![0u8; 212];
        q.read(&mut gpu);
        assert_eq!(gpu[..210], cpu[..], "m = {m}, x = {value:e}");
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn ten_thousand_recorded_dispatches_grow_nothing() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let commands = Commands::new(engine);
    let n = 256usize;
    let src = Buffer::new(&engine.device, 4 * n as u64, true).unwrap();
    let dst = Buffer::new(
        &engine.device,
        Format::Q8_0.size_of(n).unwrap() as u64,
        true,
    )
    .unwrap();
    let call = quantize_nearest(Format::Q8_0, n);
    let mut pools_after_first_frame = 0;
    // The self-test's products (the engine's own submissions) took the
    // first tickets.
    let first = engine.recorder().usage().last_ticket;
    for frame in 0..100 {
        commands.begin();
        let mut last = 0;
        for _ in 0..100 {
            // SAFETY: recording; nyxq's buffers, whole ranges.
            last = unsafe {
                record::record_kernel(
                    engine,
                    commands.cmd,
                    &call,
                    &range(&src, 0, src.size),
                    &range(&dst, 0, dst.size),
                )
            }
            .unwrap();
        }
        commands.submit_and_wait();
        engine
            .recorder()
            .release(&engine.device.device, last)
            .unwrap();
        let usage = engine.recorder().usage();
        assert_eq!(usage.unreleased_sets, 0);
        if frame == 0 {
            pools_after_first_frame = usage.pools;
        }
        assert_eq!(usage.pools, pools_after_first_frame, "frame {frame}");
    }
    assert_eq!(engine.recorder().usage().last_ticket, first + 10_000);
    assert_eq!(pools_after_first_frame, 1);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn bad_recording_arguments_are_refused_and_record_nothing() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let commands = Commands::new(engine);
    let buf = Buffer::new(&engine.device, 1 << 16, true).unwrap();
    let call = quantize_nearest(Format::Q4_0, 1024);
    let whole = range(&buf, 0, 4096);
    let out = range(&buf, 8192, 1024);
    let cases: Vec<(KernelCall, BufferRange, BufferRange, &str)> = vec![
        (KernelCall { n: 0, ..call }, whole, out, "n is 0"),
        (KernelCall { n: 1000, ..call }, whole, out, "multiple of"),
        (call, range(&buf, 2, 4096), out, "alignment"),
        (call, range(&buf, 0, 4000), out, "needed"),
        (call, whole, range(&buf, 8192, 64), "needed"),
        (call, whole, range(&buf, 1024, 1024), "overlap"),
        (
            call,
            BufferRange {
                buffer: vk::Buffer::null(),
                ..whole
            },
            out,
            "VK_NULL_HANDLE",
        ),
        (call, range(&buf, u64::MAX - 15, 32), out, "overflow"),
        (call, range(&buf, 0, u64::MAX), out, "runs past the end"),
        (call, whole, range(&buf, 1 << 16, 1024), "runs past the end"),
        (
            KernelCall {
                op: Op::DequantizeF16,
                format: Format::F32,
                ..call
            },
            whole,
            out,
            "F32 -> F16",
        ),
    ];
    commands.begin();
    for (call, src, dst, expect) in cases {
        // SAFETY: recording; every case is refused before anything is recorded.
        let err =
            unsafe { record::record_kernel(engine, commands.cmd, &call, &src, &dst) }.unwrap_err();
        assert!(err.message().contains(expect), "{expect}: {err}");
    }
    // SAFETY: as above.
    let err =
        unsafe { record::record_kernel(engine, vk::CommandBuffer::null(), &call, &whole, &out) }
            .unwrap_err();
    assert!(err.message().contains("command_buffer"), "{err}");
    assert_eq!(engine.recorder().usage().unreleased_sets, 0);
    let err = engine
        .recorder()
        .release(&engine.device.device, 1_000_000)
        .unwrap_err();
    assert!(err.message().contains("never issued"), "{err}");
    commands.submit_and_wait();
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn recorded_unscale_and_check_equals_the_cpu_scaler() {
    let Some(ctx) = run_under(&EVERY_DEVICE).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let commands = Commands::new(engine);
    let n = 5000usize;
    let mut grads: Vec<f32> = (0..n)
        .map(|i| match i % 5 {
            0 => f32::from_bits(0x0000_0001 + i as u32), // subnormal
            1 => f32::from_bits(0x0100_0000 + i as u32 * 977), // tiny normal
            2 => (i as f32 * 0.37).sin() * 1.0e5,
            3 => -f32::from_bits(0x0080_0000 + i as u32), // smallest normals
            _ => 3.0e38,
        })
        .collect();
    for (scale, plant) in [
        (65536.0f32, None),
        (3.0, None),
        (1.0, None),
        (65536.0, Some(n - 1)),
    ] {
        if let Some(at) = plant {
            grads[at] = f32::NAN;
            grads[0] = f32::INFINITY;
        }
        let mut g = Buffer::new(&engine.device, 4 * n as u64, true).unwrap();
        g.write(&f32_bytes(&grads));
        let mut found = Buffer::new(&engine.device, 16, true).unwrap();
        found.write(&[0u8; 16]);
        commands.begin();
        // SAFETY: recording; nyxq's buffers, whole ranges.
        let ticket = unsafe {
            record::record_unscale(
                engine,
                commands.cmd,
                &range(&g, 0, g.size),
                n as u64,
                &range(&found, 0, 4),
                1.0 / scale,
            )
        }
        .unwrap();
        commands.submit_and_wait();
        engine
            .recorder()
            .release(&engine.device.device, ticket)
            .unwrap();
        let mut scaler =
            nyxq::train::loss_scale::LossScaler::new(nyxq::train::loss_scale::LossScaleSettings {
                initial_scale: scale,
                ..Default::default()
            })
            .unwrap();
        let mut cpu = grads.clone();
        let cpu_found = scaler.unscale_and_check(&mut cpu);
        let mut gpu = vec![0u8; 4 * n];
        g.read(&mut gpu);
        let mut flag = [0u8; 4];
        found.read(&mut flag);
        assert_eq!(u32::from_le_bytes(flag) != 0, cpu_found, "scale {scale}");
        // Powers of two from 1 up are exact on the bits; other scales use the
        // GPU's multiply, whose subnormal inputs and results a GPU may flush.
        let exact = scale.to_bits() & 0x007f_ffff == 0 && scale >= 1.0;
        for (i, (c, gb)) in cpu.iter().zip(gpu.chunks_exact(4)).enumerate() {
            let gv = f32::from_le_bytes(gb.try_into().unwrap());
            if exact || c.abs() >= f32::MIN_POSITIVE && grads[i].abs() >= f32::MIN_POSITIVE {
                assert!(
                    c.to_bits() == gv.to_bits() || (c.is_nan() && gv.is_nan()),
                    "scale {scale} index {i}: cpu {c:e} gpu {gv:e}"
                );
            }
        }
    }
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn a_recording_that_cannot_get_all_its_sets_takes_none() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let recorder = engine.recorder();
    let device = &engine.device.device;
    let first = recorder.next_ticket();
    recorder
        .allocate(
            device,
            engine.set_layout(Family::Convert),
            first,
            MAX_UNRELEASED - 1,
        )
        .unwrap();
    let pools = recorder.usage().pools;
    let second = recorder.next_ticket();
    let err = recorder
        .allocate(device, engine.set_layout(Family::Convert), second, 2)
        .unwrap_err();
    assert!(err.message().contains("unreleased"), "{err}");
    let usage = recorder.usage();
    assert_eq!(usage.unreleased_sets, MAX_UNRELEASED - 1);
    assert_eq!(usage.pools, pools);
    recorder.release(device, second).unwrap();
    assert_eq!(recorder.usage().unreleased_sets, 0);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn a_range_past_the_buffers_memory_requirement_is_refused() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let commands = Commands::new(engine);
    let small = Buffer::new(&engine.device, 256, true).unwrap();
    let big = Buffer::new(&engine.device, 4096, true).unwrap();
    let call = quantize_nearest(Format::Q4_0, 256);
    commands.begin();
    // The case a client met: 1,088 bytes declared on a 256-byte buffer.
    // SAFETY: recording; refused before anything is recorded.
    let err = unsafe {
        record::record_kernel(
            engine,
            commands.cmd,
            &call,
            &range(&small, 0, 1088),
            &range(&big, 0, 1024),
        )
    }
    .unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::InvalidArgument, "{err}");
    let message = err.message();
    assert!(message.contains("src (VkBuffer 0x"), "{message}");
    assert!(
        message.contains("offset 0 + size 1088 = 1088 bytes"),
        "{message}"
    );
    assert!(
        message.contains("memory requirement is 256 bytes"),
        "{message}"
    );
    // offset + size wrapping u64 is refused before the buffer is looked at.
    // SAFETY: as above.
    let err = unsafe {
        record::record_kernel(
            engine,
            commands.cmd,
            &call,
            &range(&big, 0, 1024),
            &range(&small, 256, u64::MAX - 32),
        )
    }
    .unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::SizeOverflow, "{err}");
    // SAFETY: as above.
    let err = unsafe {
        record::record_unscale(
            engine,
            commands.cmd,
            &range(&big, 0, 4096),
            1024,
            &range(&small, 256, 4),
            1.0,
        )
    }
    .unwrap_err();
    assert!(err.message().contains("found (VkBuffer"), "{err}");
    assert_eq!(engine.recorder().usage().unreleased_sets, 0);
    commands.submit_and_wait();
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

#[test]
fn unreleased_recordings_keep_the_context_and_device_tensors_alive() {
    let Some(ctx) = run_under(&[&DEFAULT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let commands = Commands::new(engine);
    let n = 1024usize;
    let mut src = Buffer::new(&engine.device, 4 * n as u64, true).unwrap();
    src.mapped_mut().copy_from_slice(&f32_bytes(&data(n)));
    let tensor = nyxq::tensor::Tensor::new_in(
        ctx.clone(),
        "w",
        &[n],
        Format::Q8_0,
        nyxq::tensor::Placement::Device,
    )
    .unwrap();
    let other = nyxq::tensor::Tensor::new_in(
        ctx.clone(),
        "unbound",
        &[n],
        Format::Q8_0,
        nyxq::tensor::Placement::Device,
    )
    .unwrap();
    let (chunk, len, _) = tensor.device_chunks().unwrap()[0];
    let dst = BufferRange {
        buffer: chunk,
        offset: 0,
        size: len.div_ceil(4) * 4,
    };
    let call = quantize_nearest(Format::Q8_0, n);
    commands.begin();
    // SAFETY: recording; both buffers are live storage buffers of this device.
    let ticket = unsafe {
        record::record_kernel(
            engine,
            commands.cmd,
            &call,
            &range(&src, 0, 4 * n as u64),
            &dst,
        )
    }
    .unwrap();

    let err = ctx.check_no_unreleased_recordings().unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::InvalidArgument, "{err}");
    assert!(
        err.message().contains("1 recorded ticket(s) not released"),
        "{err}"
    );
    assert!(
        err.message()
            .contains(&format!("nyxq_vk_release(ctx, {ticket})")),
        "{err}"
    );
    let err = tensor.check_no_unreleased_recordings().unwrap_err();
    assert!(
        err.message().contains("tensor 'w': 1 recorded ticket(s)"),
        "{err}"
    );
    let err = tensor.migrate(nyxq::tensor::Placement::Host).unwrap_err();
    assert!(err.message().contains("move it to the host"), "{err}");
    assert_eq!(tensor.placement(), nyxq::tensor::Placement::Device);
    other.check_no_unreleased_recordings().unwrap();

    commands.submit_and_wait();
    engine
        .recorder()
        .release(&engine.device.device, ticket)
        .unwrap();
    ctx.check_no_unreleased_recordings().unwrap();
    tensor.check_no_unreleased_recordings().unwrap();
    let mut back = vec![0f32; n];
    tensor.download(&mut back).unwrap();
    tensor.migrate(nyxq::tensor::Placement::Host).unwrap();
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// After nyxq met a lost device (injected at its first submission after the
/// self-test), recording refuses too, naming the loss, and nothing new can be
/// allocated on the device; nothing is recorded.
#[test]
fn a_lost_device_refuses_recordings_and_allocations() {
    if run_under(&[&DEFAULT]).is_none() {
        return;
    }
    let settings = nyxq::context::ContextSettings {
        backend: nyxq::context::BackendPreference::Vulkan,
        vulkan_validation: true,
        vulkan_lose_device_at: Some(1),
        threads: 1,
        ..Default::default()
    };
    let ctx = match nyxq::context::Context::new(&settings) {
        Ok(ctx) => ctx,
        Err(e) => {
            crate::vk_support::skip_missing(&format!("no Vulkan device: {e}"));
            return;
        }
    };
    let engine = ctx.vulkan().unwrap();
    let (src, dst) = (
        Buffer::new(&engine.device, 1024, true).unwrap(),
        Buffer::new(&engine.device, 1024, true).unwrap(),
    );
    let x = data(256);
    let mut q = vec![0u8; Format::Q4_0.size_of(256).unwrap()];
    let lost = ctx
        .quantize(Format::Q4_0, &x, &mut q, &QuantizeOptions::default())
        .unwrap_err();
    assert_eq!(lost.kind(), nyxq::ErrorKind::DeviceLost, "{lost}");

    let commands = Commands::new(engine);
    commands.begin();
    let call = quantize_nearest(Format::Q4_0, 256);
    // SAFETY: recording; refused before anything is recorded.
    let err = unsafe {
        record::record_kernel(
            engine,
            commands.cmd,
            &call,
            &range(&src, 0, 1024),
            &range(&dst, 0, 144),
        )
    }
    .unwrap_err();
    assert_eq!(err.kind(), nyxq::ErrorKind::DeviceLost, "{err}");
    assert!(err.message().contains("lost earlier"), "{err}");
    assert_eq!(engine.recorder().usage().unreleased_sets, 0);
    let Err(err) = Buffer::new(&engine.device, 1024, true) else {
        panic!("a buffer was allocated on a lost device");
    };
    assert_eq!(err.kind(), nyxq::ErrorKind::DeviceLost, "{err}");
}
