// The project's C++ shim over MLX: the C functions Rust calls (cpu_gemv.cpp and cpu_qmm.cpp
// hold custom primitives and also include MLX headers). Every exported
// function wraps its body in SHIM_TRY so that no C++ exception crosses into Rust (an
// exception escaping an extern "C" function aborts the host process). See shim.h for the
// conventions.
#include "shim.h"
#include "exit_guard.h"
#include "dist_wait.h"
#include "cpu_fast.h"
#include "cpu_gemv.h"
#include "cpu_qmm.h"
#include "qmm_kernels.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <variant>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace {

thread_local std::string g_last_error;

void set_error(const char* msg) { g_last_error = msg ? msg : "unknown error"; }

// Variadic so that bodies containing commas (structured bindings, templates) pass whole.
// Every call holds a WorkScope, so that one still building a graph when the process exits
// is waited for (or parked) before MLX's static objects go (see exit_guard.cpp).
#define SHIM_TRY(...)                                  \
  try {                                                \
    shim_exit::WorkScope call_scope_(shim_exit::WorkScope::Kind::builds); \
    __VA_ARGS__;                                       \
    return 0;                                          \
  } catch (const std::exception& e) {                  \
    set_error(e.what());                               \
    return 1;                                          \
  } catch (...) {                                      \
    set_error("unknown C++ exception in MLX");         \
    return 1;                                          \
  }

// Handles are heap-allocated mx::array objects (and std::vector<mx::array> for shim_vec).
inline const mx::array& A(const shim_array* a) {
  if (!a) throw std::invalid_argument("null array handle");
  return *reinterpret_cast<const mx::array*>(a);
}
inline std::optional<mx::array> OPT(const shim_array* a) {
  if (!a) return std::nullopt;
  return *reinterpret_cast<const mx::array*>(a);
}
inline shim_array* H(mx::array a) {
  return reinterpret_cast<shim_array*>(new mx::array(std::move(a)));
}
inline std::vector<mx::array>& V(shim_vec* v) {
  if (!v) throw std::invalid_argument("null vector handle");
  return *reinterpret_cast<std::vector<mx::array>*>(v);
}
inline const std::vector<mx::array>& V(const shim_vec* v) {
  if (!v) throw std::invalid_argument("null vector handle");
  return *reinterpret_cast<const std::vector<mx::array>*>(v);
}
inline void put(shim_array** out, mx::array a) {
  if (!out) throw std::invalid_argument("null output pointer");
  *out = H(std::move(a));
}

mx::Shape to_shape(const int32_t* p, size_t n) {
  if (n && !p) throw std::invalid_argument("null shape pointer");
  return mx::Shape(p, p + n);
}
std::vector<int> to_ints(const int32_t* p, size_t n) {
  if (n && !p) throw std::invalid_argument("null axes pointer");
  return std::vector<int>(p, p + n);
}
std::vector<mx::array> to_arrays(const shim_array* const* arrs, size_t n) {
  if (n && !arrs) throw std::invalid_argument("null array list");
  std::vector<mx::array> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(A(arrs[i]));
  return v;
}

mx::Dtype to_dtype(int code) {
  switch (code) {
    case SHIM_BOOL: return mx::bool_;
    case SHIM_U8: return mx::uint8;
    case SHIM_U16: return mx::uint16;
    case SHIM_U32: return mx::uint32;
    case SHIM_U64: return mx::uint64;
    case SHIM_I8: return mx::int8;
    case SHIM_I16: return mx::int16;
    case SHIM_I32: return mx::int32;
    case SHIM_I64: return mx::int64;
    case SHIM_F16: return mx::float16;
    case SHIM_F32: return mx::float32;
    case SHIM_F64: return mx::float64;
    case SHIM_BF16: return mx::bfloat16;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(code));
}

int from_dtype(mx::Dtype d) {
  switch (d.val()) {
    case mx::Dtype::Val::bool_: return SHIM_BOOL;
    case mx::Dtype::Val::uint8: return SHIM_U8;
    case mx::Dtype::Val::uint16: return SHIM_U16;
    case mx::Dtype::Val::uint32: return SHIM_U32;
    case mx::Dtype::Val::uint64: return SHIM_U64;
    case mx::Dtype::Val::int8: return SHIM_I8;
    case mx::Dtype::Val::int16: return SHIM_I16;
    case mx::Dtype::Val::int32: return SHIM_I32;
    case mx::Dtype::Val::int64: return SHIM_I64;
    case mx::Dtype::Val::float16: return SHIM_F16;
    case mx::Dtype::Val::float32: return SHIM_F32;
    case mx::Dtype::Val::float64: return SHIM_F64;
    case mx::Dtype::Val::bfloat16: return SHIM_BF16;
    default: return -1;  // complex64: not exposed
  }
}

mx::Device to_device(int type, int index = 0) {
  if (type == 0) return mx::Device(mx::Device::cpu, index);
  if (type == 1) return mx::Device(mx::Device::gpu, index);
  throw std::invalid_argument("unknown device type " + std::to_string(type));
}

template <typename T>
mx::array typed_copy(const void* data, mx::Shape shape, mx::Dtype dtype) {
  return mx::array(static_cast<const T*>(data), std::move(shape), dtype);
}

}  // namespace

