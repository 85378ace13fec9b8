//! LoRA training against mlx-lm's `lora` (scripts/lora_refs.py): the same fixture, data,
//! initial adapter and settings give the same tokenized batch, the same gradients, and
//! the same loss at every one of 20 steps; adapters cross between the two both ways; bad
//! input is refused with errors that name it.
//!
//! Tolerances (float32 on the CPU): gradients within 1e-5 + 1e-3·|g| of MLX Python's
//! `value_and_grad`, and within 1e-3 + 2e-2·|g| of central finite differences (step
//! 1e-2); per-step training and validation losses within 1e-4 relative of mlx-lm's.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_close, deps_file, Scratch};
use mlxrun::mlx::io::load_safetensors;
use mlxrun::mlx::Array;
use mlxrun::train::{adapter, batch, trainer, Dataset, DatasetOptions, LoraConfig, OptimizerKind, Progress, Schedule, TrainConfig};
use mlxrun::{GenerateParams, LoadOptions, Model};
use serde_json::Value;

const CASES: [&str; 3] = ["text", "completions-masked", "chat-masked"];

fn reference(case: &str) -> (PathBuf, Value) {
    let dir = deps_file(&format!("refs/lora/{case}"));
    let v = serde_json::from_str(&std::fs::read_to_string(dir.join("ref.json")).unwrap()).unwrap();
    (dir, v)
}

fn data_dir(format: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora").join(format)
}

fn lora_config(r: &Value) -> LoraConfig {
    let p = &r["lora"];
    LoraConfig {
        rank: p["rank"].as_i64().unwrap() as i32,
        scale: p["scale"].as_f64().unwrap() as f32,
        dropout: 0.0,
        num_layers: Some(r["num_layers"].as_i64().unwrap() as i32),
        keys: p["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect(),
        ..LoraConfig::default()
    }
}

/// The fixture with the reference's initial adapter on it, and the case's datasets.
fn setup(case: &str) -> (Model, Dataset, Dataset, Value) {
    let (dir, r) = reference(case);
    let mut model = Model::load(deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    model.apply_lora(&lora_config(&r)).unwrap();
    model.load_adapter_weights(dir.join("init.safetensors")).unwrap();
    let opts = DatasetOptions { mask_prompt: r["mask_prompt"].as_bool().unwrap() };
    let fmt = r["format"].as_str().unwrap();
    let train = Dataset::load(data_dir(fmt).join("train.jsonl"), &mut model, &opts).unwrap();
    let valid = Dataset::load(data_dir(fmt).join("valid.jsonl"), &mut model, &opts).unwrap();
    (model, train, valid, r)
}

fn train_config(r: &Value, adapter_path: Option<PathBuf>) -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        iters: r["steps"].as_u64().unwrap() as usize,
        val_batches: None,
        steps_per_report: 1,
        steps_per_eval: r["steps"].as_u64().unwrap() as usize,
        save_every: 0,
        optimizer: OptimizerKind::adam(),
        schedule: Schedule::constant(r["learning_rate"].as_f64().unwrap() as f32),
        adapter_path,
        ..TrainConfig::default()
    }
}

fn greedy(model: &mut Model, prompt: &str, n: usize) -> Vec<u32> {
    let params = GenerateParams { max_tokens: n, ..Default::default() };
    model.generate(prompt, &params, |_| true).unwrap().tokens
}

fn within(what: &str, got: f64, want: f64, rtol: f64) {
    assert!((got - want).abs() <= rtol * want.abs(), "{what}: got {got}, mlx-lm {want} (rtol {rtol})");
}

