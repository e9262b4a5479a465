//! `nyxq`: the command-line tool over the library. Each subcommand lives in its
//! own module; this file only dispatches.

mod bench;
mod bench_quant;
mod bench_vk;
mod bench_vk_matvec;
mod formats;
mod hwinfo;
mod plan;

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: nyxq <command> [options]\n\
     commands:\n  \
       version          print the library version\n  \
       formats [DIR]    quantize a weight folder into every format and print the table\n  \
       bench-quant [--quick] [--json FILE] [--mib N]\n                        \
quantize/dequantize throughput against memcpy and memset\n  \
       bench [--quick] [--json FILE] [--threads N]\n                        \
bench-quant, then matrix-vector products per format and shape\n  \
       plan, plan-bench precision planning (nyxq plan --help)\n  \
       hwinfo [--json]  Vulkan devices, chosen kernel variants, self-test results, fallback\n  \
       bench-vk [MIB] [ITER]  GB/s of the Vulkan kernels against a copy kernel\n  \
       bench-vk-matvec [--quick] [--compat] [--no-transposed] [--variant f32|dot|both] [--json FILE] [--iterations N]\n                        \
Vulkan matrix-vector products per format and shape\n"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result: Result<(), String> = match command.as_str() {
        "version" | "--version" => {
            println!("nyxq {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "formats" => formats::run(rest),
        "bench-quant" => bench_quant::run(rest),
        "bench" => bench::run(rest),
        "plan" => plan::run(rest),
        "plan-bench" => plan::bench(rest),
        "hwinfo" => hwinfo::run(rest),
        "bench-vk" => bench_vk::run(rest),
        "bench-vk-matvec" => bench_vk_matvec::run(rest),
        "help" | "--help" | "-h" => {
            print!("{}", usage());
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nyxq: {message}");
            ExitCode::FAILURE
        }
    }
}
