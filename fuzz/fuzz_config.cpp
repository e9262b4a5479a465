// The trainer's INI config through the C ABI: nyxq_config_parse on any text,
// then the same text as a file through nyxq_config_load and as a CPU
// context's config_path. All three must agree (OK or NYXQ_ERROR_CONFIG), and
// a context made with the config must report the config's planning policy.
#include "harness.hpp"

namespace {

using namespace nyxq_fuzz;

void run(Input &in) {
  std::string_view raw = in.rest();
  std::string text(raw.substr(0, raw.find('\0')));

  NyxqConfig *config = nullptr;
  NyxqStatus parsed = NYXQ_CALL(nyxq_config_parse, text.c_str(), "fuzz.ini", &config);
  if (parsed != NYXQ_OK && parsed != NYXQ_ERROR_CONFIG) fail("config text is OK or NYXQ_ERROR_CONFIG");

  TempFile file(text);
  NyxqConfig *loaded = nullptr;
  expect(NYXQ_CALL(nyxq_config_load, file.path(), &loaded), parsed, "nyxq_config_load of the same text");
  NYXQ_CALL(nyxq_config_destroy, loaded);

  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_CPU;
  options.thread_count = 1;
  options.config_path = file.path();
  NyxqContext *ctx = nullptr;
  expect(NYXQ_CALL(nyxq_context_create, &options, &ctx), parsed, "a context with the same config");

  if (parsed == NYXQ_OK) {
    for (int32_t training : {0, 1}) {
      NyxqPlanPolicy from_config{}, from_context{};
      NYXQ_CALL(nyxq_config_policy, config, training, &from_config);
      NYXQ_CALL(nyxq_context_plan_policy, ctx, training, &from_context);
      if (std::memcmp(&from_config, &from_context, sizeof from_config) != 0) {
        fail("the context's policy is not its config's");
      }
    }
    char *warnings = nullptr;
    NYXQ_CALL(nyxq_config_warnings, config, &warnings);
    if (warnings == nullptr) fail("nyxq_config_warnings gave NULL");
    expect(NYXQ_CALL(nyxq_string_destroy, warnings), NYXQ_OK, "destroying the warnings");
    expect(NYXQ_CALL(nyxq_config_destroy, config), NYXQ_OK, "nyxq_config_destroy");
    expect(NYXQ_CALL(nyxq_config_destroy, config), NYXQ_ERROR_INVALID_HANDLE, "a second nyxq_config_destroy");
    expect(NYXQ_CALL(nyxq_context_destroy, ctx), NYXQ_OK, "nyxq_context_destroy");
  } else if (config != nullptr || ctx != nullptr) {
    fail("a refused config wrote an output");
  }
  expect_no_live_handles("a config");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return nyxq_fuzz::run_one(data, size, run);
}
