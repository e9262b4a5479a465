// The Vulkan handoff as a trainer does it: the test creates its own instance
// (validation layer and a debug messenger that counts errors), device, queue,
// command pool and buffers, hands them to nyxq, and uses the device the three
// ways: nyxq's kernels recorded into the test's command buffer between its
// own commands; nyxq-owned device tensors whose VkBuffers the test binds; and
// nyxq's own submit-and-wait. Every byte is checked against the CPU. A device
// created with nyxq's features and declaring them runs nyxq's fast variants;
// declared VK_EXT_debug_utils labels each dispatch. Skips (exit 77) without a
// Vulkan device; lavapipe is pinned unless NYXQ_VK_TEST_DEVICE=system.

#include <gtest/gtest.h>
#include <vulkan/vulkan.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "nyxq.h"
#include "support.hpp"

namespace {

const char *kLavapipe = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

bool light() { return std::getenv("NYXQ_TEST_LIGHT") != nullptr; }

bool compat_forced() {
  const char *value = std::getenv("NYXQ_VK_FORCE_COMPAT");
  return value != nullptr && std::string(value) == "1";
}

// The names of the debug labels nyxq begins, seen through a
// vkGetInstanceProcAddr that wraps the loader's (handed to nyxq in place of
// the loader's own): its vkGetDeviceProcAddr hands out a
// vkCmdBeginDebugUtilsLabelEXT that notes the name and calls the real one.
std::vector<std::string> g_labels;
PFN_vkGetDeviceProcAddr g_device_proc_addr = nullptr;
PFN_vkCmdBeginDebugUtilsLabelEXT g_begin_label = nullptr;

VKAPI_ATTR void VKAPI_CALL spy_begin_label(VkCommandBuffer cmd, const VkDebugUtilsLabelEXT *label) {
  g_labels.emplace_back(label->pLabelName);
  g_begin_label(cmd, label);
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL spy_device_proc_addr(VkDevice device, const char *name) {
  PFN_vkVoidFunction real = g_device_proc_addr(device, name);
  if (real != nullptr && std::strcmp(name, "vkCmdBeginDebugUtilsLabelEXT") == 0) {
    g_begin_label = reinterpret_cast<PFN_vkCmdBeginDebugUtilsLabelEXT>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(spy_begin_label);
  }
  return real;
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL spy_instance_proc_addr(VkInstance instance, const char *name) {
  PFN_vkVoidFunction real = vkGetInstanceProcAddr(instance, name);
  if (real != nullptr && std::strcmp(name, "vkGetDeviceProcAddr") == 0) {
    g_device_proc_addr = reinterpret_cast<PFN_vkGetDeviceProcAddr>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(spy_device_proc_addr);
  }
  return real;
}

VKAPI_ATTR VkBool32 VKAPI_CALL count_errors(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                            VkDebugUtilsMessageTypeFlagsEXT,
                                            const VkDebugUtilsMessengerCallbackDataEXT *data,
                                            void *user) {
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    ++*static_cast<int *>(user);
    ADD_FAILURE() << "validation error: " << data->pMessage;
  }
  return VK_FALSE;
}

// A host-visible, coherent storage buffer of the trainer's.
struct HostBuffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void *mapped = nullptr;
  VkDeviceSize size = 0;
};

// Which optional features a trainer enables on its device.
enum class DeviceFeatures {
  kNone,   // none: nyxq's compatible variants
  kNyxqs,  // each one nyxq enables on its own device, where supported
};

// What a trainer owns: instance, device, queue, one command buffer and a fence.
class Trainer {
 public:
  explicit Trainer(uint32_t api_version = VK_API_VERSION_1_2,
                   DeviceFeatures features = DeviceFeatures::kNone)
      : api_version_(api_version), device_features_(features) {
    const char *device = std::getenv("NYXQ_VK_TEST_DEVICE");
    if (device == nullptr || std::string(device) != "system") {
      setenv("VK_DRIVER_FILES", kLavapipe, 1);
      setenv("VK_ICD_FILENAMES", kLavapipe, 1);
    }
    ok_ = open();
  }
  ~Trainer() { close(); }
  Trainer(const Trainer &) = delete;
  Trainer &operator=(const Trainer &) = delete;

  bool ok() const { return ok_; }
  const std::string &why() const { return why_; }
  int validation_errors() const { return validation_errors_; }
  bool validating() const { return messenger_ != VK_NULL_HANDLE; }
  VkDevice device() const { return device_; }
  VkCommandBuffer cmd() const { return cmd_; }

  // The handles nyxq borrows. The one cast: vkGetInstanceProcAddr is a function.
  NyxqVulkanHandles handles() const {
    NyxqVulkanHandles h;
    std::memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.instance = instance_;
    h.physical_device = physical_;
    h.device = device_;
    h.queue_family = family_;
    h.queue = queue_;
    h.get_instance_proc_addr = reinterpret_cast<void *>(vkGetInstanceProcAddr);
    return h;
  }

  // The handles, declaring what the trainer enabled: the pNext chain it
  // passed to vkCreateDevice and the device and instance extensions.
  NyxqVulkanHandles declared_handles() const {
    NyxqVulkanHandles h = handles();
    h.enabled_features = device_features_ == DeviceFeatures::kNyxqs ? &features_ : nullptr;
    h.enabled_extensions = device_extensions_.data();
    h.enabled_extension_count = device_extensions_.size();
    h.enabled_instance_extensions = instance_extensions_.data();
    h.enabled_instance_extension_count = instance_extensions_.size();
    return h;
  }

  // Whether vkCreateDevice enabled shaderIntegerDotProduct (nyxq's `_dot` matvec).
  bool integer_dot_product() const { return dot_.shaderIntegerDotProduct == VK_TRUE; }

  HostBuffer make_buffer(VkDeviceSize size) {
    HostBuffer b;
    b.size = size;
    VkBufferCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    info.size = size;
    info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    EXPECT_EQ(vkCreateBuffer(device_, &info, nullptr, &b.buffer), VK_SUCCESS);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device_, b.buffer, &req);
    VkPhysicalDeviceMemoryProperties props;
    vkGetPhysicalDeviceMemoryProperties(physical_, &props);
    const VkMemoryPropertyFlags want =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = 0;
    while (type < props.memoryTypeCount &&
           !((req.memoryTypeBits & (1u << type)) &&
             (props.memoryTypes[type].propertyFlags & want) == want)) {
      ++type;
    }
    VkMemoryAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    alloc.allocationSize = req.size;
    alloc.memoryTypeIndex = type;
    EXPECT_EQ(vkAllocateMemory(device_, &alloc, nullptr, &b.memory), VK_SUCCESS);
    EXPECT_EQ(vkBindBufferMemory(device_, b.buffer, b.memory, 0), VK_SUCCESS);
    EXPECT_EQ(vkMapMemory(device_, b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped), VK_SUCCESS);
    buffers_.push_back(b);
    return b;
  }

  void begin() {
    VkCommandBufferBeginInfo info{};
    info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    ASSERT_EQ(vkBeginCommandBuffer(cmd_, &info), VK_SUCCESS);
  }

  // A full barrier between the trainer's and nyxq's commands.
  void barrier() {
    VkMemoryBarrier b{};
    b.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                      VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                      VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                             VK_PIPELINE_STAGE_HOST_BIT,
                         0, 1, &b, 0, nullptr, 0, nullptr);
  }

  void copy(VkBuffer src, VkDeviceSize src_offset, VkBuffer dst, VkDeviceSize dst_offset,
            VkDeviceSize size) {
    VkBufferCopy region{src_offset, dst_offset, size};
    vkCmdCopyBuffer(cmd_, src, dst, 1, &region);
  }

  void submit_and_wait() {
    barrier();
    ASSERT_EQ(vkEndCommandBuffer(cmd_), VK_SUCCESS);
    submit_and_wait(cmd_);
  }

  // Submits the ended `cmd`, signalling `timeline` with `value` when it
  // completes (no signal for VK_NULL_HANDLE), and waits for it.
  void submit_and_wait(VkCommandBuffer cmd, VkSemaphore timeline = VK_NULL_HANDLE, uint64_t value = 0) {
    VkTimelineSemaphoreSubmitInfo values{};
    values.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
    values.signalSemaphoreValueCount = 1;
    values.pSignalSemaphoreValues = &value;
    VkSubmitInfo submit{};
    submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &cmd;
    if (timeline != VK_NULL_HANDLE) {
      submit.pNext = &values;
      submit.signalSemaphoreCount = 1;
      submit.pSignalSemaphores = &timeline;
    }
    ASSERT_EQ(vkQueueSubmit(queue_, 1, &submit, fence_), VK_SUCCESS);
    ASSERT_EQ(vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX), VK_SUCCESS);
    ASSERT_EQ(vkResetFences(device_, 1, &fence_), VK_SUCCESS);
    if (timeline != VK_NULL_HANDLE) {
      // The fence does not order the semaphore's signal (lavapipe signals it
      // after the fence at times): wait for the value itself.
      VkSemaphoreWaitInfo wait{};
      wait.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
      wait.semaphoreCount = 1;
      wait.pSemaphores = &timeline;
      wait.pValues = &value;
      ASSERT_EQ(vkWaitSemaphores(device_, &wait, UINT64_MAX), VK_SUCCESS);
    }
  }

  // One more command buffer of the trainer's pool (freed with the pool).
  VkCommandBuffer make_command_buffer() {
    VkCommandBufferAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    alloc.commandPool = pool_;
    alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    alloc.commandBufferCount = 1;
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    EXPECT_EQ(vkAllocateCommandBuffers(device_, &alloc, &cmd), VK_SUCCESS);
    return cmd;
  }

  // A timeline semaphore at 0 (destroyed with the trainer).
  VkSemaphore make_timeline() {
    VkSemaphoreTypeCreateInfo type{};
    type.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
    type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    VkSemaphoreCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
    info.pNext = &type;
    VkSemaphore semaphore = VK_NULL_HANDLE;
    EXPECT_EQ(vkCreateSemaphore(device_, &info, nullptr, &semaphore), VK_SUCCESS);
    semaphores_.push_back(semaphore);
    return semaphore;
  }

 private:
  bool open() {
    uint32_t layer_count = 0;
    vkEnumerateInstanceLayerProperties(&layer_count, nullptr);
    std::vector<VkLayerProperties> layers(layer_count);
    vkEnumerateInstanceLayerProperties(&layer_count, layers.data());
    bool have_validation = false;
    for (const auto &l : layers) {
      have_validation |= std::string(l.layerName) == "VK_LAYER_KHRONOS_validation";
    }
    const char *layer = "VK_LAYER_KHRONOS_validation";
    if (have_validation) instance_extensions_.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "nyxq handoff test";
    app.apiVersion = api_version_;
    VkInstanceCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    info.pApplicationInfo = &app;
    if (have_validation) {
      info.enabledLayerCount = 1;
      info.ppEnabledLayerNames = &layer;
    }
    info.enabledExtensionCount = static_cast<uint32_t>(instance_extensions_.size());
    info.ppEnabledExtensionNames = instance_extensions_.data();
    if (vkCreateInstance(&info, nullptr, &instance_) != VK_SUCCESS) {
      why_ = "no Vulkan driver";
      return false;
    }
    if (have_validation) {
      auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
          vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
      VkDebugUtilsMessengerCreateInfoEXT m{};
      m.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
      m.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT |
                          VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
      m.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                      VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT;
      m.pfnUserCallback = count_errors;
      m.pUserData = &validation_errors_;
      if (create != nullptr) {
        create(instance_, &m, nullptr, &messenger_);
      }
    }
    uint32_t count = 0;
    vkEnumeratePhysicalDevices(instance_, &count, nullptr);
    std::vector<VkPhysicalDevice> devices(count);
    vkEnumeratePhysicalDevices(instance_, &count, devices.data());
    for (VkPhysicalDevice pd : devices) {
      uint32_t n = 0;
      vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
      std::vector<VkQueueFamilyProperties> families(n);
      vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, families.data());
      for (uint32_t i = 0; i < n; ++i) {
        if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
          physical_ = pd;
          family_ = i;
          break;
        }
      }
      if (physical_ != VK_NULL_HANDLE) break;
    }
    if (physical_ == VK_NULL_HANDLE) {
      why_ = "no Vulkan device with a compute queue";
      return false;
    }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo queue{};
    queue.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    queue.queueFamilyIndex = family_;
    queue.queueCount = 1;
    queue.pQueuePriorities = &priority;
    VkDeviceCreateInfo dev{};
    dev.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    dev.queueCreateInfoCount = 1;
    dev.pQueueCreateInfos = &queue;
    if (api_version_ >= VK_API_VERSION_1_2) {
      // Timeline semaphores (core in 1.2, required of every 1.2 device) on
      // every device: nyxq_vk_release_when takes them.
      features_.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
      features_.pNext = &f11_;
      f11_.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
      f11_.pNext = &f12_;
      f12_.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
      f12_.timelineSemaphore = VK_TRUE;
      if (device_features_ == DeviceFeatures::kNyxqs) choose_nyxqs_features();
      dev.pNext = &features_;
      dev.enabledExtensionCount = static_cast<uint32_t>(device_extensions_.size());
      dev.ppEnabledExtensionNames = device_extensions_.data();
    }
    if (vkCreateDevice(physical_, &dev, nullptr, &device_) != VK_SUCCESS) {
      why_ = "vkCreateDevice failed";
      return false;
    }
    vkGetDeviceQueue(device_, family_, 0, &queue_);
    VkCommandPoolCreateInfo pool{};
    pool.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    pool.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pool.queueFamilyIndex = family_;
    vkCreateCommandPool(device_, &pool, nullptr, &pool_);
    VkCommandBufferAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    alloc.commandPool = pool_;
    alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    alloc.commandBufferCount = 1;
    vkAllocateCommandBuffers(device_, &alloc, &cmd_);
    VkFenceCreateInfo fence{};
    fence.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    vkCreateFence(device_, &fence, nullptr, &fence_);
    return true;
  }

  // Fills the feature chain with what nyxq enables on a device of its own:
  // 16-bit and 8-bit storage, shaderFloat16 and shaderInt8, and
  // shaderIntegerDotProduct with its extension, each where supported.
  void choose_nyxqs_features() {
    uint32_t count = 0;
    vkEnumerateDeviceExtensionProperties(physical_, nullptr, &count, nullptr);
    std::vector<VkExtensionProperties> extensions(count);
    vkEnumerateDeviceExtensionProperties(physical_, nullptr, &count, extensions.data());
    bool has_dot = false;
    for (const auto &e : extensions) {
      has_dot |= std::string(e.extensionName) == VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME;
    }
    VkPhysicalDeviceShaderIntegerDotProductFeatures dot{};
    dot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
    VkPhysicalDeviceVulkan12Features v12{};
    v12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
    v12.pNext = has_dot ? &dot : nullptr;
    VkPhysicalDeviceVulkan11Features v11{};
    v11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
    v11.pNext = &v12;
    VkPhysicalDeviceFeatures2 supported{};
    supported.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    supported.pNext = &v11;
    vkGetPhysicalDeviceFeatures2(physical_, &supported);
    f11_.storageBuffer16BitAccess = v11.storageBuffer16BitAccess;
    f12_.storageBuffer8BitAccess = v12.storageBuffer8BitAccess;
    f12_.shaderFloat16 = v12.shaderFloat16;
    f12_.shaderInt8 = v12.shaderInt8;
    dot_.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
    dot_.shaderIntegerDotProduct = has_dot ? dot.shaderIntegerDotProduct : VK_FALSE;
    if (dot_.shaderIntegerDotProduct == VK_TRUE) {
      f12_.pNext = &dot_;
      device_extensions_.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
    }
  }

  void close() {
    if (device_ != VK_NULL_HANDLE) {
      // Waiting on a device nyxq had destroyed would fail here.
      EXPECT_EQ(vkDeviceWaitIdle(device_), VK_SUCCESS);
      for (const auto &b : buffers_) {
        vkDestroyBuffer(device_, b.buffer, nullptr);
        vkFreeMemory(device_, b.memory, nullptr);
      }
      for (VkSemaphore semaphore : semaphores_) vkDestroySemaphore(device_, semaphore, nullptr);
      vkDestroyFence(device_, fence_, nullptr);
      vkDestroyCommandPool(device_, pool_, nullptr);
      vkDestroyDevice(device_, nullptr);
    }
    if (messenger_ != VK_NULL_HANDLE) {
      auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
          vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
      destroy(instance_, messenger_, nullptr);
    }
    if (instance_ != VK_NULL_HANDLE) vkDestroyInstance(instance_, nullptr);
  }

  uint32_t api_version_;
  DeviceFeatures device_features_;
  // What vkCreateDevice and vkCreateInstance were given (and nyxq is told).
  VkPhysicalDeviceFeatures2 features_{};
  VkPhysicalDeviceVulkan11Features f11_{};
  VkPhysicalDeviceVulkan12Features f12_{};
  VkPhysicalDeviceShaderIntegerDotProductFeatures dot_{};
  std::vector<const char *> device_extensions_;
  std::vector<const char *> instance_extensions_;
  bool ok_ = false;
  std::string why_;
  int validation_errors_ = 0;
  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  uint32_t family_ = 0;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  std::vector<HostBuffer> buffers_;
  std::vector<VkSemaphore> semaphores_;
};

