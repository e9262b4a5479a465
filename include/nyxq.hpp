/// @file nyxq.hpp
/// The C++17 API of nyxq: a header-only layer over the C ABI of nyxq.h.
///
/// - **Owners.** Every handle of nyxq.h has a move-only owner (Context,
///   Tensor, Config, Model, Plan, LossScaler, Adam, String) that calls the
///   handle's `*_destroy` function exactly once, when it goes out of scope or
///   is reset. `get()` gives the C handle for calls this layer does not wrap;
///   `release()` gives it up (the caller then destroys it). A moved-from or
///   default-constructed owner is empty (`get() == nullptr`); calling a member
///   function on it reports NYXQ_ERROR_NULL_POINTER like the C function does.
/// - **Errors.** Every call that can fail exists twice. `f(...)` returns its result and
///   throws nyxq::Error on failure; `try_f(...)` never throws a nyxq error and
///   returns a nyxq::Result<T> (Result<void> for calls without a result) that
///   holds either the value or the status, message, needed length and index
///   of the failure. Both capture nyxq_last_error_message() and its companions
///   on the calling thread right after the failed call. (Either may still
///   throw std::bad_alloc when C++ memory runs out.)
/// - **Views.** Buffers are passed as nyxq::Span<T>, a pointer and an element
///   count that converts from std::vector, std::array, C arrays, braced
///   lists (for read-only spans) and (pointer, size) pairs. Quantized bytes
///   are `Span<uint8_t>` / `Span<const uint8_t>`. A Span never owns memory.
/// - **Enums** are `enum class` with the C values (to_c() converts); option
///   classes start from the library's defaults (the `*_default` C functions)
///   and have chainable setters.
/// - **Threads** are as nyxq.h states for each function: a Context, Config,
///   Plan and Tensor may be used from several threads at once; a LossScaler or
///   an Adam takes one call at a time; destroying (an owner's destructor,
///   reset, move-assignment) must not overlap any other call on the handle.
#ifndef NYXQ_HPP
#define NYXQ_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "nyxq.h"

/// The C++ API of nyxq.
namespace nyxq {

// ---------------------------------------------------------------- enums ----

/// Storage formats (NyxqFormat).
enum class Format : int32_t {
  F32 = NYXQ_FORMAT_F32,    ///< IEEE binary32.
  F16 = NYXQ_FORMAT_F16,    ///< IEEE binary16, round to nearest even.
  BF16 = NYXQ_FORMAT_BF16,  ///< bfloat16, round to nearest even.
  Q8_0 = NYXQ_FORMAT_Q8_0,  ///< INT8 blocks of 32 (8.5 bits/weight).
  Q4_0 = NYXQ_FORMAT_Q4_0,  ///< INT4 blocks of 32, x = d*(q-8) (4.5 bits/weight).
  Q4_1 = NYXQ_FORMAT_Q4_1,  ///< INT4 blocks of 32, x = d*q + m (5 bits/weight).
  Q5_0 = NYXQ_FORMAT_Q5_0,  ///< INT5 blocks of 32, x = d*(q-16) (5.5 bits/weight).
  IQ4_NL = NYXQ_FORMAT_IQ4_NL,  ///< Non-linear INT4 blocks of 32, x = d*v[q] (4.5 bits/weight).
  Q4_K = NYXQ_FORMAT_Q4_K,  ///< INT4 super-blocks of 256, x = d*sc*q - dmin*m (4.5 bits/weight).
  Q5_K = NYXQ_FORMAT_Q5_K,  ///< INT5 super-blocks of 256, as Q4_K with a fifth bit (5.5 bits/weight).
  Q6_K = NYXQ_FORMAT_Q6_K,  ///< INT6 super-blocks of 256, x = d*sc*(q-32) (6.5625 bits/weight).
};

/// Rounding modes (NyxqRounding).
enum class Rounding : int32_t {
  Nearest = NYXQ_ROUNDING_NEAREST,                     ///< Byte-identical with ggml (default).
  ErrorMinimising = NYXQ_ROUNDING_ERROR_MINIMISING,  ///< Each block's scale searched for the least error.
  Stochastic = NYXQ_ROUNDING_STOCHASTIC,             ///< Unbiased, seeded.
};

/// What happens to NaN, ±Inf and out-of-range values (NyxqNonFinite).
enum class NonFinite : int32_t {
  Reject = NYXQ_NON_FINITE_REJECT,      ///< NYXQ_ERROR_NON_FINITE with the first bad index (default).
  Saturate = NYXQ_NON_FINITE_SATURATE,  ///< NaN to 0, ±Inf to the largest finite value.
};

/// Which backend a context uses (NyxqBackend).
enum class Backend : int32_t {
  Auto = NYXQ_BACKEND_AUTO,      ///< A GPU when one works, else the CPU (default).
  Cpu = NYXQ_BACKEND_CPU,        ///< The CPU only.
  Vulkan = NYXQ_BACKEND_VULKAN,  ///< Vulkan, or NYXQ_ERROR_UNSUPPORTED.
};

/// How much nyxq logs (NyxqLogLevel).
enum class LogLevel : int32_t {
  Off = NYXQ_LOG_OFF,  ///< No logger is installed (default).
  Error = NYXQ_LOG_ERROR,  ///< Errors.
  Warn = NYXQ_LOG_WARN,    ///< Warnings and above.
  Info = NYXQ_LOG_INFO,    ///< Information and above.
  Debug = NYXQ_LOG_DEBUG,  ///< Debugging and above.
  Trace = NYXQ_LOG_TRACE,  ///< Everything.
};

/// How Adam stores its moments (NyxqAdamState).
enum class AdamState : int32_t {
  Fp32 = NYXQ_ADAM_STATE_FP32,  ///< 8 bytes per parameter (default).
  Int8 = NYXQ_ADAM_STATE_INT8,  ///< Blockwise 8-bit moments.
};

/// Tensor roles (NyxqRole).
enum class Role : int32_t {
  Embedding = NYXQ_ROLE_EMBEDDING,  ///< Token embeddings.
  Attention = NYXQ_ROLE_ATTENTION,  ///< Attention projections.
  Mlp = NYXQ_ROLE_MLP,              ///< MLP weights.
  Output = NYXQ_ROLE_OUTPUT,        ///< The output projection (LM head).
  Norm = NYXQ_ROLE_NORM,            ///< Norm weights: always F32.
  Bias = NYXQ_ROLE_BIAS,            ///< Biases: always F32.
  Other = NYXQ_ROLE_OTHER,          ///< Any other tensor.
};

/// Where a tensor lives (NyxqPlacement).
enum class Placement : int32_t {
  Device = NYXQ_PLACEMENT_DEVICE,  ///< Device-local memory of the Vulkan device.
  Host = NYXQ_PLACEMENT_HOST,      ///< Host memory.
};

/// How optimizer state is stored in a training plan (NyxqOptimizerState).
enum class OptimizerState : int32_t {
  Fp32 = NYXQ_OPTIMIZER_FP32,              ///< 8 bytes per parameter (default).
  Blockwise8 = NYXQ_OPTIMIZER_BLOCKWISE8,  ///< 8 bits with an FP32 scale per 256 values.
};

/// Kind of Vulkan device (NyxqDeviceType).
enum class DeviceType : int32_t {
  Other = NYXQ_DEVICE_TYPE_OTHER,                  ///< Anything else.
  IntegratedGpu = NYXQ_DEVICE_TYPE_INTEGRATED_GPU, ///< Integrated GPU.
  DiscreteGpu = NYXQ_DEVICE_TYPE_DISCRETE_GPU,     ///< Discrete GPU.
  VirtualGpu = NYXQ_DEVICE_TYPE_VIRTUAL_GPU,       ///< Virtual GPU.
  Cpu = NYXQ_DEVICE_TYPE_CPU,                      ///< A CPU implementation (lavapipe).
};

/// The C value of a nyxq enum (the `int32_t` the C functions and structs take).
template <class E, class = std::enable_if_t<std::is_enum<E>::value>>
constexpr int32_t to_c(E value) noexcept {
  return static_cast<int32_t>(value);
}

/// A C value (a struct field such as NyxqPlanEntry.format) as a nyxq enum.
/// Not checked: the C structs nyxq fills hold only valid values.
template <class E>
constexpr E from_c(int32_t value) noexcept {
  static_assert(std::is_enum<E>::value, "from_c converts to a nyxq enum");
  return static_cast<E>(value);
}

/// The bit of `format` in NyxqPlanPolicy.allowed_formats.
constexpr uint32_t format_bit(Format format) noexcept { return 1u << static_cast<uint32_t>(format); }

// ----------------------------------------------------------------- span ----

/// A view of `size()` contiguous elements of type T that someone else owns
/// (C++17 has no std::span). Converts from std::vector, std::array, C arrays,
/// anything with data() and size(), and a (pointer, size) pair; a Span of
/// const elements also from a braced list, which lives until the end of the
/// full expression (so pass it straight to a call). A default Span is empty,
/// and an empty Span is passed to C as (NULL, 0).
template <class T>
class Span {
 public:
  /// The element type, const included.
  using element_type = T;

  /// An empty view.
  constexpr Span() noexcept = default;
  /// `size` elements at `data` (`data` may be NULL only when `size` is 0).
  constexpr Span(T *data, size_t size) noexcept : data_(data), size_(size) {}
  /// A whole C array.
  template <size_t N>
  constexpr Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
  /// A contiguous container (std::vector, std::array, std::string, Span ...)
  /// whose data() converts to T*.
  template <class C, class = std::enable_if_t<!std::is_array<std::remove_reference_t<C>>::value &&
                                              std::is_convertible<decltype(std::data(std::declval<C &>())), T *>::value &&
                                              std::is_same<std::remove_cv_t<std::remove_pointer_t<decltype(std::data(
                                                               std::declval<C &>()))>>,
                                                           std::remove_cv_t<T>>::value>>
  constexpr Span(C &&container) noexcept : data_(std::data(container)), size_(std::size(container)) {}
  /// A braced list, for read-only spans: `ctx.create_tensor("w", {64, 128}, Format::Q4_0)`.
  template <class U = T, class = std::enable_if_t<std::is_const<U>::value>>
  constexpr Span(std::initializer_list<std::remove_const_t<T>> list) noexcept
      : data_(std::data(list)), size_(list.size()) {}

