// nyxq_bench: the matrix-vector benchmark measured through the C ABI, as the
// trainer sees it (same shapes as `nyxq bench`). Prints a table: time, GB/s of
// weights read, and the speedup against F32 and F16 on the same shape.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nyxq.h"

namespace {

void check(NyxqStatus s, const char *what) {
  if (s != NYXQ_OK) {
    std::fprintf(stderr, "nyxq_bench: %s: %s: %s\n", what, nyxq_status_str(s), nyxq_last_error_message());
    std::exit(1);
  }
}

template <class F>
double median_seconds(int runs, F f) {
  f();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char **argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const std::vector<std::pair<size_t, size_t>> shapes =
      quick ? std::vector<std::pair<size_t, size_t>>{{1024, 1024}}
            : std::vector<std::pair<size_t, size_t>>{{4096, 4096}, {8192, 8192}, {16384, 16384}, {4096, 11008}};
  const int runs = quick ? 3 : 7;
  const int32_t formats[] = {NYXQ_FORMAT_F32,  NYXQ_FORMAT_F16,  NYXQ_FORMAT_BF16, NYXQ_FORMAT_Q8_0,
                             NYXQ_FORMAT_Q4_0, NYXQ_FORMAT_Q4_1, NYXQ_FORMAT_Q5_0, NYXQ_FORMAT_IQ4_NL,
                             NYXQ_FORMAT_Q4_K, NYXQ_FORMAT_Q5_K, NYXQ_FORMAT_Q6_K};
  NyxqContext *ctx = nullptr;
  check(nyxq_context_create(nullptr, &ctx), "context");
  NyxqContextInfo info;
  check(nyxq_context_info(ctx, &info), "info");
  std::printf("nyxq_bench (C ABI): matvec on the %s backend, %u threads, median of %d\n\n", info.backend_name, info.thread_count, runs);
  std::printf("| shape | batch | format | time ms | weights GB/s | speedup vs F32 | speedup vs F16 |\n|---|---:|---|---:|---:|---:|---:|\n");
  for (auto [rows, cols] : shapes) {
    std::vector<float> w(rows * cols), x(8 * cols), y(8 * rows);
    uint32_t s = 12345;
    for (float &v : w) v = static_cast<float>((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (float &v : x) v = static_cast<float>((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    std::map<std::pair<int32_t, uint32_t>, double> seconds;
    for (int32_t format : formats) {
      NyxqFormatInfo fi;
      check(nyxq_format_info(format, &fi), "format");
      size_t bytes = 0;
      check(nyxq_quantized_size(format, w.size(), &bytes), "size");
      std::vector<unsigned char> q(bytes);
      check(nyxq_quantize(ctx, format, w.data(), w.size(), nullptr, q.data(), q.size()), "quantize");
      std::fprintf(stderr, "  %zux%zu %s ...\n", rows, cols, fi.name);
      for (uint32_t batch : {1u, 8u}) {
        double t = median_seconds(runs, [&] {
          check(nyxq_matvec(ctx, format, q.data(), q.size(), rows, cols, x.data(), batch * cols, batch, nullptr, 0, y.data(),
                            batch * rows),
                "matvec");
        });
        seconds[{format, batch}] = t;
        std::printf("| %zux%zu | %u | %s | %.3f | %.2f | %.2f× | %.2f× |\n", rows, cols, batch, fi.name, 1e3 * t, bytes / t / 1e9,
                    seconds.count({NYXQ_FORMAT_F32, batch}) ? seconds[{NYXQ_FORMAT_F32, batch}] / t : NAN,
                    seconds.count({NYXQ_FORMAT_F16, batch}) ? seconds[{NYXQ_FORMAT_F16, batch}] / t : NAN);
      }
    }
  }
  nyxq_context_destroy(ctx);
  return 0;
}
