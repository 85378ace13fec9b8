// See cpu_fast.h. Each primitive hands its loop to the CPU stream's command encoder, as
// MLX's own CPU primitives do (cpu_qmm.cpp says why), reads its inputs at their strides and
// writes a row-major output.
#include "cpu_fast.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "mlx/backend/cpu/encoder.h"
// No a·b + c is fused into one rounding here (GCC fuses them by default where FMA is in
// the target, as in the AVX2 clones below): MLX's CPU build rounds each step, and RMS norm,
// rotary and SiLU must give its bits. Explicit std::fma calls stay fused, as in MLX.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
// MLX's own CPU math (exp, sin, cos, sigmoid, rsqrt, tanh, pow), for its exact values. Its headers
// pun types and compare mixed signs; the shim is built with -fno-strict-aliasing (build.rs)
// so that the punning means what it says, and the warnings are MLX's, not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-aliasing"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "mlx/backend/cpu/binary_ops.h"
#include "mlx/backend/cpu/unary_ops.h"
#pragma GCC diagnostic pop
#include "mlx/fast_primitives.h"
#include "work_pool.h"

namespace mx = mlx::core;

namespace mlxrun {
namespace {

// Loops built for AVX2/FMA too where the CPU has it (chosen once at load by the dynamic
// linker) and for the baseline otherwise. What they call inline (MLX's exp, whose std::fma
// is then one instruction instead of a libm call) is built for the same target.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
#define FAST_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define FAST_CLONES
#endif

using Fallback = std::function<std::vector<mx::array>(std::vector<mx::array>)>;

thread_local bool t_off = false;

bool process_on() {
#if defined(__APPLE__)
  return false;
#else
  static const bool on = [] {
    const char* env = std::getenv("MLXRUN_CPU_FAST");
    return !(env && std::string(env) == "0");
  }();
  return on;
#endif
}

bool on_cpu(const mx::Stream& s) { return s.device.type == mx::Device::cpu; }

mx::Stream cpu_stream() { return mx::default_stream(mx::default_device()); }

// The offset of element `flat` (a row-major index over a's shape) in a's buffer.
int64_t offset_of(const mx::array& a, int64_t flat, int skip_last = 0) {
  int64_t off = 0;
  for (int d = a.ndim() - 1 - skip_last; d >= 0; --d) {
    const int64_t n = a.shape(d);
    off += (flat % n) * a.strides()[d];
    flat /= n;
  }
  return off;
}

// Whether `out` may take over `in`'s buffer, as MLX's own element-wise ops do: nothing but
// this node still uses `in` (MLX's test), and both are the same row-major float32 layout, so
// a kernel that reads each element (or each row) before writing it at the same place can
// run in place. Without it a prompt's norms, rotations and gates each held a second copy of
// their input while running, which MLX's composition of the same ops does not.
bool can_donate(const mx::array& in, const mx::array& out) {
  return in.is_donatable() && in.flags().row_contiguous && in.dtype() == out.dtype() &&
         in.shape() == out.shape() && in.data_size() == out.size();
}

// The hand-off every primitive here makes: the output allocated (before the task that
// writes it is made, since the task takes its pointer) or, where the kernel computes in
// place, given the buffer of the first of `donors` that can hand its own over; the inputs
// and output registered with the CPU encoder, which then queues the task on the stream.
mx::cpu::CommandEncoder& prepare(const mx::Stream& s, const std::vector<mx::array>& inputs, mx::array& out,
                                 std::initializer_list<size_t> donors = {}) {
  bool donated = false;
  for (size_t d : donors) {
    if (d < inputs.size() && can_donate(inputs[d], out)) {
      out.copy_shared_buffer(inputs[d]);
      donated = true;
      break;
    }
  }
  if (!donated) out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& enc = mx::cpu::get_command_encoder(s);
  for (const auto& in : inputs) enc.set_input_array(in);
  enc.set_output_array(out);
  return enc;
}

// The common body of the three: one float32 output, evaluated on the CPU only, its
// derivatives and batching those of `fallback`, MLX's composition of the same function
// (differentiated and vectorised as MLX would have done it had the composition been
// built in its place).
class CpuCustom : public mx::Primitive {
 public:
  CpuCustom(mx::Stream s, Fallback f) : mx::Primitive(s), fallback_(std::move(f)) {}

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error(std::string(name()) + " runs on the CPU only");
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape()};
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    auto grads = mx::vjp(fallback_, primals, cotangents).second;
    std::vector<mx::array> picked;
    for (int a : argnums) picked.push_back(grads[a]);
    return picked;
  }