  /// The first element (NULL for an empty default view).
  constexpr T *data() const noexcept { return data_; }
  /// The number of elements.
  constexpr size_t size() const noexcept { return size_; }
  /// The number of bytes.
  constexpr size_t size_bytes() const noexcept { return size_ * sizeof(T); }
  /// True when the view has no elements.
  constexpr bool empty() const noexcept { return size_ == 0; }
  /// Element `i` (not checked).
  constexpr T &operator[](size_t i) const noexcept { return data_[i]; }
  /// Iteration.
  constexpr T *begin() const noexcept { return data_; }
  /// Iteration.
  constexpr T *end() const noexcept { return data_ + size_; }

 private:
  T *data_ = nullptr;
  size_t size_ = 0;
};

// --------------------------------------------------------------- errors ----

/// A failed nyxq call as an exception: the status, nyxq's message and, where
/// the status has them, the needed length and the bad element's index.
/// what() is "<nyxq_status_str(status)>: <message>".
class Error : public std::runtime_error {
 public:
  /// An error with the given details (normally made by Result from the
  /// calling thread's last error).
  Error(NyxqStatus status, std::string message, size_t needed_len = 0, int64_t index = -1)
      : std::runtime_error(std::string(nyxq_status_str(status)) + ": " + message),
        status_(status),
        message_(std::move(message)),
        needed_len_(needed_len),
        index_(index) {}

  /// The status of the failed call (never NYXQ_OK).
  NyxqStatus status() const noexcept { return status_; }
  /// nyxq_last_error_message() of the failed call.
  const std::string &message() const noexcept { return message_; }
  /// After NYXQ_ERROR_BUFFER_TOO_SMALL: the length the buffer must have, in
  /// its elements; 0 otherwise.
  size_t needed_len() const noexcept { return needed_len_; }
  /// After NYXQ_ERROR_NON_FINITE: the first bad element; -1 otherwise.
  int64_t index() const noexcept { return index_; }

 private:
  NyxqStatus status_;
  std::string message_;
  size_t needed_len_;
  int64_t index_;
};

/// The outcome of a `try_` call: a value of type T (nothing for T = void), or
/// the failure's status, message, needed length and index. value() returns
/// the value or throws the failure as nyxq::Error.
template <class T>
class Result;

namespace detail {

/// What Result<T> and Result<void> share: the status and the failure's details.
class ResultBase {
 public:
  /// True on success.
  bool ok() const noexcept { return status_ == NYXQ_OK; }
  /// True on success.
  explicit operator bool() const noexcept { return ok(); }
  /// NYXQ_OK, or the failed call's status.
  NyxqStatus status() const noexcept { return status_; }
  /// "" on success, else nyxq_last_error_message() of the failed call.
  const std::string &message() const noexcept { return message_; }
  /// After NYXQ_ERROR_BUFFER_TOO_SMALL: the length needed; else 0.
  size_t needed_len() const noexcept { return needed_len_; }
  /// After NYXQ_ERROR_NON_FINITE: the first bad element; else -1.
  int64_t index() const noexcept { return index_; }
  /// The failure as an exception object (do not call on success).
  Error error() const { return Error(status_, message_, needed_len_, index_); }

 protected:
  ResultBase() = default;
  /// Records a failure from the calling thread's last error, which must be
  /// that of the call that returned `status`.
  explicit ResultBase(NyxqStatus status)
      : status_(status),
        message_(nyxq_last_error_message()),
        needed_len_(status == NYXQ_ERROR_BUFFER_TOO_SMALL ? nyxq_last_error_needed_len() : 0),
        index_(status == NYXQ_ERROR_NON_FINITE ? nyxq_last_error_index() : -1) {}
  void throw_if_failed() const {
    if (!ok()) throw error();
  }

 private:
  NyxqStatus status_ = NYXQ_OK;
  std::string message_;
  size_t needed_len_ = 0;
  int64_t index_ = -1;
};

}  // namespace detail

/// A value or a failure; see the file comment for the error model.
template <class T>
class [[nodiscard]] Result : public detail::ResultBase {
 public:
  /// A success holding `value`.
  Result(T value) : value_(std::move(value)) {}
  /// The failure of the call that just returned `status` (not NYXQ_OK) on
  /// this thread.
  static Result failure(NyxqStatus status) { return Result(status, 0); }

  /// The value; throws nyxq::Error on failure.
  T &value() & {
    throw_if_failed();
    return *value_;
  }
  /// The value; throws nyxq::Error on failure.
  const T &value() const & {
    throw_if_failed();
    return *value_;
  }
  /// The value, moved out; throws nyxq::Error on failure.
  T value() && {
    throw_if_failed();
    return std::move(*value_);
  }
  /// The value, or `fallback` on failure.
  T value_or(T fallback) && { return ok() ? std::move(*value_) : std::move(fallback); }

 private:
  Result(NyxqStatus status, int) : ResultBase(status) {}
  std::optional<T> value_;
};

/// A success or a failure, for calls without a result.
template <>
class [[nodiscard]] Result<void> : public detail::ResultBase {
 public:
  /// A success.
  Result() = default;
  /// The failure of the call that just returned `status` on this thread.
  static Result failure(NyxqStatus status) { return Result(status, 0); }
  /// Throws nyxq::Error on failure; does nothing on success.
  void value() const { throw_if_failed(); }

 private:
  Result(NyxqStatus status, int) : ResultBase(status) {}
};

/// A success or a failure: the non-throwing form of a call without a result.
using Status = Result<void>;

namespace detail {

/// Result<void> of a C call's status.
inline Status status_of(NyxqStatus status) { return status == NYXQ_OK ? Status() : Status::failure(status); }

/// Result<T> of a C call: `make()` builds the value only after success.
template <class T, class Make>
Result<T> result_of(NyxqStatus status, Make &&make) {
  if (status != NYXQ_OK) return Result<T>::failure(status);
  return Result<T>(make());
}

/// A C string argument: NULL for an empty optional.
inline const char *c_str_or_null(const std::string &s) { return s.empty() ? nullptr : s.c_str(); }

/// The checkpoint bytes of `object`: its size by `size_of`, then `save`.
template <class H>
Result<std::vector<uint8_t>> checkpoint_of(const H *object, NyxqStatus (*size_of)(const H *, size_t *),
                                           NyxqStatus (*save)(const H *, uint8_t *, size_t)) {
  size_t size = 0;
  const NyxqStatus sized = size_of(object, &size);
  if (sized != NYXQ_OK) return Result<std::vector<uint8_t>>::failure(sized);
  std::vector<uint8_t> bytes(size);
  return result_of<std::vector<uint8_t>>(save(object, bytes.data(), bytes.size()),
                                         [&] { return std::move(bytes); });
}

/// The move-only owner of one handle `H`, released with `Destroy` exactly once.
template <class H, NyxqStatus (*Destroy)(H *)>
class Owner {
 public:
  /// An empty owner.
  Owner() noexcept = default;
  /// Takes ownership of `handle` (NULL gives an empty owner).
  explicit Owner(H *handle) noexcept : handle_(handle) {}
  Owner(const Owner &) = delete;
  Owner &operator=(const Owner &) = delete;
  /// Takes the handle of `other`, which becomes empty.
  Owner(Owner &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  /// Destroys the current handle, then takes the one of `other`, which becomes empty.
  Owner &operator=(Owner &&other) noexcept {
    if (this != &other) reset(std::exchange(other.handle_, nullptr));
    return *this;
  }
  /// Destroys the handle, if any.
  ~Owner() { reset(); }

  /// The C handle (NULL when empty); the owner keeps it.
  H *get() const noexcept { return handle_; }
  /// Gives up the C handle without destroying it; the caller destroys it.
  H *release() noexcept { return std::exchange(handle_, nullptr); }
  /// Destroys the current handle, if any, and takes `handle`.
  void reset(H *handle = nullptr) noexcept {
    // A status other than NYXQ_OK can only be NYXQ_ERROR_INVALID_HANDLE for a
    // handle destroyed behind the owner's back: nothing is left to release.
    if (H *old = std::exchange(handle_, handle)) (void)Destroy(old);
  }
  /// True when the owner holds a handle.
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  H *handle_ = nullptr;
};

}  // namespace detail

// ------------------------------------------------------------- library ----

/// The library's version, "MAJOR.MINOR.PATCH" (static; nyxq_version_string).
inline const char *version_string() noexcept { return nyxq_version_string(); }
/// The ABI version of the library; compare it with NYXQ_ABI_VERSION (nyxq_abi_version).
inline uint32_t abi_version() noexcept { return nyxq_abi_version(); }
/// A status in words (static; nyxq_status_str).
inline const char *status_str(NyxqStatus status) noexcept { return nyxq_status_str(status); }

// -------------------------------------------------------------- strings ----

/// A NUL-terminated string nyxq returned (plan explanation, JSON, config
/// warnings), released with nyxq_string_destroy.
class String : public detail::Owner<char, nyxq_string_destroy> {
 public:
  using Owner::Owner;
  /// The text; "" for an empty owner. Valid while the owner holds it.
  const char *c_str() const noexcept { return get() != nullptr ? get() : ""; }
  /// The text as a view; valid while the owner holds it.
  std::string_view view() const noexcept { return c_str(); }
  /// A copy of the text.
  std::string str() const { return c_str(); }
};

// -------------------------------------------------------------- formats ----

/// A format's description (nyxq_format_info); `name` and `precision_level` are static.
using FormatInfo = NyxqFormatInfo;
/// Error metrics of a quantized tensor against its original (nyxq_quant_error).
using ErrorMetrics = NyxqErrorMetrics;

/// Describes `format` (nyxq_format_info). Thread-safe.
inline Result<FormatInfo> try_format_info(Format format) {
  FormatInfo info{};
  return detail::result_of<FormatInfo>(nyxq_format_info(to_c(format), &info), [&] { return info; });
}
/// Throwing form of try_format_info.
inline FormatInfo format_info(Format format) { return try_format_info(format).value(); }

/// Bytes that `n` elements take in `format` (nyxq_quantized_size); `n` must be
/// whole blocks. Thread-safe.
inline Result<size_t> try_quantized_size(Format format, size_t n) {
  size_t bytes = 0;
  return detail::result_of<size_t>(nyxq_quantized_size(to_c(format), n, &bytes), [&] { return bytes; });
}
/// Throwing form of try_quantized_size.
inline size_t quantized_size(Format format, size_t n) { return try_quantized_size(format, n).value(); }

/// Bytes of a device buffer range holding `n` elements in `format`, rounded up
/// to whole 32-bit words (nyxq_device_range_size). Thread-safe.
inline Result<size_t> try_device_range_size(Format format, size_t n) {
  size_t bytes = 0;
  return detail::result_of<size_t>(nyxq_device_range_size(to_c(format), n, &bytes), [&] { return bytes; });
}
/// Throwing form of try_device_range_size.
inline size_t device_range_size(Format format, size_t n) { return try_device_range_size(format, n).value(); }

/// How far `quantized` (whole blocks of `format`) is from `original`
/// (nyxq_quant_error). Thread-safe.
inline Result<ErrorMetrics> try_quant_error(Format format, Span<const float> original, Span<const uint8_t> quantized) {
  ErrorMetrics metrics{};
  return detail::result_of<ErrorMetrics>(
      nyxq_quant_error(to_c(format), original.data(), original.size(), quantized.data(), quantized.size(), &metrics),
      [&] { return metrics; });
}
/// Throwing form of try_quant_error.
inline ErrorMetrics quant_error(Format format, Span<const float> original, Span<const uint8_t> quantized) {
  return try_quant_error(format, original, quantized).value();
}

// -------------------------------------------------------------- options ----

/// Options for quantizing (NyxqQuantizeOptions), starting from the library's
/// defaults: nearest rounding, NaN/Inf rejected, seed 0, first index 0, no
/// importance.
class QuantizeOptions {
 public:
  /// The defaults (nyxq_quantize_options_default).
  QuantizeOptions() noexcept { (void)nyxq_quantize_options_default(&options_); }
  /// The rounding mode.
  QuantizeOptions &rounding(Rounding value) noexcept {
    options_.rounding = to_c(value);
    return *this;
  }
  /// What happens to NaN, ±Inf and out-of-range values.
  QuantizeOptions &non_finite(NonFinite value) noexcept {
    options_.non_finite = to_c(value);
    return *this;
  }
  /// The seed of stochastic rounding.
  QuantizeOptions &seed(uint64_t value) noexcept {
    options_.seed = value;
    return *this;
  }
  /// Index of the first element within the whole tensor (stochastic rounding of a slice).
  QuantizeOptions &first_index(uint64_t value) noexcept {
    options_.first_index = value;
    return *this;
  }
  /// Per-column importance for error-minimising rounding; the view (not a
  /// copy) is kept, so the floats must outlive the calls that use these options.
  QuantizeOptions &importance(Span<const float> value) noexcept {
    options_.importance = value.data();
    options_.importance_len = value.size();
    return *this;
  }
  /// The C struct, struct_size set; change any field through it.
  NyxqQuantizeOptions &raw() noexcept { return options_; }
  /// The C struct to pass to the C API.
  const NyxqQuantizeOptions *c() const noexcept { return &options_; }

