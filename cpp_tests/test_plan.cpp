// Contract tests of the planning and config ABI: models, hardware profiles,
// policies, plans (entries, summary, text, JSON, replan), infeasible plans,
// the [quantization] config, and bad inputs for every function.
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

using nyxq_test::ConfigPtr;
using nyxq_test::ModelPtr;
using nyxq_test::PlanPtr;
using nyxq_test::StringPtr;

static_assert(offsetof(NyxqHardware, struct_size) == 0, "struct_size first");
static_assert(offsetof(NyxqPlanPolicy, struct_size) == 0, "struct_size first");
static_assert(sizeof(NyxqPlanEntry) == 64, "NyxqPlanEntry layout");
static_assert(offsetof(NyxqPlanEntry, weight_bytes) == 24, "NyxqPlanEntry layout");
static_assert(sizeof(NyxqHardware) == 112, "NyxqHardware layout");

std::string last_error() { return nyxq_last_error_message(); }

// A small transformer-like model: embedding, attention, MLP, norm, LM head.
ModelPtr small_model(uint64_t vocab = 4096, uint64_t hidden = 256, int layers = 2) {
  NyxqModel *raw = nullptr;
  EXPECT_EQ(nyxq_model_create("small", &raw), NYXQ_OK) << last_error();
  ModelPtr model(raw);
  auto add = [&](const std::string &name, int32_t role, std::vector<uint64_t> shape) {
    EXPECT_EQ(nyxq_model_add_tensor(model.get(), name.c_str(), role, shape.data(), shape.size(),
                                    -1.0, nullptr, 0),
              NYXQ_OK)
        << last_error();
  };
  add("embed", NYXQ_ROLE_EMBEDDING, {vocab, hidden});
  for (int i = 0; i < layers; ++i) {
    std::string p = "layer" + std::to_string(i) + ".";
    add(p + "qkv", NYXQ_ROLE_ATTENTION, {3 * hidden, hidden});
    add(p + "o", NYXQ_ROLE_ATTENTION, {hidden, hidden});
    add(p + "up", NYXQ_ROLE_MLP, {8 * hidden, hidden});
    add(p + "down", NYXQ_ROLE_MLP, {hidden, 4 * hidden});
    add(p + "norm", NYXQ_ROLE_NORM, {hidden});
  }
  add("lm_head", NYXQ_ROLE_OUTPUT, {vocab, hidden});
  return model;
}

NyxqHardware profile(const char *name) {
  NyxqHardware hw;
  std::memset(&hw, 0, sizeof hw);
  EXPECT_EQ(nyxq_hardware_profile(name, &hw), NYXQ_OK) << last_error();
  return hw;
}

PlanPtr make_plan(const NyxqModel *model, const NyxqHardware *hw, const NyxqPlanPolicy *policy) {
  NyxqPlan *raw = nullptr;
  NyxqStatus status = nyxq_plan_create(model, hw, policy, &raw);
  EXPECT_EQ(status, NYXQ_OK) << last_error();
  return PlanPtr(raw);
}

std::vector<NyxqPlanEntry> entries(const NyxqPlan *plan) {
  NyxqPlanSummary summary;
  EXPECT_EQ(nyxq_plan_summary(plan, &summary), NYXQ_OK);
  std::vector<NyxqPlanEntry> out(summary.tensor_count);
  EXPECT_EQ(nyxq_plan_entries(plan, out.data(), out.size()), NYXQ_OK) << last_error();
  return out;
}

}  // namespace

TEST(Plan, ProfilesAreListedAndLoaded) {
  size_t count = 0;
  CHECK_OK(nyxq_hardware_profile_count(&count));
  ASSERT_EQ(count, 4u);
  for (size_t i = 0; i < count; ++i) {
    NyxqHardware hw;
    CHECK_OK(nyxq_hardware_profile_at(i, &hw));
    EXPECT_GT(hw.device_local_bytes, 0u);
    NyxqHardware again = profile(hw.name);
    EXPECT_EQ(again.device_local_bytes, hw.device_local_bytes);
  }
  NyxqHardware rx580 = profile("amd-rx580-8gb");
  EXPECT_EQ(rx580.fp16_arithmetic, 0);
  EXPECT_GT(rx580.max_allocation_bytes, 0u);
  EXPECT_LT(rx580.max_allocation_bytes, 4ull << 30);
  auto ctx = nyxq_test::cpu_context();
  NyxqHardware detected;
  CHECK_OK(nyxq_hardware_detect(ctx.get(), &detected));
  EXPECT_EQ(detected.cpu_only, 1);
  EXPECT_GT(detected.device_local_bytes, 0u);
}

