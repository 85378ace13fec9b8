//! Invalid operations return `Err` with MLX's message, and the process keeps working.
mod common;

use mlxrun::mlx::quant::{self, QuantMode};
use mlxrun::mlx::{concatenate, io, transforms, Array, Compiled, Dtype};
use mlxrun::{Error, Result};

fn a(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    Array::from_slice(&(0..n).map(|i| i as f32).collect::<Vec<_>>(), shape).unwrap()
}

/// After an error, ordinary work must still succeed.
fn still_works() {
    let x = a(&[2, 3]);
    let y = x.matmul(&x.transpose(&[]).unwrap()).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![5.0, 14.0, 14.0, 50.0]);
}

fn expect_err(what: &str, r: Result<impl std::fmt::Debug>, needle: &str) {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.to_lowercase().contains(&needle.to_lowercase()), "{what}: message {msg:?} lacks {needle:?}");
        }
    }
    still_works();
}

#[test]
fn shape_dtype_and_axis_errors_are_reported() {
    // Shape mismatches.
    expect_err("matmul", a(&[2, 3]).matmul(&a(&[2, 3])), "matmul");
    expect_err("add broadcast", a(&[2, 3]).add(&a(&[4, 3])), "broadcast");
    expect_err("reshape", a(&[2, 3]).reshape(&[4, 2]), "reshape");
    expect_err("concatenate", concatenate(&[&a(&[2, 3]), &a(&[2, 4])], 0), "concatenate");
    expect_err("broadcast_to", a(&[2, 3]).broadcast_to(&[3, 3]), "broadcast");
    // Bad axes.
    expect_err("sum axis", a(&[2, 3]).sum(Some(&[5]), false), "axis");
    expect_err("softmax axis", a(&[2, 3]).softmax(&[-3], false), "axis");
    expect_err("argmax axis", a(&[2, 3]).argmax(2, false), "axis");
    expect_err("transpose axes", a(&[2, 3]).transpose(&[0, 0]), "transpose");
    expect_err("squeeze non-1", a(&[2, 3]).squeeze(&[0]), "squeeze");
    // Bad dtypes.
    expect_err("take float indices", a(&[4]).take(&a(&[2]), 0), "integral");
    expect_err("topk beyond size", a(&[2]).topk(9, 0), "topk");
    expect_err("split unequal", a(&[6]).split(4, 0), "split");
    // Caller-side argument checks.
    expect_err("from_slice length", Array::from_slice(&[1.0f32, 2.0], &[3]), "elements");
    expect_err("negative shape", Array::zeros(&[-1, 2], Dtype::F32), "negative");
    expect_err("to_vec dtype", a(&[2]).to_vec::<i32>(), "dtype");
    expect_err("slice arity", a(&[2, 3]).slice(&[0], &[1], &[1]), "slice");
    expect_err("item of many", a(&[2]).item::<f32>(), "one element");
    // Quantization arguments.
    expect_err("quantize group", quant::quantize(&a(&[4, 64]), 48, 4, QuantMode::Affine), "group");
    expect_err("quantize bits", quant::quantize(&a(&[4, 64]), 64, 7, QuantMode::Affine), "bits");
}

#[test]
fn file_errors_name_the_file() {
    expect_err("missing file", io::load_safetensors("/nonexistent/w.safetensors"), "/nonexistent/w.safetensors");
    let dir = std::env::temp_dir().join(format!("mlxrun-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A header length that points past the end of the file.
    let bad = dir.join("corrupt.safetensors");
    std::fs::write(&bad, [0xffu8, 0xff, 0, 0, 0, 0, 0, 0, b'{', b'}']).unwrap();
    expect_err("corrupt header", io::load_safetensors(&bad), "corrupt.safetensors");
    // A truncated data section: save a real file, cut it short.
    let good = dir.join("good.safetensors");
    io::save_safetensors(&good, &[("w", &a(&[64, 64]))], &[]).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = io::load_safetensors(&cut).and_then(|f| {
        let w = f.tensors["w"].try_clone()?;
        w.eval()?;
        Ok(w)
    });
    expect_err("truncated data", r, "truncated");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn transformation_errors_come_back_and_unwind_cleanly() {
    // value_and_grad needs a scalar first output.
    let x = a(&[2, 2]);
    let r = transforms::value_and_grad(|v| Ok(vec![v[0].mul(&v[0])?]), &[&x], &[0]);
    expect_err("non-scalar loss", r, "cotangent");
    // An error raised by the Rust closure reaches the caller with its message.
    let r = transforms::vjp(
        |v| Ok(vec![v[0].matmul(&a(&[3, 3]))?]),
        &[&x],
        &[&x],
    );
    expect_err("closure error", r, "matmul");
    let r = transforms::value_and_grad(|_| Err(Error::InvalidArgument("my own failure".into())), &[&x], &[0]);
    expect_err("closure Err", r, "my own failure");
    // A panic inside the closure is caught before it reaches C++.
    let r = transforms::value_and_grad(|_| panic!("boom"), &[&x], &[0]);
    expect_err("closure panic", r, "panicked");
    // compile: the error appears when the function is traced.
    let c = Compiled::new(|v| Ok(vec![v[0].matmul(&v[1])?]), false).unwrap();
    expect_err("compiled call", c.call(&[&a(&[2, 3]), &a(&[2, 3])]), "matmul");
    let ok = c.call(&[&a(&[2, 3]), &a(&[3, 2])]).unwrap();
    assert_eq!(ok[0].shape(), vec![2, 2]);
}
