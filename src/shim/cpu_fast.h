// RMS norm, rotary positions, single-query attention and the SiLU and GELU gates on the CPU as one
// graph node each.
//
// MLX's fast:: kernels have no CPU implementation: on the CPU, mx::fast::rms_norm, rope and
// scaled_dot_product_attention return their fallback, a composition of ordinary ops (11, 29
// and 12 graph nodes; counted with MLX 0.32). Every node costs the same bookkeeping however
// little it computes: MLX allocates its output, hands its kernel to the CPU stream's thread
// and then a second task that releases its inputs, and wakes that thread when it has gone
// idle. A decode step of a 30-layer model thus ran about 3,400 nodes, most of them on
// vectors of a few hundred floats, and spent more time handing tasks between threads than
// computing. These primitives compute the same functions in one node each.
//
// Each is an mx::fast::Custom whose fallback is MLX's own composition, so gradients
// (vjp, jvp) and vmap go through exactly the ops MLX would have used. The values are those
// of the fallback up to rounding (summation order; the exp, sin and cos are MLX's own CPU
// functions), a few ulps.
#pragma once

#include <optional>

#include "mlx/mlx.h"

namespace mlxrun {

// mx::fast::rms_norm(x, w, eps) when x (and w) are float32 and the default device is the
// CPU; otherwise nullopt and the caller uses MLX's.
std::optional<mlx::core::array> cpu_rms_norm(const mlx::core::array& x,
                                             const std::optional<mlx::core::array>& w, float eps);

// mx::fast::rope(x, dims, traditional, base, scale, offset, freqs) likewise (float32 x;
// offset an int32 scalar or one per batch row).
std::optional<mlx::core::array> cpu_rope(const mlx::core::array& x, int dims, bool traditional,
                                         std::optional<float> base, float scale,
                                         const mlx::core::array& offset,
                                         const std::optional<mlx::core::array>& freqs);

// The activations a gated feed-forward block applies to its gate.
enum class CpuGate { silu, gelu_tanh };

// act(g) · u for float32 g and u of one shape: SwiGLU's g · sigmoid(g) · u (MLX's three
// nodes: sigmoid, multiply, multiply) or GeGLU's tanh-approximated GELU (mlx.nn.gelu_approx:
// ten nodes and five scalar constants), as one node with the same values.
std::optional<mlx::core::array> cpu_gate_mul(CpuGate gate, const mlx::core::array& g, const mlx::core::array& u);

// The same as MLX's ops, for wherever the one node does not apply (another device or dtype).
mlx::core::array gate_mul_ops(CpuGate gate, const mlx::core::array& g, const mlx::core::array& u,
                              const mlx::core::Stream& s);

// mx::fast::scaled_dot_product_attention(q, k, v, scale) without a mask or sinks, for one
// query position (q [B, Hq, 1, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv], float32, at any
// strides): a decode step's attention.
std::optional<mlx::core::array> cpu_decode_attention(const mlx::core::array& q,
                                                     const mlx::core::array& k,
                                                     const mlx::core::array& v, float scale);

// Whether the routes are on: not macOS (unmeasured there), not turned off for the process
// by MLXRUN_CPU_FAST=0, and not for this thread by cpu_fast_set_thread(false).
bool cpu_fast_enabled();

// Turns the routes off (or back on) for graphs built on the calling thread, so that tests
// and benchmarks can build MLX's fallback beside ours in one process.
void cpu_fast_set_thread(bool on);

}  // namespace mlxrun
