//! `nyxq bench-vk [MIB] [ITER] [adam]`: GB/s of the Vulkan kernels on MIB MiB
//! of f32 (default 1024) resident on the device, against the copy kernel; the
//! Adam steps over MIB MiB of f32 weights count the bytes they must move.
//! With `adam`, only the copy kernel and the Adam steps. With
//! NYXQ_VK_PIPELINE_STATS=1, also the driver's compile statistics of each
//! kernel (register count and the like, where the driver reports them).

pub mod adam;
pub mod measure;

use nyxq::context::{BackendPreference, Context, ContextSettings};
use nyxq::vk::Engine;
use nyxq::vk::shaders::KernelId;

pub fn run(args: &[String]) -> Result<(), String> {
    let mib: usize = args
        .first()
        .map_or(Ok(1024), |a| a.parse())
        .map_err(|e| format!("MIB: {e}"))?;
    let iterations: usize = args
        .get(1)
        .map_or(Ok(10), |a| a.parse())
        .map_err(|e| format!("ITER: {e}"))?;
    let adam_only = match args.get(2).map(String::as_str) {
        None => false,
        Some("adam") => true,
        Some(other) => return Err(format!("unknown rows {other:?}: the only choice is adam")),
    };
    let ctx = Context::new(&ContextSettings {
        backend: BackendPreference::Vulkan,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    let engine = ctx.vulkan().ok_or("no Vulkan device")?;
    let info = &engine.device.info;
    let n = mib * (1 << 20) / 4 / 32 * 32;
    println!(
        "device: {} ({}), driver {} {}, Vulkan {}",
        info.name,
        info.device_type.name(),
        info.driver_name,
        info.driver_info,
        info.api_version_string()
    );
    println!("input: {n} f32 ({mib} MiB), median of {iterations} runs, GPU timestamps\n");
    let mut rows = if adam_only {
        vec![measure::copy_row(engine, n, iterations).map_err(|e| e.to_string())?]
    } else {
        measure::run(engine, n, iterations).map_err(|e| e.to_string())?
    };
    rows.extend(adam::rows(engine, n, iterations).map_err(|e| e.to_string())?);
    if adam_only {
        // The faster of the copies timed first and last, as in measure::run.
        let last = measure::copy_row(engine, n, iterations).map_err(|e| e.to_string())?;
        rows[0].seconds = rows[0].seconds.min(last.seconds);
    }
    let copy = rows[0].gbps();
    println!("| kernel | time (us) | bytes moved (MB) | GB/s | x copy |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.2} |",
            row.kernel,
            row.seconds * 1e6,
            row.bytes_moved as f64 / 1e6,
            row.gbps(),
            row.gbps() / copy
        );
    }
    // Variants other than the one in use: same bytes or not.
    for row in &rows {
        if let Some(same) = row.same_output {
            let verdict = if same {
                "same bytes as"
            } else {
                "DIFFERENT bytes from"
            };
            println!("check {}: {verdict} the first variant listed", row.kernel);
        }
    }
    // With NYXQ_VK_PIPELINE_STATS=1: the driver's compile statistics per kernel.
    for row in &rows {
        print_pipeline_statistics(engine, row.kernel);
    }
    Ok(())
}

/// Prints the driver's compile statistics of `kernel`'s pipeline, where the
/// engine has them (NYXQ_VK_PIPELINE_STATS=1).
pub fn print_pipeline_statistics(engine: &Engine, kernel: KernelId) {
    if let Some(stats) = engine.pipeline_statistics(kernel) {
        let text: Vec<String> = stats.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("stats {kernel}: {}", text.join(", "));
    }
}
