//! Importance from activations (ggml's imatrix, for training): per input
//! column `c` of a layer, the sum over tokens of `x[t][c]²` and the number of
//! tokens, so that the error-minimising quantizers weight each weight
//! `W[r][c]` by how strongly its input drives the output (the expected
//! squared error of `W·x` is `Σ_c E[x_c²]·Σ_r (ΔW[r][c])²`).
//!
//! The sums are f64: a column over millions of tokens adds millions of
//! terms, and f32 would keep about 7 significant digits of the total, losing
//! the late tokens' contribution; f64 keeps 16, so a sum is exact to far
//! beyond what the quantizer's search can see, with no compensation terms.
//! [`Importance::values`] gives the mean `Σx²/tokens` (f32): it does not grow
//! with the number of tokens (any run length gives comparable, finite
//! values), and the search, which minimises `Σ w·(x − x̂)²` block by block,
//! picks the same blocks for any positive multiple of the weights.
//!
//! A checkpoint (kind 3 of [`super::checkpoint`]'s header) has the body: u64
//! columns, u64 tokens, then the sums as f64, little-endian.

use super::checkpoint::{self, Fields, HEADER_BYTES, Kind, Reader};
use crate::alloc;
use crate::error::{Error, ErrorKind, Result};

/// Bytes of an importance checkpoint's body before the sums.
const FIXED: usize = 16;

/// Σx² per column and the tokens added, for one layer's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    sums: Vec<f64>,
    tokens: u64,
}

impl Importance {
    /// An empty accumulator for a layer input of `cols` columns.
    pub fn new(cols: usize) -> Result<Importance> {
        if cols == 0 {
            return Err(Error::invalid("an importance accumulator needs cols > 0"));
        }
        let bytes = cols
            .checked_mul(8)
            .ok_or_else(|| Error::overflow("the importance sums' bytes (cols * 8)"))?;
        if bytes > isize::MAX as usize {
            return Err(Error::overflow("the importance sums' bytes (cols * 8)"));
        }
        Ok(Importance {
            sums: alloc::filled(cols, 0.0, "importance: the sums per column")?,
            tokens: 0,
        })
    }

    /// Columns of the layer input.
    pub fn cols(&self) -> usize {
        self.sums.len()
    }

    /// Tokens added since creation or the last reset.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Σx² per column, as accumulated.
    pub fn sums(&self) -> &[f64] {
        &self.sums
    }

