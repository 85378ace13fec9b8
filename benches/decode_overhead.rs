//! Where a decode step's time goes, ours alone: after a prompt of each length fills the
//! cache, greedy single-token steps are run three ways and timed per token:
//!
//! - **pipelined** (what generation does): step n+1's graph is built and queued before
//!   token n is read. The time is split into building the graph (`build`: the model's ops
//!   and the sampler, through the FFI into MLX's graph), queueing it (`queue`: `async_eval`,
//!   where MLX walks the graph and submits the kernels) and waiting for the token (`wait`).
//!   A wait near zero means the host is the bottleneck; a build + queue well under the
//!   per-token time means the device is.
//! - **synchronous**: each step built, evaluated and read before the next (host + device
//!   + the round trip, nothing overlapped).
//! - **build only**: the graph of one step built and dropped, unevaluated (the host's
//!   share alone).
//!
//! After the table, each model's step graph is counted by operation (`mlx::graph::census`):
//! on a GPU a step's host time grows with its nodes, so this says where to cut. The CPU
//! builds the same graph except where its own one-node kernels stand in for MLX's fast
//! kernels (the same count) and for SwiGLU's gate, so a count taken here holds there.
//!
//! `cargo bench --bench decode_overhead -- DIR [DIR …] [--lengths 128,4096] [--steps 64]
//! [--stack auto|on|off|both]` (`--stack`: `LoadOptions::stack_projections`; `both` measures
//! each model with and without).
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use mlxrun::engine::generate::{generate_tokens, DEFAULT_PREFILL_STEP};
use mlxrun::engine::{Sampler, SamplerParams};
use mlxrun::mlx::{async_eval, eval, graph, memory, Array, Device};
use mlxrun::models::{load, LanguageModel, LoadOptions};
use mlxrun::nn::KvCache;
use mlxrun::Result;

fn step(
    model: &dyn LanguageModel,
    caches: &mut [KvCache],
    sampler: &mut Sampler,
    token: &Array,
) -> Result<mlxrun::engine::sampler::SampleOut> {
    let logits = model.forward(&token.reshape(&[1, 1])?, caches)?;
    let last = logits.reshape(&[1, -1])?;
    sampler.sample_lazy(&last, &[])
}

/// Per-token figures in microseconds.
struct Split {
    per_token: f64,
    build: f64,
    queue: f64,
    wait: f64,
    sync: f64,
    build_only: f64,
    /// MLX's peak bytes up to the first token, and after the pipelined steps.
    prefill_peak: usize,
    decode_peak: usize,
    /// The operations of one step's graph, by name.
    census: Vec<(String, usize)>,
}

