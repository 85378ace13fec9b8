//! Bad model folders get errors that name the problem (file, field, tensor, expected and
//! found), and the process — and models already loaded — carry on.
mod common;

use std::path::Path;

use common::bad_model::{assert_has, copy_fixture, edit_config, edit_tensor, load_err};
use mlxrun::engine::generate::forward_logits;
use mlxrun::mlx::Array;
use mlxrun::models::{load, LoadOptions};

#[test]
fn bad_model_folders_are_reported_and_other_models_keep_working() {
    // A good model loaded first must keep working through all the failures below.
    let good = load(&common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let before = forward_logits(good.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();

    assert_has(&load_err(Path::new("/nonexistent/model")), &["/nonexistent/model", "not a folder"]);

    let d = copy_fixture("qwen3", "noconfig");
    std::fs::remove_file(d.join("config.json")).unwrap();
    assert_has(&load_err(&d), &["config.json", "not found"]);

    let d = copy_fixture("qwen3", "badjson");
    std::fs::write(d.join("config.json"), "{ \"model_type\": ").unwrap();
    assert_has(&load_err(&d), &["config.json", "not valid JSON"]);
    // Through the engine (which reads the tokenizer too) it is still a config error.
    match mlxrun::engine::Model::load(&d, &LoadOptions::default()) {
        Err(mlxrun::Error::Config(m)) => assert_has(&m, &["config.json", "not valid JSON"]),
        Err(e) => panic!("a malformed config.json must be a config error, got {e:?}"),
        Ok(_) => panic!("a malformed config.json loaded"),
    }

    let d = copy_fixture("qwen3", "type");
    edit_config(&d, |v| v["model_type"] = "mamba9".into());
    assert_has(&load_err(&d), &["mamba9", "not supported", "qwen3"]);

    let d = copy_fixture("qwen3", "field");
    edit_config(&d, |v| v.as_object_mut().unwrap().remove("hidden_size").map(|_| ()).unwrap());
    assert_has(&load_err(&d), &["hidden_size", "missing"]);

    let d = copy_fixture("qwen3", "fieldtype");
    edit_config(&d, |v| v["num_attention_heads"] = "four".into());
    assert_has(&load_err(&d), &["num_attention_heads", "positive integer", "\"four\""]);

    let d = copy_fixture("qwen3", "rope");
    edit_config(&d, |v| v["rope_scaling"] = serde_json::json!({"rope_type": "su-perfect", "factor": 2.0}));
    assert_has(&load_err(&d), &["su-perfect", "not supported"]);

    let d = copy_fixture("qwen3", "noweights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    assert_has(&load_err(&d), &["no *.safetensors"]);

    let d = copy_fixture("qwen3", "missing");
    edit_tensor(&d, "model.layers.1.self_attn.k_norm.weight", None);
    assert_has(&load_err(&d), &["model.layers.1.self_attn.k_norm.weight", "missing"]);

    let d = copy_fixture("qwen3", "shape");
    edit_tensor(&d, "model.layers.0.mlp.up_proj.weight", Some(Array::zeros(&[100, 64], mlxrun::mlx::Dtype::F32).unwrap()));
    assert_has(&load_err(&d), &["model.layers.0.mlp.up_proj.weight", "[100, 64]", "[192, 64]"]);

    let d = copy_fixture("qwen3", "extra");
    edit_tensor(&d, "model.layers.0.self_attn.q_proj.bias", Some(Array::zeros(&[128], mlxrun::mlx::Dtype::F32).unwrap()));
    assert_has(&load_err(&d), &["model.layers.0.self_attn.q_proj.bias", "not used"]);

    let d = copy_fixture("qwen3", "truncated");
    let p = d.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    assert_has(&load_err(&d), &["model.safetensors", "truncated"]);

    let d = copy_fixture("qwen3", "header");
    let p = d.join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    b[12] = b'#'; // inside the JSON header
    std::fs::write(&p, &b).unwrap();
    assert_has(&load_err(&d), &["model.safetensors", "header"]);

    let d = copy_fixture("llama-linear", "shard");
    std::fs::remove_file(d.join("model-00002-of-00003.safetensors")).unwrap();
    assert_has(&load_err(&d), &["model-00002-of-00003.safetensors", "missing"]);

    // Zero-length weights file.
    let d = copy_fixture("qwen3", "empty");
    std::fs::write(d.join("model.safetensors"), b"").unwrap();
    assert_has(&load_err(&d), &["model.safetensors", "too short"]);

    let after = forward_logits(good.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(before, after, "the model loaded first still gives the same logits");
}
