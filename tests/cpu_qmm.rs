//! The CPU quantized-matmul kernels (mlxrun::mlx::cpu_qmm) against MLX's own
//! quantized_matmul on the same packed weights: odd shapes, bits 4 and 8, group sizes 32,
//! 64 and 128, the vector and the portable code, strided and batched activations, the
//! gradient in the activations, and the settings they refuse. The two sum in different orders, so they agree to rounding: each
//! output within 1e-5 of Σ_k |x_k| |w_nk| (f32 sums of a few hundred terms differ by
//! about 1e-6 of that).
use mlxrun::mlx::quant::{quantize, quantized_matmul, QuantMode, Quantized};
use mlxrun::mlx::{cpu_qmm, random, Array, Dtype};

/// The kernels' code setting is process-wide: the tests that change it run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn normal(shape: &[i32], seed: u64) -> Array {
    random::normal(shape, Dtype::F32, 0.0, 1.0, Some(&random::key(seed).unwrap())).unwrap()
}

fn packed(n: i32, k: i32, group_size: i32, bits: i32, seed: u64) -> Quantized {
    quantize(&normal(&[n, k], seed), group_size, bits, QuantMode::Affine).unwrap()
}

fn ours(x: &Array, q: &Quantized) -> Array {
    cpu_qmm::matmul(x, &q.weight, &q.scales, q.biases.as_ref().unwrap(), q.group_size, q.bits).unwrap()
}

fn mlx(x: &Array, q: &Quantized) -> Array {
    quantized_matmul(x, &q.weight, &q.scales, q.biases.as_ref(), true, q.group_size, q.bits, QuantMode::Affine).unwrap()
}

/// Asserts `got` equals `want` within 1e-5 of Σ_k |x_k| |w_nk| for every output; returns
/// the largest |got - want| / Σ_k |x_k| |w_nk|.
fn assert_close(got: &Array, want: &Array, x: &Array, q: &Quantized, what: &str) -> f32 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), Dtype::F32, "{what}: dtype");
    let w = q.dequantize(Some(Dtype::F32)).unwrap();
    let (n, k) = (w.shape()[0] as usize, w.shape()[1] as usize);
    let (w, xs) = (w.to_vec::<f32>().unwrap(), x.reshape(&[-1, k as i32]).unwrap().to_vec::<f32>().unwrap());
    let (g, r) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let mut worst = 0f32;
    for (i, (a, b)) in g.iter().zip(&r).enumerate() {
        let (m, j) = (i / n, i % n);
        let bound: f32 = (0..k).map(|t| (xs[m * k + t] * w[j * k + t]).abs()).sum();
        assert!((a - b).abs() <= 1e-5 * bound + 1e-6, "{what}: output {i} is {a}, MLX gives {b} (bound {bound})");
        worst = worst.max((a - b).abs() / bound);
    }
    worst
}

fn sweep(code: &str) {
    let (mut seed, mut worst) = (1, 0f32);
    for bits in [4, 8] {
        for group_size in [32, 64, 128] {
            for k in [group_size, 3 * group_size, 384] {
                for n in [17, 97] {
                    let q = packed(n, k, group_size, bits, seed);
                    for m in [1, 2, 3, 7, 33] {
                        seed += 1;
                        let x = normal(&[m, k], seed);
                        let what = format!("{code}: bits {bits}, group {group_size}, M {m}, N {n}, K {k}");
                        worst = worst.max(assert_close(&ours(&x, &q), &mlx(&x, &q), &x, &q, &what));
                    }
                }
            }
        }
    }
    eprintln!("{code}: largest difference from MLX {worst:e} of Σ|x||w|");
}

#[test]
fn matches_mlx_over_odd_shapes_on_both_codes() {
    let _g = serial();
    let was = cpu_qmm::set_portable(false);
    let act8 = cpu_qmm::set_int8_activations(false);
    eprintln!("vector code: {}", cpu_qmm::isa());
    sweep(cpu_qmm::isa());
    cpu_qmm::set_portable(true);
    assert_eq!(cpu_qmm::isa(), "scalar");
    sweep("scalar");
    cpu_qmm::set_portable(was);
    cpu_qmm::set_int8_activations(act8);
}

