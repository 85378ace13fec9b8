//! safetensors: the header check the loader runs before MLX maps a file
//! (`validate_safetensors`), and model discovery, which reads the same header to count a
//! folder's parameters and find its dtype. The input is the whole file.
use std::sync::OnceLock;

use mlxrun::engine::backend::MlxLmOptions;
use mlxrun::models::weights::validate_safetensors;
use mlxrun::{discover, DiscoverOptions};

/// A folder holding a fixed Llama config.json and, per input, model.safetensors.
fn folder() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = super::scratch_dir("safetensors");
        let config = r#"{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16,
            "vocab_size": 4, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16"}"#;
        super::write(&dir, "config.json", config.as_bytes());
        dir
    })
}

/// Loads what the target reads before the first input.
pub fn init() {
    folder();
}

pub fn run(data: &[u8]) {
    let dir = folder();
    let path = super::write(dir, "model.safetensors", data);
    let valid = validate_safetensors(&path).is_ok();
    // Discovery on every input, valid or not: it must report a broken file, not fail.
    // Its mlx_lm verdict asks a Python that does not exist (an instant, cached answer).
    let opts = DiscoverOptions {
        max_depth: 0,
        mlx_lm: MlxLmOptions { python: Some("/nonexistent/mlxrun-fuzz-python".into()), ..MlxLmOptions::default() },
    };
    let found = discover(dir, &opts).expect("discover failed on a folder that exists");
    assert_eq!(found.len(), 1, "the folder is one model");
    if !valid {
        assert!(found[0].error.is_some(), "discovery accepted a safetensors file that validation refused");
    }
}