// Without /proc/meminfo nyxq cannot tell how much memory the host has: a CPU
// context can neither be detected as hardware nor report its memory status.
// A child process takes it away in a mount namespace of its own, binding
// /dev/null over it, and asks.
TEST(Plan, DetectingTheHostWithoutItsMemoryFactsIsUnsupported) {
  auto ctx = nyxq_test::cpu_context(1);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Exit 2: this machine gives the process no mount namespace of its own.
    // (Both mounts ignore the file system type; Valgrind wants one named.)
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("/dev/null", "/proc/meminfo", "none", MS_BIND, nullptr) != 0) {
      _exit(2);
    }
    NyxqHardware hw;
    const NyxqStatus status = nyxq_hardware_detect(ctx.get(), &hw);
    NyxqMemoryStatus memory;
    memory.struct_size = sizeof memory;
    const NyxqStatus memory_status = nyxq_context_memory_status(ctx.get(), &memory);
    _exit(status == NYXQ_ERROR_UNSUPPORTED && memory_status == NYXQ_ERROR_UNSUPPORTED ? 0 : 3);
  }
  int exit_status = 0;
  ASSERT_EQ(waitpid(child, &exit_status, 0), child);
  ASSERT_TRUE(WIFEXITED(exit_status));
  if (WEXITSTATUS(exit_status) == 2) GTEST_SKIP() << "no mount namespace for a test: user namespaces are off";
  EXPECT_EQ(WEXITSTATUS(exit_status), 0) << "without /proc/meminfo, nyxq_hardware_detect or "
                                            "nyxq_context_memory_status did not report NYXQ_ERROR_UNSUPPORTED";
}

TEST(Plan, FitsReportsAndExplainsOnTheRx580) {
  ModelPtr model = small_model();
  NyxqHardware hw = profile("amd-rx580-8gb");
  NyxqPlanPolicy policy;
  CHECK_OK(nyxq_plan_policy_default(&policy));
  policy.min_snr_db = 50.0;  // rules out INT8: the 16-bit step must not be F16 here
  policy.default_format = NYXQ_FORMAT_Q8_0;
  PlanPtr plan = make_plan(model.get(), &hw, &policy);
  ASSERT_TRUE(plan);
  NyxqPlanSummary s;
  CHECK_OK(nyxq_plan_summary(plan.get(), &s));
  EXPECT_LE(s.device_bytes, s.device_budget);
  EXPECT_EQ(s.changed_count, 0u);
  for (const NyxqPlanEntry &e : entries(plan.get())) {
    EXPECT_NE(e.format, NYXQ_FORMAT_F16) << e.name;
    EXPECT_STRNE(e.reason, "");
    if (e.role == NYXQ_ROLE_NORM) {
      EXPECT_EQ(e.format, NYXQ_FORMAT_F32);
    }
    EXPECT_GE(e.snr_db, 50.0) << e.name;
  }
  char *text = nullptr;
  CHECK_OK(nyxq_plan_explain(plan.get(), &text));
  StringPtr text_owner(text);
  EXPECT_NE(std::string(text).find("decisions:"), std::string::npos);
  EXPECT_NE(std::string(text).find("Q8_0 SNR 45.3 dB < 50.0 dB threshold"), std::string::npos) << text;
  char *json = nullptr;
  CHECK_OK(nyxq_plan_to_json(plan.get(), &json));
  StringPtr json_owner(json);
  EXPECT_EQ(json[0], '{');
  EXPECT_NE(std::string(json).find("\"tensors\""), std::string::npos);
}

