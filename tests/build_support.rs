//! The shader build's own checks (build_support/shaders.rs, compiled into
//! build.rs), included here so that their error paths run as tests.

#[allow(dead_code)]
#[path = "../build_support/shaders.rs"]
mod shaders;

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temporary one.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nyxq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_unroll_attribute_is_refused_with_the_reason() {
    let dir = scratch_dir("unroll");
    std::fs::write(
        dir.join("bad.comp"),
        "void main() {\n    [[ unroll ]] for (uint i = 0u; i < 4u; ++i) {}\n}\n",
    )
    .unwrap();
    let refused = std::panic::catch_unwind(|| shaders::refuse_unroll_attributes(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    let message = refused.expect_err("the attribute must be refused");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(message.contains("bad.comp"), "{message}");
    assert!(message.contains("precise"), "{message}");
}

#[test]
fn the_shipped_shaders_have_no_unroll_attribute() {
    shaders::refuse_unroll_attributes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders"));
}
