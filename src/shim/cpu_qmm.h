// An MLX primitive running the project's CPU quantized-matmul kernels (qmm_kernels.h):
// the graph node that stands where mlx::core::quantized_matmul(x, w, scales, biases,
// transpose = true, group_size, bits, "affine") would, on the CPU device only.
#pragma once

#include "mlx/array.h"

namespace mlxrun_shim {

// x[..., K] (float32) @ Wᵀ with W [N, K * bits / 32] uint32 and scales and biases
// [N, K / group_size] in float32, float16 or bfloat16 (both alike): [..., N] float32. Throws std::invalid_argument for anything else
// (other dtypes, bits or group sizes, or a default device that is not the CPU).
mlx::core::array cpu_quantized_matmul(const mlx::core::array& x, const mlx::core::array& w,
                                      const mlx::core::array& scales, const mlx::core::array& biases,
                                      int group_size, int bits);

}  // namespace mlxrun_shim