nyxq_test::ContextPtr borrow(const NyxqVulkanHandles &h, const NyxqContextOptions *options = nullptr) {
  NyxqContext *ctx = nullptr;
  NyxqStatus status = nyxq_context_create_vulkan_borrowed(options, &h, &ctx);
  EXPECT_EQ(status, NYXQ_OK) << nyxq_test::describe(status);
  return nyxq_test::ContextPtr(ctx);
}

nyxq_test::ContextPtr borrow(const Trainer &trainer, const NyxqContextOptions *options = nullptr) {
  return borrow(trainer.handles(), options);
}

// The lines of nyxq_context_report.
std::vector<std::string> report_lines(const NyxqContext *ctx) {
  char *text = nullptr;
  EXPECT_EQ(nyxq_context_report(ctx, &text), NYXQ_OK) << nyxq_last_error_message();
  nyxq_test::StringPtr owner(text);
  std::vector<std::string> lines;
  std::string line;
  for (const char *c = text; c != nullptr && *c != '\0'; ++c) {
    if (*c == '\n') {
      lines.push_back(line);
      line.clear();
    } else {
      line += *c;
    }
  }
  return lines;
}

// The report's lines on the kernels in use: each kernel's variant and the
// matvec variants (not the features and labels, which say who chose them).
std::vector<std::string> kernel_choices(const NyxqContext *ctx) {
  std::vector<std::string> choices;
  for (const std::string &line : report_lines(ctx)) {
    if (line.find("device features:") == std::string::npos && line.find("debug labels:") == std::string::npos) {
      choices.push_back(line);
    }
  }
  return choices;
}

// The report's line that starts (after its indent) with `prefix`, or "".
std::string report_line(const NyxqContext *ctx, const std::string &prefix) {
  for (const std::string &line : report_lines(ctx)) {
    if (line.find(prefix) != std::string::npos) return line;
  }
  return "";
}

// Skips without a device. When resources are required (ctest sets
// NYXQ_TEST_REQUIRE_RESOURCES: bootstrap installs them) a missing device or a
// missing validation layer fails instead; elsewhere the test runs unvalidated.
#define NEED_DEVICE(trainer) NEED_DEVICE_AT(trainer, VK_API_VERSION_1_2)
#define NEED_DEVICE_AT(trainer, api_version) NEED_DEVICE_WITH(trainer, api_version, DeviceFeatures::kNone)
#define NEED_DEVICE_WITH(trainer, api_version, features)                                    \
  Trainer trainer{api_version, features};                                                   \
  if (!trainer.ok()) SKIP_MISSING("no Vulkan: " << trainer.why());                          \
  if (::nyxq_test::resources_required() && !trainer.validating()) {                         \
    FAIL() << "NYXQ_TEST_REQUIRE_RESOURCES=1 and VK_LAYER_KHRONOS_validation is not installed"; \
  }

const int kFormats[] = {NYXQ_FORMAT_F16,  NYXQ_FORMAT_BF16, NYXQ_FORMAT_Q8_0,   NYXQ_FORMAT_Q4_0,
                        NYXQ_FORMAT_Q4_1, NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL, NYXQ_FORMAT_Q4_K,
                        NYXQ_FORMAT_Q5_K, NYXQ_FORMAT_Q6_K};

// The columns of the recorded products' W: 3 blocks of 32, or one
// super-block of 256 for a K-quant (whose rows are whole super-blocks).
size_t product_cols(int format) {
  const bool k_quant = format == NYXQ_FORMAT_Q4_K || format == NYXQ_FORMAT_Q5_K || format == NYXQ_FORMAT_Q6_K;
  return k_quant ? 256 : 96;
}

}  // namespace

// Records every conversion kernel of every Vulkan format between the
// trainer's own commands, runs them, and checks each byte against the CPU.
void record_every_conversion(Trainer &trainer, NyxqContext *ctx) {
  auto cpu = nyxq_test::cpu_context(1);
  // Whole K-quant super-blocks (33: Q6_K's bytes end inside a word).
  const size_t n = 8192 + 256;
  const std::vector<float> x = nyxq_test::sine_with_bumps(n);
  // The trainer's buffers: staging (host writes), an arena that holds the
  // input and the quantized bytes at offsets, the outputs and a readback.
  HostBuffer staging = trainer.make_buffer(4 * n);
  HostBuffer arena = trainer.make_buffer(4 * n + 4 * n + 256);
  HostBuffer out = trainer.make_buffer(4 * n);
  HostBuffer fake = trainer.make_buffer(4 * n);
  HostBuffer half = trainer.make_buffer(2 * n);
  HostBuffer readback = trainer.make_buffer(4 * n);
  std::memcpy(staging.mapped, x.data(), 4 * n);
  for (int format : kFormats) {
    for (int rounding : {NYXQ_ROUNDING_NEAREST, NYXQ_ROUNDING_STOCHASTIC}) {
      SCOPED_TRACE(testing::Message() << "format " << format << " rounding " << rounding);
      size_t qbytes = 0;
      CHECK_OK(nyxq_quantized_size(format, n, &qbytes));
      const VkDeviceSize q_offset = 4 * n + 256;
      NyxqQuantizeOptions opts;
      std::memset(&opts, 0, sizeof opts);
      opts.struct_size = sizeof opts;
      opts.rounding = rounding;
      opts.seed = 77;
      // The trainer's own work and nyxq's, in one command buffer.
      trainer.begin();
      vkCmdFillBuffer(trainer.cmd(), arena.buffer, 0, VK_WHOLE_SIZE, 0xdeadbeef);
      trainer.barrier();
      trainer.copy(staging.buffer, 0, arena.buffer, 0, 4 * n);
      trainer.barrier();
      const NyxqVkBufferRange src{arena.buffer, 0, 4 * n};
      const NyxqVkBufferRange q{arena.buffer, q_offset, (qbytes + 3) / 4 * 4};
      uint64_t t1 = 0, t2 = 0, t3 = 0, t4 = 0;
      CHECK_OK(nyxq_vk_cmd_quantize(ctx, trainer.cmd(), format, n, &src, &q, &opts, &t1));
      trainer.barrier();
      const NyxqVkBufferRange to_f32{out.buffer, 0, 4 * n};
      CHECK_OK(nyxq_vk_cmd_dequantize(ctx, trainer.cmd(), format, n, &q, &to_f32,
                                      NYXQ_FORMAT_F32, &t2));
      const NyxqVkBufferRange to_f16{half.buffer, 0, 2 * n};
      CHECK_OK(nyxq_vk_cmd_dequantize(ctx, trainer.cmd(), format, n, &q, &to_f16,
                                      NYXQ_FORMAT_F16, &t3));
      const NyxqVkBufferRange fake_out{fake.buffer, 0, 4 * n};
      CHECK_OK(nyxq_vk_cmd_fake_quantize(ctx, trainer.cmd(), format, n, &src, &fake_out,
                                         &opts, &t4));
      trainer.barrier();
      trainer.copy(arena.buffer, q_offset, readback.buffer, 0, qbytes);
      EXPECT_LT(t1, t2);
      EXPECT_LT(t3, t4);
      trainer.submit_and_wait();
      CHECK_OK(nyxq_vk_release(ctx, t4));

      std::vector<uint8_t> expect(qbytes);
      CHECK_OK(nyxq_quantize(cpu.get(), format, x.data(), n, &opts, expect.data(), qbytes));
      EXPECT_EQ(std::memcmp(readback.mapped, expect.data(), qbytes), 0);
      std::vector<float> back(n);
      CHECK_OK(nyxq_dequantize(cpu.get(), format, expect.data(), qbytes, back.data(), n));
      EXPECT_EQ(std::memcmp(out.mapped, back.data(), 4 * n), 0);
      EXPECT_EQ(std::memcmp(fake.mapped, back.data(), 4 * n), 0);
      std::vector<uint16_t> back16(n);
      const uint16_t *gpu16 = static_cast<const uint16_t *>(half.mapped);
      size_t f16_bytes = 0;
      CHECK_OK(nyxq_quantized_size(NYXQ_FORMAT_F16, n, &f16_bytes));
      CHECK_OK(nyxq_quantize(cpu.get(), NYXQ_FORMAT_F16, back.data(), n, nullptr, back16.data(),
                             f16_bytes));
      EXPECT_EQ(std::memcmp(gpu16, back16.data(), 2 * n), 0);
    }
  }
  NyxqVkRecorderUsage usage;
  CHECK_OK(nyxq_vk_recorder_usage(ctx, &usage));
  EXPECT_EQ(usage.unreleased_sets, 0u);
}

TEST(VkHandoff, RecordedKernelsRunInTheTrainersCommandBufferAndMatchTheCpu) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  record_every_conversion(trainer, ctx.get());
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, TenThousandRecordedDispatchesGrowNothing) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const size_t n = 256;
  HostBuffer src = trainer.make_buffer(4 * n);
  HostBuffer dst = trainer.make_buffer(4 * n);
  const std::vector<float> x = nyxq_test::sine_with_bumps(n);
  std::memcpy(src.mapped, x.data(), 4 * n);  // defined input (Valgrind checks it)
  const NyxqVkBufferRange s{src.buffer, 0, 4 * n};
  const NyxqVkBufferRange d{dst.buffer, 0, 4 * n};
  const int frames = light() ? 10 : 100;
  uint64_t pools = 0;
  // The self-test's products (nyxq's own submissions) took the first tickets.
  NyxqVkRecorderUsage before;
  CHECK_OK(nyxq_vk_recorder_usage(ctx.get(), &before));
  for (int frame = 0; frame < frames; ++frame) {
    trainer.begin();
    uint64_t ticket = 0;
    for (int i = 0; i < 100; ++i) {
      CHECK_OK(nyxq_vk_cmd_quantize(ctx.get(), trainer.cmd(), NYXQ_FORMAT_Q8_0, n, &s, &d, nullptr,
                                    &ticket));
    }
    trainer.submit_and_wait();
    CHECK_OK(nyxq_vk_release(ctx.get(), ticket));
    NyxqVkRecorderUsage usage;
    CHECK_OK(nyxq_vk_recorder_usage(ctx.get(), &usage));
    EXPECT_EQ(usage.unreleased_sets, 0u);
    if (frame == 0) pools = usage.descriptor_pools;
    ASSERT_EQ(usage.descriptor_pools, pools) << "frame " << frame;
    EXPECT_EQ(usage.last_ticket, before.last_ticket + static_cast<uint64_t>(100 * (frame + 1)));
  }
  EXPECT_EQ(pools, 1u);
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, DeviceTensorBuffersBindInTheTrainersCommands) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const uint64_t shape[2] = {64, 256};
  const size_t n = 64 * 256;
  const std::vector<float> x = nyxq_test::sine_with_bumps(n);
  for (int format : kFormats) {
    SCOPED_TRACE(testing::Message() << "format " << format);
    NyxqTensor *raw = nullptr;
    CHECK_OK(nyxq_tensor_create_in(ctx.get(), "w", shape, 2, format, NYXQ_PLACEMENT_DEVICE, &raw));
    nyxq_test::TensorPtr dev(raw);
    CHECK_OK(nyxq_tensor_create(ctx.get(), "w", shape, 2, format, &raw));
    nyxq_test::TensorPtr host(raw);
    CHECK_OK(nyxq_tensor_upload(dev.get(), x.data(), n, nullptr));
    CHECK_OK(nyxq_tensor_upload(host.get(), x.data(), n, nullptr));
    int32_t placement = -1;
    CHECK_OK(nyxq_tensor_placement(dev.get(), &placement));
    EXPECT_EQ(placement, NYXQ_PLACEMENT_DEVICE);
    const void *view = nullptr;
    size_t len = 0;
    EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_tensor_data(dev.get(), &view, &len));
    CHECK_OK(nyxq_tensor_data(host.get(), &view, &len));

    NyxqVkTensorBuffer chunk;
    CHECK_OK(nyxq_tensor_vk_buffer(dev.get(), 0, &chunk));
    EXPECT_EQ(chunk.chunk_count, 1u);
    EXPECT_EQ(chunk.size, len);
    VkBuffer bound = static_cast<VkBuffer>(chunk.buffer);  // the one documented cast
    HostBuffer copy = trainer.make_buffer(len);
    HostBuffer values = trainer.make_buffer(4 * n);
    trainer.begin();
    trainer.copy(bound, chunk.offset, copy.buffer, 0, len);
    // nyxq's dequantize kernel reading the tensor's bytes, as a trainer's
    // shader would bind them.
    const NyxqVkBufferRange q{chunk.buffer, chunk.offset, (chunk.size + 3) / 4 * 4};
    const NyxqVkBufferRange v{values.buffer, 0, 4 * n};
    uint64_t ticket = 0;
    CHECK_OK(nyxq_vk_cmd_dequantize(ctx.get(), trainer.cmd(), format, n, &q, &v, NYXQ_FORMAT_F32,
                                    &ticket));
    trainer.submit_and_wait();
    CHECK_OK(nyxq_vk_release(ctx.get(), ticket));
    EXPECT_EQ(std::memcmp(copy.mapped, view, len), 0);
    std::vector<float> expect(n);
    CHECK_OK(nyxq_tensor_download(host.get(), expect.data(), n));
    EXPECT_EQ(std::memcmp(values.mapped, expect.data(), 4 * n), 0);
    std::vector<float> got(n);
    CHECK_OK(nyxq_tensor_download(dev.get(), got.data(), n));
    EXPECT_EQ(std::memcmp(got.data(), expect.data(), 4 * n), 0);

    CHECK_OK(nyxq_tensor_migrate(dev.get(), NYXQ_PLACEMENT_HOST));
    CHECK_OK(nyxq_tensor_placement(dev.get(), &placement));
    EXPECT_EQ(placement, NYXQ_PLACEMENT_HOST);
    const void *moved = nullptr;
    CHECK_OK(nyxq_tensor_data(dev.get(), &moved, &len));
    EXPECT_EQ(std::memcmp(moved, view, len), 0);
    EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_tensor_vk_buffer(dev.get(), 0, &chunk));
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, UnscaleAndCheckOnADeviceBufferAgreesWithTheHost) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const size_t n = 3000;
  HostBuffer grads = trainer.make_buffer(4 * n);
  HostBuffer flag = trainer.make_buffer(16);
  const NyxqVkBufferRange g{grads.buffer, 0, 4 * n};
  const NyxqVkBufferRange f{flag.buffer, 0, 4};
  for (size_t plant : {std::numeric_limits<size_t>::max(), size_t{0}, n / 2, n - 1}) {
    SCOPED_TRACE(testing::Message() << "plant " << plant);
    NyxqLossScaler *device_scaler = nullptr;
    NyxqLossScaler *host_scaler = nullptr;
    CHECK_OK(nyxq_loss_scaler_create(nullptr, &device_scaler));
    nyxq_test::ScalerPtr device_scaler_owner(device_scaler);
    CHECK_OK(nyxq_loss_scaler_create(nullptr, &host_scaler));
    nyxq_test::ScalerPtr host_scaler_owner(host_scaler);
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i) {
      values[i] = (i % 3 == 0) ? 1.0e-41f : std::cos(static_cast<float>(i)) * 1.0e4f;
    }
    if (plant < n) values[plant] = plant == 0 ? INFINITY : NAN;
    std::memcpy(grads.mapped, values.data(), 4 * n);
    trainer.begin();
    vkCmdFillBuffer(trainer.cmd(), flag.buffer, 0, 4, 0);
    trainer.barrier();
    uint64_t ticket = 0;
    CHECK_OK(nyxq_vk_cmd_unscale_and_check(ctx.get(), device_scaler, trainer.cmd(), &g, n, &f,
                                           &ticket));
    trainer.submit_and_wait();
    CHECK_OK(nyxq_vk_release(ctx.get(), ticket));
    uint32_t device_found = 0;
    std::memcpy(&device_found, flag.mapped, 4);
    uint32_t host_found = 0;
    int64_t first_bad = 0;
    CHECK_OK(nyxq_loss_scaler_unscale_and_check(host_scaler, values.data(), n, &host_found,
                                                &first_bad));
    EXPECT_EQ(device_found != 0, host_found != 0);
    EXPECT_EQ(host_found != 0, plant < n);
    const float *gpu = static_cast<const float *>(grads.mapped);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(values[i])) {
        EXPECT_TRUE(std::isnan(gpu[i]));
      } else {
        uint32_t a, b;
        std::memcpy(&a, &values[i], 4);
        std::memcpy(&b, &gpu[i], 4);
        ASSERT_EQ(a, b) << "index " << i;
      }
    }
    CHECK_OK(nyxq_loss_scaler_report_non_finite(device_scaler, device_found));
    uint32_t apply_device = 7, apply_host = 9;
    CHECK_OK(nyxq_loss_scaler_update(device_scaler, &apply_device));
    CHECK_OK(nyxq_loss_scaler_update(host_scaler, &apply_host));
    EXPECT_EQ(apply_device, apply_host);
    float scale_device = 0, scale_host = 0;
    CHECK_OK(nyxq_loss_scaler_scale(device_scaler, &scale_device));
    CHECK_OK(nyxq_loss_scaler_scale(host_scaler, &scale_host));
    EXPECT_EQ(scale_device, scale_host);
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, StandaloneSubmitAndWaitWithFaultInjection) {
  setenv("VK_DRIVER_FILES", kLavapipe, 0);
  NyxqContextOptions options;
  nyxq_context_options_default(&options);
  options.backend = NYXQ_BACKEND_VULKAN;
  options.vulkan_validation = 1;
  NyxqContext *raw = nullptr;
  NyxqStatus status = nyxq_context_create(&options, &raw);
  if (status == NYXQ_ERROR_UNSUPPORTED) SKIP_MISSING(nyxq_last_error_message());
  CHECK_OK(status);
  nyxq_test::ContextPtr ctx(raw);
  const uint64_t shape[1] = {4096};
  const std::vector<float> x = nyxq_test::sine_with_bumps(4096);
  NyxqTensor *t = nullptr;
  CHECK_OK(nyxq_tensor_create_in(ctx.get(), "w", shape, 1, NYXQ_FORMAT_Q4_1, NYXQ_PLACEMENT_DEVICE, &t));
  nyxq_test::TensorPtr tensor(t);
  CHECK_OK(nyxq_tensor_upload(tensor.get(), x.data(), x.size(), nullptr));
  std::vector<float> got(4096), expect(4096);
  CHECK_OK(nyxq_tensor_download(tensor.get(), got.data(), got.size()));
  auto cpu = nyxq_test::cpu_context(1);
  CHECK_OK(nyxq_fake_quantize(cpu.get(), NYXQ_FORMAT_Q4_1, x.data(), x.size(), nullptr,
                              expect.data(), expect.size()));
  EXPECT_EQ(std::memcmp(got.data(), expect.data(), 4 * got.size()), 0);

  // The first device allocation after creation fails: an error without
  // fallback, a host tensor with it.
  for (uint32_t fallback : {0u, 1u}) {
    options.vulkan_fail_allocation = 1;
    options.vulkan_host_fallback = fallback;
    CHECK_OK(nyxq_context_create(&options, &raw));
    nyxq_test::ContextPtr failing(raw);
    NyxqTensor *made = reinterpret_cast<NyxqTensor *>(0x1);
    status = nyxq_tensor_create_in(failing.get(), "w", shape, 1, NYXQ_FORMAT_Q8_0,
                                   NYXQ_PLACEMENT_DEVICE, &made);
    if (fallback == 0) {
      EXPECT_EQ(status, NYXQ_ERROR_OUT_OF_DEVICE_MEMORY) << nyxq_test::describe(status);
      EXPECT_NE(std::strstr(nyxq_last_error_message(), "fault injection"), nullptr);
      EXPECT_EQ(made, reinterpret_cast<NyxqTensor *>(0x1));
    } else {
      CHECK_OK(status);
      nyxq_test::TensorPtr fell_back(made);
      int32_t placement = -1;
      CHECK_OK(nyxq_tensor_placement(fell_back.get(), &placement));
      EXPECT_EQ(placement, NYXQ_PLACEMENT_HOST);
      CHECK_OK(nyxq_tensor_upload(fell_back.get(), x.data(), x.size(), nullptr));
    }
  }
  NyxqDeviceInfo info;
  CHECK_OK(nyxq_context_device_info(ctx.get(), &info));
  EXPECT_EQ(info.validation_errors, 0u);
}

