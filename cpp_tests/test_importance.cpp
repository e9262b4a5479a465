// Importance from activations (nyxq_importance_*): Σx² per input column and
// the tokens, the mean as the quantizers' importance, its checkpoint, and
// every documented error.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "support.hpp"

using namespace nyxq_test;

namespace {

ImportancePtr make_importance(size_t cols) {
  NyxqImportance *raw = nullptr;
  EXPECT_EQ(nyxq_importance_create(cols, &raw), NYXQ_OK) << nyxq_last_error_message();
  return ImportancePtr(raw);
}

std::vector<uint8_t> saved(NyxqImportance *acc) {
  size_t size = 0;
  EXPECT_EQ(nyxq_importance_save_size(acc, &size), NYXQ_OK);
  std::vector<uint8_t> bytes(size);
  EXPECT_EQ(nyxq_importance_save(acc, bytes.data(), bytes.size()), NYXQ_OK) << nyxq_last_error_message();
  return bytes;
}

}  // namespace

TEST(Importance, ValuesAreTheMeanSquarePerColumn) {
  ImportancePtr acc = make_importance(3);
  const std::vector<float> x = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, -0.5f};
  CHECK_OK(nyxq_importance_add(acc.get(), x.data(), x.size(), 2));
  const float one[3] = {2.0f, 1.0f, 1.0f};
  CHECK_OK(nyxq_importance_add(acc.get(), one, 3, 1));
  CHECK_OK(nyxq_importance_add(acc.get(), nullptr, 0, 0));
  std::vector<float> values(3);
  uint64_t tokens = 0;
  CHECK_OK(nyxq_importance_values(acc.get(), values.data(), values.size(), &tokens));
  EXPECT_EQ(tokens, 3u);
  EXPECT_FLOAT_EQ(values[0], 14.0f / 3.0f);
  EXPECT_FLOAT_EQ(values[1], 5.0f / 3.0f);
  EXPECT_FLOAT_EQ(values[2], 0.5f);
  // Whole rows repeat the columns (the length a format's blocks need).
  std::vector<float> rows(6);
  CHECK_OK(nyxq_importance_values(acc.get(), rows.data(), rows.size(), nullptr));
  EXPECT_EQ(std::vector<float>(rows.begin() + 3, rows.end()), values);
  // Sums from elsewhere (a device) add to the same totals.
  const float sums[3] = {1.0f, 1.0f, 4.5f};
  CHECK_OK(nyxq_importance_add_sums(acc.get(), sums, 3, 1));
  CHECK_OK(nyxq_importance_values(acc.get(), values.data(), values.size(), nullptr));
  EXPECT_FLOAT_EQ(values[2], 1.5f);
  CHECK_OK(nyxq_importance_reset(acc.get()));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_values(acc.get(), values.data(), values.size(), nullptr));
}

TEST(Importance, SaveAndLoadRoundTripAndDamagedBytesAreRefused) {
  ImportancePtr acc = make_importance(4);
  const std::vector<float> x = noisy_sine(4 * 9);
  CHECK_OK(nyxq_importance_add(acc.get(), x.data(), x.size(), 9));
  const std::vector<uint8_t> good = saved(acc.get());
  EXPECT_EQ(good.size(), 48u + 8 * 4);
  ImportancePtr back = make_importance(4);
  CHECK_OK(nyxq_importance_load(back.get(), good.data(), good.size()));
  EXPECT_EQ(saved(back.get()), good);

  auto refused = [&](std::vector<uint8_t> bytes, const char *needle) {
    EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_load(back.get(), bytes.data(), bytes.size()));
    EXPECT_NE(std::string(nyxq_last_error_message()).find(needle), std::string::npos) << nyxq_last_error_message();
    EXPECT_EQ(saved(back.get()), good);
  };
  refused(std::vector<uint8_t>(good.begin(), good.end() - 8), "truncated");
  std::vector<uint8_t> bytes = good;
  bytes[8] = 9;
  refused(bytes, "version 9");
  bytes = good;
  bytes[60] ^= 0x10;
  refused(bytes, "checksum");
  ImportancePtr narrower = make_importance(3);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_load(narrower.get(), good.data(), good.size()));
  EXPECT_NE(std::string(nyxq_last_error_message()).find("4 columns"), std::string::npos);
}

TEST(Importance, EveryDocumentedErrorIsReported) {
  NyxqImportance *raw = nullptr;
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_create(4, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_create(0, &raw));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_importance_create(SIZE_MAX / 4, &raw));
  EXPECT_EQ(raw, nullptr);
  EXPECT_STATUS(NYXQ_OK, nyxq_importance_destroy(nullptr));

  ImportancePtr acc = make_importance(2);
  NyxqImportance *dead = destroyed(make_importance(2));
  const float x[4] = {1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  std::vector<float> values(2, 7.0f);
  size_t size = 0;
  std::vector<uint8_t> bytes(200);

  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_destroy(dead));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_add(nullptr, x, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_add(acc.get(), nullptr, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_add(dead, x, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_add(acc.get(), x, 2, 2));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_importance_add(acc.get(), x, 2, SIZE_MAX));
  EXPECT_STATUS(NYXQ_ERROR_NON_FINITE, nyxq_importance_add(acc.get(), x, 4, 2));
  EXPECT_EQ(nyxq_last_error_index(), 2);

  const float bad_sums[2] = {1.0f, std::numeric_limits<float>::infinity()};
  const float negative[2] = {-1.0f, 0.0f};
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_add_sums(nullptr, x, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_add_sums(acc.get(), nullptr, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_add_sums(dead, x, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_add_sums(acc.get(), x, 3, 1));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_add_sums(acc.get(), negative, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_NON_FINITE, nyxq_importance_add_sums(acc.get(), bad_sums, 2, 1));
  EXPECT_EQ(nyxq_last_error_index(), 1);
  CHECK_OK(nyxq_importance_add_sums(acc.get(), x, 2, 1));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, nyxq_importance_add_sums(acc.get(), x, 2, UINT64_MAX));

  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_values(nullptr, values.data(), 2, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_values(acc.get(), nullptr, 2, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_values(dead, values.data(), 2, nullptr));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_importance_values(acc.get(), values.data(), 1, nullptr));
  EXPECT_EQ(nyxq_last_error_needed_len(), 2u);
  std::vector<float> three(3, 7.0f);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_values(acc.get(), three.data(), 3, nullptr));
  ImportancePtr empty = make_importance(2);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_values(empty.get(), values.data(), 2, nullptr));
  EXPECT_EQ(values, std::vector<float>(2, 7.0f));

  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_reset(nullptr));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_reset(dead));

  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_save_size(acc.get(), nullptr));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_save_size(nullptr, &size));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_save_size(dead, &size));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_save(acc.get(), nullptr, 64));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_save(dead, bytes.data(), bytes.size()));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, nyxq_importance_save(acc.get(), bytes.data(), 10));
  EXPECT_EQ(nyxq_last_error_needed_len(), 64u);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, nyxq_importance_load(acc.get(), nullptr, 64));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_HANDLE, nyxq_importance_load(dead, bytes.data(), 64));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, nyxq_importance_load(acc.get(), bytes.data(), 64));
}

#ifdef NYXQ_TEST_EXPORTS
TEST(Importance, CreatingReportsOutOfMemory) {
  auto create = [] {
    NyxqImportance *raw = nullptr;
    const NyxqStatus status = nyxq_importance_create(1024, &raw);
    ImportancePtr owner(raw);
    return status;
  };
  EXPECT_STATUS(NYXQ_ERROR_OUT_OF_MEMORY, status_with_each_allocation_failing(create));
}
#endif
