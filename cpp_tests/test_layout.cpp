// The C++ side of the layout asserts in src/ffi/layout.rs: every option and
// info struct has the size and field offsets the Rust side asserts.
#include <cstddef>
#include <cstring>

#include "support.hpp"

static_assert(sizeof(NyxqContextOptions) == 64, "NyxqContextOptions layout");
static_assert(offsetof(NyxqContextOptions, vulkan_host_fallback) == 48, "NyxqContextOptions layout");
static_assert(offsetof(NyxqContextOptions, vulkan_fail_allocation) == 56, "NyxqContextOptions layout");
static_assert(sizeof(NyxqVkBufferRange) == 24, "NyxqVkBufferRange layout");
static_assert(sizeof(NyxqVkRecorderUsage) == 24, "NyxqVkRecorderUsage layout");
static_assert(sizeof(NyxqVkTensorBuffer) == 40, "NyxqVkTensorBuffer layout");
static_assert(offsetof(NyxqVkTensorBuffer, chunk_count) == 32, "NyxqVkTensorBuffer layout");
static_assert(offsetof(NyxqContextOptions, vulkan_loader_path) == 32, "NyxqContextOptions layout");
static_assert(offsetof(NyxqContextOptions, vulkan_force_compat) == 44, "NyxqContextOptions layout");
static_assert(offsetof(NyxqContextOptions, thread_count) == 16, "NyxqContextOptions layout");
static_assert(offsetof(NyxqContextOptions, config_path) == 24, "NyxqContextOptions layout");
static_assert(sizeof(NyxqContextInfo) == 296, "NyxqContextInfo layout");
static_assert(offsetof(NyxqContextInfo, fallback_reason) == 40, "NyxqContextInfo layout");
static_assert(sizeof(NyxqFormatInfo) == 32, "NyxqFormatInfo layout");
static_assert(offsetof(NyxqFormatInfo, bits_per_weight) == 24, "NyxqFormatInfo layout");
static_assert(sizeof(NyxqQuantizeOptions) == 48, "NyxqQuantizeOptions layout");
static_assert(offsetof(NyxqQuantizeOptions, seed) == 16, "NyxqQuantizeOptions layout");
static_assert(offsetof(NyxqQuantizeOptions, importance_len) == 40, "NyxqQuantizeOptions layout");
static_assert(sizeof(NyxqErrorMetrics) == 32, "NyxqErrorMetrics layout");
static_assert(sizeof(NyxqTensorInfo) == 96, "NyxqTensorInfo layout");
static_assert(offsetof(NyxqTensorInfo, numel) == 80, "NyxqTensorInfo layout");
static_assert(sizeof(NyxqLossScalerOptions) == 32, "NyxqLossScalerOptions layout");
static_assert(offsetof(NyxqLossScalerOptions, enabled) == 28, "NyxqLossScalerOptions layout");
static_assert(sizeof(NyxqAdamOptions) == 32, "NyxqAdamOptions layout");
static_assert(offsetof(NyxqAdamOptions, state) == 24, "NyxqAdamOptions layout");

// The *_default functions fill exactly what the header says.
TEST(Layout, DefaultsSetStructSize) {
  NyxqContextOptions c;
  CHECK_OK(nyxq_context_options_default(&c));
  EXPECT_EQ(c.struct_size, sizeof c);
  NyxqLossScalerOptions l;
  CHECK_OK(nyxq_loss_scaler_options_default(&l));
  EXPECT_EQ(l.struct_size, sizeof l);
  NyxqAdamOptions a;
  CHECK_OK(nyxq_adam_options_default(&a));
  EXPECT_EQ(a.struct_size, sizeof a);
  NyxqQuantizeOptions q;
  std::memset(&q, 0xAB, sizeof q);
  CHECK_OK(nyxq_quantize_options_default(&q));
  EXPECT_EQ(q.struct_size, sizeof q);
  EXPECT_EQ(q.rounding, NYXQ_ROUNDING_NEAREST);
  EXPECT_EQ(q.non_finite, NYXQ_NON_FINITE_REJECT);
  EXPECT_EQ(q.seed, 0u);
  EXPECT_EQ(q.first_index, 0u);
  EXPECT_EQ(q.importance, nullptr);
  EXPECT_EQ(q.importance_len, 0u);
}

TEST(Layout, DefaultsRejectNull) {
  EXPECT_EQ(nyxq_quantize_options_default(nullptr), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(nyxq_adam_options_default(nullptr), NYXQ_ERROR_NULL_POINTER);
  EXPECT_EQ(nyxq_loss_scaler_options_default(nullptr), NYXQ_ERROR_NULL_POINTER);
}
