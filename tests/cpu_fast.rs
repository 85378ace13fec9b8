//! On the CPU, `fast::rms_norm`, `fast::rope` and single-query attention run as one graph
//! node each (src/shim/cpu_fast.cpp) instead of MLX's fallback compositions of 11-29 ops.
//! Each case builds both in one process (the routes turned off on this thread for MLX's)
//! and compares them over the shapes and layouts a model hands them: strided and
//! transposed views, partial rotary dims, custom frequencies, per-row offsets, grouped
//! heads, keys and values that are views of a longer cache. Gradients through the routes
//! are MLX's own (the fallback differentiated), checked here against the fallback's.
//! RMS norm, rotary positions and the SiLU and GELU gates give the fallback's bits exactly
//! (same operations, same order, MLX's own exp/sin/cos/sigmoid/pow/tanh); attention sums in
//! another order.
use mlxrun::mlx::fast::{self, AttentionMask, RopeFreqs, RopeOffset};
use mlxrun::mlx::{ops, random, transforms, Array, Dtype};
use mlxrun::nn::mlp::Activation;
use mlxrun::Result;


fn randn(shape: &[i32], seed: u64) -> Array {
    random::normal(shape, Dtype::F32, 0.0, 1.0, Some(&random::key(seed).unwrap())).unwrap()
}

fn close(got: &Array, want: &Array, tol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let scale = w.iter().fold(1f32, |m, x| m.max(x.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}: element {i}: ours {a}, MLX's {b}");
    }
}

/// `f` built with the routes on, then with them off (MLX's composition).
fn both(f: impl Fn() -> Result<Array>) -> (Array, Array) {
    ops::set_cpu_fast_kernels(true).unwrap();
    let ours = f().unwrap();
    ops::set_cpu_fast_kernels(false).unwrap();
    let theirs = f().unwrap();
    ops::set_cpu_fast_kernels(true).unwrap();
    (ours, theirs)
}

#[test]
fn the_routes_are_on_for_this_build() {
    // Without them every case below would compare MLX's composition with itself.
    ops::set_cpu_fast_kernels(true).unwrap();
    assert!(ops::set_cpu_fast_kernels(true).unwrap(), "the CPU fast kernels are off (MLXRUN_CPU_FAST=0?)");
}

#[test]
fn rms_norm_matches_mlx() {
    let cases: Vec<(&str, Array, Option<Array>)> = vec![
        ("decode row", randn(&[1, 1, 576], 1), Some(randn(&[576], 2))),
        ("prefill rows", randn(&[2, 37, 64], 3), Some(randn(&[64], 4))),
        ("no weight", randn(&[5, 48], 5), None),
        ("odd width", randn(&[3, 13], 6), Some(randn(&[13], 7))),
        ("transposed view", randn(&[2, 9, 4, 32], 8).transpose(&[0, 2, 1, 3]).unwrap(), Some(randn(&[32], 9))),
        ("strided last axis", randn(&[4, 64], 10).slice(&[0, 0], &[4, 64], &[1, 2]).unwrap(), Some(randn(&[32], 11))),
        ("one value", randn(&[1], 12), None),
    ];
    for (what, x, w) in &cases {
        let (ours, theirs) = both(|| fast::rms_norm(x, w.as_ref(), 1e-5));
        close(&ours, &theirs, 0.0, what);
    }
}

