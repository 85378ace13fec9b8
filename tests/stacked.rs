//! Stacked projections (`nn::stacked`, `LoadOptions::stack_projections`): a model whose
//! q/k/v and gate/up matrices are stacked decodes exactly what mlx-lm decodes, for every
//! family's fixture and a quantized one, and a stack of layers computes what its parts
//! compute. On a GPU the models stack by default; here (CPU) they are asked to.
mod common;

use mlxrun::mlx::quant::{quantize, QuantMode};
use mlxrun::mlx::{random, Array, Dtype};
use mlxrun::models::LoadOptions;
use mlxrun::nn::stacked::Stacked;
use mlxrun::nn::{Linear, Lora};

fn stacked(dtype: Dtype) -> LoadOptions {
    LoadOptions {
        dtype: Some(dtype),
        stack_projections: Some(true),
        ..LoadOptions::default()
    }
}

/// The recorded mlx-lm cases of each fixture (64 greedy tokens, log-probs, logits), with
/// every layer's projections stacked.
#[test]
fn stacked_fixtures_match_mlx_lm() {
    for name in ["llama3", "qwen3", "qwen2", "gemma3"] {
        common::reference::check_against_mlx_lm_with(
            name,
            &common::deps_file(&format!("refs/generate/{name}.safetensors")),
            &common::deps_file(&format!("fixtures/{name}")),
            &stacked,
            // The float32 cases: the same arithmetic as mlx-lm's, so the strictest check.
            &|c| c["compute_dtype"] == "float32",
            1,
        );
    }
}

/// A quantized checkpoint kept packed: the stack concatenates packed rows, scales and biases.
#[test]
fn stacked_quantized_fixture_matches_mlx_lm() {
    let name = "qwen3-q4g64";
    let keep = |dtype| LoadOptions {
        keep_quantized: Some(true),
        ..stacked(dtype)
    };
    common::reference::check_against_mlx_lm_with(
        name,
        &common::deps_file(&format!("refs/quant/{name}.safetensors")),
        &common::deps_file(&format!("fixtures-quant/{name}")),
        &keep,
        &|c| c["dtype_mode"] == "float32",
        1,
    );
}

fn normal(shape: &[i32]) -> Array {
    random::normal(shape, Dtype::F32, 0.0, 1.0, None).unwrap()
}

fn max_diff(a: &Array, b: &Array) -> f32 {
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .max(None, false)
        .unwrap()
        .item::<f32>()
        .unwrap()
}

/// One row through the stack gives each part's output; several rows are not its to serve.
fn check_stack(mut parts: Vec<Linear>, tol: f32) {
    let k = parts[0].dims().0;
    let x = normal(&[1, 1, k]);
    let before: Vec<Array> = parts.iter().map(|p| p.forward(&x).unwrap()).collect();
    let mut refs: Vec<&mut Linear> = parts.iter_mut().collect();
    let stack = Stacked::new(&mut refs).unwrap().expect("these parts stack");
    let outs = stack.forward(&x).unwrap();
    assert_eq!(outs.len(), before.len());
    for ((out, want), part) in outs.iter().zip(&before).zip(&parts) {
        assert_eq!(out.shape(), want.shape());
        assert!(
            max_diff(out, want) <= tol,
            "stacked output differs by {}",
            max_diff(out, want)
        );
        // The part, now a view of its rows of the stack, still computes what it did.
        assert!(max_diff(&part.forward(&x).unwrap(), want) <= tol);
    }
    assert!(stack.serves(&x));
    assert!(
        !stack.serves(&normal(&[1, 3, k])),
        "prefill goes through the parts"
    );
}

#[test]
fn a_stack_computes_what_its_parts_compute() {
    // Dense with biases, sizes like grouped-query q/k/v (odd sizes included).
    let dense = |out: i32, k: i32| Linear::new(normal(&[out, k]), Some(normal(&[out])));
    check_stack(vec![dense(96, 40), dense(24, 40), dense(24, 40)], 1e-5);
    check_stack(vec![dense(7, 13), dense(5, 13)], 1e-5);
    // Packed 4- and 8-bit, group 32 and 64.
    for (bits, group) in [(4, 64), (8, 32), (4, 32)] {
        let q = |out: i32| {
            Linear::quantized(
                quantize(&normal(&[out, 128]), group, bits, QuantMode::Affine).unwrap(),
                Dtype::F32,
                None,
            )
        };
        check_stack(vec![q(64), q(32), q(32)], 1e-4);
    }
}

#[test]
fn parts_that_differ_or_carry_adapters_are_not_stacked() {
    let dense = |out: i32, k: i32, dtype: Dtype| {
        Linear::new(normal(&[out, k]).astype(dtype).unwrap(), None)
    };
    let q4 = Linear::quantized(
        quantize(&normal(&[32, 128]), 64, 4, QuantMode::Affine).unwrap(),
        Dtype::F32,
        None,
    );
    let cases: Vec<(&str, Vec<Linear>)> = vec![
        ("one part", vec![dense(8, 16, Dtype::F32)]),
        (
            "input sizes",
            vec![dense(8, 16, Dtype::F32), dense(8, 32, Dtype::F32)],
        ),
        (
            "dtypes",
            vec![dense(8, 16, Dtype::F32), dense(8, 16, Dtype::Bf16)],
        ),
        (
            "dense and packed",
            vec![dense(32, 128, Dtype::F32), q4.clone()],
        ),
        (
            "a bias on one",
            vec![
                dense(8, 16, Dtype::F32),
                Linear::new(normal(&[8, 16]), Some(normal(&[8]))),
            ],
        ),
    ];
    for (why, mut parts) in cases {
        let mut refs: Vec<&mut Linear> = parts.iter_mut().collect();
        assert!(Stacked::new(&mut refs).unwrap().is_none(), "{why}: stacked");
    }
    let mut adapted = dense(8, 16, Dtype::F32);
    adapted.lora = Some(Lora::new(16, 8, 4, 1.0, 0.0, Dtype::F32).unwrap());
    let mut parts = [adapted, dense(8, 16, Dtype::F32)];
    let mut refs: Vec<&mut Linear> = parts.iter_mut().collect();
    assert!(
        Stacked::new(&mut refs).unwrap().is_none(),
        "an adapter: stacked"
    );
}
