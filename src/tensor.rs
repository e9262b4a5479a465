//! nyxq-owned tensors: a name, a shape, a format and the quantized bytes, in
//! host memory or in device-local Vulkan buffers.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::format::{Format, VulkanFamily};
use crate::quant::{self, QuantizeOptions};
use parking_lot::RwLock;
use std::sync::Arc;

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Host memory (a view of it is nyxq_tensor_data).
    Host,
    /// Device-local memory of the context's Vulkan device.
    Device,
}

#[derive(Debug)]
enum Storage {
    /// Allocated once and never resized, so a view of it stays valid until the
    /// tensor is destroyed or migrated.
    Host(Box<[u8]>),
    Device(crate::vk::storage::DeviceStorage),
}

/// A quantized tensor. Rows run along the last dimension, which must be a
/// whole number of the format's blocks.
#[derive(Debug)]
pub struct Tensor {
    context: Arc<Context>,
    name: String,
    shape: Vec<usize>,
    numel: usize,
    format: Format,
    byte_len: usize,
    data: RwLock<Storage>,
}

impl Tensor {
    /// A zero-filled tensor.
    pub fn new(
        context: Arc<Context>,
        name: &str,
        shape: &[usize],
        format: Format,
    ) -> Result<Tensor> {
        crate::shape::check_rank(name, shape.len())?;
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
        Ok(Tensor {
            context,
            name: name.to_string(),
            shape: shape.to_vec(),
            numel,
            format,
            byte_len: bytes,
            data: RwLock::new(Storage::Host(host_bytes(name, bytes)?)),
        })
    }

    /// A zero-filled tensor in `placement`. A device allocation that fails is
    /// an OutOfDeviceMemory error, or, where the context allows host fallback,
    /// a host tensor (logged; [`Tensor::placement`] says which).
    pub fn new_in(
        context: Arc<Context>,
        name: &str,
        shape: &[usize],
        format: Format,
        placement: Placement,
    ) -> Result<Tensor> {
        let tensor = Tensor::new(context, name, shape, format)?;
        if placement == Placement::Device {
            tensor.migrate(Placement::Device)?;
        }
        Ok(tensor)
    }

    /// A host tensor holding a copy of `bytes`, which must be exactly the
    /// format's bytes for the shape (a GGUF tensor, a file's contents).
    pub fn from_bytes(
        context: Arc<Context>,
        name: &str,
        shape: &[usize],
        format: Format,
        bytes: &[u8],
    ) -> Result<Tensor> {
        let tensor = Tensor::new(context, name, shape, format)?;
        if bytes.len() != tensor.byte_len {
            return Err(Error::invalid(format!(
                "tensor '{name}': {} bytes given, its shape in {} has {}",
                bytes.len(),
                format.name(),
                tensor.byte_len
            )));
        }
        if let Storage::Host(own) = &mut *tensor.data.write() {
            own.copy_from_slice(bytes);
        }
        Ok(tensor)
    }

    /// Calls `read` with the quantized bytes: a host tensor's own (under its
    /// read lock), a device tensor's copied to the host in pieces of whole
    /// blocks, in order.
    pub fn read_bytes(&self, mut read: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        match &*self.data.read() {
            Storage::Host(bytes) => read(bytes),
            Storage::Device(storage) => {
                storage.read_with(self.format.block_bytes() as u64, |_, piece| read(piece))
            }
        }
    }

    /// Where the bytes are now.
    pub fn placement(&self) -> Placement {
        match &*self.data.read() {
            Storage::Host(_) => Placement::Host,
            Storage::Device(_) => Placement::Device,
        }
    }

