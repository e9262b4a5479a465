// Sequences of create / use / destroy calls over every kind of handle the
// host side has (contexts, configs, models, plans, strings, tensors, Adam
// state, loss scalers), coded one operation per byte, misuse included:
// destroying twice, using a destroyed handle, passing a handle of another
// kind or a forged one. Every call must return a documented status; a
// destroyed handle must be NYXQ_ERROR_INVALID_HANDLE (a string,
// NYXQ_ERROR_INVALID_ARGUMENT); after the sequence, everything left is
// destroyed and nyxq_live_handles() must be back where it was.
#include <array>
#include <cmath>

#include "harness.hpp"

namespace {

using namespace nyxq_fuzz;

// A handle as the sequence last left it: live, destroyed (kept, to misuse it)
// or never made.
template <class T>
struct Slot {
  T *handle = nullptr;
  bool live = false;
};

struct Handles {
  std::array<Slot<NyxqContext>, 2> contexts;
  std::array<Slot<NyxqConfig>, 2> configs;
  std::array<Slot<NyxqModel>, 2> models;
  std::array<Slot<NyxqPlan>, 2> plans;
  std::array<Slot<char>, 2> strings;
  std::array<Slot<NyxqTensor>, 4> tensors;
  std::array<Slot<NyxqAdam>, 2> adams;
  std::array<Slot<NyxqLossScaler>, 2> scalers;
};

template <class T, size_t N>
Slot<T> &slot(std::array<Slot<T>, N> &slots, Input &in) {
  return slots[in.byte() % N];
}

// Stores a handle a create call made into its slot, destroying what was live there.
template <class T, class Destroy>
void keep(Slot<T> &s, NyxqStatus status, T *made, Destroy destroy) {
  if (status != NYXQ_OK) return;
  if (s.live) destroy(s.handle);
  s.handle = made;
  s.live = true;
}

// Destroys through `destroy` (checked as `name`): OK when live, the misuse
// status when destroyed before, a no-op for NULL.
template <class T>
void destroy_in(Slot<T> &s, NyxqStatus (*destroy)(T *), const char *name, NyxqStatus misuse) {
  NyxqStatus status = checked(name, destroy(s.handle));
  if (s.handle == nullptr) return expect(status, NYXQ_OK, "destroying NULL");
  expect(status, s.live ? NYXQ_OK : misuse, s.live ? "destroying a live handle" : "destroying a destroyed handle");
  s.live = false;
}

// The status a call on `s` must give when its handle was destroyed and its
// other arguments are valid (which error comes first among several is not
// specified).
template <class T>
void expect_if_destroyed(const Slot<T> &s, NyxqStatus status, const char *what, bool other_arguments_valid = true) {
  if (s.handle != nullptr && !s.live && other_arguments_valid) expect(status, NYXQ_ERROR_INVALID_HANDLE, what);
}

bool known_format(int32_t format) { return format >= NYXQ_FORMAT_F32 && format <= NYXQ_FORMAT_Q6_K; }
// A row length every format of this size of block holds: super-blocks of
// 256 for the K-quants, 32 for the others.
size_t block_size(int32_t format) { return format >= NYXQ_FORMAT_Q4_K && format <= NYXQ_FORMAT_Q6_K ? 256 : 32; }
bool known_placement(int32_t placement) {
  return placement == NYXQ_PLACEMENT_HOST || placement == NYXQ_PLACEMENT_DEVICE;
}

const char *const kConfigs[] = {
    "[quantization]\nprecision_level = INT4\n",
    "[quantization]\nenabled = false\nmemory_threshold_mb = 64\n",
    "[quantization]\nmemory_threshold_mb = 17592186044417\n",
    "[quantization]\nprecision_level = FP8\n",
    "",
};

std::vector<uint64_t> shape_from(Input &in) {
  switch (in.byte() % 9) {
    case 0: return {32};
    case 1: return {2, 64};
    case 2: return {3, 33};
    case 3: return {1, 0};
    case 4: return {uint64_t{1} << 20, uint64_t{1} << 30};
    case 5: return {uint64_t{1} << 40, uint64_t{1} << 40};
    case 6: return {4, 4, 4, 4, 4, 4, 4, 4, 4};
    case 7: return {3, 256};  // whole super-blocks of the K-quants
    default: return {in.byte() + uint64_t{1}, 32};
  }
}

size_t numel(const std::vector<uint64_t> &shape) {
  size_t n = 1;
  for (uint64_t d : shape) n = d != 0 && n > SIZE_MAX / d ? SIZE_MAX : n * d;
  return n;
}

std::vector<float> values(Input &in, size_t n) {
  std::vector<float> x(n);
  uint8_t scale = in.byte();
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>((i * 37 + scale) % 61) - 30) / 7;
  if (scale == 0xff && n > 0) x[n / 2] = NAN;
  return x;
}

