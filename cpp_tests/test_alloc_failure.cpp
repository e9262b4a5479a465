// The allocation-failure sweep, in SQLite's manner: a representative call
// sequence of a trainer runs again and again, with the Nth host allocation
// that nyxq sizes from a caller or a file failing (N = 1, 2, ... through the
// test-only nyxq_test_fail_allocation_after) until the sequence completes
// without reaching it. Every call must succeed or report
// NYXQ_ERROR_OUT_OF_MEMORY, the injected failure must surface as that status,
// nothing may abort, and every handle must be released at the end.
#include <string>
#include <vector>

#include "support.hpp"

using namespace nyxq_test;

namespace {

// The statuses the sequence saw while one allocation was failing.
struct Outcome {
  int out_of_memory = 0;
  std::vector<std::string> unexpected;
};

// Records `status` of `call`: OK, OUT_OF_MEMORY, or unexpected. True on OK.
bool step(Outcome &outcome, const char *call, NyxqStatus status) {
  if (status == NYXQ_OK) return true;
  if (status == NYXQ_ERROR_OUT_OF_MEMORY) {
    outcome.out_of_memory += 1;
  } else {
    outcome.unexpected.push_back(std::string(call) + " -> " + describe(status));
  }
  return false;
}
#define STEP(outcome, call) step(outcome, #call, call)

std::string source_file(const char *relative) { return std::string(NYXQ_SOURCE_DIR) + "/" + relative; }

void context_model_and_plan(Outcome &o, NyxqContext **ctx_out) {
  const std::string config = source_file("config/hrm_config.txt");
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_CPU;
  options.thread_count = 2;
  options.config_path = config.c_str();
  if (!STEP(o, nyxq_context_create(&options, ctx_out))) return;

  NyxqModel *raw_model = nullptr;
  if (!STEP(o, nyxq_model_load(source_file("config/models/char-model.json").c_str(), &raw_model))) return;
  ModelPtr model(raw_model);
  const uint64_t shape[2] = {2, 64};
  std::vector<float> data = ramp(128);
  STEP(o, nyxq_model_add_tensor(model.get(), "extra", NYXQ_ROLE_OTHER, shape, 2, -1.0, data.data(), data.size()));
  NyxqPlanPolicy policy;
  NyxqHardware hardware;
  if (!STEP(o, nyxq_context_plan_policy(*ctx_out, 1, &policy))) return;
  if (!STEP(o, nyxq_hardware_profile("cpu-only", &hardware))) return;
  NyxqPlan *raw_plan = nullptr;
  if (!STEP(o, nyxq_plan_create(model.get(), &hardware, &policy, &raw_plan))) return;
  PlanPtr plan(raw_plan);
  // Outputs are written only on success: on failure these own NULL.
  char *raw_text = nullptr;
  STEP(o, nyxq_plan_explain(plan.get(), &raw_text));
  StringPtr text(raw_text);
  NyxqPlanSummary summary;
  if (!STEP(o, nyxq_plan_summary(plan.get(), &summary))) return;
  NyxqPlan *raw_replan = nullptr;
  STEP(o, nyxq_plan_replan(plan.get(), summary.device_bytes, &raw_replan));
  PlanPtr replan(raw_replan);
}

void quantize_with_importance(Outcome &o, NyxqContext *ctx) {
  std::vector<float> x = ramp(256), importance(64, 1.0f), y(256);
  for (size_t i = 0; i < importance.size(); ++i) importance[i] = 1.0f + static_cast<float>(i % 5);
  NyxqQuantizeOptions options;
  nyxq_quantize_options_default(&options);
  options.rounding = NYXQ_ROUNDING_ERROR_MINIMISING;
  options.importance = importance.data();
  options.importance_len = importance.size();
  options.first_index = 64;
  std::vector<uint8_t> q(160);
  if (!STEP(o, nyxq_quantize(ctx, NYXQ_FORMAT_Q4_1, x.data(), x.size(), &options, q.data(), q.size()))) return;
  STEP(o, nyxq_dequantize(ctx, NYXQ_FORMAT_Q4_1, q.data(), q.size(), y.data(), y.size()));
  NyxqErrorMetrics metrics;
  STEP(o, nyxq_quant_error(NYXQ_FORMAT_Q4_1, x.data(), x.size(), q.data(), q.size(), &metrics));
  // In place: src is copied first.
  STEP(o, nyxq_fake_quantize(ctx, NYXQ_FORMAT_Q4_1, x.data(), x.size(), &options, x.data(), x.size()));
}

void adam_steps(Outcome &o) {
  for (int32_t state : {NYXQ_ADAM_STATE_FP32, NYXQ_ADAM_STATE_INT8}) {
    NyxqAdamOptions options;
    nyxq_adam_options_default(&options);
    options.state = state;
    const size_t n = 4096;
    NyxqAdam *raw = nullptr;
    if (!STEP(o, nyxq_adam_create(&options, n, &raw))) continue;
    AdamPtr adam(raw);
    std::vector<float> params = ramp(n), grads = ramp(n);
    STEP(o, nyxq_adam_step(adam.get(), 1e-3f, params.data(), n, grads.data(), n));
  }
}

void tensors(Outcome &o, NyxqContext *ctx) {
  const uint64_t shape[2] = {4, 64};
  NyxqTensor *raw = nullptr;
  if (!STEP(o, nyxq_tensor_create(ctx, "w", shape, 2, NYXQ_FORMAT_Q8_0, &raw))) return;
  TensorPtr tensor(raw);
  std::vector<float> x = ramp(256), y(256);
  STEP(o, nyxq_tensor_upload(tensor.get(), x.data(), x.size(), nullptr));
  STEP(o, nyxq_tensor_download(tensor.get(), y.data(), y.size()));
  NyxqTensor *raw_converted = nullptr;
  if (!STEP(o, nyxq_tensor_convert(tensor.get(), NYXQ_FORMAT_Q4_0, nullptr, &raw_converted))) return;
  TensorPtr converted(raw_converted);
  STEP(o, nyxq_tensor_download(converted.get(), y.data(), y.size()));
}

// The sequence, with the Nth allocation failing; returns what it saw.
Outcome run_sequence() {
  Outcome o;
  NyxqContext *raw_ctx = nullptr;
  context_model_and_plan(o, &raw_ctx);
  ContextPtr ctx(raw_ctx);
  if (ctx) {
    quantize_with_importance(o, ctx.get());
    tensors(o, ctx.get());
  }
  adam_steps(o);
  return o;
}

TEST(AllocationFailure, EveryFailedAllocationIsOutOfMemoryAndNothingLeaks) {
  uint64_t nth = 1;
  for (;; ++nth) {
    ASSERT_LT(nth, 10000u) << "the sequence never completed";
    CHECK_OK(nyxq_test_fail_allocation_after(nth));
    Outcome outcome = run_sequence();
    uint64_t counted = 0;
    CHECK_OK(nyxq_test_allocations_counted(&counted));
    CHECK_OK(nyxq_test_fail_allocation_after(0));
    for (const std::string &call : outcome.unexpected) ADD_FAILURE() << "allocation " << nth << " failing: " << call;
    size_t live = 0;
    CHECK_OK(nyxq_live_handles(&live));
    EXPECT_EQ(live, 0u) << "allocation " << nth << " failing left handles behind";
    if (counted < nth) {
      EXPECT_EQ(outcome.out_of_memory, 0) << "no allocation failed, yet a call ran out of memory";
      break;
    }
    EXPECT_GE(outcome.out_of_memory, 1) << "allocation " << nth << " failed without NYXQ_ERROR_OUT_OF_MEMORY";
  }
  // The sequence makes a few dozen such allocations; fewer means the hook lost them.
  EXPECT_GT(nth, 10u);
}

// Each function whose header lists NYXQ_ERROR_OUT_OF_MEMORY, alone: every
// allocation it sizes from its input, failing in turn, is that status.
TEST(AllocationFailure, LoadingAModelOrAProfileReportsOutOfMemory) {
  const std::string model_path = source_file("config/models/char-model.json");
  auto load_model = [&] {
    NyxqModel *raw = nullptr;
    const NyxqStatus status = nyxq_model_load(model_path.c_str(), &raw);
    ModelPtr owner(raw);
    return status;
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(load_model));
  const std::string profile_path = source_file("config/profiles/amd-rx580-8gb.json");
  auto load_profile = [&] {
    NyxqHardware hardware;
    return nyxq_hardware_load(profile_path.c_str(), &hardware);
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(load_profile));
}

TEST(AllocationFailure, AddingATensorToAModelReportsOutOfMemory) {
  NyxqModel *raw = nullptr;
  CHECK_OK(nyxq_model_create("m", &raw));
  ModelPtr model(raw);
  const uint64_t shape[2] = {2, 64};
  const std::vector<float> data = ramp(128);
  int added = 0;
  auto add = [&] {
    const std::string name = "t" + std::to_string(added);
    const NyxqStatus status =
        nyxq_model_add_tensor(model.get(), name.c_str(), NYXQ_ROLE_MLP, shape, 2, -1.0, data.data(), data.size());
    added += status == NYXQ_OK;
    return status;
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(add));
  EXPECT_EQ(added, 1) << "only the run without a failure added its tensor";
}

TEST(AllocationFailure, MeasuringQuantizationErrorReportsOutOfMemory) {
  const std::vector<float> x = ramp(256);
  std::vector<uint8_t> q(272);
  ContextPtr ctx = cpu_context(1);
  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, x.data(), x.size(), nullptr, q.data(), q.size()));
  auto measure = [&] {
    NyxqErrorMetrics metrics;
    return nyxq_quant_error(NYXQ_FORMAT_Q8_0, x.data(), x.size(), q.data(), q.size(), &metrics);
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(measure));
}