 private:
  NyxqQuantizeOptions options_;
};

/// Options for creating a context (NyxqContextOptions), starting from the
/// library's defaults: AUTO backend, no logging, one thread per core, no config.
class ContextOptions {
 public:
  /// The defaults (nyxq_context_options_default).
  ContextOptions() noexcept { (void)nyxq_context_options_default(&options_); }
  /// The backend.
  ContextOptions &backend(Backend value) noexcept {
    options_.backend = to_c(value);
    return *this;
  }
  /// The log level.
  ContextOptions &log_level(LogLevel value) noexcept {
    options_.log_level = to_c(value);
    return *this;
  }
  /// Worker threads; 0 means one per core.
  ContextOptions &thread_count(uint32_t value) noexcept {
    options_.thread_count = value;
    return *this;
  }
  /// The trainer's INI config, whose [quantization] section the context
  /// reads and validates at creation; "" for none. Copied.
  ContextOptions &config_path(std::string value) {
    config_path_ = std::move(value);
    return *this;
  }
  /// The Vulkan loader library to open instead of libvulkan.so.1; "" for the default. Copied.
  ContextOptions &vulkan_loader_path(std::string value) {
    vulkan_loader_path_ = std::move(value);
    return *this;
  }
  /// Turns the Khronos validation layer on or off.
  ContextOptions &vulkan_validation(bool value) noexcept {
    options_.vulkan_validation = value ? 1 : 0;
    return *this;
  }
  /// Uses only the compatible shader variants.
  ContextOptions &vulkan_force_compat(bool value) noexcept {
    options_.vulkan_force_compat = value ? 1 : 0;
    return *this;
  }
  /// Lets a failed device allocation fall back to host memory.
  ContextOptions &vulkan_host_fallback(bool value) noexcept {
    options_.vulkan_host_fallback = value ? 1 : 0;
    return *this;
  }
  /// Fault injection for tests: the Nth device allocation fails; 0 is off.
  ContextOptions &vulkan_fail_allocation(uint64_t value) noexcept {
    options_.vulkan_fail_allocation = value;
    return *this;
  }
  /// The C struct, struct_size set; its string fields are ignored (use the setters).
  NyxqContextOptions &raw() noexcept { return options_; }
  /// The C struct to pass to the C API; its strings point into this object.
  NyxqContextOptions c() const noexcept {
    NyxqContextOptions options = options_;
    options.config_path = detail::c_str_or_null(config_path_);
    options.vulkan_loader_path = detail::c_str_or_null(vulkan_loader_path_);
    return options;
  }

 private:
  NyxqContextOptions options_;
  std::string config_path_;
  std::string vulkan_loader_path_;
};

/// Planning policy (NyxqPlanPolicy), starting from the library's defaults;
/// also what Config::policy and Context::plan_policy return.
class PlanPolicy {
 public:
  /// The defaults (nyxq_plan_policy_default).
  PlanPolicy() noexcept { (void)nyxq_plan_policy_default(&policy_); }
  /// A policy from a C struct (its `overrides` string is copied).
  explicit PlanPolicy(const NyxqPlanPolicy &policy) : policy_(policy) {
    if (policy.overrides != nullptr) overrides_ = policy.overrides;
    policy_.overrides = nullptr;
  }
  /// Allowed formats, a set of format_bit() values.
  PlanPolicy &allowed_formats(uint32_t bits) noexcept {
    policy_.allowed_formats = bits;
    return *this;
  }
  /// Least SNR of every tensor, in dB.
  PlanPolicy &min_snr_db(double value) noexcept {
    policy_.min_snr_db = value;
    return *this;
  }
  /// Training (gradients, optimizer state, activation reserve) or inference.
  PlanPolicy &training(bool value) noexcept {
    policy_.training = value ? 1 : 0;
    return *this;
  }
  /// How optimizer state is stored.
  PlanPolicy &optimizer_state(OptimizerState value) noexcept {
    policy_.optimizer_state = to_c(value);
    return *this;
  }
  /// The gradients' format: F32, F16 or BF16.
  PlanPolicy &gradient_format(Format value) noexcept {
    policy_.gradient_format = to_c(value);
    return *this;
  }
  /// Cap on the device bytes the plan may use; 0 = none.
  PlanPolicy &device_cap_bytes(uint64_t value) noexcept {
    policy_.device_cap_bytes = value;
    return *this;
  }
  /// Preferred format for every role.
  PlanPolicy &default_format(Format value) noexcept {
    policy_.default_format = to_c(value);
    return *this;
  }
  /// Preferred format for one role.
  PlanPolicy &role_format(Role role, Format value) noexcept {
    policy_.role_formats[to_c(role)] = to_c(value);
    return *this;
  }
  /// Overrides "regex=format,regex=format" (llama.cpp's --tensor-type); "" for none. Copied.
  PlanPolicy &overrides(std::string value) {
    overrides_ = std::move(value);
    return *this;
  }
  /// The C struct, struct_size set; change any other field through it. Its
  /// `overrides` field is ignored (use the setter).
  NyxqPlanPolicy &raw() noexcept { return policy_; }
  /// The C struct, read-only.
  const NyxqPlanPolicy &raw() const noexcept { return policy_; }
  /// The C struct to pass to the C API; `overrides` points into this object.
  NyxqPlanPolicy c() const noexcept {
    NyxqPlanPolicy policy = policy_;
    policy.overrides = detail::c_str_or_null(overrides_);
    return policy;
  }

 private:
  NyxqPlanPolicy policy_;
  std::string overrides_;
};

/// Options for a loss scaler (NyxqLossScalerOptions), starting from the
/// library's defaults (GradScaler's: 65536, ×2 after 2000 steps, ×0.5, floor 1).
class LossScalerOptions {
 public:
  /// The defaults (nyxq_loss_scaler_options_default).
  LossScalerOptions() noexcept { (void)nyxq_loss_scaler_options_default(&options_); }
  /// Starting scale.
  LossScalerOptions &initial_scale(float value) noexcept {
    options_.initial_scale = value;
    return *this;
  }
  /// Factor after growth_interval finite steps in a row (> 1).
  LossScalerOptions &growth_factor(float value) noexcept {
    options_.growth_factor = value;
    return *this;
  }
  /// Factor on a non-finite gradient (in (0, 1)).
  LossScalerOptions &backoff_factor(float value) noexcept {
    options_.backoff_factor = value;
    return *this;
  }
  /// Finite steps in a row before growing (>= 1).
  LossScalerOptions &growth_interval(uint32_t value) noexcept {
    options_.growth_interval = value;
    return *this;
  }
  /// The floor of the scale (> 0).
  LossScalerOptions &min_scale(float value) noexcept {
    options_.min_scale = value;
    return *this;
  }
  /// True to scale (FP16 training), false to only check (BF16 training).
  LossScalerOptions &enabled(bool value) noexcept {
    options_.enabled = value ? 1 : 0;
    return *this;
  }
  /// The C struct, struct_size set.
  NyxqLossScalerOptions &raw() noexcept { return options_; }
  /// The C struct to pass to the C API.
  const NyxqLossScalerOptions *c() const noexcept { return &options_; }

