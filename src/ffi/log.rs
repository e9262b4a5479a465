//! The trainer's log callback.

use super::enum_value;
use super::guard::guard;
use super::status::NyxqStatus;
use crate::logging::{self, LogLevel};
use std::ffi::{c_char, c_void};

/// How much nyxq logs: the level of nyxq_set_log_callback, and
/// NyxqContextOptions.log_level. A context's level above OFF asks for
/// messages up to that level on stderr while the context lives, and only when
/// no log callback is set and NYXQ_LOG is unset (the callback, then NYXQ_LOG,
/// take precedence); nothing outlives the context.
#[repr(i32)]
pub enum NyxqLogLevel {
    /// Nothing (the default).
    NyxqLogOff = 0,
    NyxqLogError = 1,
    NyxqLogWarn = 2,
    NyxqLogInfo = 3,
    NyxqLogDebug = 4,
    NyxqLogTrace = 5,
}

/// Receives one nyxq log message: `user_data` as given to
/// nyxq_set_log_callback, the message's NyxqLogLevel (NYXQ_LOG_ERROR ..
/// NYXQ_LOG_TRACE) and the message, NUL-terminated UTF-8 without a trailing
/// newline, valid during the call only.
///
/// It is called on whichever thread logs: any thread that is inside a nyxq
/// call, including nyxq's own worker threads, possibly several at once. It
/// must not throw (an exception must not cross into nyxq), must not call
/// nyxq_set_log_callback (that call waits for running callbacks to return),
/// and should not call other nyxq functions (they may log, which calls it
/// again on the same thread).
pub type NyxqLogCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, message: *const c_char)>;

/// Sends nyxq's log messages up to `level` (a NyxqLogLevel) to `callback`
/// with `user_data`, process-wide; `callback` NULL removes it (`level` is then
/// ignored). While a callback is set nothing is printed to stderr.
///
/// It may be replaced or removed at any time, from any thread; once this call
/// returns, the previous callback is never called again (the call waits for
/// running callbacks to return). `user_data` is only passed back.
///
/// Without a callback, messages go to stderr only when the host asks: with
/// the environment variable NYXQ_LOG set (env_logger syntax, e.g.
/// NYXQ_LOG=debug), or while a context created with
/// NyxqContextOptions.log_level above NYXQ_LOG_OFF lives. By default nyxq
/// prints nothing.
///
/// Errors: NYXQ_ERROR_INVALID_ARGUMENT (unknown level),
/// NYXQ_ERROR_UNSUPPORTED (the process already has another logger of Rust's
/// `log` crate, which then receives nyxq's messages). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_set_log_callback(
    callback: NyxqLogCallback,
    user_data: *mut c_void,
    level: i32,
) -> NyxqStatus {
    guard(|| {
        let Some(callback) = callback else {
            return logging::set_callback(None, LogLevel::Off);
        };
        let level = log_level_arg(level)?;
        logging::set_callback(Some((callback, user_data)), level)
    })
}

/// The LogLevel of a NyxqLogLevel value.
pub(crate) fn log_level_arg(level: i32) -> crate::error::Result<LogLevel> {
    enum_value(
        level,
        &[
            (NyxqLogLevel::NyxqLogOff as i32, LogLevel::Off),
            (NyxqLogLevel::NyxqLogError as i32, LogLevel::Error),
            (NyxqLogLevel::NyxqLogWarn as i32, LogLevel::Warn),
            (NyxqLogLevel::NyxqLogInfo as i32, LogLevel::Info),
            (NyxqLogLevel::NyxqLogDebug as i32, LogLevel::Debug),
            (NyxqLogLevel::NyxqLogTrace as i32, LogLevel::Trace),
        ],
        "log level",
    )
}