extern "C" {

const char* shim_last_error(void) { return g_last_error.c_str(); }
void shim_set_error(const char* msg) { set_error(msg); }
const char* shim_mlx_version(void) { return mx::version(); }

// ---- arrays -------------------------------------------------------------------------------

void shim_array_free(shim_array* a) {
  shim_exit::WorkScope scope(shim_exit::WorkScope::Kind::builds);
  delete reinterpret_cast<mx::array*>(a);
}

int shim_array_clone(const shim_array* a, shim_array** out) { SHIM_TRY(put(out, A(a))) }

int shim_array_from_data(const void* data, const int32_t* shape, size_t ndim, int dtype,
                         shim_array** out) {
  SHIM_TRY({
    auto s = to_shape(shape, ndim);
    size_t n = 1;
    for (auto d : s) {
      if (d < 0) throw std::invalid_argument("negative dimension in shape");
      n *= static_cast<size_t>(d);
    }
    if (n && !data) throw std::invalid_argument("null data pointer");
    auto dt = to_dtype(dtype);
    switch (dtype) {
      case SHIM_BOOL: put(out, typed_copy<bool>(data, s, dt)); break;
      case SHIM_U8: put(out, typed_copy<uint8_t>(data, s, dt)); break;
      case SHIM_U16: put(out, typed_copy<uint16_t>(data, s, dt)); break;
      case SHIM_U32: put(out, typed_copy<uint32_t>(data, s, dt)); break;
      case SHIM_U64: put(out, typed_copy<uint64_t>(data, s, dt)); break;
      case SHIM_I8: put(out, typed_copy<int8_t>(data, s, dt)); break;
      case SHIM_I16: put(out, typed_copy<int16_t>(data, s, dt)); break;
      case SHIM_I32: put(out, typed_copy<int32_t>(data, s, dt)); break;
      case SHIM_I64: put(out, typed_copy<int64_t>(data, s, dt)); break;
      case SHIM_F16: put(out, typed_copy<mx::float16_t>(data, s, dt)); break;
      case SHIM_F32: put(out, typed_copy<float>(data, s, dt)); break;
      case SHIM_F64: put(out, typed_copy<double>(data, s, dt)); break;
      case SHIM_BF16: put(out, typed_copy<mx::bfloat16_t>(data, s, dt)); break;
    }
  })
}

int shim_array_full(const int32_t* shape, size_t ndim, double value, int dtype,
                    shim_array** out) {
  SHIM_TRY({
    auto dt = to_dtype(dtype);
    // Build the fill value in a dtype every backend has, then cast (no float64 on GPUs).
    mx::array v = mx::issubdtype(dt, mx::floating) ? mx::array(static_cast<float>(value), dt)
                                                    : mx::array(static_cast<int64_t>(value), dt);
    put(out, mx::full(to_shape(shape, ndim), v, dt));
  })
}

int shim_array_arange(double start, double stop, double step, int dtype, shim_array** out) {
  SHIM_TRY(put(out, mx::arange(start, stop, step, to_dtype(dtype))))
}

size_t shim_array_ndim(const shim_array* a) { return a ? A(a).ndim() : 0; }
uintptr_t shim_array_id(const shim_array* a) { return a ? A(a).id() : 0; }
void shim_array_shape(const shim_array* a, int32_t* out) {
  if (!a || !out) return;
  const auto& s = A(a).shape();
  std::copy(s.begin(), s.end(), out);
}
int shim_array_dtype(const shim_array* a) { return a ? from_dtype(A(a).dtype()) : -1; }
size_t shim_array_size(const shim_array* a) { return a ? A(a).size() : 0; }
size_t shim_array_nbytes(const shim_array* a) { return a ? A(a).nbytes() : 0; }

int shim_array_copy_out(const shim_array* a, void* dst, size_t dst_len) {
  SHIM_TRY({
    shim_exit::WorkScope work;
    // Wait for this array alone. Only when its layout needs it is a contiguous copy
    // made: that copy is a new op, queued behind whatever was queued after the array (in
    // the decode loop, the whole next step), so reading a token through it would wait
    // for the step after it and undo the pipelining.
    mx::array c = A(a);
    shim_dist::eval({c});
    if (!c.flags().row_contiguous) {
      c = mx::contiguous(c);
      shim_dist::eval({c});
    }
    if (c.nbytes() != dst_len)
      throw std::invalid_argument("copy-out buffer holds " + std::to_string(dst_len) +
                                  " bytes, the array has " + std::to_string(c.nbytes()));
    if (dst_len) {
      if (!dst) throw std::invalid_argument("null destination buffer");
      std::memcpy(dst, c.data<char>(), dst_len);
    }
  })
}

int shim_array_bytes(const shim_array* a, const void** data, size_t* nbytes) {
  SHIM_TRY({
    if (!a || !data || !nbytes) throw std::invalid_argument("null argument");
    const mx::array& x = A(a);
    if (!x.is_available())
      throw std::invalid_argument("array bytes asked of an array that is not evaluated");
    if (!x.flags().row_contiguous)
      throw std::invalid_argument("array bytes asked of an array that is not row-contiguous");
    *nbytes = x.nbytes();
    *data = x.nbytes() ? x.data<char>() : nullptr;
  })
}

// ---- vectors ------------------------------------------------------------------------------

shim_vec* shim_vec_new(void) {
  try {
    return reinterpret_cast<shim_vec*>(new std::vector<mx::array>());
  } catch (...) {
    return nullptr;
  }
}
void shim_vec_free(shim_vec* v) {
  shim_exit::WorkScope scope(shim_exit::WorkScope::Kind::builds);
  delete reinterpret_cast<std::vector<mx::array>*>(v);
}
size_t shim_vec_len(const shim_vec* v) { return v ? V(v).size() : 0; }
int shim_vec_get(const shim_vec* v, size_t i, shim_array** out) {
  SHIM_TRY({
    const auto& vec = V(v);
    if (i >= vec.size()) throw std::out_of_range("vector index out of range");
    put(out, vec[i]);
  })
}
int shim_vec_push(shim_vec* v, const shim_array* a) { SHIM_TRY(V(v).push_back(A(a))) }

// ---- evaluation ---------------------------------------------------------------------------

// Every call that queues MLX work or waits for it holds a WorkScope, so that a process
// exiting meanwhile waits for that work instead of tearing OpenBLAS down under it (see
// exit_guard.cpp).
int shim_eval(const shim_array* const* arrs, size_t n) {
  SHIM_TRY(shim_exit::WorkScope work; shim_dist::eval(to_arrays(arrs, n)))
}
int shim_async_eval(const shim_array* const* arrs, size_t n) {
  SHIM_TRY(shim_exit::WorkScope work; mx::async_eval(to_arrays(arrs, n)))
}

int shim_graph_census(const shim_array* const* arrs, size_t n, char* buf, size_t cap,
                      size_t* needed) {
  SHIM_TRY({
    if (!needed) throw std::invalid_argument("null needed pointer");
    std::unordered_set<std::uintptr_t> seen;
    std::map<std::string, size_t> counts;
    std::vector<mx::array> todo = to_arrays(arrs, n);
    while (!todo.empty()) {
      mx::array a = std::move(todo.back());
      todo.pop_back();
      if (!seen.insert(a.id()).second) continue;
      // Computed (or queued) arrays and leaves cost nothing more.
      if (!a.has_primitive() || a.status() != mx::array::Status::unscheduled) continue;
      for (const auto& s : a.siblings()) seen.insert(s.id());
      counts[a.primitive().name()]++;
      for (const auto& in : a.inputs()) {
        if (!seen.count(in.id())) todo.push_back(in);
      }
    }
    std::vector<std::pair<std::string, size_t>> sorted(counts.begin(), counts.end());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& x, const auto& y) { return x.second > y.second; });
    std::string text;
    for (const auto& [name, count] : sorted) text += name + " " + std::to_string(count) + "\n";
    *needed = text.size() + 1;
    if (buf && cap >= text.size() + 1) std::memcpy(buf, text.c_str(), text.size() + 1);
  })
}

