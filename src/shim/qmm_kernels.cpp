// See qmm_kernels.h. Two kernels:
// - single-row (decode, M <= kMaxGemvRows): reads each packed word once per activation row
//   straight from the packed matrix, accumulates q·x per group and applies the group's
//   scale once per group: y = Σ_g s_g (q·x)_g + b_g Σ_{k∈g} x_k. Decode is bound by reading
//   the weights, which stay packed (4 or 8 bits a value instead of 32).
// - tiled (prefill): unpacks a block of W's rows to f32 (w = s q + b, as MLX's dequantize)
//   transposed into a buffer that stays in cache and multiplies every activation row by it
//   with a 6×16 register tile, so the unpacking is paid once per block and not once per row.
// Both sum in f32, in an order other than MLX's kernel, so results differ from
// mlx::core::quantized_matmul by rounding only (relative ~1e-6 of Σ|x||w|).
#include "qmm_kernels.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "work_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QMM_HAVE_AVX2_CODE 1
#define QMM_AVX2 __attribute__((target("avx2,fma")))
// Fully unrolls a loop over a register tile: at -O2 GCC would otherwise keep the
// accumulators in memory.
#define QMM_UNROLL _Pragma("GCC unroll 16")
#else
#define QMM_HAVE_AVX2_CODE 0
#endif

namespace mlxrun_shim::qmm {
namespace {

// Up to this many activation rows the single-row kernel runs (once per row, the block of
// packed rows it reads staying in L1); from there the tiled kernel's unpacking pays off.
constexpr int kMaxGemvRows = 3;
// The tiled kernel's unpacked block of W: this many bytes at most (L2 holds it with room
// for the activation rows streaming past).
constexpr int kBlockBytes = 128 * 1024;
// Below this many multiply-adds a call runs on one thread: waking a worker costs more.
constexpr long kMinParallelWork = 1 << 15;

std::atomic<int> g_isa{0};

bool cpu_has_avx2() {
#if QMM_HAVE_AVX2_CODE
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

bool use_avx2() { return g_isa.load(std::memory_order_relaxed) == 0 && cpu_has_avx2(); }

// Value k of a packed row.
inline uint32_t unpack(const uint32_t* row, int k, int bits) {
  const int per_word = 32 / bits;
  return (row[k / per_word] >> ((k % per_word) * bits)) & ((1u << bits) - 1);
}

// ---- portable code -----------------------------------------------------------------------

void rows_scalar(const Problem& p, const float* xsum, int n0, int n1) {
  const int G = p.K / p.group_size, words = p.K * p.bits / 32;
  for (int n = n0; n < n1; ++n) {
    const uint32_t* w = p.w + static_cast<size_t>(n) * words;
    const float* s = p.scales + static_cast<size_t>(n) * G;
    const float* b = p.biases + static_cast<size_t>(n) * G;
    for (int m = 0; m < p.M; ++m) {
      const float* x = p.x + static_cast<size_t>(m) * p.K;
      float acc = 0, bias_part = 0;
      for (int g = 0; g < G; ++g) {
        float dot = 0;
        for (int k = g * p.group_size; k < (g + 1) * p.group_size; ++k)
          dot += static_cast<float>(unpack(w, k, p.bits)) * x[k];
        acc += s[g] * dot;
        bias_part += b[g] * xsum[static_cast<size_t>(m) * G + g];
      }
      p.y[static_cast<size_t>(m) * p.N + n] = acc + bias_part;
    }
  }
}

// ---- AVX2 + FMA --------------------------------------------------------------------------
#if QMM_HAVE_AVX2_CODE

QMM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Eight consecutive values of a packed row, from value k (a multiple of 8), as int32 lanes.
template <int BITS>
QMM_AVX2 inline __m256i load8(const uint32_t* row, int k) {
  if constexpr (BITS == 4) {
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    __m256i word = _mm256_set1_epi32(static_cast<int>(row[k / 8]));
    return _mm256_and_si256(_mm256_srlv_epi32(word, shifts), _mm256_set1_epi32(0xF));
  } else {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k / 4)));
  }
}

