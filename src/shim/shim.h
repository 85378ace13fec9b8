// The C surface of the project's C++ shim over MLX. The only consumer is src/mlx/ffi.rs,
// which mirrors these declarations; keep the two in step.
//
// Conventions:
// - Every fallible function returns int: 0 on success, 1 on failure. On failure the
//   message is kept in a thread-local buffer that shim_last_error() returns (valid until
//   the next failing call on the same thread). No C++ exception ever leaves this layer.
// - Arrays are opaque `shim_array*` handles (a heap-allocated mlx::core::array, which is a
//   reference-counted view of a graph node). Every handle written to an out-parameter is
//   owned by the caller and released with shim_array_free.
// - Dtype codes are the values of the ShimDtype enum below.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shim_array shim_array;
typedef struct shim_vec shim_vec;          // std::vector<array>
typedef struct shim_map shim_map;          // a loaded safetensors file
typedef struct shim_compiled shim_compiled;  // a compiled function

enum ShimDtype {
  SHIM_BOOL = 0,
  SHIM_U8 = 1,
  SHIM_U16 = 2,
  SHIM_U32 = 3,
  SHIM_U64 = 4,
  SHIM_I8 = 5,
  SHIM_I16 = 6,
  SHIM_I32 = 7,
  SHIM_I64 = 8,
  SHIM_F16 = 9,
  SHIM_F32 = 10,
  SHIM_F64 = 11,
  SHIM_BF16 = 12,
};

const char* shim_last_error(void);
const char* shim_mlx_version(void);

// ---- arrays: lifetime, construction, inspection, copy-out -----------------------------
void shim_array_free(shim_array* a);
int shim_array_clone(const shim_array* a, shim_array** out);
int shim_array_from_data(const void* data, const int32_t* shape, size_t ndim, int dtype,
                         shim_array** out);
int shim_array_full(const int32_t* shape, size_t ndim, double value, int dtype,
                    shim_array** out);
int shim_array_arange(double start, double stop, double step, int dtype, shim_array** out);
size_t shim_array_ndim(const shim_array* a);
/* The array's identity: equal for every handle of one array, unequal for two live arrays. */
uintptr_t shim_array_id(const shim_array* a);
void shim_array_shape(const shim_array* a, int32_t* out);
int shim_array_dtype(const shim_array* a);
size_t shim_array_size(const shim_array* a);
size_t shim_array_nbytes(const shim_array* a);
// Evaluates `a`, makes a row-contiguous copy if needed and copies its bytes into dst,
// which must hold exactly nbytes(a) bytes.
int shim_array_copy_out(const shim_array* a, void* dst, size_t dst_len);
// The bytes of an evaluated, row-contiguous array, borrowed from MLX's buffer: valid while
// the array lives. Fails (never waits or copies) when `a` is not yet computed or its layout
// is not row-major contiguous; *data is NULL for an empty array.
int shim_array_bytes(const shim_array* a, const void** data, size_t* nbytes);

// ---- vectors of arrays (multi-output ops, eval lists, callbacks) ----------------------
shim_vec* shim_vec_new(void);
void shim_vec_free(shim_vec* v);
size_t shim_vec_len(const shim_vec* v);
int shim_vec_get(const shim_vec* v, size_t i, shim_array** out);
int shim_vec_push(shim_vec* v, const shim_array* a);

// ---- evaluation -----------------------------------------------------------------------
int shim_eval(const shim_array* const* arrs, size_t n);
int shim_async_eval(const shim_array* const* arrs, size_t n);
// The operations evaluating `arrs` would run (nodes not yet computed, each multi-output
// node once), counted by MLX's primitive names: "Name count\n" lines, most frequent
// first, written into buf when they fit in cap bytes (NUL included); *needed gets the
// bytes they take. A diagnostic: at decode sizes a node's host bookkeeping costs more
// than its arithmetic, so a step's node count predicts its time on a GPU.
int shim_graph_census(const shim_array* const* arrs, size_t n, char* buf, size_t cap,
                      size_t* needed);

// ---- element-wise and matrix ops, selected by code (see ops.rs) -----------------------
int shim_unary(int op, const shim_array* a, shim_array** out);
int shim_binary(int op, const shim_array* a, const shim_array* b, shim_array** out);
// Reductions over `axes` (all axes when naxes == 0 and all_axes != 0).
int shim_reduce(int op, const shim_array* a, const int32_t* axes, size_t naxes, int all_axes,
                int keepdims, shim_array** out);
