//! `mlxrun convert --gguf FILE --out DIR`: a GGUF model as an HF-layout folder
//! (safetensors, config, tokenizer) that mlx-lm and transformers load; `--keep-quantized`
//! keeps Q4_0/Q4_1/Q8_0 matrices packed as mlx-lm's quantized checkpoints are.
use std::io::{IsTerminal, Write};
use std::path::Path;

use super::args::Args;
use super::parse_dtype;
use crate::engine::convert::convert_gguf_with;
use crate::error::{Error, Result};
use crate::mlx::Dtype;

pub fn run(mut args: Args) -> Result<()> {
    let file = args.value("--gguf")?.ok_or_else(|| Error::invalid("convert needs --gguf FILE"))?;
    let out = args.value("--out")?.ok_or_else(|| Error::invalid("convert needs --out DIR"))?;
    let dtype = args.value("--dtype")?.map(|d| parse_dtype(&d)).transpose()?.unwrap_or(Dtype::F32);
    // Q4_0/Q4_1/Q8_0 matrices written packed (MLX affine, group size 32) instead of dequantized.
    let keep_quantized = args.switch("--keep-quantized");
    args.finish()?;
    let bar = std::io::stderr().is_terminal();
    let done = convert_gguf_with(Path::new(&file), Path::new(&out), dtype, keep_quantized, |i, n| {
        if bar {
            let width = 30;
            let filled = i * width / n.max(1);
            eprint!("\rconverting [{}{}] {i}/{n} tensors", "#".repeat(filled), " ".repeat(width - filled));
            let _ = std::io::stderr().flush();
        }
    })?;
    if bar {
        eprintln!();
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
