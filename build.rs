//! Generates the C header from src/ffi with cbindgen into OUT_DIR
//! (build_support/header.rs); with NYXQ_UPDATE_HEADER=1 it also writes
//! include/nyxq.h (what `make header` does). A test compares the committed
//! header with the generated one. Then compiles the compute shaders
//! (build_support/shaders.rs).

use std::path::PathBuf;

#[path = "build_support/header.rs"]
mod header;
#[path = "build_support/shaders.rs"]
mod shaders;

fn main() {
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build_support/header.rs");
    println!("cargo:rerun-if-env-changed=NYXQ_UPDATE_HEADER");
    println!("cargo:rerun-if-changed=Cargo.toml");
    // The shared library's soname follows the C ABI version, so a program linked
    // against one ABI never loads an incompatible build.
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,-soname,libnyxq.so.{}",
        abi_version(&crate_dir)
    );

    header::generate(&crate_dir, &out_dir);
    shaders::compile(&crate_dir, &out_dir);
}

/// `package.metadata.nyxq.abi-version` from Cargo.toml (CMake reads the same line).
fn abi_version(crate_dir: &std::path::Path) -> u32 {
    let manifest =
        std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml is readable");
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("abi-version = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Cargo.toml has [package.metadata.nyxq] abi-version = N")
}