void context_ops(Handles &h, Input &in, uint8_t op) {
  Slot<NyxqContext> &c = slot(h.contexts, in);
  switch (op % 4) {
    case 0: {
      NyxqContextOptions options;
      nyxq_context_options_default(&options);
      options.backend = in.pick<int32_t>({NYXQ_BACKEND_CPU, NYXQ_BACKEND_CPU, 7});
      options.thread_count = in.byte() % 3;
      NyxqContext *made = nullptr;
      keep(c, NYXQ_CALL(nyxq_context_create, &options, &made), made, nyxq_context_destroy);
      break;
    }
    case 1: destroy_in(c, nyxq_context_destroy, "nyxq_context_destroy", NYXQ_ERROR_INVALID_HANDLE); break;
    case 2: {
      NyxqContextInfo info{};
      expect_if_destroyed(c, NYXQ_CALL(nyxq_context_info, c.handle, &info), "info of a destroyed context");
      NyxqPlanPolicy policy{};
      NYXQ_CALL(nyxq_context_plan_policy, c.handle, in.byte() & 1, &policy);
      break;
    }
    default: {
      std::vector<float> x = values(in, 64);
      uint8_t q[36];
      NyxqStatus s = NYXQ_CALL(nyxq_quantize, c.handle, NYXQ_FORMAT_Q8_0, x.data(), 32, nullptr, q, sizeof q);
      expect_if_destroyed(c, s, "quantize with a destroyed context");
      float y[8];
      NYXQ_CALL(nyxq_matvec, c.handle, NYXQ_FORMAT_Q8_0, q, 34, 1, 32, x.data(), 32, 1, nullptr, 0, y, 8);
      break;
    }
  }
}

void config_and_model_ops(Handles &h, Input &in, uint8_t op) {
  switch (op % 8) {
    case 0: {
      NyxqConfig *made = nullptr;
      const char *text = kConfigs[in.byte() % (sizeof kConfigs / sizeof *kConfigs)];
      keep(slot(h.configs, in), NYXQ_CALL(nyxq_config_parse, text, "fuzz.ini", &made), made, nyxq_config_destroy);
      break;
    }
    case 1: destroy_in(slot(h.configs, in), nyxq_config_destroy, "nyxq_config_destroy", NYXQ_ERROR_INVALID_HANDLE); break;
    case 2: {
      Slot<NyxqConfig> &c = slot(h.configs, in);
      NyxqPlanPolicy policy{};
      expect_if_destroyed(c, NYXQ_CALL(nyxq_config_policy, c.handle, in.byte() & 1, &policy), "a destroyed config");
      char *text = nullptr;
      keep(slot(h.strings, in), NYXQ_CALL(nyxq_config_warnings, c.handle, &text), text, nyxq_string_destroy);
      break;
    }
    case 3: {
      NyxqModel *made = nullptr;
      keep(slot(h.models, in), NYXQ_CALL(nyxq_model_create, "fuzz", &made), made, nyxq_model_destroy);
      break;
    }
    case 4: destroy_in(slot(h.models, in), nyxq_model_destroy, "nyxq_model_destroy", NYXQ_ERROR_INVALID_HANDLE); break;
    case 5: {
      // `count` tensors of one shape (4096 of [2^20, 2^30] overflow a plan's
      // totals); many tensors are named t, tt, ttt, ... so that every name
      // is new.
      Slot<NyxqModel> &m = slot(h.models, in);
      std::vector<uint64_t> shape = shape_from(in);
      size_t count = in.byte() == 0xff ? size_t{16} << (in.byte() % 9) : 1 + in.byte() % 4;
      int32_t role = in.byte() % 8;
      double sensitivity = in.pick<double>({-1.0, 0.0, 2.5, NAN, INFINITY});
      uint8_t with_data = in.byte();
      std::vector<float> data;
      if (with_data & 1 && numel(shape) <= 4096) data = values(in, numel(shape));
      for (size_t i = 0; i < count; ++i) {
        std::string name = count > 4 ? std::string(i + 1, 't')
                                     : "t" + std::to_string(i) + (with_data & 2 ? "" : "_" + std::to_string(in.byte()));
        NyxqStatus s = NYXQ_CALL(nyxq_model_add_tensor, m.handle, name.c_str(), role, shape.data(), shape.size(),
                                 sensitivity, data.empty() ? nullptr : data.data(), data.size());
        bool valid = role <= NYXQ_ROLE_OTHER && numel(shape) <= (uint64_t{1} << 50) && shape.size() <= NYXQ_MAX_RANK &&
                     std::isfinite(sensitivity) && numel(shape) != 0;
        expect_if_destroyed(m, s, "adding to a destroyed model", valid);
        if (s != NYXQ_OK) break;
      }
      break;
    }
    case 6: {
      Slot<NyxqModel> &m = slot(h.models, in);
      NyxqHardware hardware{};
      size_t profiles = 0;
      NYXQ_CALL(nyxq_hardware_profile_count, &profiles);
      bool have_hardware = NYXQ_CALL(nyxq_hardware_profile_at, in.byte() % (profiles + 1), &hardware) == NYXQ_OK;
      NyxqPlanPolicy policy;
      Slot<NyxqConfig> &c = slot(h.configs, in);
      if (NYXQ_CALL(nyxq_config_policy, c.handle, in.byte() & 1, &policy) != NYXQ_OK) {
        NYXQ_CALL(nyxq_plan_policy_default, &policy);
      }
      NyxqPlan *made = nullptr;
      NyxqStatus s = NYXQ_CALL(nyxq_plan_create, m.handle, &hardware, &policy, &made);
      expect_if_destroyed(m, s, "planning a destroyed model", have_hardware);
      keep(slot(h.plans, in), s, made, nyxq_plan_destroy);
      break;
    }
    default: {
      Slot<NyxqModel> &m = slot(h.models, in);
      NyxqPlanFeasibility feasibility{};
      expect_if_destroyed(m, NYXQ_CALL(nyxq_plan_feasibility, m.handle, nullptr, nullptr, &feasibility),
                          "feasibility of a destroyed model");
      break;
    }
  }
}

