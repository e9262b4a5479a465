// Tests of the matrix-vector products through the C ABI: results against a
// double-precision reference for every format, and every error class.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "support.hpp"

using nyxq_test::ContextPtr;
using nyxq_test::cpu_context;
using nyxq_test::sine;

namespace {

const int32_t kFormats[] = {NYXQ_FORMAT_F32,  NYXQ_FORMAT_F16,  NYXQ_FORMAT_BF16, NYXQ_FORMAT_Q8_0,
                            NYXQ_FORMAT_Q4_0, NYXQ_FORMAT_Q4_1, NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL,
                            NYXQ_FORMAT_Q4_K, NYXQ_FORMAT_Q5_K, NYXQ_FORMAT_Q6_K};

// The K-quants' rows are whole super-blocks of 256.
bool k_quant(int32_t format) {
  return format == NYXQ_FORMAT_Q4_K || format == NYXQ_FORMAT_Q5_K || format == NYXQ_FORMAT_Q6_K;
}

struct Matrix {
  size_t rows, cols;
  std::vector<unsigned char> bytes;
  std::vector<float> dequantized;
};

Matrix make(NyxqContext *ctx, int32_t format, size_t rows, size_t cols) {
  Matrix m{rows, cols, {}, std::vector<float>(rows * cols)};
  std::vector<float> w = sine(rows * cols, 0.37f, 0.5f);
  size_t size = 0;
  EXPECT_EQ(nyxq_quantized_size(format, rows * cols, &size), NYXQ_OK);
  m.bytes.resize(size);
  EXPECT_EQ(nyxq_quantize(ctx, format, w.data(), w.size(), nullptr, m.bytes.data(), size), NYXQ_OK);
  EXPECT_EQ(nyxq_dequantize(ctx, format, m.bytes.data(), size, m.dequantized.data(), m.dequantized.size()), NYXQ_OK);
  return m;
}

}  // namespace

TEST(Matvec, MatchesADoubleReferenceForEveryFormat) {
  ContextPtr ctx = cpu_context();
  for (int32_t format : kFormats) {
    const auto shapes = k_quant(format) ? std::vector<std::pair<size_t, size_t>>{{7, 768}, {129, 256}, {1, 4352}}
                                        : std::vector<std::pair<size_t, size_t>>{{7, 96}, {129, 256}, {1, 4128}};
    for (auto shape : shapes) {
      const size_t rows = shape.first, cols = shape.second, batch = 3;
      Matrix m = make(ctx.get(), format, rows, cols);
      std::vector<float> x = sine(batch * cols, 0.37f, 1.0f), bias = sine(rows, 0.37f, 2.0f), y(batch * rows, NAN);
      CHECK_OK(nyxq_matvec(ctx.get(), format, m.bytes.data(), m.bytes.size(), rows, cols, x.data(), x.size(), batch,
                           bias.data(), bias.size(), y.data(), y.size()));
      for (size_t b = 0; b < batch; ++b)
        for (size_t r = 0; r < rows; ++r) {
          double exact = bias[r], magnitude = std::fabs(bias[r]);
          for (size_t c = 0; c < cols; ++c) {
            exact += static_cast<double>(m.dequantized[r * cols + c]) * x[b * cols + c];
            magnitude += std::fabs(static_cast<double>(m.dequantized[r * cols + c]) * x[b * cols + c]);
          }
          // The documented bound, with room for Q4_1's offset term, plus for the
          // block formats what quantizing x to 8 bits per block may add.
          double x_term = 0;
          if (format >= NYXQ_FORMAT_Q8_0 && !k_quant(format))
            for (size_t k = 0; k < cols; k += 32) {
              double amax = 0, wsum = 0;
              for (size_t c = k; c < k + 32; ++c) {
                amax = std::max(amax, static_cast<double>(std::fabs(x[b * cols + c])));
                wsum += std::fabs(m.dequantized[r * cols + c]);
              }
              x_term += 0.50001 * amax / 127 * wsum;
            }
          ASSERT_NEAR(y[b * rows + r], exact, 2 * (cols + 3) * magnitude / 16777216.0 + x_term + 1e-6) << format;
        }
      std::vector<float> xt = sine(batch * rows, 0.37f, 3.0f), yt(batch * cols, NAN);
      CHECK_OK(nyxq_matvec_transposed(ctx.get(), format, m.bytes.data(), m.bytes.size(), rows, cols, xt.data(), xt.size(),
                                      batch, yt.data(), yt.size()));
      for (size_t b = 0; b < batch; ++b)
        for (size_t c = 0; c < cols; c += 7) {
          double exact = 0, magnitude = 0;
          for (size_t r = 0; r < rows; ++r) {
            exact += static_cast<double>(m.dequantized[r * cols + c]) * xt[b * rows + r];
            magnitude += std::fabs(static_cast<double>(m.dequantized[r * cols + c]) * xt[b * rows + r]);
          }
          ASSERT_NEAR(yt[b * cols + c], exact, 2 * (rows + 3) * magnitude / 16777216.0 + 1e-6) << format;
        }
    }
  }
}

