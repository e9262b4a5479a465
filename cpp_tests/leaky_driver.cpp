// A stand-in for a Vulkan driver that keeps an allocation for the life of the
// process, as lavapipe's LLVM does on some CPUs. Built as
// libvulkan_leaky_driver.so so that lsan.supp's `libvulkan_` rule covers it.
#include <cstdlib>
#include <cstring>

extern "C" void leaky_driver_init() {
  void *table = std::malloc(128);
  table = std::realloc(table, 256);
  if (table != nullptr) std::memset(table, 0, 256);
}
