// What every nyxq fuzz target shares: the input reader, the check that each
// status a call returns is one its doc comment in nyxq.h names (never
// NYXQ_ERROR_INTERNAL, which is a caught panic), with text; and the check that
// nyxq prints nothing. A broken check prints why and aborts, which libFuzzer
// reports as a crash and saves the input.
#pragma once

#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nyxq.h"

namespace nyxq_fuzz {

// The statuses each function's doc comment names, generated from nyxq.h by
// fuzz/documented_statuses.py.
struct Documented {
  const char *function;
  std::initializer_list<NyxqStatus> statuses;
};
inline const std::unordered_map<std::string_view, std::vector<NyxqStatus>> &documented() {
  static const auto *table = [] {
    static const Documented rows[] = {
#include "documented_statuses.inc"
    };
    auto *map = new std::unordered_map<std::string_view, std::vector<NyxqStatus>>();
    for (const Documented &row : rows) (*map)[row.function] = row.statuses;
    return map;
  }();
  return *table;
}

// The real standard output and error, kept while nyxq's calls run with fd 1
// and 2 captured (see Silence).
inline int real_stdout = -1;
inline int real_stderr = -1;

// Prints why on the real standard error and aborts (libFuzzer's crash report
// follows there too).
[[noreturn]] inline void fail(const std::string &why) {
  if (real_stderr >= 0) {
    dup2(real_stdout, 1);
    dup2(real_stderr, 2);
  }
  std::string text = "nyxq fuzz check failed: " + why + "\n";
  ssize_t written = write(2, text.data(), text.size());
  (void)written;
  std::abort();
}

// The status of `function`'s call, after checking it: documented for that
// function, with text, and with a message when it is an error.
inline NyxqStatus checked(const char *function, NyxqStatus status) {
  const char *text = nyxq_status_str(status);
  if (text == nullptr || text[0] == '\0') fail(std::string(function) + ": status without text");
  if (status == NYXQ_OK) return status;
  std::string message = nyxq_last_error_message();
  if (status == NYXQ_ERROR_INTERNAL) fail(std::string(function) + " returned NYXQ_ERROR_INTERNAL: " + message);
  auto entry = documented().find(function);
  if (entry == documented().end()) fail(std::string(function) + " has no documented statuses in nyxq.h");
  bool listed = false;
  for (NyxqStatus s : entry->second) listed = listed || s == status;
  if (!listed) fail(std::string(function) + " returned undocumented " + text + ": " + message);
  if (message.empty()) fail(std::string(function) + " failed with " + text + " but no message");
  return status;
}

// A call whose status is checked: NYXQ_CALL(nyxq_quantize, ctx, ...).
#define NYXQ_CALL(function, ...) ::nyxq_fuzz::checked(#function, function(__VA_ARGS__))

// Fails unless `status` is `expected` (a misuse that must be detected).
inline void expect(NyxqStatus status, NyxqStatus expected, const char *what) {
  if (status != expected) {
    fail(std::string(what) + ": expected " + nyxq_status_str(expected) + ", got " + nyxq_status_str(status) +
         ": " + nyxq_last_error_message());
  }
}

// Runs nyxq's calls with standard output and standard error sent to an
// in-memory file, and fails when anything arrived there: by default nyxq
// prints nothing. Sanitizer reports go to the real standard error throughout.
// FUZZ_SHOW_OUTPUT=1 leaves both alone (to see, when reproducing a
// crash, what nyxq printed before it).
class Silence {
 public:
  template <class Body>
  static void check(Body body) {
    static const int capture = open_capture();
    if (capture < 0) {
      body();
      return;
    }
    struct stat before{};
    fstat(capture, &before);
    dup2(capture, 1);
    dup2(capture, 2);
    body();
    dup2(real_stdout, 1);
    dup2(real_stderr, 2);
    struct stat after{};
    fstat(capture, &after);
    if (after.st_size != before.st_size) {
      std::string printed(static_cast<size_t>(after.st_size - before.st_size), '\0');
      ssize_t got = pread(capture, printed.data(), printed.size(), before.st_size);
      printed.resize(got > 0 ? static_cast<size_t>(got) : 0);
      fail("nyxq printed: " + printed);
    }
  }

