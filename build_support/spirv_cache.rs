//! A cache of the compiled shaders between runs of the build script, kept
//! where `NYXQ_SPIRV_CACHE` says (CMake sets it under its cargo directory).
//! Cargo runs the build script again for every kind of build of the crate
//! that fingerprints it differently (clippy's wrapper gives it a build of
//! its own): without the cache each run compiles every variant again.
//!
//! An entry is a folder named by a hash of everything the SPIR-V depends
//! on (glslc's version, the shader folder's path and files, each variant's
//! glslc arguments, the build's own SPIR-V rewriting), holding each
//! variant's `.spv` and depfile. An entry is made whole in a folder of its
//! own and renamed into place, so a build never reads half of one; a
//! missing or partial entry is a miss, and the build compiles as without
//! the cache. The newest few entries are kept.

use std::path::{Path, PathBuf};

/// How many entries a cache keeps (the newest by modification time).
pub const KEPT_ENTRIES: usize = 4;

/// FNV-1a, 64 bits: stable across Rust releases, unlike std's hasher.
#[derive(Clone, Copy)]
pub struct Key(u64);

impl Key {
    pub fn new() -> Key {
        Key(0xcbf2_9ce4_8422_2325)
    }

    /// Adds `bytes`, preceded by their length so that the boundaries
    /// between the parts count.
    pub fn add(&mut self, bytes: &[u8]) {
        for byte in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The entry's folder name.
    pub fn name(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The files of the variant `name` in a folder of compiled shaders: its
/// SPIR-V and its depfile (what the build writes and the cache keeps).
pub fn files_of(dir: &Path, name: &str) -> [PathBuf; 2] {
    [
        dir.join(format!("{name}.spv")),
        dir.join(format!("{name}.d")),
    ]
}

/// Copies the entry `key` of `cache` into `spv_dir` when it holds every one
/// of `names`; false (a miss) otherwise.
pub fn restore(cache: &Path, key: Key, spv_dir: &Path, names: &[String]) -> bool {
    let entry = cache.join(key.name());
    let whole = names
        .iter()
        .all(|name| files_of(&entry, name).iter().all(|f| f.is_file()));
    if !whole {
        return false;
    }
    names.iter().all(|name| {
        files_of(&entry, name)
            .iter()
            .zip(files_of(spv_dir, name))
            .all(|(from, to)| std::fs::copy(from, to).is_ok())
    })
}

/// Stores `names`' files of `spv_dir` as the entry `key` of `cache` (in
/// place of one that [`restore`] found partial) and removes all but the
/// newest [`KEPT_ENTRIES`]. A cache that cannot be written is left as it
/// is: the build has its shaders either way.
pub fn store(cache: &Path, key: Key, spv_dir: &Path, names: &[String]) {
    let entry = cache.join(key.name());
    let _ = std::fs::remove_dir_all(&entry);
    let partial = cache.join(format!("{}.partial-{}", key.name(), std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let copied = std::fs::create_dir_all(&partial).is_ok()
        && names.iter().all(|name| {
            files_of(spv_dir, name)
                .iter()
                .zip(files_of(&partial, name))
                .all(|(from, to)| std::fs::copy(from, to).is_ok())
        });
    // Another build may have stored the same entry meanwhile: the rename
    // then fails and this copy goes.
    if !copied || std::fs::rename(&partial, &entry).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    prune(cache);
}

/// Removes the entries past the newest [`KEPT_ENTRIES`].
fn prune(cache: &Path) {
    let Ok(listing) = std::fs::read_dir(cache) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = listing
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().len() == 16 && e.path().is_dir())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, old) in entries.into_iter().skip(KEPT_ENTRIES) {
        let _ = std::fs::remove_dir_all(old);
    }
}
