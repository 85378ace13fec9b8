//! Micro-benchmarks: the pieces a token's time is made of, each beside its Python
//! counterpart measured in the same run (scripts/bench_micro_reference.py, with our BLAS
//! preloaded): f32 matmul (square, and the 1xK by KxN products of a decode step), softmax
//! over a row, one decode step of a fixture model with a warm cache (ours vs mlx-lm), and
//! tokenizer encode/decode of one text (ours vs Hugging Face's `tokenizers` in Python, the
//! same tokenizer.json). Prints µs per call (median of 5 samples) and the speed ratio
//! reference µs / ours µs (above 1: ours is faster). Asserts nothing.
//!
//! `cargo bench --bench micro -- [--model DIR] [--tokenizer DIR] [--text FILE] [--no-reference]`
use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use common::stats::median;
use mlxrun::mlx::{random, Array, Dtype};
use mlxrun::models::{load, LoadOptions};
use mlxrun::tokenizer::Tokenizer;
use serde_json::{json, Value};

/// Samples per case, and the least time one sample takes (calls are repeated up to it),
/// so that the timer's and the loop's own costs stay small against a short call.
const SAMPLES: usize = 5;
const SAMPLE_SECS: f64 = 0.02;
/// Prompt tokens in the cache before the timed decode steps.
const CONTEXT: usize = 128;

/// Median µs per call of `f` (scripts/bench_micro_reference.py's `per_call` measures the
/// reference the same way): two warm-up calls, then `SAMPLES` samples of k calls each,
/// k chosen from one call's time so that a sample takes at least `SAMPLE_SECS`.
fn per_call(mut f: impl FnMut() -> mlxrun::Result<()>) -> mlxrun::Result<f64> {
    f()?;
    let t = Instant::now();
    f()?;
    let k = ((SAMPLE_SECS / t.elapsed().as_secs_f64().max(1e-9)).ceil() as usize).clamp(1, 100_000);
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        for _ in 0..k {
            f()?;
        }
        samples.push(t.elapsed().as_secs_f64() / k as f64 * 1e6);
    }
    Ok(median(&samples))
}

fn normal(shape: &[i32], seed: u64) -> mlxrun::Result<Array> {
    let a = random::normal(shape, Dtype::F32, 0.0, 1.0, Some(&random::key(seed)?))?;
    a.eval()?;
    Ok(a)
}

/// One case: its label, the request the reference gets, and our measurement.
struct Case {
    label: String,
    request: Value,
    ours: mlxrun::Result<f64>,
}

fn matmul(m: i32, k: i32, n: i32) -> Case {
    let ours = (|| {
        let (a, b) = (normal(&[m, k], 1)?, normal(&[k, n], 2)?);
        per_call(|| a.matmul(&b)?.eval())
    })();
    Case { label: format!("matmul {m}x{k} @ {k}x{n}"), request: json!({"op": "matmul", "m": m, "k": k, "n": n}), ours }
}

fn softmax(shape: &[i32]) -> Case {
    let ours = (|| {
        let a = normal(shape, 3)?;
        per_call(|| a.softmax(&[-1], false)?.eval())
    })();
    let dims: Vec<String> = shape.iter().map(i32::to_string).collect();
    Case { label: format!("softmax {} (last axis)", dims.join("x")), request: json!({"op": "softmax", "shape": shape}), ours }
}

/// One decode step (a token in, the last position's logits out) after a `CONTEXT`-token
/// prefill; the cache grows by one position a call, as in decoding.
fn forward(dir: &Path) -> Case {
    let ours = (|| {
        let model = load(dir, &LoadOptions::default())?;
        let vocab = model.info().vocab_size as usize;
        let prompt = common::prompt_ids(CONTEXT, vocab);
        let mut caches = model.new_caches();
        model.forward_last(&Array::from_slice(&prompt, &[1, CONTEXT as i32])?, &mut caches)?.eval()?;
        let tok = Array::from_slice(&[13u32], &[1, 1])?;
        per_call(|| model.forward_last(&tok, &mut caches)?.eval())
    })();
    let name = dir.file_name().map_or(String::new(), |n| n.to_string_lossy().to_string());
    Case { label: format!("decode step, {name}, {CONTEXT}+ cached"), request: json!({"op": "forward", "model": dir, "context": CONTEXT}), ours }
}

