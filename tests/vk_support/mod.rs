//! The harness of the Vulkan tests. A test names the rows of the
//! environment table ([`env::TABLE`]) it runs under and calls [`run_under`]:
//! the tests re-run in one child process per row, with that row's
//! environment, and each fails naming the row whose child failed it; in the
//! child, [`run_under`] returns the row to the tests that asked for it (they
//! do their work) and None to the others (they return at once).
//!
//! One child runs every test of the program that asks for its row, one after
//! the other: a context created in a process runs the kernel self-test (about
//! 2 s of lavapipe compiling pipelines), and the later contexts of the same
//! process on the same device reuse its verdicts. A test that needs a process
//! of its own (it checks what the first context of a process does) calls
//! [`run_alone_under`]. No test mutates its own process's environment.

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

/// Runs the calling test under each of `rows`, in the row's shared child
/// process (started by the first test of the program that needs the row),
/// and fails naming the first row under which the test failed or did not
/// run. Returns None in the parent (every row passed) and in a child of a
/// row the test did not ask for, and the row in a child of one it did (the
/// caller then does the work).
pub fn run_under(rows: &[&'static Env]) -> Option<&'static Env> {
    if let Some(row) = child_row() {
        if std::env::var_os(CHILD_ALONE).is_some() {
            // A child of run_alone_under runs only its own test.
            return Some(row);
        }
        if !rows.iter().any(|r| r.name == row.name) {
            return None;
        }
        mark_ran(&current_test_name());
        return Some(row);
    }
    let test = current_test_name();
    for row in rows {
        shared_child(row).check(&test, row);
    }
    None
}

/// As [`run_under`], but each row's child runs only the calling test: for a
/// test that checks what the first context of a process does (its
/// self-test, its first submissions).
pub fn run_alone_under(rows: &[&'static Env]) -> Option<&'static Env> {
    if let Some(row) = child_row() {
        return std::env::var_os(CHILD_ALONE).is_some().then_some(row);
    }
    let test = current_test_name();
    for row in rows {
        let child = Child::run(row, Some(&test));
        child.check(&test, row);
    }
    None
}

/// Set in a child of [`run_alone_under`].
const CHILD_ALONE: &str = "NYXQ_VK_TEST_ALONE";

/// Set in a shared child to a file where [`run_under`] lists, one a line,
/// the tests that did their work under the child's row.
const CHILD_RAN: &str = "NYXQ_VK_TEST_RAN";

/// The row this process is a child of, if it is one.
fn child_row() -> Option<&'static Env> {
    std::env::var(CHILD_ROW).ok().map(|name| Env::named(&name))
}

/// Notes in the child's list that `test` does its work under the row.
fn mark_ran(test: &str) {
    use std::io::Write;
    let path = std::env::var_os(CHILD_RAN).expect("a shared child has its list");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("the child's list opens");
    writeln!(file, "{test}").expect("the child's list is written");
}

/// One finished child: its output, its exit status, and the tests that did
/// their work in it.
struct Child {
    text: String,
    success: bool,
    ran: Vec<String>,
}

/// The shared child of `row`, run once per process.
fn shared_child(row: &'static Env) -> Arc<Child> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Slots = Mutex<HashMap<&'static str, Arc<OnceLock<Arc<Child>>>>>;
    static CHILDREN: OnceLock<Slots> = OnceLock::new();
    let slot = CHILDREN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(row.name)
        .or_default()
        .clone();
    slot.get_or_init(|| Arc::new(Child::run(row, None))).clone()
}

/// The arguments of this test program that choose its tests (filters,
/// `--exact`, `--skip NAME`, `--ignored`, `--include-ignored`), so that a
/// shared child runs the tests the parent runs and no others.
fn selection_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" | "--ignored" | "--include-ignored" => out.push(arg),
            "--skip" => {
                out.push(arg);
                out.extend(args.next());
            }
            _ if arg.starts_with("--skip=") => out.push(arg),
            _ if !arg.starts_with('-') => out.push(arg),
            _ => {}
        }
    }
    out
}

impl Child {
    /// Runs this test program under `row`: only `alone` where given, else
    /// the parent's selection of tests, one at a time.
    fn run(row: &Env, alone: Option<&str>) -> Child {
        let exe = std::env::current_exe().expect("test binary path");
        let mut command = Command::new(exe);
        command.arg("--test-threads=1").env(CHILD_ROW, row.name);
        let list = match alone {
            Some(test) => {
                command.args([test, "--exact"]).env(CHILD_ALONE, "1");
                None
            }
            None => {
                let list = std::env::temp_dir().join(format!(
                    "nyxq-vk-test-{}-{}.ran",
                    std::process::id(),
                    row.name
                ));
                std::fs::write(&list, "").expect("the child's list is made");
                command.args(selection_args()).env(CHILD_RAN, &list);
                Some(list)
            }
        };
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
        let ran = match &list {
            Some(list) => {
                let ran = std::fs::read_to_string(list).unwrap_or_default();
                let _ = std::fs::remove_file(list);
                ran.lines().map(str::to_string).collect()
            }
            None => alone.map(str::to_string).into_iter().collect(),
        };
        Child {
            text,
            success: output.status.success(),
            ran,
        }
    }

    /// Fails unless `test` did its work in this child of `row` and passed;
    /// prints the child's output where it did not.
    fn check(&self, test: &str, row: &Env) {
        let ran = self.ran.iter().any(|t| t == test);
        let passed = self.text.contains(&format!("test {test} ... ok"));
        if ran && passed {
            return;
        }
        println!("---- the child of row {} ----", row.name);
        print!("{}", self.text);
        assert!(
            passed,
            "{test} failed under row {:?} ({:?}; the child {}); its output is above",
            row.name,
            row.vars,
            if self.success { "passed" } else { "failed" }
        );
        panic!("{test} did not run under row {:?}", row.name);
    }
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
