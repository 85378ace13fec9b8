//! The `mlxrun` program run as users run it: every subcommand's `--json` output parses and
//! says what it should, loading and converting draw no progress bar when stderr is not a
//! terminal, and bad input exits non-zero with a message naming the problem.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::gguf_writer;
use serde_json::Value;

fn mlxrun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlxrun")).args(args).output().unwrap()
}

/// Runs a command that must succeed and print one JSON object.
fn json(args: &[&str]) -> Value {
    let out = mlxrun(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    // Piped stderr is no terminal: no progress bar.
    assert!(!stderr.contains('\r'), "{args:?} drew a progress bar into a pipe: {stderr:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs a command that must succeed printing to stdout only; returns its stdout.
fn prints(args: &[&str]) -> String {
    let out = mlxrun(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    assert!(out.stderr.is_empty(), "{args:?} wrote to stderr: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = mlxrun(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.starts_with("mlxrun: "), "{stderr}");
    stderr
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tests").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tiny llama GGUF of tests/common/gguf_writer.rs (with a byte-level BPE vocabulary).
fn tiny_gguf() -> PathBuf {
    let (kvs, tensors) = gguf_writer::tiny_llama("llama");
    let p = scratch_dir("tiny").join("tiny.gguf");
    std::fs::write(&p, gguf_writer::write(&kvs, &tensors)).unwrap();
    p
}

fn smollm2() -> String {
    common::deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf").display().to_string()
}

#[test]
fn bench_json_reports_speed_and_memory() {
    let m = smollm2();
    let v = json(&["bench", "--model", &m, "--prompt-tokens", "24", "--gen-tokens", "6", "--runs", "2", "--warmup", "0", "--json"]);
    assert_eq!(v["model_type"], "llama");
    assert_eq!(v["runs"], 2);
    let runs = v["per_run"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["prompt_tokens"], 24, "{r}");
        assert_eq!(r["generated_tokens"], 6, "{r}");
    }
    for key in ["prefill_tok_s", "decode_tok_s"] {
        let s = &v[key];
        let (mean, min, max) = (s["mean"].as_f64().unwrap(), s["min"].as_f64().unwrap(), s["max"].as_f64().unwrap());
        assert!(min > 0.0 && min <= mean && mean <= max, "{key}: {s}");
    }
    // The weights alone, kept packed on the CPU (4-bit layers, an 8-bit embedding), are
    // over 100 MB.
    assert!(v["peak_memory_bytes"].as_u64().unwrap() > 100_000_000, "{v}");
    assert!(v["load_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn every_subcommand_prints_json() {
    let tiny = tiny_gguf();
    let t = tiny.to_str().unwrap();

    let v = json(&["info", "--model", t, "--json"]);
    assert_eq!(v["model_type"], "llama");
    assert_eq!(v["vocab_size"], 4);

    let v = json(&["generate", "--model", t, "--prompt", "ab", "--max-tokens", "3", "--ignore-eos", "--json"]);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["prompt_tokens"], serde_json::json!([3]));
    assert_eq!(v["metrics"]["generated_tokens"], 3);
    assert_eq!(v["finish_reason"], "length");

    let out = scratch_dir("tiny-converted");
    let v = json(&["convert", "--gguf", t, "--out", out.to_str().unwrap(), "--json"]);
    assert_eq!(v["tensors"], 11);
    assert_eq!(v["dtype"], "float32");
    assert!(v["files"].as_array().unwrap().iter().any(|f| f == "model.safetensors"), "{v}");
    assert!(out.join("model.safetensors").is_file());

    let v = json(&["smoke", "--json"]);
    assert!(v["matmul"]["gflop_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["memory"]["peak_bytes"].as_u64().unwrap() > 0, "{v}");

    let m = smollm2();
    let v = json(&["chat", "--model", &m, "--message", "Hi", "--max-tokens", "3", "--json"]);
    assert!(v["reply"].is_string() && v["metrics"]["generated_tokens"].as_u64().unwrap() >= 1, "{v}");
}

#[test]
fn metrics_follow_the_text_on_stderr() {
    let tiny = tiny_gguf();
    let out = mlxrun(&["generate", "--model", tiny.to_str().unwrap(), "--prompt", "ab", "--max-tokens", "2", "--ignore-eos"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prompt: 1 tokens") && stderr.contains("generation: 2 tokens") && stderr.contains("peak memory"), "{stderr}");
}

#[test]
fn bad_input_exits_non_zero_naming_the_problem() {
    let missing = scratch_dir("errors").join("no-such-model");
    let m = missing.to_str().unwrap();
    assert!(fails(&["generate", "--model", m, "--prompt", "x"]).contains("no-such-model"));
    assert!(fails(&["bench", "--model", m]).contains("no-such-model"));
    assert!(fails(&["frobnicate"]).contains("unrecognized subcommand 'frobnicate'"));
    let e = fails(&[]);
    assert!(e.contains("no command") && e.contains("Usage: mlxrun"), "{e}");
    assert!(fails(&["bench"]).contains("--model"));
    let tiny = tiny_gguf();
    let t = tiny.to_str().unwrap();
    assert!(fails(&["bench", "--model", t, "--runs", "many"]).contains("--runs"));
    assert!(fails(&["bench", "--model", t, "--runs", "0"]).contains("--runs"));
    assert!(fails(&["generate", "--model", t, "--prompt", "x", "--max-tokens", "-3"]).contains("--max-tokens"));
    assert!(fails(&["info", "--model", t, "--colour"]).contains("--colour"));
    assert!(fails(&["generate", "--model", t]).contains("--prompt"));

    // A GGUF file cut short: the error names the file.
    let bytes = std::fs::read(&tiny).unwrap();
    let cut = scratch_dir("errors").join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["info", "--model", cut.to_str().unwrap(), "--json"]);
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
    // Not a GGUF file, though named like one.
    let junk = scratch_dir("errors").join("junk.gguf");
    std::fs::write(&junk, b"this is no model").unwrap();
    let e = fails(&["convert", "--gguf", junk.to_str().unwrap(), "--out", scratch_dir("junk-out").to_str().unwrap()]);
    assert!(e.contains("junk.gguf") && e.contains("not a GGUF file"), "{e}");
    // An architecture the engine does not have.
    let (kvs, tensors) = gguf_writer::tiny_llama("mamba");
    let p = scratch_dir("errors").join("mamba.gguf");
    std::fs::write(&p, gguf_writer::write(&kvs, &tensors)).unwrap();
    let e = fails(&["generate", "--model", p.to_str().unwrap(), "--prompt", "x"]);
    assert!(e.contains("\"mamba\"") && e.contains("not supported"), "{e}");
}

#[test]
fn quantization_flags_reach_the_engine() {
    let dir = common::deps_file("fixtures/qwen3");
    let model = dir.to_str().unwrap();
    let info = json(&["info", "--model", model, "--quantize", "8", "--q-group-size", "32", "--keep-quantized", "--json"]);
    let q = &info["quantization"];
    assert_eq!((q["bits"].as_i64(), q["group_size"].as_i64(), q["mode"].as_str()), (Some(8), Some(32), Some("affine")));
    assert_eq!(q["kept_quantized"], Value::Bool(true));

    // The CLI's tokens are the library's with the same load and generation settings.
    let out = json(&[
        "generate", "--model", model, "--prompt", "Hello there", "--max-tokens", "6", "--ignore-eos", "--quantize", "4",
        "--kv-bits", "8", "--kv-group-size", "32", "--quantized-kv-start", "0", "--json",
    ]);
    let load = mlxrun::LoadOptions {
        quantize: Some(mlxrun::mlx::quant::QuantParams::parse("affine", None, Some(4)).unwrap()),
        ..Default::default()
    };
    let mut m = mlxrun::Model::load(&dir, &load).unwrap();
    let params = mlxrun::GenerateParams {
        max_tokens: 6,
        ignore_eos: true,
        kv_quantization: Some(mlxrun::nn::quantized_kv_cache::KvQuantization { bits: 8, group_size: 32, start: 0 }),
        ..Default::default()
    };
    let g = m.generate("Hello there", &params, |_| true).unwrap();
    let cli: Vec<u32> = out["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    assert_eq!(cli, g.tokens);

    for (args, needle) in [
        (vec!["--q-mode", "mxfp4"], "go with --quantize"),
        (vec!["--quantize", "7"], "affine 7-bit"),
        (vec!["--keep-quantized", "--dequantize"], "exclude each other"),
        (vec!["--kv-group-size", "32"], "go with --kv-bits"),
        (vec!["--kv-bits", "9"], "9 bits"),
    ] {
        let mut a = vec!["generate", "--model", model, "--prompt", "Hi"];
        a.extend(args);
        let e = fails(&a);
        assert!(e.contains(needle), "{a:?}: {e}");
    }
}

/// The long options of every subcommand (a representative list: all of each one's own, and
/// the shared model and generation groups).
const MODEL_OPTIONS: &[&str] =
    &["--model", "--dtype", "--quantize", "--q-group-size", "--q-mode", "--keep-quantized", "--dequantize", "--adapter-path"];
const GENERATION_OPTIONS: &[&str] = &[
    "--max-tokens", "--temp", "--top-k", "--top-p", "--min-p", "--repetition-penalty", "--repetition-context", "--seed",
    "--stop", "--ignore-eos", "--prefill-step", "--kv-bits", "--kv-group-size", "--quantized-kv-start",
];

#[test]
fn help_lists_every_option_with_its_default() {
    let top = prints(&["--help"]);
    for cmd in ["generate", "chat", "info", "convert", "bench", "train", "smoke", "completions", "backends"] {
        assert!(top.contains(cmd), "--help does not list {cmd}: {top}");
    }
    assert!(top.contains("--device") && top.contains("--version"), "{top}");
    assert!(top.contains("MODEL is an HF folder") && top.contains("GGUF file"), "{top}");
    assert_eq!(prints(&["-h"]), top);

    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "generate",
            &["--prompt", "--prompt-file", "--json", "--device", "--backend", "--python", "--venv"],
            &[
                "[default: 256]", "[default: 0]", "[default: 1]", "[default: 20]", "[default: 2048]", "[default: 64]",
                "[default: 5000]", "[default: float32 on the CPU", "[default: affine]", "[default: native]",
            ],
        ),
        (
            "chat",
            &["--message", "--system", "--template", "--quiet", "--json", "--device"],
            &["[default: 256]", "[default: affine]"],
        ),
        ("info", &["--json", "--device"], &["[default: float32 on the CPU"]),
        ("convert", &["--gguf", "--out", "--dtype", "--keep-quantized", "--json", "--device"], &["[default: float32]"]),
        (
            "bench",
            &["--prompt-tokens", "--gen-tokens", "--runs", "--warmup", "--json", "--device"],
            &["[default: 128]", "[default: 64]", "[default: 3]", "[default: 1]"],
        ),
        (
            "train",
            &[
                "--data", "--mask-prompt", "--rank", "--scale", "--alpha", "--lora-keys", "--num-layers", "--batch-size",
                "--iters", "--optimizer", "--learning-rate", "--warmup", "--cosine-decay-steps", "--val-batches",
                "--save-every", "--resume-adapter-file", "--test", "--json", "--device",
            ],
            &["[default: 8]", "[default: 20]", "[default: q_proj,v_proj]", "[default: 1000]", "[default: adam]", "[default: 0.00001]", "[default: 2048]"],
        ),
        ("smoke", &["--json", "--device"], &["possible values: cpu, gpu"]),
        ("completions", &["--device"], &["bash", "zsh", "fish"]),
        ("backends", &["--python", "--venv", "--json", "--device"], &["$MLXRUN_PYTHON"]),
    ];
    for &(cmd, own, defaults) in cases {
        let help = prints(&[cmd, "--help"]);
        let mut options: Vec<&str> = own.to_vec();
        if ["generate", "chat", "info", "bench", "train"].contains(&cmd) {
            options.extend(MODEL_OPTIONS);
        }
        if ["generate", "chat"].contains(&cmd) {
            options.extend(GENERATION_OPTIONS);
        }
        for o in options {
            assert!(help.contains(&format!("{o} ")) || help.contains(&format!("{o}\n")), "{cmd} --help lacks {o}: {help}");
        }
        for d in defaults {
            assert!(help.contains(d), "{cmd} --help lacks {d:?}: {help}");
        }
        assert!(help.contains(&format!("Usage: mlxrun {cmd}")), "{help}");
        // `help CMD` says the same.
        assert_eq!(prints(&["help", cmd]), help, "help {cmd}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let v = prints(&["--version"]);
    assert_eq!(v.trim(), format!("mlxrun {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let script = prints(&["completions", shell]);
        for word in ["generate", "chat", "convert", "max-tokens"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let e = fails(&["completions", "powershell-nope"]);
    assert!(e.contains("powershell-nope"), "{e}");
    assert!(fails(&["completions"]).contains("<SHELL>"));
}

#[test]
fn bad_options_are_named() {
    for (args, needle) in [
        (&["generate", "--model", "X", "--prompt", "y", "--frobnicate"][..], "--frobnicate"),
        (&["generate", "--model"][..], "--model"),
        (&["--device", "tpu", "smoke"][..], "--device"),
        (&["smoke", "--device", "tpu"][..], "--device"),
        (&["info", "--model", "X", "--dtype", "float8"][..], "--dtype"),
        (&["convert", "--gguf", "X", "--out", "Y", "--dtype", "float8"][..], "--dtype"),
        (&["generate", "--model", "X", "--prompt", "y", "--temp", "hot"][..], "--temp"),
        (&["generate", "--model", "X", "--prompt", "y", "--seed", "-1"][..], "--seed"),
        (&["generate", "--model", "X", "--prompt", "y", "--prompt-file", "z"][..], "--prompt-file"),
        (&["chat", "--model", "X", "--q-mode", "int3"][..], "--q-mode"),
        (&["convert", "--gguf", "X"][..], "--out"),
        (&["bench", "--model", "X", "--warmup", "-1"][..], "--warmup"),
    ] {
        let e = fails(args);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    // The value named too.
    assert!(fails(&["--device", "tpu", "smoke"]).contains("tpu"));
    assert!(fails(&["info", "--model", "X", "--dtype", "float8"]).contains("float8"));
}

/// `mlxrun train` on the fixture: JSON lines for every report, an adapter folder that
/// `--adapter-path` then loads for generation; bad values exit 1 naming them.
#[test]
fn train_writes_an_adapter_that_generate_loads() {
    let model = common::deps_file("fixtures/qwen3");
    let m = model.to_str().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora/completions");
    let d = data.to_str().unwrap();
    let dir = scratch_dir("cli-train");
    let adapter = dir.join("adapter");
    let a = adapter.to_str().unwrap();
    let args = [
        "train", "--model", m, "--data", d, "--mask-prompt", "--iters", "3", "--steps-per-report", "1", "--rank", "2",
        "--learning-rate", "1e-3", "--adapter-path", a, "--json",
    ];
    let out = mlxrun(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kind = |k: &str| events.iter().filter(|e| e["event"] == k).count();
    assert_eq!((kind("start"), kind("train"), kind("val"), kind("saved")), (1, 3, 2, 1), "{events:?}");
    let losses: Vec<f64> = events.iter().filter(|e| e["event"] == "train").map(|e| e["train_loss"].as_f64().unwrap()).collect();
    assert!(losses[2] < losses[0], "the loss falls: {losses:?}");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["lora_parameters"]["rank"], 2);
    assert_eq!(cfg["lora_parameters"]["keys"], serde_json::json!(["self_attn.q_proj", "self_attn.v_proj"]));

    let with = json(&["generate", "--model", m, "--adapter-path", a, "--prompt", "Hello", "--max-tokens", "4", "--ignore-eos", "--json"]);
    assert_eq!(with["tokens"].as_array().map(Vec::len), Some(4), "{with}");

    assert!(fails(&["train", "--model", m, "--data", d, "--rank", "0", "--adapter-path", a]).contains("rank must be at least 1"));
    assert!(fails(&["train", "--model", m, "--data", d, "--lora-keys", "w_proj", "--adapter-path", a]).contains("\"w_proj\""));
    assert!(fails(&["train", "--model", m, "--data", d, "--optimizer", "lion", "--adapter-path", a]).contains("unknown optimizer"));
    let no_data = dir.join("nothing");
    assert!(fails(&["train", "--model", m, "--data", no_data.to_str().unwrap()]).contains("nothing"));
    assert!(fails(&["generate", "--model", m, "--adapter-path", no_data.to_str().unwrap(), "--prompt", "x"]).contains("nothing"));
}

/// `mlxrun train --plot`: an SVG with a line and a legend label for each of the training and
/// validation losses; a plot path that cannot be written fails before any training, naming
/// the path.
#[test]
fn train_plots_its_losses() {
    let model = common::deps_file("fixtures/qwen3");
    let m = model.to_str().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora/completions");
    let d = data.to_str().unwrap();
    let dir = scratch_dir("cli-train-plot");
    let (adapter, plot) = (dir.join("adapter"), dir.join("loss.svg"));
    let _ = std::fs::remove_file(&plot);
    let (a, p) = (adapter.to_str().unwrap(), plot.to_str().unwrap());
    let args = [
        "train", "--model", m, "--data", d, "--mask-prompt", "--iters", "3", "--steps-per-report", "1", "--steps-per-eval", "2",
        "--rank", "2", "--learning-rate", "1e-3", "--adapter-path", a, "--json", "--plot", p,
    ];
    let out = mlxrun(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Validation before steps 1, 2 and 3; a training report after each.
    let plotted = events.iter().find(|e| e["event"] == "plot").unwrap_or_else(|| panic!("no plot event: {events:?}"));
    assert_eq!((plotted["path"].as_str(), plotted["train_points"].as_u64(), plotted["val_points"].as_u64()), (Some(p), Some(3), Some(3)));

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    // Texts sit on lines of their own between their <text> tags.
    for text in ["train", "validation", "iteration", "loss", "LoRA: qwen3 on completions"] {
        assert!(svg.lines().any(|l| l == text), "no {text:?} in {svg}");
    }
    // Each series' colour: its line, and its sample in the legend.
    for colour in ["#1F77B4", "#FF7F0E"] {
        let lines = svg.lines().filter(|l| l.starts_with("<polyline") && l.contains(colour)).count();
        assert_eq!(lines, 2, "{colour} in {svg}");
    }

    // Bad paths fail at once, naming the path, before any training (which would write the
    // adapter's config first) and before printing anything.
    let fresh = dir.join("never-written");
    let f = fresh.to_str().unwrap();
    let missing = dir.join("no-such-folder").join("loss.svg");
    let png = dir.join("loss.png");
    for (bad, why) in [(&missing, "no folder"), (&png, ".svg"), (&dir.join("adapter.svg"), "")] {
        if why.is_empty() {
            std::fs::create_dir_all(bad).unwrap(); // a folder in the file's place
        }
        let b = bad.to_str().unwrap();
        let e = fails(&["train", "--model", m, "--data", d, "--adapter-path", f, "--plot", b]);
        assert!(e.contains(b) && e.contains(why), "{e}");
        assert!(!fresh.exists(), "trained despite --plot {b}");
    }
}

/// Ctrl-C during `mlxrun train --plot` stops training after the step in progress, plots the
/// losses so far and exits 1 with "cancelled".
#[cfg(unix)]
#[test]
fn an_interrupted_training_plots_how_far_it_got() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let model = common::deps_file("fixtures/qwen3");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora/completions");
    let dir = scratch_dir("cli-train-interrupted");
    let plot = dir.join("loss.svg");
    let _ = std::fs::remove_file(&plot);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlxrun"))
        .args(["train", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--iters", "100000"])
        .args(["--steps-per-report", "1", "--rank", "2", "--json", "--save-every", "0"])
        .arg("--adapter-path")
        .arg(dir.join("adapter"))
        .arg("--plot")
        .arg(&plot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events: Vec<Value> = Vec::new();
    while !events.iter().any(|e| e["event"] == "train") {
        let line = lines.next().expect("a training report before the end").unwrap();
        events.push(serde_json::from_str(&line).unwrap());
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    events.extend(lines.map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap()));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopping after this step") && stderr.contains("mlxrun: cancelled"), "{stderr}");
    let trained = events.iter().filter(|e| e["event"] == "train").count();
    let plotted = events.iter().find(|e| e["event"] == "plot").unwrap_or_else(|| panic!("no plot event: {events:?}"));
    assert_eq!(plotted["train_points"].as_u64(), Some(trained as u64), "{events:?}");
    assert!(trained < 100, "stopped early: {trained} reports");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.lines().any(|l| l == "train"), "{svg}");
}