void plan_ops(Handles &h, Input &in, uint8_t op) {
  Slot<NyxqPlan> &p = slot(h.plans, in);
  switch (op % 4) {
    case 0: {
      NyxqPlan *made = nullptr;
      NyxqStatus s = NYXQ_CALL(nyxq_plan_replan, p.handle, in.take<uint64_t>() >> (in.byte() % 64), &made);
      expect_if_destroyed(p, s, "replanning a destroyed plan");
      keep(slot(h.plans, in), s, made, nyxq_plan_destroy);
      break;
    }
    case 1: destroy_in(p, nyxq_plan_destroy, "nyxq_plan_destroy", NYXQ_ERROR_INVALID_HANDLE); break;
    case 2: {
      NyxqPlanSummary summary{};
      expect_if_destroyed(p, NYXQ_CALL(nyxq_plan_summary, p.handle, &summary), "summary of a destroyed plan");
      std::vector<NyxqPlanEntry> entries(in.byte() % 8);
      NYXQ_CALL(nyxq_plan_entries, p.handle, entries.data(), entries.size());
      break;
    }
    default: {
      char *text = nullptr;
      bool explain = in.byte() & 1;
      NyxqStatus s = explain ? NYXQ_CALL(nyxq_plan_explain, p.handle, &text) : NYXQ_CALL(nyxq_plan_to_json, p.handle, &text);
      expect_if_destroyed(p, s, "text of a destroyed plan");
      keep(slot(h.strings, in), s, text, nyxq_string_destroy);
      break;
    }
  }
}

