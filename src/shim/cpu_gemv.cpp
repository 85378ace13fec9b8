// See cpu_gemv.h. The product is an MLX primitive of the project's own, so it joins MLX's
// graph like any op: evaluated on the CPU stream's thread in order with the ops around it,
// differentiable (its vector-Jacobian and Jacobian-vector products are ordinary MLX
// matmuls), and never created for another device.
#include "cpu_gemv.h"

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#if !defined(__APPLE__)
#include <dlfcn.h>
#endif

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace mlxrun {
namespace {

// cblas_sgemv's C signature; the enums are passed as their CBLAS values.
using SgemvFn = void (*)(int order, int trans, int m, int n, float alpha, const float* a,
                         int lda, const float* x, int incx, float beta, float* y, int incy);
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;

// Looked up at run time rather than linked, so that a build whose MLX carries its own BLAS
// (the CUDA wheel, no OpenBLAS) links all the same; without the symbol the route is off.
// On macOS MLX's CPU matmul goes to Accelerate, which this was not measured against.
SgemvFn sgemv() {
  static const SgemvFn fn = []() -> SgemvFn {
    const char* env = std::getenv("MLXRUN_CPU_GEMV");
    if (env && std::string(env) == "0") return nullptr;
#if defined(__APPLE__)
    return nullptr;
#else
    return reinterpret_cast<SgemvFn>(dlsym(RTLD_DEFAULT, "cblas_sgemv"));
#endif
  }();
  return fn;
}

// y[N] = alpha * x[K] @ b[K, N] + beta * y, with b at any strides.
void row_times_matrix(SgemvFn fn, const float* x, const float* b, int64_t s0, int64_t s1, int K,
                      int N, float alpha, float beta, float* y) {
  if (K > 1 && N > 1 && s1 == 1 && s0 >= N) {
    // b is row-major [K, N] with leading dimension s0: y = bᵀ x.
    fn(kRowMajor, kTrans, K, N, alpha, b, static_cast<int>(s0), x, 1, beta, y, 1);
  } else if (K > 1 && N > 1 && s0 == 1 && s1 >= K) {
    // b is the transpose of a row-major [N, K] matrix (a Linear's weight): y = W x.
    fn(kRowMajor, kNoTrans, N, K, alpha, b, static_cast<int>(s1), x, 1, beta, y, 1);
  } else {
    // Degenerate or oddly strided: a plain loop (vectors, broadcast views).
    for (int j = 0; j < N; ++j) {
      float acc = 0.f;
      for (int k = 0; k < K; ++k) acc += x[k] * b[k * s0 + j * s1];
      y[j] = alpha * acc + (beta == 0.f ? 0.f : beta * y[j]);
    }
  }
}

class RowGemv : public mx::UnaryPrimitive {
 public:
  RowGemv(mx::Stream s, float alpha, float beta) : mx::UnaryPrimitive(s), alpha_(alpha), beta_(beta) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    const int K = in[1].shape(0);
    const int N = in[1].shape(1);
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (const auto& a : in) enc.set_input_array(a);
    enc.set_output_array(out);
    // Weak copies hold the inputs' data without keeping their graphs alive.
    auto a = mx::array::unsafe_weak_copy(in[0]);
    auto b = mx::array::unsafe_weak_copy(in[1]);
    std::optional<mx::array> c;
    if (in.size() > 2) c = mx::array::unsafe_weak_copy(in[2]);
    enc.dispatch([a = std::move(a), b = std::move(b), c = std::move(c), y = out.data<float>(), K,
                  N, alpha = alpha_, beta = beta_]() {
      // The row may be a strided view (a column of something); BLAS wants it dense.
      const int64_t xs = a.ndim() ? a.strides().back() : 1;
      std::vector<float> dense;
      const float* x = a.data<float>();
      if (xs != 1 && K > 1) {
        dense.resize(K);
        for (int k = 0; k < K; ++k) dense[k] = x[k * xs];
        x = dense.data();
      }
      float beta_used = 0.f;
      if (c) {
        const int64_t cs = c->strides().back();
        const float* cp = c->data<float>();
        for (int j = 0; j < N; ++j) y[j] = cp[j * cs];
        beta_used = beta;
      }
      if (N == 0) return;
      if (K == 0) {
        for (int j = 0; j < N; ++j) y[j] = beta_used == 0.f ? 0.f : beta_used * y[j];
        return;
      }
      row_times_matrix(sgemv(), x, b.data<float>(), b.strides()[0], b.strides()[1], K, N, alpha,
                       beta_used, y);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[mlxrun cpu_gemv] the one-row product has no GPU kernel");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>&) override {
    const auto& a = primals[0];
    const auto& b = primals[1];
    const int K = b.shape(0);
    const int N = b.shape(1);
    auto g = mx::reshape(cotangents[0], {1, N});
    std::vector<mx::array> grads;
    for (int arg : argnums) {
      if (arg == 0) {
        grads.push_back(mx::reshape(mx::multiply(mx::matmul(g, mx::transpose(b)), mx::array(alpha_)), a.shape()));
      } else if (arg == 1) {
        grads.push_back(mx::multiply(mx::matmul(mx::reshape(a, {K, 1}), g), mx::array(alpha_)));
      } else {
        grads.push_back(mx::reshape(mx::multiply(g, mx::array(beta_)), primals[2].shape()));
      }
    }
    return grads;
  }

  std::vector<mx::array> jvp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& tangents,
                             const std::vector<int>& argnums) override {
    const auto shape = out_shape(primals[0], primals[1]);
    auto t = mx::zeros(shape, mx::float32);
    for (size_t i = 0; i < argnums.size(); ++i) {
      const auto& d = tangents[i];
      switch (argnums[i]) {
        case 0: t = mx::add(t, mx::multiply(mx::matmul(d, primals[1]), mx::array(alpha_))); break;
        case 1: t = mx::add(t, mx::multiply(mx::matmul(primals[0], d), mx::array(alpha_))); break;
        default: t = mx::add(t, mx::multiply(mx::broadcast_to(d, shape), mx::array(beta_)));
      }
    }
    return {t};
  }

  std::pair<std::vector<mx::array>, std::vector<int>> vmap(const std::vector<mx::array>&,
                                                           const std::vector<int>&) override {
    throw std::invalid_argument("[mlxrun cpu_gemv] vmap over the one-row product is not supported");
  }

  const char* name() const override { return "MlxrunCpuGemv"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const RowGemv*>(&other);
    return o && o->alpha_ == alpha_ && o->beta_ == beta_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    return {out_shape(in[0], in[1])};
  }

  static mx::Shape out_shape(const mx::array& a, const mx::array& b) {
    mx::Shape s = a.shape();
    s.back() = b.shape(1);
    return s;
  }

 private:
  float alpha_;
  float beta_;
};

}  // namespace

bool cpu_gemv_available() { return sgemv() != nullptr; }

std::optional<mx::array> cpu_gemv(const mx::array& a, const mx::array& b,
                                  const std::optional<mx::array>& c, float alpha, float beta) {
  if (!sgemv() || mx::default_device() != mx::Device::cpu) return std::nullopt;
  if (a.dtype() != mx::float32 || b.dtype() != mx::float32 || b.ndim() != 2 || a.ndim() < 1 ||
      a.shape(-1) != b.shape(0))
    return std::nullopt;
  for (int i = 0; i + 1 < static_cast<int>(a.ndim()); ++i)
    if (a.shape(i) != 1) return std::nullopt;
  const int N = b.shape(1);
  if (c && (c->dtype() != mx::float32 || c->ndim() < 1 || c->ndim() > a.ndim() ||
            c->shape(-1) != N || static_cast<int64_t>(c->size()) != N))
    return std::nullopt;
  std::vector<mx::array> inputs{a, b};
  if (c) inputs.push_back(*c);
  return mx::array(RowGemv::out_shape(a, b), mx::float32,
                   std::make_shared<RowGemv>(mx::default_stream(mx::Device::cpu), alpha, c ? beta : 0.f),
                   std::move(inputs));
}

}  // namespace mlxrun
