//! The store yardstick of `bench-quant`: how fast one thread writes a buffer,
//! measured two ways that the compiler cannot remove, so that dequantize (a
//! writer) is held against what a core can write and not against a store the
//! optimiser dropped.
//!
//! Every method writes a byte pattern that changes from run to run into a
//! buffer the compiler cannot see through (`std::hint::black_box`), and the
//! last pattern is read back from every page afterwards:
//! - `memset`: the C library's fill of the whole buffer (`<[u8]>::fill`),
//!   which picks its own stores (for large buffers, stores that skip reading
//!   the line first where the library judges it pays);
//! - `store loop`: a plain loop that copies a 32-byte pattern the compiler
//!   cannot know into each 32 bytes (ordinary stores, 16 bytes wide on the
//!   default x86-64 target, each line read before it is written), so it can
//!   neither turn it into a memset nor skip it;
//! - `non-temporal loop` (x86-64): 16-byte non-temporal stores, which write
//!   whole lines without reading them, as dequantize writes large outputs.
//!
//! The yardstick is the fastest. Ordinary stores move up to twice the bytes
//! of the others (the read of each line), so the three are expected within
//! about 2× of each other; a note is printed when they are more than 3× apart.

use super::bench_quant::median_seconds;
use std::hint::black_box;

/// The measurements, in GB/s of the buffer.
pub struct StoreYardstick {
    /// The C library's memset.
    pub memset_gbs: f64,
    /// The store loop.
    pub loop_gbs: f64,
    /// The non-temporal loop (None off x86-64).
    pub stream_gbs: Option<f64>,
}

impl StoreYardstick {
    fn all(&self) -> impl Iterator<Item = f64> + '_ {
        [self.memset_gbs, self.loop_gbs]
            .into_iter()
            .chain(self.stream_gbs)
    }

    /// The yardstick dequantize is held to: the fastest method, what one
    /// core can write.
    pub fn gbs(&self) -> f64 {
        self.all().fold(0.0, f64::max)
    }

    /// Whether the methods agree within a factor of 3 (they write the same
    /// bytes; a larger gap means one of them is not measuring stores).
    pub fn consistent(&self) -> bool {
        let slowest = self.all().fold(f64::INFINITY, f64::min);
        self.gbs() <= 3.0 * slowest
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
    #[cfg(target_arch = "x86_64")]
    let stream_gbs = {
        let stream_s = median_seconds(runs, || {
            pattern = black_box(pattern % 255 + 1);
            stream_fill(black_box(&mut *buf), pattern);
        });
        check_written(buf, pattern);
        Some(bytes / stream_s / 1e9)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let stream_gbs = None;
    StoreYardstick {
        memset_gbs: bytes / memset_s / 1e9,
        loop_gbs: bytes / loop_s / 1e9,
        stream_gbs,
    }
}

/// Fills `buf` with `pattern` by 16-byte non-temporal stores (SSE2, part of
/// every x86-64 CPU), its unaligned ends by ordinary ones.
#[cfg(target_arch = "x86_64")]
fn stream_fill(buf: &mut [u8], pattern: u8) {
    use std::arch::x86_64::{__m128i, _mm_set1_epi8, _mm_sfence, _mm_stream_si128};
    // SAFETY: SSE2 is part of every x86-64 CPU. Every bit pattern is a valid
    // __m128i, so viewing the aligned middle of the bytes as vectors is
    // sound; each store writes one of those aligned, writable slots; the
    // fence orders the streamed stores before the reads that follow.
    unsafe {
        let (head, middle, tail) = buf.align_to_mut::<__m128i>();
        head.fill(pattern);
        tail.fill(pattern);
        let v = _mm_set1_epi8(pattern as i8);
        for slot in middle {
            _mm_stream_si128(slot, v);
        }
        _mm_sfence();
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
