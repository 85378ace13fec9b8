//! `mlxrun convert --gguf FILE --out DIR`: a GGUF model as an HF-layout folder
//! (safetensors, config, tokenizer) that mlx-lm and transformers load; `--keep-quantized`
//! keeps Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K matrices packed as mlx-lm's quantized checkpoints
//! are.
use std::path::Path;

use clap::Args;

use super::dtype_arg;
use super::progress::Bar;
use crate::engine::convert::convert_gguf_with;
use crate::error::Result;
use crate::mlx::Dtype;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The GGUF file to convert
    #[arg(long, value_name = "FILE")]
    pub gguf: String,

    /// The folder to write (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: String,

    /// The dtype of the written floating-point tensors: float32, bfloat16 or float16 (or f32,
    /// fp16, bf16, ...)
    #[arg(long, value_name = "DTYPE", value_parser = dtype_arg, default_value = "float32")]
    pub dtype: Dtype,

    /// Write Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K matrices packed (MLX affine, group size 32; 5-bit types
    /// as 8-bit), as mlx-lm's quantized checkpoints are, instead of dequantized
    #[arg(long)]
    pub keep_quantized: bool,

    /// Print one JSON object instead of a summary on stderr
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let ConvertArgs { gguf: file, out, dtype, keep_quantized, json } = args;
    let bar = Bar::new("converting");
    let done =
        convert_gguf_with(Path::new(&file), Path::new(&out), dtype, keep_quantized, |i, n| bar.update(i, n, "tensors"))?;
    bar.clear();
    if json {
        let v = serde_json::json!({
            "out": done.dir.display().to_string(),
            "tensors": done.tensors,
            "dtype": done.dtype.name(),
            "files": done.files,
        });
        println!("{v}");
        return Ok(());
    }
    eprintln!(
        "wrote {} tensors ({}) and {} to {}",
        done.tensors,
        done.dtype,
        done.files.join(", "),
        done.dir.display()
    );
    Ok(())
}
