//! `nyxq plan`: plans a model for a hardware profile and prints the table,
//! totals and reasons. `nyxq plan-bench`: times the planner.

use nyxq::config::QuantConfig;
use nyxq::context::{Context, ContextSettings};
use nyxq::plan::{Hardware, Model, Plan, Policy, Role, TensorDesc};
use std::path::Path;
use std::time::Instant;

pub const USAGE: &str = "\
  plan --hardware <profile|device report|file|detect> --model <file> [--config <ini>] [--training]
       [--json] [--replan-mib <MiB>] [--overrides <regex=fmt,...>]
                   plan a model's formats and placements and print the table
  plan --list      list the built-in hardware profiles and device reports
  plan-bench [--weights <dir>]
                   time the planner (10 000 tensors without data; measured error per GB)
";

struct Args {
    hardware: Option<String>,
    model: Option<String>,
    config: Option<String>,
    overrides: Option<String>,
    training: bool,
    json: bool,
    list: bool,
    replan_mib: Option<u64>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        hardware: None,
        model: None,
        config: None,
        overrides: None,
        training: false,
        json: false,
        list: false,
        replan_mib: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--hardware" => a.hardware = Some(value("--hardware")?),
            "--model" => a.model = Some(value("--model")?),
            "--config" => a.config = Some(value("--config")?),
            "--overrides" => a.overrides = Some(value("--overrides")?),
            "--replan-mib" => {
                a.replan_mib = Some(
                    value("--replan-mib")?
                        .parse()
                        .map_err(|_| "--replan-mib needs a whole number".to_string())?,
                )
            }
            "--training" => a.training = true,
            "--json" => a.json = true,
            "--list" => a.list = true,
            "--help" | "-h" => {
                print!("usage: nyxq <command> [options]\n  {USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("plan: unknown option '{other}'\n{USAGE}")),
        }
    }
    Ok(a)
}

fn hardware(name: &str) -> Result<Hardware, String> {
    if name == "detect" {
        let ctx = Context::new(&ContextSettings::default()).map_err(|e| e.to_string())?;
        ctx.hardware().map_err(|e| e.to_string())
    } else {
        nyxq::device_report::hardware(name).map_err(|e| e.to_string())
    }
}

/// `nyxq plan ...`
pub fn run(args: &[String]) -> Result<(), String> {
    let a = parse(args)?;
    if a.list {
        for name in Hardware::profile_names() {
            let hw = Hardware::profile(name).map_err(|e| e.to_string())?;
            println!("{name:<30} {}", hw.description);
        }
        for name in nyxq::device_report::report_names() {
            let hw = nyxq::device_report::load_hardware(name).map_err(|e| e.to_string())?;
            println!("{name:<30} {}", hw.description);
        }
        return Ok(());
    }
    let hw = hardware(a.hardware.as_deref().ok_or("plan needs --hardware")?)?;
    let model_path = a.model.as_deref().ok_or("plan needs --model <file>")?;
    let model = Model::load(Path::new(model_path)).map_err(|e| e.to_string())?;
    let mut policy = match &a.config {
        Some(path) => QuantConfig::load(Path::new(path))
            .map_err(|e| e.to_string())?
            .policy(a.training),
        None => Policy {
            training: a.training,
            ..Policy::default()
        },
    };
    if let Some(o) = &a.overrides {
        policy.overrides = Policy::parse_overrides(o).map_err(|e| e.to_string())?;
    }
    let plan = Plan::create(&model, &hw, &policy).map_err(|e| e.to_string())?;
    let plan = match a.replan_mib {
        Some(mib) => plan.replan(mib << 20).map_err(|e| e.to_string())?,
        None => plan,
    };
    if a.json {
        println!("{}", plan.to_json());
    } else {
        print!("{}", plan.explain());
    }
    Ok(())
}

