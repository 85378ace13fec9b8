// One-row float32 matrix products on the CPU through BLAS's matrix-vector routine.
//
// MLX's CPU backend multiplies every matrix with cblas_sgemm, also when the left side is a
// single row, as it is for every projection of a decode step and for the head of the first
// token. OpenBLAS (0.3.21, the one the project links) then packs the whole right-hand
// matrix before it multiplies, which reads and writes the weights once more than the
// product needs: measured here, cblas_sgemv computes the same one-row products 2.7-5.8x
// faster (576x1536: 330 vs 63 us; the 49152x576 head: 18.4 vs 6.9 ms).
#pragma once

#include <optional>

#include "mlx/mlx.h"

namespace mlxrun {

// alpha * a @ b (+ beta * c) as one BLAS sgemv when that applies: the default device is the
// CPU, a is float32 with a single row ([..., 1, K], every leading axis 1), b a float32
// [K, N] matrix, c (if given) float32 with N elements. Otherwise nullopt, and the caller
// uses MLX's own matmul. MLXRUN_CPU_GEMV=0 in the environment turns the route off (to
// compare with MLX's sgemm path).
std::optional<mlx::core::array> cpu_gemv(const mlx::core::array& a, const mlx::core::array& b,
                                         const std::optional<mlx::core::array>& c, float alpha,
                                         float beta);

// Whether the route is on in this process (a BLAS with cblas_sgemv is loaded, not macOS,
// not turned off by MLXRUN_CPU_GEMV=0).
bool cpu_gemv_available();

}  // namespace mlxrun
