//! f32 matmul throughput through the Rust API, beside MLX's Python package on the same
//! machine with the wheel's own BLAS and with OpenBLAS preloaded (the reference's best).
//! Run: `cargo bench --bench matmul` (prints GFLOP/s and ratios; asserts nothing).
use std::process::Command;
use std::time::Instant;

use mlxrun::mlx::{random, Dtype};

const N: i32 = 1024;
const REPS: usize = 20;

fn ours() -> mlxrun::Result<f64> {
    let key = random::key(0)?;
    let a = random::normal(&[N, N], Dtype::F32, 0.0, 1.0, Some(&key))?;
    let b = random::normal(&[N, N], Dtype::F32, 0.0, 1.0, Some(&random::split(&key, 2)?.slice_axis(0, 1, 2)?.squeeze(&[0])?))?;
    a.eval()?;
    b.eval()?;
    a.matmul(&b)?.eval()?; // warm-up
    let mut best = f64::MAX;
    for _ in 0..REPS {
        let t = Instant::now();
        a.matmul(&b)?.eval()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (N as f64).powi(3) / best / 1e9)
}

/// Same measurement in MLX's Python package; `None` when the venv is missing.
fn reference(preload: Option<&str>) -> Option<f64> {
    let root = env!("CARGO_MANIFEST_DIR");
    let py = format!("{root}/.deps/venv/bin/python");
    let code = format!(
        "import mlx.core as mx, time\n\
         a=mx.random.normal((N,N)); b=mx.random.normal((N,N)); mx.eval(a,b); mx.eval(a@b)\n\
         best=1e9\n\
         for _ in range({REPS}):\n    t=time.perf_counter(); mx.eval(a@b); best=min(best,time.perf_counter()-t)\n\
         print(2*N**3/best/1e9)\n"
    )
    .replace('N', &N.to_string());
    let mut cmd = Command::new(py);
    cmd.arg("-c").arg(code);
    if let Some(lib) = preload {
        // OpenBLAS's libgfortran sits one folder up when the setup script unpacked it.
        let lib = std::path::Path::new(lib);
        let up = lib.parent().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default();
        cmd.env("LD_PRELOAD", lib).env("LD_LIBRARY_PATH", up);
    }
    let out = cmd.output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn main() {
    let ours = match ours() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("matmul failed: {e}");
            std::process::exit(1);
        }
    };
    println!("f32 {N}x{N} matmul, best of {REPS}, this machine's CPU");
    println!("  mlxrun (Rust API, OpenBLAS linked)      {ours:8.1} GFLOP/s");
    let openblas = option_env!("MLXRUN_OPENBLAS_LIB");
    for (label, preload) in [("MLX Python, wheel's reference BLAS ", None), ("MLX Python, OpenBLAS preloaded    ", openblas)] {
        if label.contains("preloaded") && preload.is_none() {
            continue;
        }
        match reference(preload) {
            Some(g) => println!("  {label}      {g:8.1} GFLOP/s   (mlxrun / this = {:.2}x)", ours / g),
            None => println!("  {label}      unavailable (run scripts/setup.sh)"),
        }
    }
}
