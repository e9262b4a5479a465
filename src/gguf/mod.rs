//! GGUF, the file format of ggml and llama.cpp: nyxq tensors out to a GGUF
//! file and back, with key/value metadata.
//!
//! A GGUF file (version 3, little-endian) is a header (magic `GGUF`, version,
//! tensor count, metadata count), the metadata key/values, one info per
//! tensor (name, dimensions innermost first, ggml type id, data offset), then
//! the tensor data, each tensor at a multiple of the alignment
//! (`general.alignment`, 32 unless set). nyxq's formats have ggml's byte
//! layouts, so a tensor's bytes go to the file unchanged.
//!
//! - [`value`]: the metadata value types and values;
//! - [`ggml_type`]: ggml's type ids and the nyxq format of each;
//! - [`reader`]: parsing a file, every size, offset and count checked;
//! - [`writer`]: writing one;
//! - [`tensors`]: nyxq tensors to and from GGUF.

pub mod ggml_type;
pub mod reader;
pub mod tensors;
pub mod value;
pub mod writer;

use crate::error::{Error, Result};
use crate::format::Format;
pub use value::{Value, ValueType};

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// The version nyxq writes (and the newest it reads; version 2 has the same
/// layout and is read too).
pub const VERSION: u32 = 3;

/// The metadata key that sets the alignment of the tensor data.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The alignment when the file does not set one.
pub const DEFAULT_ALIGNMENT: usize = 32;

/// Most dimensions a GGUF tensor has (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: usize = 4;

/// Longest tensor name ggml accepts, in bytes (GGML_MAX_NAME less its NUL).
pub const MAX_NAME_BYTES: usize = 63;

/// Most array elements, all arrays of a file together, that the reader
/// accepts: a vocabulary of 256 Ki tokens and its merges fit many times over,
/// and a hostile file cannot make the reader hold billions of values.
pub const MAX_ARRAY_ELEMENTS: usize = 1 << 24;

/// Deepest nesting of arrays in arrays the reader accepts.
pub const MAX_ARRAY_DEPTH: usize = 4;

/// One tensor of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Its dimensions, outermost first (the file stores them innermost first).
    pub shape: Vec<usize>,
    /// Its ggml type id.
    pub ggml_type: u32,
    /// The nyxq format of that type, if nyxq has it.
    pub format: Option<Format>,
    /// Where its bytes start, from the start of the data section.
    pub offset: usize,
    /// How many bytes it has (None for a type nyxq does not know).
    pub byte_len: Option<usize>,
}

impl TensorInfo {
    /// Elements (the product of the shape; the reader checked it fits).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Its format, or an Unsupported error naming the tensor and its type.
    pub fn require_format(&self) -> Result<Format> {
        self.format.ok_or_else(|| {
            Error::unsupported(format!(
                "tensor '{}': GGML type {} is not a nyxq format (nyxq reads {})",
                self.name,
                ggml_type::describe(self.ggml_type),
                known_type_names()
            ))
        })
    }
}

/// The ggml types nyxq reads, for messages.
fn known_type_names() -> String {
    ggml_type::GGML_TYPES
        .iter()
        .filter(|t| t.format.is_some())
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed GGUF file: its metadata, tensor infos and bytes.
#[derive(Debug)]
pub struct GgufFile {
    /// The file's version (2 or 3).
    pub version: u32,
    /// The alignment of its tensor data.
    pub alignment: usize,
    /// Its key/values, in file order.
    pub metadata: Vec<(String, Value)>,
    /// Its tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl GgufFile {
    /// The value of `key`, if the file has it.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The bytes of tensor `index`, or an error for a type nyxq does not know.
    pub fn tensor_bytes(&self, index: usize) -> Result<&[u8]> {
        let info = self.tensors.get(index).ok_or_else(|| {
            Error::invalid(format!(
                "tensor index {index} is not below the tensor count {}",
                self.tensors.len()
            ))
        })?;
        info.require_format()?;
        let len = info.byte_len.expect("a known format has a byte length");
        // The reader checked that the range lies inside the file.
        let start = self.data_start + info.offset;
        Ok(&self.bytes[start..start + len])
    }

    /// Ok when every tensor is in a nyxq format, else the error of the first
    /// that is not.
    pub fn require_formats(&self) -> Result<()> {
        self.tensors
            .iter()
            .try_for_each(|t| t.require_format().map(drop))
    }

    /// Bytes of the whole file.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }
}

/// `offset` rounded up to a multiple of `alignment` (a power of two), or
/// None on overflow.
pub fn align_up(offset: usize, alignment: usize) -> Option<usize> {
    offset
        .checked_add(alignment - 1)
        .map(|end| end & !(alignment - 1))
}

#[cfg(test)]
mod tests;
