// Model descriptions (JSON, docs/planning.md "Describing a model") through
// nyxq_model_load, and every model it accepts planned for a host-only
// profile: summary, entries, explanation, JSON, a replan and the feasibility
// check. Limits are errors, never allocations (a model of 10^11 blocks is
// NYXQ_ERROR_CONFIG at once).
#include "harness.hpp"

namespace {

using namespace nyxq_fuzz;

void plan_and_read(NyxqModel *model) {
  NyxqHardware hardware{};
  NYXQ_CALL(nyxq_hardware_profile, "cpu-only", &hardware);
  NyxqPlanFeasibility feasibility{};
  NYXQ_CALL(nyxq_plan_feasibility, model, &hardware, nullptr, &feasibility);
  NyxqPlan *plan = nullptr;
  if (NYXQ_CALL(nyxq_plan_create, model, &hardware, nullptr, &plan) != NYXQ_OK) return;
  NyxqPlanSummary summary{};
  NYXQ_CALL(nyxq_plan_summary, plan, &summary);
  std::vector<NyxqPlanEntry> entries(summary.tensor_count + 1);
  if (summary.tensor_count > 0) {
    expect(NYXQ_CALL(nyxq_plan_entries, plan, entries.data(), summary.tensor_count - 1),
           NYXQ_ERROR_BUFFER_TOO_SMALL, "plan entries into a short buffer");
    if (nyxq_last_error_needed_len() != summary.tensor_count) fail("needed entries are not the tensor count");
  }
  NYXQ_CALL(nyxq_plan_entries, plan, entries.data(), entries.size());
  for (size_t i = 0; i < summary.tensor_count; ++i) {
    if (entries[i].name == nullptr || entries[i].reason == nullptr) fail("a plan entry without name or reason");
  }
  for (auto text_of : {nyxq_plan_explain, nyxq_plan_to_json}) {
    char *text = nullptr;
    NYXQ_CALL(text_of, plan, &text);
    expect(NYXQ_CALL(nyxq_string_destroy, text), NYXQ_OK, "destroying a plan's text");
  }
  NyxqPlan *smaller = nullptr;
  if (NYXQ_CALL(nyxq_plan_replan, plan, summary.device_bytes / 2, &smaller) == NYXQ_OK) {
    NYXQ_CALL(nyxq_plan_destroy, smaller);
  }
  expect(NYXQ_CALL(nyxq_plan_destroy, plan), NYXQ_OK, "nyxq_plan_destroy");
}

void run(Input &in) {
  TempFile file(in.rest());
  NyxqModel *model = nullptr;
  NyxqStatus s = NYXQ_CALL(nyxq_model_load, file.path(), &model);
  if (s == NYXQ_OK) {
    plan_and_read(model);
    expect(NYXQ_CALL(nyxq_model_destroy, model), NYXQ_OK, "nyxq_model_destroy");
  } else if (model != nullptr) {
    fail("a refused model wrote its output");
  }
  expect_no_live_handles("a model");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return nyxq_fuzz::run_one(data, size, run);
}
