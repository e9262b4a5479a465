//! `nyxq`: the command-line tool over the library. Each subcommand lives in its
//! own module; this file only dispatches. docs/tools.md is the user's guide.

mod bench;
mod bench_quant;
mod bench_vk;
mod bench_vk_matmul;
mod bench_vk_matvec;
mod debug;
mod formats;
mod gguf;
mod hwinfo;
mod plan;
mod store_yardstick;
mod validate;
mod weights;

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: nyxq <command> [options]\n\
     commands:\n  \
       version          print the library version\n  \
       validate INPUT... [--format F]... [--config FILE] [--min-snr DB] [--json]\n                        \
quantize a weight set into each format and check the error (exit 1 on a failure)\n  \
       formats INPUT... [--json]\n                        \
quantize a weight set into every format: size, error, throughput\n  \
       bench-quant [--quick] [--json FILE] [--mib N]\n                        \
quantize/dequantize throughput against memcpy and memset\n  \
       bench [--quick] [--json FILE] [--threads N]\n                        \
bench-quant, then matrix-vector products per format and shape\n  \
       gguf export|import|info  GGUF files from and to safetensors, and what one holds\n  \
       plan, plan-bench precision planning (nyxq plan --help)\n  \
       debug [--config FILE] [--json]\n                        \
build, CPU, Vulkan, config and environment: a report for bug reports\n  \
       hwinfo [--json]  Vulkan devices, chosen kernel variants, self-test results, fallback\n  \
       bench-vk [MIB] [ITER] [adam]\n                        \
GB/s of the Vulkan kernels against a copy kernel (adam: only the Adam steps)\n  \
       bench-vk-matvec [--quick] [--compat] [--no-transposed] [--variant f32|dot|both] [--json FILE] [--iterations N]\n                        \
Vulkan matrix-vector products per format and shape\n  \
       bench-vk-matmul [--quick] [--compat] [--no-backward] [--variants all|SUFFIX,...] [--model FILE] [--shapes RxC,...] [--tokens N,...] [--formats F,...] [--json FILE] [--iterations N]\n                        \
Vulkan products of batches of tokens per format, shape and token count\n\
     INPUT: a folder with manifest.json, a manifest .json file, or a .safetensors file\n\
     exit status: 0 success, 1 failure (validate: a check failed), 2 usage error or unreadable input\n"
}

/// Bad arguments or unreadable input: the message, and exit status 2.
pub struct UsageError(pub String);

/// The usage line of the subcommands that answer `--help` on stdout with exit 0.
fn subcommand_usage(command: &str) -> Option<&'static str> {
    match command {
        "validate" => Some(validate::USAGE),
        "formats" => Some(formats::USAGE),
        "debug" => Some(debug::USAGE),
        "gguf" => Some(gguf::USAGE),
        _ => None,
    }
}

fn exit_with(result: Result<ExitCode, UsageError>) -> ExitCode {
    result.unwrap_or_else(|UsageError(message)| {
        eprintln!("nyxq: {message}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    if let Some(usage) = subcommand_usage(command)
        && rest.iter().any(|arg| arg == "--help" || arg == "-h")
    {
        println!("{usage}");
        return ExitCode::SUCCESS;
    }
    let result: Result<(), String> = match command.as_str() {
        "version" | "--version" => {
            println!("nyxq {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "validate" => return exit_with(validate::run(rest)),
        "formats" => return exit_with(formats::run(rest).map(|()| ExitCode::SUCCESS)),
        "debug" => return exit_with(debug::run(rest).map(|()| ExitCode::SUCCESS)),
        "gguf" => return exit_with(gguf::run(rest)),
        "bench-quant" => bench_quant::run(rest),
        "bench" => bench::run(rest),
        "plan" => plan::run(rest),
        "plan-bench" => plan::bench(rest),
        "hwinfo" => hwinfo::run(rest),
        "bench-vk" => bench_vk::run(rest),
        "bench-vk-matvec" => bench_vk_matvec::run(rest),
        "bench-vk-matmul" => bench_vk_matmul::run(rest),
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