TEST(VkHandoff, BadArgumentsGetClearErrorsAndRecordNothing) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  auto cpu = nyxq_test::cpu_context(1);
  HostBuffer buf = trainer.make_buffer(1 << 16);
  VkCommandBuffer cmd = trainer.cmd();
  const NyxqVkBufferRange src{buf.buffer, 0, 4096};
  const NyxqVkBufferRange dst{buf.buffer, 8192, 1024};
  uint64_t ticket = 12345;
  trainer.begin();
  // Handles and pointers.
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_quantize(nullptr, cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_quantize(ctx.get(), nullptr, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, nullptr, &dst, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_dequantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &dst, nullptr, NYXQ_FORMAT_F32, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_fake_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, nullptr, nullptr));
  const NyxqVkBufferRange null_buffer{nullptr, 0, 4096};
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &null_buffer, &dst, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_vk_cmd_quantize(reinterpret_cast<NyxqContext *>(0x10), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, nullptr, &ticket));
  // Formats, counts, alignment, sizes, overlap.
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, 99, 1024, &src, &dst, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 0, &src, &dst, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1000, &src, &dst, nullptr, &ticket));
  const NyxqVkBufferRange misaligned{buf.buffer, 2, 4096};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &misaligned, &dst, nullptr, &ticket));
  const NyxqVkBufferRange small{buf.buffer, 8192, 64};
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &small, nullptr, &ticket));
  EXPECT_EQ(nyxq_last_error_needed_len(), 576u);
  const NyxqVkBufferRange overlapping{buf.buffer, 1024, 1024};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &overlapping, nullptr, &ticket));
  const NyxqVkBufferRange wrapping{buf.buffer, UINT64_MAX - 15, 32};
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &wrapping, &dst, nullptr, &ticket));
  // Options and kernels nyxq has no GPU path for.
  NyxqQuantizeOptions opts;
  std::memset(&opts, 0, sizeof opts);
  opts.struct_size = sizeof opts;
  opts.rounding = NYXQ_ROUNDING_ERROR_MINIMISING;
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, &opts, &ticket));
  opts.rounding = NYXQ_ROUNDING_NEAREST;
  opts.non_finite = NYXQ_NON_FINITE_SATURATE;
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED,
                nyxq_vk_cmd_fake_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, &opts, &ticket));
  opts.struct_size = 4;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, &opts, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED,
                nyxq_vk_cmd_dequantize(ctx.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &dst, &src, NYXQ_FORMAT_Q8_0, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED,
                nyxq_vk_cmd_dequantize(ctx.get(), cmd, NYXQ_FORMAT_F32, 1024, &src, &dst, NYXQ_FORMAT_F16, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED,
                nyxq_vk_cmd_quantize(cpu.get(), cmd, NYXQ_FORMAT_Q4_0, 1024, &src, &dst, nullptr, &ticket));
  // Unscale-and-check.
  NyxqLossScaler *scaler = nullptr;
  CHECK_OK(nyxq_loss_scaler_create(nullptr, &scaler));
  nyxq_test::ScalerPtr scaler_owner(scaler);
  const NyxqVkBufferRange flag{buf.buffer, 60000, 4};
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), nullptr, cmd, &src, 1024, &flag, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), scaler, cmd, &src, 1024, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), scaler, cmd, &src, 0, &flag, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), scaler, cmd, &src, 2048, &flag, &ticket));
  const NyxqVkBufferRange flag_inside{buf.buffer, 16, 4};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), scaler, cmd, &src, 1024, &flag_inside, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED,
                nyxq_vk_cmd_unscale_and_check(cpu.get(), scaler, cmd, &src, 1024, &flag, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_loss_scaler_report_non_finite(
                                               reinterpret_cast<NyxqLossScaler *>(0x10), 1));
  EXPECT_EQ(ticket, 12345u) << "no ticket was written on error";
  // Release and usage.
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_release(ctx.get(), 1u << 30));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_vk_release(cpu.get(), 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_release(nullptr, 1));
  NyxqVkRecorderUsage usage;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_recorder_usage(ctx.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_vk_recorder_usage(cpu.get(), &usage));
  CHECK_OK(nyxq_vk_recorder_usage(ctx.get(), &usage));
  EXPECT_EQ(usage.unreleased_sets, 0u) << "nothing was recorded";
  trainer.submit_and_wait();
  // Device tensors.
  const uint64_t shape[2] = {2, 64};
  NyxqTensor *t = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_tensor_create_in(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, 7, &t));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_tensor_create_in(cpu.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0,
                                                              NYXQ_PLACEMENT_DEVICE, &t));
  EXPECT_EQ(t, nullptr);
  CHECK_OK(nyxq_tensor_create_in(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &t));
  nyxq_test::TensorPtr tensor(t);
  NyxqVkTensorBuffer chunk;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_vk_buffer(tensor.get(), 1, &chunk));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_vk_buffer(tensor.get(), 0, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_migrate(tensor.get(), -1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_placement(tensor.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_tensor_placement(nullptr, nullptr));
  NyxqTensor *host_tensor = nullptr;
  CHECK_OK(nyxq_tensor_create(cpu.get(), "h", shape, 2, NYXQ_FORMAT_Q8_0, &host_tensor));
  nyxq_test::TensorPtr on_cpu(host_tensor);
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_tensor_migrate(on_cpu.get(), NYXQ_PLACEMENT_DEVICE));
  CHECK_OK(nyxq_tensor_migrate(on_cpu.get(), NYXQ_PLACEMENT_HOST));
  EXPECT_EQ(trainer.validation_errors(), 0);
}

namespace {

// The ranges of one small recording of each kind, in one buffer of the
// trainer's: quantize 32 floats to Q8_0, a 4x64 Q8_0 product (rows of 68
// bytes, x 256 bytes, y 16), unscale 64 gradients with a scaler.
struct RecordingArgs {
  explicit RecordingArgs(Trainer &trainer) : buf(trainer.make_buffer(1 << 15)) {
    const NyxqStatus status = nyxq_loss_scaler_create(nullptr, &raw_scaler);
    EXPECT_EQ(status, NYXQ_OK) << nyxq_test::describe(status);
    scaler.reset(raw_scaler);
  }
  HostBuffer buf;
  NyxqLossScaler *raw_scaler = nullptr;
  nyxq_test::ScalerPtr scaler;
  const NyxqVkBufferRange src{buf.buffer, 0, 128}, dst{buf.buffer, 4096, 36};
  const NyxqVkBufferRange w{buf.buffer, 8192, 272}, x{buf.buffer, 12288, 256}, y{buf.buffer, 16384, 16};
  const NyxqVkBufferRange grads{buf.buffer, 20480, 256}, flag{buf.buffer, 24576, 4};
};

// After refused recordings: nyxq holds no descriptor set, and the trainer's
// command buffer still submits cleanly.
void expect_nothing_recorded(Trainer &trainer, NyxqContext *ctx) {
  NyxqVkRecorderUsage usage;
  CHECK_OK(nyxq_vk_recorder_usage(ctx, &usage));
  EXPECT_EQ(usage.unreleased_sets, 0u) << "nothing was recorded";
  trainer.submit_and_wait();
}

}  // namespace