/// With int8 activations (single-row products on AVX2), an output moves from MLX's by the
/// rounding of x at most: Σ_k |w_nk|·d(k)/2, d(k) the max |x| of k's block of 32 over 127,
/// plus summation rounding. Rows past the single-row kernel's (prefill) stay f32.
#[test]
fn int8_activations_stay_within_their_rounding_bound() {
    let _g = serial();
    let was = cpu_qmm::set_portable(false);
    if cpu_qmm::isa() != "avx2" {
        eprintln!("no AVX2 here: int8 activations are not used");
        cpu_qmm::set_portable(was);
        return;
    }
    let act8 = cpu_qmm::set_int8_activations(true);
    let (mut seed, mut worst, mut moved) = (500, 0f32, 0f32);
    for bits in [4, 8] {
        for group_size in [32, 64, 128] {
            for (n, k) in [(17, group_size), (97, 384), (40, 3 * group_size)] {
                let q = packed(n, k, group_size, bits, seed);
                let w = q.dequantize(Some(Dtype::F32)).unwrap().to_vec::<f32>().unwrap();
                for m in [1, 2, 3] {
                    seed += 1;
                    // Uneven magnitudes within a block, as activations have.
                    let x = normal(&[m, k], seed).mul(&normal(&[m, k], seed + 1000).exp().unwrap()).unwrap();
                    let (got, want) = (ours(&x, &q).to_vec::<f32>().unwrap(), mlx(&x, &q).to_vec::<f32>().unwrap());
                    let xs = x.to_vec::<f32>().unwrap();
                    let (nu, ku) = (n as usize, k as usize);
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        let (r, j) = (i / nu, i % nu);
                        let xr = &xs[r * ku..(r + 1) * ku];
                        let d = |t: usize| xr[t / 32 * 32..t / 32 * 32 + 32].iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                        let rounding: f32 = (0..ku).map(|t| w[j * ku + t].abs() * d(t) / 2.0).sum();
                        let sums: f32 = (0..ku).map(|t| (w[j * ku + t] * xr[t]).abs()).sum();
                        let what = format!("bits {bits}, group {group_size}, M {m}, N {n}, K {k}, output {i}");
                        assert!((a - b).abs() <= rounding + 1e-5 * sums + 1e-6, "{what}: {a} vs MLX's {b}, bound {rounding}");
                        worst = worst.max((a - b).abs() / rounding);
                        moved = moved.max((a - b).abs());
                    }
                }
            }
        }
    }
    eprintln!("int8 activations: largest difference {moved:e}, {worst:.3} of the rounding bound");
    // The route was taken: rounding x moves the results by more than summation order would.
    assert!(moved > 1e-4, "int8 activations changed nothing: the f32 kernel ran");
    let x = normal(&[7, 128], 9);
    let q = packed(33, 128, 32, 4, 10);
    assert_close(&ours(&x, &q), &mlx(&x, &q), &x, &q, "seven rows, int8 activations on");
    cpu_qmm::set_int8_activations(act8);
    cpu_qmm::set_portable(was);
}

#[test]
fn strided_and_batched_activations() {
    let _g = serial();
    let q = packed(97, 128, 64, 4, 7);
    // A transposed view: its rows are not contiguous, so the primitive copies them.
    let xt = normal(&[128, 5], 8).transpose(&[]).unwrap();
    assert_close(&ours(&xt, &q), &mlx(&xt, &q), &xt, &q, "transposed activations");
    // Leading batch dimensions are kept, the rows flattened (prefill size: the tiled kernel).
    let xb = normal(&[2, 9, 128], 9);
    let got = ours(&xb, &q);
    assert_eq!(got.shape(), vec![2, 9, 97]);
    assert_close(&got, &mlx(&xb, &q), &xb, &q, "batched activations");
    // The engine's quantized matmul picks these kernels on the CPU.
    assert!(cpu_qmm::takes(&q, &xb).unwrap());
    assert_close(&q.matmul(&xb, true).unwrap(), &mlx(&xb, &q), &xb, &q, "Quantized::matmul");
}

#[test]
fn refuses_what_it_does_not_compute() {
    let q = packed(17, 64, 32, 4, 3);
    let x = normal(&[2, 64], 4);
    let bf16 = x.astype(Dtype::Bf16).unwrap();
    let err = cpu_qmm::matmul(&bf16, &q.weight, &q.scales, q.biases.as_ref().unwrap(), 32, 4).unwrap_err().to_string();
    assert!(err.contains("float32"), "{err}");
    assert!(!cpu_qmm::takes(&q, &bf16).unwrap());
    let q3 = packed(17, 64, 32, 3, 5);
    let err = cpu_qmm::matmul(&x, &q3.weight, &q3.scales, q3.biases.as_ref().unwrap(), 32, 3).unwrap_err().to_string();
    assert!(err.contains("bits 3"), "{err}");
    assert!(!cpu_qmm::takes(&q3, &x).unwrap());
    let err = cpu_qmm::matmul(&normal(&[2, 96], 6), &q.weight, &q.scales, q.biases.as_ref().unwrap(), 32, 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit"), "{err}");
}

/// Gradients reach the activations (as cotangent @ W, W unpacked), so that LoRA training
/// over packed weights works; the packed weights themselves take none.
#[test]
fn gradient_in_the_activations_matches_mlx() {
    use mlxrun::mlx::value_and_grad;
    let _g = serial();
    let q = packed(33, 128, 32, 4, 11);
    let x = normal(&[3, 128], 12);
    let b = q.biases.clone().unwrap();
    // d/dx Σ f(x)², by MLX's autodiff.
    let grad = |f: &dyn Fn(&Array) -> Array| -> Vec<f32> {
        let loss = |a: &[Array]| {
            let y = f(&a[0]);
            Ok(vec![y.mul(&y)?.sum(None, false)?])
        };
        let (_, g) = value_and_grad(loss, &[&x], &[0]).unwrap();
        g[0].to_vec::<f32>().unwrap()
    };
    let (a, r) = (grad(&|a| ours(a, &q)), grad(&|a| mlx(a, &q)));
    let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (u, v)) in a.iter().zip(&r).enumerate() {
        assert!((u - v).abs() <= 1e-4 * scale, "gradient {i}: {u} vs MLX {v}");
    }
    let err = value_and_grad(
        |a: &[Array]| Ok(vec![cpu_qmm::matmul(&x, &q.weight, &a[0], &b, 32, 4)?.sum(None, false)?]),
        &[&q.scales],
        &[0],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("activations only"), "{err}");
}