TEST(Matvec, NanInXPropagates) {
  ContextPtr ctx = cpu_context();
  Matrix m = make(ctx.get(), NYXQ_FORMAT_Q4_0, 4, 64);
  std::vector<float> x = sine(64, 0.37f, 0.0f), y(4, 0.0f);
  x[10] = std::nanf("");
  CHECK_OK(nyxq_matvec(ctx.get(), NYXQ_FORMAT_Q4_0, m.bytes.data(), m.bytes.size(), 4, 64, x.data(), 64, 1, nullptr, 0,
                       y.data(), 4));
  for (float v : y) EXPECT_TRUE(std::isnan(v));
}

TEST(Matvec, BadInputsWriteNothing) {
  ContextPtr ctx = cpu_context();
  Matrix m = make(ctx.get(), NYXQ_FORMAT_Q8_0, 4, 64);
  std::vector<float> x = sine(64, 0.37f, 0.0f), y(4, 5.0f), bias(4, 0.0f);
  const void *w = m.bytes.data();
  const size_t wl = m.bytes.size();
  auto call = [&](const NyxqContext *c, int32_t f, const void *wp, size_t wlen, uint64_t rows, uint64_t cols, const float *xp,
                  size_t xl, uint32_t batch, const float *bp, size_t bl, float *yp, size_t yl) {
    return nyxq_matvec(c, f, wp, wlen, rows, cols, xp, xl, batch, bp, bl, yp, yl);
  };
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(nullptr, NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 64, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(ctx.get(), NYXQ_FORMAT_Q8_0, nullptr, wl, 4, 64, x.data(), 64, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, nullptr, 64, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 64, 1, nullptr, 0, nullptr, 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), 42, w, wl, 4, 64, x.data(), 64, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl - 1, 4, 64, x.data(), 64, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 48, x.data(), 48, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 63, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 64, 0, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 64, 9, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 64, 1, bias.data(), 3, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 0, 64, x.data(), 64, 1, nullptr, 0, y.data(), 4));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 64, 1, nullptr, 0, y.data(), 3));
  EXPECT_EQ(nyxq_last_error_needed_len(), 4u);
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), std::numeric_limits<size_t>::max(), 1, nullptr, 0, y.data(), 4));
  for (float v : y) EXPECT_EQ(v, 5.0f);
  std::vector<float> yt(64, 5.0f);
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matvec_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 3, 1, yt.data(), 64));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL,
                nyxq_matvec_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 4, 1, yt.data(), 63));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_matvec_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 4, 1, nullptr, 64));
  for (float v : yt) EXPECT_EQ(v, 5.0f);
}

// nyxq_matmul and nyxq_matmul_transposed: a batch of tokens (not a multiple
// of any tile) against a double-precision product of the dequantized weights,
// within the documented bound (twice it, as above).
TEST(Matmul, MatchesADoubleReferenceForEveryFormat) {
  ContextPtr ctx = cpu_context();
  const size_t rows = 37, tokens = 19;
  for (int32_t format : kFormats) {
    // Whole super-blocks for the K-quants.
    const size_t cols = k_quant(format) ? 768 : 96;
    Matrix m = make(ctx.get(), format, rows, cols);
    std::vector<float> x = sine(tokens * cols, 0.37f, 1.0f), bias = sine(rows, 0.37f, 2.0f), y(tokens * rows, NAN);
    CHECK_OK(nyxq_matmul(ctx.get(), format, m.bytes.data(), m.bytes.size(), rows, cols, x.data(), x.size(), tokens,
                         bias.data(), bias.size(), y.data(), y.size()));
    for (size_t t = 0; t < tokens; ++t)
      for (size_t r = 0; r < rows; ++r) {
        double exact = bias[r], magnitude = std::fabs(bias[r]);
        for (size_t c = 0; c < cols; ++c) {
          const double wx = static_cast<double>(m.dequantized[r * cols + c]) * x[t * cols + c];
          exact += wx;
          magnitude += std::fabs(wx);
        }
        ASSERT_NEAR(y[t * rows + r], exact, 2 * (cols + 3) * magnitude / 16777216.0 + 1e-6) << format;
      }
    std::vector<float> dy = sine(tokens * rows, 0.37f, 3.0f), dx(tokens * cols, NAN);
    CHECK_OK(nyxq_matmul_transposed(ctx.get(), format, m.bytes.data(), m.bytes.size(), rows, cols, dy.data(),
                                    dy.size(), tokens, dx.data(), dx.size()));
    for (size_t t = 0; t < tokens; ++t)
      for (size_t c = 0; c < cols; ++c) {
        double exact = 0, magnitude = 0;
        for (size_t r = 0; r < rows; ++r) {
          const double wx = static_cast<double>(m.dequantized[r * cols + c]) * dy[t * rows + r];
          exact += wx;
          magnitude += std::fabs(wx);
        }
        ASSERT_NEAR(dx[t * cols + c], exact, 2 * (rows + 3) * magnitude / 16777216.0 + 1e-6) << format;
      }
  }
}

