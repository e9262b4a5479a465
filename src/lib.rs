//! nyxq: the quantization library of the Nyx trainer.
//!
//! Rust owns the memory and the kernels; the C++ trainer owns the model and the
//! loop and calls the C ABI in [`ffi`] (header `include/nyxq.h`). The safe
//! modules know nothing of C:
//!
//! - [`format`]: storage formats, their block and byte sizes;
//! - [`quant`]: CPU quantize / dequantize / fake-quantize kernels and error metrics;
//! - [`context`]: the backend a caller works with and its settings;
//! - [`tensor`]: nyxq-owned quantized tensors;
//! - [`gguf`]: GGUF files in and out;
//! - [`ffi`]: the C ABI, and nothing else.

pub mod alloc;
pub mod config;
pub mod context;
pub mod cpu_kernels;
pub mod data;
pub mod device_report;
pub mod error;
pub mod ffi;
pub mod format;
pub mod gguf;
pub mod logging;
pub mod matvec;
pub mod plan;
pub mod quant;
pub mod quiet_panic;
pub mod shape;
pub mod tensor;
pub mod train;
pub mod vk;

pub use error::{Error, ErrorKind, Result};
pub use format::Format;
