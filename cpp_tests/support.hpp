// Test support for nyxq's C++ tests: an owning pointer per handle type, and
// CHECK_OK / EXPECT_STATUS that print the status text and the last error.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "nyxq.h"

namespace nyxq_test {

struct ContextDeleter {
  void operator()(NyxqContext *ctx) const { nyxq_context_destroy(ctx); }
};
struct TensorDeleter {
  void operator()(NyxqTensor *t) const { nyxq_tensor_destroy(t); }
};
struct ModelDeleter {
  void operator()(NyxqModel *m) const { nyxq_model_destroy(m); }
};
struct PlanDeleter {
  void operator()(NyxqPlan *p) const { nyxq_plan_destroy(p); }
};
struct ConfigDeleter {
  void operator()(NyxqConfig *c) const { nyxq_config_destroy(c); }
};
struct StringDeleter {
  void operator()(char *s) const { nyxq_string_destroy(s); }
};
struct ScalerDeleter {
  void operator()(NyxqLossScaler *s) const { nyxq_loss_scaler_destroy(s); }
};
struct AdamDeleter {
  void operator()(NyxqAdam *a) const { nyxq_adam_destroy(a); }
};
using ContextPtr = std::unique_ptr<NyxqContext, ContextDeleter>;
using TensorPtr = std::unique_ptr<NyxqTensor, TensorDeleter>;
using ModelPtr = std::unique_ptr<NyxqModel, ModelDeleter>;
using PlanPtr = std::unique_ptr<NyxqPlan, PlanDeleter>;
using ConfigPtr = std::unique_ptr<NyxqConfig, ConfigDeleter>;
using StringPtr = std::unique_ptr<char, StringDeleter>;
using ScalerPtr = std::unique_ptr<NyxqLossScaler, ScalerDeleter>;
using AdamPtr = std::unique_ptr<NyxqAdam, AdamDeleter>;

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
