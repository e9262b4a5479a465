//! The library's error type. Every fallible function in the safe library returns
//! [`Result`]; the C boundary maps each [`ErrorKind`] to one status code.

use std::fmt;

/// What went wrong, in the terms the C ABI reports (one status code per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bug in nyxq, or a panic caught at the boundary.
    Internal,
    /// An argument is out of its documented domain.
    InvalidArgument,
    /// A required pointer was NULL.
    NullPointer,
    /// A handle was destroyed, never created by nyxq, or of another type.
    InvalidHandle,
    /// A destination is too small; `needed` is the length it must have, in the
    /// units of that buffer's length argument (bytes, floats, entries).
    BufferTooSmall { needed: usize },
    /// A size computation overflowed (`n * bytes` beyond `usize`).
    SizeOverflow,
    /// NaN or ±Inf (or a value out of the target format's range) at `index`.
    NonFinite { index: usize },
    /// The request is valid but not supported by this build, backend or device.
    Unsupported,
    /// Host memory could not be allocated.
    OutOfMemory,
    /// Device memory could not be allocated.
    OutOfDeviceMemory,
    /// The Vulkan device was lost; sticky on the context's device.
    DeviceLost,
    /// Any other Vulkan failure.
    Vulkan,
    /// No plan fits; `shortfall` is how many bytes are missing.
    InfeasiblePlan { shortfall: u64 },
    /// A configuration file or value is wrong.
    Config,
    /// A file could not be read or written.
    Io,
    /// The loss scale would fall below its floor.
    LossScaleUnderflow,
}

/// An error with the kind the C ABI reports and a message for humans.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// A destination of length `have` where `needed` is required, counted in `unit`
    /// ("bytes", "floats", ...).
    pub fn buffer_too_small(what: &str, unit: &str, needed: usize, have: usize) -> Self {
        Self::new(
            ErrorKind::BufferTooSmall { needed },
            format!("{what} holds {have} {unit} but {needed} are needed"),
        )
    }

    /// Ok when a destination of length `have` holds `needed` (in `unit`), else
    /// [`ErrorKind::BufferTooSmall`]: the one check every writer makes.
    pub fn ensure_room(what: &str, unit: &str, needed: usize, have: usize) -> Result<()> {
        if have < needed {
            return Err(Self::buffer_too_small(what, unit, needed, have));
        }
        Ok(())
    }

    /// A size computation that overflowed.
    pub fn overflow(what: &str) -> Self {
        Self::new(
            ErrorKind::SizeOverflow,
            format!("{what} overflows the address space"),
        )
    }

    /// What went wrong, as the C ABI classifies it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for humans.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