#[test]
fn examples_tokenize_and_mask_as_mlx_lm_does() {
    for case in CASES {
        let (_, train, _, r) = setup(case);
        let rows = r["first_batch"]["tokens"].as_array().unwrap();
        let lengths = r["first_batch"]["lengths"].as_array().unwrap();
        assert_eq!(train.len(), rows.len(), "{case}");
        for (i, ex) in train.examples.iter().enumerate() {
            let (offset, len) = (lengths[i][0].as_u64().unwrap() as usize, lengths[i][1].as_u64().unwrap() as usize);
            let want: Vec<u32> = rows[i].as_array().unwrap()[..len].iter().map(|t| t.as_u64().unwrap() as u32).collect();
            assert_eq!(ex.tokens, want, "{case}: example {i}'s tokens");
            assert_eq!(ex.offset, offset, "{case}: example {i}'s prompt length");
        }
        // The padded batch: one more than a multiple of 32 wide.
        let width = rows[0].as_array().unwrap().len();
        let b = batch::make_batch(&train.examples, &[0, 1, 2, 3], 2048).unwrap();
        assert_eq!(b.tokens.shape(), vec![4, width as i32], "{case}: batch shape");
    }
}

#[test]
fn gradients_match_mlx_lm_and_finite_differences() {
    for case in ["completions-masked", "text"] {
        let (dir, r) = reference(case);
        let (mut model, train, _, _) = setup(case);
        let rows: Vec<usize> = (0..train.len()).collect();
        let b = batch::make_batch(&train.examples, &rows, 2048).unwrap();
        let names: Vec<String> = adapter::parameters(model.language_model_mut()).into_iter().map(|(n, _)| n).collect();
        let params: Vec<Array> = adapter::parameters(model.language_model_mut()).into_iter().map(|(_, a)| a).collect();
        let (loss, ntoks, grads) = trainer::loss_and_grad(model.language_model_mut(), &params, &b).unwrap();
        within(&format!("{case}: loss"), loss.item::<f32>().unwrap() as f64, r["first_batch"]["loss"].as_f64().unwrap(), 1e-5);
        assert_eq!(ntoks.item::<i32>().unwrap() as i64, r["first_batch"]["ntoks"].as_i64().unwrap(), "{case}: tokens");
        let want = load_safetensors(dir.join("grads.safetensors")).unwrap().tensors;
        assert_eq!(want.len(), grads.len(), "{case}: one gradient per adapter parameter");
        for (name, g) in names.iter().zip(&grads) {
            assert_close(&format!("{case}: d loss / d {name}"), g, &want[name], 1e-5, 1e-3);
        }

        // Central differences on a few elements of the last layer's A and B.
        let loss_at = |model: &mut Model, values: &[Array]| -> f64 {
            adapter::set_parameters(model.language_model_mut(), values).unwrap();
            let (l, _) = mlxrun::train::loss::loss(model.language_model(), &b.tokens, &b.lengths).unwrap();
            l.item::<f32>().unwrap() as f64
        };
        let h = 1e-2f32;
        for which in [params.len() - 2, params.len() - 1] {
            let base: Vec<f32> = params[which].to_vec().unwrap();
            let g: Vec<f32> = grads[which].to_vec().unwrap();
            // The element with the largest gradient, and two others.
            let top = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
            for i in [top, 0, g.len() / 2] {
                let mut at = |delta: f32| {
                    let mut v = base.clone();
                    v[i] += delta;
                    let mut values = params.clone();
                    values[which] = Array::from_slice(&v, &params[which].shape()).unwrap();
                    loss_at(&mut model, &values)
                };
                let fd = (at(h) - at(-h)) / (2.0 * h as f64);
                let tol = 1e-3 + 2e-2 * fd.abs();
                assert!((g[i] as f64 - fd).abs() <= tol, "{case}: {}[{i}]: gradient {} vs finite difference {fd}", names[which], g[i]);
            }
        }
        adapter::set_parameters(model.language_model_mut(), &params).unwrap();
    }
}

