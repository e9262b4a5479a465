//! Parsing a GGUF file. Every count, size and offset is checked against the
//! bytes that are actually there before anything is allocated for it, so a
//! truncated or hostile file is an error that says where, never a panic or
//! a huge allocation.

use super::value::{Value, ValueType};
use super::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GgufFile, MAGIC, MAX_ARRAY_DEPTH, MAX_ARRAY_ELEMENTS,
    MAX_DIMS, TensorInfo, align_up, ggml_type,
};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// Versions with the layout this reader knows (version 1 had 32-bit counts).
const VERSIONS: [u32; 2] = [2, 3];

/// The fewest bytes a key/value takes: an empty key's length, a type, a byte.
const MIN_KV_BYTES: usize = 8 + 4 + 1;

/// The fewest bytes a tensor info takes: an empty name's length, one
/// dimension, a type and an offset.
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 8 + 4 + 8;

/// Reads and parses the GGUF file at `path` (the whole file is read into
/// memory). A file that cannot be read is an Io error.
pub fn read_file(path: &Path) -> Result<GgufFile> {
    let bytes = crate::alloc::file_bytes(path)?;
    parse(bytes).map_err(|e| Error::new(e.kind(), format!("{}: {}", path.display(), e.message())))
}

/// Parses a GGUF file held in `bytes`. Errors are InvalidArgument for a
/// malformed file; a tensor of a ggml type nyxq does not know is no error
/// here ([`TensorInfo::format`] is None) but in [`GgufFile::tensor_bytes`].
pub fn parse(bytes: Vec<u8>) -> Result<GgufFile> {
    let mut cursor = Cursor {
        bytes: &bytes,
        pos: 0,
        array_elements: 0,
    };
    let magic = cursor.take(4, "the magic")?;
    if magic != MAGIC {
        return Err(malformed(format!(
            "not a GGUF file: it starts with {magic:02x?}, not \"GGUF\""
        )));
    }
    let version = cursor.u32("the version")?;
    if !VERSIONS.contains(&version) {
        let hint = if version.swap_bytes() <= 3 {
            " (a big-endian file: nyxq reads little-endian GGUF only)"
        } else {
            ""
        };
        return Err(Error::unsupported(format!(
            "GGUF version {version} is not supported (nyxq reads versions 2 and 3){hint}"
        )));
    }
    let tensor_count = cursor.count("the tensor count", MIN_TENSOR_INFO_BYTES)?;
    let kv_count = cursor.count("the metadata count", MIN_KV_BYTES)?;

    let mut metadata = Vec::with_capacity(kv_count);
    let mut keys = HashSet::with_capacity(kv_count);
    for index in 0..kv_count {
        let key = cursor.string(&format!("the key of metadata entry {index}"))?;
        if key.contains('\0') {
            return Err(malformed(format!(
                "the key of metadata entry {index} ({key:?}) contains a NUL byte"
            )));
        }
        if !keys.insert(key.clone()) {
            return Err(malformed(format!("metadata key '{key}' appears twice")));
        }
        let value = cursor.value(&format!("metadata '{key}'"), 0)?;
        metadata.push((key, value));
    }
    let alignment = alignment_of(&metadata)?;

    let mut infos = Vec::with_capacity(tensor_count);
    let mut names = HashSet::with_capacity(tensor_count);
    for index in 0..tensor_count {
        let info = cursor.tensor_info(index, alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(malformed(format!(
                "tensor name '{}' appears twice",
                info.name
            )));
        }
        infos.push(info);
    }

    let data_start = align_up(cursor.pos, alignment)
        .filter(|&start| start <= bytes.len() || tensor_count == 0)
        .ok_or_else(|| {
            malformed(format!(
                "the file ends at byte {} before its data section (aligned to {alignment})",
                bytes.len()
            ))
        })?;
    let data_len = bytes.len().saturating_sub(data_start);
    for info in &infos {
        check_extent(info, data_len)?;
    }
    Ok(GgufFile {
        version,
        alignment,
        metadata,
        tensors: infos,
        bytes,
        data_start,
    })
}

/// The file's alignment: `general.alignment` (a UINT32 power of two), or 32.
fn alignment_of(metadata: &[(String, Value)]) -> Result<usize> {
    match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, Value::U32(a))) if a.is_power_of_two() => Ok(*a as usize),
        Some((_, value)) => Err(malformed(format!(
            "{ALIGNMENT_KEY} is {} of type {}: it must be a UINT32 power of two",
            value.to_text(4),
            value.value_type().spec().name
        ))),
    }
}

/// Checks that a tensor's bytes lie inside the data section.
fn check_extent(info: &TensorInfo, data_len: usize) -> Result<()> {
    let end = match info.byte_len {
        Some(len) => info.offset.checked_add(len),
        None => Some(info.offset),
    };
    match end {
        Some(end) if end <= data_len => Ok(()),
        _ => Err(malformed(format!(
            "tensor '{}': its data (offset {}, {} bytes) runs past the end of the file's \
             data section ({data_len} bytes)",
            info.name,
            info.offset,
            info.byte_len
                .map_or_else(|| "unknown".to_string(), |l| l.to_string())
        ))),
    }
}

