//! LoRA training speed and memory, ours beside mlx-lm's `lora` trainer in one run, on the
//! same model folder, the same data and the same settings (rank 8, scale 20, Adam at 1e-5,
//! the last `--layers` layers, no dropout). Prints tokens/s (the median of the reports
//! after the first, which holds the warm-up), MLX's peak memory, and the ratios; asserts
//! nothing.
//!
//! `cargo bench --bench train -- [MODEL_DIR ...] [--seq N] [--batch N] [--iters N]
//!  [--report N] [--layers N] [--keys q_proj,v_proj] [--dtype float32|bfloat16|float16]
//!  [--repeat N] [--variants plain,checkpoint] [--compile on|off] [--ours-only]`
//!
//! Without folders it trains the qwen3 fixture. The data are made here: `text` examples
//! of about `seq` tokens from a fixed word list, in `$TMPDIR/mlxrun-bench-train/`. Each variant
//! runs ours then mlx-lm, `--repeat` times in turn (A B A B …), each side's figure the
//! median over its runs. `checkpoint` is gradient checkpointing on both sides (mlx-lm's
//! `grad_checkpoint`). `--dtype` sets the compute dtype of both sides (default: float32 on
//! the CPU, the checkpoint's own on a GPU); a quantized folder stays packed on both (QLoRA).
//! `--compile` overrides whether our step is compiled (by default on a GPU only; mlx-lm
//! always compiles its step); `--ours-only` skips the reference.
use std::path::{Path, PathBuf};

mod common;

use mlxrun::mlx::{memory, Device, Dtype};
use mlxrun::train::{Dataset, DatasetOptions, LoraConfig, Schedule, TrainConfig};
use mlxrun::{LoadOptions, Model};

struct Settings {
    seq: usize,
    batch: usize,
    iters: usize,
    report: usize,
    layers: i32,
    keys: Vec<String>,
    dtype: Option<Dtype>,
    /// Our step compiled or not; `None`: the engine's default (on a GPU only).
    compile: Option<bool>,
}

