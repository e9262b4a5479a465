//! Training helpers the trainer calls from its loop: dynamic loss scaling
//! ([`loss_scale`]) and Adam with 8-bit blockwise state ([`adam`]).
//! Fake quantization and stochastic rounding of master weights are the quant
//! kernels themselves ([`crate::quant::fake_quantize`], [`crate::quant::quantize`]
//! with [`crate::quant::Rounding::Stochastic`]).

pub mod adam;
pub mod loss_scale;