TEST(VkHandoff, RecordedMatvecArgumentsAreCheckedBeforeAnythingIsRecorded) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const RecordingArgs args(trainer);
  const NyxqVkBufferRange &w = args.w, &x = args.x, &y = args.y;
  VkCommandBuffer cmd = trainer.cmd();
  uint64_t ticket = 12345;
  trainer.begin();
  const NyxqVkBufferRange short_w{args.buf.buffer, w.offset, 128};
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &short_w, &x, nullptr, &y, &ticket));
  EXPECT_EQ(nyxq_last_error_needed_len(), 272u);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 0, &w, &x, nullptr, &y, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 9, &w, &x, nullptr, &y, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 48, 1, &w, &x, nullptr, &y, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 0, 64, 1, &w, &x, nullptr, &y, &ticket));
  const NyxqVkBufferRange misaligned_x{args.buf.buffer, x.offset + 2, 256};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &w, &misaligned_x, nullptr, &y, &ticket));
  const NyxqVkBufferRange y_over_x{args.buf.buffer, x.offset, 16};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &w, &x, nullptr, &y_over_x, &ticket));
  // offset + size wraps around 2^64.
  const NyxqVkBufferRange wrapping{args.buf.buffer, x.offset, UINT64_MAX - 100};
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &w, &wrapping, nullptr, &y, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_vk_cmd_unscale_and_check(ctx.get(), args.scaler.get(), cmd, &wrapping,
                                                                        64, &args.flag, &ticket));
  EXPECT_EQ(ticket, 12345u) << "no ticket was written on error";
  expect_nothing_recorded(trainer, ctx.get());
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// The matmul's arguments (a 4x64 Q8_0 W, 1 token: the matvec's buffers) are
// checked the same way, forward and backward, before anything is recorded.
TEST(VkHandoff, RecordedMatmulArgumentsAreCheckedBeforeAnythingIsRecorded) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const RecordingArgs args(trainer);
  const NyxqVkBufferRange &w = args.w, &x = args.x, &y = args.y;
  VkCommandBuffer cmd = trainer.cmd();
  uint64_t ticket = 12345;
  trainer.begin();
  auto matmul = [&](uint64_t rows, uint64_t cols, uint64_t tokens, const NyxqVkBufferRange *wr,
                    const NyxqVkBufferRange *xr, const NyxqVkBufferRange *yr) {
    return nyxq_vk_cmd_matmul(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, rows, cols, tokens, wr, xr, nullptr, yr, &ticket);
  };
  auto matmul_t = [&](uint64_t rows, uint64_t cols, uint64_t tokens, const NyxqVkBufferRange *wr,
                      const NyxqVkBufferRange *dyr, const NyxqVkBufferRange *dxr) {
    return nyxq_vk_cmd_matmul_transposed(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, rows, cols, tokens, wr, dyr, dxr, &ticket);
  };
  const NyxqVkBufferRange short_w{args.buf.buffer, w.offset, 128};
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, matmul(4, 64, 1, &short_w, &x, &y));
  EXPECT_EQ(nyxq_last_error_needed_len(), 272u);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, matmul(4, 64, 2, &w, &x, &y));
  EXPECT_EQ(nyxq_last_error_needed_len(), 512u);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul(4, 64, 0, &w, &x, &y));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul(4, 48, 1, &w, &x, &y));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul(0, 64, 1, &w, &x, &y));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul(4, 64, uint64_t{1} << 32, &w, &x, &y));
  const NyxqVkBufferRange misaligned_x{args.buf.buffer, x.offset + 2, 256};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul(4, 64, 1, &w, &misaligned_x, &y));
  const NyxqVkBufferRange y_over_x{args.buf.buffer, x.offset, 16};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul(4, 64, 1, &w, &x, &y_over_x));
  const NyxqVkBufferRange past_the_end{args.buf.buffer, 32768 - 64, 256};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul(4, 64, 1, &w, &past_the_end, &y));
  const NyxqVkBufferRange wrapping{args.buf.buffer, x.offset, UINT64_MAX - 100};
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, matmul(4, 64, 1, &w, &wrapping, &y));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, matmul(4, 64, 1, &w, nullptr, &y));
  // Backward: dY is 4 floats a token, dX 64.
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, matmul_t(4, 64, 1, &w, &y, &y));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul_t(4, 64, 0, &w, &y, &x));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, matmul_t(4, 64, 1, &w, &y, &misaligned_x));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, matmul_t(4, 64, 1, &w, &wrapping, &x));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, matmul_t(4, 64, 1, &w, &y, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_matmul(ctx.get(), nullptr, NYXQ_FORMAT_Q8_0, 4, 64, 1, &w, &x, nullptr, &y, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_matmul(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &w, &x, nullptr, &y, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_matmul(ctx.get(), cmd, 42, 4, 64, 1, &w, &x, nullptr, &y, &ticket));
  EXPECT_EQ(ticket, 12345u) << "no ticket was written on error";
  expect_nothing_recorded(trainer, ctx.get());
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// The recorder refuses a recording beyond 65 536 unreleased descriptor sets
// (the trainer forgot nyxq_vk_release); releasing lets recording go on.
TEST(VkHandoff, RecordingsBeyondTheUnreleasedLimitAreOutOfMemory) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const RecordingArgs a(trainer);
  NyxqVkAdam *raw_adam = nullptr;
  CHECK_OK(nyxq_vk_adam_create(ctx.get(), nullptr, 64, &raw_adam));
  nyxq_test::VkAdamPtr adam(raw_adam);
  VkCommandBuffer cmd = trainer.cmd();
  trainer.begin();
  const uint64_t limit = 65536;
  uint64_t ticket = 0;
  for (uint64_t i = 0; i < limit; ++i) {
    CHECK_OK(nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 32, &a.src, &a.dst, nullptr, &ticket));
  }
  uint64_t refused = 7;
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 32, &a.src, &a.dst, nullptr, &refused));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("nyxq_vk_release"), std::string::npos)
      << nyxq_last_error_message();
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w, &a.x, nullptr, &a.y, &refused));
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY,
                nyxq_vk_cmd_matmul(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w, &a.x, nullptr, &a.y, &refused));
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, nyxq_vk_cmd_matmul_transposed(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1,
                                                                        &a.w, &a.y, &a.x, &refused));
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), a.scaler.get(), cmd, &a.grads, 64, &a.flag, &refused));
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY,
                nyxq_vk_cmd_importance_add(ctx.get(), cmd, &a.grads, 64, 1, &a.flag, &refused));
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, nyxq_vk_cmd_adam_step(ctx.get(), adam.get(), cmd, 0.1f, &a.x, &a.grads, 64,
                                                                &a.flag, &refused));
  EXPECT_EQ(refused, 7u) << "no ticket was written on error";
  // The command buffer is never submitted, so its sets may go back at once.
  ASSERT_EQ(vkEndCommandBuffer(cmd), VK_SUCCESS);
  CHECK_OK(nyxq_vk_release(ctx.get(), ticket));
  NyxqVkRecorderUsage usage;
  CHECK_OK(nyxq_vk_recorder_usage(ctx.get(), &usage));
  EXPECT_EQ(usage.unreleased_sets, 0u);
  EXPECT_EQ(usage.descriptor_pools, limit / 256);
  trainer.begin();
  CHECK_OK(nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w, &a.x, nullptr, &a.y, &ticket));
  trainer.submit_and_wait();
  CHECK_OK(nyxq_vk_release(ctx.get(), ticket));
  EXPECT_EQ(trainer.validation_errors(), 0);
}

namespace {

// Fault injection between nyxq and the driver. nyxq loads every Vulkan
// command of a borrowed device through the trainer's vkGetInstanceProcAddr
// (NyxqVulkanHandles), so the test hands it one that wraps a few device
// commands: once armed, the next call of the chosen command returns the
// chosen VkResult without reaching the driver (and so without reaching the
// validation layer, which still sees everything else).
namespace vk_fault {

std::string armed_command;
VkResult armed_result = VK_SUCCESS;

void arm(const char *command, VkResult result) {
  armed_command = command;
  armed_result = result;
}

// True, once, for the armed command.
bool fires(const char *command) {
  if (armed_command != command) return false;
  armed_command.clear();
  return true;
}

PFN_vkCreateFence real_create_fence = nullptr;
PFN_vkAllocateDescriptorSets real_allocate_descriptor_sets = nullptr;
PFN_vkAllocateMemory real_allocate_memory = nullptr;
PFN_vkMapMemory real_map_memory = nullptr;
PFN_vkGetSemaphoreCounterValue real_get_semaphore_counter_value = nullptr;
PFN_vkQueueSubmit real_queue_submit = nullptr;

VKAPI_ATTR VkResult VKAPI_CALL create_fence(VkDevice device, const VkFenceCreateInfo *info,
                                            const VkAllocationCallbacks *allocator, VkFence *fence) {
  return fires("vkCreateFence") ? armed_result : real_create_fence(device, info, allocator, fence);
}

VKAPI_ATTR VkResult VKAPI_CALL allocate_descriptor_sets(VkDevice device, const VkDescriptorSetAllocateInfo *info,
                                                        VkDescriptorSet *sets) {
  return fires("vkAllocateDescriptorSets") ? armed_result : real_allocate_descriptor_sets(device, info, sets);
}

VKAPI_ATTR VkResult VKAPI_CALL allocate_memory(VkDevice device, const VkMemoryAllocateInfo *info,
                                               const VkAllocationCallbacks *allocator, VkDeviceMemory *memory) {
  return fires("vkAllocateMemory") ? armed_result : real_allocate_memory(device, info, allocator, memory);
}

VKAPI_ATTR VkResult VKAPI_CALL map_memory(VkDevice device, VkDeviceMemory memory, VkDeviceSize offset,
                                          VkDeviceSize size, VkMemoryMapFlags flags, void **data) {
  return fires("vkMapMemory") ? armed_result : real_map_memory(device, memory, offset, size, flags, data);
}

VKAPI_ATTR VkResult VKAPI_CALL get_semaphore_counter_value(VkDevice device, VkSemaphore semaphore,
                                                           uint64_t *value) {
  return fires("vkGetSemaphoreCounterValue") ? armed_result
                                             : real_get_semaphore_counter_value(device, semaphore, value);
}

VKAPI_ATTR VkResult VKAPI_CALL queue_submit(VkQueue queue, uint32_t count, const VkSubmitInfo *submits,
                                            VkFence fence) {
  return fires("vkQueueSubmit") ? armed_result : real_queue_submit(queue, count, submits, fence);
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL get_device_proc_addr(VkDevice device, const char *name) {
  const PFN_vkVoidFunction real = vkGetDeviceProcAddr(device, name);
  const std::string command = name;
  if (command == "vkCreateFence") {
    real_create_fence = reinterpret_cast<PFN_vkCreateFence>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(create_fence);
  }
  if (command == "vkAllocateDescriptorSets") {
    real_allocate_descriptor_sets = reinterpret_cast<PFN_vkAllocateDescriptorSets>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(allocate_descriptor_sets);
  }
  if (command == "vkAllocateMemory") {
    real_allocate_memory = reinterpret_cast<PFN_vkAllocateMemory>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(allocate_memory);
  }
  if (command == "vkGetSemaphoreCounterValue") {
    real_get_semaphore_counter_value = reinterpret_cast<PFN_vkGetSemaphoreCounterValue>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(get_semaphore_counter_value);
  }
  if (command == "vkMapMemory") {
    real_map_memory = reinterpret_cast<PFN_vkMapMemory>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(map_memory);
  }
  if (command == "vkQueueSubmit") {
    real_queue_submit = reinterpret_cast<PFN_vkQueueSubmit>(real);
    return reinterpret_cast<PFN_vkVoidFunction>(queue_submit);
  }
  return real;
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL get_instance_proc_addr(VkInstance instance, const char *name) {
  if (std::string(name) == "vkGetDeviceProcAddr") return reinterpret_cast<PFN_vkVoidFunction>(get_device_proc_addr);
  return vkGetInstanceProcAddr(instance, name);
}

}  // namespace vk_fault

}  // namespace

// A Vulkan command that fails reaches the caller as its status: a VkResult
// with no status of its own as NYXQ_ERROR_VULKAN naming the command, device
// memory as NYXQ_ERROR_OUT_OF_DEVICE_MEMORY. Nothing is left half-made: no
// output is written, a tensor stays where it was with its values, and the
// validation layer finds no object nyxq forgot when the trainer destroys its
// device.
TEST(VkHandoff, FailingVulkanCommandsAreReportedAndLeaveNothingBehind) {
  NEED_DEVICE(trainer);
  NyxqVulkanHandles handles = trainer.handles();
  handles.get_instance_proc_addr = reinterpret_cast<void *>(vk_fault::get_instance_proc_addr);
  NyxqContext *raw = reinterpret_cast<NyxqContext *>(0x1);
  vk_fault::arm("vkCreateFence", VK_ERROR_UNKNOWN);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_context_create_vulkan_borrowed(nullptr, &handles, &raw));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("vkCreateFence"), std::string::npos)
      << nyxq_last_error_message();
  EXPECT_EQ(raw, reinterpret_cast<NyxqContext *>(0x1));
  CHECK_OK(nyxq_context_create_vulkan_borrowed(nullptr, &handles, &raw));
  nyxq_test::ContextPtr ctx(raw);

