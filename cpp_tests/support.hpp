// Test support for nyxq's C++ tests: an owning pointer per handle type, the
// tests' input data, and CHECK_OK / EXPECT_STATUS that print the status text
// and the last error.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "nyxq.h"

namespace nyxq_test {

// Calls `destroy` on a handle: the deleter of every owning pointer below.
template <class Handle, NyxqStatus (*destroy)(Handle *)>
struct Destroy {
  void operator()(Handle *handle) const { destroy(handle); }
};
using ContextPtr = std::unique_ptr<NyxqContext, Destroy<NyxqContext, nyxq_context_destroy>>;
using TensorPtr = std::unique_ptr<NyxqTensor, Destroy<NyxqTensor, nyxq_tensor_destroy>>;
using ModelPtr = std::unique_ptr<NyxqModel, Destroy<NyxqModel, nyxq_model_destroy>>;
using PlanPtr = std::unique_ptr<NyxqPlan, Destroy<NyxqPlan, nyxq_plan_destroy>>;
using ConfigPtr = std::unique_ptr<NyxqConfig, Destroy<NyxqConfig, nyxq_config_destroy>>;
using StringPtr = std::unique_ptr<char, Destroy<char, nyxq_string_destroy>>;
using ScalerPtr = std::unique_ptr<NyxqLossScaler, Destroy<NyxqLossScaler, nyxq_loss_scaler_destroy>>;
using AdamPtr = std::unique_ptr<NyxqAdam, Destroy<NyxqAdam, nyxq_adam_destroy>>;
using VkAdamPtr = std::unique_ptr<NyxqVkAdam, Destroy<NyxqVkAdam, nyxq_vk_adam_destroy>>;
using ImportancePtr = std::unique_ptr<NyxqImportance, Destroy<NyxqImportance, nyxq_importance_destroy>>;

// Destroys what `owner` holds and returns the dangling handle, for the tests
// of what a destroyed handle is refused with.
template <class Ptr>
typename Ptr::pointer destroyed(Ptr owner) {
  typename Ptr::pointer handle = owner.get();
  owner.reset();
  return handle;
}

// True under NYXQ_TEST_REQUIRE_RESOURCES=1, which ctest sets: scripts/bootstrap.sh
// has installed the Vulkan loader, lavapipe and the validation layer, so a test
// that finds one missing fails instead of skipping (SKIP_MISSING).
inline bool resources_required() {
  const char *value = std::getenv("NYXQ_TEST_REQUIRE_RESOURCES");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

// Set by SKIP_MISSING: a test of this program could not run for want of a
// resource, so gtest_main.cpp exits 77 (skipped) instead of 0.
inline bool resource_missing = false;

inline std::string describe(NyxqStatus status) {
  return std::string(nyxq_status_str(status)) + " (" + std::to_string(static_cast<int>(status)) +
         "): " + nyxq_last_error_message();
}

// A CPU context with default options; fails the test if creation fails.
inline ContextPtr cpu_context(uint32_t threads = 0) {
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_CPU;
  options.thread_count = threads;
  NyxqContext *ctx = nullptr;
  NyxqStatus status = nyxq_context_create(&options, &ctx);
  EXPECT_EQ(status, NYXQ_OK) << describe(status);
  return ContextPtr(ctx);
}

// n values sin(step·i + phase).
inline std::vector<float> sine(size_t n, float step, float phase = 0.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(step * static_cast<float>(i) + phase);
  return v;
}

// n values of a slow sine plus deterministic noise from `seed` (an LCG).
inline std::vector<float> noisy_sine(size_t n, uint32_t seed = 1) {
  std::vector<float> x(n);
  uint32_t s = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    float noise = static_cast<float>(s >> 8) / 16777216.0f - 0.5f;
    x[i] = 0.8f * std::sin(0.013f * static_cast<float>(i)) + 0.3f * noise;
  }
  return x;
}

// n values 3·sin(0.37·i) with 0.5 added to element 5 of every 64: blocks
// whose largest value is not where a sine puts it.
inline std::vector<float> sine_with_bumps(size_t n) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::sin(static_cast<float>(i) * 0.37f) * 3.0f + ((i % 64) == 5 ? 0.5f : 0.0f);
  }
  return x;
}

// n values of a sawtooth, -2.8 to 2.8 in steps of 0.2 with period 29.
inline std::vector<float> ramp(size_t n) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>(i % 29) - 14) / 5.0f;
  return x;
}

#ifdef NYXQ_TEST_EXPORTS
// Runs `call` (a function of no arguments returning a NyxqStatus, which
// releases whatever it creates) once with each host allocation it makes
// through nyxq's fallible path failing in turn (nyxq_test_fail_allocation_after
// 1, 2, ...), then once with none failing, which must succeed. Returns the
// status the failing runs gave when they all gave the same one (a test
// compares it with NYXQ_ERROR_OUT_OF_MEMORY), and NYXQ_OK when the call made
// no such allocation. A failing run that left a handle behind, or statuses
// that differ, fail the test.
template <class Call>
NyxqStatus status_with_each_allocation_failing(Call call) {
  NyxqStatus seen = NYXQ_OK;
  for (uint64_t nth = 1; nth <= 10000; ++nth) {
    size_t live_before = 0, live_after = 0;
    nyxq_live_handles(&live_before);
    nyxq_test_fail_allocation_after(nth);
    const NyxqStatus status = call();
    const std::string what = describe(status);
    uint64_t counted = 0;
    nyxq_test_allocations_counted(&counted);
    nyxq_test_fail_allocation_after(0);
    nyxq_live_handles(&live_after);
    EXPECT_EQ(live_after, live_before) << "allocation " << nth << " failing left a handle: " << what;
    if (counted < nth) {
      EXPECT_EQ(status, NYXQ_OK) << "with no allocation failing: " << what;
      return seen;
    }
    if (nth == 1) seen = status;
    EXPECT_EQ(status, seen) << "allocation " << nth << " failing: " << what;
  }
  ADD_FAILURE() << "the call still allocates after 10000 allocations";
  return seen;
}
#endif

}  // namespace nyxq_test

#define CHECK_OK(expr)                                                   \
  do {                                                                   \
    NyxqStatus nyxq_check_status_ = (expr);                              \
    ASSERT_EQ(nyxq_check_status_, NYXQ_OK)                               \
        << #expr << " -> " << ::nyxq_test::describe(nyxq_check_status_); \
  } while (0)

#define EXPECT_STATUS(expected, expr)                                    \
  do {                                                                   \
    NyxqStatus nyxq_check_status_ = (expr);                              \
    EXPECT_EQ(nyxq_check_status_, (expected))                            \
        << #expr << " -> " << ::nyxq_test::describe(nyxq_check_status_); \
  } while (0)

// Leaves a test that cannot run because a resource (the Vulkan loader, a
// device, the validation layer) is missing: a failure when resources are
// required, a skip otherwise, after which the program exits 77 (gtest_main.cpp).
// A test that does not apply where it runs (GTEST_SKIP) leaves the exit
// status alone.
#define SKIP_MISSING(reason)                                                         \
  do {                                                                               \
    if (::nyxq_test::resources_required()) FAIL() << "required resource missing: " << reason; \
    ::nyxq_test::resource_missing = true;                                            \
    GTEST_SKIP() << reason;                                                          \
  } while (0)