fn measure(model: &dyn LanguageModel, n_prompt: usize, steps: usize) -> Result<Split> {
    let vocab = model.info().vocab_size as usize;
    let prompt = common::prompt_ids(n_prompt, vocab);
    let mut caches = model.new_caches();
    let mut first = 0u32;
    memory::clear_cache();
    memory::reset_peak_memory();
    generate_tokens(
        model,
        &mut caches,
        &prompt,
        1,
        &SamplerParams::default(),
        DEFAULT_PREFILL_STEP,
        None,
        &mut |t| {
            first = t.token;
            Ok(true)
        },
    )?;
    let prefill_peak = memory::peak_memory();
    let mut sampler = Sampler::new(SamplerParams::default())?;
    let us = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;

    // Pipelined, as generate_tokens runs it; the first few steps warm up.
    let (mut build, mut queue, mut wait) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut current = step(
        model,
        &mut caches,
        &mut sampler,
        &Array::from_slice(&[first as i32], &[1])?,
    )?;
    async_eval(&current.arrays())?;
    let warm = 4;
    let mut start = Instant::now();
    for i in 0..steps + warm {
        if i == warm {
            (build, queue, wait) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            start = Instant::now();
        }
        let t0 = Instant::now();
        let next = step(model, &mut caches, &mut sampler, &current.token)?;
        let t1 = Instant::now();
        async_eval(&next.arrays())?;
        let t2 = Instant::now();
        current.read()?;
        let t3 = Instant::now();
        build += t1 - t0;
        queue += t2 - t1;
        wait += t3 - t2;
        current = next;
    }
    let per_token = us(start.elapsed(), steps);
    current.read()?;
    let decode_peak = memory::peak_memory();

    // Synchronous.
    let t = Instant::now();
    for _ in 0..steps {
        let out = step(model, &mut caches, &mut sampler, &current.token)?;
        eval(&out.arrays())?;
        out.read()?;
        current = out;
    }
    let sync = us(t.elapsed(), steps);

    // Build only, on copies of the caches' state so that nothing accumulates: each graph is
    // dropped unevaluated.
    let t = Instant::now();
    for _ in 0..steps {
        let mut scratch = caches.to_vec();
        drop(step(model, &mut scratch, &mut sampler, &current.token)?);
    }
    let build_only = us(t.elapsed(), steps);
    let census = {
        let mut scratch = caches.to_vec();
        let out = step(model, &mut scratch, &mut sampler, &current.token)?;
        graph::census(&out.arrays())?
    };
    Ok(Split {
        per_token,
        build: us(build, steps),
        queue: us(queue, steps),
        wait: us(wait, steps),
        sync,
        build_only,
        prefill_peak,
        decode_peak,
        census,
    })
}

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut take = |flag: &str| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        let v = args.get(i + 1).cloned();
        args.drain(i..(i + 2).min(args.len()));
        v
    };
    let lengths: Vec<usize> = take("--lengths")
        .unwrap_or_else(|| "128,1024".into())
        .split(',')
        .map(|s| s.trim().parse().expect("a length"))
        .collect();
    let steps: usize = take("--steps")
        .map(|s| s.parse().expect("a number"))
        .unwrap_or(64);
    let stacks: Vec<Option<bool>> = match take("--stack").as_deref() {
        None | Some("auto") => vec![None],
        Some("on") => vec![Some(true)],
        Some("off") => vec![Some(false)],
        Some("both") => vec![Some(true), Some(false)],
        Some(other) => panic!("--stack takes auto, on, off or both, not {other:?}"),
    };
    let device = if Device::default_device().is_ok_and(|d| d == Device::cpu()) {
        "CPU"
    } else {
        "GPU"
    };
    println!(
        "decode step split on this machine's {device}, µs per token over {steps} greedy steps"
    );
    println!(
        "{:<32} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8} {:>22}",
        "model",
        "context",
        "pipelined",
        "tok/s",
        "build",
        "queue",
        "wait",
        "synchronous",
        "build-only",
        "peak MiB prefill/decode"
    );
    let mut censuses = Vec::new();
    for (dir, stack) in args
        .iter()
        .map(PathBuf::from)
        .flat_map(|d| stacks.iter().map(move |s| (d.clone(), *s)))
    {
        let mut name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match stack {
            Some(true) => name.push_str(" stacked"),
            Some(false) => name.push_str(" separate"),
            None => {}
        }
        let model = match load(
            &dir,
            &LoadOptions {
                stack_projections: stack,
                ..LoadOptions::default()
            },
        ) {
            Ok(m) => m,
            Err(e) => {
                println!("{name:<32} failed to load: {e}");
                continue;
            }
        };
        for &n in &lengths {
            match measure(model.as_ref(), n, steps) {
                Ok(s) => {
                    println!(
                        "{name:<32} {n:>7} {:>10.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10.1} {:>8.1} {:>12.0} / {:<8.0}",
                        s.per_token,
                        1e6 / s.per_token,
                        s.build,
                        s.queue,
                        s.wait,
                        s.sync,
                        s.build_only,
                        s.prefill_peak as f64 / 1048576.0,
                        s.decode_peak as f64 / 1048576.0
                    );
                    censuses.push((format!("{name} at {n}"), model.info().num_layers, s.census));
                }
                Err(e) => println!("{name:<32} {n:>7} failed: {e}"),
            }
        }
    }
    println!("\noperations in one step's graph (model, sampler and cache writes)");
    for (what, layers, census) in censuses {
        let total = graph::total(&census);
        let list: Vec<String> = census.iter().map(|(op, k)| format!("{op} {k}")).collect();
        println!(
            "{what}: {total} ({:.1} per layer): {}",
            total as f64 / layers.max(1) as f64,
            list.join(", ")
        );
    }
}
