//! The weight sets `nyxq validate` and `nyxq formats` read: a folder of raw
//! little-endian f32 files indexed by `manifest.json` (the layout of
//! data/weights), or `.safetensors` files.
//!
//! Opening a set reads only the indexes (the manifest, each safetensors
//! header) and checks every tensor's size against its shape; the values are
//! read one tensor at a time by [`TensorEntry::load`], so a large checkpoint
//! never needs more memory than its largest tensor.

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The largest header the safetensors format allows (its crate refuses more).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// How the values of a tensor are stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    F32,
    F16,
    BF16,
}

impl StoredType {
    pub fn name(self) -> &'static str {
        match self {
            StoredType::F32 => "F32",
            StoredType::F16 => "F16",
            StoredType::BF16 => "BF16",
        }
    }

    fn bytes(self) -> usize {
        match self {
            StoredType::F32 => 4,
            StoredType::F16 | StoredType::BF16 => 2,
        }
    }

    fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            StoredType::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            StoredType::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            StoredType::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
    }
}

/// One tensor of a weight set, not yet read.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: StoredType,
    /// The file holding the values.
    pub file: PathBuf,
    /// Where the values start in `file`.
    offset: u64,
}

impl TensorEntry {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Reads the values, widened to f32.
    pub fn load(&self) -> Result<Vec<f32>, String> {
        let what = || format!("{} (tensor '{}')", self.file.display(), self.name);
        let mut file =
            File::open(&self.file).map_err(|e| format!("cannot read {}: {e}", what()))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| format!("cannot read {}: {e}", what()))?;
        let n = self.elements();
        let mut values = Vec::with_capacity(n);
        // Decoded a chunk at a time, so only the f32 values are held in full.
        let mut chunk = vec![0u8; (1 << 20) * self.stored.bytes()];
        let mut left = n * self.stored.bytes();
        while left > 0 {
            let take = left.min(chunk.len());
            file.read_exact(&mut chunk[..take])
                .map_err(|e| format!("cannot read {}: {e} (was the file changed?)", what()))?;
            self.stored.decode(&chunk[..take], &mut values);
            left -= take;
        }
        Ok(values)
    }
}

/// A tensor an input holds that nyxq does not read, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: PathBuf,
    pub name: String,
    pub reason: String,
}

/// Every tensor of the inputs, in the order the inputs list them.
#[derive(Debug, Default)]
pub struct WeightSet {
    pub tensors: Vec<TensorEntry>,
    pub skipped: Vec<Skipped>,
}

impl WeightSet {
    /// Opens each input: a folder (its `manifest.json`), a `.json` manifest,
    /// or else a safetensors file. An error names the file and what is wrong.
    pub fn open(inputs: &[PathBuf]) -> Result<WeightSet, String> {
        let mut set = WeightSet::default();
        for input in inputs {
            if input.is_dir() {
                set.add_manifest(&input.join("manifest.json"))?;
            } else if input.extension().is_some_and(|e| e == "json") {
                set.add_manifest(input)?;
            } else {
                set.add_safetensors(input)?;
            }
        }
        if set.tensors.is_empty() {
            let list: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
            return Err(format!(
                "{}: no F32, F16 or BF16 tensor to read",
                list.join(", ")
            ));
        }
        Ok(set)
    }

    pub fn total_elements(&self) -> usize {
        self.tensors.iter().map(TensorEntry::elements).sum()
    }

