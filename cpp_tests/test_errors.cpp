// The documented errors of the C ABI that the topic tests do not provoke:
// every object's calls with a destroyed handle, NULL where an output or an
// input is required, unreadable and malformed files, and sizes past the limits.
// scripts/check_error_coverage.py (ctest error_coverage) maps each `Errors:`
// entry of nyxq.h to the test that provokes it.
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "support.hpp"

using namespace nyxq_test;

namespace {

std::string last_error() { return nyxq_last_error_message(); }

// A file with `text` in a fresh temporary path; removed by the destructor.
struct TempFile {
  explicit TempFile(const std::string &text) {
    char name[] = "/tmp/nyxq_errors_XXXXXX";
    int fd = mkstemp(name);
    path = name;
    FILE *f = fdopen(fd, "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }
  ~TempFile() { std::remove(path.c_str()); }
  std::string path;
};

NyxqModel *dead_model() {
  NyxqModel *model = nullptr;
  EXPECT_EQ(nyxq_model_create("dead", &model), NYXQ_OK);
  return destroyed(ModelPtr(model));
}

NyxqHardware cpu_profile() {
  NyxqHardware hw{};
  EXPECT_EQ(nyxq_hardware_profile("cpu-only", &hw), NYXQ_OK) << last_error();
  return hw;
}

// A live model with one 64x64 MLP weight, and a plan of it.
struct Planned {
  Planned() {
    NyxqModel *m = nullptr;
    EXPECT_EQ(nyxq_model_create("m", &m), NYXQ_OK);
    model.reset(m);
    uint64_t shape[] = {64, 64};
    EXPECT_EQ(nyxq_model_add_tensor(m, "w", NYXQ_ROLE_MLP, shape, 2, 1.0, nullptr, 0), NYXQ_OK) << last_error();
    hw = cpu_profile();
    EXPECT_EQ(nyxq_plan_policy_default(&policy), NYXQ_OK);
    NyxqPlan *made = nullptr;
    EXPECT_EQ(nyxq_plan_create(m, &hw, &policy, &made), NYXQ_OK) << last_error();
    plan.reset(made);
  }
  ModelPtr model;
  PlanPtr plan;
  NyxqHardware hw{};
  NyxqPlanPolicy policy{};
};

}  // namespace

TEST(Errors, DestroyedContextHandles) {
  NyxqContext *ctx = destroyed(cpu_context());
  std::vector<unsigned char> q(34);
  std::vector<float> x(32), y(32);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_dequantize(ctx, NYXQ_FORMAT_Q8_0, q.data(), q.size(), y.data(), 32));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_matvec(ctx, NYXQ_FORMAT_Q8_0, q.data(), q.size(), 1, 32, x.data(), 32, 1, nullptr, 0, y.data(), 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_matmul(ctx, NYXQ_FORMAT_Q8_0, q.data(), q.size(), 1, 32, x.data(), 32, 1, nullptr, 0, y.data(), 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_matmul_transposed(ctx, NYXQ_FORMAT_Q8_0, q.data(), q.size(), 1, 32, x.data(), 1, 1, y.data(), 32));
  NyxqHardware hw{};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_hardware_detect(ctx, &hw));
  NyxqDeviceInfo info{};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_context_device_info(ctx, &info));
  uint64_t shape[] = {32};
  NyxqTensor *t = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_create(ctx, "t", shape, 1, NYXQ_FORMAT_F32, &t));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_tensor_create_in(ctx, "t", shape, 1, NYXQ_FORMAT_F32, NYXQ_PLACEMENT_HOST, &t));
  EXPECT_EQ(t, nullptr);
  NyxqVkRecorderUsage usage{};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_recorder_usage(ctx, &usage));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_release(ctx, 1));
}

