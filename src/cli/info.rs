//! `mlxrun info`: what a model is — architecture, sizes, dtype, tokenizer, chat templates,
//! and for a GGUF file its version and tensor types. `--json` for scripts.
use std::collections::BTreeMap;

use clap::Args;

use super::ModelArgs;
use crate::chat::DEFAULT_TEMPLATE;
use crate::error::Result;
use crate::models::gguf::{self, GgufFile};

#[derive(Args, Debug)]
#[command(mut_arg("model", |a| a.required(false).default_value("").hide_default_value(true)))]
pub struct InfoArgs {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,

    /// Describe the device instead (name, kind, memory, MLX's limits, whether GPU
    /// utilisation can be sampled): the one --device picks, else the default; with
    /// --model, the one the model loaded onto. (Not `--device`: that is the global option
    /// choosing the device.)
    #[arg(long)]
    pub device_info: bool,

    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let json = args.json;
    // --model is optional here only with --device-info (see `mut_arg` above): "" = absent.
    let model_args = args.model;
    if args.device_info {
        if !model_args.model.is_empty() {
            // The model's load sets the device it runs on: describe that one.
            model_args.load(&model_args.options()?)?;
        }
        return print_device(json);
    }
    if model_args.model.is_empty() {
        return Err(crate::error::Error::invalid("--model MODEL is required (or --device-info)"));
    }
    let path = model_args.model.clone();
    let load = model_args.options()?;

    let mut model = model_args.load(&load)?;
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

/// `mlxrun info --device`: the default device as MLX describes it, the limits in force, and
/// whether GPU utilisation is sampled during calls.
fn print_device(json: bool) -> Result<()> {
    let d = crate::mlx::device_info::DeviceInfo::current()?;
    let sampling = crate::engine::utilization::availability();
    if json {
        let props: serde_json::Map<String, serde_json::Value> = d
            .properties
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    crate::mlx::device_info::InfoValue::Text(t) => serde_json::json!(t),
                    crate::mlx::device_info::InfoValue::Number(n) => serde_json::json!(n),
                };
                (k.clone(), v)
            })
            .collect();
        let v = serde_json::json!({
            "device": if d.device.kind == crate::mlx::DeviceType::Cpu { "cpu" } else { "gpu" },
            "index": d.device.index,
            "kind": d.kind.name(),
            "name": d.name,
            "architecture": d.architecture,
            "memory_size": d.memory_size,
            "free_memory": d.free_memory,
            "max_recommended_working_set_size": d.max_recommended_working_set_size,
            "memory_limit": d.memory_limit,
            "cache_limit": d.cache_limit,
            "wired_limit": d.wired_limit,
            "gpu_utilization": match &sampling { Ok(()) => serde_json::json!({"available": true}), Err(why) => serde_json::json!({"available": false, "reason": why}) },
            "mlx": props,
        });
        println!("{v}");
        return Ok(());
    }
    let gib = |b: u64| match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
    };
    println!("{} ({}, {} {})", d.name, d.architecture, d.kind.name(), d.device.index);
    if let Some(m) = d.memory_size {
        println!("  memory: {}{}", gib(m), d.free_memory.map(|f| format!(", {} free", gib(f))).unwrap_or_default());
    }
    if let Some(w) = d.max_recommended_working_set_size {
        println!("  recommended working set: {}", gib(w));
    }
    println!("  MLX limits: memory {}, cache {}, wired {}", gib(d.memory_limit), gib(d.cache_limit), gib(d.wired_limit));
    match sampling {
        Ok(()) => println!("  GPU utilisation: sampled during calls (NVML)"),
        Err(why) => println!("  GPU utilisation: not available ({why})"),
    }
    Ok(())
}