void tensor_ops(Handles &h, Input &in, uint8_t op) {
  Slot<NyxqTensor> &t = slot(h.tensors, in);
  switch (op % 8) {
    case 0: {
      Slot<NyxqContext> &c = slot(h.contexts, in);
      std::vector<uint64_t> shape = shape_from(in);
      int32_t format = in.byte() % (NYXQ_FORMAT_Q6_K + 1);
      int32_t placement = in.pick<int32_t>({NYXQ_PLACEMENT_HOST, NYXQ_PLACEMENT_HOST, NYXQ_PLACEMENT_DEVICE, 5});
      NyxqTensor *made = nullptr;
      NyxqStatus s = NYXQ_CALL(nyxq_tensor_create_in, c.handle, "t", shape.data(), shape.size(), format, placement,
                               &made);
      bool valid = known_format(format) && known_placement(placement) && shape.size() <= NYXQ_MAX_RANK &&
                   numel(shape) != 0 && numel(shape) <= 4096 && shape.back() % block_size(format) == 0;
      expect_if_destroyed(c, s, "a tensor of a destroyed context", valid);
      keep(t, s, made, nyxq_tensor_destroy);
      break;
    }
    case 1: destroy_in(t, nyxq_tensor_destroy, "nyxq_tensor_destroy", NYXQ_ERROR_INVALID_HANDLE); break;
    case 2: {
      NyxqTensorInfo info{};
      NyxqStatus s = NYXQ_CALL(nyxq_tensor_info, t.handle, &info);
      expect_if_destroyed(t, s, "info of a destroyed tensor");
      size_t n = s == NYXQ_OK ? info.numel : 32;
      std::vector<float> x = values(in, n + in.byte() % 2);
      NyxqQuantizeOptions options;
      nyxq_quantize_options_default(&options);
      options.rounding = in.byte() % 3;
      options.non_finite = in.byte() % 2;
      NYXQ_CALL(nyxq_tensor_upload, t.handle, x.data(), n, &options);
      break;
    }
    case 3: {
      NyxqTensorInfo info{};
      size_t n = NYXQ_CALL(nyxq_tensor_info, t.handle, &info) == NYXQ_OK ? info.numel : 0;
      std::vector<float> y(n + 1);
      expect_if_destroyed(t, NYXQ_CALL(nyxq_tensor_download, t.handle, y.data(), n - (in.byte() & 1 ? 0 : n > 0)),
                          "download of a destroyed tensor");
      const void *data = nullptr;
      size_t len = 0;
      NYXQ_CALL(nyxq_tensor_data, t.handle, &data, &len);
      break;
    }
    case 4: {
      NyxqTensor *made = nullptr;
      int32_t format = in.byte() % (NYXQ_FORMAT_Q6_K + 1);
      NyxqStatus s = NYXQ_CALL(nyxq_tensor_convert, t.handle, format, nullptr, &made);
      expect_if_destroyed(t, s, "converting a destroyed tensor", known_format(format));
      keep(slot(h.tensors, in), s, made, nyxq_tensor_destroy);
      break;
    }
    case 5: {
      int32_t placement = in.pick<int32_t>({NYXQ_PLACEMENT_HOST, NYXQ_PLACEMENT_DEVICE, 9});
      expect_if_destroyed(t, NYXQ_CALL(nyxq_tensor_migrate, t.handle, placement), "migrating a destroyed tensor",
                          known_placement(placement));
      int32_t where = -1;
      NYXQ_CALL(nyxq_tensor_placement, t.handle, &where);
      break;
    }
    default: {
      // A handle of another kind, or a forged one, where a tensor belongs.
      uintptr_t forged = in.byte() & 1 ? in.take<uintptr_t>() : reinterpret_cast<uintptr_t>(slot(h.contexts, in).handle);
      NyxqTensorInfo info{};
      NyxqStatus s = NYXQ_CALL(nyxq_tensor_info, reinterpret_cast<NyxqTensor *>(forged), &info);
      size_t held = 0, fp32 = 0;
      NYXQ_CALL(nyxq_adam_state_bytes, reinterpret_cast<NyxqAdam *>(forged), &held, &fp32);
      if (forged == 0) expect(s, NYXQ_ERROR_NULL_POINTER, "a NULL tensor");
      break;
    }
  }
}