TEST(Errors, DestroyedTensorHandles) {
  ContextPtr ctx = cpu_context();
  uint64_t shape[] = {2, 32};
  NyxqTensor *t = nullptr;
  CHECK_OK(nyxq_tensor_create(ctx.get(), "t", shape, 2, NYXQ_FORMAT_Q8_0, &t));
  t = destroyed(TensorPtr(t));
  NyxqTensor *converted = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_convert(t, NYXQ_FORMAT_F16, nullptr, &converted));
  const void *data = nullptr;
  size_t len = 0;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_data(t, &data, &len));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_migrate(t, NYXQ_PLACEMENT_HOST));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_migrate(nullptr, NYXQ_PLACEMENT_HOST));
  int32_t placement = -1;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_placement(t, &placement));
  NyxqVkTensorBuffer buffer{};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_tensor_vk_buffer(t, 0, &buffer));
  EXPECT_EQ(converted, nullptr);
  EXPECT_EQ(placement, -1);
}

TEST(Errors, DestroyedTrainingHandles) {
  NyxqAdam *adam = nullptr;
  CHECK_OK(nyxq_adam_create(nullptr, 64, &adam));
  adam = destroyed(AdamPtr(adam));
  size_t bytes = 7, fp32 = 7;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_adam_state_bytes(adam, &bytes, &fp32));
  EXPECT_EQ(bytes, 7u);

  NyxqLossScaler *scaler = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(nullptr, &scaler));
  scaler = destroyed(ScalerPtr(scaler));
  std::vector<float> grads(8, 1.0f);
  uint32_t found = 7, apply = 7;
  int64_t first_bad = 7;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_loss_scaler_unscale_and_check(scaler, grads.data(), grads.size(), &found, &first_bad));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_update(scaler, &apply));
  EXPECT_EQ(found, 7u);
  EXPECT_EQ(apply, 7u);
  EXPECT_EQ(grads[0], 1.0f);
}

TEST(Errors, DestroyedPlanningHandles) {
  NyxqConfig *config = nullptr;
  CHECK_OK(nyxq_config_parse("[quantization]\n", "dead.ini", &config));
  config = destroyed(ConfigPtr(config));
  NyxqPlanPolicy policy{};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_config_policy(config, 0, &policy));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_config_destroy(config));

  NyxqModel *model = dead_model();
  uint64_t shape[] = {64, 64};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_model_add_tensor(model, "w", NYXQ_ROLE_MLP, shape, 2, 1.0, nullptr, 0));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_model_destroy(model));
  NyxqHardware hw = cpu_profile();
  CHECK_OK(nyxq_plan_policy_default(&policy));
  NyxqPlan *plan = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_create(model, &hw, &policy, &plan));
  NyxqPlanFeasibility feasibility{};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_feasibility(model, &hw, &policy, &feasibility));
  EXPECT_EQ(plan, nullptr);

  NyxqPlan *dead_plan = nullptr;
  {
    Planned p;
    CHECK_OK(nyxq_plan_replan(p.plan.get(), 1ull << 30, &dead_plan));
  }
  dead_plan = destroyed(PlanPtr(dead_plan));
  NyxqPlanEntry entry{};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_entries(dead_plan, &entry, 1));
  char *text = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_explain(dead_plan, &text));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_to_json(dead_plan, &text));
  NyxqPlan *replanned = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_replan(dead_plan, 1ull << 30, &replanned));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_destroy(dead_plan));
  EXPECT_EQ(text, nullptr);
  EXPECT_EQ(replanned, nullptr);
}

TEST(Errors, NullPointersAreRefused) {
  NyxqConfig *config = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_config_load(nullptr, &config));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_config_parse(nullptr, "x.ini", &config));
  CHECK_OK(nyxq_config_parse("[quantization]\n", "x.ini", &config));
  ConfigPtr config_owner(config);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_config_policy(config, 0, nullptr));

  NyxqHardware hw{};
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_hardware_load(nullptr, &hw));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_hardware_profile_at(0, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_hardware_profile_count(nullptr));
  ContextPtr ctx = cpu_context();
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_hardware_detect(ctx.get(), nullptr));
  NyxqModel *model = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_model_load(nullptr, &model));

  NyxqLossScaler *scaler = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(nullptr, &scaler));
  ScalerPtr scaler_owner(scaler);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_loss_scaler_report_non_finite(nullptr, 1));

  Planned p;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_entries(p.plan.get(), nullptr, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_explain(p.plan.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_to_json(p.plan.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_summary(p.plan.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_replan(p.plan.get(), 1ull << 30, nullptr));

  uint64_t shape[] = {32};
  NyxqTensor *t = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_tensor_create_in(ctx.get(), "t", shape, 1, NYXQ_FORMAT_F32, NYXQ_PLACEMENT_HOST, nullptr));
  CHECK_OK(nyxq_tensor_create(ctx.get(), "t", shape, 1, NYXQ_FORMAT_F32, &t));
  TensorPtr tensor(t);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_download(tensor.get(), nullptr, 32));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_info(tensor.get(), nullptr));
}

