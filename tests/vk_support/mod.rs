//! Helpers for the Vulkan tests: each test re-runs itself in a child process
//! with the environment pinned (lavapipe, validation on), so no test mutates
//! its own process's environment.

#![allow(dead_code)]

use std::process::Command;

pub const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";
const CHILD: &str = "NYXQ_VK_TEST_CHILD";

/// Set by `make test` (ctest), where scripts/bootstrap.sh has installed
/// lavapipe and the validation layer: a missing Vulkan resource then fails the
/// test instead of skipping it.
const REQUIRE: &str = "NYXQ_TEST_REQUIRE_RESOURCES";

/// A test that cannot run because a resource is missing (loader, lavapipe,
/// the validation layer, a device). Panics under NYXQ_TEST_REQUIRE_RESOURCES=1,
/// so a missing resource is never counted as a pass where it must exist;
/// elsewhere (a plain `cargo test` on a machine without Vulkan) it prints a
/// SKIP line and the caller returns.
pub fn skip_missing(resource: &str) {
    if std::env::var(REQUIRE).as_deref() == Ok("1") {
        panic!("{REQUIRE}=1 and a required resource is missing: {resource}");
    }
    println!("SKIP: {resource}");
}

/// True inside the child process started by [`run_in_child`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Environment that pins the lavapipe driver and turns validation on.
pub fn lavapipe_env() -> Vec<(&'static str, String)> {
    vec![
        ("VK_DRIVER_FILES", LAVAPIPE_ICD.to_string()),
        ("VK_ICD_FILENAMES", LAVAPIPE_ICD.to_string()),
        ("NYXQ_VK_VALIDATION", "1".to_string()),
    ]
}

/// The environment GPU tests run under: NYXQ_VK_TEST_DEVICE=system leaves the
/// driver choice to the loader (a real GPU); otherwise lavapipe is pinned.
pub fn device_env() -> Vec<(&'static str, String)> {
    if std::env::var("NYXQ_VK_TEST_DEVICE").as_deref() == Ok("system") {
        vec![("NYXQ_VK_VALIDATION", "1".to_string())]
    } else {
        lavapipe_env()
    }
}

/// Runs the test `name` of this test binary in a child process with `env`
/// added, and fails when the child fails. Returns false in the child (the
/// caller then does the work), true in the parent.
pub fn run_in_child(name: &str, env: &[(&str, String)]) -> bool {
    if is_child() {
        return false;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("child test runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{text}");
    assert!(output.status.success(), "child test {name} failed");
    assert!(text.contains("1 passed"), "child test {name} did not run");
    true
}

/// A Vulkan context on the test device, or None (through [`skip_missing`])
/// when there is no device, so the caller skips.
pub fn device_context(force_compat: bool) -> Option<std::sync::Arc<nyxq::context::Context>> {
    let settings = nyxq::context::ContextSettings {
        backend: nyxq::context::BackendPreference::Vulkan,
        vulkan_validation: true,
        vulkan_force_compat: force_compat,
        threads: 1,
        ..Default::default()
    };
    match nyxq::context::Context::new(&settings) {
        Ok(ctx) => Some(std::sync::Arc::new(ctx)),
        Err(e) => {
            skip_missing(&format!("no Vulkan device: {e}"));
            None
        }
    }
}

/// The context of the device test `name`: None in the parent process (which
/// ran the test in a child with the device environment) and where no device
/// exists (the test then passes as skipped).
pub fn device_test(name: &str) -> Option<std::sync::Arc<nyxq::context::Context>> {
    if run_in_child(name, &device_env()) {
        return None;
    }
    device_context(false)
}
