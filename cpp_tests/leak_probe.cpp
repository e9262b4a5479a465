// Proves that the sanitizer tests still catch nyxq's own leaks while lsan.supp
// hides the Vulkan drivers'. It does what the GPU tests do (a context on the
// Vulkan device with validation, created and destroyed), then leaks one nyxq
// handle on purpose. ctest runs its sanitizer build expecting LeakSanitizer to
// fail it and to name the leaking nyxq function (expect_leak.sh).
#include <cstdio>

#include "nyxq.h"

int main() {
  NyxqContextOptions options;
  if (nyxq_context_options_default(&options) != NYXQ_OK) return 2;
  options.backend = NYXQ_BACKEND_VULKAN;
  options.vulkan_validation = 1;
  NyxqContext *ctx = nullptr;
  NyxqStatus status = nyxq_context_create(&options, &ctx);
  if (status != NYXQ_OK) {
    std::fprintf(stderr, "leak_probe: no Vulkan context: %s\n", nyxq_last_error_message());
    return 3;
  }
  nyxq_context_destroy(ctx);

  NyxqLossScaler *leaked = nullptr;
  if (nyxq_loss_scaler_create(nullptr, &leaked) != NYXQ_OK) return 4;
  std::printf("leak_probe: leaking the loss scaler %p\n", static_cast<void *>(leaked));
  return 0;
}
