//! llama.cpp's GGUF files: the project's own reader (`reader`), the GGML tensor types and
//! their dequantization (`quants`), and the mapping of a file's metadata and tensors onto
//! the HF configuration and names the families read (`arch`).
//!
//! A GGUF model loads through the same family code as an HF folder: the metadata becomes a
//! `config.json`-equivalent, the tensors become a `Weights` map under HF names, and the
//! family's loader takes it from there. Tensors are dequantized to f32 at load (on MLX's
//! CPU backend f32 matmuls are many times faster than its quantized ones) and then cast to
//! the compute dtype.
pub mod arch;
pub mod quants;
pub mod reader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use arch::Arch;
pub use quants::GgmlType;
pub use reader::{GgufFile, TensorInfo, Value};

use super::weights::Weights;
use crate::error::{Error, Result};
use crate::mlx::{Array, Dtype};

/// Whether `path` names a GGUF file: by its extension, or by its first four bytes.
pub fn is_gguf(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == b"GGUF"
}

/// The GGUF file a model path stands for: the path itself when it is a GGUF file, or the
/// only `*.gguf` file of a folder that has no `config.json` (an HF folder takes precedence).
/// `Ok(None)` when the path is neither.
pub fn find_model_file(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(if is_gguf(path) { Some(path.to_path_buf()) } else { None });
    }
    if !path.is_dir() || path.join("config.json").exists() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::Config(format!(
            "{} holds {} GGUF files ({}); name the one to load",
            path.display(),
            found.len(),
            found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Tensor `t` of `f` under its HF name, as f32 values and a row-major shape, with
/// llama.cpp's conversions undone. A tensor the architecture does not have is an error
/// naming it.
pub fn hf_tensor(f: &GgufFile, arch: &Arch, t: &TensorInfo) -> Result<(String, Vec<f32>, Vec<i32>)> {
    let name = arch::hf_name(arch, &t.name).ok_or_else(|| {
        f.err(format!(
            "tensor {} is not part of the {} architecture as supported (an unsupported variant?)",
            t.name, arch.name
        ))
    })?;
    let shape: Vec<i32> = t
        .shape()
        .iter()
        .map(|&d| i32::try_from(d).map_err(|_| f.err(format!("tensor {} has a dimension of {d}, too large", t.name))))
        .collect::<Result<_>>()?;
    let mut data = f.read_f32(t)?;
    if let Some(heads) = arch::permuted_heads(arch, &t.name) {
        let rows = shape[0] as usize;
        let cols = data.len() / rows.max(1);
        data = arch::unpermute_rows(&data, rows, cols, heads as usize).ok_or_else(|| {
            f.err(format!("tensor {} ({:?}) cannot be split into {heads} heads of rotary pairs", t.name, t.shape()))
        })?;
    }
    if arch.norm_plus_one && t.name.ends_with("norm.weight") {
        data.iter_mut().for_each(|x| *x -= 1.0);
    }
    Ok((name, data, shape))
}

/// The tensors of `f` as a `Weights` map (arrays in f32, converted to `dtype` as the
/// model takes them). Tensors are read one at a time, so the f32 copy of the whole model
/// exists only once, inside MLX.
pub fn weights(f: &GgufFile, arch: &Arch, dtype: Option<Dtype>) -> Result<Weights> {
    let mut map = BTreeMap::new();
    let tensors: Vec<&TensorInfo> = f.tensors.iter().filter(|t| !arch::is_config_tensor(&t.name)).collect();
    for (i, t) in tensors.iter().enumerate() {
        let (name, data, shape) = hf_tensor(f, arch, t)?;
        map.insert(name, Array::from_slice(&data, &shape)?);
        super::progress::report(i + 1, tensors.len(), "tensors");
    }
    Ok(Weights::from_map(&f.path, map, dtype))
}
