//! Runs the `nyxq` binary for the CLI tests.

use std::process::Command;

/// Runs `nyxq args...` in the crate's root: (success, stdout, stderr).
pub fn nyxq(args: &[&str]) -> (bool, String, String) {
    nyxq_with_env(args, &[])
}

/// Runs `nyxq args...` in the crate's root with `env` added.
pub fn nyxq_with_env(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nyxq"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("nyxq runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