  std::vector<mx::array> jvp(const std::vector<mx::array>& primals, const std::vector<mx::array>& tangents,
                             const std::vector<int>& argnums) override {
    // MLX's jvp wants a tangent for every primal: zeros where none was given.
    std::vector<mx::array> all;
    for (size_t i = 0, j = 0; i < primals.size(); ++i) {
      if (j < argnums.size() && argnums[j] == static_cast<int>(i))
        all.push_back(tangents[j++]);
      else
        all.push_back(mx::zeros_like(primals[i]));
    }
    return mx::jvp(fallback_, primals, all).second;
  }

  std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array>& inputs,
                                                           const std::vector<int>& axes) override {
    auto outs = mx::vmap(fallback_, axes)(inputs);
    return {outs, std::vector<int>(outs.size(), 0)};
  }

 protected:
  Fallback fallback_;
};

// ---- RMS norm ------------------------------------------------------------------------------

class CpuRmsNorm : public CpuCustom {
 public:
  CpuRmsNorm(mx::Stream s, Fallback f, float eps) : CpuCustom(s, std::move(f)), eps_(eps) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& outs) override {
    auto& out = outs[0];
    // In place on x where it can: each row is summed before any of it is written, and each
    // element read before its own place is written.
    prepare(stream(), in, out, {0}).dispatch([x = mx::array::unsafe_weak_copy(in[0]), w = mx::array::unsafe_weak_copy(in[1]),
                                 y = out.data<float>(), eps = eps_]() {
      const int D = x.shape(-1);
      const int64_t rows = D == 0 ? 0 : static_cast<int64_t>(x.size() / D);
      const int64_t xs = x.strides().back();
      const float* wp = w.data<float>();
      const int64_t ws = w.ndim() == 0 ? 0 : w.strides()[0];
      // mean(x²) as MLX's ops compute it on this CPU: each square rounded, summed one
      // after another (MLX's x86 build reduces one lane at a time), times 1/D. The same
      // bits as the fallback, so a quantized KV cache rounds the same keys the same way.
      const float inv_d = 1.0f / static_cast<float>(D);
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x.data<float>() + offset_of(x, r, 1);
        float ss = 0.f;
        for (int k = 0; k < D; ++k) {
          const float sq = xr[k * xs] * xr[k * xs];
          ss += sq;
        }
        const float n = mx::detail::Rsqrt{}(ss * inv_d + eps);
        float* yr = y + r * D;
        for (int i = 0; i < D; ++i) yr[i] = (xr[i * xs] * n) * wp[i * ws];
      }
    });
  }

  const char* name() const override { return "CpuRmsNorm"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return eps_ == static_cast<const CpuRmsNorm&>(other).eps_;
  }

 private:
  float eps_;
};

// ---- Rotary positions ----------------------------------------------------------------------