/// One side's figures: tokens/s and peak bytes.
struct Figures {
    tok_s: f64,
    peak: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// The reports' tokens/s after the first (the first holds graph building and warm-up).
fn steady(rates: Vec<f64>) -> f64 {
    median(if rates.len() > 1 { rates[1..].to_vec() } else { rates })
}

/// A data folder of `text` examples of about `seq` tokens: enough for `batch`-sized
/// batches and a one-batch validation set.
fn make_data(seq: usize, batch: usize) -> PathBuf {
    const WORDS: [&str; 48] = [
        "river", "mountain", "the", "quiet", "engine", "of", "a", "garden", "bright", "slowly", "and", "runs", "under", "lamp",
        "silver", "paper", "window", "falls", "north", "city", "green", "stone", "over", "small", "music", "market", "winter",
        "opens", "bridge", "after", "cloud", "forest", "carries", "light", "across", "old", "harbour", "morning", "signal",
        "builds", "between", "orange", "field", "measures", "yellow", "tower", "every", "voice",
    ];
    // Under the temporary folder: a bench binary taken to another machine has no checkout.
    let dir = std::env::temp_dir().join(format!("mlxrun-bench-train/text-{seq}-{batch}"));
    std::fs::create_dir_all(&dir).expect("the bench data folder");
    // A fixed linear congruential sequence: the same data every run, on both sides.
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    let mut lines = |count: usize| -> String {
        (0..count)
            .map(|_| {
                // About 1.2 tokens a word in these tokenizers.
                let words = seq * 3 / 5 + next(seq / 5 + 1);
                let text: Vec<&str> = (0..words).map(|_| WORDS[next(WORDS.len())]).collect();
                serde_json::json!({ "text": text.join(" ") }).to_string() + "\n"
            })
            .collect()
    };
    std::fs::write(dir.join("train.jsonl"), lines(batch * 8)).unwrap();
    std::fs::write(dir.join("valid.jsonl"), lines(batch)).unwrap();
    dir
}

/// Ours; also the dtype it computed in and the layers it adapted (`--layers`, at most
/// the model's), which the reference is then given.
fn ours(model_dir: &Path, data: &Path, s: &Settings, checkpoint: bool) -> mlxrun::Result<(Figures, Dtype, i32)> {
    memory::clear_cache();
    memory::reset_peak_memory();
    let mut model = Model::load(model_dir, &LoadOptions { dtype: s.dtype, ..LoadOptions::default() })?;
    let dtype = model.info().dtype;
    let layers = s.layers.min(model.info().num_layers);
    model.apply_lora(&LoraConfig { rank: 8, scale: 20.0, num_layers: Some(layers), keys: s.keys.clone(), ..LoraConfig::default() })?;
    let opts = DatasetOptions::default();
    let train = Dataset::load(data.join("train.jsonl"), &mut model, &opts)?;
    let valid = Dataset::load(data.join("valid.jsonl"), &mut model, &opts)?;
    let cfg = TrainConfig {
        batch_size: s.batch,
        iters: s.iters,
        val_batches: Some(1),
        steps_per_report: s.report,
        steps_per_eval: usize::MAX,
        save_every: 0,
        max_seq_length: s.seq * 2,
        schedule: Schedule::constant(1e-5),
        grad_checkpoint: checkpoint,
        compile: s.compile,
        ..TrainConfig::default()
    };
    let summary = model.train(&train, Some(&valid), &cfg, |_| true)?;
    let rates = summary.reports.iter().map(|r| r.tokens_per_second).collect();
    Ok((Figures { tok_s: steady(rates), peak: memory::peak_memory() as f64 }, dtype, layers))
}

fn reference(model_dir: &Path, data: &Path, s: &Settings, layers: i32, checkpoint: bool, dtype: &str) -> Option<Figures> {
    let mut args: Vec<String> = vec![model_dir.display().to_string(), data.display().to_string()];
    for (flag, v) in [("--iters", s.iters), ("--batch", s.batch), ("--rank", 8), ("--layers", layers as usize), ("--report", s.report), ("--max-seq", s.seq * 2)] {
        args.extend([flag.to_string(), v.to_string()]);
    }
    args.extend(["--keys".into(), s.keys.join(","), "--dtype".into(), dtype.into()]);
    if checkpoint {
        args.push("--grad-checkpoint".into());
    }
    let r = common::run_reference("bench_train_reference.py", &args)?;
    let rates = r["reports"].as_array()?.iter().filter_map(|x| x["tokens_per_second"].as_f64()).collect();
    Some(Figures { tok_s: steady(rates), peak: r["peak_memory"].as_f64()? })
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let ours_only = args.iter().any(|a| a == "--ours-only");
    args.retain(|a| a != "--ours-only");
    let mut take = |flag: &str| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        let v = args.get(i + 1).cloned();
        args.drain(i..(i + 2).min(args.len()));
        v
    };
    let num = |v: Option<String>, default: usize| v.map(|x| x.parse().expect("a number")).unwrap_or(default);
    let seq = num(take("--seq"), 128);
    let batch = num(take("--batch"), 4);
    let iters = num(take("--iters"), 12);
    let report = num(take("--report"), 2);
    let layers = num(take("--layers"), 16) as i32;
    let repeat = num(take("--repeat"), 1);
    let keys: Vec<String> = take("--keys").unwrap_or_else(|| "q_proj,v_proj".into()).split(',').map(String::from).collect();
    let dtype = take("--dtype").map(|d| Dtype::from_name(&d).expect("--dtype: float32, bfloat16 or float16"));
    let compile = take("--compile").map(|c| match c.as_str() {
        "on" => true,
        "off" => false,
        other => panic!("--compile: on or off, not {other}"),
    });
    let variants: Vec<String> = take("--variants").unwrap_or_else(|| "plain,checkpoint".into()).split(',').map(String::from).collect();
    let mut dirs: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/fixtures/qwen3"));
    }
    let s = Settings { seq, batch, iters, report, layers, keys, dtype, compile };
    let data = make_data(seq, batch);
    let device = if Device::default_device().is_ok_and(|d| d == Device::cpu()) { "CPU" } else { "GPU" };
    println!(
        "LoRA training, rank 8 on {} of the last {layers} layers, batch {batch} of ~{seq}-token texts, {iters} steps (reports every {report}; \
         the first left out), on this machine's {device}, ours then mlx-lm, {repeat} time(s) each, medians",
        s.keys.join("+")
    );
    println!("{:<34} {:>12} {:>12} {:>7} {:>11} {:>11} {:>7}", "model / variant", "ours tok/s", "mlx-lm", "ratio", "ours MiB", "mlx-lm MiB", "ratio");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for variant in &variants {
            let checkpoint = match variant.as_str() {
                "plain" => false,
                "checkpoint" => true,
                other => panic!("--variants: plain or checkpoint, not {other}"),
            };
            let (mut o_rate, mut o_peak, mut r_rate, mut r_peak) = (vec![], vec![], vec![], vec![]);
            let mut label = format!("{name} {variant}");
            for _ in 0..repeat {
                match ours(dir, &data, &s, checkpoint) {
                    Ok((f, dtype, layers)) => {
                        label = format!("{name} ({}) {variant}", dtype.name());
                        o_rate.push(f.tok_s);
                        o_peak.push(f.peak);
                        // The reference computes in the dtype ours did; a packed model stays packed.
                        let quantized = dir.join("config.json").exists()
                            && std::fs::read_to_string(dir.join("config.json")).is_ok_and(|c| c.contains("\"quantization\""));
                        let rdtype = if quantized && s.dtype.is_none() { "native".to_string() } else { dtype.name().to_string() };
                        if let Some(r) = reference(dir, &data, &s, layers, checkpoint, &rdtype).filter(|_| !ours_only) {
                            r_rate.push(r.tok_s);
                            r_peak.push(r.peak);
                        }
                    }
                    Err(e) => {
                        println!("{label:<34} failed: {e}");
                        break;
                    }
                }
            }
            if o_rate.is_empty() {
                continue;
            }
            let (ot, op) = (median(o_rate), median(o_peak) / 1048576.0);
            if r_rate.is_empty() {
                let why = if ours_only { "" } else { "   (reference unavailable: run scripts/setup.sh)" };
                println!("{label:<34} {ot:>12.1} {:>12} {:>7} {op:>11.1}{why}", "-", "-");
                continue;
            }
            let (rt, rp) = (median(r_rate), median(r_peak) / 1048576.0);
            println!("{label:<34} {ot:>12.1} {rt:>12.1} {:>6.2}x {op:>11.1} {rp:>11.1} {:>6.2}x", ot / rt, op / rp);
        }
    }
}
