//! `mlxrun info`: what a model is — architecture, sizes, dtype, tokenizer, chat templates,
//! and for a GGUF file its version and tensor types. `--json` for scripts.
use std::collections::BTreeMap;

use clap::Args;

use super::ModelArgs;
use crate::chat::DEFAULT_TEMPLATE;
use crate::error::Result;
use crate::models::gguf::{self, GgufFile};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let path = args.model.model.clone();
    let load = args.model.options()?;
    let json = args.json;

    let mut model = args.model.load(&load)?;
    let info = model.info().clone();
    let tok = model.tokenizer().clone();
    let template = model.chat_template(None).map(|t| t.origin().to_string());
    let mut v = serde_json::json!({
        "path": model.dir().display().to_string(),
        "model_type": info.model_type,
        "vocab_size": info.vocab_size,
        "hidden_size": info.hidden_size,
        "num_layers": info.num_layers,
        "num_heads": info.num_heads,
        "num_kv_heads": info.num_kv_heads,
        "head_dim": info.head_dim,
        "max_position_embeddings": info.max_position_embeddings,
        "tied_embeddings": info.tied_embeddings,
        "dtype": info.dtype.name(),
        "quantization": info.quantization.as_ref().map(|q| serde_json::json!({
            "bits": q.params.bits,
            "group_size": q.params.group_size,
            "mode": q.params.mode.name(),
            "quantized_layers": q.quantized_layers,
            "dense_layers": q.dense_layers,
            "kept_quantized": q.kept,
        })),
        "tokenizer": {
            "vocab_size": tok.vocab_size(),
            "bos_token": tok.bos_token(),
            "eos_token": tok.eos_token(),
            "eos_token_ids": tok.eos_token_ids(),
            "adds_bos": tok.adds_bos(),
        },
        "chat_template": template.as_ref().ok(),
    });
    if let Some(file) = gguf::find_model_file(std::path::Path::new(&path))? {
        let g = GgufFile::open(&file)?;
        let mut types: BTreeMap<String, usize> = BTreeMap::new();
        for t in &g.tensors {
            *types.entry(t.ty.name()).or_default() += 1;
        }
        let name = g.get("general.name").and_then(|v| v.as_str()).map(str::to_string);
        v["gguf"] = serde_json::json!({
            "version": g.version,
            "architecture": g.architecture()?,
            "name": name,
            "tensors": g.tensors.len(),
            "tensor_types": types,
            "metadata_keys": g.metadata.len(),
        });
    }
    if json {
        println!("{v}");
        return Ok(());
    }
    println!("{}", model.dir().display());
    if let Some(g) = v.get("gguf") {
        println!(
            "  format: GGUF v{} ({}), {} tensors: {}",
            g["version"],
            g["architecture"].as_str().unwrap_or("?"),
            g["tensors"],
            g["tensor_types"]
                .as_object()
                .map(|o| o.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
        if let Some(n) = g["name"].as_str() {
            println!("  name: {n}");
        }
    }
    println!("  model type: {}, computed in {}", info.model_type, info.dtype);
    println!(
        "  {} layers, hidden {}, {} heads ({} key/value) of {}, vocabulary {}{}",
        info.num_layers,
        info.hidden_size,
        info.num_heads,
        info.num_kv_heads,
        info.head_dim,
        info.vocab_size,
        if info.tied_embeddings { ", tied embeddings" } else { "" }
    );
    if let Some(n) = info.max_position_embeddings {
        println!("  context: {n} positions");
    }
    if let Some(q) = &info.quantization {
        println!(
            "  quantized: {} ({} matrices, {} dense){}",
            q.params,
            q.quantized_layers,
            q.dense_layers,
            if q.kept { "" } else { ", unpacked at load" }
        );
    }
    println!(
        "  tokenizer: {} tokens, BOS {:?}{}, EOS ids {:?}",
        tok.vocab_size(),
        tok.bos_token().unwrap_or("none"),
        if tok.adds_bos() { " (added)" } else { "" },
        tok.eos_token_ids()
    );
    match template {
        Ok(origin) => println!("  chat template ({DEFAULT_TEMPLATE}): {origin}"),
        Err(e) => println!("  chat template: none ({e})"),
    }
    Ok(())
}
