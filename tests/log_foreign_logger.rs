//! A process that already has a logger of Rust's `log` crate: nyxq's messages
//! go to it, and nyxq_set_log_callback refuses with NYXQ_ERROR_UNSUPPORTED.
//! Only a Rust program linking nyxq as a crate can be in that state (through
//! libnyxq.so a C++ program reaches no `log` crate but nyxq's own), so this
//! is the one test of that status; it has a process of its own because a
//! logger, once set, stays for the process's life.

use nyxq::ffi::NyxqStatus;
use nyxq::ffi::context::{
    NyxqBackend, NyxqContext, NyxqContextOptions, nyxq_context_create, nyxq_context_destroy,
};
use nyxq::ffi::guard::nyxq_last_error_message;
use nyxq::ffi::log::{NyxqLogLevel, nyxq_set_log_callback};
use std::ffi::{CStr, c_char, c_void};
use std::ptr::null_mut;
use std::sync::Mutex;

/// The host program's own logger: it keeps every message.
struct HostLogger {
    messages: Mutex<Vec<String>>,
}

impl log::Log for HostLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        self.messages
            .lock()
            .unwrap()
            .push(record.args().to_string());
    }

    fn flush(&self) {}
}

static HOST_LOGGER: HostLogger = HostLogger {
    messages: Mutex::new(Vec::new()),
};

unsafe extern "C" fn never_called(_: *mut c_void, _: i32, message: *const c_char) {
    // SAFETY: nyxq passes a NUL-terminated message.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    panic!("the refused callback was called with: {text}");
}

#[test]
fn the_hosts_logger_gets_nyxqs_messages_and_a_callback_is_refused() {
    log::set_logger(&HOST_LOGGER).expect("the first logger of this process");
    log::set_max_level(log::LevelFilter::Info);

    let status = nyxq_set_log_callback(
        Some(never_called),
        null_mut(),
        NyxqLogLevel::NyxqLogInfo as i32,
    );
    assert_eq!(status, NyxqStatus::NyxqErrorUnsupported);
    // SAFETY: nyxq's last error message is a NUL-terminated string.
    let message = unsafe { CStr::from_ptr(nyxq_last_error_message()) }.to_string_lossy();
    assert!(message.contains("already has a logger"), "{message}");
    // Removing a callback needs no logger of nyxq's own.
    assert_eq!(
        nyxq_set_log_callback(None, null_mut(), 0),
        NyxqStatus::NyxqOk
    );

    let options = NyxqContextOptions {
        backend: NyxqBackend::NyxqBackendCpu as i32,
        log_level: NyxqLogLevel::NyxqLogInfo as i32,
        thread_count: 1,
        ..Default::default()
    };
    let mut ctx: *mut NyxqContext = null_mut();
    assert_eq!(nyxq_context_create(&options, &mut ctx), NyxqStatus::NyxqOk);
    assert_eq!(nyxq_context_destroy(ctx), NyxqStatus::NyxqOk);
    let messages = HOST_LOGGER.messages.lock().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("nyxq context: backend cpu")),
        "{messages:?}"
    );
}
