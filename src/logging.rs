//! Where nyxq's log messages go. The library lives inside the trainer's
//! process, so the trainer decides:
//!
//! 1. a callback set with [`set_callback`] (nyxq_set_log_callback) receives
//!    every message up to its level, and nothing is printed;
//! 2. otherwise, when the environment variable `NYXQ_LOG` is set (env_logger
//!    syntax, e.g. `NYXQ_LOG=debug`), messages its filter passes go to stderr;
//! 3. otherwise, while a context created with a log level above `Off` is alive,
//!    messages up to the most verbose such level go to stderr;
//! 4. otherwise nothing is logged.
//!
//! One [`log::Log`] implementation is installed with `log::set_logger`, only
//! when one of the above first asks for it; `log::set_max_level` follows
//! whichever applies, so disabled messages cost one comparison.

use crate::error::{Error, Result};
use log::{LevelFilter, Log, Metadata, Record};
use parking_lot::{Mutex, RwLock};
use std::ffi::{CString, c_char, c_void};
use std::sync::OnceLock;

/// How much is logged: the level of a log callback, and how much a context
/// asks to be logged to stderr while it lives, when the trainer set no log
/// callback and `NYXQ_LOG` is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The C callback: `user_data` first, then the level (1 = error .. 5 = trace)
/// and the NUL-terminated message, valid during the call only.
pub type Callback =
    unsafe extern "C" fn(user_data: *mut c_void, level: i32, message: *const c_char);

#[derive(Clone, Copy)]
struct Sink {
    callback: Callback,
    /// The caller's pointer, only passed back to it.
    user_data: usize,
    level: LevelFilter,
}

/// The current callback. Calls hold the read lock, so once
/// [`set_callback`] returns the previous callback is never called again.
static CALLBACK: RwLock<Option<Sink>> = RwLock::new(None);
/// How many live contexts asked for each level (index: `LogLevel as usize`).
static CONTEXT_LEVELS: Mutex<[usize; 6]> = Mutex::new([0; 6]);
/// The stderr logger `NYXQ_LOG` asks for, built once.
static ENV_LOGGER: OnceLock<Option<env_logger::Logger>> = OnceLock::new();
/// Whether nyxq's logger is the process's (None until first asked).
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn env_logger() -> Option<&'static env_logger::Logger> {
    ENV_LOGGER
        .get_or_init(|| {
            std::env::var_os("NYXQ_LOG").map(|_| {
                env_logger::Builder::new()
                    .parse_env(env_logger::Env::new().filter("NYXQ_LOG"))
                    .target(env_logger::Target::Stderr)
                    .build()
            })
        })
        .as_ref()
}

fn filter_of(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Off => LevelFilter::Off,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

fn context_filter() -> LevelFilter {
    let levels = CONTEXT_LEVELS.lock();
    let most = (1..levels.len())
        .rev()
        .find(|&l| levels[l] > 0)
        .unwrap_or(0);
    [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ][most]
}

/// The level messages are produced at, from whichever destination applies.
fn update_max_level() {
    let level = if let Some(sink) = *CALLBACK.read_recursive() {
        sink.level
    } else if let Some(env) = env_logger() {
        env.filter()
    } else {
        context_filter()
    };
    log::set_max_level(level);
}

struct Forwarder;

impl Log for Forwarder {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        let sink = CALLBACK.read_recursive();
        if let Some(sink) = *sink {
            if record.level() <= sink.level {
                let text = record.args().to_string().replace('\0', " ");
                let message = CString::new(text).unwrap_or_default();
                // SAFETY: the callback and its user_data are what the caller
                // registered, with the contract of nyxq_set_log_callback; the
                // message outlives the call.
                unsafe {
                    (sink.callback)(
                        sink.user_data as *mut c_void,
                        record.level() as i32,
                        message.as_ptr(),
                    )
                };
            }
        } else if let Some(env) = env_logger() {
            env.log(record);
        } else if record.level() <= context_filter() {
            eprintln!("[nyxq {}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {
        if let Some(env) = env_logger() {
            env.flush();
        }
    }
}

/// Installs nyxq's logger once; false when the process already had one (then
/// nyxq's messages go to that logger).
fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        static FORWARDER: Forwarder = Forwarder;
        log::set_logger(&FORWARDER).is_ok()
    })
}

/// Installs the logger on a process started with `NYXQ_LOG` set (checked
/// once; every export calls this).
pub fn init_from_env() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        if env_logger().is_some() && install() {
            update_max_level();
        }
    });
}

/// Sets (or with `None` removes) the callback that receives messages up to
/// `level`. Unsupported when the process already has another Rust logger.
pub fn set_callback(callback: Option<(Callback, *mut c_void)>, level: LogLevel) -> Result<()> {
    if callback.is_some() && !install() {
        return Err(Error::unsupported(
            "the process already has a logger of Rust's log crate; nyxq's messages go to it",
        ));
    }
    *CALLBACK.write() = callback.map(|(callback, user_data)| Sink {
        callback,
        user_data: user_data as usize,
        level: filter_of(level),
    });
    if *INSTALLED.get().unwrap_or(&false) {
        update_max_level();
    }
    Ok(())
}

/// A live context's wish to see messages up to its level on stderr (when no
/// callback is set and `NYXQ_LOG` is not); dropped with the context.
#[derive(Debug)]
pub struct ContextLevel(LogLevel);

impl ContextLevel {
    pub fn register(level: LogLevel) -> ContextLevel {
        init_from_env();
        if level != LogLevel::Off && install() {
            CONTEXT_LEVELS.lock()[level as usize] += 1;
            update_max_level();
        }
        ContextLevel(level)
    }
}

impl Drop for ContextLevel {
    fn drop(&mut self) {
        if self.0 != LogLevel::Off && *INSTALLED.get().unwrap_or(&false) {
            CONTEXT_LEVELS.lock()[self.0 as usize] -= 1;
            update_max_level();
        }
    }
}