 private:
  NyxqLossScalerOptions options_;
};

/// Options for Adam (NyxqAdamOptions), starting from the library's defaults:
/// betas 0.9 and 0.999, eps 1e-8, no weight decay, FP32 state.
class AdamOptions {
 public:
  /// The defaults (nyxq_adam_options_default).
  AdamOptions() noexcept { (void)nyxq_adam_options_default(&options_); }
  /// First-moment decay.
  AdamOptions &beta1(float value) noexcept {
    options_.beta1 = value;
    return *this;
  }
  /// Second-moment decay.
  AdamOptions &beta2(float value) noexcept {
    options_.beta2 = value;
    return *this;
  }
  /// Denominator epsilon.
  AdamOptions &eps(float value) noexcept {
    options_.eps = value;
    return *this;
  }
  /// Decoupled (AdamW) weight decay.
  AdamOptions &weight_decay(float value) noexcept {
    options_.weight_decay = value;
    return *this;
  }
  /// How the moments are stored.
  AdamOptions &state(AdamState value) noexcept {
    options_.state = to_c(value);
    return *this;
  }
  /// The C struct, struct_size set.
  NyxqAdamOptions &raw() noexcept { return options_; }
  /// The C struct to pass to the C API.
  const NyxqAdamOptions *c() const noexcept { return &options_; }

 private:
  NyxqAdamOptions options_;
};

// ------------------------------------------------------------- hardware ----

/// What the planner knows about a machine (NyxqHardware); change fields freely.
using Hardware = NyxqHardware;

/// Number of built-in hardware profiles (nyxq_hardware_profile_count). Thread-safe.
inline Result<size_t> try_hardware_profile_count() {
  size_t count = 0;
  return detail::result_of<size_t>(nyxq_hardware_profile_count(&count), [&] { return count; });
}
/// Throwing form of try_hardware_profile_count.
inline size_t hardware_profile_count() { return try_hardware_profile_count().value(); }

/// Built-in profile number `index` (nyxq_hardware_profile_at). Thread-safe.
inline Result<Hardware> try_hardware_profile_at(size_t index) {
  Hardware hardware{};
  return detail::result_of<Hardware>(nyxq_hardware_profile_at(index, &hardware), [&] { return hardware; });
}
/// Throwing form of try_hardware_profile_at.
inline Hardware hardware_profile_at(size_t index) { return try_hardware_profile_at(index).value(); }

/// The built-in profile named `name` ("nvidia-h200-141gb", "cpu-only", ...;
/// nyxq_hardware_profile). Thread-safe.
inline Result<Hardware> try_hardware_profile(const std::string &name) {
  Hardware hardware{};
  return detail::result_of<Hardware>(nyxq_hardware_profile(name.c_str(), &hardware), [&] { return hardware; });
}
/// Throwing form of try_hardware_profile.
inline Hardware hardware_profile(const std::string &name) { return try_hardware_profile(name).value(); }

/// A hardware profile file (JSON; nyxq_hardware_load). Thread-safe.
inline Result<Hardware> try_hardware_load(const std::string &path) {
  Hardware hardware{};
  return detail::result_of<Hardware>(nyxq_hardware_load(path.c_str(), &hardware), [&] { return hardware; });
}
/// Throwing form of try_hardware_load.
inline Hardware hardware_load(const std::string &path) { return try_hardware_load(path).value(); }

// --------------------------------------------------------------- config ----

/// A parsed [quantization] section (NyxqConfig), released with
/// nyxq_config_destroy. Immutable: any thread may use it at once.
class Config : public detail::Owner<NyxqConfig, nyxq_config_destroy> {
 public:
  using Owner::Owner;

  /// Reads the [quantization] section of the INI file at `path`
  /// (nyxq_config_load; NYXQ_ERROR_IO, NYXQ_ERROR_CONFIG with "file:line: reason").
  static Result<Config> try_load(const std::string &path) {
    NyxqConfig *config = nullptr;
    return detail::result_of<Config>(nyxq_config_load(path.c_str(), &config), [&] { return Config(config); });
  }
  /// Throwing form of try_load.
  static Config load(const std::string &path) { return try_load(path).value(); }

  /// Parses INI `text`; `origin` names it in messages (nyxq_config_parse).
  static Result<Config> try_parse(const std::string &text, const std::string &origin) {
    NyxqConfig *config = nullptr;
    return detail::result_of<Config>(nyxq_config_parse(text.c_str(), origin.c_str(), &config),
                                     [&] { return Config(config); });
  }
  /// Throwing form of try_parse.
  static Config parse(const std::string &text, const std::string &origin) { return try_parse(text, origin).value(); }

  /// The planning policy the config asks for, for training or inference (nyxq_config_policy).
  Result<PlanPolicy> try_policy(bool training) const {
    NyxqPlanPolicy policy{};
    return detail::result_of<PlanPolicy>(nyxq_config_policy(get(), training ? 1 : 0, &policy),
                                         [&] { return PlanPolicy(policy); });
  }
  /// Throwing form of try_policy.
  PlanPolicy policy(bool training) const { return try_policy(training).value(); }

  /// The config's warnings, one per line ("file:line: what and why"), or ""
  /// (nyxq_config_warnings).
  Result<String> try_warnings() const {
    char *text = nullptr;
    return detail::result_of<String>(nyxq_config_warnings(get(), &text), [&] { return String(text); });
  }
  /// Throwing form of try_warnings.
  String warnings() const { return try_warnings().value(); }
};

// --------------------------------------------------------------- tensor ----

/// A tensor's description (nyxq_tensor_info); `name` is valid until the tensor is destroyed.
using TensorInfo = NyxqTensorInfo;
/// One chunk of a DEVICE tensor's bytes (nyxq_tensor_vk_buffer).
using VkTensorBuffer = NyxqVkTensorBuffer;

/// A quantized tensor owned by nyxq (NyxqTensor), released with
/// nyxq_tensor_destroy. Made by Context::create_tensor. Calls may come from
/// several threads; migrate() and destruction need it to themselves.
class Tensor : public detail::Owner<NyxqTensor, nyxq_tensor_destroy> {
 public:
  using Owner::Owner;

  /// Quantizes `src` (exactly the element count) into the tensor
  /// (nyxq_tensor_upload); on error the tensor keeps its bytes.
  Status try_upload(Span<const float> src, const QuantizeOptions &options = QuantizeOptions()) {
    return detail::status_of(nyxq_tensor_upload(get(), src.data(), src.size(), options.c()));
  }
  /// Throwing form of try_upload.
  void upload(Span<const float> src, const QuantizeOptions &options = QuantizeOptions()) {
    try_upload(src, options).value();
  }

  /// Dequantizes the whole tensor into `dst` (at least the element count;
  /// nyxq_tensor_download).
  Status try_download(Span<float> dst) const {
    return detail::status_of(nyxq_tensor_download(get(), dst.data(), dst.size()));
  }
  /// Throwing form of try_download.
  void download(Span<float> dst) const { try_download(dst).value(); }

  /// A read-only view of a HOST tensor's quantized bytes (nyxq_tensor_data),
  /// valid until the tensor is destroyed or migrated.
  Result<Span<const uint8_t>> try_data() const {
    const void *data = nullptr;
    size_t len = 0;
    return detail::result_of<Span<const uint8_t>>(nyxq_tensor_data(get(), &data, &len), [&] {
      return Span<const uint8_t>(static_cast<const uint8_t *>(data), len);
    });
  }
  /// Throwing form of try_data.
  Span<const uint8_t> data() const { return try_data().value(); }

  /// A new tensor with this one's values in `format` (nyxq_tensor_convert).
  Result<Tensor> try_convert(Format format, const QuantizeOptions &options = QuantizeOptions()) const {
    NyxqTensor *tensor = nullptr;
    return detail::result_of<Tensor>(nyxq_tensor_convert(get(), to_c(format), options.c(), &tensor),
                                     [&] { return Tensor(tensor); });
  }
  /// Throwing form of try_convert.
  Tensor convert(Format format, const QuantizeOptions &options = QuantizeOptions()) const {
    return try_convert(format, options).value();
  }

  /// Name, format, shape, element count and bytes (nyxq_tensor_info).
  Result<TensorInfo> try_info() const {
    TensorInfo info{};
    return detail::result_of<TensorInfo>(nyxq_tensor_info(get(), &info), [&] { return info; });
  }
  /// Throwing form of try_info.
  TensorInfo info() const { return try_info().value(); }

  /// Where the tensor's bytes are now (nyxq_tensor_placement).
  Result<Placement> try_placement() const {
    int32_t placement = 0;
    return detail::result_of<Placement>(nyxq_tensor_placement(get(), &placement),
                                        [&] { return from_c<Placement>(placement); });
  }
  /// Throwing form of try_placement.
  Placement placement() const { return try_placement().value(); }

  /// Moves the tensor's bytes to `placement` (nyxq_tensor_migrate). No other
  /// call may be using the tensor.
  Status try_migrate(Placement placement) {
    return detail::status_of(nyxq_tensor_migrate(get(), to_c(placement)));
  }
  /// Throwing form of try_migrate.
  void migrate(Placement placement) { try_migrate(placement).value(); }