// ---- element-wise, matrix, reductions -------------------------------------------------------

int shim_unary(int op, const shim_array* a_, shim_array** out) {
  SHIM_TRY({
    const auto& a = A(a_);
    switch (op) {
      case 0: put(out, mx::negative(a)); break;
      case 1: put(out, mx::abs(a)); break;
      case 2: put(out, mx::exp(a)); break;
      case 3: put(out, mx::log(a)); break;
      case 4: put(out, mx::log1p(a)); break;
      case 5: put(out, mx::sqrt(a)); break;
      case 6: put(out, mx::rsqrt(a)); break;
      case 7: put(out, mx::square(a)); break;
      case 8: put(out, mx::sin(a)); break;
      case 9: put(out, mx::cos(a)); break;
      case 10: put(out, mx::tanh(a)); break;
      case 11: put(out, mx::erf(a)); break;
      case 12: put(out, mx::sigmoid(a)); break;
      case 13: put(out, mx::floor(a)); break;
      case 14: put(out, mx::ceil(a)); break;
      case 15: put(out, mx::logical_not(a)); break;
      case 16: put(out, mx::reciprocal(a)); break;
      case 17: put(out, mx::sign(a)); break;
      case 18: put(out, mx::stop_gradient(a)); break;
      case 19: put(out, mx::copy(a)); break;
      case 20: put(out, mx::expm1(a)); break;
      case 21: put(out, mx::round(a)); break;
      case 22: put(out, mx::erfinv(a)); break;
      case 23: put(out, mx::isnan(a)); break;
      case 24: put(out, mx::isinf(a)); break;
      default: throw std::invalid_argument("unknown unary op " + std::to_string(op));
    }
  })
}

int shim_binary(int op, const shim_array* a_, const shim_array* b_, shim_array** out) {
  SHIM_TRY({
    const auto& a = A(a_);
    const auto& b = A(b_);
    switch (op) {
      case 0: put(out, mx::add(a, b)); break;
      case 1: put(out, mx::subtract(a, b)); break;
      case 2: put(out, mx::multiply(a, b)); break;
      case 3: put(out, mx::divide(a, b)); break;
      case 4: put(out, mx::power(a, b)); break;
      case 5: put(out, mx::maximum(a, b)); break;
      case 6: put(out, mx::minimum(a, b)); break;
      case 7: put(out, mx::equal(a, b)); break;
      case 8: put(out, mx::not_equal(a, b)); break;
      case 9: put(out, mx::less(a, b)); break;
      case 10: put(out, mx::less_equal(a, b)); break;
      case 11: put(out, mx::greater(a, b)); break;
      case 12: put(out, mx::greater_equal(a, b)); break;
      case 13: put(out, mx::logical_and(a, b)); break;
      case 14: put(out, mx::logical_or(a, b)); break;
      case 15: put(out, mx::floor_divide(a, b)); break;
      case 16: put(out, mx::remainder(a, b)); break;
      case 17: {
        // One-row float32 products on the CPU go to BLAS's sgemv (cpu_gemv.h says why).
        auto row = mlxrun::cpu_gemv(a, b, std::nullopt, 1.f, 0.f);
        put(out, row ? std::move(*row) : mx::matmul(a, b));
        break;
      }
      case 18: put(out, mx::logaddexp(a, b)); break;
      default: throw std::invalid_argument("unknown binary op " + std::to_string(op));
    }
  })
}