class CpuRope : public CpuCustom {
 public:
  CpuRope(mx::Stream s, Fallback f, int dims, bool traditional, float base, float scale)
      : CpuCustom(s, std::move(f)), dims_(dims), traditional_(traditional), base_(base), scale_(scale) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& outs) override {
    auto& out = outs[0];
    std::optional<mx::array> freqs;
    if (in.size() > 2) freqs = mx::array::unsafe_weak_copy(in[2]);
    // In place on x where it can: each rotated pair is read before either half is written.
    prepare(stream(), in, out, {0}).dispatch([x = mx::array::unsafe_weak_copy(in[0]), off = mx::array::unsafe_weak_copy(in[1]),
                                 freqs, y = out.data<float>(), dims = dims_, trad = traditional_,
                                 base = base_, scale = scale_]() {
      const int D = x.shape(-1), T = x.shape(-2), B = x.shape(0), half = dims / 2;
      const int64_t rows = D == 0 ? 0 : static_cast<int64_t>(x.size() / D);
      const int64_t per_batch = B == 0 ? 0 : rows / B;
      const int64_t xs = x.strides().back();
      // The inverse frequencies as the fallback computes them: exp(-i·log(base)/half), or
      // 1/freqs.
      std::vector<float> inv(half);
      const float step = std::log(base) / half;
      for (int i = 0; i < half; ++i) {
        inv[i] = freqs ? 1.0f / freqs->data<float>()[i * freqs->strides()[0]]
                       : mx::detail::Exp{}(static_cast<float>(-i) * step);
      }
      // cos and sin of each position's angles, once per (batch row, position): every head
      // of a row shares them. With one offset for all rows, batch row 0's serve all.
      const int32_t* offs = off.data<int32_t>();
      const bool per_row = off.size() > 1;
      const int tables = per_row ? B : 1;
      std::vector<float> cs(static_cast<size_t>(tables) * T * half), sn(cs.size());
      for (int b = 0; b < tables; ++b) {
        const int32_t o = offs[per_row ? b * off.strides()[0] : 0];
        for (int t = 0; t < T; ++t) {
          const float pos = (static_cast<float>(t) + static_cast<float>(o)) * scale;
          const size_t at = (static_cast<size_t>(b) * T + t) * half;
          for (int i = 0; i < half; ++i) {
            const float theta = pos * inv[i];
            cs[at + i] = mx::detail::Cos{}(theta);
            sn[at + i] = mx::detail::Sin{}(theta);
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int t = static_cast<int>(r % T);
        const int b = per_row ? static_cast<int>(r / per_batch) : 0;
        const float* c_row = cs.data() + (static_cast<size_t>(b) * T + t) * half;
        const float* s_row = sn.data() + (static_cast<size_t>(b) * T + t) * half;
        const float* xr = x.data<float>() + offset_of(x, r, 1);
        float* yr = y + r * D;
        for (int i = 0; i < half; ++i) {
          const int i1 = trad ? 2 * i : i, i2 = trad ? 2 * i + 1 : i + half;
          const float x1 = xr[i1 * xs], x2 = xr[i2 * xs];
          // Each product rounded on its own, as the fallback's separate ops do.
          const float a = x1 * c_row[i], bb = x2 * s_row[i], c = x1 * s_row[i], d = x2 * c_row[i];
          yr[i1] = a - bb;
          yr[i2] = c + d;
        }
        for (int i = dims; i < D; ++i) yr[i] = xr[i * xs];
      }
    });
  }

  const char* name() const override { return "CpuRope"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const CpuRope&>(other);
    return dims_ == o.dims_ && traditional_ == o.traditional_ && base_ == o.base_ && scale_ == o.scale_;
  }

 private:
  int dims_;
  bool traditional_;
  float base_;
  float scale_;
};

// ---- Gates: SiLU (SwiGLU) and the tanh GELU (GeGLU) ------------------------------------------

inline float silu_mul_one(float g, float u) {
  const float a = g * mx::detail::Sigmoid{}(g);
  return a * u;
}

// sqrt(2/π) as nn/mlp.rs computes it, in double.
const double kSqrt2OverPi = std::sqrt(2.0 / 3.14159265358979323846);

// 0.5 g (1 + tanh(sqrt(2/π) (g + 0.044715 g³))) · u in the order and roundings of the ops it
// replaces (mlx.nn.gelu_approx's, as nn/mlp.rs builds them; each constant a float32), with
// MLX's own pow and tanh.
inline float gelu_tanh_mul_one(float g, float u) {
  const float cubed = mx::detail::Power{}(g, 3.0f);
  const float inner = g + cubed * static_cast<float>(0.044715);
  const float t = mx::detail::Tanh{}(inner * static_cast<float>(kSqrt2OverPi));
  const float half = g * 0.5f;
  const float a = half * (t + 1.0f);
  return a * u;
}

FAST_CLONES void silu_mul_dense(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu_mul_one(g[i], u[i]);
}

FAST_CLONES void gelu_tanh_mul_dense(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh_mul_one(g[i], u[i]);
}

// act(g) · u, each step rounded as MLX's separate ops are, with MLX's own sigmoid, pow and
// tanh: the same bits as the nodes it replaces (3 for SiLU, 10 for the tanh GELU, whose
// constants are 5 more).
class CpuGateMul : public CpuCustom {
 public:
  CpuGateMul(mx::Stream s, Fallback f, CpuGate gate) : CpuCustom(s, std::move(f)), gate_(gate) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& outs) override {
    auto& out = outs[0];
    // In place on g or u where one can: element i is read from both before it is written.
    prepare(stream(), in, out, {0, 1}).dispatch([g = mx::array::unsafe_weak_copy(in[0]), u = mx::array::unsafe_weak_copy(in[1]),
                                         y = out.data<float>(), gate = gate_]() {
      const int64_t n = static_cast<int64_t>(g.size());
      const float* gp = g.data<float>();
      const float* up = u.data<float>();
      const bool silu = gate == CpuGate::silu;
      if (g.flags().row_contiguous && u.flags().row_contiguous) {
        // A prompt's gate (a few million values) in blocks over the pool's threads: one
        // thread alone was slower than MLX's separate ops. A decode row stays on this one.
        auto dense = silu ? silu_mul_dense : gelu_tanh_mul_dense;
        constexpr int64_t kBlock = 1 << 15;
        const int64_t blocks = (n + kBlock - 1) / kBlock;
        if (blocks < 2) {
          dense(gp, up, y, n);
          return;
        }
        mlxrun_shim::parallel_for(static_cast<int>(blocks), [&](int b) {
          const int64_t at = b * kBlock;
          dense(gp + at, up + at, y + at, std::min(kBlock, n - at));
        });
        return;
      }
      for (int64_t i = 0; i < n; ++i) {
        const float a = gp[offset_of(g, i)], b = up[offset_of(u, i)];
        y[i] = silu ? silu_mul_one(a, b) : gelu_tanh_mul_one(a, b);
      }
    });
  }

  const char* name() const override { return gate_ == CpuGate::silu ? "CpuSiluMul" : "CpuGeluTanhMul"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return gate_ == static_cast<const CpuGateMul&>(other).gate_;
  }

 private:
  CpuGate gate_;
};