TEST(Plan, ReplanShrinksWithFewChangesAndGrowsBack) {
  ModelPtr model = small_model();
  NyxqHardware hw = profile("cpu-only");
  PlanPtr plan = make_plan(model.get(), &hw, nullptr);
  NyxqPlanSummary s;
  CHECK_OK(nyxq_plan_summary(plan.get(), &s));
  uint64_t budget = s.device_bytes;
  for (int step = 0; step < 4; ++step) {
    budget = budget * 3 / 4;
    NyxqPlan *raw = nullptr;
    CHECK_OK(nyxq_plan_replan(plan.get(), budget, &raw));
    PlanPtr next(raw);
    NyxqPlanSummary ns;
    CHECK_OK(nyxq_plan_summary(next.get(), &ns));
    EXPECT_LE(ns.device_bytes, budget);
    EXPECT_GT(ns.changed_count, 0u);
    EXPECT_LT(ns.changed_count, ns.tensor_count);
    size_t flagged = 0;
    for (const NyxqPlanEntry &e : entries(next.get())) flagged += e.changed;
    EXPECT_EQ(flagged, ns.changed_count);
    plan = std::move(next);
  }
  NyxqPlan *raw = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INFEASIBLE_PLAN, nyxq_plan_replan(plan.get(), 1024, &raw));
  EXPECT_EQ(raw, nullptr);
}

TEST(Plan, InfeasibleGivesTheShortfallAndALadderShape) {
  ModelPtr model = small_model(100000, 768, 8);
  NyxqHardware hw = profile("amd-rx580-8gb");
  hw.device_local_bytes = 256ull << 20;
  hw.host_bytes = 0;
  NyxqPlanPolicy policy;
  CHECK_OK(nyxq_plan_policy_default(&policy));
  policy.training = 1;
  NyxqPlan *raw = reinterpret_cast<NyxqPlan *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_INFEASIBLE_PLAN, nyxq_plan_create(model.get(), &hw, &policy, &raw));
  EXPECT_EQ(raw, reinterpret_cast<NyxqPlan *>(0x1)) << "out-param untouched on failure";
  std::string message = last_error();
  EXPECT_NE(message.find("short"), std::string::npos) << message;
  EXPECT_NE(message.find("ladder"), std::string::npos) << message;

  NyxqPlanFeasibility f;
  CHECK_OK(nyxq_plan_feasibility(model.get(), &hw, &policy, &f));
  EXPECT_EQ(f.feasible, 0);
  EXPECT_GT(f.shortfall_bytes, 0u);
  ASSERT_EQ(f.has_recommendation, 1);
  EXPECT_NE(message.find(f.recommended_name), std::string::npos) << message;
  EXPECT_GE(f.recommended_hidden, 256u);
  EXPECT_GE(f.recommended_layers, 2u);
  EXPECT_GE(f.recommended_vocab, 10000u);

  ModelPtr tiny = small_model(256, 64, 1);
  CHECK_OK(nyxq_plan_feasibility(tiny.get(), &hw, &policy, &f));
  EXPECT_EQ(f.feasible, 1);
  EXPECT_EQ(f.shortfall_bytes, 0u);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_feasibility(tiny.get(), &hw, &policy, nullptr));
}

// A fuzzing finding: byte totals beyond 64 bits are an error, never a wrap.
TEST(Plan, TotalsBeyond64BitsAreSizeOverflow) {
  NyxqModel *raw_model = nullptr;
  CHECK_OK(nyxq_model_create("huge", &raw_model));
  ModelPtr model(raw_model);
  const uint64_t shape[2] = {uint64_t{1} << 20, uint64_t{1} << 30};
  for (int i = 0; i < 4096; ++i) {
    std::string name = "t" + std::to_string(i);
    CHECK_OK(nyxq_model_add_tensor(model.get(), name.c_str(), NYXQ_ROLE_MLP, shape, 2, -1.0, nullptr, 0));
  }
  NyxqPlan *plan = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_plan_create(model.get(), nullptr, nullptr, &plan));
  EXPECT_EQ(plan, nullptr);
  NyxqPlanFeasibility f;
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_plan_feasibility(model.get(), nullptr, nullptr, &f));
}

