// The demo's character-level language model, as the Nyx trainer builds them:
// the previous kContext bytes are embedded, concatenated, passed through one
// tanh hidden layer and a softmax over the 256 byte values. Plain C++, one
// thread, deterministic given the seed.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace demo {

constexpr int kVocab = 256;
constexpr int kContext = 8;
constexpr int kEmbed = 32;
constexpr int kInput = kContext * kEmbed;  // 256
constexpr int kDefaultHidden = 256;  // --hidden N changes it

// A deterministic random source (splitmix64).
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float normal() {
    double u1 = uniform() + 1e-300, u2 = uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
};

// One parameter tensor: FP32 master values and their gradient.
struct Param {
  std::string name;
  int rows = 0, cols = 0;  // a vector is 1 x cols
  bool is_matrix = false;  // matrices are quantized; vectors (biases) stay FP32
  std::vector<float> value, grad;
  size_t size() const { return value.size(); }
};

struct Model {
  int hidden = kDefaultHidden;
  Param embed{"embed", kVocab, kEmbed, true, {}, {}};
  Param w1{"hidden.weight", kDefaultHidden, kInput, true, {}, {}};
  Param b1{"hidden.bias", 1, kDefaultHidden, false, {}, {}};
  Param w2{"output.weight", kVocab, kDefaultHidden, true, {}, {}};
  Param b2{"output.bias", 1, kVocab, false, {}, {}};

  std::vector<Param *> params() { return {&embed, &w1, &b1, &w2, &b2}; }
  std::vector<const Param *> params() const { return {&embed, &w1, &b1, &w2, &b2}; }

  void init(uint64_t seed, int hidden_size) {
    hidden = hidden_size;
    w1.rows = b1.cols = w2.cols = hidden;
    Rng rng(seed);
    for (Param *p : params()) {
      p->value.assign(static_cast<size_t>(p->rows) * p->cols, 0.0f);
      p->grad.assign(p->value.size(), 0.0f);
      if (!p->is_matrix) continue;
      float scale = p == &embed ? 0.5f : 1.0f / std::sqrt(static_cast<float>(p->cols));
      for (float &v : p->value) v = rng.normal() * scale;
    }
  }
};

// Activations of one batch, kept for the backward pass.
struct Batch {
  int size = 0;
  std::vector<uint8_t> context;  // size x kContext
  std::vector<uint8_t> target;   // size
  std::vector<float> x, h, probs;
};

inline float dot(const float *a, const float *b, int n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += a[i + k] * b[i + k];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Forward pass with the given weights (which may be fake-quantized or
// dequantized copies); returns the summed cross-entropy and counts correct
// next-byte predictions.
inline double forward(const Model &m, Batch &batch, int *correct) {
  const int B = batch.size, hidden = m.hidden;
  batch.x.assign(static_cast<size_t>(B) * kInput, 0.0f);
  batch.h.assign(static_cast<size_t>(B) * hidden, 0.0f);
  batch.probs.assign(static_cast<size_t>(B) * kVocab, 0.0f);
  double loss = 0.0;
  for (int b = 0; b < B; ++b) {
    float *x = &batch.x[static_cast<size_t>(b) * kInput];
    for (int k = 0; k < kContext; ++k) {
      const float *e = &m.embed.value[static_cast<size_t>(batch.context[b * kContext + k]) * kEmbed];
      for (int j = 0; j < kEmbed; ++j) x[k * kEmbed + j] = e[j];
    }
    float *h = &batch.h[static_cast<size_t>(b) * hidden];
    for (int o = 0; o < hidden; ++o)
      h[o] = std::tanh(m.b1.value[o] + dot(&m.w1.value[static_cast<size_t>(o) * kInput], x, kInput));
    float *p = &batch.probs[static_cast<size_t>(b) * kVocab];
    float max_logit = -1e30f;
    int best = 0;
    for (int o = 0; o < kVocab; ++o) {
      p[o] = m.b2.value[o] + dot(&m.w2.value[static_cast<size_t>(o) * hidden], h, hidden);
      if (p[o] > max_logit) max_logit = p[o], best = o;
    }
    double sum = 0.0;
    for (int o = 0; o < kVocab; ++o) sum += (p[o] = std::exp(p[o] - max_logit));
    for (int o = 0; o < kVocab; ++o) p[o] = static_cast<float>(p[o] / sum);
    loss -= std::log(std::max(1e-30, static_cast<double>(p[batch.target[b]])));
    if (correct && best == batch.target[b]) ++*correct;
  }
  return loss;
}

// Backward pass of the mean loss times `loss_scale`, into each Param's grad.
inline void backward(Model &m, const Batch &batch, float loss_scale) {
  const int B = batch.size, hidden = m.hidden;
  for (Param *p : m.params()) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
  std::vector<float> dlogits(kVocab), dh(hidden), dx(kInput);
  const float inv_b = loss_scale / static_cast<float>(B);
  for (int b = 0; b < B; ++b) {
    const float *p = &batch.probs[static_cast<size_t>(b) * kVocab];
    const float *h = &batch.h[static_cast<size_t>(b) * hidden];
    const float *x = &batch.x[static_cast<size_t>(b) * kInput];
    for (int o = 0; o < kVocab; ++o) dlogits[o] = p[o] * inv_b;
    dlogits[batch.target[b]] -= inv_b;
    std::fill(dh.begin(), dh.end(), 0.0f);
    for (int o = 0; o < kVocab; ++o) {
      const float g = dlogits[o];
      m.b2.grad[o] += g;
      float *gw = &m.w2.grad[static_cast<size_t>(o) * hidden];
      const float *w = &m.w2.value[static_cast<size_t>(o) * hidden];
      for (int j = 0; j < hidden; ++j) {
        gw[j] += g * h[j];
        dh[j] += g * w[j];
      }
    }
    std::fill(dx.begin(), dx.end(), 0.0f);
    for (int o = 0; o < hidden; ++o) {
      const float g = dh[o] * (1.0f - h[o] * h[o]);
      m.b1.grad[o] += g;
      float *gw = &m.w1.grad[static_cast<size_t>(o) * kInput];
      const float *w = &m.w1.value[static_cast<size_t>(o) * kInput];
      for (int i = 0; i < kInput; ++i) {
        gw[i] += g * x[i];
        dx[i] += g * w[i];
      }
    }
    for (int k = 0; k < kContext; ++k) {
      float *ge = &m.embed.grad[static_cast<size_t>(batch.context[b * kContext + k]) * kEmbed];
      for (int j = 0; j < kEmbed; ++j) ge[j] += dx[k * kEmbed + j];
    }
  }
}

}  // namespace demo
