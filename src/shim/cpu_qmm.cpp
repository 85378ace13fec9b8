// See cpu_qmm.h. The primitive's eval_cpu hands the kernel to the CPU stream's command
// encoder, as MLX's own CPU primitives do: when eval_cpu runs, the inputs have their
// buffers but not necessarily their values, which the stream's earlier tasks write.
#include "cpu_qmm.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"
#include "qmm_kernels.h"

namespace mx = mlx::core;

namespace mlxrun_shim {
namespace {

// Copies a (possibly strided) array's elements in row-major order.
template <class T>
void gather(const mx::array& a, T* dst) {
  const T* src = a.data<T>();
  const auto& shape = a.shape();
  const auto& strides = a.strides();
  const int nd = a.ndim();
  if (nd == 0) {
    dst[0] = src[0];
    return;
  }
  std::vector<int> idx(nd, 0);
  for (size_t i = 0, n = a.size(); i < n; ++i) {
    int64_t off = 0;
    for (int d = 0; d < nd; ++d) off += idx[d] * strides[d];
    dst[i] = src[off];
    for (int d = nd - 1; d >= 0 && ++idx[d] == shape[d]; --d) idx[d] = 0;
  }
}

// A's elements in row-major order: A's own buffer when it is laid out so, else a copy
// kept in `keep`.
template <class T>
const T* row_major(const mx::array& a, std::vector<T>& keep) {
  if (a.flags().row_contiguous) return a.data<T>();
  keep.resize(a.size());
  gather(a, keep.data());
  return keep.data();
}

class CpuQuantizedMatmul : public mx::UnaryPrimitive {
 public:
  CpuQuantizedMatmul(mx::Stream s, int group_size, int bits)
      : mx::UnaryPrimitive(s), group_size_(group_size), bits_(bits) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) enc.set_input_array(in);
    enc.set_output_array(out);
    const int K = inputs[0].shape(-1), N = inputs[1].shape(0);
    const int M = K == 0 ? 0 : static_cast<int>(inputs[0].size() / K);
    // The arrays are captured by value so that their descriptions (strides, data) stay
    // readable; MLX keeps their buffers alive until the stream's task has run.
    enc.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]), w = mx::array::unsafe_weak_copy(inputs[1]),
                  s = mx::array::unsafe_weak_copy(inputs[2]), b = mx::array::unsafe_weak_copy(inputs[3]),
                  y = out.data<float>(), M, N, K, gs = group_size_, bits = bits_]() {
      std::vector<float> xk, sk, bk;
      std::vector<uint16_t> sh, bh;
      std::vector<uint32_t> wk;
      const bool f32 = s.dtype() == mx::float32;
      const void* sp = f32 ? static_cast<const void*>(row_major(s, sk)) : row_major(s, sh);
      const void* bp = f32 ? static_cast<const void*>(row_major(b, bk)) : row_major(b, bh);
      const auto type = f32 ? qmm::ScaleType::F32 : s.dtype() == mx::float16 ? qmm::ScaleType::F16 : qmm::ScaleType::BF16;
      qmm::matmul({row_major(x, xk), row_major(w, wk), sp, bp, y, M, N, K, gs, bits, type});
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error(
        "CpuQuantizedMatmul runs on the CPU only: on a GPU the engine uses mlx quantized_matmul");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> grads;
    for (int a : argnums) {
      if (a != 0)
        throw std::invalid_argument(
            "CpuQuantizedMatmul: gradients reach the activations only, not the packed weights, scales or biases");
      // d(x Wᵀ)/dx applied to the cotangent: cot @ W, W unpacked to f32 (one unpacking per
      // step; MLX's own CPU quantized matmul is several times slower than an f32 one).
      grads.push_back(mx::matmul(cotangents[0], unpacked(primals), stream()));
    }
    return grads;
  }

  std::vector<mx::array> jvp(const std::vector<mx::array>& primals, const std::vector<mx::array>& tangents,
                             const std::vector<int>& argnums) override {
    if (argnums.size() != 1 || argnums[0] != 0)
      throw std::invalid_argument("CpuQuantizedMatmul: forward derivatives are taken in the activations only");
    return {mx::matmul(tangents[0], mx::transpose(unpacked(primals), stream()), stream())};
  }

  const char* name() const override { return "CpuQuantizedMatmul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const CpuQuantizedMatmul&>(other);
    return group_size_ == o.group_size_ && bits_ == o.bits_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    auto shape = inputs[0].shape();
    shape.back() = inputs[1].shape(0);
    return {shape};
  }

 private:
  // W as a dense f32 [N, K] matrix (the inputs are x, w, scales, biases). Half scales are
  // widened first: MLX would unpack in their dtype and round the values.
  mx::array unpacked(const std::vector<mx::array>& primals) {
    return mx::dequantize(primals[1], mx::astype(primals[2], mx::float32, stream()),
                          mx::astype(primals[3], mx::float32, stream()), group_size_, bits_, "affine", std::nullopt,
                          mx::float32, stream());
  }

  int group_size_;
  int bits_;
};

[[noreturn]] void refuse(const std::string& why) {
  throw std::invalid_argument("cpu_quantized_matmul: " + why);
}

}  // namespace

mx::array cpu_quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                               const mx::array& biases, int group_size, int bits) {
  auto stream = mx::default_stream(mx::default_device());
  if (stream.device.type != mx::Device::cpu) refuse("the default device is not the CPU");
  if (x.dtype() != mx::float32) refuse("the activations must be float32");
  const auto st = scales.dtype();
  if ((st != mx::float32 && st != mx::float16 && st != mx::bfloat16) || biases.dtype() != st)
    refuse("scales and biases must be float32, float16 or bfloat16, both alike");
  if (w.dtype() != mx::uint32 || w.ndim() != 2) refuse("the packed weights must be a 2-D uint32 array");
  if (x.ndim() < 1) refuse("the activations need at least one dimension");
  const int K = x.shape(-1), N = w.shape(0);
  if (!qmm::supports(K, group_size, bits))
    refuse("bits " + std::to_string(bits) + ", group size " + std::to_string(group_size) + " and input size " +
           std::to_string(K) + " are not supported (bits 4 or 8, group size 32, 64 or 128 dividing the input size)");
  const mx::Shape groups{N, K / group_size};
  if (w.shape(1) != K * bits / 32 || scales.shape() != groups || biases.shape() != groups)
    refuse("the packed weights, scales or biases do not fit an input size of " + std::to_string(K));
  auto shape = x.shape();
  shape.back() = N;
  return mx::array(std::move(shape), mx::float32, std::make_shared<CpuQuantizedMatmul>(stream, group_size, bits),
                   {x, w, scales, biases});
}

}  // namespace mlxrun_shim
