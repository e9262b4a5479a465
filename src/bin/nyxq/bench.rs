//! `nyxq bench [--quick] [--json FILE] [--threads N]`: the benchmark suite.
//! Quantize/dequantize throughput (bench-quant), then matrix-vector products
//! for each format on square and rectangular shapes, batch 1 and 8: time,
//! effective GB/s of weights read, the ratio to memcpy bandwidth measured in the
//! same run, and the speedup against F32 and F16 on the same shape. Then the
//! matmul (a batch of 64 tokens, forward and backward) per format on the
//! first shape: GFLOP/s, and the time per token against the matvec's at batch 8.

use super::bench_quant::median_seconds;
use nyxq::Format;
use nyxq::format::ALL_FORMATS;
use nyxq::matvec;
use nyxq::quant::{self, QuantizeOptions};

struct Result {
    format: Format,
    rows: usize,
    cols: usize,
    batch: usize,
    seconds: f64,
    weight_bytes: usize,
}

fn weights(n: usize) -> Vec<f32> {
    let mut s = 0x1234_5678u32;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / 16_777_216.0 - 0.5
        })
        .collect()
}

pub fn run(args: &[String]) -> std::result::Result<(), String> {
    let mut quick = false;
    let mut json = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json = Some(it.next().ok_or("--json needs a file")?.clone()),
            "--threads" => {
                threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--threads needs a number")?
            }
            other => return Err(format!("bench: unknown option '{other}'")),
        }
    }
    let quant_args: Vec<String> = if quick {
        vec!["--quick".into()]
    } else {
        vec![]
    };
    super::bench_quant::run(&quant_args)?;
    println!();

    let shapes: &[(usize, usize)] = if quick {
        &[(1024, 1024), (1024, 2816)]
    } else {
        &[(4096, 4096), (8192, 8192), (16384, 16384), (4096, 11008)]
    };
    let runs = if quick { 3 } else { 7 };
    // memcpy bandwidth of a buffer larger than the caches, in the same run.
    let copy_floats = 64 << 20 >> 2;
    let src = weights(copy_floats);
    let mut dst = vec![0.0f32; copy_floats];
    let memcpy_gbs =
        (copy_floats * 4) as f64 / median_seconds(runs, || dst.copy_from_slice(&src)) / 1e9;
    drop((src, dst));

    let mut results = Vec::new();
    for &(rows, cols) in shapes {
        let values = weights(rows * cols);
        let x = weights(8 * cols);
        let mut y = vec![0.0f32; 8 * rows];
        for format in ALL_FORMATS {
            eprintln!("  matvec {rows}x{cols} {} ...", format.name());
            let mut w = vec![0u8; format.size_of(rows * cols).map_err(|e| e.to_string())?];
            quant::quantize(
                format,
                &values,
                &mut w,
                &QuantizeOptions {
                    threads,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?;
            for batch in [1, 8] {
                let seconds = median_seconds(runs, || {
                    matvec::matvec(
                        format,
                        &w,
                        rows,
                        cols,
                        &x[..batch * cols],
                        batch,
                        None,
                        &mut y[..batch * rows],
                        threads,
                    )
                    .expect("valid shapes")
                });
                results.push(Result {
                    format,
                    rows,
                    cols,
                    batch,
                    seconds,
                    weight_bytes: w.len(),
                });
            }
        }
    }

    println!(
        "matvec y = W·x on the CPU, {threads} threads, median of {runs}; memcpy {memcpy_gbs:.2} GB/s (1 thread, 64 MiB)\n"
    );
    println!(
        "| shape | batch | format | time ms | weights GB/s | vs memcpy | speedup vs F32 | speedup vs F16 | batch 8 / batch 1 |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let find = |f: Format, r: &Result| {
        results
            .iter()
            .find(|o| o.format == f && o.rows == r.rows && o.cols == r.cols && o.batch == r.batch)
            .map(|o| o.seconds)
    };
    for r in &results {
        let gbs = r.weight_bytes as f64 / r.seconds / 1e9;
        let batch_cost = results
            .iter()
            .find(|o| o.format == r.format && o.rows == r.rows && o.cols == r.cols && o.batch == 1)
            .map_or(1.0, |one| r.seconds / one.seconds);
        println!(
            "| {}x{} | {} | {} | {:.3} | {:.2} | {:.2} | {:.2}× | {:.2}× | {:.2}× |",
            r.rows,
            r.cols,
            r.batch,
            r.format.name(),
            r.seconds * 1e3,
            gbs,
            gbs / memcpy_gbs,
            find(Format::F32, r).unwrap_or(f64::NAN) / r.seconds,
            find(Format::F16, r).unwrap_or(f64::NAN) / r.seconds,
            batch_cost
        );
    }
    let matmuls = matmul_rows(shapes[0], runs, threads)?;
    println!(
        "\nmatmul Y = X·Wᵀ and dX = dY·W on the CPU, {MATMUL_TOKENS} tokens, {threads} threads, median of {runs}\n"
    );
    println!("| shape | product | format | time ms | GFLOP/s | per token vs matvec batch 8 |");
    println!("|---|---|---|---:|---:|---:|");
    for m in &matmuls {
        let matvec8 = results
            .iter()
            .find(|r| (r.format, r.rows, r.cols, r.batch) == (m.format, m.rows, m.cols, 8))
            .map(|r| r.seconds / 8.0);
        let per_token = m.seconds / MATMUL_TOKENS as f64;
        println!(
            "| {}x{} | {} | {} | {:.3} | {:.2} | {} |",
            m.rows,
            m.cols,
            if m.transposed { "dY·W" } else { "X·Wᵀ" },
            m.format.name(),
            m.seconds * 1e3,
            2.0 * (m.rows * m.cols * MATMUL_TOKENS) as f64 / m.seconds / 1e9,
            matvec8.map_or("-".to_string(), |t| format!("{:.2}×", t / per_token)),
        );
    }
    if let Some(path) = json {
        let rows: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "    {{\"format\": \"{}\", \"rows\": {}, \"cols\": {}, \"batch\": {}, \"seconds\": {:.7}, \"weight_bytes\": {}}}",
                    r.format.name(), r.rows, r.cols, r.batch, r.seconds, r.weight_bytes
                )
            })
            .collect();
        let matmul_rows: Vec<String> = matmuls
            .iter()
            .map(|m| {
                format!(
                    "    {{\"format\": \"{}\", \"rows\": {}, \"cols\": {}, \"tokens\": {MATMUL_TOKENS}, \"transposed\": {}, \"seconds\": {:.7}}}",
                    m.format.name(), m.rows, m.cols, m.transposed, m.seconds
                )
            })
            .collect();
        let text = format!(
            "{{\n  \"threads\": {threads},\n  \"memcpy_gbs\": {memcpy_gbs:.4},\n  \"matvec\": [\n{}\n  ],\n  \"matmul\": [\n{}\n  ]\n}}\n",
            rows.join(",\n"),
            matmul_rows.join(",\n")
        );
        std::fs::write(&path, text).map_err(|e| format!("cannot write {path}: {e}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

/// Tokens of the matmul rows.
const MATMUL_TOKENS: usize = 64;

/// One timed matmul.
struct Matmul {
    format: Format,
    rows: usize,
    cols: usize,
    transposed: bool,
    seconds: f64,
}

/// The matmul of every format on `(rows, cols)`, forward and backward, with
/// [`MATMUL_TOKENS`] tokens.
fn matmul_rows(
    (rows, cols): (usize, usize),
    runs: usize,
    threads: usize,
) -> std::result::Result<Vec<Matmul>, String> {
    let values = weights(rows * cols);
    let x = weights(MATMUL_TOKENS * rows.max(cols));
    let mut y = vec![0.0f32; MATMUL_TOKENS * rows.max(cols)];
    let mut out = Vec::new();
    for format in ALL_FORMATS {
        eprintln!("  matmul {rows}x{cols} {} ...", format.name());
        let mut w = vec![0u8; format.size_of(rows * cols).map_err(|e| e.to_string())?];
        let options = QuantizeOptions {
            threads,
            ..Default::default()
        };
        quant::quantize(format, &values, &mut w, &options).map_err(|e| e.to_string())?;
        for transposed in [false, true] {
            let (n, outputs) = if transposed {
                (rows, cols)
            } else {
                (cols, rows)
            };
            let (x, y) = (&x[..MATMUL_TOKENS * n], &mut y[..MATMUL_TOKENS * outputs]);
            let seconds = median_seconds(runs, || {
                if transposed {
                    matvec::matmul_transposed(format, &w, rows, cols, x, MATMUL_TOKENS, y, threads)
                } else {
                    matvec::matmul(format, &w, rows, cols, x, MATMUL_TOKENS, None, y, threads)
                }
                .expect("valid shapes")
            });
            out.push(Matmul {
                format,
                rows,
                cols,
                transposed,
                seconds,
            });
        }
    }
    Ok(out)
}
