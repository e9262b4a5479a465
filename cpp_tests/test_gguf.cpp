// GGUF files through the C ABI: nyxq tensors of every format written and read
// back with their metadata, and every documented error of nyxq_gguf_*.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support.hpp"

using namespace nyxq_test;

namespace {

using GgufPtr = std::unique_ptr<NyxqGguf, Destroy<NyxqGguf, nyxq_gguf_destroy>>;

// A path in the temporary directory, removed when the test ends.
class TempPath {
 public:
  explicit TempPath(const char *stem) {
    path_ = std::string(::testing::TempDir()) + stem + "_" + std::to_string(getpid()) + ".gguf";
  }
  ~TempPath() { std::remove(path_.c_str()); }
  const char *c_str() const { return path_.c_str(); }

 private:
  std::string path_;
};

const int32_t ALL_FORMATS[] = {NYXQ_FORMAT_F32,  NYXQ_FORMAT_F16,    NYXQ_FORMAT_BF16, NYXQ_FORMAT_Q8_0,
                               NYXQ_FORMAT_Q4_0, NYXQ_FORMAT_Q4_1,   NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL,
                               NYXQ_FORMAT_Q4_K, NYXQ_FORMAT_Q5_K, NYXQ_FORMAT_Q6_K};

// A 3 x 512 tensor named `name` in `format`, holding a noisy sine.
TensorPtr make_tensor(NyxqContext *ctx, const std::string &name, int32_t format) {
  const uint64_t shape[] = {3, 512};
  NyxqTensor *t = nullptr;
  EXPECT_STATUS(NYXQ_OK, nyxq_tensor_create(ctx, name.c_str(), shape, 2, format, &t));
  std::vector<float> values = noisy_sine(3 * 512, static_cast<uint32_t>(format) + 1);
  EXPECT_STATUS(NYXQ_OK, nyxq_tensor_upload(t, values.data(), values.size(), nullptr));
  return TensorPtr(t);
}

std::vector<uint8_t> bytes_of(const NyxqTensor *t) {
  const void *data = nullptr;
  size_t len = 0;
  EXPECT_STATUS(NYXQ_OK, nyxq_tensor_data(t, &data, &len));
  const uint8_t *p = static_cast<const uint8_t *>(data);
  return std::vector<uint8_t>(p, p + len);
}

std::vector<uint8_t> file_bytes(const char *path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const char *path, const std::vector<uint8_t> &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A file of one Q8_0 tensor named "blk.0.attn_q.weight" and one key.
std::vector<uint8_t> small_file(NyxqContext *ctx) {
  TempPath path("small");
  TensorPtr t = make_tensor(ctx, "blk.0.attn_q.weight", NYXQ_FORMAT_Q8_0);
  const NyxqTensor *tensors[] = {t.get()};
  const char *keys[] = {"nyxq.plan"};
  const char *values[] = {"{}"};
  EXPECT_STATUS(NYXQ_OK, nyxq_gguf_write(path.c_str(), tensors, 1, keys, values, 1));
  return file_bytes(path.c_str());
}

}  // namespace

TEST(Gguf, EveryFormatAndTheMetadataRoundTrip) {
  ContextPtr ctx = cpu_context(1);
  std::vector<TensorPtr> owned;
  std::vector<const NyxqTensor *> tensors;
  for (int32_t format : ALL_FORMATS) {
    owned.push_back(make_tensor(ctx.get(), "t" + std::to_string(format), format));
    tensors.push_back(owned.back().get());
  }
  const char *keys[] = {"nyxq.plan", "nyxq.config"};
  const char *values[] = {"{\"tensors\": []}", "[precision]\ndefault = INT4\n"};
  TempPath path("round_trip");
  CHECK_OK(nyxq_gguf_write(path.c_str(), tensors.data(), tensors.size(), keys, values, 2));

  NyxqGguf *raw = nullptr;
  CHECK_OK(nyxq_gguf_read(ctx.get(), path.c_str(), &raw));
  GgufPtr gguf(raw);
  size_t count = 0;
  CHECK_OK(nyxq_gguf_tensor_count(gguf.get(), &count));
  ASSERT_EQ(count, tensors.size());
  for (size_t i = 0; i < count; ++i) {
    NyxqTensor *back = nullptr;
    CHECK_OK(nyxq_gguf_tensor(gguf.get(), i, &back));
    TensorPtr owned_back(back);
    NyxqTensorInfo want{}, got{};
    CHECK_OK(nyxq_tensor_info(tensors[i], &want));
    CHECK_OK(nyxq_tensor_info(back, &got));
    EXPECT_STREQ(got.name, want.name);
    EXPECT_EQ(got.format, want.format);
    EXPECT_EQ(got.rank, 2u);
    EXPECT_EQ(got.shape[0], 3u);
    EXPECT_EQ(got.shape[1], 512u);
    EXPECT_EQ(bytes_of(back), bytes_of(tensors[i])) << got.name;
  }
  for (int i = 0; i < 2; ++i) {
    char *text = nullptr;
    CHECK_OK(nyxq_gguf_metadata(gguf.get(), keys[i], &text));
    StringPtr owned_text(text);
    ASSERT_NE(text, nullptr);
    EXPECT_STREQ(text, values[i]);
  }
  char *missing = reinterpret_cast<char *>(1);
  CHECK_OK(nyxq_gguf_metadata(gguf.get(), "general.name", &missing));
  EXPECT_EQ(missing, nullptr);

  // The same bytes parse from memory alike; tensors outlive their handle.
  std::vector<uint8_t> bytes = file_bytes(path.c_str());
  NyxqGguf *parsed = nullptr;
  CHECK_OK(nyxq_gguf_parse(ctx.get(), bytes.data(), bytes.size(), &parsed));
  NyxqTensor *first = nullptr;
  CHECK_OK(nyxq_gguf_tensor(parsed, 0, &first));
  TensorPtr owned_first(first);
  CHECK_OK(nyxq_gguf_destroy(parsed));
  EXPECT_EQ(bytes_of(first), bytes_of(tensors[0]));
}

TEST(Gguf, AnEmptyFileIsValid) {
  ContextPtr ctx = cpu_context(1);
  TempPath path("empty");
  CHECK_OK(nyxq_gguf_write(path.c_str(), nullptr, 0, nullptr, nullptr, 0));
  NyxqGguf *raw = nullptr;
  CHECK_OK(nyxq_gguf_read(ctx.get(), path.c_str(), &raw));
  GgufPtr gguf(raw);
  size_t count = 1;
  CHECK_OK(nyxq_gguf_tensor_count(gguf.get(), &count));
  EXPECT_EQ(count, 0u);
}

TEST(Gguf, WriteErrors) {
  ContextPtr ctx = cpu_context(1);
  TensorPtr a = make_tensor(ctx.get(), "a", NYXQ_FORMAT_Q4_0);
  TensorPtr a_again = make_tensor(ctx.get(), "a", NYXQ_FORMAT_F16);
  TempPath path("write_errors");
  const NyxqTensor *one[] = {a.get()};
  const char *keys[] = {"k"};
  const char *values[] = {"v"};
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_write(nullptr, one, 1, keys, values, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_write(path.c_str(), nullptr, 1, keys, values, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_write(path.c_str(), one, 1, nullptr, values, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_write(path.c_str(), one, 1, keys, nullptr, 1));
  const char *null_value[] = {nullptr};
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_write(path.c_str(), one, 1, keys, null_value, 1));

  NyxqTensor *gone = destroyed(make_tensor(ctx.get(), "gone", NYXQ_FORMAT_F32));
  const NyxqTensor *with_gone[] = {a.get(), gone};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_gguf_write(path.c_str(), with_gone, 2, nullptr, nullptr, 0));

  const NyxqTensor *twice[] = {a.get(), a_again.get()};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_write(path.c_str(), twice, 2, nullptr, nullptr, 0));
  const char *two_keys[] = {"k", "k"};
  const char *two_values[] = {"1", "2"};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_write(path.c_str(), one, 1, two_keys, two_values, 2));
  TensorPtr long_name = make_tensor(ctx.get(), std::string(64, 'x'), NYXQ_FORMAT_F32);
  const NyxqTensor *too_long[] = {long_name.get()};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_write(path.c_str(), too_long, 1, nullptr, nullptr, 0));
  const char *not_utf8[] = {"\xff"};
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_write(path.c_str(), one, 1, not_utf8, values, 1));
  EXPECT_TRUE(file_bytes(path.c_str()).empty()) << "a refused write creates no file";

  EXPECT_STATUS(NYXQ_ERROR_IO, nyxq_gguf_write("/nonexistent-dir/x.gguf", one, 1, keys, values, 1));
}