// argmax / argmin along one axis.
int shim_arg_reduce(int op, const shim_array* a, int axis, int keepdims, shim_array** out);
// Scans (cumsum, cumprod, cummax, cummin, logcumsumexp) along one axis.
int shim_scan(int op, const shim_array* a, int axis, int reverse, int inclusive,
              shim_array** out);
int shim_where(const shim_array* cond, const shim_array* x, const shim_array* y,
               shim_array** out);
int shim_clip(const shim_array* a, const shim_array* lo, const shim_array* hi,
              shim_array** out);
int shim_astype(const shim_array* a, int dtype, shim_array** out);
int shim_softmax(const shim_array* a, const int32_t* axes, size_t naxes, int precise,
                 shim_array** out);
int shim_addmm(const shim_array* c, const shim_array* a, const shim_array* b, float alpha,
               float beta, shim_array** out);
int shim_tri(int which, const shim_array* a, int k, shim_array** out);  // 0 tril, 1 triu
// 1 when one-row float32 products on the CPU go to BLAS's sgemv (cpu_gemv.h), else 0.
int shim_cpu_gemv_active(int* out);
// Turns the CPU's one-node RMS norm, rotary and decode attention (cpu_fast.h) on or off for
// graphs built on the calling thread; *was is 1 when they were on (which also needs the
// platform and MLXRUN_CPU_FAST to allow them).
int shim_cpu_fast_set_thread(int on, int* was);
// act(g) * u, act by code: 0 SiLU (g * sigmoid(g)), 1 the tanh-approximated GELU. One graph
// node on the CPU (cpu_fast.h), MLX's ops elsewhere.
int shim_gate_mul(int gate, const shim_array* g, const shim_array* u, shim_array** out);

// ---- shape and indexing -----------------------------------------------------------------
int shim_reshape(const shim_array* a, const int32_t* shape, size_t ndim, shim_array** out);
int shim_transpose(const shim_array* a, const int32_t* axes, size_t naxes, shim_array** out);
int shim_swapaxes(const shim_array* a, int axis1, int axis2, shim_array** out);
int shim_expand_dims(const shim_array* a, const int32_t* axes, size_t naxes,
                     shim_array** out);
int shim_squeeze(const shim_array* a, const int32_t* axes, size_t naxes, shim_array** out);
int shim_flatten(const shim_array* a, int start_axis, int end_axis, shim_array** out);
int shim_broadcast_to(const shim_array* a, const int32_t* shape, size_t ndim,
                      shim_array** out);
int shim_concatenate(const shim_array* const* arrs, size_t n, int axis, shim_array** out);
int shim_stack(const shim_array* const* arrs, size_t n, int axis, shim_array** out);
int shim_split(const shim_array* a, const int32_t* indices, size_t nindices, int axis,
               shim_vec* out);
int shim_split_equal(const shim_array* a, int parts, int axis, shim_vec* out);
int shim_repeat(const shim_array* a, int repeats, int axis, shim_array** out);
int shim_slice(const shim_array* a, const int32_t* start, const int32_t* stop,
               const int32_t* strides, size_t ndim, shim_array** out);
int shim_slice_update(const shim_array* src, const shim_array* update, const int32_t* start,
                      const int32_t* stop, const int32_t* strides, size_t ndim,
                      shim_array** out);
// Slice of size `sizes` starting at the positions held in the array `start`, along `axes`
// (dynamic offsets: the graph does not change when the start does).
int shim_slice_dynamic(const shim_array* a, const shim_array* start, const int32_t* axes,
                       size_t naxes, const int32_t* sizes, size_t nsizes, shim_array** out);
int shim_slice_update_dynamic(const shim_array* src, const shim_array* update,
                              const shim_array* start, const int32_t* axes, size_t naxes,
                              shim_array** out);
int shim_take(const shim_array* a, const shim_array* indices, int axis, shim_array** out);
int shim_take_along_axis(const shim_array* a, const shim_array* indices, int axis,
                         shim_array** out);
int shim_put_along_axis(const shim_array* a, const shim_array* indices,
                        const shim_array* values, int axis, shim_array** out);
