//! The layout of every `#[repr(C)]` struct and the value of every enum
//! constant of the C ABI, as C++ `static_assert`s with the numbers of the Rust
//! types. build_support/header.rs generates the function from the header's own
//! declarations, so a new struct, field or enum value is covered without anyone
//! typing its layout; tests/header_is_current.rs keeps
//! cpp_tests/layout_generated.hpp (which cpp_tests/test_layout.cpp compiles)
//! equal to its output.

include!(concat!(env!("OUT_DIR"), "/abi_layout.rs"));
