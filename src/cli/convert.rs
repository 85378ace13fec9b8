//! `mlxrun convert --gguf FILE --out DIR`: a GGUF model as an HF-layout folder
//! (safetensors, config, tokenizer) that mlx-lm and transformers load.
use std::path::Path;

use super::args::Args;
use super::parse_dtype;
use super::progress::Bar;
use crate::engine::convert::convert_gguf;
use crate::error::{Error, Result};
use crate::mlx::Dtype;

pub fn run(mut args: Args) -> Result<()> {
    let file = args.value("--gguf")?.ok_or_else(|| Error::invalid("convert needs --gguf FILE"))?;
    let out = args.value("--out")?.ok_or_else(|| Error::invalid("convert needs --out DIR"))?;
    let dtype = args.value("--dtype")?.map(|d| parse_dtype(&d)).transpose()?.unwrap_or(Dtype::F32);
    let json = args.switch("--json");
    args.finish()?;
    let mut bar = Bar::new("converting");
    let done = convert_gguf(Path::new(&file), Path::new(&out), dtype, |i, n| bar.update(i, n, "tensors"))?;
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
