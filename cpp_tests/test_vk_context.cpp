// Vulkan contexts through the C ABI: device info on the test device (lavapipe
// unless NYXQ_VK_TEST_DEVICE=system), validation errors counted, and the
// fallback when the loader is missing. Skips (exit 77) when no device exists.

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "nyxq.h"
#include "support.hpp"

namespace {

const char *kLavapipe = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

// Pins the lavapipe driver (the loader reads these at vkCreateInstance) and
// turns validation on, unless the run asks for the machine's own drivers.
void pin_test_device() {
  const char *device = std::getenv("NYXQ_VK_TEST_DEVICE");
  if (device == nullptr || std::string(device) != "system") {
    setenv("VK_DRIVER_FILES", kLavapipe, 1);
    setenv("VK_ICD_FILENAMES", kLavapipe, 1);
  }
}

nyxq_test::ContextPtr vulkan_context(NyxqStatus *status) {
  pin_test_device();
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_VULKAN;
  options.vulkan_validation = 1;
  NyxqContext *ctx = nullptr;
  *status = nyxq_context_create(&options, &ctx);
  return nyxq_test::ContextPtr(ctx);
}

}  // namespace

TEST(VkContext, DeviceInfoDescribesTheDevice) {
  NyxqStatus status;
  auto ctx = vulkan_context(&status);
  if (status == NYXQ_ERROR_UNSUPPORTED) {
    SKIP_MISSING("no Vulkan device: " << nyxq_last_error_message());
  }
  CHECK_OK(status);
  NyxqContextInfo info;
  CHECK_OK(nyxq_context_info(ctx.get(), &info));
  EXPECT_EQ(info.backend, NYXQ_BACKEND_VULKAN);
  EXPECT_STREQ(info.backend_name, "vulkan");

  NyxqDeviceInfo dev;
  std::memset(&dev, 0xab, sizeof dev);
  CHECK_OK(nyxq_context_device_info(ctx.get(), &dev));
  EXPECT_GT(std::strlen(dev.name), 0u);
  EXPECT_GT(std::strlen(dev.driver_name), 0u);
  EXPECT_GE(dev.api_version, (1u << 22) | (2u << 12));
  EXPECT_GT(dev.device_local_bytes, 0u);
  EXPECT_GE(dev.max_storage_buffer_range, 1u << 27);
  EXPECT_GE(dev.subgroup_size, 1u);
  EXPECT_LE(dev.storage_8bit, 1u);
  EXPECT_EQ(dev.has_memory_budget == 0, dev.budget_bytes == 0);
  EXPECT_EQ(dev.validation_errors, 0u);
}

// The context report: the backend on its first line; on Vulkan a line per
// kernel with the variant in use, the device features (chosen by nyxq on
// its own device) and whether dispatches are labelled (nyxq's instance has
// VK_EXT_debug_utils with validation).
TEST(VkContext, TheReportNamesTheBackendEachKernelAndTheFeatures) {
  auto cpu = nyxq_test::cpu_context(1);
  char *text = nullptr;
  CHECK_OK(nyxq_context_report(cpu.get(), &text));
  nyxq_test::StringPtr cpu_report(text);
  EXPECT_EQ(std::string(text).rfind("backend cpu", 0), 0u) << text;
  char *untouched = reinterpret_cast<char *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_report(nullptr, &untouched));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_report(cpu.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_context_report(reinterpret_cast<NyxqContext *>(0x10), &untouched));
  EXPECT_EQ(untouched, reinterpret_cast<char *>(0x1));

  NyxqStatus status;
  auto ctx = vulkan_context(&status);
  if (status == NYXQ_ERROR_UNSUPPORTED) {
    SKIP_MISSING("no Vulkan device: " << nyxq_last_error_message());
  }
  CHECK_OK(status);
  CHECK_OK(nyxq_context_report(ctx.get(), &text));
  nyxq_test::StringPtr report(text);
  const std::string r = text;
  EXPECT_EQ(r.rfind("backend vulkan on '", 0), 0u) << r;
  for (const char *words : {"quantize_f32_q4_0: ", "self-test passed", "matvec W", "device features: ",
                            "debug labels: each dispatch is labelled"}) {
    EXPECT_NE(r.find(words), std::string::npos) << words << " in\n" << r;
  }
}

TEST(VkContext, DeviceInfoOnACpuContextIsUnsupportedAndWritesNothing) {
  auto ctx = nyxq_test::cpu_context(1);
  NyxqDeviceInfo dev;
  std::memset(&dev, 0x5a, sizeof dev);
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_context_device_info(ctx.get(), &dev));
  EXPECT_EQ(static_cast<unsigned char>(dev.name[0]), 0x5au);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_context_device_info(ctx.get(), nullptr));
}

TEST(VkContext, MissingLoaderFallsBackOrFailsWithTheReason) {
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.vulkan_loader_path = "/nonexistent/libvulkan.so.1";
  NyxqContext *raw = nullptr;
  CHECK_OK(nyxq_context_create(&options, &raw));
  nyxq_test::ContextPtr ctx(raw);
  NyxqContextInfo info;
  CHECK_OK(nyxq_context_info(ctx.get(), &info));
  EXPECT_EQ(info.backend, NYXQ_BACKEND_CPU);
  EXPECT_NE(std::string(info.fallback_reason).find("no Vulkan loader"), std::string::npos)
      << info.fallback_reason;

  options.backend = NYXQ_BACKEND_VULKAN;
  NyxqContext *untouched = reinterpret_cast<NyxqContext *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_context_create(&options, &untouched));
  EXPECT_EQ(untouched, reinterpret_cast<NyxqContext *>(0x1));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("no Vulkan loader"), std::string::npos);
}

TEST(VkContext, BorrowedHandlesAreChecked) {
  NyxqContext *untouched = reinterpret_cast<NyxqContext *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_context_create_vulkan_borrowed(nullptr, nullptr, &untouched));
  NyxqVulkanHandles handles{};
  handles.struct_size = sizeof handles;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_context_create_vulkan_borrowed(nullptr, &handles, &untouched));
  handles.struct_size = 8;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_context_create_vulkan_borrowed(nullptr, &handles, &untouched));
  EXPECT_EQ(untouched, reinterpret_cast<NyxqContext *>(0x1));
}