  /// Chunk `index` of a DEVICE tensor's VkBuffers (nyxq_tensor_vk_buffer).
  Result<VkTensorBuffer> try_vk_buffer(uint64_t index) const {
    VkTensorBuffer buffer{};
    return detail::result_of<VkTensorBuffer>(nyxq_tensor_vk_buffer(get(), index, &buffer), [&] { return buffer; });
  }
  /// Throwing form of try_vk_buffer.
  VkTensorBuffer vk_buffer(uint64_t index) const { return try_vk_buffer(index).value(); }
};

// --------------------------------------------------------- loss scaler ----

/// What LossScaler::unscale_and_check found in one gradient buffer.
struct UnscaleCheck {
  bool found_non_finite;    ///< The buffer held NaN or ±Inf after unscaling.
  int64_t first_bad_index;  ///< The first such element, or -1.
};

/// A dynamic loss scaler with PyTorch GradScaler semantics (NyxqLossScaler),
/// released with nyxq_loss_scaler_destroy. Calls must not overlap.
class LossScaler : public detail::Owner<NyxqLossScaler, nyxq_loss_scaler_destroy> {
 public:
  using Owner::Owner;

  /// A scaler with `options` (nyxq_loss_scaler_create).
  static Result<LossScaler> try_create(const LossScalerOptions &options = LossScalerOptions()) {
    NyxqLossScaler *scaler = nullptr;
    return detail::result_of<LossScaler>(nyxq_loss_scaler_create(options.c(), &scaler),
                                         [&] { return LossScaler(scaler); });
  }
  /// Throwing form of try_create.
  static LossScaler create(const LossScalerOptions &options = LossScalerOptions()) {
    return try_create(options).value();
  }

  /// The factor to multiply this step's loss by (nyxq_loss_scaler_scale).
  Result<float> try_scale() const {
    float scale = 0;
    return detail::result_of<float>(nyxq_loss_scaler_scale(get(), &scale), [&] { return scale; });
  }
  /// Throwing form of try_scale.
  float scale() const { return try_scale().value(); }

  /// Unscales one gradient buffer in place and checks it for Inf/NaN
  /// (nyxq_loss_scaler_unscale_and_check); once per buffer of the step.
  Result<UnscaleCheck> try_unscale_and_check(Span<float> grads) {
    uint32_t found = 0;
    int64_t first_bad = -1;
    return detail::result_of<UnscaleCheck>(
        nyxq_loss_scaler_unscale_and_check(get(), grads.data(), grads.size(), &found, &first_bad),
        [&] { return UnscaleCheck{found != 0, first_bad}; });
  }
  /// Throwing form of try_unscale_and_check.
  UnscaleCheck unscale_and_check(Span<float> grads) { return try_unscale_and_check(grads).value(); }

  /// Reports what a check made elsewhere (on the device) found
  /// (nyxq_loss_scaler_report_non_finite).
  Status try_report_non_finite(bool found_non_finite) {
    return detail::status_of(nyxq_loss_scaler_report_non_finite(get(), found_non_finite ? 1 : 0));
  }
  /// Throwing form of try_report_non_finite.
  void report_non_finite(bool found_non_finite) { try_report_non_finite(found_non_finite).value(); }

  /// Ends the step: true when the optimizer step applies, false when it is
  /// skipped (nyxq_loss_scaler_update). NYXQ_ERROR_LOSS_SCALE_UNDERFLOW when a
  /// gradient was non-finite at the floor (skip the step).
  Result<bool> try_update() {
    uint32_t apply = 0;
    return detail::result_of<bool>(nyxq_loss_scaler_update(get(), &apply), [&] { return apply != 0; });
  }
  /// Throwing form of try_update.
  bool update() { return try_update().value(); }

  /// The scaler's state as checkpoint bytes (nyxq_loss_scaler_save).
  Result<std::vector<uint8_t>> try_save() const {
    return detail::checkpoint_of(get(), nyxq_loss_scaler_save_size, nyxq_loss_scaler_save);
  }
  /// Throwing form of try_save.
  std::vector<uint8_t> save() const { return try_save().value(); }
  /// Restores a state from try_save's bytes into a scaler made with the same
  /// options (nyxq_loss_scaler_load); nothing changes on error.
  Status try_load(Span<const uint8_t> bytes) {
    return detail::status_of(nyxq_loss_scaler_load(get(), bytes.data(), bytes.size()));
  }
  /// Throwing form of try_load.
  void load(Span<const uint8_t> bytes) { try_load(bytes).value(); }
};

// ----------------------------------------------------------------- adam ----

/// Bytes of optimizer state (Adam::state_bytes).
struct AdamStateBytes {
  size_t bytes;       ///< Held now.
  size_t fp32_bytes;  ///< What FP32 Adam would hold (8 per parameter).
};

/// Adam(W) state for one parameter tensor (NyxqAdam), released with
/// nyxq_adam_destroy. Calls on one Adam must not overlap.
class Adam : public detail::Owner<NyxqAdam, nyxq_adam_destroy> {
 public:
  using Owner::Owner;

  /// State for a tensor of `n` parameters (nyxq_adam_create).
  static Result<Adam> try_create(size_t n, const AdamOptions &options = AdamOptions()) {
    NyxqAdam *adam = nullptr;
    return detail::result_of<Adam>(nyxq_adam_create(options.c(), n, &adam), [&] { return Adam(adam); });
  }
  /// Throwing form of try_create.
  static Adam create(size_t n, const AdamOptions &options = AdamOptions()) { return try_create(n, options).value(); }

  /// One step at learning rate `lr`: updates `params` in place from `grads`
  /// (nyxq_adam_step); on error nothing is updated.
  Status try_step(float lr, Span<float> params, Span<const float> grads) {
    return detail::status_of(nyxq_adam_step(get(), lr, params.data(), params.size(), grads.data(), grads.size()));
  }
  /// Throwing form of try_step.
  void step(float lr, Span<float> params, Span<const float> grads) { try_step(lr, params, grads).value(); }

  /// Bytes of state held and what FP32 state would take (nyxq_adam_state_bytes).
  Result<AdamStateBytes> try_state_bytes() const {
    size_t bytes = 0, fp32_bytes = 0;
    return detail::result_of<AdamStateBytes>(nyxq_adam_state_bytes(get(), &bytes, &fp32_bytes),
                                             [&] { return AdamStateBytes{bytes, fp32_bytes}; });
  }
  /// Throwing form of try_state_bytes.
  AdamStateBytes state_bytes() const { return try_state_bytes().value(); }

  /// The optimizer's state as checkpoint bytes (nyxq_adam_save), which a
  /// host or a device optimizer loads.
  Result<std::vector<uint8_t>> try_save() const {
    return detail::checkpoint_of(get(), nyxq_adam_save_size, nyxq_adam_save);
  }
  /// Throwing form of try_save.
  std::vector<uint8_t> save() const { return try_save().value(); }
  /// Restores a state saved by a host or device optimizer with the same
  /// options and size (nyxq_adam_load); nothing changes on error.
  Status try_load(Span<const uint8_t> bytes) {
    return detail::status_of(nyxq_adam_load(get(), bytes.data(), bytes.size()));
  }
  /// Throwing form of try_load.
  void load(Span<const uint8_t> bytes) { try_load(bytes).value(); }
};

// ------------------------------------------------------------ planning ----

/// A plan's totals (nyxq_plan_summary).
using PlanSummary = NyxqPlanSummary;
/// One tensor's line of a plan (nyxq_plan_entries); strings valid until the plan is destroyed.
using PlanEntry = NyxqPlanEntry;
/// Whether a model fits (nyxq_plan_feasibility).
using PlanFeasibility = NyxqPlanFeasibility;

/// A model description being built (NyxqModel), released with
/// nyxq_model_destroy. Calls may come from several threads; they are serialised.
class Model : public detail::Owner<NyxqModel, nyxq_model_destroy> {
 public:
  using Owner::Owner;

  /// An empty model named `name` (nyxq_model_create).
  static Result<Model> try_create(const std::string &name) {
    NyxqModel *model = nullptr;
    return detail::result_of<Model>(nyxq_model_create(name.c_str(), &model), [&] { return Model(model); });
  }
  /// Throwing form of try_create.
  static Model create(const std::string &name) { return try_create(name).value(); }

  /// A JSON model description read from `path` (nyxq_model_load).
  static Result<Model> try_load(const std::string &path) {
    NyxqModel *model = nullptr;
    return detail::result_of<Model>(nyxq_model_load(path.c_str(), &model), [&] { return Model(model); });
  }
  /// Throwing form of try_load.
  static Model load(const std::string &path) { return try_load(path).value(); }

  /// Adds a tensor (nyxq_model_add_tensor): unique `name`, `role`, `shape`
  /// (outermost first), `sensitivity` (< 0 for the role's default) and
  /// optionally its FP32 `data` (exactly the element count), from which the
  /// error of every format is measured during the call.
  Status try_add_tensor(const std::string &name, Role role, Span<const uint64_t> shape, double sensitivity = -1.0,
                        Span<const float> data = {}) {
    return detail::status_of(nyxq_model_add_tensor(get(), name.c_str(), to_c(role), shape.data(), shape.size(),
                                                   sensitivity, data.data(), data.size()));
  }
  /// Throwing form of try_add_tensor.
  void add_tensor(const std::string &name, Role role, Span<const uint64_t> shape, double sensitivity = -1.0,
                  Span<const float> data = {}) {
    try_add_tensor(name, role, shape, sensitivity, data).value();
  }
};

/// A finished plan (NyxqPlan), released with nyxq_plan_destroy. Immutable:
/// any thread may read it at once.
class Plan : public detail::Owner<NyxqPlan, nyxq_plan_destroy> {
 public:
  using Owner::Owner;