    fn add_manifest(&mut self, path: &Path) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Manifest {
            tensors: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            name: String,
            file: String,
            shape: Vec<usize>,
            dtype: Option<String>,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a weight manifest ({e}; expected {{\"tensors\": [{{\"name\", \"file\", \"shape\"}}, ...]}})",
                path.display()
            )
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for entry in manifest.tensors {
            let at =
                |reason: String| format!("{}: tensor '{}': {reason}", path.display(), entry.name);
            if let Some(dtype) = entry.dtype.as_deref().filter(|d| *d != "float32") {
                return Err(at(format!(
                    "dtype '{dtype}' is not supported (manifest files hold raw float32)"
                )));
            }
            let file = dir.join(&entry.file);
            let size = std::fs::metadata(&file)
                .map_err(|e| at(format!("cannot read {}: {e}", file.display())))?
                .len();
            let needed = checked_bytes(&entry.shape, 4)
                .ok_or_else(|| at(format!("shape {:?} is too large", entry.shape)))?;
            if size != needed {
                return Err(at(format!(
                    "{} holds {size} bytes but shape {:?} needs {needed} (4 bytes per value)",
                    file.display(),
                    entry.shape
                )));
            }
            self.tensors.push(TensorEntry {
                name: entry.name,
                shape: entry.shape,
                stored: StoredType::F32,
                file,
                offset: 0,
            });
        }
        Ok(())
    }

    fn add_safetensors(&mut self, path: &Path) -> Result<(), String> {
        let fail = |reason: String| format!("{}: {reason}", path.display());
        let mut file =
            File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file_len = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        let mut length = [0u8; 8];
        if file_len < 8 {
            return Err(fail(format!(
                "{file_len} bytes is too short for a safetensors file (it starts with an 8-byte header length)"
            )));
        }
        file.read_exact(&mut length)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        let header_len = u64::from_le_bytes(length);
        if header_len > file_len - 8 {
            return Err(fail(format!(
                "header length {header_len} runs past the end of the file ({file_len} bytes): not a safetensors file, or truncated"
            )));
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(fail(format!(
                "header length {header_len} is over the {MAX_HEADER_BYTES} bytes safetensors allows"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(|e| fail(format!("cannot read the header: {e}")))?;
        let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| {
            fail(format!(
                "invalid safetensors header: {}",
                diagnose(&header).unwrap_or_else(|| e.to_string())
            ))
        })?;
        let data_start = 8 + header_len;
        let data_len = metadata.data_len() as u64;
        if data_start + data_len != file_len {
            return Err(fail(format!(
                "the header describes {data_len} bytes of tensor data but the file holds {} after the header{}",
                file_len - data_start,
                if data_start + data_len > file_len {
                    " (truncated?)"
                } else {
                    ""
                }
            )));
        }
        for name in metadata.offset_keys() {
            let Some(info) = metadata.info(&name) else {
                continue;
            };
            let stored = match info.dtype {
                Dtype::F32 => StoredType::F32,
                Dtype::F16 => StoredType::F16,
                Dtype::BF16 => StoredType::BF16,
                other => {
                    self.skipped.push(Skipped {
                        file: path.to_path_buf(),
                        name,
                        reason: format!("dtype {other} is not a floating-point weight nyxq reads (F32, F16, BF16)"),
                    });
                    continue;
                }
            };
            self.tensors.push(TensorEntry {
                name,
                shape: info.shape.clone(),
                stored,
                file: path.to_path_buf(),
                offset: data_start + info.data_offsets.0 as u64,
            });
        }
        Ok(())
    }
}

/// Bytes of `shape` at `bytes_per_value`, or None on overflow.
fn checked_bytes(shape: &[usize], bytes_per_value: usize) -> Option<u64> {
    shape
        .iter()
        .try_fold(bytes_per_value, |acc, &d| acc.checked_mul(d))
        .map(|b| b as u64)
}

/// Names the first tensor whose shape and type disagree with its byte range,
/// where the safetensors crate's error does not say which one.
fn diagnose(header: &[u8]) -> Option<String> {
    let entries: HashMap<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    let mut names: Vec<&String> = entries.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let info: TensorInfo = serde_json::from_value(entries[name].clone()).ok()?;
        let (start, end) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |acc, &d| acc.checked_mul(d));
        let span = end.checked_sub(start);
        (bits.map(|b| b.div_ceil(8)) != span).then(|| {
            format!(
                "tensor '{name}': shape {:?} of {} does not fit its data offsets [{start}, {end}] ({} bytes)",
                info.shape,
                info.dtype,
                span.map_or("a negative number of".to_string(), |s| s.to_string())
            )
        })
    })
}
