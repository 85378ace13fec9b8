//! Construction, copy-out, dtypes, devices, streams, safetensors, evaluation and the
//! transformations (grad, vjp, compile) through the Rust API.
mod common;

use half::{bf16, f16};
use mlxrun::mlx::{async_eval, eval, io, random, transforms, Array, Compiled, Device, Dtype, Element, Stream};

fn round_trip<T: Element + PartialEq + std::fmt::Debug>(values: &[T]) {
    let a = Array::from_slice(values, &[values.len() as i32]).unwrap();
    assert_eq!(a.dtype(), T::DTYPE);
    assert_eq!(a.shape(), vec![values.len() as i32]);
    assert_eq!(a.nbytes(), values.len() * T::DTYPE.size());
    assert_eq!(a.to_vec::<T>().unwrap(), values);
}

#[test]
fn slices_round_trip_in_every_dtype() {
    round_trip(&[true, false, true]);
    round_trip(&[0u8, 7, 255]);
    round_trip(&[0u16, 65535]);
    round_trip(&[1u32, u32::MAX]);
    round_trip(&[1u64, u64::MAX]);
    round_trip(&[-128i8, 127]);
    round_trip(&[-3i16, 300]);
    round_trip(&[i32::MIN, 0, i32::MAX]);
    round_trip(&[i64::MIN, i64::MAX]);
    round_trip(&[f16::from_f32(1.5), f16::from_f32(-0.25)]);
    round_trip(&[0.1f32, -2.5, f32::INFINITY]);
    round_trip(&[0.1f64, -2.5]);
    round_trip(&[bf16::from_f32(3.0), bf16::from_f32(-1.0 / 3.0)]);
    let empty = Array::from_slice::<f32>(&[], &[0, 4]).unwrap();
    assert_eq!(empty.to_vec::<f32>().unwrap(), Vec::<f32>::new());
}