  /// Plans `model` for the host's memory under `policy` (nyxq_plan_create
  /// with NULL hardware).
  static Result<Plan> try_create(const Model &model, const PlanPolicy &policy = PlanPolicy()) {
    return create_with(model, nullptr, policy);
  }
  /// Plans `model` for `hardware` under `policy` (nyxq_plan_create).
  static Result<Plan> try_create(const Model &model, const Hardware &hardware, const PlanPolicy &policy = PlanPolicy()) {
    return create_with(model, &hardware, policy);
  }
  /// Throwing form of try_create.
  static Plan create(const Model &model, const PlanPolicy &policy = PlanPolicy()) {
    return try_create(model, policy).value();
  }
  /// Throwing form of try_create.
  static Plan create(const Model &model, const Hardware &hardware, const PlanPolicy &policy = PlanPolicy()) {
    return try_create(model, hardware, policy).value();
  }

  /// Whether `model` fits `hardware` under `policy`, without keeping a plan
  /// (nyxq_plan_feasibility); infeasibility is a result, not an error.
  static Result<PlanFeasibility> try_feasibility(const Model &model, const Hardware &hardware,
                                                 const PlanPolicy &policy = PlanPolicy()) {
    return feasibility_with(model, &hardware, policy);
  }
  /// Whether `model` fits the host's memory under `policy` (nyxq_plan_feasibility with NULL hardware).
  static Result<PlanFeasibility> try_feasibility(const Model &model, const PlanPolicy &policy = PlanPolicy()) {
    return feasibility_with(model, nullptr, policy);
  }
  /// Throwing form of try_feasibility.
  static PlanFeasibility feasibility(const Model &model, const Hardware &hardware,
                                     const PlanPolicy &policy = PlanPolicy()) {
    return try_feasibility(model, hardware, policy).value();
  }
  /// Throwing form of try_feasibility.
  static PlanFeasibility feasibility(const Model &model, const PlanPolicy &policy = PlanPolicy()) {
    return try_feasibility(model, policy).value();
  }

  /// A new plan fitting `new_device_budget` bytes with the fewest tensors
  /// changed (nyxq_plan_replan); this plan is unchanged.
  Result<Plan> try_replan(uint64_t new_device_budget) const {
    NyxqPlan *plan = nullptr;
    return detail::result_of<Plan>(nyxq_plan_replan(get(), new_device_budget, &plan), [&] { return Plan(plan); });
  }
  /// Throwing form of try_replan.
  Plan replan(uint64_t new_device_budget) const { return try_replan(new_device_budget).value(); }

  /// The plan's totals (nyxq_plan_summary).
  Result<PlanSummary> try_summary() const {
    PlanSummary summary{};
    return detail::result_of<PlanSummary>(nyxq_plan_summary(get(), &summary), [&] { return summary; });
  }
  /// Throwing form of try_summary.
  PlanSummary summary() const { return try_summary().value(); }

  /// Every entry, in model order (nyxq_plan_entries); strings valid until the
  /// plan is destroyed.
  Result<std::vector<PlanEntry>> try_entries() const {
    Result<PlanSummary> summary = try_summary();
    if (!summary.ok()) return Result<std::vector<PlanEntry>>::failure(summary.status());
    std::vector<PlanEntry> entries(summary.value().tensor_count);
    return detail::result_of<std::vector<PlanEntry>>(nyxq_plan_entries(get(), entries.data(), entries.size()),
                                                     [&] { return std::move(entries); });
  }
  /// Throwing form of try_entries.
  std::vector<PlanEntry> entries() const { return try_entries().value(); }

  /// The plan as text: tensors, totals, notes and reasons (nyxq_plan_explain).
  Result<String> try_explain() const {
    char *text = nullptr;
    return detail::result_of<String>(nyxq_plan_explain(get(), &text), [&] { return String(text); });
  }
  /// Throwing form of try_explain.
  String explain() const { return try_explain().value(); }

  /// The plan as JSON (nyxq_plan_to_json).
  Result<String> try_to_json() const {
    char *json = nullptr;
    return detail::result_of<String>(nyxq_plan_to_json(get(), &json), [&] { return String(json); });
  }
  /// Throwing form of try_to_json.
  String to_json() const { return try_to_json().value(); }

 private:
  static Result<PlanFeasibility> feasibility_with(const Model &model, const Hardware *hardware,
                                                  const PlanPolicy &policy) {
    const NyxqPlanPolicy c_policy = policy.c();
    PlanFeasibility result{};
    return detail::result_of<PlanFeasibility>(nyxq_plan_feasibility(model.get(), hardware, &c_policy, &result),
                                              [&] { return result; });
  }
  static Result<Plan> create_with(const Model &model, const Hardware *hardware, const PlanPolicy &policy) {
    const NyxqPlanPolicy c_policy = policy.c();
    NyxqPlan *plan = nullptr;
    return detail::result_of<Plan>(nyxq_plan_create(model.get(), hardware, &c_policy, &plan),
                                   [&] { return Plan(plan); });
  }
};

// -------------------------------------------------------------- context ----

/// What a context runs on (nyxq_context_info).
using ContextInfo = NyxqContextInfo;
/// Facts about a context's Vulkan device (nyxq_context_device_info).
using DeviceInfo = NyxqDeviceInfo;
/// What a context may use now and what it uses (nyxq_context_memory_status).
using MemoryStatus = NyxqMemoryStatus;
/// The caller's Vulkan objects (Context::create_vulkan_borrowed); struct_size is set for you.
using VulkanHandles = NyxqVulkanHandles;
/// A range of one of the caller's VkBuffers (the vk_cmd_* calls).
using VkBufferRange = NyxqVkBufferRange;
/// What a context's recorder holds (nyxq_vk_recorder_usage).
using VkRecorderUsage = NyxqVkRecorderUsage;

class VkAdam;

/// A working context: the backend and its settings (NyxqContext), released
/// with nyxq_context_destroy. May be used from several threads at once;
/// tensors made from it stay usable after it is destroyed; command buffers
/// holding its recorded dispatches must have completed before.
class Context : public detail::Owner<NyxqContext, nyxq_context_destroy> {
 public:
  using Owner::Owner;

  /// A context with `options` (nyxq_context_create).
  static Result<Context> try_create(const ContextOptions &options = ContextOptions()) {
    const NyxqContextOptions c_options = options.c();
    NyxqContext *ctx = nullptr;
    return detail::result_of<Context>(nyxq_context_create(&c_options, &ctx), [&] { return Context(ctx); });
  }
  /// A context on `backend`, other options default.
  static Result<Context> try_create(Backend backend) { return try_create(ContextOptions().backend(backend)); }
  /// Throwing form of try_create.
  static Context create(const ContextOptions &options = ContextOptions()) { return try_create(options).value(); }
  /// Throwing form of try_create.
  static Context create(Backend backend) { return try_create(backend).value(); }

  /// A Vulkan context on the caller's instance, device and queue, which it
  /// borrows and never destroys: destroy the context before the device
  /// (nyxq_context_create_vulkan_borrowed; queue rules there).
  static Result<Context> try_create_vulkan_borrowed(VulkanHandles handles,
                                                    const ContextOptions &options = ContextOptions()) {
    handles.struct_size = sizeof(VulkanHandles);
    const NyxqContextOptions c_options = options.c();
    NyxqContext *ctx = nullptr;
    return detail::result_of<Context>(nyxq_context_create_vulkan_borrowed(&c_options, &handles, &ctx),
                                      [&] { return Context(ctx); });
  }
  /// Throwing form of try_create_vulkan_borrowed.
  static Context create_vulkan_borrowed(const VulkanHandles &handles, const ContextOptions &options = ContextOptions()) {
    return try_create_vulkan_borrowed(handles, options).value();
  }

  /// The backend in use, its name and why AUTO fell back (nyxq_context_info).
  Result<ContextInfo> try_info() const {
    ContextInfo info{};
    return detail::result_of<ContextInfo>(nyxq_context_info(get(), &info), [&] { return info; });
  }
  /// Throwing form of try_info.
  ContextInfo info() const { return try_info().value(); }

  /// The Vulkan device's facts; NYXQ_ERROR_UNSUPPORTED on the CPU (nyxq_context_device_info).
  Result<DeviceInfo> try_device_info() const {
    DeviceInfo info{};
    return detail::result_of<DeviceInfo>(nyxq_context_device_info(get(), &info), [&] { return info; });
  }
  /// Throwing form of try_device_info.
  DeviceInfo device_info() const { return try_device_info().value(); }

  /// The context's report: backend, each kernel's variant, the device
  /// features in use and who chose them, debug labels (nyxq_context_report).
  Result<String> try_report() const {
    char *text = nullptr;
    return detail::result_of<String>(nyxq_context_report(get(), &text), [&] { return String(text); });
  }
  /// Throwing form of try_report.
  String report() const { return try_report().value(); }

  /// The budget now, the usage and what nyxq holds (nyxq_context_memory_status;
  /// struct_size is set for you).
  Result<MemoryStatus> try_memory_status() const {
    MemoryStatus status{};
    status.struct_size = sizeof(MemoryStatus);
    return detail::result_of<MemoryStatus>(nyxq_context_memory_status(get(), &status), [&] { return status; });
  }
  /// Throwing form of try_memory_status.
  MemoryStatus memory_status() const { return try_memory_status().value(); }

  /// The policy of the config the context was created with, or the defaults
  /// (nyxq_context_plan_policy).
  Result<PlanPolicy> try_plan_policy(bool training) const {
    NyxqPlanPolicy policy{};
    return detail::result_of<PlanPolicy>(nyxq_context_plan_policy(get(), training ? 1 : 0, &policy),
                                         [&] { return PlanPolicy(policy); });
  }
  /// Throwing form of try_plan_policy.
  PlanPolicy plan_policy(bool training) const { return try_plan_policy(training).value(); }

  /// What the context runs on, as a planner's hardware (nyxq_hardware_detect).
  Result<Hardware> try_detect_hardware() const {
    Hardware hardware{};
    return detail::result_of<Hardware>(nyxq_hardware_detect(get(), &hardware), [&] { return hardware; });
  }
  /// Throwing form of try_detect_hardware.
  Hardware detect_hardware() const { return try_detect_hardware().value(); }

