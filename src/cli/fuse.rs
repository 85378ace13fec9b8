//! `mlxrun fuse --model M --adapter-path A --save-path OUT`: a LoRA adapter fused into its
//! base model's weights, written as a model folder (`mlx_lm.fuse`'s flags and output).
use std::path::Path;

use clap::Args;

use super::dtype_arg;
use crate::error::Result;
use crate::mlx::Dtype;
use crate::train::fuse::fuse;

#[derive(Args, Debug)]
pub struct FuseArgs {
    /// The base model: an HF-layout folder or a GGUF file
    #[arg(long, value_name = "PATH")]
    pub model: String,

    /// The adapter folder (adapters.safetensors + adapter_config.json)
    #[arg(long, value_name = "DIR", default_value = "adapters")]
    pub adapter_path: String,

    /// The folder to write (created if missing)
    #[arg(long, value_name = "DIR", default_value = "fused_model")]
    pub save_path: String,

    /// Write dense weights: a quantized base's matrices are unpacked and the config loses
    /// its quantization entry
    #[arg(long)]
    pub dequantize: bool,

    /// For a GGUF base: the dtype of the written floating-point tensors
    #[arg(long, value_name = "DTYPE", value_parser = dtype_arg, default_value = "float32")]
    pub dtype: Dtype,

    /// Print one JSON object instead of a summary on stderr
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: FuseArgs) -> Result<()> {
    let done = fuse(Path::new(&args.model), Path::new(&args.adapter_path), Path::new(&args.save_path), args.dequantize, args.dtype)?;
    if args.json {
        let v = serde_json::json!({
            "out": done.dir.display().to_string(),
            "fused": done.fused,
            "tensors": done.tensors,
            "quantized": done.quantized,
            "files": done.files,
        });
        println!("{v}");
        return Ok(());
    }
    eprintln!(
        "fused {} projection(s){} and wrote {} tensors and {} to {}",
        done.fused,
        if done.quantized { ", quantized again," } else { "" },
        done.tensors,
        done.files.join(", "),
        done.dir.display()
    );
    Ok(())
}
