//! Library and ABI versions.

use std::ffi::c_char;

/// The ABI version of this header and library. It changes only when a change
/// breaks callers built against an older header (a removed function, a changed
/// signature or struct layout). Appended functions, fields, statuses and enum
/// values keep it. Equal to `package.metadata.nyxq.abi-version` in Cargo.toml.
pub const NYXQ_ABI_VERSION: u32 = 1;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library's version, "MAJOR.MINOR.PATCH" as in Cargo.toml.
///
/// Returns a static NUL-terminated string; never NULL; never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_version_string() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The ABI version the library was built with. A caller compares it with the
/// NYXQ_ABI_VERSION of the header it compiled against and refuses to run when
/// they differ. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_abi_version() -> u32 {
    NYXQ_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn cargo_toml() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap()
    }

    #[test]
    fn version_string_is_cargo_tomls() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(nyxq_version_string()) }
            .to_str()
            .unwrap();
        let toml = cargo_toml();
        let declared = toml
            .lines()
            .find_map(|l| l.strip_prefix("version = \""))
            .unwrap()
            .trim_end_matches('"');
        assert_eq!(v, declared);
    }

    #[test]
    fn abi_version_is_cargo_tomls() {
        let toml = cargo_toml();
        let declared: u32 = toml
            .lines()
            .find_map(|l| l.strip_prefix("abi-version = "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(nyxq_abi_version(), declared);
    }
}