// ---- Single-query attention ----------------------------------------------------------------

inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[k + j] * b[k + j];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

inline void axpy(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

// One query head (qs, already scaled) against S keys and values, rows of D and Dv
// adjacent floats krow and vrow apart: y = softmax(qs·kᵀ) v, with p as scratch for S scores.
// One function, so that the scores, MLX's exp and the row updates all run in one clone.
FAST_CLONES void attend_head(const float* qs, const float* k, int64_t krow, const float* v, int64_t vrow, int S,
                             int D, int Dv, float* p, float* y) {
  float m = -INFINITY;
  for (int j = 0; j < S; ++j) {
    p[j] = dot(qs, k + j * krow, D);
    m = std::max(m, p[j]);
  }
  float sum = 0.f;
  for (int j = 0; j < S; ++j) sum += (p[j] = mx::detail::Exp{}(p[j] - m));
  const float norm = 1.0f / sum;
  std::fill(y, y + Dv, 0.f);
  for (int j = 0; j < S; ++j) axpy(p[j] * norm, v + j * vrow, y, Dv);
}

// Below this many multiply-adds an attention runs on one thread.
constexpr int64_t kMinParallelWork = 1 << 16;

class CpuDecodeAttention : public CpuCustom {
 public:
  CpuDecodeAttention(mx::Stream s, Fallback f, float scale) : CpuCustom(s, std::move(f)), scale_(scale) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& outs) override {
    auto& out = outs[0];
    prepare(stream(), in, out).dispatch([q = mx::array::unsafe_weak_copy(in[0]), k = mx::array::unsafe_weak_copy(in[1]),
                                 v = mx::array::unsafe_weak_copy(in[2]), y = out.data<float>(), scale = scale_]() {
      const int B = q.shape(0), Hq = q.shape(1), D = q.shape(3);
      const int Hkv = k.shape(1), S = k.shape(2), Dv = v.shape(3);
      const int rep = Hq / Hkv;
      auto head = [&](int i) {
        const int b = i / Hq, h = i % Hq, kvh = h / rep;
        // q scaled first and rounded, as the fallback multiplies before its matmul.
        std::vector<float> qs(D), p(S);
        const float* qr = q.data<float>() + b * q.strides()[0] + h * q.strides()[1];
        for (int d = 0; d < D; ++d) qs[d] = scale * qr[d * q.strides()[3]];
        const float* kb = k.data<float>() + b * k.strides()[0] + kvh * k.strides()[1];
        const float* vb = v.data<float>() + b * v.strides()[0] + kvh * v.strides()[1];
        // Keys and values whose elements are not adjacent (a transposed view: strides are
        // known only now, at evaluation) are gathered into rows first.
        const int64_t ks = k.strides()[3], vs = v.strides()[3];
        std::vector<float> kg, vg;
        auto rows = [S](const float* src, int64_t row, int64_t stride, int n, std::vector<float>& keep) {
          keep.resize(static_cast<size_t>(S) * n);
          for (int j = 0; j < S; ++j)
            for (int d = 0; d < n; ++d) keep[static_cast<size_t>(j) * n + d] = src[j * row + d * stride];
          return keep.data();
        };
        const float* kr = ks == 1 ? kb : rows(kb, k.strides()[2], ks, D, kg);
        const float* vr = vs == 1 ? vb : rows(vb, v.strides()[2], vs, Dv, vg);
        attend_head(qs.data(), kr, ks == 1 ? k.strides()[2] : D, vr, vs == 1 ? v.strides()[2] : Dv, S, D, Dv, p.data(),
                    y + static_cast<int64_t>(i) * Dv);
      };
      const int n = B * Hq;
      if (static_cast<int64_t>(n) * S * (D + Dv) >= kMinParallelWork)
        mlxrun_shim::parallel_for(n, head);
      else
        for (int i = 0; i < n; ++i) head(i);
    });
  }

  const char* name() const override { return "CpuDecodeAttention"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return scale_ == static_cast<const CpuDecodeAttention&>(other).scale_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    return {{in[0].shape(0), in[0].shape(1), in[0].shape(2), in[2].shape(3)}};
  }

 private:
  float scale_;
};

}  // namespace