#[test]
fn rope_matches_mlx() {
    let base = RopeFreqs::Base(10000.0);
    let x4 = randn(&[2, 4, 7, 64], 20);
    let offsets = Array::from_slice(&[3i32, 11], &[2]).unwrap();
    let freqs = Array::from_slice(&(0..16).map(|i| 1.0 + i as f32 * 37.5).collect::<Vec<_>>(), &[16]).unwrap();
    let cases: Vec<(&str, Box<dyn Fn() -> Result<Array>>)> = vec![
        ("decode heads", Box::new(|| fast::rope(&randn(&[1, 9, 1, 64], 21), 64, false, base, 1.0, RopeOffset::Fixed(5)))),
        ("prefill", Box::new(|| fast::rope(&x4, 64, false, base, 1.0, RopeOffset::Fixed(0)))),
        ("traditional", Box::new(|| fast::rope(&x4, 64, true, base, 1.0, RopeOffset::Fixed(17)))),
        ("partial dims", Box::new(|| fast::rope(&x4, 32, false, base, 1.0, RopeOffset::Fixed(2)))),
        ("partial traditional", Box::new(|| fast::rope(&x4, 16, true, base, 1.0, RopeOffset::Fixed(2)))),
        ("scaled positions", Box::new(|| fast::rope(&x4, 64, false, base, 0.25, RopeOffset::Fixed(9)))),
        ("far position", Box::new(|| fast::rope(&x4, 64, false, RopeFreqs::Base(1e6), 1.0, RopeOffset::Fixed(15000)))),
        ("custom freqs", Box::new(|| fast::rope(&x4, 32, false, RopeFreqs::Custom(&freqs), 1.0, RopeOffset::Fixed(40)))),
        ("per-row offsets", Box::new(|| fast::rope(&x4, 64, false, base, 1.0, RopeOffset::Dynamic(&offsets)))),
        ("transposed view", Box::new(|| {
            let x = randn(&[2, 7, 4, 64], 22).transpose(&[0, 2, 1, 3])?;
            fast::rope(&x, 64, false, base, 1.0, RopeOffset::Fixed(3))
        })),
        ("three axes", Box::new(|| fast::rope(&randn(&[2, 5, 16], 23), 16, false, base, 1.0, RopeOffset::Fixed(1)))),
        ("five axes", Box::new(|| fast::rope(&randn(&[2, 2, 3, 4, 16], 24), 16, true, base, 1.0, RopeOffset::Fixed(6)))),
    ];
    for (what, f) in &cases {
        let (ours, theirs) = both(f);
        close(&ours, &theirs, 0.0, what);
    }
}

#[test]
fn decode_attention_matches_mlx() {
    let cache_k = randn(&[2, 3, 1024, 64], 30);
    let cache_v = randn(&[2, 3, 1024, 64], 31);
    for s in [1, 7, 130, 700, 1024] {
        for (b, hq) in [(1, 9), (2, 3), (2, 6)] {
            let q = randn(&[b, hq, 1, 64], 32 + s as u64);
            // The keys and values are the first s positions of a longer cache, as a KV
            // cache's fetch hands them over.
            let (k, v) = (cache_k.slice(&[0, 0, 0, 0], &[b, 3, s, 64], &[1, 1, 1, 1]).unwrap(), cache_v.slice(&[0, 0, 0, 0], &[b, 3, s, 64], &[1, 1, 1, 1]).unwrap());
            let (ours, theirs) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, 0.125, AttentionMask::None, None));
            close(&ours, &theirs, 1e-5, &format!("{s} keys, batch {b}, {hq} query heads"));
        }
    }
    // Keys as a transposed view (their strides are known only when evaluated).
    let (q, kt, v) = (randn(&[2, 4, 1, 64], 43), randn(&[2, 2, 64, 13], 44), randn(&[2, 2, 13, 64], 45));
    let k = kt.swapaxes(2, 3).unwrap();
    let (ours, theirs) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, 0.125, AttentionMask::None, None));
    close(&ours, &theirs, 1e-5, "transposed keys");
    // Values narrower than the keys.
    let (q, k, v) = (randn(&[1, 4, 1, 32], 40), randn(&[1, 2, 50, 32], 41), randn(&[1, 2, 50, 16], 42));
    let (ours, theirs) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, 0.3, AttentionMask::None, None));
    close(&ours, &theirs, 1e-5, "narrow values");
}

#[test]
fn masked_and_multi_query_attention_stay_with_mlx() {
    // Routed or not, these must give MLX's values: a mask or several queries are left to it.
    let (q, k, v) = (randn(&[1, 4, 3, 16], 50), randn(&[1, 2, 3, 16], 51), randn(&[1, 2, 3, 16], 52));
    let (ours, theirs) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, 0.25, AttentionMask::Causal, None));
    close(&ours, &theirs, 0.0, "causal prefill");
}

