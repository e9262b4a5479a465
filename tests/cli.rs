//! The command-line tests, one test program: every module below is a file of
//! tests/ (Cargo.toml lists the programs); each runs the built `nyxq` binary.

mod cli_support;
mod vk_support;

#[path = "bench_cli.rs"]
mod bench_cli;
#[path = "cli_debug.rs"]
mod cli_debug;
#[path = "cli_gguf.rs"]
mod cli_gguf;
#[path = "cli_validate.rs"]
mod cli_validate;
#[path = "plan_cli.rs"]
mod plan_cli;