fn malformed(message: String) -> Error {
    Error::invalid(format!("malformed GGUF: {message}"))
}

/// Reads little-endian fields, checking each against the bytes left.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Array elements read so far (bounded by MAX_ARRAY_ELEMENTS).
    array_elements: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(malformed(format!(
                "truncated: {what} at byte {} needs {n} bytes, the file has {} more",
                self.pos,
                self.left()
            )));
        }
        let piece = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(piece)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u64 count of things that take at least `min_bytes` each: refused
    /// when the rest of the file cannot hold that many.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let at = self.pos;
        let count = self.u64(what)?;
        let room = self.left() / min_bytes;
        usize::try_from(count)
            .ok()
            .filter(|&c| c <= room)
            .ok_or_else(|| {
                malformed(format!(
                    "{what} at byte {at} is {count}, more than the {} bytes left can hold \
                     ({min_bytes} bytes each at least)",
                    self.left()
                ))
            })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(&format!("the length of {what}"), 1)?;
        let at = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| malformed(format!("{what} at byte {at} is not UTF-8")))
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let at = self.pos;
        let id = self.u32(what)?;
        ValueType::from_id(id)
            .ok_or_else(|| malformed(format!("{what} at byte {at}: unknown value type {id}")))
    }

    fn value(&mut self, what: &str, depth: usize) -> Result<Value> {
        let value_type = self.value_type(&format!("the type of {what}"))?;
        self.value_of(value_type, what, depth)
    }

    fn value_of(&mut self, value_type: ValueType, what: &str, depth: usize) -> Result<Value> {
        Ok(match value_type {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(malformed(format!(
                            "{what} at byte {at}: BOOL value {b} is neither 0 nor 1"
                        )));
                    }
                }
            }
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => self.array_value(what, depth)?,
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
        })
    }

    fn array_value(&mut self, what: &str, depth: usize) -> Result<Value> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(malformed(format!(
                "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
            )));
        }
        let element_type = self.value_type(&format!("the element type of {what}"))?;
        let count = self.count(
            &format!("the element count of {what}"),
            element_type.spec().min_bytes,
        )?;
        self.array_elements = self
            .array_elements
            .checked_add(count)
            .filter(|&n| n <= MAX_ARRAY_ELEMENTS)
            .ok_or_else(|| {
                malformed(format!(
                    "{what}: more than {MAX_ARRAY_ELEMENTS} array elements in the file"
                ))
            })?;
        let mut items = Vec::with_capacity(count);
        for i in 0..count {
            items.push(self.value_of(element_type, &format!("{what}[{i}]"), depth + 1)?);
        }
        Ok(Value::Array(element_type, items))
    }

    fn tensor_info(&mut self, index: usize, alignment: usize) -> Result<TensorInfo> {
        let name = self.string(&format!("the name of tensor {index}"))?;
        if name.contains('\0') {
            return Err(malformed(format!(
                "the name of tensor {index} ({name:?}) contains a NUL byte"
            )));
        }
        let at = self.pos;
        let n_dims = self.u32(&format!("tensor '{name}': its dimension count"))?;
        let rank = n_dims as usize;
        if rank == 0 || rank > MAX_DIMS {
            return Err(malformed(format!(
                "tensor '{name}': {n_dims} dimensions at byte {at} (GGUF has 1 to {MAX_DIMS})"
            )));
        }
        let mut dims = Vec::with_capacity(rank);
        for axis in 0..rank {
            let d = self.u64(&format!("tensor '{name}': dimension {axis}"))?;
            let d = usize::try_from(d)
                .ok()
                .filter(|&d| d > 0)
                .ok_or_else(|| malformed(format!("tensor '{name}': dimension {axis} is {d}")))?;
            dims.push(d);
        }
        let numel = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                malformed(format!(
                    "tensor '{name}': dimensions {dims:?} overflow the element count"
                ))
            })?;
        let ggml_type = self.u32(&format!("tensor '{name}': its type"))?;
        let offset = self.u64(&format!("tensor '{name}': its offset"))?;
        let offset = usize::try_from(offset)
            .ok()
            .filter(|o| o % alignment == 0)
            .ok_or_else(|| {
                malformed(format!(
                    "tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}"
                ))
            })?;
        let format = ggml_type::by_id(ggml_type).and_then(|t| t.format);
        let byte_len = match format {
            Some(format) => {
                let row = dims[0];
                if row % format.block_size() != 0 {
                    return Err(malformed(format!(
                        "tensor '{name}': rows of {row} elements are not whole {} blocks of {}",
                        format.name(),
                        format.block_size()
                    )));
                }
                Some(
                    format
                        .size_of(numel)
                        .map_err(|e| malformed(format!("tensor '{name}': {}", e.message())))?,
                )
            }
            None => None,
        };
        dims.reverse();
        Ok(TensorInfo {
            name,
            shape: dims,
            ggml_type,
            format,
            offset,
            byte_len,
        })
    }
}