    /// Moves the bytes to `placement` (unchanged). Moving to the device
    /// allocates everything first: on failure the tensor stays on the host,
    /// intact, and the error is OutOfDeviceMemory, or Ok when the context
    /// allows host fallback (logged). Views from [`Tensor::bytes_ptr`] become
    /// invalid when a host tensor moves.
    pub fn migrate(&self, placement: Placement) -> Result<()> {
        let mut data = self.data.write();
        let moved = match (&*data, placement) {
            (Storage::Host(bytes), Placement::Device) => {
                let engine = self.context.vulkan().ok_or_else(|| {
                    Error::unsupported(format!(
                        "tensor '{}': the context runs on the CPU; it has no device memory",
                        self.name
                    ))
                })?;
                // Device tensors feed the Vulkan matvec kernels.
                self.format
                    .require_vulkan(VulkanFamily::Matvec)
                    .map_err(|e| {
                        Error::unsupported(format!(
                            "tensor '{}' cannot live in device memory: {}",
                            self.name,
                            e.message()
                        ))
                    })?;
                let row = self.format.size_of(self.shape[self.shape.len() - 1])? as u64;
                let storage = match crate::vk::storage::DeviceStorage::allocate(
                    engine,
                    bytes.len() as u64,
                    row,
                ) {
                    Ok(s) => s,
                    Err(e)
                        if e.kind() == crate::ErrorKind::OutOfDeviceMemory
                            && self.context.host_fallback() =>
                    {
                        log::warn!("nyxq: tensor '{}' stays in host memory: {e}", self.name);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                let unit = self.format.block_bytes() as u64;
                storage.write_with(unit, |first, out| {
                    let first = first as usize;
                    out.copy_from_slice(&bytes[first..first + out.len()]);
                    Ok(())
                })?;
                Storage::Device(storage)
            }
            (Storage::Device(storage), Placement::Host) => {
                storage.check_not_bound_by_recordings(&self.name, "move it to the host")?;
                let mut bytes = host_bytes(&self.name, self.byte_len)?;
                storage.read_with(self.format.block_bytes() as u64, |first, piece| {
                    let first = first as usize;
                    bytes[first..first + piece.len()].copy_from_slice(piece);
                    Ok(())
                })?;
                Storage::Host(bytes)
            }
            _ => return Ok(()),
        };
        *data = moved;
        Ok(())
    }

    /// Refuses (InvalidArgument) to let a device tensor go while unreleased
    /// recorded dispatches of its context bind its buffers.
    pub fn check_no_unreleased_recordings(&self) -> Result<()> {
        match &*self.data.read() {
            Storage::Host(_) => Ok(()),
            Storage::Device(d) => d.check_not_bound_by_recordings(&self.name, "destroy it"),
        }
    }

    /// The device buffers of a device tensor: (buffer, bytes, first byte) per
    /// chunk of whole rows; None on the host.
    pub fn device_chunks(&self) -> Option<Vec<(ash::vk::Buffer, u64, u64)>> {
        match &*self.data.read() {
            Storage::Host(_) => None,
            Storage::Device(d) => Some(
                d.chunks()
                    .iter()
                    .map(|c| (c.buffer.buffer, c.len, c.first_byte))
                    .collect(),
            ),
        }
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
        self.byte_len
    }

    /// Quantizes `src` (exactly `numel` values) into the tensor. A device
    /// tensor is quantized on the CPU into staging memory, piece by piece, and
    /// copied; input errors are found before anything is written.
    pub fn upload(&self, src: &[f32], opts: &QuantizeOptions) -> Result<()> {
        self.check_len(src.len(), "source")?;
        let opts = QuantizeOptions {
            threads: self.context.threads(),
            ..*opts
        };
        match &mut *self.data.write() {
            Storage::Host(bytes) => quant::quantize(self.format, src, bytes, &opts),
            Storage::Device(storage) => {
                // Nothing is written when the input is rejected.
                quant::check_first_index(opts.first_index, src.len())?;
                quant::limits::check(self.format, src, opts.non_finite, 0)?;
                let (block, block_bytes) = (self.format.block_size(), self.format.block_bytes());
                storage.write_with(block_bytes as u64, |first, out| {
                    let e0 = first as usize / block_bytes * block;
                    let n = out.len() / block_bytes * block;
                    let piece = QuantizeOptions {
                        first_index: opts.first_index + e0 as u64,
                        ..opts
                    };
                    quant::quantize(self.format, &src[e0..e0 + n], out, &piece)
                })
            }
        }
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
        let threads = self.context.threads();
        match &*self.data.read() {
            Storage::Host(bytes) => {
                quant::dequantize(self.format, bytes, &mut dst[..self.numel], threads)
            }
            Storage::Device(storage) => {
                let (block, block_bytes) = (self.format.block_size(), self.format.block_bytes());
                storage.read_with(block_bytes as u64, |first, piece| {
                    let e0 = first as usize / block_bytes * block;
                    let n = piece.len() / block_bytes * block;
                    quant::dequantize(self.format, piece, &mut dst[e0..e0 + n], threads)
                })
            }
        }
    }

    /// A new tensor with the same name, shape and placement in `format`.
    pub fn convert(&self, format: Format, opts: &QuantizeOptions) -> Result<Tensor> {
        let converted = Tensor::new_in(
            self.context.clone(),
            &self.name,
            &self.shape,
            format,
            self.placement(),
        )?;
        let what = format!("tensor '{}': conversion buffer", self.name);
        let mut values = crate::alloc::filled(self.numel, 0.0f32, &what)?;
        self.download(&mut values)?;
        converted.upload(&values, opts)?;
        Ok(converted)
    }

    /// Where the quantized bytes of a host tensor live; stable until the
    /// tensor is destroyed or migrated. None for a device tensor.
    pub fn bytes_ptr(&self) -> Option<*const u8> {
        match &*self.data.read() {
            Storage::Host(bytes) => Some(bytes.as_ptr()),
            Storage::Device(_) => None,
        }
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

/// `len` zero bytes, or OutOfMemory naming the tensor.
fn host_bytes(name: &str, len: usize) -> Result<Box<[u8]>> {
    Ok(crate::alloc::filled(len, 0, &format!("tensor '{name}'"))?.into_boxed_slice())
}