  // Recording: the descriptor set cannot be had.
  const RecordingArgs a(trainer);
  VkCommandBuffer cmd = trainer.cmd();
  uint64_t ticket = 12345;
  trainer.begin();
  vk_fault::arm("vkAllocateDescriptorSets", VK_ERROR_FRAGMENTED_POOL);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 32, &a.src, &a.dst, nullptr, &ticket));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("vkAllocateDescriptorSets"), std::string::npos)
      << nyxq_last_error_message();
  vk_fault::arm("vkAllocateDescriptorSets", VK_ERROR_FRAGMENTED_POOL);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w, &a.x, nullptr, &a.y, &ticket));
  vk_fault::arm("vkAllocateDescriptorSets", VK_ERROR_FRAGMENTED_POOL);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN,
                nyxq_vk_cmd_matmul(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w, &a.x, nullptr, &a.y, &ticket));
  vk_fault::arm("vkAllocateDescriptorSets", VK_ERROR_FRAGMENTED_POOL);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_vk_cmd_matmul_transposed(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w,
                                                                 &a.y, &a.x, &ticket));
  vk_fault::arm("vkAllocateDescriptorSets", VK_ERROR_FRAGMENTED_POOL);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), a.scaler.get(), cmd, &a.grads, 64, &a.flag, &ticket));
  vk_fault::arm("vkAllocateDescriptorSets", VK_ERROR_FRAGMENTED_POOL);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_vk_cmd_importance_add(ctx.get(), cmd, &a.grads, 64, 1, &a.flag, &ticket));
  EXPECT_EQ(ticket, 12345u) << "no ticket was written on error";
  expect_nothing_recorded(trainer, ctx.get());

  // Device tensors: the staging buffer cannot be mapped, or device memory runs out.
  const uint64_t shape[2] = {4, 64};
  const std::vector<float> values = nyxq_test::sine_with_bumps(256);
  auto cpu = nyxq_test::cpu_context(1);
  std::vector<float> expect(256), back(256);
  CHECK_OK(nyxq_fake_quantize(cpu.get(), NYXQ_FORMAT_Q8_0, values.data(), values.size(), nullptr, expect.data(),
                              expect.size()));
  NyxqTensor *made = reinterpret_cast<NyxqTensor *>(0x1);
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN,
                nyxq_tensor_create_in(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &made));
  EXPECT_EQ(made, reinterpret_cast<NyxqTensor *>(0x1));

  NyxqTensor *t = nullptr;
  CHECK_OK(nyxq_tensor_create(ctx.get(), "h", shape, 2, NYXQ_FORMAT_Q8_0, &t));
  nyxq_test::TensorPtr on_host(t);
  CHECK_OK(nyxq_tensor_upload(on_host.get(), values.data(), values.size(), nullptr));
  auto stays_on_host_intact = [&](const char *after) {
    int32_t placement = -1;
    CHECK_OK(nyxq_tensor_placement(on_host.get(), &placement));
    EXPECT_EQ(placement, NYXQ_PLACEMENT_HOST) << after;
    CHECK_OK(nyxq_tensor_download(on_host.get(), back.data(), back.size()));
    EXPECT_EQ(back, expect) << after;
  };
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_tensor_migrate(on_host.get(), NYXQ_PLACEMENT_DEVICE));
  stays_on_host_intact("a failed map");
  vk_fault::arm("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, nyxq_tensor_migrate(on_host.get(), NYXQ_PLACEMENT_DEVICE));
  stays_on_host_intact("device memory running out");

  CHECK_OK(nyxq_tensor_create_in(ctx.get(), "d", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &t));
  nyxq_test::TensorPtr on_device(t);
  CHECK_OK(nyxq_tensor_upload(on_device.get(), values.data(), values.size(), nullptr));
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_tensor_convert(on_device.get(), NYXQ_FORMAT_Q4_0, nullptr, &made));
  vk_fault::arm("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY,
                nyxq_tensor_convert(on_device.get(), NYXQ_FORMAT_Q4_0, nullptr, &made));
  // Moving to the host needs host memory: refused, the tensor stays on the device.
  CHECK_OK(nyxq_test_fail_allocation_after(1));
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, nyxq_tensor_migrate(on_device.get(), NYXQ_PLACEMENT_HOST));
  CHECK_OK(nyxq_test_fail_allocation_after(0));
  int32_t placement = -1;
  CHECK_OK(nyxq_tensor_placement(on_device.get(), &placement));
  EXPECT_EQ(placement, NYXQ_PLACEMENT_DEVICE);
  CHECK_OK(nyxq_tensor_download(on_device.get(), back.data(), back.size()));
  EXPECT_EQ(back, expect);
  EXPECT_TRUE(vk_fault::armed_command.empty()) << "every armed command was called";
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// A DEVICE tensor converts into a DEVICE tensor: a target format whose row
// is larger than the device's largest buffer range is refused as
// unsupported, and nothing is made. The source holds F16 rows of just over
// a quarter of that range (half of it in bytes), which F32 doubles past it;
// run where the range is lavapipe's 128 MiB or less (the rows of larger
// ranges would take gigabytes).
TEST(VkHandoff, AConversionWhoseRowsExceedTheBufferRangeIsRefused) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  NyxqDeviceInfo info;
  CHECK_OK(nyxq_context_device_info(ctx.get(), &info));
  const uint64_t range = std::min(info.max_storage_buffer_range, info.max_allocation_bytes);
  if (range > (uint64_t{128} << 20)) GTEST_SKIP() << "the device's buffer range is " << range << " bytes";
  const uint64_t shape[2] = {1, range / 4 + 64};
  NyxqTensor *t = nullptr;
  CHECK_OK(nyxq_tensor_create_in(ctx.get(), "wide", shape, 2, NYXQ_FORMAT_F16, NYXQ_PLACEMENT_DEVICE, &t));
  nyxq_test::TensorPtr wide(t);
  NyxqTensor *made = reinterpret_cast<NyxqTensor *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_tensor_convert(wide.get(), NYXQ_FORMAT_F32, nullptr, &made));
  EXPECT_NE(std::strstr(nyxq_last_error_message(), "largest buffer range"), nullptr) << nyxq_last_error_message();
  EXPECT_EQ(made, reinterpret_cast<NyxqTensor *>(0x1));
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// W·x (with a bias) and xᵀ·W recorded into the trainer's command buffer for
// every format, against a double-precision product of the weights the CPU
// dequantizes: within the f32 bound of nyxq_vk_cmd_matvec, (n + 3)·2⁻²⁴·Σ|w·x|
// (twice it, as test_matvec.cpp allows), plus x's rounding to 8 bits per
// block for the block formats where the integer-dot variant runs.
TEST(VkHandoff, RecordedProductsMatchADoubleReferenceForEveryFormat) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  auto cpu = nyxq_test::cpu_context(1);
  const size_t rows = 9, max_cols = 256, batch = 3;
  HostBuffer w_buf = trainer.make_buffer(4 * rows * max_cols);
  HostBuffer x_buf = trainer.make_buffer(4 * batch * max_cols);
  HostBuffer xt_buf = trainer.make_buffer(4 * batch * rows);
  HostBuffer bias_buf = trainer.make_buffer(4 * rows);
  HostBuffer y_buf = trainer.make_buffer(4 * batch * rows);
  HostBuffer yt_buf = trainer.make_buffer(4 * batch * max_cols);
  const std::vector<float> weights = nyxq_test::sine_with_bumps(rows * max_cols);
  const std::vector<float> x = nyxq_test::sine(batch * max_cols, 0.37f, 1.0f);
  const std::vector<float> xt = nyxq_test::sine(batch * rows, 0.37f, 3.0f);
  const std::vector<float> bias = nyxq_test::sine(rows, 0.37f, 2.0f);
  std::memcpy(x_buf.mapped, x.data(), 4 * x.size());
  std::memcpy(xt_buf.mapped, xt.data(), 4 * xt.size());
  std::memcpy(bias_buf.mapped, bias.data(), 4 * bias.size());
  for (int format : {NYXQ_FORMAT_F32, NYXQ_FORMAT_F16, NYXQ_FORMAT_BF16, NYXQ_FORMAT_Q8_0, NYXQ_FORMAT_Q4_0,
                     NYXQ_FORMAT_Q4_1, NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL, NYXQ_FORMAT_Q4_K, NYXQ_FORMAT_Q5_K,
                     NYXQ_FORMAT_Q6_K}) {
    SCOPED_TRACE(testing::Message() << "format " << format);
    const size_t cols = product_cols(format);
    size_t qbytes = 0, range = 0;
    CHECK_OK(nyxq_quantized_size(format, rows * cols, &qbytes));
    CHECK_OK(nyxq_device_range_size(format, rows * cols, &range));
    std::vector<unsigned char> w(range, 0);
    CHECK_OK(nyxq_quantize(cpu.get(), format, weights.data(), rows * cols, nullptr, w.data(), qbytes));
    std::vector<float> dequantized(rows * cols);
    CHECK_OK(nyxq_dequantize(cpu.get(), format, w.data(), qbytes, dequantized.data(), dequantized.size()));
    std::memcpy(w_buf.mapped, w.data(), range);
    const NyxqVkBufferRange wr{w_buf.buffer, 0, range}, xr{x_buf.buffer, 0, 4 * batch * cols},
        xtr{xt_buf.buffer, 0, 4 * batch * rows}, br{bias_buf.buffer, 0, 4 * rows},
        yr{y_buf.buffer, 0, 4 * batch * rows}, ytr{yt_buf.buffer, 0, 4 * batch * cols};
    uint64_t forward = 0, backward = 0;
    trainer.begin();
    CHECK_OK(nyxq_vk_cmd_matvec(ctx.get(), trainer.cmd(), format, rows, cols, batch, &wr, &xr, &br, &yr, &forward));
    CHECK_OK(nyxq_vk_cmd_matvec_transposed(ctx.get(), trainer.cmd(), format, rows, cols, batch, &wr, &xtr, &ytr,
                                           &backward));
    trainer.submit_and_wait();
    CHECK_OK(nyxq_vk_release(ctx.get(), backward));
    const float *y = static_cast<const float *>(y_buf.mapped);
    const float *yt = static_cast<const float *>(yt_buf.mapped);
    const bool block = format >= NYXQ_FORMAT_Q8_0;
    for (size_t b = 0; b < batch; ++b) {
      for (size_t r = 0; r < rows; ++r) {
        double exact = bias[r], magnitude = std::fabs(bias[r]), x_term = 0;
        for (size_t c = 0; c < cols; ++c) {
          const double wx = static_cast<double>(dequantized[r * cols + c]) * x[b * cols + c];
          exact += wx;
          magnitude += std::fabs(wx);
        }
        for (size_t k = 0; block && k < cols; k += 32) {
          double amax = 0, wsum = 0;
          for (size_t c = k; c < k + 32; ++c) {
            amax = std::max(amax, static_cast<double>(std::fabs(x[b * cols + c])));
            wsum += std::fabs(dequantized[r * cols + c]);
          }
          x_term += 0.50001 * amax / 127 * wsum;
        }
        ASSERT_NEAR(y[b * rows + r], exact, 2 * (cols + 3) * magnitude / 16777216.0 + x_term + 1e-6) << "row " << r;
      }
      for (size_t c = 0; c < cols; ++c) {
        double exact = 0, magnitude = 0;
        for (size_t r = 0; r < rows; ++r) {
          const double wx = static_cast<double>(dequantized[r * cols + c]) * xt[b * rows + r];
          exact += wx;
          magnitude += std::fabs(wx);
        }
        ASSERT_NEAR(yt[b * cols + c], exact, 2 * (rows + 3) * magnitude / 16777216.0 + 1e-6) << "column " << c;
      }
    }
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// Y = X·Wᵀ (with a bias) and dX = dY·W for a batch of tokens recorded into
// the trainer's command buffer for every format, against a double-precision
// product of the weights the CPU dequantizes: within the bound of the
// compatible kernel, (n + 3)·2⁻²⁴·Σ|w·x| (twice it), or of the cooperative-
// matrix kernel where the self-test chose it (nyxq_vk_cmd_matmul's header).
TEST(VkHandoff, RecordedMatmulsMatchADoubleReferenceForEveryFormat) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  auto cpu = nyxq_test::cpu_context(1);
  const size_t rows = 70, max_cols = 256, tokens = 67;
  HostBuffer w_buf = trainer.make_buffer(4 * rows * max_cols);
  HostBuffer x_buf = trainer.make_buffer(4 * tokens * max_cols);
  HostBuffer dy_buf = trainer.make_buffer(4 * tokens * rows);
  HostBuffer bias_buf = trainer.make_buffer(4 * rows);
  HostBuffer y_buf = trainer.make_buffer(4 * tokens * rows);
  HostBuffer dx_buf = trainer.make_buffer(4 * tokens * max_cols);
  const std::vector<float> weights = nyxq_test::sine_with_bumps(rows * max_cols);
  const std::vector<float> x = nyxq_test::sine(tokens * max_cols, 0.37f, 1.0f);
  const std::vector<float> dy = nyxq_test::sine(tokens * rows, 0.37f, 3.0f);
  const std::vector<float> bias = nyxq_test::sine(rows, 0.37f, 2.0f);
  std::memcpy(x_buf.mapped, x.data(), 4 * x.size());
  std::memcpy(dy_buf.mapped, dy.data(), 4 * dy.size());
  std::memcpy(bias_buf.mapped, bias.data(), 4 * bias.size());
  bool coop = false;
  for (const std::string &line : report_lines(ctx.get())) coop |= line.find(": coop variant") != std::string::npos;
  for (int format : {NYXQ_FORMAT_F32, NYXQ_FORMAT_F16, NYXQ_FORMAT_BF16, NYXQ_FORMAT_Q8_0, NYXQ_FORMAT_Q4_0,
                     NYXQ_FORMAT_Q4_1, NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL, NYXQ_FORMAT_Q4_K, NYXQ_FORMAT_Q5_K,
                     NYXQ_FORMAT_Q6_K}) {
    SCOPED_TRACE(testing::Message() << "format " << format);
    const size_t cols = product_cols(format);
    size_t qbytes = 0, range = 0;
    CHECK_OK(nyxq_quantized_size(format, rows * cols, &qbytes));
    CHECK_OK(nyxq_device_range_size(format, rows * cols, &range));
    std::vector<unsigned char> w(range, 0);
    CHECK_OK(nyxq_quantize(cpu.get(), format, weights.data(), rows * cols, nullptr, w.data(), qbytes));
    std::vector<float> dequantized(rows * cols);
    CHECK_OK(nyxq_dequantize(cpu.get(), format, w.data(), qbytes, dequantized.data(), dequantized.size()));
    std::memcpy(w_buf.mapped, w.data(), range);
    const NyxqVkBufferRange wr{w_buf.buffer, 0, range}, xr{x_buf.buffer, 0, 4 * tokens * cols},
        dyr{dy_buf.buffer, 0, 4 * tokens * rows}, br{bias_buf.buffer, 0, 4 * rows},
        yr{y_buf.buffer, 0, 4 * tokens * rows}, dxr{dx_buf.buffer, 0, 4 * tokens * cols};
    uint64_t forward = 0, backward = 0;
    trainer.begin();
    CHECK_OK(nyxq_vk_cmd_matmul(ctx.get(), trainer.cmd(), format, rows, cols, tokens, &wr, &xr, &br, &yr, &forward));
    CHECK_OK(nyxq_vk_cmd_matmul_transposed(ctx.get(), trainer.cmd(), format, rows, cols, tokens, &wr, &dyr, &dxr,
                                           &backward));
    trainer.submit_and_wait();
    CHECK_OK(nyxq_vk_release(ctx.get(), backward));
    auto bound = [&](size_t n, double wx, double w_and_x) {
      return coop ? (1.0 / 512 + (n + 12) / 8388608.0) * wx + w_and_x / 8388608.0
                  : 2 * (n + 3) * wx / 16777216.0;
    };
    const float *y = static_cast<const float *>(y_buf.mapped);
    const float *dx = static_cast<const float *>(dx_buf.mapped);
    for (size_t t = 0; t < tokens; ++t) {
      for (size_t r = 0; r < rows; ++r) {
        double exact = bias[r], magnitude = 0, sizes = 0;
        for (size_t c = 0; c < cols; ++c) {
          const double wx = static_cast<double>(dequantized[r * cols + c]) * x[t * cols + c];
          exact += wx;
          magnitude += std::fabs(wx);
          sizes += std::fabs(dequantized[r * cols + c]) + std::fabs(x[t * cols + c]);
        }
        ASSERT_NEAR(y[t * rows + r], exact, bound(cols, magnitude, sizes) + 1e-6) << "token " << t << " row " << r;
      }
      for (size_t c = 0; c < cols; ++c) {
        double exact = 0, magnitude = 0, sizes = 0;
        for (size_t r = 0; r < rows; ++r) {
          const double wx = static_cast<double>(dequantized[r * cols + c]) * dy[t * rows + r];
          exact += wx;
          magnitude += std::fabs(wx);
          sizes += std::fabs(dequantized[r * cols + c]) + std::fabs(dy[t * rows + r]);
        }
        ASSERT_NEAR(dx[t * cols + c], exact, bound(rows, magnitude, sizes) + 1e-6) << "token " << t << " column " << c;
      }
    }
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, DestroyingUnderUnreleasedRecordingsIsRefusedAndKeepsEverythingAlive) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const uint64_t n = 1024;
  const std::vector<float> x = nyxq_test::sine_with_bumps(n);
  HostBuffer src = trainer.make_buffer(4 * n);
  std::memcpy(src.mapped, x.data(), 4 * n);
  const uint64_t shape[1] = {n};
  NyxqTensor *t = nullptr;
  CHECK_OK(nyxq_tensor_create_in(ctx.get(), "w", shape, 1, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &t));
  nyxq_test::TensorPtr tensor(t);
  NyxqVkTensorBuffer chunk;
  CHECK_OK(nyxq_tensor_vk_buffer(tensor.get(), 0, &chunk));
  const NyxqVkBufferRange in{src.buffer, 0, 4 * n};
  const NyxqVkBufferRange out{chunk.buffer, chunk.offset, (chunk.size + 3) / 4 * 4};
  uint64_t ticket = 0;
  trainer.begin();
  CHECK_OK(nyxq_vk_cmd_quantize(ctx.get(), trainer.cmd(), NYXQ_FORMAT_Q8_0, n, &in, &out, nullptr, &ticket));
  // Recorded, not submitted or released: both destroys refuse and change nothing.
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_destroy(tensor.get()));
  std::string message = nyxq_last_error_message();
  EXPECT_NE(message.find("tensor 'w': 1 recorded ticket(s) not released"), std::string::npos) << message;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_tensor_migrate(tensor.get(), NYXQ_PLACEMENT_HOST));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_context_destroy(ctx.get()));
  message = nyxq_last_error_message();
  EXPECT_NE(message.find("1 recorded ticket(s) not released"), std::string::npos) << message;
  EXPECT_NE(message.find("nyxq_vk_release(ctx, " + std::to_string(ticket) + ")"), std::string::npos) << message;
  // Everything is still alive: the submission runs nyxq's pipeline and sets.
  trainer.submit_and_wait();
  int placement = -1;
  CHECK_OK(nyxq_tensor_placement(tensor.get(), &placement));
  EXPECT_EQ(placement, NYXQ_PLACEMENT_DEVICE);
  NyxqVkRecorderUsage usage;
  CHECK_OK(nyxq_vk_recorder_usage(ctx.get(), &usage));
  EXPECT_GT(usage.unreleased_sets, 0u);
  // Released after the fence: both go.
  CHECK_OK(nyxq_vk_release(ctx.get(), ticket));
  std::vector<float> back(n);
  CHECK_OK(nyxq_tensor_download(tensor.get(), back.data(), n));
  CHECK_OK(nyxq_tensor_destroy(tensor.release()));
  CHECK_OK(nyxq_context_destroy(ctx.release()));
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, ARangePastTheEndOfTheBufferIsRefused) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  HostBuffer small = trainer.make_buffer(256);
  HostBuffer big = trainer.make_buffer(4096);
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(trainer.device(), small.buffer, &req);
  uint64_t ticket = 7;
  trainer.begin();
  // 1,088 bytes declared on a 256-byte buffer.
  const NyxqVkBufferRange past_end{small.buffer, 0, 1088};
  const NyxqVkBufferRange dst{big.buffer, 0, 1024};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_quantize(ctx.get(), trainer.cmd(), NYXQ_FORMAT_Q4_0, 256, &past_end, &dst, nullptr, &ticket));
  const std::string message = nyxq_last_error_message();
  EXPECT_NE(message.find("src (VkBuffer 0x"), std::string::npos) << message;
  EXPECT_NE(message.find("offset 0 + size 1088 = 1088 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("memory requirement is " + std::to_string(req.size) + " bytes"), std::string::npos)
      << message;
  // offset + size wraps around 2^64.
  const NyxqVkBufferRange in{big.buffer, 0, 1024};
  const NyxqVkBufferRange wrapping{small.buffer, 256, UINT64_MAX - 100};
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_vk_cmd_quantize(ctx.get(), trainer.cmd(), NYXQ_FORMAT_Q4_0, 256, &in, &wrapping, nullptr, &ticket));
  EXPECT_EQ(ticket, 7u) << "no ticket was written on error";
  NyxqVkRecorderUsage usage;
  CHECK_OK(nyxq_vk_recorder_usage(ctx.get(), &usage));
  EXPECT_EQ(usage.unreleased_sets, 0u) << "nothing was recorded";
  trainer.submit_and_wait();
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, AVulkan10InstanceIsRefusedWithTheReason) {
  NEED_DEVICE_AT(trainer, VK_API_VERSION_1_0);
  NyxqVulkanHandles h = trainer.handles();
  NyxqContext *ctx = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_context_create_vulkan_borrowed(nullptr, &h, &ctx));
  EXPECT_EQ(ctx, nullptr);
  const std::string message = nyxq_last_error_message();
  EXPECT_NE(message.find("apiVersion below 1.2"), std::string::npos) << message;
  EXPECT_NE(message.find("apiVersion = VK_API_VERSION_1_2"), std::string::npos) << message;
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// A trainer that creates its device with the features nyxq enables on its
// own, and declares them, gets nyxq's own kernel choices (the context
// reports compared line by line) and the CPU's bytes from every recorded
// conversion; the same device without a declaration runs the compatible
// variants.
TEST(VkHandoff, ABorrowedDeviceDeclaringNyxqsFeaturesRunsTheSameKernels) {
  NEED_DEVICE_WITH(trainer, VK_API_VERSION_1_2, DeviceFeatures::kNyxqs);
  auto declared = borrow(trainer.declared_handles());
  ASSERT_NE(declared, nullptr);
  // nyxq's own device on the same driver, as the driver has it: a device
  // report it emulates (NYXQ_VK_EMULATE) applies to nyxq's own devices only.
  NyxqContextOptions options;
  CHECK_OK(nyxq_context_options_default(&options));
  options.backend = NYXQ_BACKEND_VULKAN;
  options.vulkan_validation = trainer.validating() ? 1 : 0;
  const char *emulated = std::getenv("NYXQ_VK_EMULATE");
  const std::string emulated_report = emulated != nullptr ? emulated : "";
  unsetenv("NYXQ_VK_EMULATE");
  NyxqContext *raw = nullptr;
  const NyxqStatus created = nyxq_context_create(&options, &raw);
  if (emulated != nullptr) setenv("NYXQ_VK_EMULATE", emulated_report.c_str(), 1);
  CHECK_OK(created);
  nyxq_test::ContextPtr own(raw);

  EXPECT_EQ(kernel_choices(declared.get()), kernel_choices(own.get()));
  const std::string features = report_line(declared.get(), "device features:");
  EXPECT_NE(features.find("(declared by the caller)"), std::string::npos) << features;
  EXPECT_NE(report_line(own.get(), "device features:").find("(enabled by nyxq"), std::string::npos);
  auto plain = borrow(trainer);
  EXPECT_NE(report_line(plain.get(), "device features:").find("none declared by the caller"), std::string::npos);
  if (trainer.integer_dot_product()) {
    EXPECT_NE(features.find("shaderIntegerDotProduct"), std::string::npos) << features;
    if (!compat_forced()) {
      const std::string matvec = report_line(declared.get(), "matvec W");
      EXPECT_NE(matvec.find("integer-dot variant"), std::string::npos) << matvec;
      EXPECT_NE(kernel_choices(plain.get()), kernel_choices(own.get()));
    }
  }
  record_every_conversion(trainer, declared.get());

  // A product through the declared variant (`_dot` where the device has it),
  // against a double-precision product of the dequantized weights, within
  // the `_dot` variant's bound: half a step of x's 8-bit rounding per
  // weight, (max|x| of the block / 127) / 2 · Σ|w| per block of 32, plus f32
  // rounding.
  const uint64_t rows = 64, cols = 256;
  const std::vector<float> w_values = nyxq_test::sine_with_bumps(rows * cols);
  std::vector<float> x(cols);
  for (uint64_t c = 0; c < cols; ++c) x[c] = std::cos(0.1f * static_cast<float>(c));
  auto cpu = nyxq_test::cpu_context(1);
  size_t w_bytes = 0, w_range = 0;
  CHECK_OK(nyxq_quantized_size(NYXQ_FORMAT_Q8_0, rows * cols, &w_bytes));
  CHECK_OK(nyxq_device_range_size(NYXQ_FORMAT_Q8_0, rows * cols, &w_range));
  HostBuffer w = trainer.make_buffer(w_range);
  HostBuffer xb = trainer.make_buffer(4 * cols);
  HostBuffer y = trainer.make_buffer(4 * rows);
  CHECK_OK(nyxq_quantize(cpu.get(), NYXQ_FORMAT_Q8_0, w_values.data(), rows * cols, nullptr, w.mapped, w_bytes));
  std::memcpy(xb.mapped, x.data(), 4 * cols);
  const NyxqVkBufferRange w_r{w.buffer, 0, w_range}, x_r{xb.buffer, 0, 4 * cols}, y_r{y.buffer, 0, 4 * rows};
  uint64_t ticket = 0;
  trainer.begin();
  CHECK_OK(nyxq_vk_cmd_matvec(declared.get(), trainer.cmd(), NYXQ_FORMAT_Q8_0, rows, cols, 1, &w_r, &x_r, nullptr,
                              &y_r, &ticket));
  trainer.submit_and_wait();
  CHECK_OK(nyxq_vk_release(declared.get(), ticket));
  std::vector<float> w_back(rows * cols);
  CHECK_OK(nyxq_dequantize(cpu.get(), NYXQ_FORMAT_Q8_0, w.mapped, w_bytes, w_back.data(), w_back.size()));
  const float *got = static_cast<const float *>(y.mapped);
  for (uint64_t r = 0; r < rows; ++r) {
    double exact = 0, magnitude = 0, x_rounding = 0;
    for (uint64_t block = 0; block < cols; block += 32) {
      double x_max = 0, w_sum = 0;
      for (uint64_t c = block; c < block + 32; ++c) {
        const double wx = static_cast<double>(w_back[r * cols + c]) * x[c];
        exact += wx;
        magnitude += std::fabs(wx);
        x_max = std::max(x_max, std::fabs(static_cast<double>(x[c])));
        w_sum += std::fabs(static_cast<double>(w_back[r * cols + c]));
      }
      x_rounding += x_max / 127.0 / 2.0 * w_sum;
    }
    EXPECT_NEAR(got[r], exact, x_rounding + 1e-5 * magnitude) << "row " << r;
  }

  // The `_dot_pre` variant rounds x into a scratch buffer nyxq allocates:
  // one larger than every spare (the self-test's, the product's above)
  // under a budget of 1 byte is refused, and nothing is recorded.
  if (trainer.integer_dot_product() && !compat_forced()) {
    const uint64_t wide = 2048, batch = 8;
    CHECK_OK(nyxq_device_range_size(NYXQ_FORMAT_Q8_0, 4 * wide, &w_range));
    HostBuffer big = trainer.make_buffer(1 << 17);
    const NyxqVkBufferRange big_w{big.buffer, 0, w_range}, big_x{big.buffer, 1 << 15, 4 * batch * wide},
        big_y{big.buffer, 3 << 15, 4 * batch * 4};
    CHECK_OK(nyxq_test_set_device_budget(declared.get(), 1));
    uint64_t refused = 777;
    trainer.begin();
    EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, nyxq_vk_cmd_matvec(declared.get(), trainer.cmd(), NYXQ_FORMAT_Q8_0,
                                                                      4, wide, batch, &big_w, &big_x, nullptr,
                                                                      &big_y, &refused));
    EXPECT_EQ(refused, 777u);
    expect_nothing_recorded(trainer, declared.get());
    CHECK_OK(nyxq_test_set_device_budget(declared.get(), 0));
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// Declared VK_EXT_debug_utils: every dispatch nyxq records is wrapped in a
// label with its kernel's name (seen through a wrapped vkGetDeviceProcAddr);
// not declared, none is. The validation layer stays clean either way.
TEST(VkHandoff, RecordedDispatchesAreLabelledWithTheirKernelsNames) {
  NEED_DEVICE(trainer);
  if (!trainer.validating()) SKIP_MISSING("VK_EXT_debug_utils comes with the validation layer here");
  HostBuffer buf = trainer.make_buffer(1 << 16);
  const std::vector<float> x = nyxq_test::sine_with_bumps(1024);
  std::memcpy(buf.mapped, x.data(), 4 * x.size());
  const NyxqVkBufferRange src{buf.buffer, 0, 4096}, q{buf.buffer, 8192, 1088}, back{buf.buffer, 16384, 4096};
  for (bool declare : {true, false}) {
    SCOPED_TRACE(declare ? "declared" : "not declared");
    NyxqVulkanHandles h = declare ? trainer.declared_handles() : trainer.handles();
    h.get_instance_proc_addr = reinterpret_cast<void *>(spy_instance_proc_addr);
    auto ctx = borrow(h);
    ASSERT_NE(ctx, nullptr);
    const std::string labels = report_line(ctx.get(), "debug labels:");
    EXPECT_NE(labels.find(declare ? "each dispatch is labelled" : "off"), std::string::npos) << labels;
    g_labels.clear();  // the self-test's dispatches, labelled too
    uint64_t t1 = 0, t2 = 0;
    trainer.begin();
    CHECK_OK(nyxq_vk_cmd_quantize(ctx.get(), trainer.cmd(), NYXQ_FORMAT_Q8_0, 1024, &src, &q, nullptr, &t1));
    trainer.barrier();
    CHECK_OK(nyxq_vk_cmd_dequantize(ctx.get(), trainer.cmd(), NYXQ_FORMAT_Q8_0, 1024, &q, &back, NYXQ_FORMAT_F32,
                                    &t2));
    trainer.submit_and_wait();
    CHECK_OK(nyxq_vk_release(ctx.get(), t2));
    const std::vector<std::string> expected =
        declare ? std::vector<std::string>{"quantize_f32_q8_0", "dequantize_q8_0_f32"} : std::vector<std::string>{};
    EXPECT_EQ(g_labels, expected);
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// A declaration nyxq cannot honour, or a chain it cannot walk, is refused
// with the reason and *ctx_out untouched; a caller built against the header
// before the declaration fields (a smaller struct_size) declares nothing,
// whatever follows its struct.
TEST(VkHandoff, ABadFeatureDeclarationIsRefusedWithTheReason) {
  NEED_DEVICE(trainer);
  NyxqContext *ctx = nullptr;
  auto create = [&](const NyxqVulkanHandles &h) { return nyxq_context_create_vulkan_borrowed(nullptr, &h, &ctx); };
  auto said = [](const char *words) {
    const std::string message = nyxq_last_error_message();
    EXPECT_NE(message.find(words), std::string::npos) << message;
  };
  NyxqVulkanHandles h = trainer.handles();

  VkPhysicalDeviceFeatures2 loop[2]{};
  loop[0].sType = loop[1].sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  loop[0].pNext = &loop[1];
  loop[1].pNext = &loop[0];
  h.enabled_features = &loop[0];
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, create(h));
  said("chain loops: structure 1 points back to structure 0");

  std::vector<VkPhysicalDeviceFeatures2> long_chain(65);
  for (size_t i = 0; i < long_chain.size(); ++i) {
    long_chain[i].sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    long_chain[i].pNext = i + 1 < long_chain.size() ? &long_chain[i + 1] : nullptr;
  }
  h.enabled_features = long_chain.data();
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, create(h));
  said("more than 64 structures");

  VkPhysicalDeviceVulkan11Features twice[2]{};
  twice[0].sType = twice[1].sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
  twice[0].pNext = &twice[1];
  h.enabled_features = &twice[0];
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, create(h));
  said("VkPhysicalDeviceVulkan11Features twice");

  // shaderIntegerDotProduct without its extension on this Vulkan 1.2 instance
  // (or on a device without it at all).
  VkPhysicalDeviceShaderIntegerDotProductFeatures dot{};
  dot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
  dot.shaderIntegerDotProduct = VK_TRUE;
  h.enabled_features = &dot;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, create(h));
  said("shaderIntegerDotProduct");
  h.enabled_features = nullptr;

  h.enabled_extension_count = 1;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, create(h));
  said("handles->enabled_extensions is NULL");
  const char *no_name[1] = {nullptr};
  h.enabled_extensions = no_name;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, create(h));
  said("handles->enabled_extensions[0] is NULL");
  h.enabled_extensions = nullptr;
  h.enabled_extension_count = 0;
  const char *not_utf8[2] = {"VK_KHR_surface", "VK_\xff"};
  h.enabled_instance_extensions = not_utf8;
  h.enabled_instance_extension_count = 2;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, create(h));
  said("handles->enabled_instance_extensions[1] is not valid UTF-8");
  EXPECT_EQ(ctx, nullptr);

  // The first struct, followed by bytes nyxq must not read as declarations.
  NyxqVulkanHandles old = trainer.handles();
  old.struct_size = offsetof(NyxqVulkanHandles, enabled_features);
  old.enabled_features = &loop[0];
  old.enabled_extension_count = 99;
  CHECK_OK(create(old));
  nyxq_test::ContextPtr borrowed(ctx);
  EXPECT_NE(report_line(borrowed.get(), "device features:").find("none declared"), std::string::npos);
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// nyxq_vk_release_when: each ticket is released, alone, once its timeline
// semaphore reaches its value, checked at the next recording or usage
// query, so command buffers that complete out of order release in the order
// they complete; a value the host signals works too; nyxq_vk_release still
// releases every ticket up to the one it names; a reached ticket no longer
// blocks nyxq_context_destroy.
TEST(VkHandoff, TicketsAreReleasedWhenTheirTimelineSemaphoreReachesItsValue) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  auto cpu = nyxq_test::cpu_context(1);
  HostBuffer buf = trainer.make_buffer(1 << 16);
  const std::vector<float> x = nyxq_test::sine_with_bumps(1024);
  std::memcpy(buf.mapped, x.data(), 4 * x.size());
  const NyxqVkBufferRange src{buf.buffer, 0, 4096}, dst{buf.buffer, 8192, 1088};
  VkSemaphore timeline = trainer.make_timeline();
  void *sem = reinterpret_cast<void *>(timeline);
  VkCommandBuffer first = trainer.make_command_buffer(), second = trainer.make_command_buffer();
  auto record = [&](VkCommandBuffer cmd, uint64_t *ticket) {
    VkCommandBufferBeginInfo begin{};
    begin.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    ASSERT_EQ(vkBeginCommandBuffer(cmd, &begin), VK_SUCCESS);
    CHECK_OK(nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 1024, &src, &dst, nullptr, ticket));
    ASSERT_EQ(vkEndCommandBuffer(cmd), VK_SUCCESS);
  };
  auto unreleased = [&] {
    NyxqVkRecorderUsage usage;
    EXPECT_EQ(nyxq_vk_recorder_usage(ctx.get(), &usage), NYXQ_OK);
    return usage.unreleased_sets;
  };

  // Two command buffers; the later ticket's completes first.
  uint64_t t1 = 0, t2 = 0;
  record(first, &t1);
  record(second, &t2);
  CHECK_OK(nyxq_vk_release_when(ctx.get(), t1, sem, 2));
  CHECK_OK(nyxq_vk_release_when(ctx.get(), t2, sem, 1));
  EXPECT_EQ(unreleased(), 2u);
  trainer.submit_and_wait(second, timeline, 1);
  EXPECT_EQ(unreleased(), 1u) << "t2 released, t1 still waits";
  trainer.submit_and_wait(first, timeline, 2);
  EXPECT_EQ(unreleased(), 0u);
  CHECK_OK(nyxq_vk_release_when(ctx.get(), t1, sem, 99));  // a released ticket is left alone
  EXPECT_EQ(unreleased(), 0u);

  // A value the host signals is seen by the next recording.
  uint64_t t3 = 0, t4 = 0;
  record(first, &t3);
  trainer.submit_and_wait(first);
  CHECK_OK(nyxq_vk_release_when(ctx.get(), t3, sem, 5));
  VkSemaphoreSignalInfo signal{};
  signal.sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO;
  signal.semaphore = timeline;
  signal.value = 5;
  ASSERT_EQ(vkSignalSemaphore(trainer.device(), &signal), VK_SUCCESS);
  record(second, &t4);
  NyxqVkRecorderUsage usage;
  CHECK_OK(nyxq_vk_recorder_usage(ctx.get(), &usage));
  EXPECT_EQ(usage.unreleased_sets, 1u) << "only t4's set: t3 went at t4's recording";
  trainer.submit_and_wait(second);

  // nyxq_vk_release releases up to its ticket, waiting ones too.
  CHECK_OK(nyxq_vk_release_when(ctx.get(), t4, sem, 1000));
  CHECK_OK(nyxq_vk_release(ctx.get(), t4));
  EXPECT_EQ(unreleased(), 0u);

  // Refusals, with nothing changed.
  uint64_t t5 = 0;
  record(first, &t5);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_release_when(ctx.get(), t5 + 1, sem, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_release_when(ctx.get(), t5, nullptr, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_release_when(nullptr, t5, sem, 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_vk_release_when(reinterpret_cast<NyxqContext *>(0x10), t5, sem, 1));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_vk_release_when(cpu.get(), t5, sem, 1));
  EXPECT_EQ(unreleased(), 1u);

  // A ticket whose semaphore has reached its value does not hold the context.
  CHECK_OK(nyxq_vk_release_when(ctx.get(), t5, sem, 6));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_context_destroy(ctx.get()));  // t5 still waits
  trainer.submit_and_wait(first, timeline, 6);
  EXPECT_EQ(nyxq_context_destroy(ctx.release()), NYXQ_OK) << nyxq_last_error_message();

  // A counter read that reports the device lost (injected between nyxq and
  // the driver) is the call's status, and the context's from then on.
  NyxqVulkanHandles faulty = trainer.handles();
  faulty.get_instance_proc_addr = reinterpret_cast<void *>(vk_fault::get_instance_proc_addr);
  auto lost = borrow(faulty);
  ASSERT_NE(lost, nullptr);
  uint64_t t6 = 0;
  VkCommandBufferBeginInfo begin{};
  begin.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  ASSERT_EQ(vkBeginCommandBuffer(first, &begin), VK_SUCCESS);
  CHECK_OK(nyxq_vk_cmd_quantize(lost.get(), first, NYXQ_FORMAT_Q8_0, 1024, &src, &dst, nullptr, &t6));
  ASSERT_EQ(vkEndCommandBuffer(first), VK_SUCCESS);
  vk_fault::arm("vkGetSemaphoreCounterValue", VK_ERROR_DEVICE_LOST);
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_vk_release_when(lost.get(), t6, sem, 7));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("vkGetSemaphoreCounterValue"), std::string::npos)
      << nyxq_last_error_message();
  CHECK_OK(nyxq_vk_release(lost.get(), t6));  // never submitted: released by hand
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// ---------------------------------------------------------- device Adam ----

