//! The panic guard around every export, and the thread-local last error.

use super::status::NyxqStatus;
use crate::error::{Error, ErrorKind};
use crate::quiet_panic;
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The last failure on this thread, as C reads it.
struct LastError {
    message: CString,
    needed_len: usize,
    index: i64,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError {
        message: CString::default(),
        needed_len: 0,
        index: -1,
    });
}

fn record(error: &Error) {
    let message = CString::new(error.message().replace('\0', " ")).unwrap_or_default();
    let (needed_len, index) = match error.kind() {
        ErrorKind::BufferTooSmall { needed } => (needed, -1),
        ErrorKind::NonFinite { index } => (0, i64::try_from(index).unwrap_or(i64::MAX)),
        _ => (0, -1),
    };
    log::debug!("nyxq error: {}", error.message());
    LAST_ERROR.with(|slot| {
        *slot.borrow_mut() = LastError {
            message,
            needed_len,
            index,
        }
    });
}

fn clear() {
    LAST_ERROR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if !slot.message.is_empty() {
            slot.message = CString::default();
        }
        slot.needed_len = 0;
        slot.index = -1;
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs the body of an export: clears the last error, catches any panic, and
/// turns the body's result into a status (recording the error's message).
///
/// A caught panic prints nothing (see [`crate::quiet_panic`]): its message and
/// location go to the last error and to the log at error level.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> NyxqStatus {
    clear();
    crate::logging::init_from_env();
    let outcome =
        quiet_panic::catching(|| catch_unwind(AssertUnwindSafe(body))).unwrap_or_else(|payload| {
            let at = quiet_panic::take_location()
                .map(|l| format!(" (at {l})"))
                .unwrap_or_default();
            let message = format!(
                "internal error (panic caught at the C boundary): {}{at}",
                panic_message(&*payload)
            );
            log::error!("{message}");
            Err(Error::new(ErrorKind::Internal, message))
        });
    match outcome {
        Ok(()) => NyxqStatus::NyxqOk,
        Err(error) => {
            record(&error);
            NyxqStatus::from_kind(error.kind())
        }
    }
}

/// The message of the last failed nyxq call on this thread ("" after a success).
///
/// The pointer stays valid until the next nyxq call on the same thread; never
/// free it. Never NULL. Each thread has its own last error.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().message.as_ptr())
}

/// After NYXQ_ERROR_BUFFER_TOO_SMALL on this thread: the length the destination
/// must have, in the units of that buffer's length argument (bytes for `void *`
/// buffers, elements for typed ones). 0 when the last call failed otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_last_error_needed_len() -> usize {
    LAST_ERROR.with(|slot| slot.borrow().needed_len)
}

/// After NYXQ_ERROR_NON_FINITE on this thread: the index of the first bad
/// element in the whole tensor, that is NyxqQuantizeOptions.first_index plus
/// its position in the call's `src` (the position itself when first_index is
/// 0 or the call takes no options). -1 when the last call failed for another
/// reason.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_last_error_index() -> i64 {
    LAST_ERROR.with(|slot| slot.borrow().index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_message() -> String {
        // SAFETY: nyxq_last_error_message returns a valid NUL-terminated string
        // owned by this thread's slot, unchanged until the next guard() call.
        unsafe { CStr::from_ptr(nyxq_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = guard(|| panic!("boom at the boundary"));
        assert_eq!(status, NyxqStatus::NyxqErrorInternal);
        assert!(last_message().contains("boom at the boundary"));
    }

    /// Set in the child process of the test below.
    const CHILD: &str = "NYXQ_GUARD_TEST_CHILD";

    #[test]
    fn a_caught_panic_prints_nothing_and_other_panics_still_do() {
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(
                guard(|| panic!("quiet boom")),
                NyxqStatus::NyxqErrorInternal
            );
            assert!(last_message().contains("quiet boom"));
            assert!(last_message().contains("guard.rs:"), "{}", last_message());
            // A panic outside the guard reaches the previous (default) hook.
            let _ = std::panic::catch_unwind(|| panic!("loud boom"));
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let child = std::process::Command::new(exe)
            .args([
                "--exact",
                "ffi::guard::tests::a_caught_panic_prints_nothing_and_other_panics_still_do",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(child.status.success(), "{stderr}");
        assert!(!stderr.contains("quiet boom"), "{stderr}");
        assert!(stderr.contains("loud boom"), "{stderr}");
    }

    #[test]
    fn success_clears_the_last_error() {
        let status = guard(|| Err(Error::buffer_too_small("dst", "bytes", 64, 8)));
        assert_eq!(status, NyxqStatus::NyxqErrorBufferTooSmall);
        assert_eq!(nyxq_last_error_needed_len(), 64);
        assert_eq!(guard(|| Ok(())), NyxqStatus::NyxqOk);
        assert_eq!(last_message(), "");
        assert_eq!(nyxq_last_error_needed_len(), 0);
        assert_eq!(nyxq_last_error_index(), -1);
    }
}
