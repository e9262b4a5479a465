// Memory pressure at run time through the C ABI: nyxq_context_memory_status
// (its contract, a CPU context, a Vulkan context's ledger) and a trainer's
// loop that meets a shrinking device budget, injected with the test-only
// nyxq_test_set_device_budget: it reads the status between steps, replans
// with nyxq_plan_replan, moves what the new plan offloads to the host, and
// its next step fits with every tensor's bytes unchanged. Skips (exit 77)
// when no Vulkan device exists.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "nyxq.h"
#include "support.hpp"

namespace {

using nyxq_test::ContextPtr;
using nyxq_test::ModelPtr;
using nyxq_test::PlanPtr;
using nyxq_test::TensorPtr;

const char *kLavapipe = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

// A Vulkan context with validation on lavapipe (unless NYXQ_VK_TEST_DEVICE=system).
ContextPtr vulkan_context(NyxqStatus *status) {
  const char *device = std::getenv("NYXQ_VK_TEST_DEVICE");
  if (device == nullptr || std::string(device) != "system") {
    setenv("VK_DRIVER_FILES", kLavapipe, 1);
    setenv("VK_ICD_FILENAMES", kLavapipe, 1);
  }
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_VULKAN;
  options.vulkan_validation = 1;
  options.thread_count = 1;
  NyxqContext *ctx = nullptr;
  *status = nyxq_context_create(&options, &ctx);
  return ContextPtr(ctx);
}

NyxqMemoryStatus memory_status(const NyxqContext *ctx) {
  NyxqMemoryStatus s;
  std::memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  NyxqStatus status = nyxq_context_memory_status(ctx, &s);
  EXPECT_EQ(status, NYXQ_OK) << nyxq_test::describe(status);
  return s;
}

uint32_t validation_errors(const NyxqContext *ctx) {
  NyxqDeviceInfo info;
  EXPECT_EQ(nyxq_context_device_info(ctx, &info), NYXQ_OK);
  return info.validation_errors;
}

// Every weight tensor of the model: Q8_0 rows of 1024 values (1088 bytes).
constexpr uint64_t kRow = 1024;
constexpr uint64_t kRows = 256;
constexpr int kWeights = 4;

std::string weight_name(int i) { return "layer" + std::to_string(i) + ".mlp.weight"; }

}  // namespace

TEST(VkMemory, StatusArgumentsAreChecked) {
  auto ctx = nyxq_test::cpu_context(1);
  NyxqMemoryStatus s;
  std::memset(&s, 0x5a, sizeof s);
  s.struct_size = sizeof s;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_memory_status(ctx.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_memory_status(nullptr, &s));
  NyxqContext *dead = nyxq_test::destroyed(nyxq_test::cpu_context(1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_context_memory_status(dead, &s));
  s.struct_size = sizeof s - 8;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_context_memory_status(ctx.get(), &s));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("struct_size"), std::string::npos);
  // Nothing but struct_size was read, nothing written.
  EXPECT_EQ(s.struct_size, sizeof s - 8);
  EXPECT_EQ(s.budget_bytes, 0x5a5a5a5a5a5a5a5aull);
  // A caller compiled against a later, larger struct gets what this one knows.
  std::vector<unsigned char> newer(sizeof s + 16, 0xee);
  size_t newer_size = newer.size();
  std::memcpy(newer.data(), &newer_size, sizeof newer_size);
  CHECK_OK(nyxq_context_memory_status(ctx.get(), reinterpret_cast<NyxqMemoryStatus *>(newer.data())));
  size_t written = 0;
  std::memcpy(&written, newer.data(), sizeof written);
  EXPECT_EQ(written, sizeof s);
  EXPECT_EQ(newer[sizeof s], 0xee);
  EXPECT_EQ(newer.back(), 0xee);
}