bool cpu_fast_enabled() { return process_on() && !t_off; }

void cpu_fast_set_thread(bool on) { t_off = !on; }

std::optional<mx::array> cpu_rms_norm(const mx::array& x, const std::optional<mx::array>& w, float eps) {
  auto s = cpu_stream();
  if (!cpu_fast_enabled() || !on_cpu(s) || x.dtype() != mx::float32 || x.ndim() == 0) return std::nullopt;
  if (w && (w->dtype() != mx::float32 || w->ndim() != 1 || w->size() != static_cast<size_t>(x.shape(-1))))
    return std::nullopt;
  const bool has_w = w.has_value();
  auto fallback = [eps, has_w, s](std::vector<mx::array> in) {
    return std::vector<mx::array>{
        mx::fast::rms_norm(in[0], has_w ? std::optional<mx::array>(in[1]) : std::nullopt, eps, s)};
  };
  return mx::array(x.shape(), mx::float32, std::make_shared<CpuRmsNorm>(s, fallback, eps),
                   {x, has_w ? *w : mx::array(1.0f)});
}

std::optional<mx::array> cpu_rope(const mx::array& x, int dims, bool traditional, std::optional<float> base,
                                  float scale, const mx::array& offset, const std::optional<mx::array>& freqs) {
  auto s = cpu_stream();
  if (!cpu_fast_enabled() || !on_cpu(s) || x.dtype() != mx::float32 || x.ndim() < 3) return std::nullopt;
  // The shapes and types MLX's own checks would refuse are left to it, for its messages.
  if (dims <= 0 || dims % 2 != 0 || dims > x.shape(-1) || offset.dtype() != mx::int32 || offset.ndim() > 1 ||
      (offset.size() != 1 && offset.size() != static_cast<size_t>(x.shape(0))) || base.has_value() == freqs.has_value())
    return std::nullopt;
  if (freqs && (freqs->dtype() != mx::float32 || freqs->ndim() != 1 || freqs->shape(0) != dims / 2))
    return std::nullopt;
  auto fallback = [dims, traditional, base, scale, s](std::vector<mx::array> in) {
    std::optional<mx::array> f;
    if (in.size() > 2) f = in[2];
    return std::vector<mx::array>{mx::fast::rope(in[0], dims, traditional, base, scale, in[1], f, s)};
  };
  std::vector<mx::array> inputs{x, offset};
  if (freqs) inputs.push_back(*freqs);
  return mx::array(x.shape(), mx::float32,
                   std::make_shared<CpuRope>(s, fallback, dims, traditional, base.value_or(1.0f), scale),
                   std::move(inputs));
}