#[test]
fn twenty_steps_give_mlx_lm_s_losses_and_the_adapter_crosses_both_ways() {
    for case in CASES {
        let scratch = Scratch::new(&format!("train-{case}"));
        let (mut model, train, valid, r) = setup(case);
        let cfg = train_config(&r, Some(scratch.join("adapter")));
        let mut seen = Vec::new();
        let summary = model
            .train(&train, Some(&valid), &cfg, |p| {
                if let Progress::Train(t) = p {
                    seen.push(t.train_loss);
                }
                true
            })
            .unwrap();
        let want = r["train"].as_array().unwrap();
        assert_eq!(summary.reports.len(), want.len(), "{case}: one report per step");
        for (got, w) in summary.reports.iter().zip(want) {
            assert_eq!(got.iteration as u64, w["iteration"].as_u64().unwrap());
            within(&format!("{case}: step {} loss", got.iteration), got.train_loss as f64, w["loss"].as_f64().unwrap(), 1e-4);
        }
        assert_eq!(seen.len(), want.len(), "{case}: the callback saw every report");
        let want_val = r["val"].as_array().unwrap();
        assert_eq!(summary.validations.len(), want_val.len(), "{case}: validations");
        for (got, w) in summary.validations.iter().zip(want_val) {
            assert_eq!(got.iteration as u64, w["iteration"].as_u64().unwrap(), "{case}: validation step");
            within(&format!("{case}: validation loss after {}", got.iteration), got.val_loss as f64, w["loss"].as_f64().unwrap(), 1e-4);
        }
        let first = summary.reports.first().unwrap().train_loss;
        let last = summary.reports.last().unwrap().train_loss;
        assert!(last < first, "{case}: training lowers the loss ({first} → {last})");

        // Ours in mlx-lm: mlx_lm's own loader and greedy decoding on our adapter folder.
        let prompt = r["prompt"].as_str().unwrap();
        let ours = greedy(&mut model, prompt, 16);
        let theirs = mlx_lm_greedy(&deps_file("fixtures/qwen3"), &scratch.join("adapter"), prompt, 16);
        assert_eq!(ours, theirs, "{case}: greedy tokens with our adapter, ours vs mlx_lm");

        // mlx-lm's in ours: its trained adapter folder, loaded with the model.
        let (dir, _) = reference(case);
        let opts = LoadOptions { adapter_path: Some(dir.join("adapter")), ..LoadOptions::default() };
        let mut theirs_here = Model::load(deps_file("fixtures/qwen3"), &opts).unwrap();
        let want: Vec<u32> = r["greedy_with_adapter"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        assert_eq!(greedy(&mut theirs_here, prompt, want.len()), want, "{case}: greedy tokens with mlx-lm's adapter");
    }
}

/// mlx-lm's greedy tokens for `prompt` on `model` with the adapter folder `adapter`
/// (empty for none), run by the reference's own Python package.
fn mlx_lm_greedy(model: &Path, adapter: &Path, prompt: &str, n: usize) -> Vec<u32> {
    let script = r#"
import json, sys
import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import generate_step
model, tok = load(sys.argv[1], adapter_path=sys.argv[2] or None)
ids = [int(t) for t, _ in generate_step(mx.array(tok.encode(sys.argv[3])), model, max_tokens=int(sys.argv[4]), sampler=lambda x: mx.argmax(x, axis=-1))]
print(json.dumps(ids))
"#;
    let out = Command::new(deps_file("venv/bin/python"))
        .args(["-c", script])
        .arg(model)
        .arg(adapter)
        .arg(prompt)
        .arg(n.to_string())
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "mlx_lm failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn train_err(model: &mut Model, data: &Dataset, cfg: &TrainConfig) -> String {
    match model.train(data, None, cfg, |_| true) {
        Ok(_) => panic!("training ran, expected an error"),
        Err(e) => e.to_string(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_datasets_name_the_file_and_line() {
    let scratch = Scratch::new("train-bad-data");
    let mut model = Model::load(deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let opts = DatasetOptions::default();
    let err = |model: &mut Model, text: &str, opts: &DatasetOptions| -> String {
        let p = write(&scratch, "d.jsonl", text);
        Dataset::load(&p, model, opts).map(|_| ()).unwrap_err().to_string()
    };
    let e = err(&mut model, "{\"text\": \"a\"}\n{\"text\": \"b\"\n", &opts);
    assert!(e.contains("d.jsonl:2:") && e.contains("not valid JSON"), "{e}");
    let e = err(&mut model, "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": \"b\", \"id\": 3}\n", &opts);
    assert!(e.contains("d.jsonl:2:") && e.contains("unknown key \"id\""), "{e}");
    let e = err(&mut model, "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"prompt\": \"a\"}\n", &opts);
    assert!(e.contains("d.jsonl:3:") && e.contains("missing field \"completion\""), "{e}");
    let e = err(&mut model, "\n\n", &opts);
    assert!(e.contains("d.jsonl") && e.contains("no examples"), "{e}");
    let e = err(&mut model, "{\"txt\": \"a\"}\n", &opts);
    assert!(e.contains("d.jsonl:1:") && e.contains("none of the fields"), "{e}");
    let e = err(&mut model, "{\"messages\": [{\"role\": \"user\"}]}\n", &opts);
    assert!(e.contains("d.jsonl:1:") && e.contains("messages[0]") && e.contains("\"content\""), "{e}");
    let e = err(&mut model, "{\"text\": \"a\"}\n", &DatasetOptions { mask_prompt: true });
    assert!(e.contains("prompt masking"), "{e}");
    let e = Dataset::load(scratch.join("absent.jsonl"), &mut model, &opts).unwrap_err().to_string();
    assert!(e.contains("absent.jsonl"), "{e}");

    // Fewer examples than a batch; an untrainable model.
    let p = write(&scratch, "small.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
    let small = Dataset::load(&p, &mut model, &opts).unwrap();
    let e = train_err(&mut model, &small, &TrainConfig::default());
    assert!(e.contains("no adapter"), "{e}");
    model.apply_lora(&LoraConfig::default()).unwrap();
    let e = train_err(&mut model, &small, &TrainConfig::default());
    assert!(e.contains("small.jsonl") && e.contains("at least batch_size=4"), "{e}");
    let e = train_err(&mut model, &small, &TrainConfig { batch_size: 2, iters: 0, ..TrainConfig::default() });
    assert!(e.contains("iters must be at least 1"), "{e}");
}

#[test]
fn bad_adapters_are_refused_and_leave_the_model_as_it_was() {
    let scratch = Scratch::new("train-bad-adapter");
    let mut model = Model::load(deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let before = greedy(&mut model, "Hello", 8);
    let apply = |model: &mut Model, cfg: LoraConfig| model.apply_lora(&cfg).map(|_| ()).unwrap_err().to_string();
    let e = apply(&mut model, LoraConfig { rank: 0, ..LoraConfig::default() });
    assert!(e.contains("rank must be at least 1"), "{e}");
    let e = apply(&mut model, LoraConfig { keys: vec!["x_proj".into()], ..LoraConfig::default() });
    assert!(e.contains("\"x_proj\" matches no projection") && e.contains("self_attn.q_proj"), "{e}");
    let e = apply(&mut model, LoraConfig { num_layers: Some(9), ..LoraConfig::default() });
    assert!(e.contains("num_layers 9") && e.contains("3 layers"), "{e}");
    assert!(model.adapter().is_none());

    // A fresh adapter (B = 0) leaves the output as it was; short names resolve.
    let info = model.apply_lora(&LoraConfig { keys: vec!["q_proj".into(), "down_proj".into()], rank: 2, ..LoraConfig::default() }).unwrap();
    assert_eq!(info.keys, ["self_attn.q_proj", "mlp.down_proj"]);
    assert_eq!(info.modules.len(), 6);
    assert_eq!(greedy(&mut model, "Hello", 8), before);
    model.save_adapter(scratch.join("good")).unwrap();
    model.remove_adapter();

    // A rank-2 file against a rank-4 config: the tensor, with both shapes.
    let (dir, _) = reference("text");
    std::fs::create_dir_all(scratch.join("wrong-rank")).unwrap();
    std::fs::copy(dir.join("adapter/adapter_config.json"), scratch.join("wrong-rank/adapter_config.json")).unwrap();
    let cfg_text = std::fs::read_to_string(scratch.join("wrong-rank/adapter_config.json")).unwrap();
    let mut cfg: Value = serde_json::from_str(&cfg_text).unwrap();
    cfg["lora_parameters"]["keys"] = serde_json::json!(["self_attn.q_proj", "mlp.down_proj"]);
    std::fs::write(scratch.join("wrong-rank/adapter_config.json"), cfg.to_string()).unwrap();
    std::fs::copy(scratch.join("good/adapters.safetensors"), scratch.join("wrong-rank/adapters.safetensors")).unwrap();
    let e = model.load_adapter(scratch.join("wrong-rank")).unwrap_err().to_string();
    assert!(e.contains("lora_a") && e.contains("[64, 2]") && e.contains("[64, 4]"), "{e}");
    assert!(model.adapter().is_none() && adapter::parameters(model.language_model_mut()).is_empty(), "a refused adapter is taken off again");
    assert_eq!(greedy(&mut model, "Hello", 8), before);

    // Another model's adapter: llama3 has 2 layers.
    let e = match Model::load(deps_file("fixtures/llama3"), &LoadOptions { adapter_path: Some(dir.join("adapter")), ..LoadOptions::default() }) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("num_layers 3") && e.contains("2 layers"), "{e}");
    let e = model.load_adapter(scratch.join("absent")).unwrap_err().to_string();
    assert!(e.contains("absent") && e.contains("does not exist"), "{e}");
}

#[test]
fn cancelling_keeps_the_last_checkpoint() {
    let scratch = Scratch::new("train-cancel");
    let (mut model, train, _, r) = setup("text");
    let cfg = TrainConfig { save_every: 2, ..train_config(&r, Some(scratch.to_path_buf())) };
    let err = model
        .train(&train, None, &cfg, |p| !matches!(p, Progress::Train(t) if t.iteration == 5))
        .unwrap_err();
    assert!(matches!(err, mlxrun::Error::Cancelled), "{err}");
    let saved = std::fs::read(scratch.join("adapters.safetensors")).unwrap();
    assert_eq!(saved, std::fs::read(scratch.join("0000004_adapters.safetensors")).unwrap(), "the adapter is step 4's");
    assert!(!scratch.join("0000006_adapters.safetensors").exists());
    // The folder loads as an adapter (its config was written first).
    let mut again = Model::load(deps_file("fixtures/qwen3"), &LoadOptions { adapter_path: Some(scratch.to_path_buf()), ..LoadOptions::default() }).unwrap();
    assert!(again.adapter().is_some());
    greedy(&mut again, "Hello", 4);
}

/// Mixed precision: a bfloat16 model with float32 adapters (and optimizer state) trains,
/// and the adapter stays float32.
#[test]
fn a_bfloat16_model_trains_float32_adapters() {
    let (_, r) = reference("completions-masked");
    let opts = LoadOptions { dtype: Some(mlxrun::mlx::Dtype::Bf16), ..LoadOptions::default() };
    let mut model = Model::load(deps_file("fixtures/qwen3"), &opts).unwrap();
    model.apply_lora(&lora_config(&r)).unwrap();
    let data = Dataset::load(data_dir("completions").join("train.jsonl"), &mut model, &DatasetOptions { mask_prompt: true }).unwrap();
    let cfg = TrainConfig { iters: 4, ..train_config(&r, None) };
    let summary = model.train(&data, None, &cfg, |_| true).unwrap();
    let losses: Vec<f32> = summary.reports.iter().map(|t| t.train_loss).collect();
    assert!(losses.iter().all(|l| l.is_finite()) && losses[3] < losses[0], "{losses:?}");
    for (name, a) in adapter::parameters(model.language_model_mut()) {
        assert_eq!(a.dtype(), mlxrun::mlx::Dtype::F32, "{name}");
    }
}

/// Runs `python -m mlx_lm ARGS…` (the reference's own command line).
fn mlx_lm(args: &[&str]) {
    let out = Command::new(deps_file("venv/bin/python"))
        .args(["-m", "mlx_lm"])
        .args(args)
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "mlx_lm {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `ours` holds the tensors of mlx-lm's folder `theirs`, no more, with their shapes and
/// dtypes, packed integers identical and floats within `atol`.
fn same_tensors(what: &str, ours: &Path, theirs: &Path, atol: f64) {
    let read = |d: &Path| {
        let mut m = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "safetensors") {
                m.extend(load_safetensors(e.path()).unwrap().tensors);
            }
        }
        m
    };
    let (o, t) = (read(ours), read(theirs));
    assert_eq!(o.keys().collect::<Vec<_>>(), t.keys().collect::<Vec<_>>(), "{what}: tensor names");
    for (name, want) in &t {
        assert_close(&format!("{what}: {name}"), &o[name], want, atol, 0.0);
    }
}

#[test]
fn fused_folders_equal_mlx_lm_fuse_and_generate_as_the_adapter_does() {
    let scratch = Scratch::new("fuse");
    let (dir, r) = reference("text");
    let adapter = dir.join("adapter");
    let prompt = r["prompt"].as_str().unwrap();
    let with_adapter: Vec<u32> = r["greedy_with_adapter"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let base = deps_file("fixtures/qwen3");

    // A float32 base: the same folder as mlx_lm fuse, and the adapter's greedy tokens.
    let ours = scratch.join("ours");
    let done = mlxrun::train::fuse::fuse(&base, &adapter, &ours, false, mlxrun::mlx::Dtype::F32).unwrap();
    assert_eq!(done.fused, 2 * r["num_layers"].as_u64().unwrap() as usize, "q and v of every layer");
    let theirs = scratch.join("theirs");
    mlx_lm(&["fuse", "--model", base.to_str().unwrap(), "--adapter-path", adapter.to_str().unwrap(), "--save-path", theirs.to_str().unwrap()]);
    same_tensors("float32 fuse", &ours, &theirs, 1e-6);
    let mut fused = Model::load(&ours, &LoadOptions::default()).unwrap();
    assert_eq!(greedy(&mut fused, prompt, with_adapter.len()), with_adapter, "our fused folder generates as the adapter does");

    // A 4-bit base (mlx_lm convert): adapted projections are quantized again, as mlx_lm
    // fuse quantizes them; with --dequantize every matrix is dense and the config plain.
    let q4 = scratch.join("q4");
    mlx_lm(&["convert", "--hf-path", base.to_str().unwrap(), "--mlx-path", q4.to_str().unwrap(), "-q", "--q-bits", "4", "--q-group-size", "32"]);
    for dequantize in [false, true] {
        let tag = if dequantize { "dequantized" } else { "quantized" };
        let ours = scratch.join(format!("ours-q4-{tag}"));
        let theirs = scratch.join(format!("theirs-q4-{tag}"));
        let done = mlxrun::train::fuse::fuse(&q4, &adapter, &ours, dequantize, mlxrun::mlx::Dtype::F32).unwrap();
        assert_eq!(done.quantized, !dequantize, "{tag}");
        let mut args = vec!["fuse", "--model", q4.to_str().unwrap(), "--adapter-path", adapter.to_str().unwrap(), "--save-path", theirs.to_str().unwrap()];
        if dequantize {
            args.push("--dequantize");
        }
        mlx_lm(&args);
        same_tensors(&format!("4-bit fuse, {tag}"), &ours, &theirs, 1e-6);
        let cfg: Value = serde_json::from_str(&std::fs::read_to_string(ours.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg.get("quantization").is_some(), !dequantize, "{tag}: the config's quantization entry");
        let mut fused = Model::load(&ours, &LoadOptions::default()).unwrap();
        let n = with_adapter.len();
        assert_eq!(greedy(&mut fused, prompt, n), mlx_lm_greedy(&theirs, Path::new(""), prompt, n), "{tag}: greedy tokens, ours vs mlx-lm's fused folder");
    }
}

#[test]
fn fusing_a_mismatched_adapter_names_the_problem_and_writes_nothing() {
    let scratch = Scratch::new("fuse-bad");
    let (dir, _) = reference("text");
    let out = scratch.join("out");
    // The qwen3 adapter on the llama3 fixture: other projection sizes.
    let err = mlxrun::train::fuse::fuse(&deps_file("fixtures/llama3"), &dir.join("adapter"), &out, false, mlxrun::mlx::Dtype::F32).unwrap_err().to_string();
    assert!(err.contains("lora_a") && err.contains("do not fit"), "{err}");
    assert!(!out.join("model.safetensors").exists(), "nothing written: {err}");
    // An adapter folder without its weights, and the base's own folder as the output.
    let empty = scratch.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(dir.join("adapter/adapter_config.json"), empty.join("adapter_config.json")).unwrap();
    let err = mlxrun::train::fuse::fuse(&deps_file("fixtures/qwen3"), &empty, &out, false, mlxrun::mlx::Dtype::F32).unwrap_err().to_string();
    assert!(err.contains("adapters.safetensors"), "{err}");
    let base = deps_file("fixtures/qwen3");
    let err = mlxrun::train::fuse::fuse(&base, &dir.join("adapter"), &base, false, mlxrun::mlx::Dtype::F32).unwrap_err().to_string();
    assert!(err.contains("base model's own folder"), "{err}");
}

/// `(loss, gradients)` of the model's adapter on `b`, with gradient checkpointing on or off.
fn grads_of(model: &mut Model, b: &batch::Batch, checkpoint: bool) -> (f32, Vec<Array>) {
    let lm = model.language_model_mut();
    lm.set_grad_checkpoint(checkpoint);
    let params: Vec<Array> = adapter::parameters(lm).into_iter().map(|(_, a)| a).collect();
    let (loss, _, grads) = trainer::loss_and_grad(lm, &params, b).unwrap();
    lm.set_grad_checkpoint(false);
    (loss.item::<f32>().unwrap(), grads)
}

/// Gradient checkpointing recomputes each layer in the backward pass: the loss and every
/// gradient equal those of the plain pass (float32, within 1e-6 + 1e-5·|g|), for the
/// Llama-style stack and for Gemma 3's sliding-window layers, with adapters on every
/// projection. With dropout, the recomputation drops the elements the forward pass dropped:
/// the checkpointed gradients equal the plain pass's under the same dropout keys, and
/// differ from the gradients without dropout.
#[test]
fn gradient_checkpointing_gives_the_plain_pass_s_gradients() {
    use mlxrun::mlx::{random, Dtype};
    for family in ["qwen3", "gemma3"] {
        let mut model = Model::load(deps_file(&format!("fixtures/{family}")), &LoadOptions::default()).unwrap();
        let keys = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
        let cfg = LoraConfig { rank: 4, dropout: 0.25, keys: keys.map(String::from).to_vec(), ..LoraConfig::default() };
        model.apply_lora(&cfg).unwrap();
        // B non-zero, so that every gradient (A's too) is.
        let lm = model.language_model_mut();
        let params: Vec<Array> = adapter::parameters(lm)
            .into_iter()
            .enumerate()
            .map(|(i, (_, a))| random::normal(&a.shape(), Dtype::F32, 0.0, 0.05, Some(&random::key(i as u64).unwrap())).unwrap())
            .collect();
        adapter::set_parameters(lm, &params).unwrap();
        let data = Dataset::load(data_dir("text").join("train.jsonl"), &mut model, &DatasetOptions::default()).unwrap();
        let rows: Vec<usize> = (0..data.len()).collect();
        let b = batch::make_batch(&data.examples, &rows, 2048).unwrap();

        let (plain_loss, plain) = grads_of(&mut model, &b, false);
        let (ckpt_loss, ckpt) = grads_of(&mut model, &b, true);
        within(&format!("{family}: checkpointed loss"), ckpt_loss as f64, plain_loss as f64, 1e-6);
        for (i, (g, want)) in ckpt.iter().zip(&plain).enumerate() {
            assert_close(&format!("{family}: checkpointed gradient {i}"), g, want, 1e-6, 1e-5);
        }

        // Dropout: the checkpointed pass draws one key per adapter from MLX's generator,
        // layer by layer; the plain pass given the same keys must agree with it.
        adapter::set_training(model.language_model_mut(), true);
        random::seed(7).unwrap();
        let (drop_loss, dropped) = grads_of(&mut model, &b, true);
        random::seed(7).unwrap();
        for (_, lora) in adapter::adapters_mut(model.language_model_mut()) {
            lora.dropout_key = Some(random::randint(0, i32::MAX, &[2], Dtype::U32, None).unwrap());
        }
        let (keyed_loss, keyed) = grads_of(&mut model, &b, false);
        within(&format!("{family}: loss with dropout"), drop_loss as f64, keyed_loss as f64, 1e-6);
        for (i, (g, want)) in dropped.iter().zip(&keyed).enumerate() {
            assert_close(&format!("{family}: checkpointed gradient {i} with dropout"), g, want, 1e-6, 1e-5);
        }
        let moved = dropped.iter().zip(&plain).any(|(a, b)| a.sub(b).unwrap().abs().unwrap().max(None, false).unwrap().item::<f32>().unwrap() > 1e-4);
        assert!(moved, "{family}: dropout changes the gradients");
        for (_, lora) in adapter::adapters_mut(model.language_model_mut()) {
            lora.dropout_key = None;
        }
        adapter::set_training(model.language_model_mut(), false);
    }
}

/// Training with gradient checkpointing, with a compiled step (what a GPU runs by
/// default), and with both, takes mlx-lm's steps: every loss equals the reference's, as
/// those of the plain pass do.
#[test]
fn checkpointed_and_compiled_steps_give_mlx_lm_s_losses() {
    for (grad_checkpoint, compile) in [(true, false), (false, true), (true, true)] {
        let (mut model, train, valid, r) = setup("completions-masked");
        let cfg = TrainConfig { grad_checkpoint, compile: Some(compile), ..train_config(&r, None) };
        let summary = model.train(&train, Some(&valid), &cfg, |_| true).unwrap();
        let want = r["train"].as_array().unwrap();
        assert_eq!(summary.reports.len(), want.len());
        for (got, w) in summary.reports.iter().zip(want) {
            let what = format!("checkpoint {grad_checkpoint}, compiled {compile}: step {} loss", got.iteration);
            within(&what, got.train_loss as f64, w["loss"].as_f64().unwrap(), 1e-4);
        }
    }
}

/// A seed fixes the adapters' initial weights (and so a whole run): the same seed twice
/// gives the same `A`, another seed another one.
#[test]
fn a_seed_fixes_the_initial_adapter() {
    let initial = |seed: u64| -> Vec<Vec<f32>> {
        let mut model = Model::load(deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
        model.apply_lora(&LoraConfig { seed: Some(seed), ..LoraConfig::default() }).unwrap();
        adapter::parameters(model.language_model_mut()).into_iter().map(|(_, a)| a.to_vec::<f32>().unwrap()).collect()
    };
    let (a, b, c) = (initial(3), initial(3), initial(4));
    assert_eq!(a, b, "the same seed, the same start");
    assert_ne!(a, c, "another seed, another start");
}

/// MLX's streams are per thread: an adapter loaded or applied on one thread must be usable
/// from another (a Go program's goroutines move between threads), so its arrays are computed
/// where they are made.
#[test]
fn an_adapter_made_on_one_thread_serves_another() {
    let (dir, r) = reference("text");
    let adapter = dir.join("adapter");
    let mut model = std::thread::spawn(move || {
        Model::load(deps_file("fixtures/qwen3"), &LoadOptions { adapter_path: Some(adapter), ..LoadOptions::default() }).unwrap()
    })
    .join()
    .unwrap();
    let want: Vec<u32> = r["greedy_with_adapter"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    assert_eq!(greedy(&mut model, r["prompt"].as_str().unwrap(), want.len()), want, "greedy tokens with an adapter loaded on another thread");

    let mut fresh = Model::load(deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let mut fresh = std::thread::spawn(move || {
        fresh.apply_lora(&LoraConfig::default()).unwrap();
        fresh
    })
    .join()
    .unwrap();
    let data = Dataset::load(data_dir("text").join("train.jsonl"), &mut fresh, &DatasetOptions::default()).unwrap();
    let summary = fresh.train(&data, None, &TrainConfig { iters: 2, ..TrainConfig::default() }, |_| true).unwrap();
    assert!(summary.reports.iter().all(|t| t.train_loss.is_finite()), "training an adapter applied on another thread");
}
