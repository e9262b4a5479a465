// Hardware profiles (JSON, like config/profiles/) through nyxq_hardware_load,
// and a small model planned for every profile it accepts.
#include "harness.hpp"

namespace {

using namespace nyxq_fuzz;

// A two-tensor model, made once and kept.
NyxqModel *small_model() {
  static NyxqModel *model = [] {
    NyxqModel *made = nullptr;
    NYXQ_CALL(nyxq_model_create, "fuzz", &made);
    const uint64_t embed[2] = {256, 64}, norm[1] = {64};
    NYXQ_CALL(nyxq_model_add_tensor, made, "embed", NYXQ_ROLE_EMBEDDING, embed, 2, -1.0, nullptr, 0);
    NYXQ_CALL(nyxq_model_add_tensor, made, "norm", NYXQ_ROLE_NORM, norm, 1, -1.0, nullptr, 0);
    kept_handles += 1;
    return made;
  }();
  return model;
}

void run(Input &in) {
  NyxqModel *model = small_model();
  TempFile file(in.rest());
  NyxqHardware hardware{};
  hardware.struct_size = 1;
  NyxqStatus s = NYXQ_CALL(nyxq_hardware_load, file.path(), &hardware);
  if (s != NYXQ_OK) {
    if (hardware.struct_size != 1) fail("a refused profile wrote its output");
    return;
  }
  if (hardware.struct_size != sizeof hardware) fail("a loaded profile's struct_size is not sizeof(NyxqHardware)");
  if (std::memchr(hardware.name, '\0', sizeof hardware.name) == nullptr) fail("a profile name without its NUL");
  for (int32_t training : {0, 1}) {
    NyxqPlanPolicy policy;
    NYXQ_CALL(nyxq_plan_policy_default, &policy);
    policy.training = training;
    NyxqPlan *plan = nullptr;
    if (NYXQ_CALL(nyxq_plan_create, model, &hardware, &policy, &plan) == NYXQ_OK) {
      NYXQ_CALL(nyxq_plan_destroy, plan);
    }
    NyxqPlanFeasibility feasibility{};
    NYXQ_CALL(nyxq_plan_feasibility, model, &hardware, &policy, &feasibility);
  }
  expect_no_live_handles("a hardware profile");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return nyxq_fuzz::run_one(data, size, run);
}