/// A synthetic model of `n` tensors with the roles and sizes of a transformer.
fn synthetic(n: usize) -> Model {
    let roles = [
        Role::Attention,
        Role::Attention,
        Role::Mlp,
        Role::Mlp,
        Role::Norm,
    ];
    let tensors = (0..n)
        .map(|i| {
            let role = roles[i % roles.len()];
            let shape: &[usize] = match role {
                Role::Norm => &[1024],
                Role::Mlp => &[4096, 1024],
                _ => &[1024, 1024],
            };
            TensorDesc::new(&format!("t{i}"), role, shape).expect("valid tensor")
        })
        .collect();
    Model::new("synthetic", tensors).expect("valid model")
}

/// `nyxq plan-bench`: prints a table of planning times.
pub fn bench(args: &[String]) -> Result<(), String> {
    let weights = match args {
        [flag, dir] if flag == "--weights" => dir.clone(),
        [] => concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/weights").to_string(),
        _ => return Err(format!("plan-bench: bad arguments\n{USAGE}")),
    };
    println!("{:<44} {:>10} {:>12}", "case", "tensors", "time");
    for (n, profile, budget_fraction) in [
        (10_000usize, "nvidia-h200-141gb", 1.0),
        (10_000, "amd-rx580-8gb", 1.0),
        (10_000, "amd-rx580-8gb", 0.05),
    ] {
        let model = synthetic(n);
        let hw = Hardware::profile(profile).map_err(|e| e.to_string())?;
        let mut policy = Policy::default();
        if budget_fraction < 1.0 {
            policy.max_fraction_of_fp32 = budget_fraction;
            policy.allow_host_offload = false;
        }
        let mut best = f64::INFINITY;
        for _ in 0..20 {
            let start = Instant::now();
            let plan = Plan::solve(&model, &hw, &policy);
            best = best.min(start.elapsed().as_secs_f64());
            std::hint::black_box(&plan);
        }
        println!(
            "{:<44} {:>10} {:>9.2} ms",
            format!("plan, no data, {profile}, cap {budget_fraction}"),
            n,
            best * 1e3
        );
    }
    measured_bench(Path::new(&weights))
}

/// Times error measurement plus planning on the real weights, per GB of FP32.
fn measured_bench(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!(
            "measured-error planning: skipped ({} is missing)",
            dir.display()
        );
        return Ok(());
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "f32"))
        .collect();
    files.sort();
    let mut tensors = Vec::new();
    let mut data = Vec::new();
    for path in &files {
        let values = nyxq::data::read_f32_file(path).map_err(|e| e.to_string())?;
        if values.len() % 32 != 0 {
            continue;
        }
        let name = path
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        let role = if name.contains("embeddings") {
            Role::Embedding
        } else if name.contains("attention") {
            Role::Attention
        } else if name.contains("LayerNorm") {
            Role::Norm
        } else if name.contains("bias") {
            Role::Bias
        } else {
            Role::Mlp
        };
        tensors.push(
            TensorDesc::new(&name, role, &[values.len() / 32, 32]).map_err(|e| e.to_string())?,
        );
        data.push(values);
    }
    let gb = data.iter().map(|d| d.len() * 4).sum::<usize>() as f64 / 1e9;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hw = Hardware::profile("intel-iris-xe-7gb").map_err(|e| e.to_string())?;
    let (mut measured, mut planned) = (f64::INFINITY, f64::INFINITY);
    let mut count = 0;
    for _ in 0..3 {
        let mut run = tensors.clone();
        let start = Instant::now();
        for (t, d) in run.iter_mut().zip(&data) {
            if !t.role.keeps_f32() {
                t.measure(d, threads).map_err(|e| e.to_string())?;
            }
        }
        measured = measured.min(start.elapsed().as_secs_f64());
        let model = Model::new("minilm", run).map_err(|e| e.to_string())?;
        let start = Instant::now();
        Plan::solve(&model, &hw, &Policy::default()).map_err(|e| e.to_string())?;
        planned = planned.min(start.elapsed().as_secs_f64());
        count = model.tensors.len();
    }
    println!(
        "{:<44} {:>10} {:>9.1} ms  ({:.3} GB of FP32, {threads} threads: {:.2} s per GB)",
        "measure 5 formats + plan, real weights",
        count,
        (measured + planned) * 1e3,
        gb,
        (measured + planned) / gb
    );
    Ok(())
}
