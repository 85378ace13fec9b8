// CPU kernels for y = x Wᵀ with W in MLX's affine packing: each row of W holds K values of
// `bits` bits packed into uint32 words low bits first, and value k of row n stands for
// scales[n, k / group_size] * q + biases[n, k / group_size]. Plain C++ (no MLX types), so
// that they can be tested and timed on raw buffers; cpu_qmm.cpp wraps them as an MLX
// primitive.
#pragma once

#include <cstdint>

namespace mlxrun_shim::qmm {

// How the scales and biases are stored (both alike).
enum class ScaleType : int { F32 = 0, F16 = 1, BF16 = 2 };

struct Problem {
  const float* x;         // [M, K], rows contiguous
  const uint32_t* w;      // [N, K * bits / 32]
  const void* scales;     // [N, K / group_size] of scale_type
  const void* biases;     // [N, K / group_size] of scale_type
  float* y;               // [M, N]
  int M, N, K, group_size, bits;
  ScaleType scale_type = ScaleType::F32;
};

// Whether the kernels take these settings (bits 4 or 8, group size 32, 64 or 128, K a
// multiple of the group size).
bool supports(int K, int group_size, int bits);

// Computes p.y, choosing the single-row (decode) or the tiled (prefill) kernel and the
// vector or portable code, threaded over the output columns.
void matmul(const Problem& p);

// Which code the kernels run: 0 the best the CPU supports (AVX2+FMA when present), 1 the
// portable scalar code. For tests of the fallback; returns the previous setting.
int set_isa(int isa);

// Whether single-row products (decode) quantize each activation row to int8 per block of
// 32 and multiply in integers (about 2x faster, at the cost of rounding the activations:
// see qmm_kernels.cpp); AVX2 only. Starts from MLXRUN_CPU_QMM_ACT (int8 turns it on);
// returns the previous setting. Process-wide.
int set_int8_activations(int on);

// The code the kernels run now: "avx2" or "scalar".
const char* isa_name();

}  // namespace mlxrun_shim::qmm
