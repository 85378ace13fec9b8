//! Replays every case that scripts/op_refs.py computed with MLX's Python package through
//! the Rust API and compares: same dtype and shape, values within the case's tolerance.
//! Cases cover f32/f16/bf16 (and integer/bool where the op takes them), broadcasting, and
//! non-contiguous inputs (transposed, strided, broadcast views).
mod common;

use mlxrun::mlx::fast::{self, AttentionMask, RopeFreqs, RopeOffset};
use mlxrun::mlx::quant::{self, QuantMode};
use mlxrun::mlx::{concatenate, io, ops, random, stack, transforms, Array, Dtype};
use mlxrun::nn::Activation;
use mlxrun::Result;
use serde_json::Value;

fn ints(v: &Value) -> Vec<i32> {
    v.as_array().expect("int list").iter().map(|x| x.as_i64().unwrap() as i32).collect()
}
fn int(p: &Value, k: &str) -> i32 {
    p[k].as_i64().unwrap_or_else(|| panic!("param {k}")) as i32
}
fn float(p: &Value, k: &str) -> f32 {
    p[k].as_f64().unwrap_or_else(|| panic!("param {k}")) as f32
}
fn flag(p: &Value, k: &str) -> bool {
    p[k].as_bool().unwrap_or_else(|| panic!("param {k}"))
}

fn view(x: &Array, v: &str) -> Result<Array> {
    match v {
        "none" => x.try_clone(),
        "T" => x.swapaxes(-1, -2),
        "S" => {
            let s = x.shape();
            let mut stride = vec![1; s.len()];
            stride[0] = 2;
            x.slice(&vec![0; s.len()], &s, &stride)
        }
        b if b.starts_with("B:") => {
            let shape: Vec<i32> = b[2..].split(',').map(|d| d.parse().unwrap()).collect();
            x.broadcast_to(&shape)
        }
        other => panic!("unknown view {other}"),
    }
}

fn mlp_loss(a: &[Array]) -> Result<Vec<Array>> {
    let (x, w1, w2, y) = (&a[0], &a[1], &a[2], &a[3]);
    let h = x.matmul(w1)?.tanh()?;
    Ok(vec![h.matmul(w2)?.sub(y)?.square()?.mean(None, false)?])
}

