//! The benchmark suite: our engine beside mlx-lm on the same model folders, with the two
//! sides interleaved run by run, so that a noisy machine disturbs both alike. The other
//! benches time one side's runs, then the other's in a subprocess; on a shared GPU machine
//! that swung their ratios between 0.6x and 1.9x. Here mlx-lm runs in one persistent
//! worker (scripts/bench_worker.py) and each case goes: one warm-up run per side, then
//! `--repeat` pairs A B, B A, A B, ... (who goes first alternating), and the report gives
//! each side's median, the median of the per-pair ratios ours/mlx-lm with their min–max
//! and IQR, and each side's peak memory. Asserts nothing.
//!
//! `cargo bench --bench suite -- [MODEL_DIR ...] [options]` (`--help` lists them). Without
//! folders it measures the fixtures in .deps/fixtures. Writes results.json, results.md
//! and one SVG plot per figure into `--out` (default target/bench-suite), after each model.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use common::report::{self, Kind, Outcome, BATCH, CLASSIFY, GENERATE};
use common::worker::Worker;
use mlxrun::engine::generate::{generate_tokens, DEFAULT_PREFILL_STEP};
use mlxrun::engine::{BatchParams, GenerateParams, Model, SamplerParams};
use mlxrun::mlx::device_info::DeviceInfo;
use mlxrun::mlx::{memory, Device};
use mlxrun::models::LoadOptions;
use serde_json::{json, Value};

const HELP: &str = "\
cargo bench --bench suite -- [MODEL_DIR ...] [options]
  --lengths L,...     generate: prompt lengths (default 128,512,1024 on the CPU;
                      128,512,1024,2048,4096,8192,16384 on a GPU)
  --gen N             generate: tokens generated per run (default 32)
  --batches B,...     classify and batch: batch sizes (default 16,64,256)
  --prompts N         classify: prompts per run (default 512)
  --prompt-len N      classify and batch: longest prompt, lengths from half of it (default 16)
  --gen-prompts N     batch: prompts per run (default 64)
  --batch-tokens N    batch: tokens generated per prompt (default 32)
  --repeat R          timed runs per side and case, after one warm-up each (default 5)
  --cases C,...       any of generate,classify,batch (default all)
  --no-reference      ours only
  --out DIR           results.json, results.md, plots (default target/bench-suite)";

struct Opts {
    dirs: Vec<PathBuf>,
    lengths: Vec<usize>,
    gen: usize,
    batches: Vec<usize>,
    prompts: usize,
    prompt_len: usize,
    gen_prompts: usize,
    batch_tokens: usize,
    repeat: usize,
    cases: Vec<String>,
    reference: bool,
    out: PathBuf,
}

fn parse(on_gpu: bool) -> Result<Opts, String> {
    let list = |v: &str| -> Result<Vec<usize>, String> { v.split(',').map(|n| n.trim().parse().map_err(|_| format!("not a number: {n}"))).collect() };
    let mut o = Opts {
        dirs: vec![],
        lengths: if on_gpu { vec![128, 512, 1024, 2048, 4096, 8192, 16384] } else { vec![128, 512, 1024] },
        gen: 32,
        batches: vec![16, 64, 256],
        prompts: 512,
        prompt_len: 16,
        gen_prompts: 64,
        batch_tokens: 32,
        repeat: 5,
        cases: vec!["generate".into(), "classify".into(), "batch".into()],
        reference: true,
        out: common::repo_root().join("target/bench-suite"),
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let one = |v: String| v.parse::<usize>().map_err(|_| format!("{a}: not a number: {v}"));
        match a.as_str() {
            "--lengths" => o.lengths = list(&value()?)?,
            "--gen" => o.gen = one(value()?)?,
            "--batches" => o.batches = list(&value()?)?,
            "--prompts" => o.prompts = one(value()?)?,
            "--prompt-len" => o.prompt_len = one(value()?)?.max(1),
            "--gen-prompts" => o.gen_prompts = one(value()?)?,
            "--batch-tokens" => o.batch_tokens = one(value()?)?,
            "--repeat" => o.repeat = one(value()?)?.max(1),
            "--cases" => o.cases = value()?.split(',').map(str::to_string).collect(),
            "--no-reference" => o.reference = false,
            "--out" => o.out = PathBuf::from(value()?),
            "-h" | "--help" => return Err(HELP.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{HELP}")),
            dir => o.dirs.push(PathBuf::from(dir)),
        }
    }
    if let Some(c) = o.cases.iter().find(|c| !["generate", "classify", "batch"].contains(&c.as_str())) {
        return Err(format!("unknown case {c}: generate, classify or batch"));
    }
    if o.dirs.is_empty() {
        let fx = common::repo_root().join(".deps/fixtures");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&fx).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        found.sort();
        o.dirs = found.into_iter().filter(|p| p.join("config.json").exists()).collect();
    }
    Ok(o)
}

/// mlx-lm's side: the worker, started on first use and again after it died, with the model
/// it has loaded (a case whose worker died loads it again in the new one).
#[derive(Default)]
struct Reference {
    worker: Option<Worker>,
    loaded: Option<(PathBuf, String)>,
    /// The versions the worker reported on its last load.
    versions: Option<Value>,
}