int shim_contiguous(const shim_array* a, shim_array** out);

// ---- sorting and selection ----------------------------------------------------------------
int shim_sort(const shim_array* a, int axis, shim_array** out);
int shim_argsort(const shim_array* a, int axis, shim_array** out);
int shim_partition(const shim_array* a, int kth, int axis, shim_array** out);
int shim_argpartition(const shim_array* a, int kth, int axis, shim_array** out);
int shim_topk(const shim_array* a, int k, int axis, shim_array** out);

// ---- fast kernels ---------------------------------------------------------------------------
int shim_rms_norm(const shim_array* x, const shim_array* weight /*nullable*/, float eps,
                  shim_array** out);
// Fused cross entropy over the last axis with class-index targets (per position).
int shim_cross_entropy(const shim_array* logits, const shim_array* targets, shim_array** out);
int shim_layer_norm(const shim_array* x, const shim_array* weight /*nullable*/,
                    const shim_array* bias /*nullable*/, float eps, shim_array** out);
// base is used when has_base != 0; otherwise freqs must be given.
int shim_rope(const shim_array* x, int dims, int traditional, int has_base, float base,
              float scale, int offset, const shim_array* freqs /*nullable*/,
              shim_array** out);
// Same with the position offset held in an array (scalar, or one per batch row).
int shim_rope_dynamic(const shim_array* x, int dims, int traditional, int has_base,
                      float base, float scale, const shim_array* offset,
                      const shim_array* freqs /*nullable*/, shim_array** out);
// mask_mode: "" (none or array mask), "causal", or "array".
int shim_sdpa(const shim_array* q, const shim_array* k, const shim_array* v, float scale,
              const char* mask_mode, const shim_array* mask /*nullable*/,
              const shim_array* sinks /*nullable*/, shim_array** out);

// ---- quantization -------------------------------------------------------------------------
// Writes w_q, scales and (for affine) biases to `out`.
int shim_quantize(const shim_array* w, int group_size, int bits, const char* mode,
                  shim_vec* out);
int shim_dequantize(const shim_array* w, const shim_array* scales,
                    const shim_array* biases /*nullable*/, int group_size, int bits,
                    const char* mode, int dtype /*-1: default*/, shim_array** out);
int shim_quantized_matmul(const shim_array* x, const shim_array* w, const shim_array* scales,
                          const shim_array* biases /*nullable*/, int transpose,
                          int group_size, int bits, const char* mode, shim_array** out);
// The project's CPU kernels (cpu_qmm.h): x @ Wᵀ, affine, float32 x/scales/biases, bits 4
// or 8, group size 32/64/128, default device the CPU; fails with a message otherwise.
int shim_cpu_quantized_matmul(const shim_array* x, const shim_array* w, const shim_array* scales,
                              const shim_array* biases, int group_size, int bits, shim_array** out);
// Makes those kernels run their portable code (1) or the best the CPU has (0); returns the
// previous setting.
int shim_cpu_qmm_set_portable(int portable);
// Int8 activations for single-row products on/off (qmm_kernels.h); returns the previous setting.
int shim_cpu_qmm_set_int8_activations(int on);
// The code those kernels run now: "avx2" or "scalar" (a static string).
const char* shim_cpu_qmm_isa(void);

// ---- random ---------------------------------------------------------------------------------
int shim_random_seed(uint64_t seed);
int shim_random_key(uint64_t seed, shim_array** out);
int shim_random_split(const shim_array* key, int num, shim_array** out);
int shim_random_uniform(const shim_array* low, const shim_array* high, const int32_t* shape,
                        size_t ndim, int dtype, const shim_array* key /*nullable*/,
                        shim_array** out);
int shim_random_normal(const int32_t* shape, size_t ndim, int dtype, float loc, float scale,
                       const shim_array* key /*nullable*/, shim_array** out);
int shim_random_categorical(const shim_array* logits, int axis, int num_samples /*<=0: one*/,
                            const shim_array* key /*nullable*/, shim_array** out);
int shim_random_randint(int low, int high, const int32_t* shape, size_t ndim, int dtype,
                        const shim_array* key /*nullable*/, shim_array** out);

