//! Every Vulkan kernel against its CPU twin, byte for byte: odd sizes, rounding
//! ties (also f16 ties, for the `_rte` variants' hardware conversion), zeros,
//! subnormals, huge values, stochastic rounding with a seed, and an input over
//! 128 MiB (more than lavapipe's maxStorageBufferRange); the variants chosen
//! by default, then the compatible ones forced.

use crate::vk_support::env::{DEFAULT, EVERY_DEVICE, Env, FORCE_COMPAT};
use crate::vk_support::run_under;
use nyxq::format::{Format, VulkanFamily};
use nyxq::quant::{self, QuantizeOptions, Rounding};
use nyxq::vk::{ops, shaders};

/// The formats with Vulkan conversion kernels.
fn formats() -> impl Iterator<Item = Format> {
    Format::with_vulkan(VulkanFamily::Conversions)
}

/// A xorshift32 stream of test numbers from `seed` (nonzero).
fn xorshift(seed: u32) -> impl FnMut() -> u32 {
    let mut h = seed;
    move || {
        h ^= h << 13;
        h ^= h >> 17;
        h ^= h << 5;
        h
    }
}

/// Deterministic test data with the hard cases mixed in, a case per `run`
/// values (32: every block; 256: whole K-quant super-blocks of zeros, of
/// subnormals, of tiny normals...).
fn data_in_runs(n: usize, seed: u32, run: usize) -> Vec<f32> {
    let mut next = xorshift(seed.wrapping_mul(0x9e37_79b9) | 1);
    (0..n)
        .map(|i| {
            let r = next();
            let block = i / run;
            match block % 13 {
                // ties: multiples of 0.5 scaled so that x*id lands on .5
                0 => ((r % 255) as f32 - 127.0) * 0.5,
                1 => 0.0,
                2 => f32::from_bits(r & 0x807f_ffff), // subnormals of both signs
                3 => f32::from_bits((r & 0x80ff_ffff) | 0x0080_0000) * 3.0, // tiny normals
                4 => ((r >> 8) as f32 / 16_777_216.0 - 0.5) * 6.0e4, // large (f16 range)
                5 => {
                    if i % 3 == 0 {
                        -0.0
                    } else {
                        1.0e-39
                    }
                }
                // halfway between two f16 values (either parity), either sign
                6 => {
                    f32::from_bits(((r & 0x8000_0000) | 0x3f80_1000) + ((r >> 4) & 0x3ff) * 0x2000)
                }
                // zeros of both signs: which one a block's fold keeps decides
                // the sign of its scale and minimum
                8 => {
                    if r & 1 == 0 {
                        0.0
                    } else {
                        -0.0
                    }
                }
                // equal magnitudes of both signs: the first largest |x| decides
                // Q4_0's scale
                9 => {
                    let m = ((r >> 1) % 4) as f32 * 0.75;
                    if r & 1 == 0 { m } else { -m }
                }
                // a ramp whose x * id lands next to ties only if the product
                // is rounded before the addition (a fused multiply-add,
                // which `precise` forbids, gets some of them wrong)
                10 => (i % 256) as f32 * 0.125 - 16.0,
                // subnormals in a block whose largest |x| is about 2^-110:
                // the scale's inverse is above 2^107, where the kernels take
                // the exact paths for tiny values (not the plain multiply)
                11 => {
                    if i % 32 == 5 {
                        f32::from_bits(0x0880_0000 | (r & 0x8000_ffff))
                    } else {
                        f32::from_bits(r & 0x807f_ffff)
                    }
                }
                // IQ4_NL's least-squares scale in a block just above its
                // 1e-15 floor: values near it, tiny normals and subnormals
                // (their terms of the sums are subnormal on the CPU and
                // flushed on a GPU, and must not change the sums)
                12 => match i % 4 {
                    0 => ((r >> 8) as f32 / 16_777_216.0 - 0.5) * 4.0e-15,
                    1 => f32::from_bits(r & 0x807f_ffff),
                    2 => f32::from_bits((r & 0x80ff_ffff) | 0x1080_0000),
                    _ => ((r >> 8) as f32 / 16_777_216.0 - 0.5) * 3.0e-16,
                },
                _ => ((r >> 8) as f32 / 16_777_216.0 - 0.5) * 2.0,
            }
        })
        .collect()
}