TEST(VkMemory, ACpuContextReportsHostMemory) {
  auto ctx = nyxq_test::cpu_context(1);
  NyxqMemoryStatus s = memory_status(ctx.get());
  EXPECT_EQ(s.struct_size, sizeof s);
  EXPECT_EQ(s.source, NYXQ_MEMORY_SOURCE_HOST);
  EXPECT_GT(s.budget_bytes, 0u);
  EXPECT_EQ(s.device_local_bytes, s.budget_bytes);
  EXPECT_EQ(s.usage_bytes, 0u);
  EXPECT_EQ(s.available_bytes, s.budget_bytes);
  EXPECT_EQ(s.has_driver_usage, 0u);
  EXPECT_EQ(s.nyxq_bytes, 0u);
  EXPECT_EQ(s.max_allocation_bytes, 0u);
  // There is no device budget to set on a CPU context.
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_test_set_device_budget(ctx.get(), 1 << 20));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_test_set_device_budget(nullptr, 1 << 20));
  NyxqContext *dead = nyxq_test::destroyed(nyxq_test::cpu_context(1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_test_set_device_budget(dead, 1 << 20));
}

// The status of a Vulkan context: the source follows VK_EXT_memory_budget
// (lavapipe lacks it: the heaps' size), nyxq's ledger counts a DEVICE tensor,
// and an injected budget below what a tensor needs makes moving it to the
// device fail, the tensor intact on the host, until the budget is cleared.
TEST(VkMemory, TheLedgerCountsDeviceTensorsAndAnInjectedBudgetRefusesThem) {
  NyxqStatus status;
  auto ctx = vulkan_context(&status);
  if (status == NYXQ_ERROR_UNSUPPORTED) {
    SKIP_MISSING("no Vulkan device: " << nyxq_last_error_message());
  }
  CHECK_OK(status);
  NyxqDeviceInfo info;
  CHECK_OK(nyxq_context_device_info(ctx.get(), &info));
  NyxqMemoryStatus before = memory_status(ctx.get());
  EXPECT_EQ(before.source, info.has_memory_budget ? NYXQ_MEMORY_SOURCE_DRIVER_BUDGET : NYXQ_MEMORY_SOURCE_HEAP_SIZE);
  EXPECT_EQ(before.has_driver_usage, info.has_memory_budget);
  EXPECT_EQ(before.device_local_bytes, info.device_local_bytes);
  EXPECT_GE(before.usage_bytes, before.nyxq_bytes);
  EXPECT_EQ(before.available_bytes, before.budget_bytes - before.usage_bytes);
  EXPECT_GT(before.max_allocation_bytes, 0u);

  const uint64_t shape[2] = {kRows, kRow};
  std::vector<float> x = nyxq_test::sine(kRows * kRow, 0.01f);
  NyxqTensor *raw = nullptr;
  CHECK_OK(nyxq_tensor_create(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, &raw));
  TensorPtr w(raw);
  CHECK_OK(nyxq_tensor_upload(w.get(), x.data(), x.size(), nullptr));
  std::vector<float> expected(x.size()), got(x.size());
  CHECK_OK(nyxq_tensor_download(w.get(), expected.data(), expected.size()));
  NyxqTensorInfo tinfo;
  CHECK_OK(nyxq_tensor_info(w.get(), &tinfo));
  CHECK_OK(nyxq_tensor_migrate(w.get(), NYXQ_PLACEMENT_DEVICE));
  NyxqMemoryStatus on_device = memory_status(ctx.get());
  EXPECT_GE(on_device.nyxq_bytes, before.nyxq_bytes + tinfo.byte_len);
  CHECK_OK(nyxq_tensor_migrate(w.get(), NYXQ_PLACEMENT_HOST));
  EXPECT_EQ(memory_status(ctx.get()).nyxq_bytes, before.nyxq_bytes);

  const uint64_t budget = before.nyxq_bytes + tinfo.byte_len / 2;
  CHECK_OK(nyxq_test_set_device_budget(ctx.get(), budget));
  NyxqMemoryStatus pressed = memory_status(ctx.get());
  EXPECT_EQ(pressed.source, NYXQ_MEMORY_SOURCE_TEST_OVERRIDE);
  EXPECT_EQ(pressed.budget_bytes, budget);
  NyxqHardware hw;
  CHECK_OK(nyxq_hardware_detect(ctx.get(), &hw));
  EXPECT_EQ(hw.device_budget_bytes, budget);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, nyxq_tensor_migrate(w.get(), NYXQ_PLACEMENT_DEVICE));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("above the budget"), std::string::npos);
  NyxqTensor *refused = reinterpret_cast<NyxqTensor *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY,
                nyxq_tensor_create_in(ctx.get(), "a", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &refused));
  EXPECT_EQ(refused, reinterpret_cast<NyxqTensor *>(0x1));
  int32_t placement = -1;
  CHECK_OK(nyxq_tensor_placement(w.get(), &placement));
  EXPECT_EQ(placement, NYXQ_PLACEMENT_HOST);
  EXPECT_EQ(memory_status(ctx.get()).nyxq_bytes, before.nyxq_bytes);

  CHECK_OK(nyxq_test_set_device_budget(ctx.get(), 0));
  EXPECT_EQ(memory_status(ctx.get()).source, before.source);
  CHECK_OK(nyxq_tensor_migrate(w.get(), NYXQ_PLACEMENT_DEVICE));
  EXPECT_GE(memory_status(ctx.get()).nyxq_bytes, before.nyxq_bytes + tinfo.byte_len);
  CHECK_OK(nyxq_tensor_download(w.get(), got.data(), got.size()));
  EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
  EXPECT_EQ(validation_errors(ctx.get()), 0u);
}