TEST(Gguf, ReadAndParseErrors) {
  ContextPtr ctx = cpu_context(1);
  std::vector<uint8_t> good = small_file(ctx.get());
  ASSERT_FALSE(good.empty());
  TempPath path("read_errors");
  write_bytes(path.c_str(), good);
  NyxqGguf *out = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_read(nullptr, path.c_str(), &out));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_read(ctx.get(), nullptr, &out));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_read(ctx.get(), path.c_str(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_parse(ctx.get(), nullptr, good.size(), &out));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_parse(ctx.get(), good.data(), good.size(), nullptr));
  NyxqContext *gone_ctx = destroyed(cpu_context(1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_gguf_read(gone_ctx, path.c_str(), &out));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_gguf_parse(gone_ctx, good.data(), good.size(), &out));
  EXPECT_STATUS(NYXQ_ERROR_IO, nyxq_gguf_read(ctx.get(), "/nonexistent-dir/x.gguf", &out));

  // Truncated anywhere: a malformed file, never a crash.
  for (size_t len = 0; len < 160; ++len) {
    EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_parse(ctx.get(), good.data(), len, &out));
  }
  std::vector<uint8_t> garbage = good;
  garbage[0] = 'X';
  write_bytes(path.c_str(), garbage);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_read(ctx.get(), path.c_str(), &out));

  // Version 1 is another layout.
  std::vector<uint8_t> old = good;
  old[4] = 1;
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_gguf_parse(ctx.get(), old.data(), old.size(), &out));
  // The tensor's type id (8, Q8_0) made Q2_K (10): the tensor and type are named.
  std::vector<uint8_t> q2k = good;
  const std::string name = "blk.0.attn_q.weight";
  auto at = std::search(q2k.begin(), q2k.end(), name.begin(), name.end()) - q2k.begin();
  size_t type_at = static_cast<size_t>(at) + name.size() + 4 + 2 * 8;
  ASSERT_EQ(q2k[type_at], 8);
  q2k[type_at] = 10;
  write_bytes(path.c_str(), q2k);
  EXPECT_STATUS(NYXQ_ERROR_UNSUPPORTED, nyxq_gguf_read(ctx.get(), path.c_str(), &out));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("tensor 'blk.0.attn_q.weight': GGML type Q2_K (10)"),
            std::string::npos)
      << nyxq_last_error_message();
  EXPECT_EQ(out, nullptr) << "outputs are written only on success";

  write_bytes(path.c_str(), good);
  nyxq_test_fail_allocation_after(1);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, nyxq_gguf_read(ctx.get(), path.c_str(), &out));
  nyxq_test_fail_allocation_after(1);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, nyxq_gguf_parse(ctx.get(), good.data(), good.size(), &out));
  nyxq_test_fail_allocation_after(0);
}

