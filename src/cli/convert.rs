//! `mlxrun convert --gguf FILE --out DIR`: a GGUF model as an HF-layout folder
//! (safetensors, config, tokenizer) that mlx-lm and transformers load; `--keep-quantized`
//! keeps Q4_0/Q4_1/Q8_0 matrices packed as mlx-lm's quantized checkpoints are.
use std::path::Path;

use super::args::Args;
use super::parse_dtype;
use super::progress::Bar;
use crate::engine::convert::convert_gguf_with;
use crate::error::{Error, Result};
use crate::mlx::Dtype;

pub fn run(mut args: Args) -> Result<()> {
    let file = args.value("--gguf")?.ok_or_else(|| Error::invalid("convert needs --gguf FILE"))?;
    let out = args.value("--out")?.ok_or_else(|| Error::invalid("convert needs --out DIR"))?;
    let dtype = args.value("--dtype")?.map(|d| parse_dtype(&d)).transpose()?.unwrap_or(Dtype::F32);
    // Q4_0/Q4_1/Q8_0 matrices written packed (MLX affine, group size 32) instead of dequantized.
    let keep_quantized = args.switch("--keep-quantized");
    let json = args.switch("--json");
    args.finish()?;
    let mut bar = Bar::new("converting");
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
