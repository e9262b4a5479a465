//! The harness of the Vulkan tests. A test names the rows of the
//! environment table ([`env::TABLE`]) it runs under and calls [`run_under`]:
//! the test re-runs itself (found by the name libtest gives its thread) in
//! one child process per row, with that row's environment, and fails naming
//! the row whose child failed; in the child, [`run_under`] returns the row
//! and the test does its work. No test mutates its own process's
//! environment.

#![allow(dead_code)]

pub mod commands;
pub mod env;

use env::{Env, KERNEL_CHOICE_VARS};
use std::process::Command;
use std::sync::Arc;

pub const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

/// Set in a child to the name of the row it runs under.
const CHILD_ROW: &str = "NYXQ_VK_TEST_ROW";

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

/// Checks the outcome of moving a tensor to the device when its allocation
/// fails for `why` (a phrase of the message): OutOfDeviceMemory, or, with
/// `host_fallback`, success with the tensor left on the host.
pub fn expect_refused_or_fell_back(result: nyxq::Result<()>, host_fallback: bool, why: &str) {
    if host_fallback {
        result.unwrap();
    } else {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), nyxq::ErrorKind::OutOfDeviceMemory, "{err}");
        assert!(err.message().contains(why), "{err}");
    }
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

/// The name of the calling test, as libtest gives it to the test's thread
/// (`module::function` below the crate): the filter that runs it alone.
fn current_test_name() -> String {
    let thread = std::thread::current();
    let name = thread.name().expect("libtest names each test's thread");
    assert_ne!(name, "main", "run_under is called from a test's own thread");
    name.to_string()
}

/// Runs the calling test under each of `rows`, each in a child process with
/// the row's environment, and fails naming the first row whose child fails.
/// Returns None in the parent (every row passed) and the row in a child (the
/// caller then does the work).
pub fn run_under(rows: &[&'static Env]) -> Option<&'static Env> {
    if let Ok(row) = std::env::var(CHILD_ROW) {
        return Some(Env::named(&row));
    }
    let test = current_test_name();
    for row in rows {
        run_child(&test, row);
    }
    None
}

/// Runs the test `test` of this test binary in a child with `row`'s
/// environment, and fails when the child fails or runs no test.
fn run_child(test: &str, row: &Env) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROW, row.name);
    for key in KERNEL_CHOICE_VARS {
        command.env_remove(key);
    }
    let env = row.child_env();
    let output = command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("child test runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("---- {test} under row {} ----", row.name);
    print!("{text}");
    assert!(
        output.status.success(),
        "{test} failed under row {:?} ({:?})",
        row.name,
        row.vars
    );
    assert!(
        text.contains("1 passed"),
        "{test} did not run under row {:?}",
        row.name
    );
}

/// A Vulkan context on the test device, or None (through [`skip_missing`])
/// when there is no device, so the caller skips.
pub fn device_context(force_compat: bool) -> Option<Arc<nyxq::context::Context>> {
    context_with(nyxq::context::ContextSettings {
        vulkan_force_compat: force_compat,
        ..device_settings()
    })
}

/// What the tests' Vulkan contexts ask for: Vulkan, validation, one thread.
pub fn device_settings() -> nyxq::context::ContextSettings {
    nyxq::context::ContextSettings {
        backend: nyxq::context::BackendPreference::Vulkan,
        vulkan_validation: true,
        threads: 1,
        ..Default::default()
    }
}

/// A context with `settings`, or None (through [`skip_missing`]) when there
/// is no device, so the caller skips.
pub fn context_with(
    settings: nyxq::context::ContextSettings,
) -> Option<Arc<nyxq::context::Context>> {
    match nyxq::context::Context::new(&settings) {
        Ok(ctx) => Some(Arc::new(ctx)),
        // A missing device is UNSUPPORTED; anything else (an emulated device
        // report that cannot be read, say) is the test's failure.
        Err(e) if e.kind() != nyxq::error::ErrorKind::Unsupported => {
            panic!("the test device's context failed: {e}")
        }
        Err(e) => {
            skip_missing(&format!("no Vulkan device: {e}"));
            None
        }
    }
}

impl Env {
    /// A Vulkan context on the row's device, asking for the compatible
    /// kernels where the row forces them (through the setting as well as the
    /// variable), and checked to use them exactly where the row says; None
    /// (through [`skip_missing`]) where no device exists.
    pub fn context(&self) -> Option<Arc<nyxq::context::Context>> {
        let ctx = device_context(self.force_compat())?;
        assert_eq!(
            ctx.force_compat(),
            self.force_compat(),
            "compatible kernels forced under row {:?}",
            self.name
        );
        let stem = |path: &str| {
            std::path::Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        };
        assert_eq!(
            ctx.device_info().and_then(|d| d.emulating.clone()),
            self.emulated_report().and_then(stem),
            "device report emulated under row {:?}",
            self.name
        );
        Some(ctx)
    }
}
