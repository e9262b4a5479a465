//! The layout of every `#[repr(C)]` struct of the C ABI,
//! asserted at compile time here and in `cpp_tests/test_layout.cpp` on the C++
//! side, so the two cannot drift apart unnoticed (x86-64 and aarch64 LP64).

use super::context::{NyxqContextInfo, NyxqContextOptions};
use super::format::NyxqFormatInfo;
use super::quant::{NyxqErrorMetrics, NyxqQuantizeOptions};
use super::tensor::{NyxqTensorInfo, NyxqVkTensorBuffer};
use super::train::{NyxqAdamOptions, NyxqLossScalerOptions};
use super::vk_cmd::{NyxqVkBufferRange, NyxqVkRecorderUsage};
use std::mem::{offset_of, size_of};

const _: () = {
    assert!(size_of::<NyxqContextOptions>() == 64);
    assert!(offset_of!(NyxqContextOptions, vulkan_host_fallback) == 48);
    assert!(offset_of!(NyxqContextOptions, vulkan_fail_allocation) == 56);
    assert!(offset_of!(NyxqContextOptions, thread_count) == 16);
    assert!(offset_of!(NyxqContextOptions, config_path) == 24);
    assert!(offset_of!(NyxqContextOptions, vulkan_loader_path) == 32);
    assert!(offset_of!(NyxqContextOptions, vulkan_force_compat) == 44);
    assert!(size_of::<NyxqContextInfo>() == 296);
    assert!(offset_of!(NyxqContextInfo, fallback_reason) == 40);
    assert!(size_of::<NyxqFormatInfo>() == 32);
    assert!(offset_of!(NyxqFormatInfo, bits_per_weight) == 24);
    assert!(size_of::<NyxqQuantizeOptions>() == 48);
    assert!(offset_of!(NyxqQuantizeOptions, seed) == 16);
    assert!(offset_of!(NyxqQuantizeOptions, importance_len) == 40);
    assert!(size_of::<NyxqErrorMetrics>() == 32);
    assert!(size_of::<NyxqTensorInfo>() == 96);
    assert!(offset_of!(NyxqTensorInfo, numel) == 80);
    assert!(size_of::<NyxqLossScalerOptions>() == 32);
    assert!(offset_of!(NyxqLossScalerOptions, enabled) == 28);
    assert!(size_of::<NyxqAdamOptions>() == 32);
    assert!(offset_of!(NyxqAdamOptions, state) == 24);
    assert!(size_of::<NyxqVkBufferRange>() == 24);
    assert!(size_of::<NyxqVkRecorderUsage>() == 24);
    assert!(size_of::<NyxqVkTensorBuffer>() == 40);
    assert!(offset_of!(NyxqVkTensorBuffer, chunk_count) == 32);
};
