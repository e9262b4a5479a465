// Loads a library whose code leaks, calls it and dlclose()s it, as the Vulkan
// loader does with its drivers when an instance is destroyed. In a sanitizer
// build linked with keep_libraries_mapped.cpp the library stays mapped, so the
// leak's frames name it and lsan.supp suppresses it: the program must exit 0.
// (Without keep_libraries_mapped.cpp the frames read "<unknown module>" and
// LeakSanitizer fails the program, which is what the GPU tests hit on CPUs
// where lavapipe leaks.)
#include <dlfcn.h>

#include <cstdio>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  void *driver = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (driver == nullptr) {
    std::fprintf(stderr, "unloaded_driver_probe: %s\n", dlerror());
    return 3;
  }
  auto init = reinterpret_cast<void (*)()>(dlsym(driver, "leaky_driver_init"));
  if (init == nullptr) return 4;
  init();
  dlclose(driver);
  return 0;
}