namespace {

// A trainer's loop over nyxq tensors placed by a plan: each step reads every
// weight back and needs device memory for its activations (a DEVICE tensor
// made and freed within the step). Between steps it reads the memory status
// and, when less than the plan's safety margin and activation reserve is
// left (or the budget grew while tensors sit on the host), replans and moves
// each tensor where the new plan puts it. This is the loop of
// docs/planning.md, "Memory pressure while training".
class Trainer {
 public:
  explicit Trainer(NyxqContext *ctx) : ctx_(ctx) {}

  // Plans kWeights MLP weights (Q8_0 only, so a replan can only offload:
  // the bytes stay those quantized at the start) and makes them where the
  // plan puts them, remembering their bytes and values.
  void start() {
    NyxqModel *raw_model = nullptr;
    CHECK_OK(nyxq_model_create("pressure", &raw_model));
    ModelPtr model(raw_model);
    const uint64_t shape[2] = {kRows, kRow};
    for (int i = 0; i < kWeights; ++i) {
      CHECK_OK(nyxq_model_add_tensor(model.get(), weight_name(i).c_str(), NYXQ_ROLE_MLP, shape, 2, -1.0,
                                     nullptr, 0));
    }
    NyxqHardware hw;
    CHECK_OK(nyxq_hardware_detect(ctx_, &hw));
    // lavapipe's device memory is the host's (unified); the plan treats it
    // as a discrete device's, with host memory beside it to offload to.
    hw.unified_memory = 0;
    hw.host_bytes = 1ull << 30;
    NyxqPlanPolicy policy;
    CHECK_OK(nyxq_plan_policy_default(&policy));
    policy.allowed_formats = 1u << NYXQ_FORMAT_Q8_0;
    policy.default_format = NYXQ_FORMAT_Q8_0;
    policy.fallback_to_fp32 = 0;
    policy.safety_margin_bytes = 64 << 10;
    policy.activation_reserve_bytes = 320 << 10;
    NyxqPlan *raw_plan = nullptr;
    CHECK_OK(nyxq_plan_create(model.get(), &hw, &policy, &raw_plan));
    plan_.reset(raw_plan);

    for (int i = 0; i < kWeights; ++i) {
      NyxqTensor *raw = nullptr;
      CHECK_OK(nyxq_tensor_create(ctx_, weight_name(i).c_str(), shape, 2, NYXQ_FORMAT_Q8_0, &raw));
      weights_.emplace_back(raw);
      std::vector<float> x = nyxq_test::noisy_sine(kRows * kRow, static_cast<uint32_t>(i + 1));
      CHECK_OK(nyxq_tensor_upload(raw, x.data(), x.size(), nullptr));
      const void *data = nullptr;
      size_t len = 0;
      CHECK_OK(nyxq_tensor_data(raw, &data, &len));
      const auto *bytes = static_cast<const unsigned char *>(data);
      bytes_.emplace_back(bytes, bytes + len);
      values_.emplace_back(x.size());
      CHECK_OK(nyxq_tensor_download(raw, values_.back().data(), x.size()));
    }
    activation_input_ = nyxq_test::sine(kRows * kRow, 0.03f);
    follow_plan();
  }