// NR output columns n..n+NR-1 of one activation row x.
template <int NR, int BITS>
QMM_AVX2 void gemv_tile(const Problem& p, const float* x, const float* xsum, int n, float* y) {
  const int G = p.K / p.group_size, words = p.K * BITS / 32, gs = p.group_size;
  const uint32_t* w[NR];
  const float *s[NR], *b[NR];
  __m256 acc[NR];
  float bias_part[NR];
  QMM_UNROLL
  for (int r = 0; r < NR; ++r) {
    w[r] = p.w + static_cast<size_t>(n + r) * words;
    s[r] = p.scales + static_cast<size_t>(n + r) * G;
    b[r] = p.biases + static_cast<size_t>(n + r) * G;
    acc[r] = _mm256_setzero_ps();
    bias_part[r] = 0;
  }
  for (int g = 0; g < G; ++g) {
    __m256 dot[NR];
    QMM_UNROLL
    for (int r = 0; r < NR; ++r) dot[r] = _mm256_setzero_ps();
    for (int k = g * gs; k < (g + 1) * gs; k += 8) {
      const __m256 xv = _mm256_loadu_ps(x + k);
      QMM_UNROLL
      for (int r = 0; r < NR; ++r)
        dot[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(load8<BITS>(w[r], k)), xv, dot[r]);
    }
    QMM_UNROLL
    for (int r = 0; r < NR; ++r) {
      acc[r] = _mm256_fmadd_ps(dot[r], _mm256_set1_ps(s[r][g]), acc[r]);
      bias_part[r] += b[r][g] * xsum[g];
    }
  }
  QMM_UNROLL
  for (int r = 0; r < NR; ++r) y[r] = hsum(acc[r]) + bias_part[r];
}

template <int BITS>
QMM_AVX2 void gemv_rows(const Problem& p, const float* xsum, int n0, int n1) {
  const int G = p.K / p.group_size;
  int n = n0;
  for (; n + 4 <= n1; n += 4)
    for (int m = 0; m < p.M; ++m)
      gemv_tile<4, BITS>(p, p.x + static_cast<size_t>(m) * p.K, xsum + static_cast<size_t>(m) * G, n,
                         p.y + static_cast<size_t>(m) * p.N + n);
  for (; n < n1; ++n)
    for (int m = 0; m < p.M; ++m)
      gemv_tile<1, BITS>(p, p.x + static_cast<size_t>(m) * p.K, xsum + static_cast<size_t>(m) * G, n,
                         p.y + static_cast<size_t>(m) * p.N + n);
}

// Rows n0..n0+nb of W unpacked to f32 and transposed into out: out[k * ld + j] is row
// n0 + j's value k; the columns nb..ld-1 are zero (ld pads the block to whole tiles).
template <int BITS>
QMM_AVX2 void unpack_rows_t(const Problem& p, int n0, int nb, int ld, float* row_buf, float* out) {
  const int G = p.K / p.group_size, words = p.K * BITS / 32, gs = p.group_size;
  for (int j = 0; j < ld; ++j) {
    if (j >= nb) {
      for (int k = 0; k < p.K; ++k) out[static_cast<size_t>(k) * ld + j] = 0;
      continue;
    }
    const uint32_t* w = p.w + static_cast<size_t>(n0 + j) * words;
    const float* s = p.scales + static_cast<size_t>(n0 + j) * G;
    const float* b = p.biases + static_cast<size_t>(n0 + j) * G;
    for (int g = 0; g < G; ++g) {
      const __m256 sv = _mm256_set1_ps(s[g]), bv = _mm256_set1_ps(b[g]);
      for (int k = g * gs; k < (g + 1) * gs; k += 8)
        _mm256_storeu_ps(row_buf + k, _mm256_fmadd_ps(_mm256_cvtepi32_ps(load8<BITS>(w, k)), sv, bv));
    }
    for (int k = 0; k < p.K; ++k) out[static_cast<size_t>(k) * ld + j] = row_buf[k];
  }
}

// y[i, 0..nr) = x[i] · wt[:, 0..nr) for MR activation rows (K apart) and a 16-column strip
// of the transposed block wt (rows ldw apart): 2·MR accumulators updated by broadcasting
// one activation and multiplying two 8-column vectors of W, the register tile of a BLIS
// style f32 kernel (6×16 fills 12 of AVX2's 16 registers).
constexpr int kTileM = 6, kTileN = 16;

template <int MR>
QMM_AVX2 void tile(const float* x, int K, const float* wt, int ldw, float* y, int ldy, int nr) {
  __m256 acc[MR][2];
  QMM_UNROLL
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int k = 0; k < K; ++k) {
    const __m256 w0 = _mm256_loadu_ps(wt + static_cast<size_t>(k) * ldw);
    const __m256 w1 = _mm256_loadu_ps(wt + static_cast<size_t>(k) * ldw + 8);
    QMM_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m256 xb = _mm256_broadcast_ss(x + static_cast<size_t>(i) * K + k);
      acc[i][0] = _mm256_fmadd_ps(xb, w0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xb, w1, acc[i][1]);
    }
  }
  QMM_UNROLL
  for (int i = 0; i < MR; ++i) {
    float* yi = y + static_cast<size_t>(i) * ldy;
    if (nr == kTileN) {
      _mm256_storeu_ps(yi, acc[i][0]);
      _mm256_storeu_ps(yi + 8, acc[i][1]);
    } else {
      alignas(32) float t[kTileN];
      _mm256_store_ps(t, acc[i][0]);
      _mm256_store_ps(t + 8, acc[i][1]);
      for (int j = 0; j < nr; ++j) yi[j] = t[j];
    }
  }
}