    /// Adds `tokens` rows of activations (`x`: tokens × cols, row-major).
    /// NaN or ±Inf is [`ErrorKind::NonFinite`] with its index in `x`, and
    /// then nothing is added.
    pub fn add(&mut self, x: &[f32], tokens: usize) -> Result<()> {
        let cols = self.cols();
        let expected = tokens
            .checked_mul(cols)
            .ok_or_else(|| Error::overflow("tokens * cols"))?;
        if x.len() != expected {
            return Err(Error::invalid(format!(
                "x holds {} floats; {tokens} tokens of {cols} columns are {expected}",
                x.len()
            )));
        }
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::new(
                ErrorKind::NonFinite { index },
                format!("x[{index}] = {} is not finite; nothing added", x[index]),
            ));
        }
        for row in x.chunks_exact(cols) {
            for (sum, &v) in self.sums.iter_mut().zip(row) {
                *sum += f64::from(v) * f64::from(v);
            }
        }
        self.tokens += tokens as u64;
        Ok(())
    }

    /// Adds sums made elsewhere (a device's Σx² per column over `tokens`
    /// tokens). A value that is NaN, ±Inf or negative is refused (NonFinite
    /// or InvalidArgument with its index) and nothing is added.
    pub fn add_sums(&mut self, sums: &[f32], tokens: u64) -> Result<()> {
        if sums.len() != self.cols() {
            return Err(Error::invalid(format!(
                "{} sums for an accumulator of {} columns",
                sums.len(),
                self.cols()
            )));
        }
        if let Some(index) = sums.iter().position(|v| !v.is_finite()) {
            return Err(Error::new(
                ErrorKind::NonFinite { index },
                format!(
                    "sums[{index}] = {} is not finite; nothing added",
                    sums[index]
                ),
            ));
        }
        if let Some(index) = sums.iter().position(|&v| v < 0.0) {
            return Err(Error::invalid(format!(
                "sums[{index}] = {} is negative: a sum of squares never is",
                sums[index]
            )));
        }
        let total = self
            .tokens
            .checked_add(tokens)
            .ok_or_else(|| Error::overflow("the token count"))?;
        for (sum, &v) in self.sums.iter_mut().zip(sums) {
            *sum += f64::from(v);
        }
        self.tokens = total;
        Ok(())
    }

    /// The per-column importance the quantizers take: the mean `Σx²/tokens`
    /// of each column, repeated over `out` (`out[i]` is column `i % cols`),
    /// whose length must be a positive multiple of `cols`. `cols` values are
    /// the importance of a row-major `[rows, cols]` weight matrix when `cols`
    /// is a whole number of the format's blocks; otherwise ask for
    /// lcm(cols, block size) values (a K-quant's 256 and 384 columns: 768).
    /// No tokens yet is InvalidArgument.
    pub fn values(&self, out: &mut [f32]) -> Result<()> {
        let cols = self.cols();
        Error::ensure_room("importance values", "floats", cols, out.len())?;
        if out.len() % cols != 0 {
            return Err(Error::invalid(format!(
                "{} importance values asked for: a whole number of rows of {cols} columns",
                out.len()
            )));
        }
        if self.tokens == 0 {
            return Err(Error::invalid(
                "no activations added yet: the importance of zero tokens is undefined",
            ));
        }
        let tokens = self.tokens as f64;
        for row in out.chunks_exact_mut(cols) {
            for (o, &sum) in row.iter_mut().zip(&self.sums) {
                *o = (sum / tokens) as f32;
            }
        }
        Ok(())
    }

    /// Back to zero sums and zero tokens.
    pub fn reset(&mut self) {
        self.sums.fill(0.0);
        self.tokens = 0;
    }

    /// Bytes of this accumulator's checkpoint.
    pub fn save_len(&self) -> usize {
        HEADER_BYTES + FIXED + 8 * self.cols()
    }

    /// Writes the checkpoint to the start of `out`; returns its length.
    pub fn save(&self, out: &mut [u8]) -> Result<usize> {
        let len = self.save_len();
        Error::ensure_room("checkpoint buffer", "bytes", len, out.len())?;
        let fixed = Fields::default().u64(self.cols() as u64).u64(self.tokens);
        out[HEADER_BYTES..HEADER_BYTES + FIXED].copy_from_slice(&fixed.0);
        for (o, sum) in out[HEADER_BYTES + FIXED..len]
            .chunks_exact_mut(8)
            .zip(&self.sums)
        {
            o.copy_from_slice(&sum.to_le_bytes());
        }
        checkpoint::write_header(Kind::Importance, &mut out[..len]);
        Ok(len)
    }

    /// Loads a checkpoint saved by an accumulator of the same column count;
    /// nothing changes on error.
    pub fn load(&mut self, bytes: &[u8]) -> Result<()> {
        let body = checkpoint::read_header(Kind::Importance, bytes)?;
        if body.len() < FIXED {
            return Err(Error::invalid(format!(
                "importance checkpoint: a body of {} bytes, shorter than its {FIXED} fixed bytes",
                body.len()
            )));
        }
        let (fixed, sums) = body.split_at(FIXED);
        let mut r = Reader(fixed);
        let (cols, tokens) = (r.u64(), r.u64());
        if cols != self.cols() as u64 {
            return Err(Error::invalid(format!(
                "importance checkpoint of {cols} columns; this accumulator has {}",
                self.cols()
            )));
        }
        if sums.len() != 8 * self.cols() {
            return Err(Error::invalid(format!(
                "importance checkpoint: {} bytes of sums, {cols} columns take {}",
                sums.len(),
                8 * self.cols()
            )));
        }
        let values: Vec<f64> = sums
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect();
        if let Some(index) = values.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::invalid(format!(
                "importance checkpoint: sum {index} is {}, not a finite value >= 0",
                values[index]
            )));
        }
        self.sums.copy_from_slice(&values);
        self.tokens = tokens;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
