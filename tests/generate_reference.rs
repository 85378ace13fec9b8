//! Greedy generation and logits against mlx-lm on the project's fixtures.
//!
//! scripts/reference_outputs.py ran mlx-lm (same MLX, same OpenBLAS) on each fixture and
//! recorded, per prompt: the prompt ids, 64 greedy tokens, the log-probabilities at steps
//! 0, 1, 16 and 63, and full-forward logits at several positions. Here the engine runs the
//! same prompts; tokens must be identical and values within the stated tolerances.
mod common;

fn check_fixture(name: &str) {
    common::reference::check_against_mlx_lm(
        name,
        &common::deps_file(&format!("refs/generate/{name}.safetensors")),
        &common::deps_file(&format!("fixtures/{name}")),
    );
}

#[test]
fn llama3_matches_mlx_lm() {
    check_fixture("llama3");
}

#[test]
fn llama_linear_sharded_bf16_matches_mlx_lm() {
    check_fixture("llama-linear");
}

#[test]
fn qwen3_matches_mlx_lm() {
    check_fixture("qwen3");
}

#[test]
fn qwen2_f16_biases_matches_mlx_lm() {
    check_fixture("qwen2");
}

#[test]
fn gemma3_sliding_window_bf16_matches_mlx_lm() {
    check_fixture("gemma3");
}

#[test]
fn gemma3_multimodal_text_softcap_bf16_matches_mlx_lm() {
    check_fixture("gemma3-mm");
}