  /// Quantizes `src` into `dst`, writing exactly quantized_size(format,
  /// src.size()) bytes; nothing on error (nyxq_quantize).
  Status try_quantize(Format format, Span<const float> src, Span<uint8_t> dst,
                      const QuantizeOptions &options = QuantizeOptions()) const {
    return detail::status_of(
        nyxq_quantize(get(), to_c(format), src.data(), src.size(), options.c(), dst.data(), dst.size()));
  }
  /// Throwing form of try_quantize.
  void quantize(Format format, Span<const float> src, Span<uint8_t> dst,
                const QuantizeOptions &options = QuantizeOptions()) const {
    try_quantize(format, src, dst, options).value();
  }

  /// Dequantizes whole blocks of `format` into `dst` (nyxq_dequantize).
  Status try_dequantize(Format format, Span<const uint8_t> src, Span<float> dst) const {
    return detail::status_of(nyxq_dequantize(get(), to_c(format), src.data(), src.size(), dst.data(), dst.size()));
  }
  /// Throwing form of try_dequantize.
  void dequantize(Format format, Span<const uint8_t> src, Span<float> dst) const {
    try_dequantize(format, src, dst).value();
  }

  /// Quantizes `src` to `format` and back into `dst` in one pass; `src` and
  /// `dst` may be the same buffer (nyxq_fake_quantize).
  Status try_fake_quantize(Format format, Span<const float> src, Span<float> dst,
                           const QuantizeOptions &options = QuantizeOptions()) const {
    return detail::status_of(
        nyxq_fake_quantize(get(), to_c(format), src.data(), src.size(), options.c(), dst.data(), dst.size()));
  }
  /// Throwing form of try_fake_quantize.
  void fake_quantize(Format format, Span<const float> src, Span<float> dst,
                     const QuantizeOptions &options = QuantizeOptions()) const {
    try_fake_quantize(format, src, dst, options).value();
  }

  /// y = W·x (+ bias) for `batch` vectors (nyxq_matvec): `w` the rows×cols
  /// matrix in `format`; `bias` empty for none.
  Status try_matvec(Format format, Span<const uint8_t> w, uint64_t rows, uint64_t cols, Span<const float> x,
                    uint32_t batch, Span<const float> bias, Span<float> y) const {
    return detail::status_of(nyxq_matvec(get(), to_c(format), w.data(), w.size(), rows, cols, x.data(), x.size(),
                                         batch, bias.data(), bias.size(), y.data(), y.size()));
  }
  /// Throwing form of try_matvec.
  void matvec(Format format, Span<const uint8_t> w, uint64_t rows, uint64_t cols, Span<const float> x, uint32_t batch,
              Span<const float> bias, Span<float> y) const {
    try_matvec(format, w, rows, cols, x, batch, bias, y).value();
  }

  /// y = xᵀ·W for `batch` vectors (nyxq_matvec_transposed).
  Status try_matvec_transposed(Format format, Span<const uint8_t> w, uint64_t rows, uint64_t cols,
                               Span<const float> x, uint32_t batch, Span<float> y) const {
    return detail::status_of(nyxq_matvec_transposed(get(), to_c(format), w.data(), w.size(), rows, cols, x.data(),
                                                    x.size(), batch, y.data(), y.size()));
  }
  /// Throwing form of try_matvec_transposed.
  void matvec_transposed(Format format, Span<const uint8_t> w, uint64_t rows, uint64_t cols, Span<const float> x,
                         uint32_t batch, Span<float> y) const {
    try_matvec_transposed(format, w, rows, cols, x, batch, y).value();
  }

  /// A zero-filled HOST tensor (nyxq_tensor_create): `shape` outermost
  /// first, the last dimension whole blocks of `format`.
  Result<Tensor> try_create_tensor(const std::string &name, Span<const uint64_t> shape, Format format) const {
    NyxqTensor *tensor = nullptr;
    return detail::result_of<Tensor>(
        nyxq_tensor_create(get(), name.c_str(), shape.data(), shape.size(), to_c(format), &tensor),
        [&] { return Tensor(tensor); });
  }
  /// Throwing form of try_create_tensor.
  Tensor create_tensor(const std::string &name, Span<const uint64_t> shape, Format format) const {
    return try_create_tensor(name, shape, format).value();
  }

  /// A zero-filled tensor in `placement` (nyxq_tensor_create_in).
  Result<Tensor> try_create_tensor_in(const std::string &name, Span<const uint64_t> shape, Format format,
                                      Placement placement) const {
    NyxqTensor *tensor = nullptr;
    return detail::result_of<Tensor>(nyxq_tensor_create_in(get(), name.c_str(), shape.data(), shape.size(),
                                                           to_c(format), to_c(placement), &tensor),
                                     [&] { return Tensor(tensor); });
  }
  /// Throwing form of try_create_tensor_in.
  Tensor create_tensor_in(const std::string &name, Span<const uint64_t> shape, Format format,
                          Placement placement) const {
    return try_create_tensor_in(name, shape, format, placement).value();
  }

  /// Records a quantization into `command_buffer` (a VkCommandBuffer;
  /// nyxq_vk_cmd_quantize, whose barrier and ticket rules apply); returns the ticket.
  Result<uint64_t> try_vk_cmd_quantize(void *command_buffer, Format format, uint64_t n, const VkBufferRange &src,
                                       const VkBufferRange &dst,
                                       const QuantizeOptions &options = QuantizeOptions()) {
    uint64_t ticket = 0;
    return detail::result_of<uint64_t>(
        nyxq_vk_cmd_quantize(get(), command_buffer, to_c(format), n, &src, &dst, options.c(), &ticket),
        [&] { return ticket; });
  }
  /// Throwing form of try_vk_cmd_quantize.
  uint64_t vk_cmd_quantize(void *command_buffer, Format format, uint64_t n, const VkBufferRange &src,
                           const VkBufferRange &dst, const QuantizeOptions &options = QuantizeOptions()) {
    return try_vk_cmd_quantize(command_buffer, format, n, src, dst, options).value();
  }

  /// Records a dequantization to `out_format` (F32 or F16) (nyxq_vk_cmd_dequantize); returns the ticket.
  Result<uint64_t> try_vk_cmd_dequantize(void *command_buffer, Format format, uint64_t n, const VkBufferRange &src,
                                         const VkBufferRange &dst, Format out_format = Format::F32) {
    uint64_t ticket = 0;
    return detail::result_of<uint64_t>(
        nyxq_vk_cmd_dequantize(get(), command_buffer, to_c(format), n, &src, &dst, to_c(out_format), &ticket),
        [&] { return ticket; });
  }
  /// Throwing form of try_vk_cmd_dequantize.
  uint64_t vk_cmd_dequantize(void *command_buffer, Format format, uint64_t n, const VkBufferRange &src,
                             const VkBufferRange &dst, Format out_format = Format::F32) {
    return try_vk_cmd_dequantize(command_buffer, format, n, src, dst, out_format).value();
  }

  /// Records a fake quantization (nyxq_vk_cmd_fake_quantize); returns the ticket.
  Result<uint64_t> try_vk_cmd_fake_quantize(void *command_buffer, Format format, uint64_t n, const VkBufferRange &src,
                                            const VkBufferRange &dst,
                                            const QuantizeOptions &options = QuantizeOptions()) {
    uint64_t ticket = 0;
    return detail::result_of<uint64_t>(
        nyxq_vk_cmd_fake_quantize(get(), command_buffer, to_c(format), n, &src, &dst, options.c(), &ticket),
        [&] { return ticket; });
  }
  /// Throwing form of try_vk_cmd_fake_quantize.
  uint64_t vk_cmd_fake_quantize(void *command_buffer, Format format, uint64_t n, const VkBufferRange &src,
                                const VkBufferRange &dst, const QuantizeOptions &options = QuantizeOptions()) {
    return try_vk_cmd_fake_quantize(command_buffer, format, n, src, dst, options).value();
  }

  /// Records `scaler`'s unscale-and-check over `n` gradients
  /// (nyxq_vk_cmd_unscale_and_check); returns the ticket.
  Result<uint64_t> try_vk_cmd_unscale_and_check(const LossScaler &scaler, void *command_buffer,
                                                const VkBufferRange &grads, uint64_t n,
                                                const VkBufferRange &found) {
    uint64_t ticket = 0;
    return detail::result_of<uint64_t>(
        nyxq_vk_cmd_unscale_and_check(get(), scaler.get(), command_buffer, &grads, n, &found, &ticket),
        [&] { return ticket; });
  }
  /// Throwing form of try_vk_cmd_unscale_and_check.
  uint64_t vk_cmd_unscale_and_check(const LossScaler &scaler, void *command_buffer, const VkBufferRange &grads,
                                    uint64_t n, const VkBufferRange &found) {
    return try_vk_cmd_unscale_and_check(scaler, command_buffer, grads, n, found).value();
  }

  /// Records one step of the device optimizer `adam` over the `n` weights
  /// at `params` from the gradients at `grads`, skipped on the device when
  /// the flag at `found` (NULL: never) is set (nyxq_vk_cmd_adam_step, whose
  /// barrier and ticket rules apply); returns the ticket.
  Result<uint64_t> try_vk_cmd_adam_step(VkAdam &adam, void *command_buffer, float lr, const VkBufferRange &params,
                                        const VkBufferRange &grads, uint64_t n, const VkBufferRange *found);
  /// Throwing form of try_vk_cmd_adam_step.
  uint64_t vk_cmd_adam_step(VkAdam &adam, void *command_buffer, float lr, const VkBufferRange &params,
                            const VkBufferRange &grads, uint64_t n, const VkBufferRange *found) {
    return try_vk_cmd_adam_step(adam, command_buffer, lr, params, grads, n, found).value();
  }

