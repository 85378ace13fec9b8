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
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "work_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define QMM_HAVE_AVX2_CODE 1
#define QMM_AVX2 __attribute__((target("avx2,fma,f16c")))
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
// Whether single-row products quantize their activations to int8 (see gemv8_tile):
// -1 not yet read from MLXRUN_CPU_QMM_ACT, else 0 or 1.
std::atomic<int> g_act8{-1};

bool act8() {
  int v = g_act8.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv("MLXRUN_CPU_QMM_ACT");
    v = env && std::string(env) == "int8" ? 1 : 0;
    int expected = -1;
    g_act8.compare_exchange_strong(expected, v);
    v = g_act8.load(std::memory_order_relaxed);
  }
  return v == 1;
}

bool cpu_has_avx2() {
#if QMM_HAVE_AVX2_CODE
  static const bool ok =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
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

// ---- scales and biases ---------------------------------------------------------------------
// Held in f16 or bf16 they are converted to f32 row by row as the kernels reach them; every
// half value is an f32 value, so the products are those of f32 scales of the same values.

inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: man · 2^-24
    const float f = std::ldexp(static_cast<float>(man), -24);
    return sign ? -f : f;
  }
  const uint32_t u = sign | (exp == 0x1F ? 0x7F800000u : (exp + 112) << 23) | (man << 13);
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Row n of a [N, K / group_size] scales or biases matrix as f32: a pointer into it when it
// is f32, else its values converted into buf.
const float* group_row_scalar(const Problem& p, const void* base, int n, float* buf) {
  const int G = p.K / p.group_size;
  const size_t off = static_cast<size_t>(n) * G;
  if (p.scale_type == ScaleType::F32) return static_cast<const float*>(base) + off;
  const uint16_t* h = static_cast<const uint16_t*>(base) + off;
  for (int g = 0; g < G; ++g) buf[g] = p.scale_type == ScaleType::F16 ? f16_to_f32(h[g]) : bf16_to_f32(h[g]);
  return buf;
}

// Scratch for one row's converted scales and biases (2 · K / group_size), one per thread.
float* scale_scratch(const Problem& p) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(2) * (p.K / p.group_size));
  return buf.data();
}

// ---- portable code -----------------------------------------------------------------------

void rows_scalar(const Problem& p, const float* xsum, int n0, int n1) {
  const int G = p.K / p.group_size, words = p.K * p.bits / 32;
  float* scratch = scale_scratch(p);
  for (int n = n0; n < n1; ++n) {
    const uint32_t* w = p.w + static_cast<size_t>(n) * words;
    const float* s = group_row_scalar(p, p.scales, n, scratch);
    const float* b = group_row_scalar(p, p.biases, n, scratch + G);
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

// Scales and biases as the single-row kernels read them, one at a time in the stored type
// (a conversion pass over a row's few scales costs more than these loads at decode sizes).
struct Half {
  uint16_t bits;
};
struct BHalf {
  uint16_t bits;
};
QMM_AVX2 inline float scale_value(const float* p) { return *p; }
QMM_AVX2 inline float scale_value(const Half* p) { return _cvtsh_ss(p->bits); }
QMM_AVX2 inline float scale_value(const BHalf* p) { return bf16_to_f32(p->bits); }

// Calls f with a null pointer of the type the scales are stored in.
template <class F>
void with_scale_type(const Problem& p, F&& f) {
  switch (p.scale_type) {
    case ScaleType::F32: f(static_cast<const float*>(nullptr)); break;
    case ScaleType::F16: f(static_cast<const Half*>(nullptr)); break;
    case ScaleType::BF16: f(static_cast<const BHalf*>(nullptr)); break;
  }
}

// group_row_scalar with the conversions eight values at a time.
QMM_AVX2 const float* group_row(const Problem& p, const void* base, int n, float* buf) {
  const int G = p.K / p.group_size;
  const size_t off = static_cast<size_t>(n) * G;
  if (p.scale_type == ScaleType::F32) return static_cast<const float*>(base) + off;
  const uint16_t* h = static_cast<const uint16_t*>(base) + off;
  int g = 0;
  for (; g + 8 <= G; g += 8) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + g));
    _mm256_storeu_ps(buf + g, p.scale_type == ScaleType::F16
                                  ? _mm256_cvtph_ps(v)
                                  : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)));
  }
  for (; g < G; ++g) buf[g] = p.scale_type == ScaleType::F16 ? _cvtsh_ss(h[g]) : bf16_to_f32(h[g]);
  return buf;
}

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