TEST(Plan, MeasuredErrorComesFromTheData) {
  NyxqModel *raw = nullptr;
  CHECK_OK(nyxq_model_create("measured", &raw));
  ModelPtr model(raw);
  std::vector<float> data(64 * 256);
  uint32_t s = 7;
  for (float &x : data) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int32_t>(s >> 8) % 2001 - 1000) / 1000.0f;
  }
  uint64_t shape[] = {64, 256};
  CHECK_OK(nyxq_model_add_tensor(model.get(), "w", NYXQ_ROLE_MLP, shape, 2, 1.0, data.data(), data.size()));
  data[5] = NAN;
  EXPECT_STATUS(NYXQ_ERROR_NON_FINITE,
                nyxq_model_add_tensor(model.get(), "w2", NYXQ_ROLE_MLP, shape, 2, 1.0, data.data(), data.size()));
  NyxqHardware hw = profile("nvidia-h200-141gb");
  NyxqPlanPolicy policy;
  CHECK_OK(nyxq_plan_policy_default(&policy));
  policy.default_format = NYXQ_FORMAT_Q4_0;
  PlanPtr plan = make_plan(model.get(), &hw, &policy);
  std::vector<NyxqPlanEntry> e = entries(plan.get());
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].error_source, 1);
  EXPECT_TRUE(std::isfinite(e[0].snr_db));
}

// The Nyx trainer's [quantization] section as it ships (tests/fixtures): it
// loads, plans every tensor in FP32, and says what does not apply.
TEST(Plan, NyxTrainersConfigLoadsAsWritten) {
  const std::string path = std::string(NYXQ_SOURCE_DIR) + "/tests/fixtures/nyx_trainer_quantization.ini";
  NyxqConfig *raw = nullptr;
  CHECK_OK(nyxq_config_load(path.c_str(), &raw));
  ConfigPtr config(raw);
  for (int training = 0; training <= 1; ++training) {
    NyxqPlanPolicy policy;
    CHECK_OK(nyxq_config_policy(config.get(), training, &policy));
    EXPECT_EQ(policy.allowed_formats, 1u << NYXQ_FORMAT_F32);
    EXPECT_EQ(policy.default_format, NYXQ_FORMAT_F32);
    EXPECT_EQ(policy.device_cap_bytes, 4096ull << 20);
    EXPECT_NEAR(policy.min_snr_db, 4.16, 0.01);
  }
  char *text = nullptr;
  CHECK_OK(nyxq_config_warnings(config.get(), &text));
  StringPtr warnings(text);
  const std::string w = warnings.get();
  EXPECT_EQ(std::count(w.begin(), w.end(), '\n'), 5) << w;
  for (const char *expected : {":10: quantization is disabled", ":17: attention_precision = FP16 does not apply",
                               ":22: weight_precision = INT4 is below precision_level = FP32",
                               ":14: accuracy_threshold = 0.85"}) {
    EXPECT_NE(w.find(expected), std::string::npos) << expected << " in\n" << w;
  }

  NyxqConfig *quiet = nullptr;
  CHECK_OK(nyxq_config_parse("[quantization]\nenabled = true\naccuracy_threshold = 0.99\n", "ok.ini", &quiet));
  ConfigPtr quiet_config(quiet);
  CHECK_OK(nyxq_config_warnings(quiet_config.get(), &text));
  StringPtr none(text);
  EXPECT_STREQ(none.get(), "");
  text = reinterpret_cast<char *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_config_warnings(quiet_config.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_config_warnings(nullptr, &text));
  NyxqConfig *dead = nullptr;
  CHECK_OK(nyxq_config_parse("[quantization]\n", "dead.ini", &dead));
  dead = nyxq_test::destroyed(ConfigPtr(dead));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_config_warnings(dead, &text));
  EXPECT_EQ(text, reinterpret_cast<char *>(0x1));
}