  // One step: every weight read back unchanged, then the activations on the
  // device. Returns the first status that is not NYXQ_OK.
  NyxqStatus step() {
    std::vector<float> got(kRows * kRow);
    for (size_t i = 0; i < weights_.size(); ++i) {
      NyxqStatus s = nyxq_tensor_download(weights_[i].get(), got.data(), got.size());
      if (s != NYXQ_OK) return s;
      EXPECT_EQ(std::memcmp(got.data(), values_[i].data(), got.size() * sizeof(float)), 0) << weight_name(i);
    }
    const uint64_t shape[2] = {kRows, kRow};
    NyxqTensor *raw = nullptr;
    NyxqStatus s = nyxq_tensor_create_in(ctx_, "activations", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &raw);
    if (s != NYXQ_OK) return s;
    TensorPtr activations(raw);
    s = nyxq_tensor_upload(raw, activation_input_.data(), activation_input_.size(), nullptr);
    if (s != NYXQ_OK) return s;
    return nyxq_tensor_download(raw, got.data(), got.size());
  }

  // Reads the status and, if the plan no longer fits (or fits with room to
  // bring offloaded tensors back), replans and moves the tensors. Returns
  // whether a tensor moved.
  bool respond_to_memory_status() {
    NyxqMemoryStatus st = memory_status(ctx_);
    NyxqPlanSummary sum = summary();
    const uint64_t keep_free = sum.safety_margin + sum.activation_reserve;
    uint64_t new_budget;
    if (st.available_bytes < keep_free) {
      const uint64_t shortfall = keep_free - st.available_bytes;
      new_budget = sum.device_bytes > shortfall ? sum.device_bytes - shortfall : 0;
    } else if (sum.host_bytes > 0) {
      new_budget = sum.device_bytes + (st.available_bytes - keep_free);
    } else {
      return false;
    }
    NyxqPlan *raw = nullptr;
    NyxqStatus s = nyxq_plan_replan(plan_.get(), new_budget, &raw);
    EXPECT_EQ(s, NYXQ_OK) << nyxq_test::describe(s);
    PlanPtr replanned(raw);
    NyxqPlanSummary changed;
    EXPECT_EQ(nyxq_plan_summary(replanned.get(), &changed), NYXQ_OK);
    if (changed.changed_count == 0) return false;
    plan_ = std::move(replanned);
    follow_plan();
    return true;
  }

  // Moves each tensor where the plan puts it: to the host first, so that the
  // device memory they free is there for those moving to the device.
  void follow_plan() {
    std::vector<NyxqPlanEntry> entries(weights_.size());
    CHECK_OK(nyxq_plan_entries(plan_.get(), entries.data(), entries.size()));
    for (int32_t target : {NYXQ_PLACEMENT_HOST, NYXQ_PLACEMENT_DEVICE}) {
      for (size_t i = 0; i < entries.size(); ++i) {
        ASSERT_EQ(std::string(entries[i].name), weight_name(static_cast<int>(i)));
        if (entries[i].placement == target) CHECK_OK(nyxq_tensor_migrate(weights_[i].get(), target));
      }
    }
  }

  // How many weights are on the device now.
  int on_device() {
    int n = 0;
    for (auto &w : weights_) {
      int32_t placement = -1;
      EXPECT_EQ(nyxq_tensor_placement(w.get(), &placement), NYXQ_OK);
      n += placement == NYXQ_PLACEMENT_DEVICE;
    }
    return n;
  }

  // Every weight's quantized bytes equal those of the start.
  void expect_bytes_unchanged() {
    for (size_t i = 0; i < weights_.size(); ++i) {
      CHECK_OK(nyxq_tensor_migrate(weights_[i].get(), NYXQ_PLACEMENT_HOST));
      const void *data = nullptr;
      size_t len = 0;
      CHECK_OK(nyxq_tensor_data(weights_[i].get(), &data, &len));
      ASSERT_EQ(len, bytes_[i].size());
      EXPECT_EQ(std::memcmp(data, bytes_[i].data(), len), 0) << weight_name(static_cast<int>(i));
    }
  }

  NyxqPlanSummary summary() {
    NyxqPlanSummary sum;
    EXPECT_EQ(nyxq_plan_summary(plan_.get(), &sum), NYXQ_OK);
    return sum;
  }