void train_ops(Handles &h, Input &in, uint8_t op) {
  switch (op % 8) {
    case 0: {
      NyxqAdamOptions options;
      nyxq_adam_options_default(&options);
      options.state = in.byte() % 3;
      options.beta1 = in.pick<float>({0.9f, 1.0f, -0.1f, NAN});
      size_t n = in.pick<size_t>({0, 1, 32, 4096, 5000, size_t{1} << 37, SIZE_MAX});
      NyxqAdam *made = nullptr;
      NyxqStatus s = NYXQ_CALL(nyxq_adam_create, in.byte() & 1 ? nullptr : &options, n, &made);
      if (n == size_t{1} << 37 && s != NYXQ_ERROR_OUT_OF_MEMORY && s != NYXQ_ERROR_INVALID_ARGUMENT) {
        fail("Adam state of 2^37 parameters is not NYXQ_ERROR_OUT_OF_MEMORY");
      }
      keep(slot(h.adams, in), s, made, nyxq_adam_destroy);
      break;
    }
    case 1: destroy_in(slot(h.adams, in), nyxq_adam_destroy, "nyxq_adam_destroy", NYXQ_ERROR_INVALID_HANDLE); break;
    case 2: {
      Slot<NyxqAdam> &a = slot(h.adams, in);
      size_t n = in.pick<size_t>({0, 1, 32, 4096, 5000});
      std::vector<float> params = values(in, n), grads = values(in, n);
      float lr = in.pick<float>({1e-3f, 0.0f, -1.0f, NAN});
      NyxqStatus s = NYXQ_CALL(nyxq_adam_step, a.handle, lr, params.data(), n, grads.data(), n);
      expect_if_destroyed(a, s, "a step of destroyed Adam state", std::isfinite(lr) && lr >= 0);
      size_t held = 0, fp32 = 0;
      NYXQ_CALL(nyxq_adam_state_bytes, a.handle, &held, &fp32);
      break;
    }
    case 3: {
      NyxqLossScalerOptions options;
      nyxq_loss_scaler_options_default(&options);
      options.growth_factor = in.pick<float>({2.0f, 1.0f, NAN});
      options.min_scale = in.pick<float>({1.0f, 0.0f, 65536.0f});
      NyxqLossScaler *made = nullptr;
      keep(slot(h.scalers, in), NYXQ_CALL(nyxq_loss_scaler_create, &options, &made), made, nyxq_loss_scaler_destroy);
      break;
    }
    case 4:
      destroy_in(slot(h.scalers, in), nyxq_loss_scaler_destroy, "nyxq_loss_scaler_destroy", NYXQ_ERROR_INVALID_HANDLE);
      break;
    default: {
      Slot<NyxqLossScaler> &s = slot(h.scalers, in);
      std::vector<float> grads = values(in, 64);
      uint32_t found = 0, apply = 0;
      int64_t first_bad = 0;
      float scale = 0;
      NYXQ_CALL(nyxq_loss_scaler_scale, s.handle, &scale);
      NYXQ_CALL(nyxq_loss_scaler_unscale_and_check, s.handle, grads.data(), grads.size(), &found, &first_bad);
      NYXQ_CALL(nyxq_loss_scaler_report_non_finite, s.handle, in.byte() & 1);
      expect_if_destroyed(s, NYXQ_CALL(nyxq_loss_scaler_update, s.handle, &apply), "updating a destroyed scaler");
      break;
    }
  }
}

template <class T, size_t N>
void release_all(std::array<Slot<T>, N> &slots, NyxqStatus (*destroy)(T *), const char *name) {
  for (Slot<T> &s : slots) {
    if (s.live) expect(checked(name, destroy(s.handle)), NYXQ_OK, "releasing what the sequence left");
  }
}

void run(Input &in) {
  Handles h;
  while (!in.empty()) {
    uint8_t op = in.byte();
    switch (op % 6) {
      case 0: context_ops(h, in, op / 6); break;
      case 1: config_and_model_ops(h, in, op / 6); break;
      case 2: plan_ops(h, in, op / 6); break;
      case 3: tensor_ops(h, in, op / 6); break;
      case 4: train_ops(h, in, op / 6); break;
      default: {
        // A released string's address may come back for a new one: misuse it
        // only while no live string has it.
        Slot<char> &s = slot(h.strings, in);
        bool reused = false;
        for (const Slot<char> &other : h.strings) reused = reused || (other.live && other.handle == s.handle);
        if (s.live || !reused) destroy_in(s, nyxq_string_destroy, "nyxq_string_destroy", NYXQ_ERROR_INVALID_ARGUMENT);
        break;
      }
    }
  }
  // Tensors before their contexts, as a trainer releases them.
  release_all(h.tensors, nyxq_tensor_destroy, "nyxq_tensor_destroy");
  release_all(h.plans, nyxq_plan_destroy, "nyxq_plan_destroy");
  release_all(h.strings, nyxq_string_destroy, "nyxq_string_destroy");
  release_all(h.models, nyxq_model_destroy, "nyxq_model_destroy");
  release_all(h.configs, nyxq_config_destroy, "nyxq_config_destroy");
  release_all(h.adams, nyxq_adam_destroy, "nyxq_adam_destroy");
  release_all(h.scalers, nyxq_loss_scaler_destroy, "nyxq_loss_scaler_destroy");
  release_all(h.contexts, nyxq_context_destroy, "nyxq_context_destroy");
  expect_no_live_handles("a handle sequence");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return nyxq_fuzz::run_one(data, size, run);
}
