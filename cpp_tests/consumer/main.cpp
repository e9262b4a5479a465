// Quantizes a few values through an installed nyxq and checks the round trip,
// then measures the error through the installed C++ API (nyxq.hpp).
#include <cmath>
#include <cstdio>
#include <vector>

#include "nyxq.h"
#include "nyxq.hpp"

int main() {
  if (nyxq_abi_version() != NYXQ_ABI_VERSION) {
    std::fprintf(stderr, "ABI mismatch: library %u, header %u\n", nyxq_abi_version(), NYXQ_ABI_VERSION);
    return 1;
  }
  NyxqContext *ctx = nullptr;
  if (nyxq_context_create(nullptr, &ctx) != NYXQ_OK) return 1;
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * static_cast<float>(i));
  size_t bytes = 0;
  int rc = nyxq_quantized_size(NYXQ_FORMAT_Q8_0, x.size(), &bytes) != NYXQ_OK;
  std::vector<unsigned char> q(bytes);
  std::vector<float> y(x.size());
  rc |= nyxq_quantize(ctx, NYXQ_FORMAT_Q8_0, x.data(), x.size(), nullptr, q.data(), q.size()) != NYXQ_OK;
  rc |= nyxq_dequantize(ctx, NYXQ_FORMAT_Q8_0, q.data(), q.size(), y.data(), y.size()) != NYXQ_OK;
  for (size_t i = 0; i < x.size(); ++i) rc |= std::fabs(x[i] - y[i]) > 0.01f;
  try {
    rc |= nyxq::quant_error(nyxq::Format::Q8_0, x, q).snr_db < 30.0;
  } catch (const nyxq::Error &e) {
    std::fprintf(stderr, "%s\n", e.what());
    rc = 1;
  }
  nyxq_context_destroy(ctx);
  std::printf("nyxq %s consumer: %s\n", nyxq_version_string(), rc ? "FAILED" : "ok");
  return rc;
}