/// Block bytes the quantizer never writes: random quants under scales (and
/// Q4_1, Q4_K and Q5_K minimums) of every f16 class: zeros of both signs,
/// subnormals, normals, the largest, infinities and NaNs. The dequantizers'
/// fast paths are chosen per block from the scale, so every class must take
/// the right path.
fn any_blocks(format: Format, blocks: usize) -> Vec<u8> {
    const HEADERS: [u16; 12] = [
        0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x3c00, 0xb555, 0x7bff, 0x7c00, 0xfc00, 0x7e01,
        0xfe00,
    ];
    let mut next = xorshift(0x2545_f491);
    let mut out: Vec<u8> = (0..blocks * format.block_bytes())
        .map(|_| next() as u8)
        .collect();
    for (b, block) in out.chunks_mut(format.block_bytes()).enumerate() {
        // Every other block keeps its random header.
        if b % 2 == 0 {
            let d = HEADERS[(b / 2) % HEADERS.len()].to_le_bytes();
            let m = HEADERS[(b / 2 / HEADERS.len()) % HEADERS.len()].to_le_bytes();
            match format {
                Format::Q4_1 | Format::Q4_K | Format::Q5_K => {
                    block[..2].copy_from_slice(&d);
                    block[2..4].copy_from_slice(&m);
                }
                // Q6_K's d is its last two bytes.
                Format::Q6_K => block[208..].copy_from_slice(&d),
                _ => block[..2].copy_from_slice(&d),
            }
        }
    }
    out
}

/// Whether two outputs agree: bit for bit, except that a NaN matches any
/// NaN (a NaN scale's payload is the hardware's to keep or not).
fn same_values<T: Copy + PartialEq>(cpu: &[T], gpu: &[T], is_nan: impl Fn(T) -> bool) -> bool {
    cpu.len() == gpu.len()
        && cpu
            .iter()
            .zip(gpu)
            .all(|(&a, &b)| a == b || (is_nan(a) && is_nan(b)))
}

/// Dequantizing any block bytes: the GPU's values are the CPU twin's.
fn check_any_blocks(ctx: &nyxq::context::Context) {
    let engine = ctx.vulkan().unwrap();
    for format in formats().filter(|f| f.is_block()) {
        let n = format.block_size() * 12 * 12 * 4;
        let q = any_blocks(format, n / format.block_size());
        let mut cpu = vec![0f32; n];
        quant::dequantize(format, &q, &mut cpu, 1).unwrap();
        let mut gpu = vec![0f32; n];
        ops::dequantize(engine, format, &q, &mut gpu).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let f32_nan = |b: u32| b & 0x7fff_ffff > 0x7f80_0000;
        assert!(
            same_values(&bits(&cpu), &bits(&gpu), f32_nan),
            "dequantize {format:?} of any block bytes"
        );
        let mut cpu16 = vec![0u16; n];
        quant::dequantize_to_f16(format, &q, &mut cpu16, 1).unwrap();
        let mut gpu16 = vec![0u16; n];
        ops::dequantize_to_f16(engine, format, &q, &mut gpu16).unwrap();
        let f16_nan = |b: u16| b & 0x7fff > 0x7c00;
        assert!(
            same_values(&cpu16, &gpu16, f16_nan),
            "dequantize to f16 {format:?} of any block bytes"
        );
    }
}