// ---- devices and streams ----------------------------------------------------------------
// Device types: 0 cpu, 1 gpu.
int shim_default_device(int* type, int* index);
int shim_set_default_device(int type, int index);
int shim_device_available(int type, int* available);
int shim_device_count(int type, int* count);
int shim_default_stream(int type, int* stream_index);
int shim_new_stream(int type, int* stream_index);
int shim_set_default_stream(int type, int stream_index);
int shim_synchronize(int type, int stream_index /*-1: default stream*/);

// ---- memory -----------------------------------------------------------------------------------
size_t shim_get_active_memory(void);
size_t shim_get_peak_memory(void);
size_t shim_get_cache_memory(void);
void shim_reset_peak_memory(void);
int shim_set_memory_limit(size_t limit, size_t* previous);
size_t shim_get_memory_limit(void);
int shim_set_cache_limit(size_t limit, size_t* previous);
int shim_set_wired_limit(size_t limit, size_t* previous);
void shim_clear_cache(void);
// MLX has no getters for these two limits. The cache limit is read by setting it to the
// largest value and back under the lock shim_set_cache_limit also takes (setting it only
// swaps a number; nothing is freed until an allocation). The wired limit cannot be read
// that way (on Metal, setting it resizes the residency set), so it is the last value set
// through shim_set_wired_limit, or 0 (MLX's default) before any.
int shim_get_cache_limit(size_t* limit);
size_t shim_get_wired_limit(void);

// ---- device information ---------------------------------------------------------------------
// MLX's description of a device (mlx::core::device_info): `entry` is called once per
// property with a string value (`text` non-NULL, valid during the call) or a number
// (`text` NULL). Keys vary by backend (device_name, architecture, memory_size,
// max_recommended_working_set_size, total_memory, free_memory, pci_bus_id, ...).
typedef void (*shim_device_info_fn)(void* ctx, const char* key, const char* text, size_t number);
int shim_device_info(int type, int index, shim_device_info_fn entry, void* ctx);

// ---- safetensors ------------------------------------------------------------------------------
// Reading only: headers are validated and files written in Rust by the `safetensors` crate
// (src/mlx/io.rs); MLX's loader then reads the validated file lazily.
int shim_load_safetensors(const char* path, shim_map** out);
void shim_map_free(shim_map* m);
size_t shim_map_len(const shim_map* m);
// Name and array of the i-th tensor (names sorted). The name stays valid while m lives.
int shim_map_entry(const shim_map* m, size_t i, const char** name, shim_array** arr);
size_t shim_map_meta_len(const shim_map* m);
int shim_map_meta_entry(const shim_map* m, size_t i, const char** key, const char** value);

// ---- transformations -------------------------------------------------------------------------
// A function from arrays to arrays implemented by the caller. It receives borrowed input
// handles (valid during the call) and pushes its outputs onto `outputs` with shim_vec_push.
// It returns 0 on success; on failure it returns non-zero after writing a message with
// shim_set_error, and the transformation that called it fails with that message.
typedef int (*shim_fn)(void* ctx, const shim_array* const* inputs, size_t n, shim_vec* outputs);
void shim_set_error(const char* msg);

// Vector-Jacobian product: outputs and vjps are written to the given vectors.
int shim_vjp(shim_fn fn, void* ctx, const shim_array* const* primals, size_t nprimals,
             const shim_array* const* cotangents, size_t ncotangents, shim_vec* outputs,
             shim_vec* vjps);
// value_and_grad of the first output (a scalar) with respect to the inputs at `argnums`.
int shim_value_and_grad(shim_fn fn, void* ctx, const shim_array* const* inputs, size_t n,
                        const int32_t* argnums, size_t nargnums, shim_vec* values,
                        shim_vec* grads);
// compile: ctx must outlive the compiled function.
int shim_compile(shim_fn fn, void* ctx, int shapeless, shim_compiled** out);
int shim_compiled_call(const shim_compiled* f, const shim_array* const* inputs, size_t n,
                       shim_vec* outputs);
void shim_compiled_free(shim_compiled* f);
// checkpoint: the function, whose backward pass recomputes it from its inputs instead of
// keeping its intermediates (called, and freed, as a compiled one). Takes ownership of ctx,
// even on failure: free_ctx(ctx) runs once the function and every graph holding a copy of
// it are gone.
int shim_checkpoint(shim_fn fn, void* ctx, void (*free_ctx)(void*), shim_compiled** out);

#ifdef __cplusplus
}
#endif