#[test]
fn gradients_are_mlx_compositions() {
    let x = randn(&[2, 4, 5, 32], 60);
    let w = randn(&[32], 61);
    let cot = randn(&[2, 4, 5, 32], 62);
    let grads = |on: bool| -> Vec<Vec<f32>> {
        ops::set_cpu_fast_kernels(on).unwrap();
        let f = |p: &[Array]| -> Result<Vec<Array>> {
            let n = fast::rms_norm(&p[0], Some(&p[1]), 1e-5)?;
            Ok(vec![fast::rope(&n, 32, false, RopeFreqs::Base(10000.0), 1.0, RopeOffset::Fixed(4))?])
        };
        let (_, g) = transforms::vjp(f, &[&x, &w], &[&cot]).unwrap();
        ops::set_cpu_fast_kernels(true).unwrap();
        g.iter().map(|a| a.to_vec::<f32>().unwrap()).collect()
    };
    let (ours, theirs) = (grads(true), grads(false));
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
        for (j, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-5 * scale, "gradient {i}, element {j}: ours {p}, MLX's {q}");
        }
    }
}

/// A gate `gate(g, u)` against MLX's composition over the layouts a feed-forward block
/// hands it, and its gradients against the composition's.
fn gate_is_mlx_bit_for_bit(gate: fn(&Array, &Array) -> Result<Array>, what: &str) {
    // MLX's own sigmoid, pow and tanh, each product rounded as the separate ops round it:
    // equal bits.
    let stacked = randn(&[1, 1, 3072], 70).mul_scalar(4.0).unwrap();
    let cases: Vec<(&str, Array, Array)> = vec![
        ("decode row", randn(&[1, 1, 1536], 71).mul_scalar(6.0).unwrap(), randn(&[1, 1, 1536], 72)),
        ("prefill rows", randn(&[2, 9, 96], 73), randn(&[2, 9, 96], 74)),
        // Split into blocks over the pool's threads, the last one partial.
        ("a long prompt's rows", randn(&[3, 70001], 82).mul_scalar(3.0).unwrap(), randn(&[3, 70001], 83)),
        ("halves of a stacked product", stacked.slice_axis(2, 0, 1536).unwrap(), stacked.slice_axis(2, 1536, 3072).unwrap()),
        ("transposed", randn(&[8, 5], 75).transpose(&[]).unwrap(), randn(&[5, 8], 76)),
    ];
    for (case, g, u) in &cases {
        let (ours, theirs) = both(|| gate(g, u));
        close(&ours, &theirs, 0.0, &format!("{what}: {case}"));
    }
    let (g, u, cot) = (randn(&[3, 40], 77), randn(&[3, 40], 78), randn(&[3, 40], 79));
    let grads = |on: bool| -> Vec<Vec<f32>> {
        ops::set_cpu_fast_kernels(on).unwrap();
        let (_, gr) = transforms::vjp(|p: &[Array]| Ok(vec![gate(&p[0], &p[1])?]), &[&g, &u], &[&cot]).unwrap();
        ops::set_cpu_fast_kernels(true).unwrap();
        gr.iter().map(|a| a.to_vec::<f32>().unwrap()).collect()
    };
    assert_eq!(grads(true), grads(false), "gradients through the {what} gate");
}

#[test]
fn silu_gate_is_mlx_bit_for_bit() {
    gate_is_mlx_bit_for_bit(ops::silu_mul, "SiLU");
}

#[test]
fn gelu_gate_is_mlx_bit_for_bit() {
    gate_is_mlx_bit_for_bit(ops::gelu_tanh_mul, "tanh GELU");
    // And the same bits as the model's own composition (nn::mlp, mlx.nn.gelu_approx's ops),
    // over values where the tanh saturates and where the cube dominates.
    let g = randn(&[4, 700], 80).mul_scalar(5.0).unwrap();
    let u = randn(&[4, 700], 81);
    let ours = ops::gelu_tanh_mul(&g, &u).unwrap();
    ops::set_cpu_fast_kernels(false).unwrap();
    let model = Activation::GeluTanh.apply(&g).unwrap().mul(&u).unwrap();
    ops::set_cpu_fast_kernels(true).unwrap();
    close(&ours, &model, 0.0, "tanh GELU against nn::mlp's ops");
}
