//! Strings nyxq hands to C (plan text and JSON, config warnings), owned by
//! nyxq until nyxq_string_destroy.

use super::guard::guard;
use super::status::NyxqStatus;
use crate::error::Error;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ffi::{CString, c_char};

/// Bytes of the fixed name fields (NyxqHardware.name,
/// NyxqPlanFeasibility.recommended_name), the terminating NUL included; a
/// longer name is cut on a UTF-8 character boundary.
pub const NYXQ_NAME_LEN: usize = 64;

/// Strings handed to C, by address, until nyxq_string_destroy.
static STRINGS: Mutex<BTreeMap<usize, CString>> = Mutex::new(BTreeMap::new());

/// Strings handed to C and not yet released.
pub(crate) fn live_strings() -> usize {
    STRINGS.lock().len()
}

pub(crate) fn give_string(text: &str) -> *mut c_char {
    let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
    let p = c.as_ptr() as *mut c_char;
    STRINGS.lock().insert(p as usize, c);
    p
}

/// Releases a string nyxq returned (nyxq_plan_explain, nyxq_plan_to_json).
/// NULL is a no-op. A pointer nyxq did not return, or returned and already
/// released, is NYXQ_ERROR_INVALID_ARGUMENT and is not touched.
///
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_string_destroy(text: *mut c_char) -> NyxqStatus {
    guard(|| {
        if text.is_null() {
            return Ok(());
        }
        STRINGS
            .lock()
            .remove(&(text as usize))
            .map(drop)
            .ok_or_else(|| {
                Error::invalid("the string was not returned by nyxq, or was already released")
            })
    })
}