int shim_reduce(int op, const shim_array* a_, const int32_t* axes_, size_t naxes, int all_axes,
                int keepdims, shim_array** out) {
  SHIM_TRY({
    const auto& a = A(a_);
    std::vector<int> axes;
    if (all_axes) {
      for (int i = 0; i < static_cast<int>(a.ndim()); ++i) axes.push_back(i);
    } else {
      axes = to_ints(axes_, naxes);
    }
    bool k = keepdims != 0;
    switch (op) {
      case 0: put(out, mx::sum(a, axes, k)); break;
      case 1: put(out, mx::mean(a, axes, k)); break;
      case 2: put(out, mx::max(a, axes, k)); break;
      case 3: put(out, mx::min(a, axes, k)); break;
      case 4: put(out, mx::prod(a, axes, k)); break;
      case 5: put(out, mx::logsumexp(a, axes, k)); break;
      case 6: put(out, mx::all(a, axes, k)); break;
      case 7: put(out, mx::any(a, axes, k)); break;
      default: throw std::invalid_argument("unknown reduction " + std::to_string(op));
    }
  })
}

int shim_arg_reduce(int op, const shim_array* a, int axis, int keepdims, shim_array** out) {
  SHIM_TRY({
    if (op == 0)
      put(out, mx::argmax(A(a), axis, keepdims != 0));
    else if (op == 1)
      put(out, mx::argmin(A(a), axis, keepdims != 0));
    else
      throw std::invalid_argument("unknown arg-reduction " + std::to_string(op));
  })
}

int shim_scan(int op, const shim_array* a_, int axis, int reverse, int inclusive,
              shim_array** out) {
  SHIM_TRY({
    const auto& a = A(a_);
    bool r = reverse != 0, inc = inclusive != 0;
    switch (op) {
      case 0: put(out, mx::cumsum(a, axis, r, inc)); break;
      case 1: put(out, mx::cumprod(a, axis, r, inc)); break;
      case 2: put(out, mx::cummax(a, axis, r, inc)); break;
      case 3: put(out, mx::cummin(a, axis, r, inc)); break;
      case 4: put(out, mx::logcumsumexp(a, axis, r, inc)); break;
      default: throw std::invalid_argument("unknown scan " + std::to_string(op));
    }
  })
}

int shim_where(const shim_array* c, const shim_array* x, const shim_array* y, shim_array** out) {
  SHIM_TRY(put(out, mx::where(A(c), A(x), A(y))))
}

int shim_clip(const shim_array* a, const shim_array* lo, const shim_array* hi,
              shim_array** out) {
  SHIM_TRY(put(out, mx::clip(A(a), OPT(lo), OPT(hi))))
}

int shim_astype(const shim_array* a, int dtype, shim_array** out) {
  SHIM_TRY(put(out, mx::astype(A(a), to_dtype(dtype))))
}

int shim_softmax(const shim_array* a, const int32_t* axes, size_t naxes, int precise,
                 shim_array** out) {
  SHIM_TRY(put(out, mx::softmax(A(a), to_ints(axes, naxes), precise != 0)))
}

int shim_addmm(const shim_array* c, const shim_array* a, const shim_array* b, float alpha,
               float beta, shim_array** out) {
  SHIM_TRY({
    auto row = mlxrun::cpu_gemv(A(a), A(b), A(c), alpha, beta);
    put(out, row ? std::move(*row) : mx::addmm(A(c), A(a), A(b), alpha, beta));
  })
}

int shim_gate_mul(int gate, const shim_array* g, const shim_array* u, shim_array** out) {
  SHIM_TRY({
    if (gate != 0 && gate != 1) throw std::invalid_argument("unknown gate activation code " + std::to_string(gate));
    const auto which = gate == 0 ? mlxrun::CpuGate::silu : mlxrun::CpuGate::gelu_tanh;
    // One node on the CPU (cpu_fast.h); elsewhere the ops it stands for.
    auto fast = mlxrun::cpu_gate_mul(which, A(g), A(u));
    put(out, fast ? std::move(*fast) : mlxrun::gate_mul_ops(which, A(g), A(u), mx::default_stream(mx::default_device())));
  })
}

int shim_cpu_fast_set_thread(int on, int* was) {
  SHIM_TRY({
    if (!was) throw std::invalid_argument("null output pointer");
    *was = mlxrun::cpu_fast_enabled() ? 1 : 0;
    mlxrun::cpu_fast_set_thread(on != 0);
  })
}

int shim_cpu_gemv_active(int* out) {
  SHIM_TRY({
    if (!out) throw std::invalid_argument("null output pointer");
    *out = mlxrun::cpu_gemv_available() ? 1 : 0;
  })
}

int shim_tri(int which, const shim_array* a, int k, shim_array** out) {
  SHIM_TRY(put(out, which == 0 ? mx::tril(A(a), k) : mx::triu(A(a), k)))
}

// ---- shape and indexing ---------------------------------------------------------------------