#[test]
fn constructors_and_views() {
    assert_eq!(Array::scalar(7i32).unwrap().item::<i32>().unwrap(), 7);
    assert_eq!(Array::full(&[2, 2], 2.5, Dtype::F16).unwrap().astype(Dtype::F32).unwrap().to_vec::<f32>().unwrap(), vec![2.5; 4]);
    assert_eq!(Array::zeros(&[3], Dtype::I32).unwrap().to_vec::<i32>().unwrap(), vec![0; 3]);
    assert_eq!(Array::ones(&[2], Dtype::Bf16).unwrap().to_vec::<bf16>().unwrap(), vec![bf16::ONE; 2]);
    assert_eq!(Array::arange(0.0, 5.0, 2.0, Dtype::I32).unwrap().to_vec::<i32>().unwrap(), vec![0, 2, 4]);
    // Copy-out of non-contiguous views gives the view's row-major order.
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    assert_eq!(a.transpose(&[]).unwrap().to_vec::<f32>().unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(a.slice(&[0, 0], &[2, 3], &[1, 2]).unwrap().to_vec::<f32>().unwrap(), vec![1.0, 3.0, 4.0, 6.0]);
    let row = Array::from_slice(&[1i32, 2], &[1, 2]).unwrap().broadcast_to(&[3, 2]).unwrap();
    assert_eq!(row.to_vec::<i32>().unwrap(), vec![1, 2, 1, 2, 1, 2]);
    assert_eq!(a.dim(-1).unwrap(), 3);
    assert!(a.dim(2).is_err());
    // Clones share the node; mutation-free semantics mean both read the same values.
    let b = a.clone();
    drop(a);
    assert_eq!(b.sum(None, false).unwrap().item::<f32>().unwrap(), 21.0);
}

#[test]
fn eval_async_eval_and_dynamic_slices() {
    let x = Array::arange(0.0, 12.0, 1.0, Dtype::F32).unwrap().reshape(&[3, 4]).unwrap();
    let y = x.mul_scalar(2.0).unwrap();
    let z = x.add_scalar(1.0).unwrap();
    async_eval(&[&y, &z]).unwrap();
    eval(&[&y]).unwrap();
    assert_eq!(z.to_vec::<f32>().unwrap()[11], 12.0);
    // Offsets held in arrays: the same graph serves every position (the KV-cache write).
    let cache = Array::zeros(&[1, 6], Dtype::F32).unwrap();
    let upd = Array::from_slice(&[9.0f32, 8.0], &[1, 2]).unwrap();
    let at = Array::from_slice(&[0i32, 3], &[2]).unwrap();
    let c2 = cache.slice_update_dynamic(&upd, &at, &[0, 1]).unwrap();
    assert_eq!(c2.to_vec::<f32>().unwrap(), vec![0.0, 0.0, 0.0, 9.0, 8.0, 0.0]);
    let back = c2.slice_dynamic(&Array::from_slice(&[3i32], &[1]).unwrap(), &[1], &[1, 2]).unwrap();
    assert_eq!(back.to_vec::<f32>().unwrap(), vec![9.0, 8.0]);
}

#[test]
fn devices_and_streams() {
    let cpu = Device::cpu();
    assert!(cpu.is_available());
    assert!(Device::count(mlxrun::mlx::DeviceType::Cpu).unwrap() >= 1);
    let default = Device::default_device().unwrap();
    // Ops run on a new stream when it is made the thread's default.
    let s = Stream::new(cpu).unwrap();
    let before = Stream::default_for(cpu).unwrap();
    s.set_default().unwrap();
    let v = Array::ones(&[4], Dtype::F32).unwrap().sum(None, false).unwrap();
    assert_eq!(v.item::<f32>().unwrap(), 4.0);
    s.synchronize().unwrap();
    before.set_default().unwrap();
    cpu.synchronize().unwrap();
    default.set_default().unwrap();
    if !Device::gpu().is_available() {
        // Asking for a device this build lacks is an error, not a crash.
        assert!(Device::gpu().set_default().is_err() || Device::default_device().unwrap() == Device::gpu());
        default.set_default().unwrap();
    }
}

#[test]
fn safetensors_round_trip_with_metadata() {
    let dir = std::env::temp_dir().join(format!("mlxrun-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = Array::from_slice(&[bf16::from_f32(0.5)], &[1]).unwrap();
    let c = Array::from_slice(&[7u32, 9], &[2]).unwrap();
    let t = a.transpose(&[]).unwrap(); // non-contiguous: saved as its logical layout
    io::save_safetensors(&path, &[("a", &a), ("b", &b), ("c", &c), ("t", &t)], &[("format", "mlx"), ("note", "ü")]).unwrap();
    let f = io::load_safetensors(&path).unwrap();
    assert_eq!(f.tensors.keys().collect::<Vec<_>>(), vec!["a", "b", "c", "t"]);
    assert_eq!(f.tensors["a"].to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(f.tensors["b"].to_vec::<bf16>().unwrap(), vec![bf16::from_f32(0.5)]);
    assert_eq!(f.tensors["c"].to_vec::<u32>().unwrap(), vec![7, 9]);
    assert_eq!(f.tensors["t"].to_vec::<f32>().unwrap(), vec![1.0, 3.0, 2.0, 4.0]);
    assert_eq!(f.metadata["note"], "ü");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn seeded_randomness_is_reproducible() {
    random::seed(42).unwrap();
    let a = random::uniform(0.0, 1.0, &[8], Dtype::F32, None).unwrap().to_vec::<f32>().unwrap();
    random::seed(42).unwrap();
    let b = random::uniform(0.0, 1.0, &[8], Dtype::F32, None).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(a, b);
    let k = random::key(3).unwrap();
    let n1 = random::normal(&[1000], Dtype::F32, 0.0, 1.0, Some(&k)).unwrap();
    let n2 = random::normal(&[1000], Dtype::F32, 0.0, 1.0, Some(&k)).unwrap();
    assert_eq!(n1.to_vec::<f32>().unwrap(), n2.to_vec::<f32>().unwrap());
    let mean = n1.mean(None, false).unwrap().item::<f32>().unwrap();
    assert!(mean.abs() < 0.15, "mean of 1000 standard normals: {mean}");
}

#[test]
fn grad_of_a_rust_closure() {
    // d/dx sum(x² · w) = 2xw ; d/dw = x².
    let x = Array::from_slice(&[1.0f32, -2.0, 3.0], &[3]).unwrap();
    let w = Array::from_slice(&[0.5f32, 1.0, 2.0], &[3]).unwrap();
    let (vals, grads) =
        transforms::value_and_grad(|v| Ok(vec![v[0].square()?.mul(&v[1])?.sum(None, false)?]), &[&x, &w], &[0, 1]).unwrap();
    assert_eq!(vals[0].item::<f32>().unwrap(), 0.5 + 4.0 + 18.0);
    assert_eq!(grads[0].to_vec::<f32>().unwrap(), vec![1.0, -4.0, 12.0]);
    assert_eq!(grads[1].to_vec::<f32>().unwrap(), vec![1.0, 4.0, 9.0]);
    // vjp with a non-trivial cotangent.
    let ct = Array::from_slice(&[1.0f32, 10.0, 100.0], &[3]).unwrap();
    let (outs, vjps) = transforms::vjp(|v| Ok(vec![v[0].exp()?]), &[&x], &[&ct]).unwrap();
    let e: Vec<f32> = [1.0f32, -2.0, 3.0].iter().map(|v| v.exp()).collect();
    let want: Vec<f32> = e.iter().zip([1.0f32, 10.0, 100.0]).map(|(a, b)| a * b).collect();
    let arr = |v: &[f32]| Array::from_slice(v, &[3]).unwrap();
    common::assert_close("exp", &outs[0], &arr(&e), 0.0, 1e-6);
    common::assert_close("vjp of exp", &vjps[0], &arr(&want), 0.0, 1e-6);
}

#[test]
fn compile_traces_once_and_matches() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let traces = Arc::new(AtomicUsize::new(0));
    let t = traces.clone();
    let gelu_like = move |v: &[Array]| -> mlxrun::Result<Vec<Array>> {
        t.fetch_add(1, Ordering::SeqCst);
        let x = &v[0];
        Ok(vec![x.mul(&x.mul_scalar(1.702)?.sigmoid()?)?])
    };
    let reference = |x: &Array| x.mul(&x.mul_scalar(1.702).unwrap().sigmoid().unwrap()).unwrap();
    let f = Compiled::new(gelu_like, false).unwrap();
    for step in 0..5 {
        let x = random::normal(&[4, 8], Dtype::F32, 0.0, 1.0, Some(&random::key(step).unwrap())).unwrap();
        let got = f.call(&[&x]).unwrap();
        common::assert_close("compiled", &got[0], &reference(&x), 1e-6, 1e-6);
    }
    assert_eq!(traces.load(Ordering::SeqCst), 1, "same shapes reuse the trace");
    let y = Array::ones(&[3], Dtype::F32).unwrap();
    f.call(&[&y]).unwrap();
    assert_eq!(traces.load(Ordering::SeqCst), 2, "a new shape traces again");
    drop(f);
}

#[test]
fn graph_census_counts_what_evaluation_would_run() {
    use mlxrun::mlx::graph;
    let a = Array::from_slice(&[1f32, 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
    let b = a.transpose(&[]).unwrap().matmul(&a).unwrap();
    eval(&[&b]).unwrap();
    // Already computed: nothing left to run.
    assert_eq!(graph::census(&[&b]).unwrap(), vec![]);
    // On top of it: a split (one node, three outputs), each part used twice, plus a reshape.
    let parts = b.reshape(&[9]).unwrap().split_at(&[3, 6], 0).unwrap();
    let x = parts[0].add(&parts[1]).unwrap();
    let y = x.mul(&parts[2]).unwrap().add(&x).unwrap();
    let census = graph::census(&[&y, &parts[2]]).unwrap();
    let count = |op: &str| census.iter().find(|(name, _)| name == op).map_or(0, |(_, n)| *n);
    assert_eq!((count("Add"), count("Multiply"), count("Split"), count("Reshape")), (2, 1, 1, 1), "{census:?}");
    assert_eq!(graph::total(&census), 5, "{census:?}");
    // Most frequent first.
    assert_eq!(census[0], ("Add".to_string(), 2));
    eval(&[&y]).unwrap();
    assert_eq!(graph::total(&graph::census(&[&y]).unwrap()), 0);
}
