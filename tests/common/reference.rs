//! Comparing the engine's greedy generation and logits with what mlx-lm recorded.
use std::path::Path;

use mlxrun::engine::generate::{forward_logits, generate_tokens};
use mlxrun::engine::SamplerParams;
use mlxrun::mlx::{io, Array, Dtype};
use mlxrun::models::{load, LanguageModel, LoadOptions};
use serde_json::Value;

/// Tolerances on logits / log-probs. f32 is computed with the same ops in the same order
/// as the reference, so agreement is at rounding level; half precision gets its ulp.
pub fn tolerance(dtype: Dtype) -> f32 {
    match dtype {
        Dtype::F32 => 1e-4,
        Dtype::F16 => 2e-2,
        _ => 1.25e-1,
    }
}

const TOP: usize = 16;

fn ints(a: &Array) -> Vec<u32> {
    a.astype(Dtype::I32).unwrap().to_vec::<i32>().unwrap().into_iter().map(|v| v as u32).collect()
}

/// Runs every case scripts/reference_outputs.py recorded in `refs` on the model at `dir`
/// (a folder or a GGUF file): greedy tokens must be identical, log-probabilities and
/// logits within the tolerances above.
pub fn check_against_mlx_lm(name: &str, refs: &Path, dir: &Path) {
    check_against_mlx_lm_with(name, refs, dir, &|dtype| LoadOptions::with_dtype(Some(dtype)), &|_| true, 10);
}

/// As `check_against_mlx_lm`, loading the model with `opts(compute dtype)`, on the cases
/// `select` keeps (at least `min_cases` of them).
pub fn check_against_mlx_lm_with(
    name: &str,
    refs: &Path,
    dir: &Path,
    opts: &dyn Fn(Dtype) -> LoadOptions,
    select: &dyn Fn(&Value) -> bool,
    min_cases: usize,
) {
    let refs = io::load_safetensors(refs).unwrap();
    let cases: Value = serde_json::from_str(&refs.metadata["cases"]).unwrap();
    let mut models: Vec<(String, Box<dyn LanguageModel>)> = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases.as_array().unwrap().iter().filter(|c| select(c)) {
        let id = case["id"].as_str().unwrap();
        let dtype = Dtype::from_name(case["compute_dtype"].as_str().unwrap()).unwrap();
        let key = dtype.name().to_string();
        if !models.iter().any(|(k, _)| *k == key) {
            models.push((key.clone(), load(dir, &opts(dtype)).unwrap()));
        }
        let model = &models.iter().find(|(k, _)| *k == key).unwrap().1;
        let t = |s: &str| refs.tensors[&format!("{id}/{s}")].try_clone().unwrap();
        let prompt = ints(&t("prompt_ids"));
        let want = ints(&t("generated_ids"));
        let step_lp = t("step_logprobs").to_vec::<f32>().unwrap();
        let margins = t("margins").to_vec::<f32>().unwrap();
        let vocab = model.info().vocab_size as usize;
        let steps: Vec<usize> =
            case["logprob_steps"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let tol = tolerance(dtype);

        // Greedy 64 tokens, with log-probs of the top entries at every step.
        let params = SamplerParams { logprobs: true, top_logprobs: TOP, ..SamplerParams::default() };
        let mut got = Vec::new();
        let mut tops = Vec::new();
        let mut caches = model.new_caches();
        generate_tokens(
            model.as_ref(),
            &mut caches,
            &prompt,
            want.len(),
            &params,
            case["prefill_step_size"].as_u64().unwrap() as usize,
            None,
            &mut |t| {
                got.push(t.token);
                tops.push(t.top_logprobs.clone());
                Ok(true)
            },
        )
        .unwrap();
        checked += 1;
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            failures.push(format!(
                "{name} {id}: token {i} differs: ours {:?}, mlx-lm {:?} (reference top-1 margin there {})",
                got.get(i),
                want.get(i),
                margins.get(i).copied().unwrap_or(f32::NAN)
            ));
            continue;
        }
        for (row, &s) in steps.iter().enumerate() {
            let reference = &step_lp[row * vocab..(row + 1) * vocab];
            for &(tok, lp) in &tops[s] {
                let r = reference[tok as usize];
                if (lp - r).abs() > tol {
                    failures.push(format!(
                        "{name} {id}: step {s} log-prob of token {tok}: ours {lp}, mlx-lm {r} (tol {tol})"
                    ));
                }
            }
            let ref_max = reference.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            if (tops[s][0].1 - ref_max).abs() > tol {
                failures.push(format!("{name} {id}: step {s} top log-prob {} vs mlx-lm {ref_max}", tops[s][0].1));
            }
        }

        // Full forward pass over the prompt: logits at the recorded positions.
        let logits = forward_logits(model.as_ref(), &prompt).unwrap().to_vec::<f32>().unwrap();
        let fwd = t("forward_logits").to_vec::<f32>().unwrap();
        for (row, pos) in case["forward_positions"].as_array().unwrap().iter().enumerate() {
            let pos = pos.as_u64().unwrap() as usize;
            let ours = &logits[pos * vocab..(pos + 1) * vocab];
            let theirs = &fwd[row * vocab..(row + 1) * vocab];
            let worst = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            if worst > tol {
                failures.push(format!("{name} {id}: forward logits at position {pos} differ by {worst} (tol {tol})"));
            }
        }
    }
    assert!(checked >= min_cases, "{name}: only {checked} cases");
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
