//! It learns: LoRA on the real SmolLM2-135M-Instruct (its GGUF file, unpacked to float32 on
//! the CPU) trained on eight made-up facts drives the loss near zero, and the model then
//! answers the questions with them. Part of scripts/test_real_models.sh (minutes), not of
//! scripts/test.sh.
mod common;

use std::path::Path;

use mlxrun::train::{Dataset, DatasetOptions, LoraConfig, Progress, Schedule, TrainConfig};
use mlxrun::{ChatOptions, GenerateParams, LoadOptions, Message, Model};
use serde_json::Value;

#[test]
#[ignore = "the real-model suite: scripts/test_real_models.sh"]
fn smollm2_learns_made_up_facts() {
    let mut model = Model::load(common::deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf"), &LoadOptions::default()).unwrap();
    let lora = LoraConfig { rank: 8, scale: 20.0, keys: vec!["q_proj".into(), "v_proj".into(), "o_proj".into()], ..LoraConfig::default() };
    model.apply_lora(&lora).unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora/facts/train.jsonl");
    let data = Dataset::load(&file, &mut model, &DatasetOptions { mask_prompt: true }).unwrap();
    let cfg = TrainConfig { iters: 40, batch_size: 4, steps_per_report: 5, schedule: Schedule::constant(2e-4), save_every: 0, ..TrainConfig::default() };
    let summary = model
        .train(&data, None, &cfg, |p| {
            if let Progress::Train(t) = p {
                println!("step {:3}: loss {:.4} ({:.0} tok/s, peak {:.0} MB)", t.iteration, t.train_loss, t.tokens_per_second, t.peak_memory as f64 / 1e6);
            }
            true
        })
        .unwrap();
    let last = summary.reports.last().unwrap().train_loss;
    assert!(last < 0.05, "the loss falls near zero: {last}");

    // Every question answered with its made-up fact (the completion's distinctive words).
    let wrong = wrong_answers(&mut model, &file);
    assert!(wrong.is_empty(), "answers that are not the trained ones:\n{}", wrong.join("\n"));

    // Fused into the GGUF base (unpacked to float32), the folder answers the same without
    // the adapter.
    let scratch = common::Scratch::new("smollm2-fuse");
    model.save_adapter(scratch.join("adapter")).unwrap();
    let gguf = common::deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let done = mlxrun::train::fuse::fuse(&gguf, &scratch.join("adapter"), &scratch.join("fused"), true, mlxrun::mlx::Dtype::F32).unwrap();
    assert_eq!(done.fused, 3 * 30, "q, v and o of all 30 layers");
    let mut fused = Model::load(scratch.join("fused"), &LoadOptions::default()).unwrap();
    let wrong = wrong_answers(&mut fused, &file);
    assert!(wrong.is_empty(), "the fused folder's answers that are not the trained ones:\n{}", wrong.join("\n"));
}

/// The questions of `file` not answered with their made-up fact (the completion, exactly).
fn wrong_answers(model: &mut Model, file: &Path) -> Vec<String> {
    let mut wrong = Vec::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let (q, a) = (v["prompt"].as_str().unwrap(), v["completion"].as_str().unwrap());
        let params = GenerateParams { max_tokens: 40, ..Default::default() };
        let reply = model.chat(&[Message::user(q)], &ChatOptions::default(), &params, |_| true).unwrap().text;
        println!("{q} -> {reply}");
        if reply.trim() != a {
            wrong.push(format!("{q}: {reply:?}, trained on {a:?}"));
        }
    }
    wrong
}