int shim_reshape(const shim_array* a, const int32_t* shape, size_t ndim, shim_array** out) {
  SHIM_TRY(put(out, mx::reshape(A(a), to_shape(shape, ndim))))
}
int shim_transpose(const shim_array* a, const int32_t* axes, size_t naxes, shim_array** out) {
  SHIM_TRY(put(out, mx::transpose(A(a), to_ints(axes, naxes))))
}
int shim_swapaxes(const shim_array* a, int axis1, int axis2, shim_array** out) {
  SHIM_TRY(put(out, mx::swapaxes(A(a), axis1, axis2)))
}
int shim_expand_dims(const shim_array* a, const int32_t* axes, size_t naxes, shim_array** out) {
  SHIM_TRY(put(out, mx::expand_dims(A(a), to_ints(axes, naxes))))
}
int shim_squeeze(const shim_array* a, const int32_t* axes, size_t naxes, shim_array** out) {
  SHIM_TRY(put(out, naxes ? mx::squeeze(A(a), to_ints(axes, naxes)) : mx::squeeze(A(a))))
}
int shim_flatten(const shim_array* a, int start_axis, int end_axis, shim_array** out) {
  SHIM_TRY(put(out, mx::flatten(A(a), start_axis, end_axis)))
}
int shim_broadcast_to(const shim_array* a, const int32_t* shape, size_t ndim,
                      shim_array** out) {
  SHIM_TRY(put(out, mx::broadcast_to(A(a), to_shape(shape, ndim))))
}
int shim_concatenate(const shim_array* const* arrs, size_t n, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::concatenate(to_arrays(arrs, n), axis)))
}
int shim_stack(const shim_array* const* arrs, size_t n, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::stack(to_arrays(arrs, n), axis)))
}
int shim_split(const shim_array* a, const int32_t* indices, size_t nindices, int axis,
               shim_vec* out) {
  SHIM_TRY({
    auto parts = mx::split(A(a), to_shape(indices, nindices), axis);
    auto& v = V(out);
    v.insert(v.end(), parts.begin(), parts.end());
  })
}
int shim_split_equal(const shim_array* a, int parts_n, int axis, shim_vec* out) {
  SHIM_TRY({
    auto parts = mx::split(A(a), parts_n, axis);
    auto& v = V(out);
    v.insert(v.end(), parts.begin(), parts.end());
  })
}
int shim_repeat(const shim_array* a, int repeats, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::repeat(A(a), repeats, axis)))
}
int shim_slice(const shim_array* a, const int32_t* start, const int32_t* stop,
               const int32_t* strides, size_t ndim, shim_array** out) {
  SHIM_TRY(put(out, mx::slice(A(a), to_shape(start, ndim), to_shape(stop, ndim),
                              to_shape(strides, ndim))))
}
int shim_slice_update(const shim_array* src, const shim_array* update, const int32_t* start,
                      const int32_t* stop, const int32_t* strides, size_t ndim,
                      shim_array** out) {
  SHIM_TRY(put(out, mx::slice_update(A(src), A(update), to_shape(start, ndim),
                                     to_shape(stop, ndim), to_shape(strides, ndim))))
}
int shim_slice_dynamic(const shim_array* a, const shim_array* start, const int32_t* axes,
                       size_t naxes, const int32_t* sizes, size_t nsizes, shim_array** out) {
  SHIM_TRY(put(out, mx::slice(A(a), A(start), to_ints(axes, naxes), to_shape(sizes, nsizes))))
}
int shim_slice_update_dynamic(const shim_array* src, const shim_array* update,
                              const shim_array* start, const int32_t* axes, size_t naxes,
                              shim_array** out) {
  SHIM_TRY(put(out, mx::slice_update(A(src), A(update), A(start), to_ints(axes, naxes))))
}
int shim_take(const shim_array* a, const shim_array* indices, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::take(A(a), A(indices), axis)))
}
int shim_take_along_axis(const shim_array* a, const shim_array* indices, int axis,
                         shim_array** out) {
  SHIM_TRY(put(out, mx::take_along_axis(A(a), A(indices), axis)))
}
int shim_put_along_axis(const shim_array* a, const shim_array* indices,
                        const shim_array* values, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::put_along_axis(A(a), A(indices), A(values), axis)))
}
int shim_contiguous(const shim_array* a, shim_array** out) {
  SHIM_TRY(put(out, mx::contiguous(A(a))))
}

// ---- sorting and selection --------------------------------------------------------------------

int shim_sort(const shim_array* a, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::sort(A(a), axis)))
}
int shim_argsort(const shim_array* a, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::argsort(A(a), axis)))
}
int shim_partition(const shim_array* a, int kth, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::partition(A(a), kth, axis)))
}
int shim_argpartition(const shim_array* a, int kth, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::argpartition(A(a), kth, axis)))
}
int shim_topk(const shim_array* a, int k, int axis, shim_array** out) {
  SHIM_TRY(put(out, mx::topk(A(a), k, axis)))
}

// ---- fast kernels -----------------------------------------------------------------------------