TEST(Errors, FilesThatCannotBeReadOrParsed) {
  NyxqHardware hw{};
  EXPECT_STATUS(NYXQ_ERROR_IO, nyxq_hardware_load("/nonexistent/profile.json", &hw));
  NyxqModel *model = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_IO, nyxq_model_load("/nonexistent/model.json", &model));
  EXPECT_EQ(model, nullptr);

  TempFile bad_json("{\"name\": \"x\", \"tensors\": [");
  EXPECT_STATUS(NYXQ_ERROR_CONFIG, nyxq_hardware_load(bad_json.path.c_str(), &hw));
  EXPECT_NE(last_error().find(bad_json.path), std::string::npos) << last_error();
  TempFile bad_config("[quantization]\nenabled = perhaps\n");
  NyxqConfig *config = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_CONFIG, nyxq_config_load(bad_config.path.c_str(), &config));
  EXPECT_EQ(last_error().rfind(bad_config.path + ":2:", 0), 0u) << last_error();
  EXPECT_EQ(config, nullptr);

  const char not_utf8[] = {'/', 't', 'm', 'p', '/', '\xff', '\xfe', 0};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_config_load(not_utf8, &config));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_model_create(not_utf8, &model));
  EXPECT_EQ(model, nullptr);
}

TEST(Errors, SizesPastTheLimits) {
  ContextPtr ctx = cpu_context();
  std::vector<unsigned char> q(34);
  std::vector<float> y(32);
  const size_t huge = std::numeric_limits<size_t>::max() / 2;
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_dequantize(ctx.get(), NYXQ_FORMAT_Q8_0, q.data(), q.size(), y.data(), huge));

  NyxqModel *raw = nullptr;
  CHECK_OK(nyxq_model_create("big", &raw));
  ModelPtr big(raw);
  uint64_t too_many[] = {1ull << 26, 1ull << 25};  // 2^51 elements
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_model_add_tensor(big.get(), "w", NYXQ_ROLE_MLP, too_many, 2, 1.0, nullptr, 0));

  uint64_t beyond[] = {1ull << 40, 1ull << 40};
  NyxqTensor *t = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_tensor_create_in(ctx.get(), "t", beyond, 2, NYXQ_FORMAT_F32, NYXQ_PLACEMENT_HOST, &t));
  EXPECT_EQ(t, nullptr);

  Planned p;
  NyxqPlanFeasibility feasibility{};
  NyxqPlanPolicy bad = p.policy;
  bad.min_snr_db = std::numeric_limits<double>::quiet_NaN();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_plan_feasibility(p.model.get(), &p.hw, &bad, &feasibility));
}

