//! Runs the `nyxq` binary for the CLI tests.

// Each test file includes this module and uses a different part of it.
#![allow(dead_code)]

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

/// What one run of `nyxq` gave.
pub struct Run {
    /// The exit status (None when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `nyxq args...` in `dir` (not the crate's root, so that paths must be
/// given as the user gives them) with `env` added.
pub fn nyxq_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_nyxq"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("nyxq runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh empty folder for one test, under the system's temporary folder.
pub fn scratch_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nyxq-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the temporary folder is writable");
    dir
}