/// Scales and biases held in float16 or bfloat16 are read at their values: the products
/// equal, bit for bit, those of f32 scales holding the same values, on both codes and at
/// decode and prefill sizes; the gradient path unpacks them in f32. Mixed dtypes are refused.
#[test]
fn half_scales_compute_what_f32_scales_of_the_same_values_compute() {
    let _g = serial();
    let act8 = cpu_qmm::set_int8_activations(false);
    for portable in [false, true] {
        let was = cpu_qmm::set_portable(portable);
        for (bits, group_size) in [(4, 32), (8, 64), (4, 128)] {
            for half in [Dtype::F16, Dtype::Bf16] {
                let q = packed(37, 384, group_size, bits, 40 + bits as u64);
                let narrow = Quantized {
                    scales: q.scales.astype(half).unwrap(),
                    biases: Some(q.biases.as_ref().unwrap().astype(half).unwrap()),
                    ..q.clone()
                };
                // The same values in f32: what the kernels read the narrow ones as.
                let wide = Quantized {
                    scales: narrow.scales.astype(Dtype::F32).unwrap(),
                    biases: Some(narrow.biases.as_ref().unwrap().astype(Dtype::F32).unwrap()),
                    ..q.clone()
                };
                assert!(cpu_qmm::takes(&narrow, &normal(&[1, 384], 1)).unwrap());
                for m in [1, 3, 19] {
                    let x = normal(&[m, 384], 50 + m as u64);
                    let (a, b) = (ours(&x, &narrow).to_vec::<f32>().unwrap(), ours(&x, &wide).to_vec::<f32>().unwrap());
                    assert_eq!(a, b, "{half:?} scales, bits {bits}, group {group_size}, M {m}, portable {portable}");
                    assert_close(&ours(&x, &narrow), &mlx(&x, &wide), &x, &wide, "half scales against MLX");
                }
            }
        }
        cpu_qmm::set_portable(was);
    }
    cpu_qmm::set_int8_activations(act8);
    // f32 scales whose values f16 holds are found to be exact in f16; others are not.
    let q = packed(8, 64, 32, 4, 3);
    let (s16, b16) = (q.scales.astype(Dtype::F16).unwrap().astype(Dtype::F32).unwrap(), q.biases.clone().unwrap());
    assert_eq!(cpu_qmm::exact_scale_dtype(&s16, &s16).unwrap(), Dtype::F16);
    assert_eq!(cpu_qmm::exact_scale_dtype(&s16, &b16).unwrap(), Dtype::F32);
    let bf = q.scales.astype(Dtype::Bf16).unwrap().astype(Dtype::F32).unwrap();
    // bf16 values within f16's range are f16 values too; 2^-100 is bf16's alone.
    assert_eq!(cpu_qmm::exact_scale_dtype(&bf, &bf).unwrap(), Dtype::F16);
    let tiny = Array::from_slice(&[2f32.powi(-100)], &[1, 1]).unwrap();
    assert_eq!(cpu_qmm::exact_scale_dtype(&tiny, &tiny).unwrap(), Dtype::Bf16);
    // The gradient in the activations unpacks narrow scales in f32.
    use mlxrun::mlx::value_and_grad;
    let narrow = Quantized { scales: s16.astype(Dtype::F16).unwrap(), biases: Some(s16.astype(Dtype::F16).unwrap()), ..q.clone() };
    let wide = Quantized { scales: s16.clone(), biases: Some(s16.clone()), ..q.clone() };
    let x3 = normal(&[3, 64], 9);
    let grad = |q: &Quantized| -> Vec<f32> {
        let loss = |a: &[Array]| {
            let y = ours(&a[0], q);
            Ok(vec![y.mul(&y)?.sum(None, false)?])
        };
        let (_, g) = value_and_grad(loss, &[&x3], &[0]).unwrap();
        assert_eq!(g[0].dtype(), Dtype::F32);
        g[0].to_vec::<f32>().unwrap()
    };
    assert_eq!(grad(&narrow), grad(&wide));
    // Scales and biases of different dtypes are refused by name.
    let x = normal(&[1, 64], 4);
    let err = cpu_qmm::matmul(&x, &q.weight, &q.scales.astype(Dtype::F16).unwrap(), q.biases.as_ref().unwrap(), 32, 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("both alike"), "{err}");
}