  /// Records y = W·x (+ bias) (nyxq_vk_cmd_matvec); `bias` NULL for none; returns the ticket.
  Result<uint64_t> try_vk_cmd_matvec(void *command_buffer, Format format, uint64_t rows, uint64_t cols,
                                     uint32_t batch, const VkBufferRange &w, const VkBufferRange &x,
                                     const VkBufferRange *bias, const VkBufferRange &y) {
    uint64_t ticket = 0;
    return detail::result_of<uint64_t>(
        nyxq_vk_cmd_matvec(get(), command_buffer, to_c(format), rows, cols, batch, &w, &x, bias, &y, &ticket),
        [&] { return ticket; });
  }
  /// Throwing form of try_vk_cmd_matvec.
  uint64_t vk_cmd_matvec(void *command_buffer, Format format, uint64_t rows, uint64_t cols, uint32_t batch,
                         const VkBufferRange &w, const VkBufferRange &x, const VkBufferRange *bias,
                         const VkBufferRange &y) {
    return try_vk_cmd_matvec(command_buffer, format, rows, cols, batch, w, x, bias, y).value();
  }

  /// Records y = xᵀ·W (nyxq_vk_cmd_matvec_transposed); returns the ticket.
  Result<uint64_t> try_vk_cmd_matvec_transposed(void *command_buffer, Format format, uint64_t rows, uint64_t cols,
                                                uint32_t batch, const VkBufferRange &w, const VkBufferRange &x,
                                                const VkBufferRange &y) {
    uint64_t ticket = 0;
    return detail::result_of<uint64_t>(
        nyxq_vk_cmd_matvec_transposed(get(), command_buffer, to_c(format), rows, cols, batch, &w, &x, &y, &ticket),
        [&] { return ticket; });
  }
  /// Throwing form of try_vk_cmd_matvec_transposed.
  uint64_t vk_cmd_matvec_transposed(void *command_buffer, Format format, uint64_t rows, uint64_t cols,
                                    uint32_t batch, const VkBufferRange &w, const VkBufferRange &x,
                                    const VkBufferRange &y) {
    return try_vk_cmd_matvec_transposed(command_buffer, format, rows, cols, batch, w, x, y).value();
  }

  /// Tells nyxq that every command buffer with recordings up to `ticket`
  /// completed, so their descriptor sets are reused (nyxq_vk_release).
  Status try_vk_release(uint64_t ticket) { return detail::status_of(nyxq_vk_release(get(), ticket)); }
  /// Throwing form of try_vk_release.
  void vk_release(uint64_t ticket) { try_vk_release(ticket).value(); }
  /// Releases `ticket` alone once the timeline semaphore `semaphore`
  /// (a VkSemaphore as void *) reaches `value` (nyxq_vk_release_when).
  Status try_vk_release_when(uint64_t ticket, void *semaphore, uint64_t value) {
    return detail::status_of(nyxq_vk_release_when(get(), ticket, semaphore, value));
  }
  /// Throwing form of try_vk_release_when.
  void vk_release_when(uint64_t ticket, void *semaphore, uint64_t value) {
    try_vk_release_when(ticket, semaphore, value).value();
  }

  /// Descriptor pools, unreleased sets and the last ticket (nyxq_vk_recorder_usage).
  Result<VkRecorderUsage> try_vk_recorder_usage() const {
    VkRecorderUsage usage{};
    return detail::result_of<VkRecorderUsage>(nyxq_vk_recorder_usage(get(), &usage), [&] { return usage; });
  }
  /// Throwing form of try_vk_recorder_usage.
  VkRecorderUsage vk_recorder_usage() const { return try_vk_recorder_usage().value(); }
};

// ----------------------------------------------------------------- gguf ----

/// A GGUF file read into memory and checked whole (nyxq_gguf_read,
/// nyxq_gguf_parse): its tensors and metadata.
class Gguf : public detail::Owner<NyxqGguf, nyxq_gguf_destroy> {
 public:
  using Owner::Owner;

  /// Reads the file at `path`; its tensors become tensors of `ctx` (nyxq_gguf_read).
  static Result<Gguf> try_read(const Context &ctx, const std::string &path) {
    NyxqGguf *gguf = nullptr;
    return detail::result_of<Gguf>(nyxq_gguf_read(ctx.get(), path.c_str(), &gguf), [&] { return Gguf(gguf); });
  }
  /// Throwing form of try_read.
  static Gguf read(const Context &ctx, const std::string &path) { return try_read(ctx, path).value(); }

  /// The file held in `bytes` (copied; nyxq_gguf_parse).
  static Result<Gguf> try_parse(const Context &ctx, Span<const uint8_t> bytes) {
    NyxqGguf *gguf = nullptr;
    return detail::result_of<Gguf>(nyxq_gguf_parse(ctx.get(), bytes.data(), bytes.size(), &gguf),
                                   [&] { return Gguf(gguf); });
  }
  /// Throwing form of try_parse.
  static Gguf parse(const Context &ctx, Span<const uint8_t> bytes) { return try_parse(ctx, bytes).value(); }

  /// How many tensors the file has (nyxq_gguf_tensor_count).
  Result<size_t> try_tensor_count() const {
    size_t count = 0;
    return detail::result_of<size_t>(nyxq_gguf_tensor_count(get(), &count), [&] { return count; });
  }
  /// Throwing form of try_tensor_count.
  size_t tensor_count() const { return try_tensor_count().value(); }

  /// Tensor `index` as a new HOST tensor (nyxq_gguf_tensor).
  Result<Tensor> try_tensor(size_t index) const {
    NyxqTensor *tensor = nullptr;
    return detail::result_of<Tensor>(nyxq_gguf_tensor(get(), index, &tensor), [&] { return Tensor(tensor); });
  }
  /// Throwing form of try_tensor.
  Tensor tensor(size_t index) const { return try_tensor(index).value(); }

  /// The value of `key` as text, or no value when the file lacks the key
  /// (nyxq_gguf_metadata).
  Result<std::optional<std::string>> try_metadata(const std::string &key) const {
    char *text = nullptr;
    return detail::result_of<std::optional<std::string>>(
        nyxq_gguf_metadata(get(), key.c_str(), &text), [&]() -> std::optional<std::string> {
          if (text == nullptr) return std::nullopt;
          return String(text).str();
        });
  }
  /// Throwing form of try_metadata.
  std::optional<std::string> metadata(const std::string &key) const { return try_metadata(key).value(); }
};

/// Writes HOST tensors and string key/values as a GGUF file at `path`,
/// replacing it once complete (nyxq_gguf_write).
inline Status try_write_gguf(const std::string &path, const std::vector<const Tensor *> &tensors,
                             const std::vector<std::pair<std::string, std::string>> &metadata = {}) {
  std::vector<const NyxqTensor *> handles;
  for (const Tensor *t : tensors) handles.push_back(t != nullptr ? t->get() : nullptr);
  std::vector<const char *> keys, values;
  for (const auto &kv : metadata) {
    keys.push_back(kv.first.c_str());
    values.push_back(kv.second.c_str());
  }
  return detail::status_of(
      nyxq_gguf_write(path.c_str(), handles.data(), handles.size(), keys.data(), values.data(), keys.size()));
}
/// Throwing form of try_write_gguf.
inline void write_gguf(const std::string &path, const std::vector<const Tensor *> &tensors,
                       const std::vector<std::pair<std::string, std::string>> &metadata = {}) {
  try_write_gguf(path, tensors, metadata).value();
}

// ---------------------------------------------------------- device adam ----

/// Adam(W) state for one parameter tensor in a Vulkan context's device
/// memory (NyxqVkAdam), released with nyxq_vk_adam_destroy; its steps are
/// recorded with Context::vk_cmd_adam_step. Calls on one must not overlap.
class VkAdam : public detail::Owner<NyxqVkAdam, nyxq_vk_adam_destroy> {
 public:
  using Owner::Owner;

  /// State for a tensor of `n` parameters on `ctx`'s device (nyxq_vk_adam_create).
  static Result<VkAdam> try_create(Context &ctx, uint64_t n, const AdamOptions &options = AdamOptions()) {
    NyxqVkAdam *adam = nullptr;
    return detail::result_of<VkAdam>(nyxq_vk_adam_create(ctx.get(), options.c(), n, &adam),
                                     [&] { return VkAdam(adam); });
  }
  /// Throwing form of try_create.
  static VkAdam create(Context &ctx, uint64_t n, const AdamOptions &options = AdamOptions()) {
    return try_create(ctx, n, options).value();
  }

  /// Bytes of state held on the device and what FP32 state would take
  /// (nyxq_vk_adam_state_bytes).
  Result<AdamStateBytes> try_state_bytes() const {
    size_t bytes = 0, fp32_bytes = 0;
    return detail::result_of<AdamStateBytes>(nyxq_vk_adam_state_bytes(get(), &bytes, &fp32_bytes),
                                             [&] { return AdamStateBytes{bytes, fp32_bytes}; });
  }
  /// Throwing form of try_state_bytes.
  AdamStateBytes state_bytes() const { return try_state_bytes().value(); }

  /// The state as checkpoint bytes, the host optimizer's format (nyxq_vk_adam_save).
  Result<std::vector<uint8_t>> try_save() const {
    return detail::checkpoint_of(get(), nyxq_vk_adam_save_size, nyxq_vk_adam_save);
  }
  /// Throwing form of try_save.
  std::vector<uint8_t> save() const { return try_save().value(); }
  /// Restores a state saved by a host or device optimizer with the same
  /// options and size (nyxq_vk_adam_load).
  Status try_load(Span<const uint8_t> bytes) {
    return detail::status_of(nyxq_vk_adam_load(get(), bytes.data(), bytes.size()));
  }
  /// Throwing form of try_load.
  void load(Span<const uint8_t> bytes) { try_load(bytes).value(); }
};

inline Result<uint64_t> Context::try_vk_cmd_adam_step(VkAdam &adam, void *command_buffer, float lr,
                                                      const VkBufferRange &params, const VkBufferRange &grads,
                                                      uint64_t n, const VkBufferRange *found) {
  uint64_t ticket = 0;
  return detail::result_of<uint64_t>(
      nyxq_vk_cmd_adam_step(get(), adam.get(), command_buffer, lr, &params, &grads, n, found, &ticket),
      [&] { return ticket; });
}

}  // namespace nyxq

#endif  // NYXQ_HPP