TEST(Plan, ConfigParsesMapsAndReportsErrors) {
  const char *text =
      "[model]\nhidden = 768\n[quantization]\nenabled = true\nprecision_level = INT8\n"
      "accuracy_threshold = 0.999\n";
  NyxqConfig *raw = nullptr;
  CHECK_OK(nyxq_config_parse(text, "inline.ini", &raw));
  ConfigPtr config(raw);
  NyxqPlanPolicy policy;
  CHECK_OK(nyxq_config_policy(config.get(), 0, &policy));
  EXPECT_NEAR(policy.min_snr_db, 26.98, 0.01);
  EXPECT_EQ(policy.allowed_formats & (1u << NYXQ_FORMAT_Q4_0), 0u);
  EXPECT_EQ(policy.default_format, NYXQ_FORMAT_Q8_0);

  NyxqConfig *bad = reinterpret_cast<NyxqConfig *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_CONFIG,
                nyxq_config_parse("[quantization]\nenabled = true\nbogus = 2\n", "bad.ini", &bad));
  EXPECT_EQ(bad, reinterpret_cast<NyxqConfig *>(0x1));
  EXPECT_EQ(last_error().rfind("bad.ini:3:", 0), 0u) << last_error();
  EXPECT_STATUS(NYXQ_ERROR_IO, nyxq_config_load("/nonexistent/hrm_config.txt", &bad));

  char path[] = "/tmp/nyxq_plan_model_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const char *model_json =
      "{\"name\": \"file\", \"tensors\": [{\"name\": \"a\", \"role\": \"attention\", \"shape\": [64, 64]}]}";
  FILE *f = fdopen(fd, "w");
  std::fputs(model_json, f);
  std::fclose(f);
  NyxqModel *loaded = nullptr;
  CHECK_OK(nyxq_model_load(path, &loaded));
  ModelPtr model(loaded);
  PlanPtr plan = make_plan(model.get(), nullptr, &policy);
  EXPECT_EQ(entries(plan.get()).size(), 1u);
  std::remove(path);
}

TEST(Plan, BadInputsAreRejected) {
  ModelPtr model = small_model(256, 64, 1);
  NyxqHardware hw = profile("cpu-only");
  NyxqPlan *out = nullptr;
  uint64_t shape[] = {32, 32};

  // NULL pointers.
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_model_create(nullptr, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_create(nullptr, &hw, nullptr, &out));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_create(model.get(), &hw, nullptr, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_hardware_profile(nullptr, &hw));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_plan_policy_default(nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_model_add_tensor(model.get(), "x", NYXQ_ROLE_MLP, nullptr, 2, -1.0, nullptr, 0));

  // Unknown enum values, bad shapes, duplicates, wrong data lengths.
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_model_add_tensor(model.get(), "x", 7, shape, 2, -1.0, nullptr, 0));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_model_add_tensor(model.get(), "x", NYXQ_ROLE_MLP, shape, 0, -1.0, nullptr, 0));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_model_add_tensor(model.get(), "embed", NYXQ_ROLE_MLP, shape, 2, -1.0, nullptr, 0));
  float few[3] = {1, 2, 3};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_model_add_tensor(model.get(), "x", NYXQ_ROLE_MLP, shape, 2, -1.0, few, 3));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_model_add_tensor(model.get(), "x", NYXQ_ROLE_MLP, shape, 2, NAN, nullptr, 0));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_model_add_tensor(model.get(), "x", NYXQ_ROLE_MLP, shape, 2, INFINITY, nullptr, 0));
  NyxqModel *empty_raw = nullptr;
  CHECK_OK(nyxq_model_create("empty", &empty_raw));
  ModelPtr empty(empty_raw);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_plan_create(empty.get(), &hw, nullptr, &out));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_hardware_profile("gtx-1080", &hw));
  size_t count = 0;
  CHECK_OK(nyxq_hardware_profile_count(&count));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_hardware_profile_at(count, &hw));

  // Bad policies.
  NyxqPlanPolicy policy;
  CHECK_OK(nyxq_plan_policy_default(&policy));
  NyxqPlanPolicy p = policy;
  p.default_format = 99;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_plan_create(model.get(), &hw, &p, &out));
  p = policy;
  p.allowed_formats = 1u << (NYXQ_FORMAT_Q6_K + 1);  // past the last format
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_plan_create(model.get(), &hw, &p, &out));
  p = policy;
  p.struct_size = 8;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_plan_create(model.get(), &hw, &p, &out));
  p = policy;
  p.overrides = "no-equals-sign";
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_plan_create(model.get(), &hw, &p, &out));
  p = policy;
  p.optimizer_state = 5;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_plan_create(model.get(), &hw, &p, &out));
  p = policy;
  p.overrides = "embed=q8_0";
  PlanPtr plan = make_plan(model.get(), &hw, &p);
  EXPECT_EQ(entries(plan.get())[0].format, NYXQ_FORMAT_Q8_0);
  EXPECT_EQ(out, nullptr);

  // Too-small entry buffers report the count needed and write nothing.
  NyxqPlanEntry one[1];
  std::memset(one, 0xAB, sizeof one);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_plan_entries(plan.get(), one, 1));
  EXPECT_EQ(nyxq_last_error_needed_len(), 7u);
  EXPECT_EQ(reinterpret_cast<unsigned char *>(one)[0], 0xAB);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_plan_entries(plan.get(), nullptr, 0));

  // Destroyed and foreign handles, NULL destroys, foreign and double string frees.
  EXPECT_STATUS(NYXQ_OK, nyxq_plan_destroy(nullptr));
  EXPECT_STATUS(NYXQ_OK, nyxq_model_destroy(nullptr));
  EXPECT_STATUS(NYXQ_OK, nyxq_config_destroy(nullptr));
  EXPECT_STATUS(NYXQ_OK, nyxq_string_destroy(nullptr));
  NyxqPlan *gone = nullptr;
  CHECK_OK(nyxq_plan_replan(plan.get(), 1ull << 30, &gone));
  CHECK_OK(nyxq_plan_destroy(gone));
  NyxqPlanSummary s;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_plan_summary(gone, &s));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_plan_summary(reinterpret_cast<const NyxqPlan *>(model.get()), &s));
  char local[4] = "abc";
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_string_destroy(local));
  char *text = nullptr;
  CHECK_OK(nyxq_plan_explain(plan.get(), &text));
  CHECK_OK(nyxq_string_destroy(text));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_string_destroy(text));
}