 private:
  static int open_capture() {
    const char *show = std::getenv("FUZZ_SHOW_OUTPUT");
    if (show != nullptr && std::strcmp(show, "1") == 0) return -1;
    real_stdout = dup(1);
    real_stderr = dup(2);
    __sanitizer_set_report_fd(reinterpret_cast<void *>(static_cast<intptr_t>(real_stderr)));
    return memfd_create("nyxq-fuzz-output", MFD_CLOEXEC);
  }
};

// Reads a fuzz input front to back; past its end every read gives zeros.
class Input {
 public:
  Input(const uint8_t *data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return at_ >= size_; }
  size_t left() const { return size_ - at_; }

  uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }

  template <class T>
  T take() {
    T value{};
    size_t n = std::min(sizeof(T), left());
    if (n > 0) std::memcpy(&value, data_ + at_, n);
    at_ += n;
    return value;
  }

  // One of `choices`, picked by the next byte.
  template <class T>
  T pick(std::initializer_list<T> choices) {
    return choices.begin()[byte() % choices.size()];
  }

  // The rest of the input.
  std::string_view rest() {
    std::string_view all(reinterpret_cast<const char *>(data_ + at_), left());
    at_ = size_;
    return all;
  }

 private:
  const uint8_t *data_;
  size_t size_;
  size_t at_ = 0;
};

// libFuzzer's entry point for a target whose body is `run`: every input is
// run under Silence. Returns 0, as libFuzzer asks.
inline int run_one(const uint8_t *data, size_t size, void (*run)(Input &)) {
  Input in(data, size);
  Silence::check([&] { run(in); });
  return 0;
}

// A file in $TMPDIR (or /tmp) holding some bytes, for the calls that read a
// path; removed when it goes out of scope.
class TempFile {
 public:
  explicit TempFile(std::string_view bytes) {
    const char *dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && dir[0] != '\0' ? dir : "/tmp") + "/nyxq-fuzz-XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd < 0) fail("cannot create a temporary file in " + path_);
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
      if (n <= 0) fail("cannot write " + path_);
      done += static_cast<size_t>(n);
    }
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile &) = delete;
  TempFile &operator=(const TempFile &) = delete;
  const char *path() const { return path_.c_str(); }

 private:
  std::string path_;
};

// Handles (and strings) nyxq holds that the targets made once and keep.
inline size_t kept_handles = 0;

// A CPU context (the fuzz targets never touch Vulkan), created once.
inline NyxqContext *cpu_context() {
  static NyxqContext *ctx = [] {
    NyxqContextOptions options;
    nyxq_context_options_default(&options);
    options.backend = NYXQ_BACKEND_CPU;
    options.thread_count = 1;
    NyxqContext *made = nullptr;
    if (nyxq_context_create(&options, &made) != NYXQ_OK) fail("cannot create a CPU context");
    kept_handles += 1;
    return made;
  }();
  return ctx;
}

// Fails unless every handle and string the input made was released.
inline void expect_no_live_handles(const char *after) {
  size_t live = 0;
  NYXQ_CALL(nyxq_live_handles, &live);
  if (live != kept_handles) {
    fail(std::string("after ") + after + ": " + std::to_string(live - kept_handles) + " handles still live");
  }
}

}  // namespace nyxq_fuzz

// Huge allocations (a hostile size) return NULL under ASan, as they do from a
// real allocator, instead of ASan's own report; nyxq must turn them into
// NYXQ_ERROR_OUT_OF_MEMORY. libFuzzer's -malloc_limit_mb (default 2048) then
// never sees them.
extern "C" const char *__asan_default_options() {
  return "allocator_may_return_null=1:max_allocation_size_mb=1024";
}
