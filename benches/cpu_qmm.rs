//! The CPU quantized-matmul kernels (mlxrun::mlx::cpu_qmm) beside a dense f32 matmul of the
//! same (unpacked) weights and MLX's own quantized_matmul, at SmolLM2-135M's matrix shapes:
//! one activation row (decode) and 128 (prefill), and one matrix larger than the L3 cache
//! (which every decode step's weights together are), whose products read memory. Prints the
//! best time per call in µs, also with the scales and biases held in f16 (as the engine keeps
//! them on the CPU where that is exact); asserts nothing.
//! Run: `cargo bench --bench cpu_qmm [-- --bits 8] [-- --group 64]`.
use std::time::Instant;

use mlxrun::mlx::quant::{quantize, quantized_matmul, QuantMode};
use mlxrun::mlx::{cpu_qmm, random, Array, Dtype};

const REPS: usize = 30;

fn best_us(f: &dyn Fn() -> mlxrun::Result<Array>) -> mlxrun::Result<f64> {
    f()?.eval()?;
    let mut best = f64::MAX;
    for _ in 0..REPS {
        let t = Instant::now();
        f()?.eval()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best * 1e6)
}

fn arg(name: &str, default: i32) -> i32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> mlxrun::Result<()> {
    let (bits, group) = (arg("--bits", 4), arg("--group", 32));
    println!("kernels: {}, {bits}-bit, group {group}", cpu_qmm::isa());
    println!(
        "{:>5} {:>6} {:>5} | {:>10} {:>10} {:>10} {:>10} | {:>8}",
        "M", "N", "K", "ours µs", "f16-s µs", "f32 µs", "mlx-q µs", "f32/ours"
    );
    // q/k/v/o, gate/up, down and the tied head of SmolLM2-135M; then 32768 × 4096.
    for (n, k) in [(576, 576), (192, 576), (1536, 576), (576, 1536), (49152, 576), (32768, 4096)] {
        let w = random::normal(&[n, k], Dtype::F32, 0.0, 0.05, Some(&random::key(1)?))?;
        let q = quantize(&w, group, bits, QuantMode::Affine)?;
        let b = q.biases.clone().expect("affine");
        let dense = q.dequantize(Some(Dtype::F32))?;
        let dense_t = dense.transpose(&[])?;
        let (s16, b16) = (q.scales.astype(Dtype::F16)?, b.astype(Dtype::F16)?);
        for a in [&q.weight, &q.scales, &b, &dense, &dense_t, &s16, &b16] {
            a.eval()?;
        }
        for m in [1, 128] {
            let x = random::normal(&[m, k], Dtype::F32, 0.0, 1.0, Some(&random::key(2)?))?;
            x.eval()?;
            let ours = best_us(&|| cpu_qmm::matmul(&x, &q.weight, &q.scales, &b, group, bits))?;
            let half = best_us(&|| cpu_qmm::matmul(&x, &q.weight, &s16, &b16, group, bits))?;
            let f32 = best_us(&|| x.matmul(&dense_t))?;
            // MLX's own kernel is slow at prefill sizes: timed at decode size only.
            let mlx = if m == 1 {
                format!(
                    "{:10.1}",
                    best_us(&|| quantized_matmul(&x, &q.weight, &q.scales, Some(&b), true, group, bits, QuantMode::Affine))?
                )
            } else {
                format!("{:>10}", "-")
            };
            println!("{m:>5} {n:>6} {k:>5} | {ours:10.1} {half:10.1} {f32:10.1} {mlx} | {:8.2}", f32 / ours);
        }
    }
    Ok(())
}