// Rows n..n+NR-1 of the packed matrix: their words, scales and biases (S as stored).
template <int NR, class S>
struct TileRows {
  const uint32_t* w[NR];
  const S *s[NR], *b[NR];
  TileRows(const Problem& p, int n) {
    const int G = p.K / p.group_size, words = p.K * p.bits / 32;
    QMM_UNROLL
    for (int r = 0; r < NR; ++r) {
      w[r] = p.w + static_cast<size_t>(n + r) * words;
      s[r] = static_cast<const S*>(p.scales) + static_cast<size_t>(n + r) * G;
      b[r] = static_cast<const S*>(p.biases) + static_cast<size_t>(n + r) * G;
    }
  }
};

// NR output columns n..n+NR-1 of one activation row x.
template <int NR, int BITS, class S>
QMM_AVX2 void gemv_tile(const Problem& p, const float* x, const float* xsum, int n, float* y) {
  const int G = p.K / p.group_size, gs = p.group_size;
  const TileRows<NR, S> rows(p, n);
  const auto &w = rows.w, &s = rows.s, &b = rows.b;
  __m256 acc[NR];
  float bias_part[NR];
  QMM_UNROLL
  for (int r = 0; r < NR; ++r) {
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
      acc[r] = _mm256_fmadd_ps(dot[r], _mm256_set1_ps(scale_value(s[r] + g)), acc[r]);
      bias_part[r] += scale_value(b[r] + g) * xsum[g];
    }
  }
  QMM_UNROLL
  for (int r = 0; r < NR; ++r) y[r] = hsum(acc[r]) + bias_part[r];
}

// Calls tile(NR, m, n) for output columns n0..n1 of every activation row m: in groups of
// four columns (NR = 4, a std::integral_constant), then one at a time.
template <class Tile>
void by_column_tiles(const Problem& p, int n0, int n1, Tile&& tile) {
  int n = n0;
  for (; n + 4 <= n1; n += 4)
    for (int m = 0; m < p.M; ++m) tile(std::integral_constant<int, 4>{}, m, n);
  for (; n < n1; ++n)
    for (int m = 0; m < p.M; ++m) tile(std::integral_constant<int, 1>{}, m, n);
}

template <int BITS>
QMM_AVX2 void gemv_rows(const Problem& p, const float* xsum, int n0, int n1) {
  const int G = p.K / p.group_size;
  with_scale_type(p, [&](auto st) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(st)>>;
    by_column_tiles(p, n0, n1, [&](auto nr, int m, int n) {
      gemv_tile<decltype(nr)::value, BITS, S>(p, p.x + static_cast<size_t>(m) * p.K, xsum + static_cast<size_t>(m) * G,
                                              n, p.y + static_cast<size_t>(m) * p.N + n);
    });
  });
}

// ---- single-row kernels on int8 activations --------------------------------------------
// The activation row is quantized per block of 32 to int8 (xq = round(x / d), d = max|x| /
// 127), as llama.cpp's Q8 activations are, and each block's dot product with the packed
// values is taken in integers: _mm256_maddubs_epi16 multiplies 32 unsigned 8-bit weights by
// 32 signed activations and adds adjacent pairs (at most 2·15·127 for 4 bits, 2·128·127 for
// 8 bits with the values made signed: no saturation). That is about a quarter of the
// instructions of unpacking to f32. Each block's integer sum is scaled by s_g·d once; the
// bias part Σ_g b_g Σx keeps the exact f32 sums. The cost is the rounding of x: each
// element moves by at most d/2, so y moves by at most Σ_k |w_k| d(k)/2.

// One activation row quantized: per 32-block scale d, int8 values (for 4 bits permuted to
// even values then odd values, matching how a block's 16 packed bytes unpack), and Σ xq.
struct Act8 {
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int32_t> qsum;
};

QMM_AVX2 void quantize_act8(const float* x, int K, int bits, Act8& a) {
  const int blocks = K / 32;
  a.q.resize(K);
  a.d.resize(blocks);
  a.qsum.resize(blocks);
  for (int b = 0; b < blocks; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(xb[k]));
    const float d = amax / 127.f, inv = amax > 0 ? 127.f / amax : 0.f;
    a.d[b] = d;
    int32_t sum = 0;
    int8_t* qb = a.q.data() + b * 32;
    for (int k = 0; k < 32; ++k) {
      const int v = static_cast<int>(std::nearbyint(xb[k] * inv));
      // Value k goes where the unpacked weights put it: 4-bit blocks unpack to the low
      // nibbles (values 0, 2, …, 30) then the high ones (1, 3, …, 31).
      const int at = bits == 4 ? (k % 2) * 16 + k / 2 : k;
      qb[at] = static_cast<int8_t>(v);
      sum += v;
    }
    a.qsum[b] = sum;
  }
}