mx::array gate_mul_ops(CpuGate gate, const mx::array& g, const mx::array& u, const mx::Stream& s) {
  if (gate == CpuGate::silu) return mx::multiply(mx::multiply(g, mx::sigmoid(g, s), s), u, s);
  // Scalars made as the project's Array::full makes them (a float32 value, then the dtype).
  auto c = [&](double v) { return mx::full({}, mx::array(static_cast<float>(v), g.dtype()), g.dtype(), s); };
  auto inner = mx::add(g, mx::multiply(mx::power(g, c(3.0), s), c(0.044715), s), s);
  auto t = mx::tanh(mx::multiply(inner, c(kSqrt2OverPi), s), s);
  return mx::multiply(mx::multiply(mx::multiply(g, c(0.5), s), mx::add(t, c(1.0), s), s), u, s);
}

std::optional<mx::array> cpu_gate_mul(CpuGate gate, const mx::array& g, const mx::array& u) {
  auto s = cpu_stream();
  if (!cpu_fast_enabled() || !on_cpu(s) || g.dtype() != mx::float32 || u.dtype() != mx::float32 ||
      g.shape() != u.shape())
    return std::nullopt;
  auto fallback = [gate, s](std::vector<mx::array> in) {
    return std::vector<mx::array>{gate_mul_ops(gate, in[0], in[1], s)};
  };
  return mx::array(g.shape(), mx::float32, std::make_shared<CpuGateMul>(s, fallback, gate), {g, u});
}

std::optional<mx::array> cpu_decode_attention(const mx::array& q, const mx::array& k, const mx::array& v,
                                              float scale) {
  auto s = cpu_stream();
  if (!cpu_fast_enabled() || !on_cpu(s)) return std::nullopt;
  for (const auto* a : {&q, &k, &v})
    if (a->dtype() != mx::float32 || a->ndim() != 4) return std::nullopt;
  if (q.shape(2) != 1 || k.shape(0) != q.shape(0) || v.shape(0) != q.shape(0) || k.shape(1) != v.shape(1) ||
      k.shape(2) != v.shape(2) || k.shape(3) != q.shape(3) || k.shape(1) == 0 || q.shape(1) % k.shape(1) != 0 ||
      k.shape(2) == 0)
    return std::nullopt;
  auto fallback = [scale, s](std::vector<mx::array> in) {
    return std::vector<mx::array>{
        mx::fast::scaled_dot_product_attention(in[0], in[1], in[2], scale, "", std::nullopt, std::nullopt, false, s)};
  };
  mx::Shape shape{q.shape(0), q.shape(1), 1, v.shape(3)};
  return mx::array(std::move(shape), mx::float32, std::make_shared<CpuDecodeAttention>(s, fallback, scale),
                   {q, k, v});
}

}  // namespace mlxrun