namespace {

// Element i's gradient at `step`, times `scale`: ordinary values, with
// gradients whose squares underflow, subnormal ones and zeros.
float adam_gradient(size_t i, int step, float scale) {
  const float sign = (i * 7 + step) % 5 < 2 ? -1.0f : 1.0f;
  switch ((i + step) % 13) {
    case 0:
      return 0.0f;
    case 1:
      return sign * 1e-20f * scale;
    case 2:
      return sign * 3e-19f * scale;
    default:
      return (static_cast<float>((i * 7919 + step * 104729) % 2001) * 1e-3f - 1.0f) * scale;
  }
}

nyxq_test::VkAdamPtr make_vk_adam(NyxqContext *ctx, uint64_t n, int32_t state) {
  NyxqAdamOptions o;
  nyxq_adam_options_default(&o);
  o.state = state;
  o.weight_decay = 0.01f;
  NyxqVkAdam *adam = nullptr;
  const NyxqStatus status = nyxq_vk_adam_create(ctx, &o, n, &adam);
  EXPECT_EQ(status, NYXQ_OK) << nyxq_test::describe(status);
  return nyxq_test::VkAdamPtr(adam);
}

nyxq_test::AdamPtr make_host_adam(uint64_t n, int32_t state) {
  NyxqAdamOptions o;
  nyxq_adam_options_default(&o);
  o.state = state;
  o.weight_decay = 0.01f;
  NyxqAdam *adam = nullptr;
  EXPECT_EQ(nyxq_adam_create(&o, n, &adam), NYXQ_OK) << nyxq_last_error_message();
  return nyxq_test::AdamPtr(adam);
}

std::vector<uint8_t> vk_adam_bytes(NyxqVkAdam *adam) {
  size_t size = 0;
  EXPECT_EQ(nyxq_vk_adam_save_size(adam, &size), NYXQ_OK);
  std::vector<uint8_t> bytes(size);
  const NyxqStatus status = nyxq_vk_adam_save(adam, bytes.data(), bytes.size());
  EXPECT_EQ(status, NYXQ_OK) << nyxq_test::describe(status);
  return bytes;
}

std::vector<uint8_t> host_adam_bytes(NyxqAdam *adam) {
  size_t size = 0;
  EXPECT_EQ(nyxq_adam_save_size(adam, &size), NYXQ_OK);
  std::vector<uint8_t> bytes(size);
  EXPECT_EQ(nyxq_adam_save(adam, bytes.data(), bytes.size()), NYXQ_OK) << nyxq_last_error_message();
  return bytes;
}

// Offsets of the weights, gradients and found flag of a device step in one
// buffer of the trainer's (4 KiB apart past the weights, so any offset
// alignment holds).
struct AdamLayout {
  explicit AdamLayout(size_t n) : n(n), bytes(4 * n), grads_at((bytes + 4095) / 4096 * 4096), found_at(2 * grads_at) {}
  size_t n, bytes, grads_at, found_at;
  size_t total() const { return found_at + 4096; }
};

}  // namespace