TEST(Matmul, NanInXPropagatesToItsTokenOnly) {
  ContextPtr ctx = cpu_context();
  Matrix m = make(ctx.get(), NYXQ_FORMAT_Q4_0, 4, 64);
  std::vector<float> x = sine(3 * 64, 0.37f, 0.0f), y(12, 0.0f);
  x[64 + 10] = std::nanf("");
  CHECK_OK(nyxq_matmul(ctx.get(), NYXQ_FORMAT_Q4_0, m.bytes.data(), m.bytes.size(), 4, 64, x.data(), x.size(), 3,
                       nullptr, 0, y.data(), y.size()));
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(std::isnan(y[i]), i / 4 == 1) << i;
}

TEST(Matmul, BadInputsWriteNothing) {
  ContextPtr ctx = cpu_context();
  Matrix m = make(ctx.get(), NYXQ_FORMAT_Q8_0, 4, 64);
  std::vector<float> x = sine(2 * 64, 0.37f, 0.0f), y(8, 5.0f), bias(4, 0.0f);
  const void *w = m.bytes.data();
  const size_t wl = m.bytes.size();
  auto call = [&](const NyxqContext *c, int32_t f, const void *wp, size_t wlen, uint64_t rows, uint64_t cols, const float *xp,
                  size_t xl, uint64_t tokens, const float *bp, size_t bl, float *yp, size_t yl) {
    return nyxq_matmul(c, f, wp, wlen, rows, cols, xp, xl, tokens, bp, bl, yp, yl);
  };
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(nullptr, NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 128, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(ctx.get(), NYXQ_FORMAT_Q8_0, nullptr, wl, 4, 64, x.data(), 128, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, nullptr, 128, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 128, 2, nullptr, 0, nullptr, 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), 42, w, wl, 4, 64, x.data(), 128, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl - 1, 4, 64, x.data(), 128, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 48, x.data(), 96, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 127, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 128, 0, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 128, 2, bias.data(), 3, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 0, 64, x.data(), 128, 2, nullptr, 0, y.data(), 8));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 128, 2, nullptr, 0, y.data(), 7));
  EXPECT_EQ(nyxq_last_error_needed_len(), 8u);
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW, call(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 128, UINT64_MAX / 2, nullptr, 0, y.data(), 8));
  for (float v : y) EXPECT_EQ(v, 5.0f);
  std::vector<float> dx(128, 5.0f);
  EXPECT_STATUS(NYXQ_ERROR_NULL_POINTER,
                nyxq_matmul_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, nullptr, 8, 2, dx.data(), 128));
  EXPECT_STATUS(NYXQ_ERROR_INVALID_ARGUMENT,
                nyxq_matmul_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 7, 2, dx.data(), 128));
  EXPECT_STATUS(NYXQ_ERROR_BUFFER_TOO_SMALL,
                nyxq_matmul_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 8, 2, dx.data(), 127));
  EXPECT_STATUS(NYXQ_ERROR_SIZE_OVERFLOW,
                nyxq_matmul_transposed(ctx.get(), NYXQ_FORMAT_Q8_0, w, wl, 4, 64, x.data(), 8, UINT64_MAX / 2, dx.data(), 128));
  for (float v : dx) EXPECT_EQ(v, 5.0f);
}
