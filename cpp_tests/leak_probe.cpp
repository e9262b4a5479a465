// Proves that the sanitizer tests still catch nyxq's own leaks while lsan.supp
// hides the Vulkan drivers'. It does what the GPU tests do (a context on the
// Vulkan device with validation, created and destroyed), then leaks twice on
// purpose: nyxq leaks a block (nyxq_test_leak, a test-only export), which
// LeakSanitizer must report; and the test never destroys a loss scaler, which
// the tests' main must report (nyxq_live_handles). ctest runs its sanitizer
// build expecting both (expect_leak.sh).
#include "support.hpp"

TEST(LeakProbe, NyxqLeaksABlockAndTheTestLeaksAHandle) {
  NyxqContextOptions options;
  CHECK_OK(nyxq_context_options_default(&options));
  options.backend = NYXQ_BACKEND_VULKAN;
  options.vulkan_validation = 1;
  NyxqContext *ctx = nullptr;
  NyxqStatus status = nyxq_context_create(&options, &ctx);
  if (status != NYXQ_OK) SKIP_MISSING("no Vulkan context: " << nyxq_last_error_message());
  nyxq_context_destroy(ctx);

  CHECK_OK(nyxq_test_leak(4096));
  NyxqLossScaler *leaked = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(nullptr, &leaked));
}