// A training loop as the trainer records it: the scaled gradients are
// unscaled and checked on the device into `found`, and the Adam step reads
// `found` there, so an overflowing step is skipped with no host round trip;
// the host scaler hears of the flag after the fence. Weights and state equal
// the host's loop (host scaler, nyxq_adam_step) bit for bit, with FP32 and
// 8-bit state; after the skipped step the device optimizer and scaler are
// saved, destroyed, made again and loaded, and the run goes on unchanged.
TEST(VkAdam, DeviceStepsWithFusedSkipsAndCheckpointsEqualTheHost) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  for (int32_t state : {NYXQ_ADAM_STATE_FP32, NYXQ_ADAM_STATE_INT8}) {
    const size_t n = state == NYXQ_ADAM_STATE_FP32 ? 37 : 4096 + 300;
    const AdamLayout at(n);
    HostBuffer buf = trainer.make_buffer(at.total());
    auto *device_params = reinterpret_cast<float *>(buf.mapped);
    auto *device_grads = reinterpret_cast<float *>(static_cast<char *>(buf.mapped) + at.grads_at);
    auto *device_found = reinterpret_cast<uint32_t *>(static_cast<char *>(buf.mapped) + at.found_at);
    const NyxqVkBufferRange params{buf.buffer, 0, at.bytes}, grads{buf.buffer, at.grads_at, at.bytes},
        found{buf.buffer, at.found_at, 4};
    std::vector<float> host_params(n);
    for (size_t i = 0; i < n; ++i) host_params[i] = static_cast<float>(i % 17) * 0.1f - 0.8f;
    std::memcpy(device_params, host_params.data(), at.bytes);

    NyxqLossScaler *raw = nullptr;
    CHECK_OK(nyxq_loss_scaler_create(nullptr, &raw));
    nyxq_test::ScalerPtr device_scaler(raw);
    CHECK_OK(nyxq_loss_scaler_create(nullptr, &raw));
    nyxq_test::ScalerPtr host_scaler(raw);
    nyxq_test::VkAdamPtr device_adam = make_vk_adam(ctx.get(), n, state);
    nyxq_test::AdamPtr host_adam = make_host_adam(n, state);
    ASSERT_NE(device_adam, nullptr);

    for (int step = 1; step <= 6; ++step) {
      const float lr = 1e-3f * static_cast<float>(step);
      float scale = 0;
      CHECK_OK(nyxq_loss_scaler_scale(device_scaler.get(), &scale));
      std::vector<float> g(n);
      for (size_t i = 0; i < n; ++i) g[i] = adam_gradient(i, step, scale);
      if (step == 3) g[n / 2] = std::numeric_limits<float>::infinity();
      std::memcpy(device_grads, g.data(), at.bytes);
      *device_found = 0;

      trainer.begin();
      uint64_t unscale_ticket = 0, step_ticket = 0;
      CHECK_OK(nyxq_vk_cmd_unscale_and_check(ctx.get(), device_scaler.get(), trainer.cmd(), &grads, n, &found,
                                             &unscale_ticket));
      trainer.barrier();
      CHECK_OK(nyxq_vk_cmd_adam_step(ctx.get(), device_adam.get(), trainer.cmd(), lr, &params, &grads, n, &found,
                                     &step_ticket));
      trainer.submit_and_wait();
      CHECK_OK(nyxq_vk_release(ctx.get(), step_ticket));
      // The host scaler's bookkeeping, after the fence.
      uint32_t apply = 0;
      CHECK_OK(nyxq_loss_scaler_report_non_finite(device_scaler.get(), *device_found));
      CHECK_OK(nyxq_loss_scaler_update(device_scaler.get(), &apply));
      EXPECT_EQ(apply, step == 3 ? 0u : 1u);

      uint32_t host_found = 0, host_apply = 0;
      CHECK_OK(nyxq_loss_scaler_unscale_and_check(host_scaler.get(), g.data(), n, &host_found, nullptr));
      CHECK_OK(nyxq_loss_scaler_update(host_scaler.get(), &host_apply));
      if (host_apply) CHECK_OK(nyxq_adam_step(host_adam.get(), lr, host_params.data(), n, g.data(), n));
      ASSERT_EQ(std::memcmp(device_params, host_params.data(), at.bytes), 0) << "state " << state << ", step " << step;

      if (step == 3) {
        const std::vector<uint8_t> saved_adam = vk_adam_bytes(device_adam.get());
        size_t scaler_size = 0;
        CHECK_OK(nyxq_loss_scaler_save_size(device_scaler.get(), &scaler_size));
        std::vector<uint8_t> saved_scaler(scaler_size);
        CHECK_OK(nyxq_loss_scaler_save(device_scaler.get(), saved_scaler.data(), saved_scaler.size()));
        EXPECT_EQ(saved_adam, host_adam_bytes(host_adam.get())) << "the host's bytes";
        device_adam.reset();
        device_scaler.reset();
        device_adam = make_vk_adam(ctx.get(), n, state);
        CHECK_OK(nyxq_loss_scaler_create(nullptr, &raw));
        device_scaler.reset(raw);
        CHECK_OK(nyxq_vk_adam_load(device_adam.get(), saved_adam.data(), saved_adam.size()));
        CHECK_OK(nyxq_loss_scaler_load(device_scaler.get(), saved_scaler.data(), saved_scaler.size()));
      }
    }
    EXPECT_EQ(vk_adam_bytes(device_adam.get()), host_adam_bytes(host_adam.get()));
    size_t held = 0, fp32 = 0;
    CHECK_OK(nyxq_vk_adam_state_bytes(device_adam.get(), &held, &fp32));
    size_t host_held = 0;
    CHECK_OK(nyxq_adam_state_bytes(host_adam.get(), &host_held, &fp32));
    EXPECT_EQ(held, host_held);
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// Every argument of the device optimizer's calls is checked before anything
// is recorded or changed.
TEST(VkAdam, ArgumentsAreCheckedBeforeAnythingIsRecorded) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  auto cpu = nyxq_test::cpu_context(1);
  const size_t n = 64;
  const AdamLayout at(n);
  HostBuffer buf = trainer.make_buffer(at.total());
  const NyxqVkBufferRange params{buf.buffer, 0, at.bytes}, grads{buf.buffer, at.grads_at, at.bytes},
      found{buf.buffer, at.found_at, 4};
  NyxqVkAdam *made = reinterpret_cast<NyxqVkAdam *>(0x1);
  NyxqAdamOptions o;
  nyxq_adam_options_default(&o);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_adam_create(nullptr, &o, n, &made));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_adam_create(ctx.get(), &o, n, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_vk_adam_create(reinterpret_cast<NyxqContext *>(0x10), &o, n, &made));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_adam_create(ctx.get(), &o, 0, &made));
  o.beta2 = 1.0f;
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_adam_create(ctx.get(), &o, n, &made));
  nyxq_adam_options_default(&o);
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_vk_adam_create(cpu.get(), &o, n, &made));
  EXPECT_EQ(made, reinterpret_cast<NyxqVkAdam *>(0x1)) << "nothing written on error";
  nyxq_test::VkAdamPtr adam = make_vk_adam(ctx.get(), n, NYXQ_ADAM_STATE_FP32);
  const std::vector<uint8_t> fresh = vk_adam_bytes(adam.get());

  VkCommandBuffer cmd = trainer.cmd();
  NyxqVkAdam *a = adam.get();
  uint64_t ticket = 12345;
  trainer.begin();
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_adam_step(nullptr, a, cmd, 0.1f, &params, &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_adam_step(ctx.get(), nullptr, cmd, 0.1f, &params, &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_adam_step(ctx.get(), a, nullptr, 0.1f, &params, &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, nullptr, &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, nullptr, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &grads, n, &found, nullptr));
  const NyxqVkBufferRange null_buffer{nullptr, 0, at.bytes};
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &null_buffer, &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_cmd_adam_step(ctx.get(), reinterpret_cast<NyxqVkAdam *>(0x10),
                                                                 cmd, 0.1f, &params, &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &grads, n - 1, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &grads, 0, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, -0.1f, &params, &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, std::nanf(""), &params,
                                                                   &grads, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &params, n, &found, &ticket));
  const NyxqVkBufferRange found_in_grads{buf.buffer, at.grads_at, 4};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &grads, n, &found_in_grads, &ticket));
  const NyxqVkBufferRange misaligned{buf.buffer, at.grads_at + 2, at.bytes};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &misaligned, n, &found, &ticket));
  const NyxqVkBufferRange past_the_end{buf.buffer, at.found_at, 8192};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &grads, n, &past_the_end, &ticket));
  const NyxqVkBufferRange short_grads{buf.buffer, at.grads_at, at.bytes - 4};
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &short_grads, n, &found, &ticket));
  EXPECT_EQ(nyxq_last_error_needed_len(), at.bytes);
  const NyxqVkBufferRange wrapping{buf.buffer, at.grads_at, UINT64_MAX - 100};
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &wrapping, n, &found, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED,
                nyxq_vk_cmd_adam_step(cpu.get(), a, cmd, 0.1f, &params, &grads, n, &found, &ticket));
  auto other = borrow(trainer);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_adam_step(other.get(), a, cmd, 0.1f, &params, &grads, n, &found, &ticket));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("another context"), std::string::npos);
  EXPECT_EQ(ticket, 12345u) << "no ticket was written on error";
  expect_nothing_recorded(trainer, ctx.get());

  // Sizes, checkpoints and handles.
  size_t size = 0, held = 0;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_adam_save_size(a, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_adam_state_bytes(a, &held, nullptr));
  std::vector<uint8_t> small(16);
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_vk_adam_save(a, small.data(), small.size()));
  EXPECT_EQ(nyxq_last_error_needed_len(), fresh.size());
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_adam_save(a, nullptr, fresh.size()));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_adam_load(a, nullptr, fresh.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_adam_load(a, fresh.data(), fresh.size() - 1));
  std::vector<uint8_t> int8 = vk_adam_bytes(make_vk_adam(ctx.get(), 4096, NYXQ_ADAM_STATE_INT8).get());
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_adam_load(a, int8.data(), int8.size()));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("state format"), std::string::npos);
  // While a recorded step is unreleased, the state stays where it is.
  trainer.begin();
  CHECK_OK(nyxq_vk_cmd_adam_step(ctx.get(), a, cmd, 0.1f, &params, &grads, n, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_adam_destroy(a));
  std::vector<uint8_t> out(fresh.size());
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_adam_save(a, out.data(), out.size()));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("nyxq_vk_release"), std::string::npos);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_adam_load(a, fresh.data(), fresh.size()));
  trainer.submit_and_wait();
  CHECK_OK(nyxq_vk_release(ctx.get(), ticket));
  EXPECT_NE(vk_adam_bytes(a), fresh) << "the step applied";
  CHECK_OK(nyxq_vk_adam_load(a, fresh.data(), fresh.size()));
  EXPECT_EQ(vk_adam_bytes(a), fresh);
  NyxqVkAdam *dead = nyxq_test::destroyed(std::move(adam));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_adam_destroy(dead));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_adam_state_bytes(dead, &held, &held));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_adam_save_size(dead, &size));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_adam_save(dead, out.data(), out.size()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_vk_adam_load(dead, fresh.data(), fresh.size()));
  CHECK_OK(nyxq_vk_adam_destroy(nullptr));
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// Failing Vulkan commands reach the caller as statuses (NYXQ_ERROR_VULKAN,
// NYXQ_ERROR_OUT_OF_DEVICE_MEMORY) and leave nothing behind; on a lost
// device every call that needs it says so.
TEST(VkAdam, FailingVulkanCommandsAndALostDeviceAreReported) {
  NEED_DEVICE(trainer);
  NyxqVulkanHandles handles = trainer.handles();
  handles.get_instance_proc_addr = reinterpret_cast<void *>(vk_fault::get_instance_proc_addr);
  auto ctx = borrow(handles);
  ASSERT_NE(ctx, nullptr);
  const size_t n = 64;
  NyxqVkAdam *made = reinterpret_cast<NyxqVkAdam *>(0x1);
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_vk_adam_create(ctx.get(), nullptr, n, &made));
  vk_fault::arm("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, nyxq_vk_adam_create(ctx.get(), nullptr, n, &made));
  EXPECT_EQ(made, reinterpret_cast<NyxqVkAdam *>(0x1));
  nyxq_test::VkAdamPtr adam = make_vk_adam(ctx.get(), n, NYXQ_ADAM_STATE_FP32);
  const std::vector<uint8_t> fresh = vk_adam_bytes(adam.get());
  std::vector<uint8_t> out(fresh.size());
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_vk_adam_save(adam.get(), out.data(), out.size()));
  vk_fault::arm("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, nyxq_vk_adam_save(adam.get(), out.data(), out.size()));
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_vk_adam_load(adam.get(), fresh.data(), fresh.size()));
  vk_fault::arm("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, nyxq_vk_adam_load(adam.get(), fresh.data(), fresh.size()));
  EXPECT_EQ(vk_adam_bytes(adam.get()), fresh);

  const AdamLayout at(n);
  HostBuffer buf = trainer.make_buffer(at.total());
  const NyxqVkBufferRange params{buf.buffer, 0, at.bytes}, grads{buf.buffer, at.grads_at, at.bytes};
  uint64_t ticket = 12345;
  trainer.begin();
  vk_fault::arm("vkAllocateDescriptorSets", VK_ERROR_FRAGMENTED_POOL);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_vk_cmd_adam_step(ctx.get(), adam.get(), trainer.cmd(), 0.1f, &params,
                                                         &grads, n, nullptr, &ticket));
  EXPECT_EQ(ticket, 12345u);
  expect_nothing_recorded(trainer, ctx.get());

  // A counter read reports the device lost: from then on the context's
  // device is lost for every call.
  VkSemaphoreTypeCreateInfo type{};
  type.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
  type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  VkSemaphoreCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
  info.pNext = &type;
  VkSemaphore timeline = VK_NULL_HANDLE;
  ASSERT_EQ(vkCreateSemaphore(trainer.device(), &info, nullptr, &timeline), VK_SUCCESS);
  trainer.begin();
  CHECK_OK(nyxq_vk_cmd_adam_step(ctx.get(), adam.get(), trainer.cmd(), 0.1f, &params, &grads, n, nullptr, &ticket));
  ASSERT_EQ(vkEndCommandBuffer(trainer.cmd()), VK_SUCCESS);
  vk_fault::arm("vkGetSemaphoreCounterValue", VK_ERROR_DEVICE_LOST);
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_vk_release_when(ctx.get(), ticket, reinterpret_cast<void *>(timeline), 1));
  CHECK_OK(nyxq_vk_release(ctx.get(), ticket));  // never submitted: released by hand
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_vk_adam_create(ctx.get(), nullptr, n, &made));
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_vk_adam_save(adam.get(), out.data(), out.size()));
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_vk_adam_load(adam.get(), fresh.data(), fresh.size()));
  vkDestroySemaphore(trainer.device(), timeline, nullptr);
  EXPECT_TRUE(vk_fault::armed_command.empty()) << "every armed command was called";
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// A DEVICE tensor's upload and download go through staging memory and a
// copy on the device: their failures reach the caller, and nothing of the
// tensor changes. Then vkQueueSubmit reports the device lost during an
// upload: from then on every call that would use the device refuses with
// NYXQ_ERROR_DEVICE_LOST, naming the first loss, and records, allocates and
// writes nothing; the host's data stays as it was.
TEST(VkHandoff, ALostDeviceRefusesEveryCallThatWouldUseIt) {
  NEED_DEVICE(trainer);
  NyxqVulkanHandles handles = trainer.handles();
  handles.get_instance_proc_addr = reinterpret_cast<void *>(vk_fault::get_instance_proc_addr);
  auto ctx = borrow(handles);
  ASSERT_NE(ctx, nullptr);
  const uint64_t shape[2] = {4, 64};
  const std::vector<float> values = nyxq_test::sine_with_bumps(256);
  NyxqTensor *t = nullptr;
  CHECK_OK(nyxq_tensor_create_in(ctx.get(), "d", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &t));
  nyxq_test::TensorPtr on_device(t);
  CHECK_OK(nyxq_tensor_upload(on_device.get(), values.data(), values.size(), nullptr));
  std::vector<float> stored(256), back(256, 7.0f);
  CHECK_OK(nyxq_tensor_download(on_device.get(), stored.data(), stored.size()));
  const std::vector<float> other(256, 0.5f);
  vk_fault::arm("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY,
                nyxq_tensor_upload(on_device.get(), other.data(), other.size(), nullptr));
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_tensor_upload(on_device.get(), other.data(), other.size(), nullptr));
  vk_fault::arm("vkAllocateMemory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_DEVICE_MEMORY, nyxq_tensor_download(on_device.get(), back.data(), back.size()));
  vk_fault::arm("vkMapMemory", VK_ERROR_MEMORY_MAP_FAILED);
  EXPECT_STATUS(NYXQ_ERROR_VULKAN, nyxq_tensor_download(on_device.get(), back.data(), back.size()));
  EXPECT_EQ(back, std::vector<float>(256, 7.0f)) << "a failed download writes nothing";
  CHECK_OK(nyxq_tensor_download(on_device.get(), back.data(), back.size()));
  EXPECT_EQ(back, stored) << "failed uploads leave the tensor as it was";

  // What the recording calls will need, made before the loss.
  const RecordingArgs a(trainer);
  const size_t n = 64;
  nyxq_test::VkAdamPtr adam = make_vk_adam(ctx.get(), n, NYXQ_ADAM_STATE_FP32);
  const NyxqVkBufferRange params{a.buf.buffer, 0, 4 * n}, grads{a.buf.buffer, 4096, 4 * n};
  CHECK_OK(nyxq_tensor_create(ctx.get(), "h", shape, 2, NYXQ_FORMAT_Q8_0, &t));
  nyxq_test::TensorPtr on_host(t);
  CHECK_OK(nyxq_tensor_upload(on_host.get(), values.data(), values.size(), nullptr));

  vk_fault::arm("vkQueueSubmit", VK_ERROR_DEVICE_LOST);
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_tensor_upload(on_device.get(), other.data(), other.size(), nullptr));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("vkQueueSubmit"), std::string::npos)
      << nyxq_last_error_message();
  auto lost_earlier = [] {
    EXPECT_NE(std::string(nyxq_last_error_message()).find("lost earlier"), std::string::npos)
        << nyxq_last_error_message();
  };
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_tensor_upload(on_device.get(), values.data(), values.size(), nullptr));
  lost_earlier();
  std::fill(back.begin(), back.end(), 7.0f);
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_tensor_download(on_device.get(), back.data(), back.size()));
  lost_earlier();
  EXPECT_EQ(back, std::vector<float>(256, 7.0f)) << "nothing written";
  NyxqTensor *made = reinterpret_cast<NyxqTensor *>(0x1);
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_tensor_create_in(ctx.get(), "w", shape, 2, NYXQ_FORMAT_Q8_0, NYXQ_PLACEMENT_DEVICE, &made));
  lost_earlier();
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_tensor_convert(on_device.get(), NYXQ_FORMAT_Q4_0, nullptr, &made));
  lost_earlier();
  EXPECT_EQ(made, reinterpret_cast<NyxqTensor *>(0x1));
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST, nyxq_tensor_migrate(on_host.get(), NYXQ_PLACEMENT_DEVICE));
  lost_earlier();
  int32_t placement = -1;
  CHECK_OK(nyxq_tensor_placement(on_host.get(), &placement));
  EXPECT_EQ(placement, NYXQ_PLACEMENT_HOST);
  std::vector<float> host_back(256), expect(256);
  CHECK_OK(nyxq_tensor_download(on_host.get(), host_back.data(), host_back.size()));
  auto cpu = nyxq_test::cpu_context(1);
  CHECK_OK(nyxq_fake_quantize(cpu.get(), NYXQ_FORMAT_Q8_0, values.data(), values.size(), nullptr, expect.data(),
                              expect.size()));
  EXPECT_EQ(host_back, expect) << "the host tensor keeps its values";

  VkCommandBuffer cmd = trainer.cmd();
  uint64_t ticket = 12345;
  trainer.begin();
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_vk_cmd_quantize(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 32, &a.src, &a.dst, nullptr, &ticket));
  lost_earlier();
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_vk_cmd_matvec(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w, &a.x, nullptr, &a.y, &ticket));
  lost_earlier();
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_vk_cmd_matmul(ctx.get(), cmd, NYXQ_FORMAT_Q8_0, 4, 64, 1, &a.w, &a.x, nullptr, &a.y, &ticket));
  lost_earlier();
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_vk_cmd_unscale_and_check(ctx.get(), a.scaler.get(), cmd, &a.grads, 64, &a.flag, &ticket));
  lost_earlier();
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_vk_cmd_importance_add(ctx.get(), cmd, &a.grads, 64, 1, &a.flag, &ticket));
  lost_earlier();
  EXPECT_STATUS(NYXQ_ERROR_DEVICE_LOST,
                nyxq_vk_cmd_adam_step(ctx.get(), adam.get(), cmd, 0.1f, &params, &grads, n, nullptr, &ticket));
  lost_earlier();
  EXPECT_EQ(ticket, 12345u) << "no ticket was written";
  expect_nothing_recorded(trainer, ctx.get());
  EXPECT_TRUE(vk_fault::armed_command.empty()) << "every armed command was called";
  EXPECT_EQ(trainer.validation_errors(), 0);
}

