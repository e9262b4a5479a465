//! Device-local storage of a nyxq-owned tensor: its bytes split into chunks
//! of whole rows, each its own buffer (no allocation above 1 GiB, no chunk
//! above maxStorageBufferRange, so a trainer's shader can bind any chunk
//! whole), and host transfers through mapped staging buffers.

use super::engine::Engine;
use super::memory::{Buffer, MAX_ALLOCATION};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Bytes of one staging buffer (host-visible), reused chunk by chunk.
const STAGING_BYTES: u64 = 64 << 20;

/// One chunk: a device-local buffer holding `len` bytes that start at byte
/// `first_byte` of the tensor.
pub struct Chunk {
    pub buffer: Buffer,
    pub first_byte: u64,
    pub len: u64,
}

/// A tensor's bytes on the device.
pub struct DeviceStorage {
    engine: Arc<Engine>,
    chunks: Vec<Chunk>,
    len: u64,
}

impl std::fmt::Debug for DeviceStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStorage")
            .field("chunks", &self.chunks.len())
            .field("len", &self.len)
            .finish()
    }
}

impl DeviceStorage {
    /// Allocates `len` bytes in chunks of whole `row_bytes` rows (every
    /// allocation or none: on failure, what was allocated is freed).
    pub fn allocate(engine: &Arc<Engine>, len: u64, row_bytes: u64) -> Result<DeviceStorage> {
        let info = &engine.device.info;
        let limit = MAX_ALLOCATION
            .min(info.max_allocation_bytes)
            .min(u64::from(info.max_storage_buffer_range));
        let rows_per_chunk = limit / row_bytes;
        if rows_per_chunk == 0 {
            return Err(Error::unsupported(format!(
                "a row of {row_bytes} bytes exceeds the device's largest buffer range ({limit} bytes)"
            )));
        }
        let chunk_bytes = rows_per_chunk * row_bytes;
        let mut chunks = Vec::new();
        let mut first = 0u64;
        while first < len {
            let n = chunk_bytes.min(len - first);
            chunks.push(Chunk {
                buffer: Buffer::new(&engine.device, n.div_ceil(4) * 4, false)?,
                first_byte: first,
                len: n,
            });
            first += n;
        }
        Ok(DeviceStorage {
            engine: engine.clone(),
            chunks,
            len,
        })
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the tensor's bytes: `fill(first_byte, out)` produces the bytes
    /// at `first_byte..first_byte + out.len()` into mapped staging memory
    /// (pieces are multiples of `unit` bytes), then the GPU copies them.
    pub fn write_with(
        &self,
        unit: u64,
        mut fill: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let mut staging = self.staging(unit)?;
        for chunk in &self.chunks {
            let mut done = 0u64;
            while done < chunk.len {
                let n = (staging.size / unit * unit).min(chunk.len - done);
                fill(
                    chunk.first_byte + done,
                    &mut staging.mapped_mut()[..n as usize],
                )?;
                self.engine.queue().copy_region(
                    (staging.buffer, 0),
                    (chunk.buffer.buffer, done),
                    n,
                )?;
                done += n;
            }
        }
        Ok(())
    }

    /// Reads the tensor's bytes: the GPU copies them to mapped staging memory
    /// and `consume(first_byte, bytes)` takes each piece (multiples of `unit`).
    pub fn read_with(
        &self,
        unit: u64,
        mut consume: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let staging = self.staging(unit)?;
        for chunk in &self.chunks {
            let mut done = 0u64;
            while done < chunk.len {
                let n = (staging.size / unit * unit).min(chunk.len - done);
                self.engine.queue().copy_region(
                    (chunk.buffer.buffer, done),
                    (staging.buffer, 0),
                    n,
                )?;
                consume(chunk.first_byte + done, &staging.mapped()[..n as usize])?;
                done += n;
            }
        }
        Ok(())
    }

    /// Refuses (InvalidArgument) while dispatches recorded through the
    /// engine's context bind one of the chunks' buffers and are unreleased:
    /// destroying the buffers could pull them from under pending work.
    pub fn check_not_bound_by_recordings(&self, tensor: &str, action: &str) -> Result<()> {
        let buffers: Vec<_> = self.chunks.iter().map(|c| c.buffer.buffer).collect();
        self.engine.poll_releases_before_a_check();
        let recorder = self.engine.recorder();
        let tickets = recorder.unreleased_tickets_binding(&buffers);
        if tickets == 0 {
            return Ok(());
        }
        let last = recorder.usage().last_ticket;
        Err(Error::invalid(format!(
            "tensor '{tensor}': {tickets} recorded ticket(s) not released bind its device \
             buffers, which command buffers may still use: wait for the submissions that hold \
             them, then call nyxq_vk_release(ctx, {last}) before you {action}; nothing was changed"
        )))
    }

    fn staging(&self, unit: u64) -> Result<Buffer> {
        let biggest = self.chunks.iter().map(|c| c.len).max().unwrap_or(0);
        let size = STAGING_BYTES.max(unit).min(biggest.max(unit));
        Buffer::new(&self.engine.device, size.div_ceil(4) * 4, true)
    }
}
