//! `nyxq`: the command-line tool over the library. Each subcommand lives in its
//! own module; this file only dispatches.

mod bench_vk;
mod formats;
mod hwinfo;

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: nyxq <command> [options]\n\
     commands:\n  \
       version          print the library version\n  \
       formats [DIR]    quantize a weight folder into every format and print the table\n  \
       hwinfo [--json]  Vulkan devices, chosen kernel variants, self-test results, fallback\n  \
       bench-vk [MIB] [ITER]  GB/s of the Vulkan kernels against a copy kernel\n"
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
        "hwinfo" => hwinfo::run(rest),
        "bench-vk" => bench_vk::run(rest),
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
