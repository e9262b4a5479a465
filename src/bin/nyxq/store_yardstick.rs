//! The store yardstick of `bench-quant`: how fast one thread writes a buffer,
//! measured two ways that the compiler cannot remove, so that dequantize (a
//! writer) is held against what a core can write and not against a store the
//! optimiser dropped.
//!
//! Both methods write a byte pattern that changes from run to run into a
//! buffer the compiler cannot see through (`std::hint::black_box`), and the
//! last pattern is read back from every page afterwards:
//! - `memset`: the C library's fill of the whole buffer (`<[u8]>::fill`),
//!   which picks its own stores (non-temporal ones for large buffers where
//!   the library judges it pays);
//! - `store loop`: a plain loop that copies a 32-byte pattern the compiler
//!   cannot know into each 32 bytes (ordinary stores, 16 bytes wide on the
//!   default x86-64 target), so it can neither turn it into a memset nor skip
//!   it.

use super::bench_quant::median_seconds;
use std::hint::black_box;

/// The two measurements, in GB/s of the buffer.
pub struct StoreYardstick {
    /// The C library's memset.
    pub memset_gbs: f64,
    /// The store loop.
    pub loop_gbs: f64,
}

impl StoreYardstick {
    /// The yardstick dequantize is held to: the faster of the two, what one
    /// core can write by the better method.
    pub fn gbs(&self) -> f64 {
        self.memset_gbs.max(self.loop_gbs)
    }

    /// Whether the two methods agree within a factor of 2 (they write the
    /// same bytes; a larger gap means one of them is not measuring stores).
    pub fn consistent(&self) -> bool {
        let (lo, hi) = (
            self.memset_gbs.min(self.loop_gbs),
            self.memset_gbs.max(self.loop_gbs),
        );
        hi <= 2.0 * lo
    }
}

/// Measures both methods on `buf` (median of `runs`, after a warm-up each).
pub fn measure(buf: &mut [u8], runs: usize) -> StoreYardstick {
    let bytes = buf.len() as f64;
    // 1..=255, changing every run: never zero, so no fill is a no-op on
    // freshly zeroed memory, and no run repeats the one before.
    let mut pattern = 0u8;
    let memset_s = median_seconds(runs, || {
        pattern = black_box(pattern % 255 + 1);
        black_box(&mut *buf).fill(pattern);
    });
    check_written(buf, pattern);
    let loop_s = median_seconds(runs, || {
        pattern = black_box(pattern % 255 + 1);
        let block = black_box([pattern; 32]);
        for chunk in black_box(&mut *buf).chunks_exact_mut(32) {
            chunk.copy_from_slice(&block);
        }
    });
    check_written(buf, pattern);
    StoreYardstick {
        memset_gbs: bytes / memset_s / 1e9,
        loop_gbs: bytes / loop_s / 1e9,
    }
}

/// Reads one byte of every 4 KiB page back (outside the timing): the last
/// run's stores happened.
fn check_written(buf: &[u8], pattern: u8) {
    let whole = buf.len() / 32 * 32;
    let ok = black_box(&buf[..whole])
        .iter()
        .step_by(4096)
        .all(|&b| b == pattern);
    assert!(
        ok,
        "the store yardstick's buffer does not hold what was written"
    );
}
