//! Panics that nyxq catches stay quiet. The C boundary turns a panic into
//! NYXQ_ERROR_INTERNAL with its message; the default panic hook would also
//! print it to the host's stderr. A hook installed once per process stays
//! silent on threads that are inside a catching scope (where it records the
//! panic's location for the error message instead) and hands every other
//! panic to the hook that was installed before it, so a host's own Rust
//! panic hook keeps working.

use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    /// Depth of catching scopes on this thread.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// Where the last quiet panic on this thread happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) > 0 {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `body` with panics on this thread kept quiet; the caller catches them.
pub fn catching<R>(body: impl FnOnce() -> R) -> R {
    install_hook();
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            CATCHING.with(|d| d.set(d.get() - 1));
        }
    }
    CATCHING.with(|d| d.set(d.get() + 1));
    let _leave = Leave;
    body()
}

/// Whether this thread is inside [`catching`]: a worker thread spawned here
/// passes it on with [`inherit`], since its panic reaches the same catch.
pub fn is_catching() -> bool {
    CATCHING.with(Cell::get) > 0
}

/// Runs a worker's `body` quietly when the thread that spawned it was.
pub fn inherit<R>(catching_parent: bool, body: impl FnOnce() -> R) -> R {
    if catching_parent {
        catching(body)
    } else {
        body()
    }
}

/// Takes the location of the last quiet panic on this thread, if any.
pub fn take_location() -> Option<String> {
    LOCATION.with(|slot| slot.borrow_mut().take())
}