// The 32 values of block b of a packed row as unsigned bytes, in Act8's order; for 8 bits
// made signed (q − 128), which the caller corrects with 128·Σ xq.
template <int BITS>
QMM_AVX2 inline __m256i load32(const uint32_t* row, int b) {
  if constexpr (BITS == 4) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 4));
    const __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
    return _mm256_set_m128i(hi, lo);
  } else {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 8));
    return _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
  }
}

// Σ over a block of weight byte × activation int8, as 8 int32 lanes.
template <int BITS>
QMM_AVX2 inline __m256i dot32(__m256i w, __m256i xq) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (BITS == 4) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, xq), ones);
  } else {
    // Signed × signed through the unsigned × signed instruction: |w| and x with w's sign.
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xq, w)), ones);
  }
}

template <int NR, int BITS, class S>
QMM_AVX2 void gemv8_tile(const Problem& p, const Act8& a, const float* xsum, int n, float* y) {
  const int G = p.K / p.group_size, per_group = p.group_size / 32;
  const TileRows<NR, S> rows(p, n);
  const auto &w = rows.w, &s = rows.s, &bi = rows.b;
  __m256 acc[NR];
  float scalar[NR];
  QMM_UNROLL
  for (int r = 0; r < NR; ++r) {
    acc[r] = _mm256_setzero_ps();
    scalar[r] = 0;
  }
  for (int g = 0; g < G; ++g) {
    for (int j = 0; j < per_group; ++j) {
      const int b = g * per_group + j;
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + b * 32));
      QMM_UNROLL
      for (int r = 0; r < NR; ++r) {
        const float sd = scale_value(s[r] + g) * a.d[b];
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32<BITS>(load32<BITS>(w[r], b), xq)), _mm256_set1_ps(sd), acc[r]);
        if constexpr (BITS == 8) scalar[r] += sd * static_cast<float>(128 * a.qsum[b]);
      }
    }
    QMM_UNROLL
    for (int r = 0; r < NR; ++r) scalar[r] += scale_value(bi[r] + g) * xsum[g];
  }
  QMM_UNROLL
  for (int r = 0; r < NR; ++r) y[r] = hsum(acc[r]) + scalar[r];
}

template <int BITS>
QMM_AVX2 void gemv8_rows(const Problem& p, const std::vector<Act8>& acts, const float* xsum, int n0, int n1) {
  const int G = p.K / p.group_size;
  with_scale_type(p, [&](auto st) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(st)>>;
    by_column_tiles(p, n0, n1, [&](auto nr, int m, int n) {
      gemv8_tile<decltype(nr)::value, BITS, S>(p, acts[m], xsum + static_cast<size_t>(m) * G, n,
                                               p.y + static_cast<size_t>(m) * p.N + n);
    });
  });
}

// Rows n0..n0+nb of W unpacked to f32 and transposed into out: out[k * ld + j] is row
// n0 + j's value k; the columns nb..ld-1 are zero (ld pads the block to whole tiles).
template <int BITS>
QMM_AVX2 void unpack_rows_t(const Problem& p, int n0, int nb, int ld, float* row_buf, float* out) {
  float* scratch = scale_scratch(p);
  const int G = p.K / p.group_size, words = p.K * BITS / 32, gs = p.group_size;
  for (int j = 0; j < ld; ++j) {
    if (j >= nb) {
      for (int k = 0; k < p.K; ++k) out[static_cast<size_t>(k) * ld + j] = 0;
      continue;
    }
    const uint32_t* w = p.w + static_cast<size_t>(n0 + j) * words;
    const float* s = group_row(p, p.scales, n0 + j, scratch);
    const float* b = group_row(p, p.biases, n0 + j, scratch + G);
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

int set_int8_activations(int on) {
  const int was = act8() ? 1 : 0;
  g_act8.store(on ? 1 : 0);
  return was;
}

const char* isa_name() { return use_avx2() ? "avx2" : "scalar"; }

void matmul(const Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  const int threads = pool_threads();
#if QMM_HAVE_AVX2_CODE
  if (use_avx2()) {
    if (p.M <= kMaxGemvRows && act8()) {
      const std::vector<float> xsum = group_sums(p);
      std::vector<Act8> acts(p.M);
      for (int m = 0; m < p.M; ++m) quantize_act8(p.x + static_cast<size_t>(m) * p.K, p.K, p.bits, acts[m]);
      over_columns(p, (p.N + 4 * threads - 1) / (4 * threads), [&](int n0, int n1) {
        p.bits == 4 ? gemv8_rows<4>(p, acts, xsum.data(), n0, n1) : gemv8_rows<8>(p, acts, xsum.data(), n0, n1);
      });
    } else if (p.M <= kMaxGemvRows) {
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