using TileFn = void (*)(const float*, int, const float*, int, float*, int, int);
constexpr TileFn kTiles[kTileM] = {tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

template <int BITS>
QMM_AVX2 void gemm_rows(const Problem& p, int n0, int n1) {
  thread_local std::vector<float> block, row_buf;
  const int nb = n1 - n0, ld = (nb + kTileN - 1) / kTileN * kTileN;
  block.resize(static_cast<size_t>(ld) * p.K);
  row_buf.resize(p.K);
  unpack_rows_t<BITS>(p, n0, nb, ld, row_buf.data(), block.data());
  for (int j = 0; j < nb; j += kTileN) {
    const int nr = std::min(kTileN, nb - j);
    for (int m = 0; m < p.M; m += kTileM) {
      const int mr = std::min(kTileM, p.M - m);
      kTiles[mr - 1](p.x + static_cast<size_t>(m) * p.K, p.K, block.data() + j, ld,
                     p.y + static_cast<size_t>(m) * p.N + n0 + j, p.N, nr);
    }
  }
}

#endif  // QMM_HAVE_AVX2_CODE

// Σ x over each group of each activation row: [M, K / group_size].
std::vector<float> group_sums(const Problem& p) {
  const int G = p.K / p.group_size;
  std::vector<float> out(static_cast<size_t>(p.M) * G);
  for (int m = 0; m < p.M; ++m)
    for (int g = 0; g < G; ++g) {
      const float* x = p.x + static_cast<size_t>(m) * p.K + static_cast<size_t>(g) * p.group_size;
      float s = 0;
      for (int k = 0; k < p.group_size; ++k) s += x[k];
      out[static_cast<size_t>(m) * G + g] = s;
    }
  return out;
}

// Splits [0, N) into chunks of `rows` (a multiple of 4 but the last) and runs f on each.
template <class F>
void over_columns(const Problem& p, int rows, F&& f) {
  rows = std::max(4, (rows + 3) / 4 * 4);
  const int chunks = (p.N + rows - 1) / rows;
  const long work = static_cast<long>(p.M) * p.N * p.K;
  auto run = [&](int c) { f(c * rows, std::min(p.N, (c + 1) * rows)); };
  if (work < kMinParallelWork) {
    for (int c = 0; c < chunks; ++c) run(c);
  } else {
    parallel_for(chunks, run);
  }
}

}  // namespace

bool supports(int K, int group_size, int bits) {
  return (bits == 4 || bits == 8) && (group_size == 32 || group_size == 64 || group_size == 128) && K > 0 &&
         K % group_size == 0;
}

int set_isa(int isa) { return g_isa.exchange(isa); }

const char* isa_name() { return use_avx2() ? "avx2" : "scalar"; }

void matmul(const Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  const int threads = pool_threads();
#if QMM_HAVE_AVX2_CODE
  if (use_avx2()) {
    if (p.M <= kMaxGemvRows) {
      const std::vector<float> xsum = group_sums(p);
      // A few chunks per thread, so that a thread slowed by other work does not hold up the rest.
      over_columns(p, (p.N + 4 * threads - 1) / (4 * threads), [&](int n0, int n1) {
        p.bits == 4 ? gemv_rows<4>(p, xsum.data(), n0, n1) : gemv_rows<8>(p, xsum.data(), n0, n1);
      });
    } else {
      const int rows = std::max(kTileN, kBlockBytes / (4 * p.K) / kTileN * kTileN);
      // (rows is a multiple of 16, so every block but the last is made of whole tiles.)
      over_columns(p, rows, [&](int n0, int n1) {
        p.bits == 4 ? gemm_rows<4>(p, n0, n1) : gemm_rows<8>(p, n0, n1);
      });
    }
    return;
  }
#endif
  const std::vector<float> xsum = group_sums(p);
  over_columns(p, (p.N + 4 * threads - 1) / (4 * threads),
               [&](int n0, int n1) { rows_scalar(p, xsum.data(), n0, n1); });
}

}  // namespace mlxrun_shim::qmm