int shim_rms_norm(const shim_array* x, const shim_array* weight, float eps, shim_array** out) {
  SHIM_TRY({
    // On the CPU, one node instead of MLX's fallback composition (cpu_fast.h says why).
    auto fast = mlxrun::cpu_rms_norm(A(x), OPT(weight), eps);
    put(out, fast ? std::move(*fast) : mx::fast::rms_norm(A(x), OPT(weight), eps));
  })
}
int shim_cross_entropy(const shim_array* logits, const shim_array* targets, shim_array** out) {
  SHIM_TRY(put(out, mx::fast::cross_entropy(A(logits), A(targets))))
}
int shim_layer_norm(const shim_array* x, const shim_array* weight, const shim_array* bias,
                    float eps, shim_array** out) {
  SHIM_TRY(put(out, mx::fast::layer_norm(A(x), OPT(weight), OPT(bias), eps)))
}
int shim_rope(const shim_array* x, int dims, int traditional, int has_base, float base,
              float scale, int offset, const shim_array* freqs, shim_array** out) {
  SHIM_TRY({
    std::optional<float> b = has_base ? std::optional<float>(base) : std::nullopt;
    mx::array off(offset, mx::int32);
    auto fast = mlxrun::cpu_rope(A(x), dims, traditional != 0, b, scale, off, OPT(freqs));
    put(out, fast ? std::move(*fast) : mx::fast::rope(A(x), dims, traditional != 0, b, scale, off, OPT(freqs)));
  })
}
int shim_rope_dynamic(const shim_array* x, int dims, int traditional, int has_base, float base,
                      float scale, const shim_array* offset, const shim_array* freqs,
                      shim_array** out) {
  SHIM_TRY({
    std::optional<float> b = has_base ? std::optional<float>(base) : std::nullopt;
    auto fast = mlxrun::cpu_rope(A(x), dims, traditional != 0, b, scale, A(offset), OPT(freqs));
    put(out, fast ? std::move(*fast) : mx::fast::rope(A(x), dims, traditional != 0, b, scale, A(offset), OPT(freqs)));
  })
}
int shim_sdpa(const shim_array* q, const shim_array* k, const shim_array* v, float scale,
              const char* mask_mode, const shim_array* mask, const shim_array* sinks,
              shim_array** out) {
  SHIM_TRY({
    std::string mode = mask_mode ? mask_mode : "";
    if (mode.empty() && mask) mode = "array";
    if (mode.empty() && !sinks) {
      if (auto fast = mlxrun::cpu_decode_attention(A(q), A(k), A(v), scale)) {
        put(out, std::move(*fast));
        return 0;
      }
    }
    put(out, mx::fast::scaled_dot_product_attention(A(q), A(k), A(v), scale, mode, OPT(mask),
                                                    OPT(sinks)));
  })
}

// ---- quantization -----------------------------------------------------------------------------

int shim_quantize(const shim_array* w, int group_size, int bits, const char* mode,
                  shim_vec* out) {
  SHIM_TRY({
    auto parts = mx::quantize(A(w), group_size, bits, mode ? mode : "affine");
    auto& v = V(out);
    v.insert(v.end(), parts.begin(), parts.end());
  })
}
int shim_dequantize(const shim_array* w, const shim_array* scales, const shim_array* biases,
                    int group_size, int bits, const char* mode, int dtype, shim_array** out) {
  SHIM_TRY({
    std::optional<mx::Dtype> dt = dtype < 0 ? std::nullopt : std::optional(to_dtype(dtype));
    put(out, mx::dequantize(A(w), A(scales), OPT(biases), group_size, bits,
                            mode ? mode : "affine", std::nullopt, dt));
  })
}
int shim_quantized_matmul(const shim_array* x, const shim_array* w, const shim_array* scales,
                          const shim_array* biases, int transpose, int group_size, int bits,
                          const char* mode, shim_array** out) {
  SHIM_TRY(put(out, mx::quantized_matmul(A(x), A(w), A(scales), OPT(biases), transpose != 0,
                                         group_size, bits, mode ? mode : "affine")))
}
int shim_cpu_quantized_matmul(const shim_array* x, const shim_array* w, const shim_array* scales,
                              const shim_array* biases, int group_size, int bits, shim_array** out) {
  SHIM_TRY(put(out, mlxrun_shim::cpu_quantized_matmul(A(x), A(w), A(scales), A(biases), group_size, bits)))
}
int shim_cpu_qmm_set_portable(int portable) { return mlxrun_shim::qmm::set_isa(portable ? 1 : 0); }
int shim_cpu_qmm_set_int8_activations(int on) { return mlxrun_shim::qmm::set_int8_activations(on); }
const char* shim_cpu_qmm_isa(void) { return mlxrun_shim::qmm::isa_name(); }

// ---- random -----------------------------------------------------------------------------------

int shim_random_seed(uint64_t seed) { SHIM_TRY(mx::random::seed(seed)) }
int shim_random_key(uint64_t seed, shim_array** out) { SHIM_TRY(put(out, mx::random::key(seed))) }
int shim_random_split(const shim_array* key, int num, shim_array** out) {
  SHIM_TRY(put(out, mx::random::split(A(key), num)))
}
int shim_random_uniform(const shim_array* low, const shim_array* high, const int32_t* shape,
                        size_t ndim, int dtype, const shim_array* key, shim_array** out) {
  SHIM_TRY(put(out, mx::random::uniform(A(low), A(high), to_shape(shape, ndim),
                                        to_dtype(dtype), OPT(key))))
}
int shim_random_normal(const int32_t* shape, size_t ndim, int dtype, float loc, float scale,
                       const shim_array* key, shim_array** out) {
  SHIM_TRY(put(out, mx::random::normal(to_shape(shape, ndim), to_dtype(dtype), loc, scale,
                                       OPT(key))))
}
int shim_random_categorical(const shim_array* logits, int axis, int num_samples,
                            const shim_array* key, shim_array** out) {
  SHIM_TRY({
    if (num_samples > 0)
      put(out, mx::random::categorical(A(logits), axis, num_samples, OPT(key)));
    else
      put(out, mx::random::categorical(A(logits), axis, OPT(key)));
  })
}
int shim_random_randint(int low, int high, const int32_t* shape, size_t ndim, int dtype,
                        const shim_array* key, shim_array** out) {
  SHIM_TRY(put(out, mx::random::randint(mx::array(low), mx::array(high), to_shape(shape, ndim),
                                        to_dtype(dtype), OPT(key))))
}

