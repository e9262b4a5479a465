// Linked into the sanitizer builds of the C++ tests only.
//
// LeakSanitizer symbolizes the stacks of leaked blocks at exit. The Vulkan
// loader dlclose()s its drivers and layers when the instance is destroyed, so
// by then their code is unmapped and their frames read "<unknown module>",
// which no suppression in lsan.supp can match. This definition takes the place
// of libc's dlclose for the whole process (the executable's symbols come first
// in the global lookup scope): nothing is ever unloaded, every frame keeps its
// library's name, and lsan.supp can tell a driver's allocations from nyxq's.
// The libraries stay loaded until exit, which is where they end anyway.
extern "C" int dlclose(void *) { return 0; }
