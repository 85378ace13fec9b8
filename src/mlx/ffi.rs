//! Raw declarations of the C++ shim (`src/shim/shim.h`). Mirrors that header one to one;
//! everything here is unsafe and used only by the safe wrappers in this module.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

#[repr(C)]
pub struct shim_array {
    _private: [u8; 0],
}
#[repr(C)]
pub struct shim_vec {
    _private: [u8; 0],
}
#[repr(C)]
pub struct shim_map {
    _private: [u8; 0],
}
#[repr(C)]
pub struct shim_group {
    _private: [u8; 0],
}
#[repr(C)]
pub struct shim_compiled {
    _private: [u8; 0],
}

pub type shim_fn = unsafe extern "C" fn(
    ctx: *mut c_void,
    inputs: *const *const shim_array,
    n: usize,
    outputs: *mut shim_vec,
) -> c_int;

extern "C" {
    pub fn shim_last_error() -> *const c_char;
    pub fn shim_set_error(msg: *const c_char);
    pub fn shim_mlx_version() -> *const c_char;

    pub fn shim_array_free(a: *mut shim_array);
    pub fn shim_array_clone(a: *const shim_array, out: *mut *mut shim_array) -> c_int;
    pub fn shim_array_from_data(
        data: *const c_void,
        shape: *const i32,
        ndim: usize,
        dtype: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_array_full(
        shape: *const i32,
        ndim: usize,
        value: f64,
        dtype: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_array_arange(
        start: f64,
        stop: f64,
        step: f64,
        dtype: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_array_ndim(a: *const shim_array) -> usize;
    pub fn shim_array_id(a: *const shim_array) -> usize;
    pub fn shim_array_shape(a: *const shim_array, out: *mut i32);
    pub fn shim_array_dtype(a: *const shim_array) -> c_int;
    pub fn shim_array_size(a: *const shim_array) -> usize;
    pub fn shim_array_nbytes(a: *const shim_array) -> usize;
    pub fn shim_array_copy_out(a: *const shim_array, dst: *mut c_void, len: usize) -> c_int;
    pub fn shim_array_bytes(a: *const shim_array, data: *mut *const c_void, nbytes: *mut usize) -> c_int;

    pub fn shim_vec_new() -> *mut shim_vec;
    pub fn shim_vec_free(v: *mut shim_vec);
    pub fn shim_vec_len(v: *const shim_vec) -> usize;
    pub fn shim_vec_get(v: *const shim_vec, i: usize, out: *mut *mut shim_array) -> c_int;
    pub fn shim_vec_push(v: *mut shim_vec, a: *const shim_array) -> c_int;

    pub fn shim_eval(arrs: *const *const shim_array, n: usize) -> c_int;
    pub fn shim_async_eval(arrs: *const *const shim_array, n: usize) -> c_int;
    pub fn shim_graph_census(
        arrs: *const *const shim_array,
        n: usize,
        buf: *mut c_char,
        cap: usize,
        needed: *mut usize,
    ) -> c_int;

    pub fn shim_unary(op: c_int, a: *const shim_array, out: *mut *mut shim_array) -> c_int;
    pub fn shim_binary(
        op: c_int,
        a: *const shim_array,
        b: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_reduce(
        op: c_int,
        a: *const shim_array,
        axes: *const i32,
        naxes: usize,
        all_axes: c_int,
        keepdims: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_arg_reduce(
        op: c_int,
        a: *const shim_array,
        axis: c_int,
        keepdims: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_scan(
        op: c_int,
        a: *const shim_array,
        axis: c_int,
        reverse: c_int,
        inclusive: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_where(
        c: *const shim_array,
        x: *const shim_array,
        y: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_clip(
        a: *const shim_array,
        lo: *const shim_array,
        hi: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_astype(a: *const shim_array, dtype: c_int, out: *mut *mut shim_array) -> c_int;
    pub fn shim_softmax(
        a: *const shim_array,
        axes: *const i32,
        naxes: usize,
        precise: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_addmm(
        c: *const shim_array,
        a: *const shim_array,
        b: *const shim_array,
        alpha: f32,
        beta: f32,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_cpu_gemv_active(out: *mut c_int) -> c_int;
    pub fn shim_cpu_fast_set_thread(on: c_int, was: *mut c_int) -> c_int;
    pub fn shim_gate_mul(gate: c_int, g: *const shim_array, u: *const shim_array, out: *mut *mut shim_array) -> c_int;
    pub fn shim_tri(
        which: c_int,
        a: *const shim_array,
        k: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;

    pub fn shim_reshape(
        a: *const shim_array,
        shape: *const i32,
        ndim: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_transpose(
        a: *const shim_array,
        axes: *const i32,
        naxes: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_swapaxes(
        a: *const shim_array,
        axis1: c_int,
        axis2: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_expand_dims(
        a: *const shim_array,
        axes: *const i32,
        naxes: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_squeeze(
        a: *const shim_array,
        axes: *const i32,
        naxes: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_flatten(
        a: *const shim_array,
        start: c_int,
        end: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_broadcast_to(
        a: *const shim_array,
        shape: *const i32,
        ndim: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_concatenate(
        arrs: *const *const shim_array,
        n: usize,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_stack(
        arrs: *const *const shim_array,
        n: usize,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_split(
        a: *const shim_array,
        indices: *const i32,
        nindices: usize,
        axis: c_int,
        out: *mut shim_vec,
    ) -> c_int;
    pub fn shim_split_equal(
        a: *const shim_array,
        parts: c_int,
        axis: c_int,
        out: *mut shim_vec,
    ) -> c_int;
    pub fn shim_repeat(
        a: *const shim_array,
        repeats: c_int,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_slice(
        a: *const shim_array,
        start: *const i32,
        stop: *const i32,
        strides: *const i32,
        ndim: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_slice_update(
        src: *const shim_array,
        update: *const shim_array,
        start: *const i32,
        stop: *const i32,
        strides: *const i32,
        ndim: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_slice_dynamic(
        a: *const shim_array,
        start: *const shim_array,
        axes: *const i32,
        naxes: usize,
        sizes: *const i32,
        nsizes: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_slice_update_dynamic(
        src: *const shim_array,
        update: *const shim_array,
        start: *const shim_array,
        axes: *const i32,
        naxes: usize,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_take(
        a: *const shim_array,
        indices: *const shim_array,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_take_along_axis(
        a: *const shim_array,
        indices: *const shim_array,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_put_along_axis(
        a: *const shim_array,
        indices: *const shim_array,
        values: *const shim_array,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_contiguous(a: *const shim_array, out: *mut *mut shim_array) -> c_int;

    pub fn shim_sort(a: *const shim_array, axis: c_int, out: *mut *mut shim_array) -> c_int;
    pub fn shim_argsort(a: *const shim_array, axis: c_int, out: *mut *mut shim_array) -> c_int;
    pub fn shim_partition(
        a: *const shim_array,
        kth: c_int,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_argpartition(
        a: *const shim_array,
        kth: c_int,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_topk(
        a: *const shim_array,
        k: c_int,
        axis: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;

    pub fn shim_rms_norm(
        x: *const shim_array,
        weight: *const shim_array,
        eps: f32,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_cross_entropy(logits: *const shim_array, targets: *const shim_array, out: *mut *mut shim_array) -> c_int;
    pub fn shim_layer_norm(
        x: *const shim_array,
        weight: *const shim_array,
        bias: *const shim_array,
        eps: f32,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_rope(
        x: *const shim_array,
        dims: c_int,
        traditional: c_int,
        has_base: c_int,
        base: f32,
        scale: f32,
        offset: c_int,
        freqs: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_rope_dynamic(
        x: *const shim_array,
        dims: c_int,
        traditional: c_int,
        has_base: c_int,
        base: f32,
        scale: f32,
        offset: *const shim_array,
        freqs: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_sdpa(
        q: *const shim_array,
        k: *const shim_array,
        v: *const shim_array,
        scale: f32,
        mask_mode: *const c_char,
        mask: *const shim_array,
        sinks: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;

    pub fn shim_quantize(
        w: *const shim_array,
        group_size: c_int,
        bits: c_int,
        mode: *const c_char,
        out: *mut shim_vec,
    ) -> c_int;
    pub fn shim_dequantize(
        w: *const shim_array,
        scales: *const shim_array,
        biases: *const shim_array,
        group_size: c_int,
        bits: c_int,
        mode: *const c_char,
        dtype: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_quantized_matmul(
        x: *const shim_array,
        w: *const shim_array,
        scales: *const shim_array,
        biases: *const shim_array,
        transpose: c_int,
        group_size: c_int,
        bits: c_int,
        mode: *const c_char,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_cpu_quantized_matmul(
        x: *const shim_array,
        w: *const shim_array,
        scales: *const shim_array,
        biases: *const shim_array,
        group_size: c_int,
        bits: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_cpu_qmm_set_portable(portable: c_int) -> c_int;
    pub fn shim_cpu_qmm_set_int8_activations(on: c_int) -> c_int;
    pub fn shim_cpu_qmm_isa() -> *const c_char;

    pub fn shim_random_seed(seed: u64) -> c_int;
    pub fn shim_random_key(seed: u64, out: *mut *mut shim_array) -> c_int;
    pub fn shim_random_split(
        key: *const shim_array,
        num: c_int,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_random_uniform(
        low: *const shim_array,
        high: *const shim_array,
        shape: *const i32,
        ndim: usize,
        dtype: c_int,
        key: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_random_normal(
        shape: *const i32,
        ndim: usize,
        dtype: c_int,
        loc: f32,
        scale: f32,
        key: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_random_categorical(
        logits: *const shim_array,
        axis: c_int,
        num_samples: c_int,
        key: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_random_randint(
        low: c_int,
        high: c_int,
        shape: *const i32,
        ndim: usize,
        dtype: c_int,
        key: *const shim_array,
        out: *mut *mut shim_array,
    ) -> c_int;

    pub fn shim_default_device(ty: *mut c_int, index: *mut c_int) -> c_int;
    pub fn shim_set_default_device(ty: c_int, index: c_int) -> c_int;
    pub fn shim_device_available(ty: c_int, available: *mut c_int) -> c_int;
    pub fn shim_device_count(ty: c_int, count: *mut c_int) -> c_int;
    pub fn shim_default_stream(ty: c_int, index: *mut c_int) -> c_int;
    pub fn shim_new_stream(ty: c_int, index: *mut c_int) -> c_int;
    pub fn shim_set_default_stream(ty: c_int, index: c_int) -> c_int;
    pub fn shim_synchronize(ty: c_int, index: c_int) -> c_int;

    pub fn shim_get_active_memory() -> usize;
    pub fn shim_get_peak_memory() -> usize;
    pub fn shim_get_cache_memory() -> usize;
    pub fn shim_reset_peak_memory();
    pub fn shim_set_memory_limit(limit: usize, previous: *mut usize) -> c_int;
    pub fn shim_get_memory_limit() -> usize;
    pub fn shim_set_cache_limit(limit: usize, previous: *mut usize) -> c_int;
    pub fn shim_set_wired_limit(limit: usize, previous: *mut usize) -> c_int;
    pub fn shim_clear_cache();
    pub fn shim_get_cache_limit(limit: *mut usize) -> c_int;
    pub fn shim_get_wired_limit() -> usize;
    pub fn shim_device_info(
        ty: c_int,
        index: c_int,
        entry: unsafe extern "C" fn(ctx: *mut c_void, key: *const c_char, text: *const c_char, number: usize),
        ctx: *mut c_void,
    ) -> c_int;

    pub fn shim_load_safetensors(path: *const c_char, out: *mut *mut shim_map) -> c_int;
    pub fn shim_map_free(m: *mut shim_map);
    pub fn shim_map_len(m: *const shim_map) -> usize;
    pub fn shim_map_entry(
        m: *const shim_map,
        i: usize,
        name: *mut *const c_char,
        arr: *mut *mut shim_array,
    ) -> c_int;
    pub fn shim_map_meta_len(m: *const shim_map) -> usize;
    pub fn shim_map_meta_entry(
        m: *const shim_map,
        i: usize,
        key: *mut *const c_char,
        value: *mut *const c_char,
    ) -> c_int;

    pub fn shim_vjp(
        f: shim_fn,
        ctx: *mut c_void,
        primals: *const *const shim_array,
        nprimals: usize,
        cotangents: *const *const shim_array,
        ncotangents: usize,
        outputs: *mut shim_vec,
        vjps: *mut shim_vec,
    ) -> c_int;
    pub fn shim_value_and_grad(
        f: shim_fn,
        ctx: *mut c_void,
        inputs: *const *const shim_array,
        n: usize,
        argnums: *const i32,
        nargnums: usize,
        values: *mut shim_vec,
        grads: *mut shim_vec,
    ) -> c_int;
    pub fn shim_compile(
        f: shim_fn,
        ctx: *mut c_void,
        shapeless: c_int,
        out: *mut *mut shim_compiled,
    ) -> c_int;
    pub fn shim_compiled_call(
        f: *const shim_compiled,
        inputs: *const *const shim_array,
        n: usize,
        outputs: *mut shim_vec,
    ) -> c_int;
    pub fn shim_compiled_free(f: *mut shim_compiled);
    pub fn shim_checkpoint(
        f: shim_fn,
        ctx: *mut c_void,
        free_ctx: unsafe extern "C" fn(*mut c_void),
        out: *mut *mut shim_compiled,
    ) -> c_int;

    // src/shim/distributed.h
    pub fn shim_dist_is_available(backend: *const c_char) -> c_int;
    pub fn shim_dist_init(backend: *const c_char, timeout_s: f64, out: *mut *mut shim_group) -> c_int;
    pub fn shim_group_free(g: *mut shim_group);
    pub fn shim_dist_failed() -> c_int;
    pub fn shim_group_rank(g: *const shim_group) -> c_int;
    pub fn shim_group_size(g: *const shim_group) -> c_int;
    pub fn shim_dist_all_sum(x: *const shim_array, g: *const shim_group, out: *mut *mut shim_array) -> c_int;
    pub fn shim_dist_all_max(x: *const shim_array, g: *const shim_group, out: *mut *mut shim_array) -> c_int;
    pub fn shim_dist_all_gather(x: *const shim_array, g: *const shim_group, out: *mut *mut shim_array) -> c_int;
    pub fn shim_dist_send(x: *const shim_array, dst: c_int, g: *const shim_group, out: *mut *mut shim_array) -> c_int;
    pub fn shim_dist_recv_like(like: *const shim_array, src: c_int, g: *const shim_group, out: *mut *mut shim_array) -> c_int;
}
