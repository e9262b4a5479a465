//! The Vulkan suite, one test program: every module below is a file of
//! tests/ (Cargo.toml lists the programs). One program, so the shared child
//! process of each row of the environment table (vk_support) runs the tests
//! of every module that names the row, and the crate is built and linked
//! once.

mod matvec_support;
mod vk_support;

#[path = "vk_adam.rs"]
mod vk_adam;
#[path = "vk_context.rs"]
mod vk_context;
#[path = "vk_kernels.rs"]
mod vk_kernels;
#[path = "vk_matmul.rs"]
mod vk_matmul;
#[path = "vk_matvec.rs"]
mod vk_matvec;
#[path = "vk_matvec_c_abi.rs"]
mod vk_matvec_c_abi;
#[path = "vk_matvec_choice.rs"]
mod vk_matvec_choice;
#[path = "vk_matvec_large.rs"]
mod vk_matvec_large;
#[path = "vk_matvec_pre_rounded.rs"]
mod vk_matvec_pre_rounded;
#[path = "vk_matvec_record.rs"]
mod vk_matvec_record;
#[path = "vk_memory.rs"]
mod vk_memory;
#[path = "vk_record.rs"]
mod vk_record;
#[path = "vk_tensor.rs"]
mod vk_tensor;