// The recording calls check their handles and pointers before anything else,
// on any context; a CPU context cannot record.
TEST(Errors, RecordingCallsCheckHandlesFirst) {
  NyxqContext *dead = destroyed(cpu_context());
  ContextPtr cpu = cpu_context();
  NyxqVkBufferRange range{};
  uint64_t ticket = 7;
  // Never used as a VkCommandBuffer: each call fails before it records.
  void *command_buffer = reinterpret_cast<void *>(uintptr_t{0x10});
  auto matvec = [&](NyxqContext *c, const NyxqVkBufferRange *w) {
    return nyxq_vk_cmd_matvec(c, command_buffer, NYXQ_FORMAT_Q4_0, 1, 32, 1, w, &range, nullptr, &range, &ticket);
  };
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, matvec(nullptr, &range));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, matvec(dead, &range));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, matvec(cpu.get(), &range));
  auto matmul = [&](NyxqContext *c, const NyxqVkBufferRange *w) {
    return nyxq_vk_cmd_matmul(c, command_buffer, NYXQ_FORMAT_Q4_0, 1, 32, 1, w, &range, nullptr, &range, &ticket);
  };
  auto matmul_t = [&](NyxqContext *c, const NyxqVkBufferRange *w) {
    return nyxq_vk_cmd_matmul_transposed(c, command_buffer, NYXQ_FORMAT_Q4_0, 1, 32, 1, w, &range, &range, &ticket);
  };
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, matmul(nullptr, &range));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, matmul(dead, &range));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, matmul(cpu.get(), &range));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, matmul_t(nullptr, &range));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, matmul_t(dead, &range));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, matmul_t(cpu.get(), &range));

  NyxqLossScaler *scaler = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(nullptr, &scaler));
  ScalerPtr scaler_owner(scaler);
  NyxqLossScaler *dead_scaler = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(nullptr, &dead_scaler));
  dead_scaler = destroyed(ScalerPtr(dead_scaler));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_vk_cmd_unscale_and_check(dead, scaler, command_buffer, &range, 32, &range, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_vk_cmd_unscale_and_check(cpu.get(), dead_scaler, command_buffer, &range, 32, &range, &ticket));
  EXPECT_EQ(ticket, 7u);
}

// An output buffer that overlaps an input is refused before anything is
// written (Rust must never see a writable slice aliasing a readable one).
TEST(Errors, OverlappingBuffersAreRefused) {
  ContextPtr ctx = cpu_context();
  std::vector<float> buf(64, 0.5f);
  float *w = buf.data(), *x = buf.data() + 16;  // a 4x4 F32 matrix, then x[4]
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matvec(ctx.get(), NYXQ_FORMAT_F32, w, 64, 4, 4, x, 4, 1, nullptr, 0, x + 2, 4));
  EXPECT_NE(last_error().find("overlaps"), std::string::npos);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matvec(ctx.get(), NYXQ_FORMAT_F32, w, 64, 4, 4, x, 4, 1, nullptr, 0, w + 15, 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matvec(ctx.get(), NYXQ_FORMAT_F32, w, 64, 4, 4, x, 4, 1, x + 4, 4, x + 6, 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matvec_transposed(ctx.get(), NYXQ_FORMAT_F32, w, 64, 4, 4, x, 4, 1, x + 3, 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matmul(ctx.get(), NYXQ_FORMAT_F32, w, 64, 4, 4, x, 4, 1, nullptr, 0, x + 2, 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matmul_transposed(ctx.get(), NYXQ_FORMAT_F32, w, 64, 4, 4, x, 4, 1, w + 15, 4));
  EXPECT_EQ(buf[20], 0.5f);
  CHECK_OK(nyxq_matvec(ctx.get(), NYXQ_FORMAT_F32, w, 64, 4, 4, x, 4, 1, nullptr, 0, x + 4, 4));

  std::vector<float> src(64, 0.25f);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, src.data(), 32, nullptr, src.data() + 16, 34));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_dequantize(ctx.get(), NYXQ_FORMAT_F32, src.data(), 64, src.data() + 8, 16));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_fake_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, src.data(), 32, nullptr, src.data() + 1, 32));
  CHECK_OK(nyxq_fake_quantize(ctx.get(), NYXQ_FORMAT_Q8_0, src.data(), 32, nullptr, src.data(), 32));

  NyxqAdam *raw_adam = nullptr;
  CHECK_OK(nyxq_adam_create(nullptr, 8, &raw_adam));
  AdamPtr adam(raw_adam);
  std::vector<float> params(12, 1.0f);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_adam_step(adam.get(), 0.1f, params.data(), 8, params.data() + 4, 8));
  EXPECT_EQ(params[0], 1.0f);
}
