//! Helpers shared by the integration tests.
#![allow(dead_code)]
pub mod bad_model;
pub mod c_programs;
pub mod gguf_writer;
pub mod reference;

/// A scratch folder for one test, removed (with what the test put in it) when dropped, so
/// that runs do not pile copies of models up in the temporary folder.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    /// An empty folder named after `tag` and the process, under cargo's temporary folder
    /// for integration tests (inside `target/`).
    pub fn new(tag: &str) -> Scratch {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mlxrun-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use std::path::PathBuf;

use mlxrun::mlx::{Array, Dtype};

/// A file under `.deps/` that scripts/setup.sh makes; the panic says how to get it.
pub fn deps_file(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".deps").join(rel);
    assert!(p.exists(), "{} is missing: run scripts/setup.sh (or scripts/test.sh)", p.display());
    p
}

/// Asserts same shape and dtype, then values within `atol + rtol * |expected|` (floats) or
/// exactly (integers and booleans). NaNs must match NaNs.
pub fn assert_close(what: &str, got: &Array, want: &Array, atol: f64, rtol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    if want.dtype().is_float() {
        let g = got.astype(Dtype::F32).unwrap().to_vec::<f32>().unwrap();
        let w = want.astype(Dtype::F32).unwrap().to_vec::<f32>().unwrap();
        let mut worst = (0.0f64, 0usize);
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            let (a, b) = (*a as f64, *b as f64);
            if a.is_nan() || b.is_nan() {
                assert!(a.is_nan() && b.is_nan(), "{what}[{i}]: got {a}, want {b}");
                continue;
            }
            if a == b {
                continue; // also covers equal infinities
            }
            let excess = (a - b).abs() - (atol + rtol * b.abs());
            if excess > worst.0 {
                worst = (excess, i);
            }
        }
        let i = worst.1;
        assert!(worst.0 <= 0.0, "{what}[{i}]: got {}, want {} (atol {atol}, rtol {rtol})", g[i], w[i]);
    } else {
        let g = got.astype(Dtype::I64).unwrap().to_vec::<i64>().unwrap();
        let w = want.astype(Dtype::I64).unwrap().to_vec::<i64>().unwrap();
        assert_eq!(g, w, "{what}: values");
    }
}