impl Reference {
    fn run(&mut self, dir: &Path, dtype: &str, req: Value) -> Result<Value, String> {
        if !self.worker.as_mut().is_some_and(Worker::alive) {
            self.worker = Some(Worker::spawn()?);
            self.loaded = None;
        }
        let worker = self.worker.as_mut().unwrap();
        let want = (dir.to_path_buf(), dtype.to_string());
        if self.loaded.as_ref() != Some(&want) {
            self.loaded = None;
            self.versions = Some(worker.request(&json!({"op": "load", "path": dir, "dtype": dtype}))?);
            self.loaded = Some(want);
        }
        worker.request(&req)
    }
}

type Side<'a> = &'a mut dyn FnMut() -> Result<Vec<f64>, String>;

/// Runs a case: a warm-up run per side, then `repeat` pairs with the side that goes first
/// alternating (A B, B A, ...). A side that fails stops there; its error is kept.
fn interleave(repeat: usize, ours: Side<'_>, mut theirs: Option<Side<'_>>) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<String>) {
    let (mut a, mut b, mut errors) = (vec![], vec![], vec![]);
    if let Err(e) = ours() {
        errors.push(format!("ours: {e}"));
        return (a, b, errors);
    }
    if let Some(Err(e)) = theirs.as_mut().map(|t| t()) {
        errors.push(e);
        theirs = None;
    }
    for r in 0..repeat {
        for side in if r % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                match ours() {
                    Ok(v) => a.push(v),
                    Err(e) => {
                        errors.push(format!("ours: {e}"));
                        return (a, b, errors);
                    }
                }
            } else if let Some(t) = theirs.as_mut() {
                match t() {
                    Ok(v) => b.push(v),
                    Err(e) => {
                        errors.push(e);
                        theirs = None;
                    }
                }
            }
        }
    }
    (a, b, errors)
}

fn mib(bytes: f64) -> f64 {
    bytes / 1048576.0
}

/// Times `f` with the allocator's cache cleared and peak reset before: (seconds, peak bytes).
fn timed<T>(f: impl FnOnce() -> mlxrun::Result<T>) -> Result<(f64, usize, T), String> {
    memory::clear_cache();
    memory::reset_peak_memory();
    let t = Instant::now();
    let out = f().map_err(|e| e.to_string())?;
    Ok((t.elapsed().as_secs_f64(), memory::peak_memory(), out))
}