TEST(Plan, ContextReadsTheTrainersConfigAtCreation) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/nyxq_ctx_good.ini", bad = dir + "/nyxq_ctx_bad.ini";
  {
    std::FILE *f = std::fopen(good.c_str(), "w");
    std::fputs("[training]\nsteps = 10\n[quantization]\nenabled = true\naccuracy_threshold = 0.999\n", f);
    std::fclose(f);
    f = std::fopen(bad.c_str(), "w");
    std::fputs("[quantization]\nenabled = true\nno_such_key = 1\n", f);
    std::fclose(f);
  }
  NyxqContextOptions o;
  CHECK_OK(nyxq_context_options_default(&o));
  EXPECT_EQ(o.config_path, nullptr);
  o.config_path = good.c_str();
  NyxqContext *ctx = nullptr;
  CHECK_OK(nyxq_context_create(&o, &ctx));
  NyxqPlanPolicy from_config, defaults;
  CHECK_OK(nyxq_context_plan_policy(ctx, 1, &from_config));
  CHECK_OK(nyxq_plan_policy_default(&defaults));
  // accuracy_threshold 0.999 (least cosine) maps to 10·log10(a²/(1−a²)) ≈ 27 dB.
  EXPECT_NEAR(from_config.min_snr_db, 10 * std::log10(0.999 * 0.999 / (1 - 0.999 * 0.999)), 0.01);
  EXPECT_NE(from_config.min_snr_db, defaults.min_snr_db);
  EXPECT_EQ(from_config.training, 1);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_plan_policy(ctx, 0, nullptr));
  CHECK_OK(nyxq_context_destroy(ctx));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_context_plan_policy(ctx, 0, &from_config));

  NyxqContext *none = nullptr;
  o.config_path = bad.c_str();
  EXPECT_STATUS(NYXQ_ERROR_CONFIG, nyxq_context_create(&o, &none));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("nyxq_ctx_bad.ini:3"), std::string::npos) << nyxq_last_error_message();
  o.config_path = "/nonexistent/nyxq.ini";
  EXPECT_STATUS(NYXQ_ERROR_IO, nyxq_context_create(&o, &none));
  EXPECT_EQ(none, nullptr);
  // Without a config the context's policy is the default one.
  NyxqContext *plain_raw = nullptr;
  CHECK_OK(nyxq_context_create(nullptr, &plain_raw));
  nyxq_test::ContextPtr plain(plain_raw);
  CHECK_OK(nyxq_context_plan_policy(plain.get(), 0, &from_config));
  EXPECT_EQ(from_config.min_snr_db, defaults.min_snr_db);
}