// Σx² per column on the device (f32, in the trainer's buffer) against the
// host accumulator's f64 sums of the same activations, for odd column
// counts, two recordings adding to one set of sums, and the sums brought
// into a host accumulator through nyxq_importance_add_sums.
TEST(VkHandoff, ImportanceSumsMatchTheHost) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  const std::vector<std::pair<size_t, size_t>> shapes = {{1, 5}, {31, 7}, {33, 64}, {4097, 3}, {384, 257}};
  for (const auto &[cols, tokens] : shapes) {
    SCOPED_TRACE(testing::Message() << cols << " columns, " << tokens << " tokens a batch");
    const std::vector<float> a = nyxq_test::noisy_sine(tokens * cols, 3);
    std::vector<float> b = nyxq_test::noisy_sine(tokens * cols, 4);
    for (size_t i = 0; i < b.size(); ++i) b[i] *= (i % cols) % 5 == 0 ? 30.0f : 0.2f;
    const VkDeviceSize x_bytes = 4 * tokens * cols, sum_bytes = 4 * cols;
    HostBuffer xs = trainer.make_buffer(2 * x_bytes + 256);
    HostBuffer sums = trainer.make_buffer(sum_bytes);
    std::memcpy(xs.mapped, a.data(), x_bytes);
    const VkDeviceSize second = (x_bytes + 255) / 256 * 256;
    std::memcpy(static_cast<char *>(xs.mapped) + second, b.data(), x_bytes);
    const NyxqVkBufferRange xa{xs.buffer, 0, x_bytes}, xb{xs.buffer, second, x_bytes};
    const NyxqVkBufferRange s{sums.buffer, 0, sum_bytes};
    trainer.begin();
    vkCmdFillBuffer(trainer.cmd(), sums.buffer, 0, sum_bytes, 0);
    trainer.barrier();
    uint64_t first_ticket = 0, ticket = 0;
    CHECK_OK(nyxq_vk_cmd_importance_add(ctx.get(), trainer.cmd(), &xa, tokens, cols, &s, &first_ticket));
    trainer.barrier();
    CHECK_OK(nyxq_vk_cmd_importance_add(ctx.get(), trainer.cmd(), &xb, tokens, cols, &s, &ticket));
    trainer.submit_and_wait();
    CHECK_OK(nyxq_vk_release(ctx.get(), ticket));

    NyxqImportance *raw = nullptr;
    CHECK_OK(nyxq_importance_create(cols, &raw));
    nyxq_test::ImportancePtr host(raw);
    CHECK_OK(nyxq_importance_add(host.get(), a.data(), a.size(), tokens));
    CHECK_OK(nyxq_importance_add(host.get(), b.data(), b.size(), tokens));
    CHECK_OK(nyxq_importance_create(cols, &raw));
    nyxq_test::ImportancePtr from_device(raw);
    const float *device_sums = static_cast<const float *>(sums.mapped);
    CHECK_OK(nyxq_importance_add_sums(from_device.get(), device_sums, cols, 2 * tokens));
    std::vector<float> want(cols), got(cols);
    uint64_t want_tokens = 0, got_tokens = 0;
    CHECK_OK(nyxq_importance_values(host.get(), want.data(), cols, &want_tokens));
    CHECK_OK(nyxq_importance_values(from_device.get(), got.data(), cols, &got_tokens));
    EXPECT_EQ(got_tokens, want_tokens);
    // f32 sums of `tokens` squares, then one addition per recording: within
    // (tokens + 1)·2^-23 of the exact sum, relatively (the documented bound).
    const double bound = (static_cast<double>(tokens) + 1.0) * std::ldexp(1.0, -23);
    for (size_t c = 0; c < cols; ++c) {
      double exact = 0;
      for (size_t t = 0; t < tokens; ++t) {
        exact += static_cast<double>(a[t * cols + c]) * a[t * cols + c];
        exact += static_cast<double>(b[t * cols + c]) * b[t * cols + c];
      }
      ASSERT_LE(std::fabs(device_sums[c] - exact), bound * exact) << "column " << c;
      ASSERT_NEAR(got[c], want[c], bound * want[c] + 1e-30) << "column " << c;
    }
  }
  EXPECT_EQ(trainer.validation_errors(), 0);
}

TEST(VkHandoff, ImportanceArgumentsAreCheckedBeforeAnythingIsRecorded) {
  NEED_DEVICE(trainer);
  auto ctx = borrow(trainer);
  auto cpu = nyxq_test::cpu_context(1);
  HostBuffer buf = trainer.make_buffer(1 << 16);
  VkCommandBuffer cmd = trainer.cmd();
  const NyxqVkBufferRange x{buf.buffer, 0, 4096}, sums{buf.buffer, 8192, 64};
  uint64_t ticket = 12345;
  trainer.begin();
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_cmd_importance_add(nullptr, cmd, &x, 64, 16, &sums, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_cmd_importance_add(ctx.get(), nullptr, &x, 64, 16, &sums, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_cmd_importance_add(ctx.get(), cmd, nullptr, 64, 16, &sums, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, 64, 16, nullptr, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, 64, 16, &sums, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE,
                nyxq_vk_cmd_importance_add(reinterpret_cast<NyxqContext *>(0x10), cmd, &x, 64, 16, &sums, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, 0, 16, &sums, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, 64, 0, &sums, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, 1, uint64_t{1} << 32, &sums, &ticket));
  const NyxqVkBufferRange misaligned{buf.buffer, 2, 4096};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_importance_add(ctx.get(), cmd, &misaligned, 64, 16, &sums, &ticket));
  const NyxqVkBufferRange sums_inside{buf.buffer, 0, 64};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, 64, 16, &sums_inside, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, 65, 16, &sums, &ticket));
  EXPECT_EQ(nyxq_last_error_needed_len(), 4160u);
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_vk_cmd_importance_add(ctx.get(), cmd, &x, UINT64_MAX / 8, 16, &sums, &ticket));
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_vk_cmd_importance_add(cpu.get(), cmd, &x, 64, 16, &sums, &ticket));
  EXPECT_EQ(ticket, 12345u) << "no ticket was written on error";
  expect_nothing_recorded(trainer, ctx.get());
  EXPECT_EQ(trainer.validation_errors(), 0);
}
