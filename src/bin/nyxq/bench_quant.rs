//! `nyxq bench-quant [--quick] [--json FILE] [--mib N]`: quantize and dequantize
//! throughput of every format on one thread and on all threads, next to memcpy
//! of the same buffer, the store yardstick ([`store_yardstick`]) and the range
//! check every quantize includes, measured in the same run, with the ratios and
//! the targets of the foundation issue; for the formats whose error-minimising
//! search is fast ([`FAST_SEARCHES`]), that search's quantize too, against
//! its target of 1 GB/s on one thread.

use super::store_yardstick;
use nyxq::Format;
use nyxq::format::ALL_FORMATS;
use nyxq::quant::{self, QuantizeOptions, Rounding, limits};
use std::time::Instant;

struct Measurement {
    format: Format,
    op: &'static str,
    one_thread_gbs: f64,
    reference: &'static str,
    reference_gbs: f64,
    target: f64,
    all_threads_gbs: f64,
}

/// Median wall time of `runs` calls, after one warm-up call.
pub fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[runs / 2]
}

fn test_data(n: usize) -> Vec<f32> {
    let mut s = 0x2545_f491u32;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            0.05 * (i as f32 * 0.001).sin() + ((s >> 8) as f32 / 16_777_216.0 - 0.5) * 0.1
        })
        .collect()
}

/// A zeroed buffer of `len` elements whose first one starts on a 64-byte
/// line (the Vec is longer by up to a line).
struct LineAligned<T> {
    storage: Vec<T>,
    offset: usize,
    len: usize,
}

impl<T: Copy + Default> LineAligned<T> {
    fn new(len: usize) -> Self {
        let size = std::mem::size_of::<T>();
        let storage = vec![T::default(); len + 64 / size];
        let offset = storage.as_ptr().align_offset(64).min(64 / size);
        LineAligned {
            storage,
            offset,
            len,
        }
    }

