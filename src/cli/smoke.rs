//! `mlxrun smoke`: exercises MLX through the engine on random data and prints timings.
use std::time::Instant;

use clap::Args;

use crate::mlx::fast::{self, AttentionMask, RopeFreqs, RopeOffset};
use crate::mlx::{memory, random, Array, Device, Dtype};
use crate::Result;

#[derive(Args, Debug)]
pub struct SmokeArgs {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs the pieces every later feature stands on and prints what they did (one JSON object
/// with `json`).
pub fn run(json: bool) -> Result<()> {
    let device = Device::default_device()?;
    // Compute in f32 on the CPU (MLX's CPU half-precision matmul is slow), bf16 on GPUs.
    let dtype = if device == Device::cpu() { Dtype::F32 } else { Dtype::Bf16 };

    let n = 1024;
    let key = random::key(0)?;
    let a = random::normal(&[n, n], dtype, 0.0, 1.0, Some(&key))?;
    a.eval()?;
    a.matmul(&a)?.eval()?;
    let t = Instant::now();
    let reps = 10;
    for _ in 0..reps {
        a.matmul(&a)?.eval()?;
    }
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    let gflops = 2.0 * (n as f64).powi(3) / secs / 1e9;

    // One attention block of a small random model: norm, projections, rotary, attention.
    let (seq, hidden, heads, head_dim) = (128, 512, 8, 64);
    let w = |i: u64, rows: i32, cols: i32| random::normal(&[rows, cols], dtype, 0.0, 0.02, Some(&random::key(i)?));
    let (wq, wk, wv, wo) = (w(1, hidden, hidden)?, w(2, hidden, hidden)?, w(3, hidden, hidden)?, w(4, hidden, hidden)?);
    let x = random::normal(&[1, seq, hidden], dtype, 0.0, 1.0, Some(&random::key(5)?))?;
    let norm_w = Array::ones(&[hidden], dtype)?;
    let t = Instant::now();
    let h = fast::rms_norm(&x, Some(&norm_w), 1e-5)?;
    let heads_of = |m: &Array| -> Result<Array> {
        let p = h.matmul(m)?.reshape(&[1, seq, heads, head_dim])?.transpose(&[0, 2, 1, 3])?;
        fast::rope(&p, head_dim, false, RopeFreqs::Base(10000.0), 1.0, RopeOffset::Fixed(0))
    };
    let (q, k) = (heads_of(&wq)?, heads_of(&wk)?);
    let v = h.matmul(&wv)?.reshape(&[1, seq, heads, head_dim])?.transpose(&[0, 2, 1, 3])?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let o = fast::scaled_dot_product_attention(&q, &k, &v, scale, AttentionMask::Causal, None)?;
    let out = x.add(&o.transpose(&[0, 2, 1, 3])?.reshape(&[1, seq, hidden])?.matmul(&wo)?)?;
    out.eval()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mean_abs = out.abs()?.mean(None, false)?.astype(Dtype::F32)?.item::<f32>()?;
    let (active, peak, cache) = (memory::active_memory(), memory::peak_memory(), memory::cache_memory());
    if json {
        let v = serde_json::json!({
            "mlx": crate::mlx::version(),
            "device": format!("{:?}", device.kind).to_lowercase(),
            "dtype": dtype.name(),
            "matmul": {"n": n, "gflop_s": gflops},
            "attention_block": {"tokens": seq, "hidden": hidden, "ms": ms, "mean_abs_out": mean_abs},
            "memory": {"active_bytes": active, "peak_bytes": peak, "cache_bytes": cache},
        });
        println!("{v}");
        return Ok(());
    }
    let mib = |b: usize| b as f64 / 1048576.0;
    println!("MLX {} on {:?}", crate::mlx::version(), device.kind);
    println!("matmul {n}x{n} {dtype}: {gflops:.1} GFLOP/s");
    println!("attention block, {seq} tokens x {hidden} hidden: {ms:.2} ms (mean |out| {mean_abs:.4})");
    println!("memory: active {:.1} MiB, peak {:.1} MiB, cache {:.1} MiB", mib(active), mib(peak), mib(cache));
    Ok(())
}