TEST(AllocationFailure, CreatingAndConvertingTensorsReportsOutOfMemory) {
  ContextPtr ctx = cpu_context(1);
  const uint64_t shape[2] = {4, 64};
  auto create = [&] {
    NyxqTensor *raw = nullptr;
    const NyxqStatus status = nyxq_tensor_create(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, &raw);
    TensorPtr owner(raw);
    return status;
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(create));
  auto create_on_host = [&] {
    NyxqTensor *raw = nullptr;
    const NyxqStatus status =
        nyxq_tensor_create_in(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q4_0, NYXQ_PLACEMENT_HOST, &raw);
    TensorPtr owner(raw);
    return status;
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(create_on_host));

  NyxqTensor *raw_source = nullptr;
  CHECK_OK(nyxq_tensor_create(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, &raw_source));
  TensorPtr source(raw_source);
  const std::vector<float> x = ramp(256);
  CHECK_OK(nyxq_tensor_upload(source.get(), x.data(), x.size(), nullptr));
  auto convert = [&] {
    NyxqTensor *raw = nullptr;
    const NyxqStatus status = nyxq_tensor_convert(source.get(), NYXQ_FORMAT_Q4_0, nullptr, &raw);
    TensorPtr owner(raw);
    return status;
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(convert));
  std::vector<float> back(256), expect(256);
  CHECK_OK(nyxq_tensor_download(source.get(), back.data(), back.size()));
  CHECK_OK(nyxq_fake_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, x.data(), x.size(), nullptr, expect.data(),
                              expect.size()));
  EXPECT_EQ(back, expect) << "the source is unchanged by the failed conversions";
}

TEST(AllocationFailure, MatmulReportsOutOfMemory) {
  ContextPtr ctx = cpu_context(1);
  const std::vector<float> values = ramp(4 * 64);
  std::vector<uint8_t> w(4 * 68);
  CHECK_OK(nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, values.data(), values.size(), nullptr, w.data(), w.size()));
  const std::vector<float> x = ramp(3 * 64);
  std::vector<float> y(3 * 64);
  auto forward = [&] {
    return nyxq_matmul(ctx.get(), NYXQ_FORMAT_Q8_0, w.data(), w.size(), 4, 64, x.data(), x.size(), 3, nullptr, 0,
                       y.data(), 3 * 4);
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(forward));
  auto backward = [&] {
    return nyxq_matmul_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w.data(), w.size(), 4, 64, x.data(), 3 * 4, 3,
                                  y.data(), y.size());
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(backward));
}

TEST(AllocationFailure, TheCountNeedsSomewhereToGo) {
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_test_allocations_counted(nullptr));
}

}  // namespace
