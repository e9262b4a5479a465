//! Opaque, tagged handles.
//!
//! A handle C holds is a token, not an address: a number drawn from a counter
//! that never repeats, looked up in a registry of live objects. So a destroyed,
//! foreign or wrongly typed handle is always detected (never dereferenced), and
//! an object in use on one thread is kept alive by its `Arc` even if another
//! thread destroys the handle meanwhile.

use super::guard::guard;
use super::ptr;
use super::status::NyxqStatus;
use crate::error::{Error, ErrorKind, Result};
use parking_lot::Mutex;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A C handle type tied to the Rust type it stands for.
pub(crate) trait Opaque: 'static {
    /// The object behind the handle.
    type Inner: Send + Sync + 'static;
    /// What C calls it, for error messages ("context", "tensor", ...).
    const KIND: &'static str;
}

type Live = Arc<dyn Any + Send + Sync>;

/// Live objects by token. A BTreeMap because it can be built in a const.
static LIVE: Mutex<BTreeMap<usize, Live>> = Mutex::new(BTreeMap::new());
/// The next token; steps by 16 so tokens look like aligned pointers to tools.
static NEXT_TOKEN: Mutex<usize> = Mutex::new(0x4e59_5100_0000);

/// Registers `inner` and returns the handle C will hold.
pub(crate) fn register<H: Opaque>(inner: H::Inner) -> *mut H {
    let object: Live = Arc::new(inner);
    let token = {
        let mut next = NEXT_TOKEN.lock();
        *next += 16;
        *next
    };
    LIVE.lock().insert(token, object);
    token as *mut H
}

/// The object behind `handle`, kept alive for as long as the caller holds it.
pub(crate) fn get<H: Opaque>(handle: *const H) -> Result<Arc<H::Inner>> {
    if handle.is_null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            format!("the {} handle is NULL", H::KIND),
        ));
    }
    let object = LIVE.lock().get(&(handle as usize)).cloned();
    object
        .ok_or_else(|| stale::<H>(handle as usize))?
        .downcast::<H::Inner>()
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!(
                    "the handle passed as a {} is another kind of handle",
                    H::KIND
                ),
            )
        })
}

/// Forgets `handle`; NULL is a no-op. The object is dropped once no call is using it.
pub(crate) fn unregister<H: Opaque>(handle: *mut H) -> Result<()> {
    if handle.is_null() {
        return Ok(());
    }
    get::<H>(handle)?;
    let removed = LIVE.lock().remove(&(handle as usize));
    drop(removed);
    Ok(())
}

/// Handles registered and not yet destroyed.
pub(crate) fn live_count() -> usize {
    LIVE.lock().len()
}

/// How many handles (of every kind) and strings nyxq has handed out that the
/// caller has not destroyed yet: 0 at the end of a program that released
/// everything. A trainer (or its tests) can check it at shutdown to find
/// leaked handles, which no leak checker reports: nyxq's registry still
/// reaches them.
///
/// Errors: NYXQ_ERROR_NULL_POINTER. Thread-safe; other threads may create or
/// destroy handles meanwhile, so the count is a snapshot.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_live_handles(count_out: *mut usize) -> NyxqStatus {
    guard(|| {
        let out = ptr::out(count_out, "count_out")?;
        let count = live_count() + super::strings::live_strings();
        // SAFETY: count_out checked non-NULL; points to a size_t per the contract.
        unsafe { out.write(count) };
        Ok(())
    })
}

fn stale<H: Opaque>(token: usize) -> Error {
    Error::new(
        ErrorKind::InvalidHandle,
        format!(
            "{token:#x} is not a live {} handle (destroyed, or never made by nyxq)",
            H::KIND
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;
    impl Opaque for A {
        type Inner = u32;
        const KIND: &'static str = "a";
    }
    impl Opaque for B {
        type Inner = String;
        const KIND: &'static str = "b";
    }

    #[test]
    fn destroyed_foreign_and_mistyped_handles_are_errors() {
        let a = register::<A>(7);
        assert_eq!(*get(a).unwrap(), 7);
        assert_eq!(
            get::<B>(a.cast()).unwrap_err().kind(),
            ErrorKind::InvalidHandle
        );
        unregister(a).unwrap();
        assert_eq!(get(a).unwrap_err().kind(), ErrorKind::InvalidHandle);
        assert_eq!(unregister(a).unwrap_err().kind(), ErrorKind::InvalidHandle);
        assert_eq!(
            get::<A>(std::ptr::null()).unwrap_err().kind(),
            ErrorKind::NullPointer
        );
        assert!(unregister::<A>(std::ptr::null_mut()).is_ok());
        assert_eq!(
            get::<A>(0x1234 as *const A).unwrap_err().kind(),
            ErrorKind::InvalidHandle
        );
    }
}