fn tokenizer_cases(dir: &Path, text_file: &Path) -> Vec<Case> {
    let setup = || -> mlxrun::Result<(Tokenizer, String, Vec<u32>)> {
        let tok = Tokenizer::load(dir)?;
        let text = std::fs::read_to_string(text_file).map_err(|e| mlxrun::Error::Io(format!("{}: {e}", text_file.display())))?;
        let ids = tok.encode(&text, false)?;
        Ok((tok, text, ids))
    };
    let file = dir.join("tokenizer.json");
    let req = |op: &str| json!({"op": op, "tokenizer": file, "text": text_file});
    let (encode, decode, what) = match setup() {
        Ok((tok, text, ids)) => (
            per_call(|| tok.encode(&text, false).map(drop)),
            per_call(|| tok.decode(&ids, false).map(drop)),
            format!("{} bytes, {} tokens", text.len(), ids.len()),
        ),
        Err(e) => (Err(e.clone()), Err(e), String::new()),
    };
    vec![
        Case { label: format!("tokenizer encode ({what})"), request: req("encode"), ours: encode },
        Case { label: "tokenizer decode (the same ids)".into(), request: req("decode"), ours: decode },
    ]
}

fn main() {
    let root = common::repo_root();
    let mut model = root.join(".deps/fixtures/qwen3");
    let mut tokenizer = root.join(".deps/tokenizers/qwen3");
    let mut text = root.join("docs/training.md");
    let mut reference = true;
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = args.next() {
        let mut path = || PathBuf::from(args.next().unwrap_or_else(|| panic!("{a} needs a value")));
        match a.as_str() {
            "--model" => model = path(),
            "--tokenizer" => tokenizer = path(),
            "--text" => text = path(),
            "--no-reference" => reference = false,
            other => panic!("unknown argument {other}: --model DIR, --tokenizer DIR, --text FILE, --no-reference"),
        }
    }

    let mut cases: Vec<Case> = Vec::new();
    for n in [64, 128, 256, 512, 1024, 2048] {
        cases.push(matmul(n, n, n));
    }
    // Decode-step products: the attention and MLP projections of 0.6B-1B models.
    for (k, n) in [(1024, 1024), (1024, 3072), (3072, 1024), (2048, 8192), (8192, 2048)] {
        cases.push(matmul(1, k, n));
    }
    for shape in [&[1, 1024][..], &[1, 32768], &[1, 151936], &[64, 4096], &[16, 512, 512]] {
        cases.push(softmax(shape));
    }
    cases.push(forward(&model));
    cases.extend(tokenizer_cases(&tokenizer, &text));

    let theirs: Vec<Option<f64>> = if reference {
        let requests = json!(cases.iter().map(|c| &c.request).collect::<Vec<_>>()).to_string();
        let r = common::run_reference("bench_micro_reference.py", &[requests]);
        let r = r.as_ref().and_then(Value::as_array);
        (0..cases.len()).map(|i| r.and_then(|r| r.get(i)).and_then(Value::as_f64)).collect()
    } else {
        vec![None; cases.len()]
    };

    println!("µs per call, median of {SAMPLES} samples, f32, this machine's default device; ref = MLX Python / mlx-lm / HF tokenizers (Python)");
    println!("{:<44} {:>12} {:>12} {:>10}", "case", "ours µs", "ref µs", "ref/ours");
    for (c, r) in cases.iter().zip(theirs) {
        let ours = match &c.ours {
            Ok(us) => *us,
            Err(e) => {
                println!("{:<44} failed: {e}", c.label);
                continue;
            }
        };
        let (r_us, ratio) = r.map_or(("-".into(), "-".into()), |r| (format!("{r:.1}"), format!("{:.2}x", r / ours)));
        println!("{:<44} {ours:>12.1} {r_us:>12} {ratio:>10}", c.label);
    }
}
