// GGUF files through nyxq_gguf_parse, and the same bytes as a file through
// nyxq_gguf_read: both agree (OK, or the same documented error). An accepted
// file gives every tensor with its byte length, every queried key's text, and
// written again (nyxq_gguf_write) it reads back with the same tensors.
#include "harness.hpp"

namespace {

using namespace nyxq_fuzz;

void read_back(NyxqGguf *gguf) {
  size_t count = 0;
  NYXQ_CALL(nyxq_gguf_tensor_count, gguf, &count);
  std::vector<NyxqTensor *> tensors;
  for (size_t i = 0; i < count; ++i) {
    NyxqTensor *t = nullptr;
    expect(NYXQ_CALL(nyxq_gguf_tensor, gguf, i, &t), NYXQ_OK, "a tensor of an accepted file");
    NyxqTensorInfo info{};
    NYXQ_CALL(nyxq_tensor_info, t, &info);
    size_t needed = 0;
    NYXQ_CALL(nyxq_quantized_size, info.format, static_cast<size_t>(info.numel), &needed);
    if (needed != info.byte_len) fail("a tensor's byte length is not its format's size");
    tensors.push_back(t);
  }
  NyxqTensor *past = nullptr;
  expect(NYXQ_CALL(nyxq_gguf_tensor, gguf, count, &past), NYXQ_ERROR_INVALID_ARGUMENT, "a tensor past the count");
  for (const char *key : {"general.alignment", "general.architecture", "nyxq.plan", ""}) {
    char *text = nullptr;
    NYXQ_CALL(nyxq_gguf_metadata, gguf, key, &text);
    expect(NYXQ_CALL(nyxq_string_destroy, text), NYXQ_OK, "destroying a key's text");
  }
  // Written again, the file reads back alike (names ggml refuses are refused).
  TempFile copy("");
  std::vector<const NyxqTensor *> sources(tensors.begin(), tensors.end());
  if (NYXQ_CALL(nyxq_gguf_write, copy.path(), sources.data(), sources.size(), nullptr, nullptr, 0) == NYXQ_OK) {
    NyxqGguf *again = nullptr;
    expect(NYXQ_CALL(nyxq_gguf_read, cpu_context(), copy.path(), &again), NYXQ_OK, "reading nyxq's own file");
    size_t count_again = 0;
    NYXQ_CALL(nyxq_gguf_tensor_count, again, &count_again);
    if (count_again != count) fail("a file written again has another tensor count");
    NYXQ_CALL(nyxq_gguf_destroy, again);
  }
  for (NyxqTensor *t : tensors) NYXQ_CALL(nyxq_tensor_destroy, t);
}

void run(Input &in) {
  std::string_view bytes = in.rest();
  NyxqGguf *parsed = nullptr;
  NyxqStatus s = NYXQ_CALL(nyxq_gguf_parse, cpu_context(), reinterpret_cast<const uint8_t *>(bytes.data()),
                           bytes.size(), &parsed);
  TempFile file(bytes);
  NyxqGguf *read = nullptr;
  expect(NYXQ_CALL(nyxq_gguf_read, cpu_context(), file.path(), &read), s, "nyxq_gguf_read of the same bytes");
  if (s == NYXQ_OK) {
    read_back(parsed);
    expect(NYXQ_CALL(nyxq_gguf_destroy, parsed), NYXQ_OK, "nyxq_gguf_destroy");
    expect(NYXQ_CALL(nyxq_gguf_destroy, read), NYXQ_OK, "nyxq_gguf_destroy");
  } else if (parsed != nullptr || read != nullptr) {
    fail("a refused file wrote an output");
  }
  expect_no_live_handles("a GGUF file");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return nyxq_fuzz::run_one(data, size, run);
}
