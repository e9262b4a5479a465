//! Training helpers the trainer calls from its loop: dynamic loss scaling
//! ([`loss_scale`]), Adam with 8-bit blockwise state ([`adam`], whose
//! arithmetic is [`adam_math`]'s) and the checkpoints of both
//! ([`checkpoint`]), and the importance of each layer input's columns from
//! the activations the trainer sees ([`importance`]). Fake quantization and stochastic rounding of master
//! weights are the quant kernels themselves ([`crate::quant::fake_quantize`],
//! [`crate::quant::quantize`] with [`crate::quant::Rounding::Stochastic`]).

pub mod adam;
pub mod adam_math;
pub mod checkpoint;
pub mod importance;
pub mod loss_scale;
