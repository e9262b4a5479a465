//! nyxq-owned tensors: a name, a shape, a format and the quantized bytes.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::format::Format;
use crate::quant::{self, QuantizeOptions};
use parking_lot::RwLock;
use std::sync::Arc;

/// Most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;

/// A quantized tensor in host memory. Rows run along the last dimension, which
/// must be a whole number of the format's blocks.
#[derive(Debug)]
pub struct Tensor {
    context: Arc<Context>,
    name: String,
    shape: Vec<usize>,
    numel: usize,
    format: Format,
    /// Allocated once at creation and never resized, so a view of it stays valid
    /// for the tensor's life.
    data: RwLock<Box<[u8]>>,
}

impl Tensor {
    /// A zero-filled tensor.
    pub fn new(
        context: Arc<Context>,
        name: &str,
        shape: &[usize],
        format: Format,
    ) -> Result<Tensor> {
        if shape.is_empty() || shape.len() > MAX_RANK {
            return Err(Error::invalid(format!(
                "tensor '{name}': rank {} is outside 1..={MAX_RANK}",
                shape.len()
            )));
        }
        if let Some(axis) = shape.iter().position(|&d| d == 0) {
            return Err(Error::invalid(format!(
                "tensor '{name}': dimension {axis} is 0"
            )));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::overflow(&format!("tensor '{name}' shape {shape:?}")))?;
        let row = shape[shape.len() - 1];
        if row % format.block_size() != 0 {
            return Err(Error::invalid(format!(
                "tensor '{name}': rows of {row} elements are not whole {} blocks of {}",
                format.name(),
                format.block_size()
            )));
        }
        let bytes = format.size_of(numel)?;
        let mut data = Vec::new();
        data.try_reserve_exact(bytes).map_err(|_| {
            Error::new(
                crate::ErrorKind::OutOfMemory,
                format!("tensor '{name}': cannot allocate {bytes} bytes"),
            )
        })?;
        data.resize(bytes, 0);
        Ok(Tensor {
            context,
            name: name.to_string(),
            shape: shape.to_vec(),
            numel,
            format,
            data: RwLock::new(data.into_boxed_slice()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.numel
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.context
    }

    /// Size of the quantized bytes.
    pub fn byte_len(&self) -> usize {
        self.data.read().len()
    }

    /// Quantizes `src` (exactly `numel` values) into the tensor.
    pub fn upload(&self, src: &[f32], opts: &QuantizeOptions) -> Result<()> {
        self.check_len(src.len(), "source")?;
        let opts = QuantizeOptions {
            threads: self.context.threads(),
            ..*opts
        };
        quant::quantize(self.format, src, &mut self.data.write(), &opts)
    }

    /// Dequantizes the tensor into `dst` (at least `numel` values).
    pub fn download(&self, dst: &mut [f32]) -> Result<()> {
        if dst.len() < self.numel {
            return Err(Error::buffer_too_small(
                "destination",
                "floats",
                self.numel,
                dst.len(),
            ));
        }
        quant::dequantize(
            self.format,
            &self.data.read(),
            &mut dst[..self.numel],
            self.context.threads(),
        )
    }

    /// A new tensor with the same name and shape in `format`.
    pub fn convert(&self, format: Format, opts: &QuantizeOptions) -> Result<Tensor> {
        let converted = Tensor::new(self.context.clone(), &self.name, &self.shape, format)?;
        let mut values = vec![0.0f32; self.numel];
        self.download(&mut values)?;
        converted.upload(&values, opts)?;
        Ok(converted)
    }

    /// Runs `f` over the quantized bytes.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.data.read())
    }

    /// Where the quantized bytes live; stable for the tensor's life.
    pub fn bytes_ptr(&self) -> *const u8 {
        self.data.read().as_ptr()
    }

    fn check_len(&self, len: usize, what: &str) -> Result<()> {
        if len != self.numel {
            return Err(Error::invalid(format!(
                "tensor '{}' has {} elements but the {what} has {len}",
                self.name, self.numel
            )));
        }
        Ok(())
    }
}
