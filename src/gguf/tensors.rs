//! nyxq tensors to and from GGUF files.

use super::writer::{self, TensorSource};
use super::{GgufFile, Value, reader};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::tensor::Tensor;
use std::io::BufWriter;
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

/// Writes `tensors` and `metadata` as a GGUF file at `path` (replaced if it
/// exists). On an error after the file was created, it is removed.
pub fn write_file(path: &Path, metadata: &[(String, Value)], tensors: &[&Tensor]) -> Result<()> {
    let sources: Vec<&dyn TensorSource> = tensors.iter().map(|&t| t as &dyn TensorSource).collect();
    // Refuse bad arguments before the file is touched.
    writer::check(metadata, &sources)?;
    let file = std::fs::File::create(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot create {}: {e}", path.display()),
        )
    })?;
    let mut out = BufWriter::new(file);
    let result = writer::write(&mut out, metadata, &sources).and_then(|()| {
        out.into_inner()
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", path.display())))
            .and_then(|f| {
                f.sync_all()
                    .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", path.display())))
            })
    });
    if result.is_err() {
        // The error is the caller's news; a file that cannot be removed
        // either changes nothing about it.
        let _ = std::fs::remove_file(path);
    }
    result
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