TEST(Gguf, HandleErrors) {
  ContextPtr ctx = cpu_context(1);
  std::vector<uint8_t> good = small_file(ctx.get());
  NyxqGguf *raw = nullptr;
  CHECK_OK(nyxq_gguf_parse(ctx.get(), good.data(), good.size(), &raw));
  GgufPtr gguf(raw);
  size_t count = 0;
  NyxqTensor *t = nullptr;
  char *text = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_tensor_count(nullptr, &count));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_tensor_count(gguf.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_tensor(nullptr, 0, &t));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_tensor(gguf.get(), 0, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_tensor(gguf.get(), 1, &t));
  EXPECT_EQ(t, nullptr);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_metadata(nullptr, "k", &text));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_metadata(gguf.get(), nullptr, &text));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_gguf_metadata(gguf.get(), "k", nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_gguf_metadata(gguf.get(), "\xff", &text));
  nyxq_test_fail_allocation_after(1);
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, nyxq_gguf_tensor(gguf.get(), 0, &t));
  nyxq_test_fail_allocation_after(0);

  NyxqGguf *gone = destroyed(std::move(gguf));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_gguf_tensor_count(gone, &count));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_gguf_tensor(gone, 0, &t));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_gguf_metadata(gone, "k", &text));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_gguf_destroy(gone));
  EXPECT_STATUS(NYXQ_OK, nyxq_gguf_destroy(nullptr));
}
