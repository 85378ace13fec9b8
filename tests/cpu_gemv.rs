//! One-row float32 products on the CPU take BLAS's sgemv route (src/shim/cpu_gemv.cpp)
//! instead of MLX's sgemm. Each case compares the route's result with the same row
//! multiplied as part of a two-row product (which MLX computes with sgemm), over the
//! layouts a model hands it: a Linear's transposed weight view, a row-major matrix, strided
//! views of either, rows with leading axes or strided themselves, a bias through addmm, and
//! degenerate sizes. Gradients through the route are checked against the analytic ones.
use mlxrun::mlx::{concatenate, ops, random, transforms, Array, Dtype};
use mlxrun::Result;

/// Relative to the magnitudes involved: sgemv and sgemm sum in different orders.
const TOL: f32 = 1e-5;

fn randn(shape: &[i32], seed: u64) -> Array {
    random::normal(shape, Dtype::F32, 0.0, 1.0, Some(&random::key(seed).unwrap())).unwrap()
}

fn close(got: &Array, want: &Array, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let scale = w.iter().fold(1f32, |m, x| m.max(x.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= TOL * scale, "{what}: element {i}: route {a}, sgemm {b}");
    }
}

/// `row @ b` computed as row 0 of a two-row product, so not through the route.
fn via_two_rows(row: &Array, b: &Array) -> Result<Array> {
    let k = *row.shape().last().unwrap();
    let r = row.reshape(&[1, k])?;
    let two = concatenate(&[&r, &r], 0)?.matmul(b)?;
    let n = b.shape()[1];
    two.slice(&[0, 0], &[1, n], &[1, 1])?.reshape(&out_shape(row, n))
}

fn out_shape(row: &Array, n: i32) -> Vec<i32> {
    let mut s = row.shape();
    *s.last_mut().unwrap() = n;
    s
}

/// The weight layouts a product meets: (name, [K, N] operand).
fn layouts(k: i32, n: i32, seed: u64) -> Vec<(&'static str, Array)> {
    let w = randn(&[n, k], seed);
    let m = randn(&[k, n], seed + 1);
    let tall = randn(&[2 * k, n], seed + 2);
    let wide = randn(&[n, 2 * k], seed + 3);
    vec![
        ("transposed weight (Linear)", w.swapaxes(0, 1).unwrap()),
        ("row-major", m),
        ("every other row", tall.slice(&[0, 0], &[2 * k, n], &[2, 1]).unwrap()),
        ("transposed, every other column", wide.slice(&[0, 0], &[n, 2 * k], &[1, 2]).unwrap().swapaxes(0, 1).unwrap()),
    ]
}

#[test]
fn the_route_is_on_for_this_build() {
    // Without it every case below would compare sgemm with itself.
    assert!(ops::cpu_gemv_active().unwrap(), "cblas_sgemv not found: one-row products use sgemm");
}

#[test]
fn one_row_products_equal_sgemm_over_shapes_and_layouts() {
    for (k, n) in [(1, 1), (1, 7), (7, 1), (5, 3), (64, 33), (129, 97), (576, 1536)] {
        for (name, b) in layouts(k, n, (k * 1000 + n) as u64) {
            for (rows, shape) in [("[1, K]", vec![1, k]), ("[1, 1, K]", vec![1, 1, k]), ("[K]", vec![k])] {
                let x = randn(&shape, 7);
                let what = format!("K={k} N={n} {name} x{rows}");
                close(&x.matmul(&b).unwrap(), &via_two_rows(&x, &b).unwrap(), &what);
            }
            // A strided row: every other element of a longer one.
            let long = randn(&[1, 2 * k], 9);
            let x = long.slice(&[0, 0], &[1, 2 * k], &[1, 2]).unwrap();
            close(&x.matmul(&b).unwrap(), &via_two_rows(&x, &b).unwrap(), &format!("K={k} N={n} {name} strided row"));
        }
    }
}

#[test]
fn addmm_adds_the_bias_scaled() {
    for (k, n) in [(3, 5), (64, 33), (576, 1536)] {
        for (name, b) in layouts(k, n, 11) {
            let x = randn(&[1, 1, k], 12);
            for c in [randn(&[n], 13), randn(&[1, n], 14), Array::full(&[n], 0.5, Dtype::F32).unwrap()] {
                let got = c.addmm(&x, &b, 0.5, 2.0).unwrap();
                let want = via_two_rows(&x, &b).unwrap().mul(&Array::scalar(0.5f32).unwrap()).unwrap()
                    .add(&c.mul(&Array::scalar(2.0f32).unwrap()).unwrap()).unwrap();
                close(&got, &want, &format!("addmm K={k} N={n} {name} c{:?}", c.shape()));
            }
        }
    }
}

#[test]
fn empty_and_other_dtypes_keep_mlx_semantics() {
    // K = 0: the product is zeros (plus the bias).
    let x = Array::zeros(&[1, 0], Dtype::F32).unwrap();
    let b = Array::zeros(&[0, 4], Dtype::F32).unwrap();
    assert_eq!(x.matmul(&b).unwrap().to_vec::<f32>().unwrap(), vec![0.0; 4]);
    let c = Array::full(&[4], 3.0, Dtype::F32).unwrap();
    assert_eq!(c.addmm(&x, &b, 1.0, 2.0).unwrap().to_vec::<f32>().unwrap(), vec![6.0; 4]);
    // Other dtypes and several rows are MLX's own product; they still agree with f32.
    let x = randn(&[1, 16], 1);
    let b = randn(&[16, 8], 2);
    let half = x.astype(Dtype::F16).unwrap().matmul(&b.astype(Dtype::F16).unwrap()).unwrap();
    assert_eq!(half.dtype(), Dtype::F16);
    let rows = randn(&[3, 16], 3).matmul(&b).unwrap();
    assert_eq!(rows.shape(), vec![3, 8]);
}

#[test]
fn gradients_through_the_route_are_the_analytic_ones() {
    let (k, n) = (33, 17);
    let x = randn(&[1, 1, k], 21);
    let w = randn(&[n, k], 22);
    let c = randn(&[n], 23);
    let g = randn(&[1, 1, n], 24);
    // f(x, w, c) = c + x wᵀ (a Linear with bias); pull g back.
    let (outs, grads) = transforms::vjp(
        |p: &[Array]| Ok(vec![p[2].addmm(&p[0], &p[1].swapaxes(0, 1)?, 1.0, 1.0)?]),
        &[&x, &w, &c],
        &[&g],
    )
    .unwrap();
    close(&outs[0], &c.addmm(&x, &w.swapaxes(0, 1).unwrap(), 1.0, 1.0).unwrap(), "forward");
    // dx = g w, dw = gᵀ x, dc = g: computed with products of more than one row.
    let g2 = g.reshape(&[1, n]).unwrap();
    close(&grads[0], &via_two_rows(&g2, &w).unwrap().reshape(&[1, 1, k]).unwrap(), "dx");
    // [N, 1] @ [1, K] has N rows, so MLX's own product.
    let outer = g2.swapaxes(0, 1).unwrap().matmul(&x.reshape(&[1, k]).unwrap()).unwrap();
    close(&grads[1], &outer, "dw");
    close(&grads[2], &g.reshape(&[n]).unwrap(), "dc");
}