/// Every kernel's bytes equal the CPU twin's, under the default row (the
/// fastest variants the device can run: `_rte_dp`, `_rte`, `_s16`) and the
/// forced-compatible one (Env::context checks the context forces them
/// exactly there).
#[test]
fn kernels_match_the_cpu_twin() {
    let Some(ctx) = run_under(&EVERY_DEVICE).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    for format in formats() {
        for op in shaders::Op::CONVERSIONS {
            let expected = shaders::fast_kernels(op, format)
                .iter()
                .copied()
                .find(|&k| !ctx.force_compat() && engine.variant_supported(k))
                .or_else(|| shaders::compatible_kernel(op, format));
            assert_eq!(engine.kernel(op, format).ok(), expected);
        }
    }
    for format in formats() {
        let sizes: &[usize] = match format.block_size() {
            1 => &[1, 31, 33, 4097, 70000],
            32 => &[32, 96, 4096, 32 * 1001],
            // Odd super-block counts: Q6_K's 210-byte super-blocks then
            // share their first or last output word with a neighbour.
            _ => &[256, 768, 4096, 256 * 131],
        };
        // The K-quants also with a case per super-block.
        let runs: &[usize] = if format.block_size() == 256 {
            &[32, 256]
        } else {
            &[32]
        };
        for (&n, &run) in sizes
            .iter()
            .flat_map(|n| runs.iter().map(move |run| (n, run)))
        {
            let x = data_in_runs(n, n as u32 + format as u32, run);
            for rounding in [
                Rounding::Nearest,
                Rounding::Stochastic {
                    seed: 0x1234_5678_9abc,
                },
            ] {
                let opts = QuantizeOptions {
                    rounding,
                    ..Default::default()
                };
                let bytes = format.size_of(n).unwrap();
                let mut cpu = vec![0u8; bytes];
                quant::quantize(format, &x, &mut cpu, &opts).unwrap();
                // Guard bytes after the output must survive.
                let mut gpu = vec![0xa5u8; bytes + 7];
                ops::quantize(engine, format, &x, &mut gpu[..bytes], rounding).unwrap();
                assert!(gpu[bytes..].iter().all(|&b| b == 0xa5));
                let first_diff = cpu.iter().zip(&gpu).position(|(a, b)| a != b);
                assert_eq!(
                    first_diff, None,
                    "quantize {format:?} n={n} run={run} {rounding:?}"
                );

                let mut cpu_fake = vec![0f32; n];
                quant::fake_quantize(format, &x, &mut cpu_fake, &opts).unwrap();
                let mut gpu_fake = vec![0f32; n];
                ops::fake_quantize(engine, format, &x, &mut gpu_fake, rounding).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&cpu_fake),
                    bits(&gpu_fake),
                    "fake {format:?} n={n} {rounding:?}"
                );
            }
            println!("checked {format:?} n={n} run={run}");
            let mut q = vec![0u8; format.size_of(n).unwrap()];
            quant::quantize(format, &x, &mut q, &QuantizeOptions::default()).unwrap();
            let mut cpu = vec![0f32; n];
            quant::dequantize(format, &q, &mut cpu, 1).unwrap();
            let mut gpu = vec![0f32; n];
            ops::dequantize(engine, format, &q, &mut gpu).unwrap();
            assert!(
                cpu.iter()
                    .zip(&gpu)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "dequantize {format:?} n={n}"
            );
            let mut cpu16 = vec![0u16; n];
            quant::dequantize_to_f16(format, &q, &mut cpu16, 1).unwrap();
            let mut gpu16 = vec![0u16; n];
            ops::dequantize_to_f16(engine, format, &q, &mut gpu16).unwrap();
            assert_eq!(cpu16, gpu16, "dequantize to f16 {format:?} n={n}");
        }
    }
    check_any_blocks(&ctx);
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}

/// 132 MiB of f32 in: more than lavapipe's 128 MiB maxStorageBufferRange,
/// with the `_s16` Q8_0 quantizer and the compatible one.
#[test]
fn quantize_over_128_mib_is_split_and_exact() {
    let Some(ctx) = run_under(&[&DEFAULT, &FORCE_COMPAT]).and_then(Env::context) else {
        return;
    };
    let engine = ctx.vulkan().unwrap();
    let n = (132usize << 20) / 4;
    let x: Vec<f32> = (0..n).map(|i| ((i % 1021) as f32 - 510.0) * 0.25).collect();
    let format = Format::Q8_0;
    let mut cpu = vec![0u8; format.size_of(n).unwrap()];
    quant::quantize(
        format,
        &x,
        &mut cpu,
        &QuantizeOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut gpu = vec![0u8; cpu.len()];
    ops::quantize(engine, format, &x, &mut gpu, Rounding::Nearest).unwrap();
    assert!(cpu == gpu, "132 MiB Q8_0 differs");
    assert_eq!(ctx.vulkan_validation_errors(), 0);
}