/// Every case of one model folder, ours against mlx-lm's worker; each outcome is printed
/// as it is measured.
fn run_model(dir: &Path, o: &Opts, reference: &mut Option<Reference>, outcomes: &mut Vec<Outcome>) {
    let name = dir.file_name().map_or("model".into(), |n| n.to_string_lossy().to_string());
    let mut model = match Model::load(dir, &LoadOptions::default()) {
        Ok(m) => m,
        Err(e) => {
            println!("{name}: cannot load: {e}");
            return;
        }
    };
    // mlx-lm computes in the dtype ours does (f32 on the CPU, the checkpoint's on a GPU).
    let dtype = model.info().dtype.name().to_string();
    let dtype = dtype.as_str();
    let vocab = model.info().vocab_size as usize;
    let mut push = |kind: &'static Kind, x: usize, (ours, theirs, errors)| {
        let out = Outcome { model: name.clone(), dtype: dtype.to_string(), kind, x, ours, theirs, errors };
        report::print(&out);
        outcomes.push(out);
    };
    let figures = |r: &Value, keys: &[&str]| -> Vec<f64> { keys.iter().map(|k| r[*k].as_f64().unwrap_or(f64::NAN)).collect() };

    if o.cases.iter().any(|c| c == "generate") {
        for &len in &o.lengths {
            let prompt = common::prompt_ids(len, vocab);
            let lm = model.language_model();
            let mut ours = || -> Result<Vec<f64>, String> {
                memory::clear_cache();
                let mut caches = lm.new_caches();
                let (m, _) = generate_tokens(lm, &mut caches, &prompt, o.gen, &SamplerParams::default(), DEFAULT_PREFILL_STEP, None, &mut |_| Ok(true))
                    .map_err(|e| e.to_string())?;
                Ok(vec![m.prefill_tok_s(), m.decode_tok_s(), m.prefill.as_secs_f64() * 1e3, mib(m.peak_memory as f64)])
            };
            let req = json!({"op": "generate", "prompt_len": len, "gen": o.gen});
            let mut theirs = reference.as_mut().map(|r| {
                move || -> Result<Vec<f64>, String> {
                    let mut v = figures(&r.run(dir, dtype, req.clone())?, &["prefill_tok_s", "decode_tok_s", "ttft_s", "peak_memory"]);
                    v[2] *= 1e3;
                    v[3] = mib(v[3]);
                    Ok(v)
                }
            });
            let theirs = theirs.as_mut().map(|t| t as Side<'_>);
            push(&GENERATE, len, interleave(o.repeat, &mut ours, theirs));
        }
    }

    let prompts = common::batch_prompts(o.prompts.max(1), o.prompt_len, vocab);
    let gen_prompts = &prompts[..o.gen_prompts.clamp(1, prompts.len())];
    for (kind, case) in [(&CLASSIFY, "classify"), (&BATCH, "batch")] {
        if !o.cases.iter().any(|c| c == case) {
            continue;
        }
        for &batch in &o.batches {
            let bp = BatchParams { max_batch_size: batch, ..BatchParams::default() };
            let model = &mut model;
            let mut ours = || -> Result<Vec<f64>, String> {
                if case == "classify" {
                    let (secs, peak, out) = timed(|| model.classify_ids(&prompts, &GenerateParams::default(), &bp))?;
                    if let Some(Err(e)) = out.into_iter().find(|r| r.is_err()) {
                        return Err(e.to_string());
                    }
                    Ok(vec![prompts.len() as f64 / secs, mib(peak as f64)])
                } else {
                    let params = GenerateParams { max_tokens: o.batch_tokens, ..GenerateParams::default() };
                    let (secs, peak, out) = timed(|| model.batch_generate_ids(gen_prompts, &params, &bp, |_, _| true))?;
                    let tokens: usize = out.iter().map(|r| r.as_ref().map_or(0, |g| g.tokens.len())).sum();
                    Ok(vec![tokens as f64 / secs, mib(peak as f64)])
                }
            };
            let req = if case == "classify" {
                json!({"op": "classify", "prompts": prompts, "batch": batch})
            } else {
                json!({"op": "batch_generate", "prompts": gen_prompts, "batch": batch, "max_tokens": o.batch_tokens})
            };
            let key = if case == "classify" { "prompts_s" } else { "tok_s" };
            let mut theirs = reference.as_mut().map(|r| {
                move || -> Result<Vec<f64>, String> {
                    let mut v = figures(&r.run(dir, dtype, req.clone())?, &[key, "peak_memory"]);
                    v[1] = mib(v[1]);
                    Ok(v)
                }
            });
            let theirs = theirs.as_mut().map(|t| t as Side<'_>);
            push(kind, batch, interleave(o.repeat, &mut ours, theirs));
        }
    }
}

/// The machine, for results.json and the markdown's heading.
fn machine(reference: Option<&Reference>) -> Value {
    let info = DeviceInfo::current().ok();
    json!({
        "device": info.as_ref().map(|i| i.kind.name()),
        "name": info.as_ref().map(|i| i.name.clone()),
        "architecture": info.as_ref().map(|i| i.architecture.clone()),
        "memory_bytes": info.as_ref().and_then(|i| i.memory_size),
        "cpu_threads": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "os": std::env::consts::OS,
        "mlx_version": mlxrun::mlx::version(),
        "mlx_lm": reference.and_then(|r| r.versions.clone()),
        "date": chrono::Local::now().format("%Y-%m-%d %H:%M").to_string(),
    })
}

fn main() {
    let on_gpu = Device::default_device().is_ok_and(|d| d != Device::cpu());
    let o = match parse(on_gpu) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(if e == HELP { 0 } else { 2 });
        }
    };
    let mut reference = o.reference.then(Reference::default);
    println!(
        "{} model(s), {} pairs per case (ours and mlx-lm alternating, who goes first alternating), medians; ratio = ours / mlx-lm (per pair)",
        o.dirs.len(),
        o.repeat
    );
    report::print_header();
    let _ = std::io::stdout().flush();
    let mut outcomes = Vec::new();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    for (i, dir) in o.dirs.iter().enumerate() {
        run_model(dir, &o, &mut reference, &mut outcomes);
        memory::clear_cache();
        // Written after every model, so that a long run cut short keeps what it measured.
        let last = i + 1 == o.dirs.len();
        if let Err(e) = write_results(&o.out, &outcomes, machine(reference.as_ref()), json!(args), last) {
            eprintln!("writing the results: {e}");
            std::process::exit(1);
        }
    }
    drop(reference); // the worker quits
}

fn write_results(out: &Path, outcomes: &[Outcome], machine: Value, args: Value, say: bool) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: &str, text: String| std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"));
    let heading = format!(
        "Measured {} on {} ({}), MLX {}, mlx-lm {}; `cargo bench --bench suite -- {}`",
        machine["date"].as_str().unwrap_or(""),
        machine["name"].as_str().unwrap_or("?"),
        machine["device"].as_str().unwrap_or("?"),
        machine["mlx_version"].as_str().unwrap_or("?"),
        machine["mlx_lm"]["mlx_lm_version"].as_str().unwrap_or("-"),
        args.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default()
    );
    write("results.md", report::markdown(outcomes, &heading))?;
    write("results.json", serde_json::to_string_pretty(&report::json(outcomes, machine, args)).unwrap())?;
    let plots = report::plots(outcomes, out)?;
    if say {
        println!("wrote {}: results.json, results.md, {}", out.display(), plots.join(", "));
    }
    Ok(())
}
