//! Writing a GGUF file (version 3): the header, the metadata, the tensor
//! infos, then each tensor's bytes at a multiple of the alignment.

use super::value::Value;
use super::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, MAX_NAME_BYTES, VERSION, align_up, ggml_type,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A tensor to write: its description, and its bytes on demand.
pub trait TensorSource {
    /// Its name (unique in the file, at most [`MAX_NAME_BYTES`] bytes).
    fn name(&self) -> &str;
    /// Its dimensions, outermost first (1 to [`MAX_DIMS`]).
    fn shape(&self) -> &[usize];
    /// Its format.
    fn format(&self) -> Format;
    /// Calls `sink` with its bytes (the format's layout), in one or more pieces.
    fn with_bytes(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>;
}

/// Writes a GGUF file of `metadata` and `tensors` to `out`. The alignment is
/// 32 unless `metadata` sets `general.alignment` (a UINT32 power of two).
/// Nothing is written when an argument is refused (duplicate or empty names
/// and keys, a name too long for ggml, a shape GGUF cannot hold).
pub fn write(
    out: &mut dyn Write,
    metadata: &[(String, Value)],
    tensors: &[&dyn TensorSource],
) -> Result<()> {
    let (alignment, sizes) = check(metadata, tensors)?;
    let mut header = Vec::new();
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut header, key);
        header.extend_from_slice(&value.value_type().id().to_le_bytes());
        put_value(&mut header, value);
    }
    let mut offset = 0usize;
    for (tensor, &size) in tensors.iter().zip(&sizes) {
        put_string(&mut header, tensor.name());
        header.extend_from_slice(&(tensor.shape().len() as u32).to_le_bytes());
        for &d in tensor.shape().iter().rev() {
            header.extend_from_slice(&(d as u64).to_le_bytes());
        }
        header.extend_from_slice(&ggml_type::id_of(tensor.format()).to_le_bytes());
        header.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = align_up(offset, alignment)
            .and_then(|o| o.checked_add(size))
            .and_then(|end| align_up(end, alignment))
            .ok_or_else(|| Error::overflow("the GGUF data section"))?;
    }
    let padded = align_up(header.len(), alignment).ok_or_else(|| Error::overflow("GGUF header"))?;
    header.resize(padded, 0);
    write_all(out, &header)?;
    for (tensor, &size) in tensors.iter().zip(&sizes) {
        let mut written = 0usize;
        tensor.with_bytes(&mut |piece| {
            written += piece.len();
            write_all(out, piece)
        })?;
        if written != size {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "tensor '{}' gave {written} bytes, not {size}",
                    tensor.name()
                ),
            ));
        }
        let pad = align_up(size, alignment).expect("checked above") - size;
        write_all(out, &vec![0u8; pad])?;
    }
    out.flush().map_err(io_error)
}

/// Checks what [`write`] would refuse; returns the alignment and each
/// tensor's byte count.
pub fn check(
    metadata: &[(String, Value)],
    tensors: &[&dyn TensorSource],
) -> Result<(usize, Vec<usize>)> {
    Ok((check_metadata(metadata)?, check_tensors(tensors)?))
}

/// Writes the file at `path` through a temporary file beside it, renamed
/// over `path` once complete: on any error `path` keeps what it held (or
/// stays absent) and the temporary file is removed. Arguments are checked
/// before anything is created.
pub fn write_to_path(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[&dyn TensorSource],
) -> Result<()> {
    check(metadata, tensors)?;
    let io = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("cannot {what} {}: {e}", path.display()),
        )
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let result = (|| {
        let file = std::fs::File::create(&partial).map_err(|e| io("create a file beside", e))?;
        let mut out = BufWriter::new(file);
        write(&mut out, metadata, tensors)?;
        let file = out.into_inner().map_err(|e| io("write", e.into_error()))?;
        file.sync_all().map_err(|e| io("write", e))?;
        std::fs::rename(&partial, path).map_err(|e| io("replace", e))
    })();
    if result.is_err() {
        // The error is the caller's news; a partial file that cannot be
        // removed changes nothing about it.
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn write_all(out: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes).map_err(io_error)
}

fn io_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("writing the GGUF file: {e}"))
}

/// Checks keys (non-empty, distinct) and values (arrays of one type, no
/// array of arrays of mixed types), and returns the alignment.
fn check_metadata(metadata: &[(String, Value)]) -> Result<usize> {
    let mut keys = HashSet::new();
    for (key, value) in metadata {
        if key.is_empty() || key.contains('\0') {
            return Err(Error::invalid(format!(
                "GGUF metadata key {key:?} is empty or holds a NUL byte"
            )));
        }
        if !keys.insert(key.as_str()) {
            return Err(Error::invalid(format!(
                "GGUF metadata key '{key}' appears twice"
            )));
        }
        check_value(key, value)?;
    }
    match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, Value::U32(a))) if a.is_power_of_two() => Ok(*a as usize),
        Some(_) => Err(Error::invalid(format!(
            "{ALIGNMENT_KEY} must be a UINT32 power of two"
        ))),
    }
}

fn check_value(key: &str, value: &Value) -> Result<()> {
    if let Value::Array(element_type, items) = value {
        for item in items {
            if item.value_type() != *element_type {
                return Err(Error::invalid(format!(
                    "GGUF metadata '{key}': an array of {} holds a {}",
                    element_type.spec().name,
                    item.value_type().spec().name
                )));
            }
            check_value(key, item)?;
        }
    }
    Ok(())
}

/// Checks names and shapes, and returns each tensor's byte count.
fn check_tensors(tensors: &[&dyn TensorSource]) -> Result<Vec<usize>> {
    let mut names = HashSet::new();
    let mut sizes = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let name = tensor.name();
        if name.contains('\0') {
            return Err(Error::invalid(format!(
                "tensor {name:?}: a GGUF tensor name holds no NUL byte"
            )));
        }
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(Error::invalid(format!(
                "tensor '{name}': a GGUF tensor name has 1 to {MAX_NAME_BYTES} bytes \
                 (ggml's limit), this one {}",
                name.len()
            )));
        }
        if !names.insert(name) {
            return Err(Error::invalid(format!(
                "tensor name '{name}' appears twice"
            )));
        }
        let shape = tensor.shape();
        if shape.is_empty() || shape.len() > MAX_DIMS {
            return Err(Error::invalid(format!(
                "tensor '{name}': rank {} does not fit GGUF (1 to {MAX_DIMS} dimensions)",
                shape.len()
            )));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::overflow(&format!("tensor '{name}' shape {shape:?}")))?;
        sizes.push(tensor.format().size_of(numel)?);
    }
    Ok(sizes)
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::Array(element_type, items) => {
            out.extend_from_slice(&element_type.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}
