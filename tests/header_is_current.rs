//! The committed include/nyxq.h must be exactly what cbindgen (the version
//! pinned in Cargo.toml) generates from src/ffi. Regenerate with `make header`.

#[test]
fn committed_header_matches_cbindgen_output() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/nyxq.h"))
        .expect("build.rs writes OUT_DIR/nyxq.h");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/nyxq.h"))
        .expect("include/nyxq.h exists");
    if generated != committed {
        let first_diff = generated
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b);
        panic!(
            "include/nyxq.h is stale (first differing line: {:?}); run `make header` and commit it",
            first_diff.map(|i| i + 1)
        );
    }
}