// ---- devices and streams ------------------------------------------------------------------------

int shim_default_device(int* type, int* index) {
  SHIM_TRY({
    const auto& d = mx::default_device();
    if (type) *type = d.type == mx::Device::cpu ? 0 : 1;
    if (index) *index = d.index;
  })
}
int shim_set_default_device(int type, int index) {
  SHIM_TRY(mx::set_default_device(to_device(type, index)))
}
int shim_device_available(int type, int* available) {
  SHIM_TRY(*available = mx::is_available(to_device(type)) ? 1 : 0)
}
int shim_device_count(int type, int* count) {
  SHIM_TRY(*count = mx::device_count(type == 0 ? mx::Device::cpu : mx::Device::gpu))
}
int shim_default_stream(int type, int* stream_index) {
  SHIM_TRY(*stream_index = mx::default_stream(to_device(type)).index)
}
int shim_new_stream(int type, int* stream_index) {
  SHIM_TRY({
    auto s = mx::new_stream(to_device(type));
    shim_exit::track_stream(s);
    *stream_index = s.index;
  })
}
int shim_set_default_stream(int type, int stream_index) {
  SHIM_TRY(mx::set_default_stream(mx::Stream(stream_index, to_device(type))))
}
int shim_synchronize(int type, int stream_index) {
  SHIM_TRY({
    shim_exit::WorkScope work;
    if (stream_index < 0)
      mx::synchronize(mx::default_stream(to_device(type)));
    else
      mx::synchronize(mx::Stream(stream_index, to_device(type)));
  })
}

// ---- memory -------------------------------------------------------------------------------------

// The getters below have no failure path worth a status; they still never let an
// exception out (0 / no-op if the allocator ever threw).
// Guards the read-by-swap of the cache limit against a concurrent set, and records the
// wired limit MLX cannot report.
static std::mutex g_cache_limit_mutex;
static std::atomic<size_t> g_wired_limit{0};

#define SHIM_NOTHROW(expr, fallback) \
  try {                              \
    shim_exit::WorkScope call_scope_(shim_exit::WorkScope::Kind::builds); \
    return expr;                     \
  } catch (...) {                    \
    return fallback;                 \
  }

size_t shim_get_active_memory(void) { SHIM_NOTHROW(mx::get_active_memory(), 0) }
size_t shim_get_peak_memory(void) { SHIM_NOTHROW(mx::get_peak_memory(), 0) }
size_t shim_get_cache_memory(void) { SHIM_NOTHROW(mx::get_cache_memory(), 0) }
void shim_reset_peak_memory(void) { SHIM_NOTHROW(mx::reset_peak_memory(), void()) }
int shim_set_memory_limit(size_t limit, size_t* previous) {
  SHIM_TRY(*previous = mx::set_memory_limit(limit))
}
size_t shim_get_memory_limit(void) { SHIM_NOTHROW(mx::get_memory_limit(), 0) }
int shim_set_cache_limit(size_t limit, size_t* previous) {
  SHIM_TRY({
    std::lock_guard<std::mutex> lock(g_cache_limit_mutex);
    *previous = mx::set_cache_limit(limit);
  })
}
int shim_get_cache_limit(size_t* limit) {
  SHIM_TRY({
    std::lock_guard<std::mutex> lock(g_cache_limit_mutex);
    size_t current = mx::set_cache_limit(std::numeric_limits<size_t>::max());
    mx::set_cache_limit(current);
    *limit = current;
  })
}
int shim_set_wired_limit(size_t limit, size_t* previous) {
  SHIM_TRY({
    std::lock_guard<std::mutex> lock(g_cache_limit_mutex);
    *previous = mx::set_wired_limit(limit);
    g_wired_limit = limit;
  })
}
size_t shim_get_wired_limit(void) { return g_wired_limit.load(); }

int shim_device_info(int type, int index, shim_device_info_fn entry, void* ctx) {
  SHIM_TRY({
    if (!entry) throw std::invalid_argument("null device info callback");
    const auto& info = mx::device_info(to_device(type, index));
    for (const auto& [key, value] : info) {
      if (const auto* text = std::get_if<std::string>(&value))
        entry(ctx, key.c_str(), text->c_str(), 0);
      else
        entry(ctx, key.c_str(), nullptr, std::get<size_t>(value));
    }
  })
}
void shim_clear_cache(void) { SHIM_NOTHROW(mx::clear_cache(), void()) }

// ---- safetensors --------------------------------------------------------------------------------

}  // extern "C"

struct SafetensorsMap {
  std::vector<std::pair<std::string, mx::array>> tensors;  // sorted by name
  std::vector<std::pair<std::string, std::string>> meta;   // sorted by key
};