 private:
  NyxqContext *ctx_;
  PlanPtr plan_;
  std::vector<TensorPtr> weights_;
  std::vector<std::vector<unsigned char>> bytes_;
  std::vector<std::vector<float>> values_;
  std::vector<float> activation_input_;
};

}  // namespace

// The budget shrinks twice mid-run (injected), then comes back. Each time the
// step that follows would not fit; the trainer reads the status, replans,
// moves tensors, and its next step fits with every value unchanged.
TEST(VkMemory, ATrainerReplansUnderAShrinkingBudgetAndLosesNothing) {
  NyxqStatus status;
  auto ctx = vulkan_context(&status);
  if (status == NYXQ_ERROR_UNSUPPORTED) {
    SKIP_MISSING("no Vulkan device: " << nyxq_last_error_message());
  }
  CHECK_OK(status);
  Trainer trainer(ctx.get());
  trainer.start();
  if (HasFatalFailure()) return;
  ASSERT_EQ(trainer.on_device(), kWeights);
  CHECK_OK(trainer.step());
  EXPECT_FALSE(trainer.respond_to_memory_status());

  // Shrink the budget twice to what is in use now: no room for a step's
  // activations until the plan gives memory back.
  const int expected_on_device[] = {2, 0};
  for (int shrink = 0; shrink < 2; ++shrink) {
    NyxqMemoryStatus before = memory_status(ctx.get());
    CHECK_OK(nyxq_test_set_device_budget(ctx.get(), before.usage_bytes));
    EXPECT_EQ(trainer.step(), NYXQ_ERROR_OUT_OF_DEVICE_MEMORY) << nyxq_last_error_message();
    ASSERT_TRUE(trainer.respond_to_memory_status());
    if (HasFatalFailure()) return;
    EXPECT_GT(trainer.summary().changed_count, 0u);
    EXPECT_EQ(trainer.on_device(), expected_on_device[shrink]);
    NyxqMemoryStatus after = memory_status(ctx.get());
    NyxqPlanSummary sum = trainer.summary();
    EXPECT_EQ(after.source, NYXQ_MEMORY_SOURCE_TEST_OVERRIDE);
    EXPECT_GE(after.available_bytes, sum.safety_margin + sum.activation_reserve);
    CHECK_OK(trainer.step());
    EXPECT_FALSE(trainer.respond_to_memory_status());
  }

  // The budget comes back: the offloaded tensors return to the device.
  CHECK_OK(nyxq_test_set_device_budget(ctx.get(), 0));
  ASSERT_TRUE(trainer.respond_to_memory_status());
  if (HasFatalFailure()) return;
  EXPECT_EQ(trainer.on_device(), kWeights);
  CHECK_OK(trainer.step());

  trainer.expect_bytes_unchanged();
  EXPECT_EQ(validation_errors(ctx.get()), 0u);
}

// A GGUF file is written from host bytes: a DEVICE tensor is refused until it
// moves to the host, and nothing is written meanwhile.
TEST(VkMemory, AGgufFileTakesDeviceTensorsOnlyOnceOnTheHost) {
  NyxqStatus status;
  auto ctx = vulkan_context(&status);
  if (status == NYXQ_ERROR_UNSUPPORTED) {
    SKIP_MISSING("no Vulkan device: " << nyxq_last_error_message());
  }
  CHECK_OK(status);
  const uint64_t shape[2] = {4, 64};
  NyxqTensor *raw = nullptr;
  CHECK_OK(nyxq_tensor_create_in(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &raw));
  TensorPtr w(raw);
  const std::string path = std::string(::testing::TempDir()) + "vk_memory_device_tensor.gguf";
  const NyxqTensor *tensors[] = {w.get()};
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_gguf_write(path.c_str(), tensors, 1, nullptr, nullptr, 0));
  CHECK_OK(nyxq_tensor_migrate(w.get(), NYXQ_PLACEMENT_HOST));
  CHECK_OK(nyxq_gguf_write(path.c_str(), tensors, 1, nullptr, nullptr, 0));
  std::remove(path.c_str());
  EXPECT_EQ(validation_errors(ctx.get()), 0u);
}
