// The demo trainer's own Vulkan device, made as the Nyx trainer makes its own:
// instance (with the validation layer when asked), physical device, device,
// compute queue, command pool, buffers and compute pipelines. nyxq borrows the
// instance, device and queue (nyxq_context_create_vulkan_borrowed); nothing
// here is nyxq's.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "nyxq.h"

namespace demo {

// The demo stops at the first failed call, naming it and nyxq's message or
// Vulkan's result.
[[noreturn]] inline void die_nyxq(const char *what, NyxqStatus s) {
  std::fprintf(stderr, "nyxq_demo: %s failed: %s: %s\n", what, nyxq_status_str(s), nyxq_last_error_message());
  std::exit(1);
}
#define NYXQ(call) \
  do { NyxqStatus s_ = (call); if (s_ != NYXQ_OK) demo::die_nyxq(#call, s_); } while (0)

[[noreturn]] inline void die_vk(const char *what, VkResult r) {
  std::fprintf(stderr, "nyxq_demo: %s failed: VkResult %d\n", what, static_cast<int>(r));
  std::exit(1);
}
#define VK(call) \
  do { VkResult r_ = (call); if (r_ != VK_SUCCESS) demo::die_vk(#call, r_); } while (0)

// A buffer of the trainer's, with its memory (mapped when host-visible).
struct VkBuf {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void *mapped = nullptr;
  VkDeviceSize size = 0;
  NyxqVkBufferRange range() const { return {buffer, 0, size}; }
  float *floats() const { return static_cast<float *>(mapped); }
  uint32_t *words() const { return static_cast<uint32_t *>(mapped); }
};

// The push constants of every demo shader (shaders/push.glsl).
struct PushConstants {
  uint32_t n0 = 0, n1 = 0, n2 = 0, n3 = 0;
  float factor = 0;
};
static_assert(sizeof(PushConstants) == 20, "shaders/push.glsl's block is 20 bytes");

// One compute pipeline of the demo's shaders and its layouts.
struct Kernel {
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
};

class VulkanDevice {
 public:
  VulkanDevice() = default;
  VulkanDevice(const VulkanDevice &) = delete;
  VulkanDevice &operator=(const VulkanDevice &) = delete;
  ~VulkanDevice() { close(); }

  static bool has_layer(const char *name) {
    uint32_t count = 0;
    vkEnumerateInstanceLayerProperties(&count, nullptr);
    std::vector<VkLayerProperties> layers(count);
    vkEnumerateInstanceLayerProperties(&count, layers.data());
    for (const VkLayerProperties &l : layers)
      if (std::strcmp(l.layerName, name) == 0) return true;
    return false;
  }

  // Creates the instance (with the validation layer, which must be there,
  // when `validate`), picks a device (a GPU before a CPU implementation) and
  // creates the device, queue, command pool and nyxq's borrowed context. On
  // failure returns false with the reason in *why.
  bool open(bool validate, std::string *why) {
    if (validate) instance_extensions_.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "nyxq_demo";
    app.apiVersion = VK_API_VERSION_1_2;
    const char *layer = "VK_LAYER_KHRONOS_validation";
    VkInstanceCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    info.pApplicationInfo = &app;
    info.enabledLayerCount = validate ? 1 : 0;
    info.ppEnabledLayerNames = &layer;
    info.enabledExtensionCount = static_cast<uint32_t>(instance_extensions_.size());
    info.ppEnabledExtensionNames = instance_extensions_.data();
    VkResult r = vkCreateInstance(&info, nullptr, &instance_);
    if (r != VK_SUCCESS) {
      instance_ = VK_NULL_HANDLE;
      *why = "vkCreateInstance failed (VkResult " + std::to_string(r) + "): no Vulkan driver";
      return false;
    }
    if (validate) add_messenger();
    if (!pick_device(why)) return false;
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
    r = vkCreateDevice(physical_, &dev, nullptr, &device_);
    if (r != VK_SUCCESS) {
      device_ = VK_NULL_HANDLE;
      *why = "vkCreateDevice failed (VkResult " + std::to_string(r) + ")";
      return false;
    }
    vkGetDeviceQueue(device_, family_, 0, &queue_);
    VkCommandPoolCreateInfo pool{};
    pool.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    pool.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pool.queueFamilyIndex = family_;
    VK(vkCreateCommandPool(device_, &pool, nullptr, &pool_));
    VkCommandBufferAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    alloc.commandPool = pool_;
    alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    alloc.commandBufferCount = 1;
    VK(vkAllocateCommandBuffers(device_, &alloc, &cmd_));
    VkFenceCreateInfo fence{};
    fence.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    VK(vkCreateFence(device_, &fence, nullptr, &fence_));
    // The handoff: nyxq borrows the instance, device and queue. The device
    // enables no optional feature, so nothing is declared.
    NyxqVulkanHandles h;
    std::memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    h.instance = instance_;
    h.physical_device = physical_;
    h.device = device_;
    h.queue_family = family_;
    h.queue = queue_;
    h.get_instance_proc_addr = reinterpret_cast<void *>(vkGetInstanceProcAddr);
    h.enabled_instance_extensions = instance_extensions_.data();
    h.enabled_instance_extension_count = instance_extensions_.size();
    const NyxqStatus s = nyxq_context_create_vulkan_borrowed(nullptr, &h, &nyxq_);
    if (s != NYXQ_OK) {
      nyxq_ = nullptr;
      *why = std::string("nyxq_context_create_vulkan_borrowed: ") + nyxq_status_str(s) + ": " + nyxq_last_error_message();
      return false;
    }
    return true;
  }

  // nyxq's context first (it borrows the device), then ours in reverse order.
  // Messages the validation layer gives meanwhile are still counted.
  void close() {
    if (nyxq_ != nullptr) {
      const NyxqStatus s = nyxq_context_destroy(nyxq_);
      if (s != NYXQ_OK) std::fprintf(stderr, "nyxq_demo: nyxq_context_destroy: %s\n", nyxq_last_error_message());
      nyxq_ = nullptr;
    }
    if (device_ != VK_NULL_HANDLE) {
      vkDeviceWaitIdle(device_);
      for (const Kernel &k : kernels_) {
        vkDestroyPipeline(device_, k.pipeline, nullptr);
        vkDestroyPipelineLayout(device_, k.layout, nullptr);
        vkDestroyDescriptorSetLayout(device_, k.set_layout, nullptr);
      }
      if (descriptor_pool_ != VK_NULL_HANDLE) vkDestroyDescriptorPool(device_, descriptor_pool_, nullptr);
      for (const VkBuf &b : buffers_) destroy(b);
      if (fence_ != VK_NULL_HANDLE) vkDestroyFence(device_, fence_, nullptr);
      if (pool_ != VK_NULL_HANDLE) vkDestroyCommandPool(device_, pool_, nullptr);
      vkDestroyDevice(device_, nullptr);
      kernels_.clear(), buffers_.clear();
      device_ = VK_NULL_HANDLE;
    }
    if (messenger_ != VK_NULL_HANDLE) {
      auto destroy_messenger = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
          vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
      destroy_messenger(instance_, messenger_, nullptr);
      messenger_ = VK_NULL_HANDLE;
    }
    if (instance_ != VK_NULL_HANDLE) vkDestroyInstance(instance_, nullptr);
    instance_ = VK_NULL_HANDLE;
  }

  NyxqContext *nyxq() const { return nyxq_; }
  VkDevice device() const { return device_; }
  VkCommandBuffer cmd() const { return cmd_; }
  const VkPhysicalDeviceProperties &properties() const { return properties_; }
  bool is_cpu() const { return properties_.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU; }
  int validation_messages() const { return validation_messages_; }
  // Nanoseconds per timestamp tick, or 0 when the queue writes no timestamps.
  double timestamp_ns() const { return timestamps_ ? properties_.limits.timestampPeriod : 0.0; }

  // A storage buffer: in device-local memory, or host-visible and mapped.
  VkBuf buffer(VkDeviceSize size, bool host_visible) {
    VkBuf b;
    b.size = (size + 3) / 4 * 4;
    VkBufferCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    info.size = b.size;
    info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VK(vkCreateBuffer(device_, &info, nullptr, &b.buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device_, b.buffer, &req);
    const VkMemoryPropertyFlags want = host_visible
                                           ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
                                           : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    VkMemoryAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    alloc.allocationSize = req.size;
    alloc.memoryTypeIndex = memory_type(req.memoryTypeBits, want);
    VK(vkAllocateMemory(device_, &alloc, nullptr, &b.memory));
    VK(vkBindBufferMemory(device_, b.buffer, b.memory, 0));
    if (host_visible) VK(vkMapMemory(device_, b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped));
    buffers_.push_back(b);
    return b;
  }

  // Copies host bytes into a buffer, or a buffer's bytes to the host, through
  // a staging buffer, and waits (setup and the end of training only).
  void upload(const VkBuf &dst, const void *src, size_t bytes) {
    VkBuf staging = buffer(bytes, true);
    std::memcpy(staging.mapped, src, bytes);
    copy_and_wait(staging, dst, bytes);
    release(staging);
  }
  void download(const VkBuf &src, void *dst, size_t bytes) {
    VkBuf staging = buffer(bytes, true);
    copy_and_wait(src, staging, bytes);
    std::memcpy(dst, staging.mapped, bytes);
    release(staging);
  }

  void release(const VkBuf &b) {
    for (size_t i = 0; i < buffers_.size(); ++i)
      if (buffers_[i].buffer == b.buffer) {
        destroy(buffers_[i]);
        buffers_.erase(buffers_.begin() + static_cast<long>(i));
        return;
      }
  }

  // A compute pipeline over `bindings` storage buffers from SPIR-V words.
  Kernel kernel(const uint32_t *spirv, size_t words, uint32_t bindings) {
    Kernel k;
    std::vector<VkDescriptorSetLayoutBinding> b(bindings);
    for (uint32_t i = 0; i < bindings; ++i) {
      b[i] = {};
      b[i].binding = i;
      b[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      b[i].descriptorCount = 1;
      b[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    VkDescriptorSetLayoutCreateInfo set{};
    set.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    set.bindingCount = bindings;
    set.pBindings = b.data();
    VK(vkCreateDescriptorSetLayout(device_, &set, nullptr, &k.set_layout));
    VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(PushConstants)};
    VkPipelineLayoutCreateInfo layout{};
    layout.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    layout.setLayoutCount = 1;
    layout.pSetLayouts = &k.set_layout;
    layout.pushConstantRangeCount = 1;
    layout.pPushConstantRanges = &push;
    VK(vkCreatePipelineLayout(device_, &layout, nullptr, &k.layout));
    VkShaderModuleCreateInfo module{};
    module.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    module.codeSize = words * sizeof(uint32_t);
    module.pCode = spirv;
    VkShaderModule shader = VK_NULL_HANDLE;
    VK(vkCreateShaderModule(device_, &module, nullptr, &shader));
    VkComputePipelineCreateInfo pipe{};
    pipe.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    pipe.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    pipe.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    pipe.stage.module = shader;
    pipe.stage.pName = "main";
    pipe.layout = k.layout;
    VK(vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &pipe, nullptr, &k.pipeline));
    vkDestroyShaderModule(device_, shader, nullptr);
    kernels_.push_back(k);
    return k;
  }

  // A descriptor set of `k` binding `buffers` in order (freed with the device).
  VkDescriptorSet bind(const Kernel &k, const std::vector<VkBuf> &buffers) {
    if (descriptor_pool_ == VK_NULL_HANDLE) {
      VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 512};
      VkDescriptorPoolCreateInfo info{};
      info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
      info.maxSets = 128;
      info.poolSizeCount = 1;
      info.pPoolSizes = &size;
      VK(vkCreateDescriptorPool(device_, &info, nullptr, &descriptor_pool_));
    }
    VkDescriptorSetAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    alloc.descriptorPool = descriptor_pool_;
    alloc.descriptorSetCount = 1;
    alloc.pSetLayouts = &k.set_layout;
    VkDescriptorSet set = VK_NULL_HANDLE;
    VK(vkAllocateDescriptorSets(device_, &alloc, &set));
    std::vector<VkDescriptorBufferInfo> infos(buffers.size());
    std::vector<VkWriteDescriptorSet> writes(buffers.size());
    for (size_t i = 0; i < buffers.size(); ++i) {
      infos[i] = {buffers[i].buffer, 0, VK_WHOLE_SIZE};
      writes[i] = {};
      writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
      writes[i].dstSet = set;
      writes[i].dstBinding = static_cast<uint32_t>(i);
      writes[i].descriptorCount = 1;
      writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      writes[i].pBufferInfo = &infos[i];
    }
    vkUpdateDescriptorSets(device_, static_cast<uint32_t>(writes.size()), writes.data(), 0, nullptr);
    return set;
  }

  void begin() {
    VkCommandBufferBeginInfo info{};
    info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    VK(vkBeginCommandBuffer(cmd_, &info));
  }
  // Ends the command buffer, submits it with the fence and waits on the fence.
  void submit_and_wait() {
    VK(vkEndCommandBuffer(cmd_));
    VkSubmitInfo submit{};
    submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &cmd_;
    VK(vkQueueSubmit(queue_, 1, &submit, fence_));
    VK(vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX));
    VK(vkResetFences(device_, 1, &fence_));
  }

  // Every earlier compute, transfer and host write before every later read
  // and write (the demo's stages depend on each other in sequence).
  void barrier() const {
    VkMemoryBarrier b{};
    b.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT;
    b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                      VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_HOST_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_HOST_BIT, 0, 1,
                         &b, 0, nullptr, 0, nullptr);
  }

  void dispatch(const Kernel &k, VkDescriptorSet set, const PushConstants &push, uint32_t x, uint32_t y = 1) const {
    vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, k.pipeline);
    vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, k.layout, 0, 1, &set, 0, nullptr);
    vkCmdPushConstants(cmd_, k.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof push, &push);
    vkCmdDispatch(cmd_, x, y, 1);
  }

 private:
  static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT,
                                                   VkDebugUtilsMessageTypeFlagsEXT,
                                                   const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    int &count = *static_cast<int *>(user);
    if (++count <= 5) std::fprintf(stderr, "nyxq_demo: validation: %s\n", data->pMessage);
    return VK_FALSE;
  }

  // Counts (and prints the first five of) the validation layer's errors and
  // warnings.
  void add_messenger() {
    auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
    VkDebugUtilsMessengerCreateInfoEXT m{};
    m.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    m.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
    m.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT;
    m.pfnUserCallback = on_message;
    m.pUserData = &validation_messages_;
    VK(create(instance_, &m, nullptr, &messenger_));
  }

  // The first GPU with a compute queue and Vulkan 1.2, else the first CPU
  // implementation (lavapipe) with them.
  bool pick_device(std::string *why) {
    uint32_t count = 0;
    vkEnumeratePhysicalDevices(instance_, &count, nullptr);
    std::vector<VkPhysicalDevice> devices(count);
    vkEnumeratePhysicalDevices(instance_, &count, devices.data());
    if (count == 0) {
      *why = "the Vulkan loader found no device";
      return false;
    }
    for (int pass = 0; pass < 2 && physical_ == VK_NULL_HANDLE; ++pass)
      for (VkPhysicalDevice pd : devices) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(pd, &p);
        if ((p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) != (pass == 1) || p.apiVersion < VK_API_VERSION_1_2) continue;
        uint32_t n = 0;
        vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
        std::vector<VkQueueFamilyProperties> families(n);
        vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, families.data());
        for (uint32_t i = 0; i < n; ++i)
          if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            physical_ = pd, family_ = i, properties_ = p;
            timestamps_ = families[i].timestampValidBits > 0 && p.limits.timestampComputeAndGraphics;
            break;
          }
        if (physical_ != VK_NULL_HANDLE) break;
      }
    if (physical_ == VK_NULL_HANDLE) {
      *why = std::to_string(count) + " Vulkan device(s), none with Vulkan 1.2 and a compute queue";
      return false;
    }
    vkGetPhysicalDeviceMemoryProperties(physical_, &memory_);
    return true;
  }

  // The first memory type with `want`; for device-local memory, any type
  // when none is (the buffer then works, slower).
  uint32_t memory_type(uint32_t allowed, VkMemoryPropertyFlags want) const {
    for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i)
      if ((allowed & (1u << i)) && (memory_.memoryTypes[i].propertyFlags & want) == want) return i;
    if (!(want & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
      for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i)
        if (allowed & (1u << i)) return i;
    std::fprintf(stderr, "nyxq_demo: the Vulkan device has no host-visible coherent memory\n");
    std::exit(1);
  }

  void copy_and_wait(const VkBuf &src, const VkBuf &dst, size_t bytes) {
    begin();
    VkBufferCopy region{0, 0, bytes};
    vkCmdCopyBuffer(cmd_, src.buffer, dst.buffer, 1, &region);
    barrier();
    submit_and_wait();
  }

  void destroy(const VkBuf &b) {
    vkDestroyBuffer(device_, b.buffer, nullptr);
    vkFreeMemory(device_, b.memory, nullptr);
  }

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties properties_{};
  VkPhysicalDeviceMemoryProperties memory_{};
  uint32_t family_ = 0;
  bool timestamps_ = false;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkDescriptorPool descriptor_pool_ = VK_NULL_HANDLE;
  std::vector<VkBuf> buffers_;
  std::vector<Kernel> kernels_;
  std::vector<const char *> instance_extensions_;
  int validation_messages_ = 0;
  NyxqContext *nyxq_ = nullptr;
};

}  // namespace demo