extern "C" {

int shim_load_safetensors(const char* path, shim_map** out) {
  SHIM_TRY({
    if (!path) throw std::invalid_argument("null path");
    auto [arrays, meta] = mx::load_safetensors(std::string(path));
    auto m = std::make_unique<SafetensorsMap>();
    for (auto& [k, v] : arrays) m->tensors.emplace_back(k, v);
    for (auto& [k, v] : meta) m->meta.emplace_back(k, v);
    std::sort(m->tensors.begin(), m->tensors.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::sort(m->meta.begin(), m->meta.end());
    *out = reinterpret_cast<shim_map*>(m.release());
  })
}
void shim_map_free(shim_map* m) {
  shim_exit::WorkScope scope(shim_exit::WorkScope::Kind::builds);
  delete reinterpret_cast<SafetensorsMap*>(m);
}
size_t shim_map_len(const shim_map* m) {
  return m ? reinterpret_cast<const SafetensorsMap*>(m)->tensors.size() : 0;
}
int shim_map_entry(const shim_map* m, size_t i, const char** name, shim_array** arr) {
  SHIM_TRY({
    auto* s = reinterpret_cast<const SafetensorsMap*>(m);
    if (!s || i >= s->tensors.size()) throw std::out_of_range("tensor index out of range");
    *name = s->tensors[i].first.c_str();
    put(arr, s->tensors[i].second);
  })
}
size_t shim_map_meta_len(const shim_map* m) {
  return m ? reinterpret_cast<const SafetensorsMap*>(m)->meta.size() : 0;
}
int shim_map_meta_entry(const shim_map* m, size_t i, const char** key, const char** value) {
  SHIM_TRY({
    auto* s = reinterpret_cast<const SafetensorsMap*>(m);
    if (!s || i >= s->meta.size()) throw std::out_of_range("metadata index out of range");
    *key = s->meta[i].first.c_str();
    *value = s->meta[i].second.c_str();
  })
}

}  // extern "C"

// ---- transformations ----------------------------------------------------------------------------

namespace {

// Wraps a caller-provided shim_fn as the std::function MLX's transforms take. A failure in
// the callback becomes a C++ exception here, which unwinds through MLX (never through the
// caller's frames: the callback has already returned) and is caught by SHIM_TRY.
std::function<std::vector<mx::array>(const std::vector<mx::array>&)> wrap(shim_fn fn,
                                                                          void* ctx) {
  if (!fn) throw std::invalid_argument("null function");
  return [fn, ctx](const std::vector<mx::array>& inputs) {
    std::vector<const shim_array*> ptrs;
    ptrs.reserve(inputs.size());
    for (const auto& a : inputs) ptrs.push_back(reinterpret_cast<const shim_array*>(&a));
    std::vector<mx::array> outputs;
    int rc = fn(ctx, ptrs.data(), ptrs.size(), reinterpret_cast<shim_vec*>(&outputs));
    if (rc != 0) throw std::runtime_error(g_last_error);
    return outputs;
  };
}

}  // namespace

struct shim_compiled {
  std::function<std::vector<mx::array>(const std::vector<mx::array>&)> fn;
};

extern "C" {

int shim_vjp(shim_fn fn, void* ctx, const shim_array* const* primals, size_t nprimals,
             const shim_array* const* cotangents, size_t ncotangents, shim_vec* outputs,
             shim_vec* vjps) {
  SHIM_TRY({
    auto [outs, grads] =
        mx::vjp(wrap(fn, ctx), to_arrays(primals, nprimals), to_arrays(cotangents, ncotangents));
    V(outputs) = std::move(outs);
    V(vjps) = std::move(grads);
  })
}

int shim_value_and_grad(shim_fn fn, void* ctx, const shim_array* const* inputs, size_t n,
                        const int32_t* argnums, size_t nargnums, shim_vec* values,
                        shim_vec* grads) {
  SHIM_TRY({
    auto vg = mx::value_and_grad(wrap(fn, ctx), to_ints(argnums, nargnums));
    auto [vals, gs] = vg(to_arrays(inputs, n));
    V(values) = std::move(vals);
    V(grads) = std::move(gs);
  })
}

int shim_compile(shim_fn fn, void* ctx, int shapeless, shim_compiled** out) {
  SHIM_TRY({
    auto c = std::make_unique<shim_compiled>();
    c->fn = mx::compile(wrap(fn, ctx), shapeless != 0);
    *out = c.release();
  })
}

int shim_checkpoint(shim_fn fn, void* ctx, void (*free_ctx)(void*), shim_compiled** out) {
  // Owned from the first line: the graph a call builds keeps copies of the function (its
  // backward pass calls it again), so ctx lives as long as the last of them. Should the
  // control block's allocation fail, shared_ptr frees ctx itself.
  SHIM_TRY({
    std::shared_ptr<void> owner(ctx, free_ctx);
    if (!fn) throw std::invalid_argument("null function");
    auto c = std::make_unique<shim_compiled>();
    auto call = wrap(fn, ctx);
    c->fn = mx::checkpoint([owner, call](const std::vector<mx::array>& inputs) { return call(inputs); });
    *out = c.release();
  })
}

int shim_compiled_call(const shim_compiled* f, const shim_array* const* inputs, size_t n,
                       shim_vec* outputs) {
  SHIM_TRY({
    if (!f) throw std::invalid_argument("null compiled function");
    V(outputs) = f->fn(to_arrays(inputs, n));
  })
}

void shim_compiled_free(shim_compiled* f) {
  shim_exit::WorkScope scope(shim_exit::WorkScope::Kind::builds);
  delete f;
}

}  // extern "C"
