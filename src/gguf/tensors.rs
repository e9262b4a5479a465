//! nyxq tensors to and from GGUF files.

use super::writer::{self, TensorSource};
use super::{GgufFile, Value, reader};
use crate::context::Context;
use crate::error::Result;
use crate::format::Format;
use crate::tensor::Tensor;
use std::path::Path;
use std::sync::Arc;

impl TensorSource for Tensor {
    fn name(&self) -> &str {
        Tensor::name(self)
    }

    fn shape(&self) -> &[usize] {
        Tensor::shape(self)
    }

    fn format(&self) -> Format {
        Tensor::format(self)
    }

    fn with_bytes(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.read_bytes(sink)
    }
}

/// Writes `tensors` and `metadata` as a GGUF file at `path`, replacing it
/// only once the new file is complete ([`writer::write_to_path`]).
pub fn write_file(path: &Path, metadata: &[(String, Value)], tensors: &[&Tensor]) -> Result<()> {
    let sources: Vec<&dyn TensorSource> = tensors.iter().map(|&t| t as &dyn TensorSource).collect();
    writer::write_to_path(path, metadata, &sources)
}

/// Tensor `index` of `file` as a new host tensor of `context`.
pub fn load_tensor(context: &Arc<Context>, file: &GgufFile, index: usize) -> Result<Tensor> {
    let bytes = file.tensor_bytes(index)?;
    let info = &file.tensors[index];
    let format = info.require_format()?;
    Tensor::from_bytes(context.clone(), &info.name, &info.shape, format, bytes)
}

/// Reads the GGUF file at `path`, refusing it unless every tensor is in a
/// nyxq format.
pub fn read_file(path: &Path) -> Result<GgufFile> {
    let file = reader::read_file(path)?;
    file.require_formats()?;
    Ok(file)
}

/// As [`read_file`], from a copy of the file's bytes.
pub fn parse_bytes(bytes: &[u8]) -> Result<GgufFile> {
    let file = reader::parse(crate::alloc::copied(bytes, "the GGUF bytes")?)?;
    file.require_formats()?;
    Ok(file)
}