/// Runs one case's op on its (viewed) inputs.
fn run(op: &str, p: &Value, x: &[Array]) -> Result<Vec<Array>> {
    let one = |a: Result<Array>| a.map(|a| vec![a]);
    let axes = || -> Option<Vec<i32>> { p["axes"].as_array().map(|_| ints(&p["axes"])) };
    let keep = || p["keepdims"].as_bool().unwrap_or(false);
    let unary: Option<fn(&Array) -> Result<Array>> = match op {
        "neg" => Some(Array::neg),
        "abs" => Some(Array::abs),
        "exp" => Some(Array::exp),
        "log" => Some(Array::log),
        "log1p" => Some(Array::log1p),
        "sqrt" => Some(Array::sqrt),
        "rsqrt" => Some(Array::rsqrt),
        "square" => Some(Array::square),
        "sin" => Some(Array::sin),
        "cos" => Some(Array::cos),
        "tanh" => Some(Array::tanh),
        "erf" => Some(Array::erf),
        "erfinv" => Some(Array::erfinv),
        "sigmoid" => Some(Array::sigmoid),
        "floor" => Some(Array::floor),
        "ceil" => Some(Array::ceil),
        "sign" => Some(Array::sign),
        "expm1" => Some(Array::expm1),
        "round" => Some(Array::round),
        "reciprocal" => Some(Array::reciprocal),
        "stop_gradient" => Some(Array::stop_gradient),
        "copy" => Some(Array::copy),
        "logical_not" => Some(Array::logical_not),
        "isnan" => Some(Array::isnan),
        "isinf" => Some(Array::isinf),
        _ => None,
    };
    if let Some(f) = unary {
        return one(f(&x[0]));
    }
    let binary: Option<fn(&Array, &Array) -> Result<Array>> = match op {
        "add" => Some(Array::add),
        "sub" => Some(Array::sub),
        "mul" => Some(Array::mul),
        "div" => Some(Array::div),
        "power" => Some(Array::power),
        "maximum" => Some(Array::maximum),
        "minimum" => Some(Array::minimum),
        "equal" => Some(Array::equal),
        "not_equal" => Some(Array::not_equal),
        "less" => Some(Array::less),
        "less_equal" => Some(Array::less_equal),
        "greater" => Some(Array::greater),
        "greater_equal" => Some(Array::greater_equal),
        "logical_and" => Some(Array::logical_and),
        "logical_or" => Some(Array::logical_or),
        "floor_divide" => Some(Array::floor_divide),
        "remainder" => Some(Array::remainder),
        "logaddexp" => Some(Array::logaddexp),
        "matmul" => Some(Array::matmul),
        _ => None,
    };
    if let Some(f) = binary {
        return one(f(&x[0], &x[1]));
    }
    match op {
        "sum" => one(x[0].sum(axes().as_deref(), keep())),
        "mean" => one(x[0].mean(axes().as_deref(), keep())),
        "max" => one(x[0].max(axes().as_deref(), keep())),
        "min" => one(x[0].min(axes().as_deref(), keep())),
        "prod" => one(x[0].prod(axes().as_deref(), keep())),
        "logsumexp" => one(x[0].logsumexp(axes().as_deref(), keep())),
        "all" => one(x[0].all(axes().as_deref(), keep())),
        "any" => one(x[0].any(axes().as_deref(), keep())),
        "argmax" => one(x[0].argmax(int(p, "axis"), keep())),
        "argmin" => one(x[0].argmin(int(p, "axis"), keep())),
        "cumsum" | "cumprod" | "cummax" | "cummin" | "logcumsumexp" => {
            let (a, r, i) = (int(p, "axis"), flag(p, "reverse"), flag(p, "inclusive"));
            one(match op {
                "cumsum" => x[0].cumsum(a, r, i),
                "cumprod" => x[0].cumprod(a, r, i),
                "cummax" => x[0].cummax(a, r, i),
                "cummin" => x[0].cummin(a, r, i),
                _ => x[0].logcumsumexp(a, r, i),
            })
        }
        "softmax" => one(x[0].softmax(&ints(&p["axes"]), flag(p, "precise"))),
        "addmm" => one(x[0].addmm(&x[1], &x[2], float(p, "alpha"), float(p, "beta"))),
        "where" => one(ops::where_(&x[0], &x[1], &x[2])),
        "clip" => one(x[0].clip(Some(&x[1]), Some(&x[2]))),
        "astype" => one(x[0].astype(Dtype::from_name(p["dtype"].as_str().unwrap()).unwrap())),
        "tril" => one(x[0].tril(int(p, "k"))),
        "triu" => one(x[0].triu(int(p, "k"))),
        "reshape" => one(x[0].reshape(&ints(&p["shape"]))),
        "transpose" => one(x[0].transpose(&ints(&p["axes"]))),
        "swapaxes" => one(x[0].swapaxes(int(p, "axis1"), int(p, "axis2"))),
        "expand_dims" => one(x[0].expand_dims(&ints(&p["axes"]))),
        "squeeze" => one(x[0].squeeze(&ints(&p["axes"]))),
        "flatten" => one(x[0].flatten(int(p, "start"), int(p, "end"))),
        "broadcast_to" => one(x[0].broadcast_to(&ints(&p["shape"]))),
        "repeat" => one(x[0].repeat(int(p, "repeats"), int(p, "axis"))),
        "concatenate" => one(concatenate(&x.iter().collect::<Vec<_>>(), int(p, "axis"))),
        "stack" => one(stack(&x.iter().collect::<Vec<_>>(), int(p, "axis"))),
        "split_at" => x[0].split_at(&ints(&p["indices"]), int(p, "axis")),
        "split" => x[0].split(int(p, "parts"), int(p, "axis")),
        "slice" => one(x[0].slice(&ints(&p["start"]), &ints(&p["stop"]), &ints(&p["strides"]))),
        "slice_update" => {
            one(x[0].slice_update(&x[1], &ints(&p["start"]), &ints(&p["stop"]), &ints(&p["strides"])))
        }
        "take" => one(x[0].take(&x[1], int(p, "axis"))),
        "take_along_axis" => one(x[0].take_along_axis(&x[1], int(p, "axis"))),
        "put_along_axis" => one(x[0].put_along_axis(&x[1], &x[2], int(p, "axis"))),
        "sort" => one(x[0].sort(int(p, "axis"))),
        "argsort" => one(x[0].argsort(int(p, "axis"))),
        "topk" => one(x[0].topk(int(p, "k"), int(p, "axis"))?.sort(int(p, "axis"))),
        "partition" => one(x[0].partition(int(p, "kth"), int(p, "axis"))),
        "argpartition" => one(x[0].argpartition(int(p, "kth"), int(p, "axis"))),
        "rms_norm" => one(fast::rms_norm(&x[0], Some(&x[1]), float(p, "eps"))),
        "gelu_approx" => one(Activation::GeluTanh.apply(&x[0])),
        "layer_norm" => one(fast::layer_norm(&x[0], Some(&x[1]), Some(&x[2]), float(p, "eps"))),
        "rope" => one(fast::rope(
            &x[0],
            int(p, "dims"),
            flag(p, "traditional"),
            RopeFreqs::Base(float(p, "base")),
            float(p, "scale"),
            RopeOffset::Fixed(int(p, "offset")),
        )),
        "rope_freqs" => one(fast::rope(
            &x[0],
            int(p, "dims"),
            flag(p, "traditional"),
            RopeFreqs::Custom(&x[1]),
            float(p, "scale"),
            RopeOffset::Fixed(int(p, "offset")),
        )),
        "rope_dynamic" => one(fast::rope(
            &x[0],
            int(p, "dims"),
            flag(p, "traditional"),
            RopeFreqs::Base(float(p, "base")),
            float(p, "scale"),
            RopeOffset::Dynamic(&x[1]),
        )),
        "sdpa" => {
            let mask = match p["mask"].as_str().unwrap() {
                "none" => AttentionMask::None,
                "causal" => AttentionMask::Causal,
                _ => AttentionMask::Array(&x[3]),
            };
            one(fast::scaled_dot_product_attention(&x[0], &x[1], &x[2], float(p, "scale"), mask, None))
        }
        "quantize" => {
            let q = quant::quantize(&x[0], int(p, "group_size"), int(p, "bits"), QuantMode::Affine)?;
            Ok(vec![q.weight, q.scales, q.biases.expect("affine has biases")])
        }
        "dequantize" => one(quant::dequantize(
            &x[0],
            &x[1],
            Some(&x[2]),
            int(p, "group_size"),
            int(p, "bits"),
            QuantMode::Affine,
            None,
        )),
        "quantized_matmul" => one(quant::quantized_matmul(
            &x[0],
            &x[1],
            &x[2],
            Some(&x[3]),
            flag(p, "transpose"),
            int(p, "group_size"),
            int(p, "bits"),
            QuantMode::Affine,
        )),
        "random_uniform" => one(random::uniform(
            float(p, "low"),
            float(p, "high"),
            &ints(&p["shape"]),
            Dtype::F32,
            Some(&x[0]),
        )),
        "random_normal" => {
            one(random::normal(&ints(&p["shape"]), Dtype::F32, float(p, "loc"), float(p, "scale"), Some(&x[0])))
        }
        "random_categorical" => {
            let n = p["num_samples"].as_i64().map(|n| n as i32);
            one(random::categorical(&x[0], -1, n, Some(&x[1])))
        }
        "random_split" => one(random::split(&x[0], int(p, "num"))),
        "random_randint" => {
            one(random::randint(int(p, "low"), int(p, "high"), &ints(&p["shape"]), Dtype::I32, Some(&x[0])))
        }
        "grad_mlp" => {
            let refs: Vec<&Array> = x.iter().collect();
            let (vals, grads) = transforms::value_and_grad(mlp_loss, &refs, &ints(&p["argnums"]))?;
            Ok(grads.into_iter().chain(vals).collect())
        }
        "vjp_ce" => {
            let labels = x[1].try_clone()?;
            let ce = move |a: &[Array]| -> Result<Vec<Array>> {
                let l = &a[0];
                let picked = l.take_along_axis(&labels.expand_dims(&[1])?, -1)?.squeeze(&[1])?;
                Ok(vec![l.logsumexp(Some(&[-1]), false)?.sub(&picked)?.mean(None, false)?])
            };
            let (_, vjps) = transforms::vjp(ce, &[&x[0]], &[&x[2]])?;
            Ok(vjps)
        }
        other => panic!("no Rust dispatch for op {other}"),
    }
}

#[test]
fn every_op_matches_mlx_python() {
    let file = io::load_safetensors(common::deps_file("refs/ops.safetensors")).unwrap();
    let cases: Value = serde_json::from_str(&file.metadata["cases"]).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() > 400, "expected the full case list, got {}", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let get = |k: String| file.tensors.get(&k).unwrap_or_else(|| panic!("{k} missing")).try_clone().unwrap();
        let views: Vec<&str> = c["views"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let inputs: Vec<Array> = (0..c["n_in"].as_u64().unwrap())
            .map(|i| view(&get(format!("{name}/in{i}")), views[i as usize]).unwrap())
            .collect();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let outs = run(c["op"].as_str().unwrap(), &c["params"], &inputs)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(outs.len() as u64, c["n_out"].as_u64().unwrap(), "{name}: output count");
            for (i, o) in outs.iter().enumerate() {
                let want = get(format!("{name}/out{i}"));
                let tol = |k: &str| c[k].as_f64().unwrap();
                common::assert_close(&format!("{name}/out{i}"), o, &want, tol("atol"), tol("rtol"));
            }
        }));
        if let Err(e) = result {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            failures.push(msg.unwrap_or_else(|| name.to_string()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