    fn get_mut(&mut self) -> &mut [T] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

/// A throughput for the table: two decimals, three below 1 GB/s.
fn gbs(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

/// The formats whose error-minimising quantize is benchmarked too (the
/// others search at a few MB/s: minutes on the benchmark's buffer).
const FAST_SEARCHES: [Format; 3] = [Format::Q4_0, Format::Q4_1, Format::IQ4_NL];

/// The targets on one thread: quantize vs memcpy, dequantize vs memset.
fn target(format: Format, op: &str) -> f64 {
    match (format, op) {
        // Its target is absolute: the row's yardstick is 1 GB/s.
        (_, "quantize, error-minimising") => 1.0,
        (Format::F16 | Format::BF16, _) => 0.9,
        (_, "dequantize") => 0.9,
        (Format::Q8_0, _) => 0.7,
        (Format::Q4_0 | Format::Q4_1, _) => 0.6,
        _ => 0.0,
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    let mut json_path = None;
    let mut mib = 64usize;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json_path = Some(it.next().ok_or("--json needs a file")?.clone()),
            "--mib" => {
                mib = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--mib needs a number")?
            }
            other => return Err(format!("bench-quant: unknown option '{other}'")),
        }
    }
    if quick {
        mib = mib.min(8);
    }
    let runs = if quick { 3 } else { 7 };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = mib * 1024 * 1024 / 4 / 32 * 32;
    let bytes = (n * 4) as f64;
    // Every buffer starts on a cache line, as ggml's test-quantize-perf
    // aligns its own: a large Vec starts 16 bytes into a page, and 32-byte
    // accesses that straddle lines would measure the allocator.
    let (mut src_buffer, mut copy_buffer, mut restored_buffer) = (
        LineAligned::<f32>::new(n),
        LineAligned::<f32>::new(n),
        LineAligned::<f32>::new(n),
    );
    src_buffer.get_mut().copy_from_slice(&test_data(n));
    let src: &[f32] = src_buffer.get_mut();
    let copy = copy_buffer.get_mut();
    let restored = restored_buffer.get_mut();
    eprintln!("bench-quant: {mib} MiB of f32 ({n} values), {threads} threads, median of {runs}");

    let memcpy_gbs = bytes / median_seconds(runs, || copy.copy_from_slice(src)) / 1e9;
    std::hint::black_box(&*copy);
    let stores = store_yardstick::measure(&mut vec![0u8; n * 4], runs);
    let memset_gbs = stores.gbs();
    // Every checked quantize reads its input once for this scan before it
    // writes anything (nothing is written on an error); Q8_0's limit.
    let range_check_gbs = bytes
        / median_seconds(runs, || {
            let limit = limits::limit(Format::Q8_0);
            std::hint::black_box(limits::first_out_of_range(std::hint::black_box(src), limit));
        })
        / 1e9;

    let mut rows = Vec::new();
    for format in ALL_FORMATS.into_iter().filter(|f| *f != Format::F32) {
        eprintln!("  {} ...", format.name());
        let mut packed_buffer =
            LineAligned::<u8>::new(format.size_of(n).map_err(|e| e.to_string())?);
        let packed = packed_buffer.get_mut();
        let quantize_with = |threads: usize, packed: &mut [u8], rounding: Rounding| {
            let opts = QuantizeOptions {
                threads,
                rounding,
                ..Default::default()
            };
            median_seconds(runs, || {
                quant::quantize(format, src, packed, &opts).expect("valid input")
            })
        };
        let q1 = bytes / quantize_with(1, packed, Rounding::Nearest) / 1e9;
        let qn = bytes / quantize_with(threads, packed, Rounding::Nearest) / 1e9;
        let dequantize_with = |threads: usize, restored: &mut [f32]| {
            median_seconds(runs, || {
                quant::dequantize(format, packed, restored, threads).expect("valid input")
            })
        };
        let d1 = bytes / dequantize_with(1, restored) / 1e9;
        let dn = bytes / dequantize_with(threads, restored) / 1e9;
        let quantize_ref = "memcpy";
        let dequantize_ref = if format.is_block() {
            "memset"
        } else {
            "memcpy"
        };
        let reference_gbs = |name: &str| {
            if name == "memcpy" {
                memcpy_gbs
            } else {
                memset_gbs
            }
        };
        rows.push(Measurement {
            format,
            op: "quantize",
            one_thread_gbs: q1,
            reference: quantize_ref,
            reference_gbs: reference_gbs(quantize_ref),
            target: target(format, "quantize"),
            all_threads_gbs: qn,
        });
        if FAST_SEARCHES.contains(&format) {
            let op = "quantize, error-minimising";
            let s1 = bytes / quantize_with(1, packed, Rounding::ErrorMinimising) / 1e9;
            let sn = bytes / quantize_with(threads, packed, Rounding::ErrorMinimising) / 1e9;
            rows.push(Measurement {
                format,
                op,
                one_thread_gbs: s1,
                reference: "1 GB/s",
                reference_gbs: 1.0,
                target: target(format, op),
                all_threads_gbs: sn,
            });
        }
        rows.push(Measurement {
            format,
            op: "dequantize",
            one_thread_gbs: d1,
            reference: dequantize_ref,
            reference_gbs: reference_gbs(dequantize_ref),
            target: target(format, "dequantize"),
            all_threads_gbs: dn,
        });
    }

    println!(
        "nyxq {} bench-quant: {mib} MiB of f32, median of {runs}; GB/s counts f32 bytes",
        env!("CARGO_PKG_VERSION")
    );
    let stream = stores.stream_gbs.map_or(String::new(), |v| {
        format!(", non-temporal loop {v:.2} GB/s")
    });
    println!(
        "memcpy {memcpy_gbs:.2} GB/s; stores: memset {:.2} GB/s, store loop {:.2} GB/s{stream} (1 thread; \"memset\" below is the fastest{})\n",
        stores.memset_gbs,
        stores.loop_gbs,
        if stores.consistent() {
            ""
        } else {
            "; they differ by more than 3×: check the machine"
        }
    );
    println!(
        "range check {range_check_gbs:.2} GB/s (the scan for NaN, Inf and out-of-range values that every quantize below includes)\n"
    );
    println!(
        "| format | op | 1 thread GB/s | vs | ratio | target | {threads} threads GB/s | scaling |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|");
    for r in &rows {
        let ratio = r.one_thread_gbs / r.reference_gbs;
        let verdict = if ratio >= r.target { "met" } else { "MISSED" };
        println!(
            "| {} | {} | {} | {} | {:.2} | ≥{:.1} {} | {} | {:.2}× |",
            r.format.name(),
            r.op,
            gbs(r.one_thread_gbs),
            r.reference,
            ratio,
            r.target,
            verdict,
            gbs(r.all_threads_gbs),
            r.all_threads_gbs / r.one_thread_gbs
        );
    }
    if let Some(path) = json_path {
        let entries: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "    {{\"format\": \"{}\", \"op\": \"{}\", \"one_thread_gbs\": {:.4}, \"reference\": \"{}\", \"reference_gbs\": {:.4}, \"ratio\": {:.4}, \"target\": {}, \"all_threads_gbs\": {:.4}}}",
                    r.format.name(), r.op, r.one_thread_gbs, r.reference, r.reference_gbs, r.one_thread_gbs / r.reference_gbs, r.target, r.all_threads_gbs
                )
            })
            .collect();
        let json = format!(
            "{{\n  \"mib\": {mib},\n  \"threads\": {threads},\n  \"memcpy_gbs\": {memcpy_gbs:.4},\n  \"memset_gbs\": {memset_gbs:.4},\n  \"stores_memset_gbs\": {:.4},\n  \"stores_loop_gbs\": {:.4},\n  \"stores_stream_gbs\": {},\n  \"range_check_gbs\": {range_check_gbs:.4},\n  \"results\": [\n{}\n  ]\n}}\n",
            stores.memset_gbs,
            stores.loop_gbs,
            stores
                .stream_gbs
                .map_or("null".to_string(), |v| format!("{v:.4}")),
            entries.join(",\n")
        );
        std::fs::write(&path, json).map_err(|e| format!("cannot write {path}: {e}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}
