//! llama.cpp's GGUF files: the project's own reader (`reader`), the GGML tensor types and
//! their dequantization (`quants`), and the mapping of a file's metadata and tensors onto
//! the HF configuration and names the families read (`arch`).
//!
//! A GGUF model loads through the same family code as an HF folder: the metadata becomes a
//! `config.json`-equivalent, the tensors become a `Weights` map under HF names, and the
//! family's loader takes it from there. Tensors are dequantized to f32 at load (on MLX's
//! CPU backend f32 matmuls are many times faster than its quantized ones) and then cast to
//! the compute dtype — unless the caller keeps quantized weights packed: then Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0, Q4_K and Q5_K matrices become MLX affine-quantized ones (`packed`: 4
//! or 8 bits), described by a `quantization` config as mlx-lm's checkpoints are (a file that mixes them with other
//! types, as the `_K_M` mixes do, gets per-layer entries: `false` for the dense matrices).
pub mod arch;
pub mod packed;
pub mod quants;
pub mod reader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use arch::Arch;
pub use quants::GgmlType;
pub use reader::{GgufFile, TensorInfo, Value};

use super::quantization::QuantConfig;
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::mlx::quant::{QuantMode, QuantParams};
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
    let (name, shape) = hf_name_and_shape(f, arch, t)?;
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

/// Tensor `t`'s HF name and row-major shape; a tensor the architecture does not have is an
/// error naming it.
fn hf_name_and_shape(f: &GgufFile, arch: &Arch, t: &TensorInfo) -> Result<(String, Vec<i32>)> {
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
    Ok((name, shape))
}

/// A matrix `t` of a type `packed` keeps (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K) as MLX's `P.weight`,
/// `P.scales`, `P.biases`, with llama.cpp's q/k row permutation undone; `None` for a tensor
/// of another type or shape.
fn packed_tensor(f: &GgufFile, arch: &Arch, t: &TensorInfo) -> Result<Option<(i32, Vec<(String, Array)>)>> {
    let Some(bits) = packed::packed_bits(t.ty) else { return Ok(None) };
    let (name, shape) = hf_name_and_shape(f, arch, t)?;
    let Some(prefix) = name.strip_suffix(".weight").filter(|_| shape.len() == 2) else { return Ok(None) };
    let (rows, cols) = (shape[0], shape[1]);
    let p = packed::repack(t.ty, &f.read_bytes(t)?)
        .ok_or_else(|| f.err(format!("tensor {} of type {} cannot be repacked", t.name, t.ty.name())))?;
    let g = cols / packed::GROUP_SIZE as i32;
    // Every scale and bias is exact in `scale_dtype`: the cast loses nothing.
    let group_params = |v: &[f32]| Array::from_slice(v, &[rows, g])?.astype(p.scale_dtype);
    let mut parts = vec![Array::from_slice(&p.weight, &[rows, cols * bits / 32])?, group_params(&p.scales)?, group_params(&p.biases)?];
    if let Some(heads) = arch::permuted_heads(arch, &t.name) {
        // The permutation moves whole rows: find it by permuting the row numbers.
        let ids: Vec<f32> = (0..rows).map(|i| i as f32).collect();
        let order = arch::unpermute_rows(&ids, rows as usize, 1, heads as usize).ok_or_else(|| {
            f.err(format!("tensor {} ({:?}) cannot be split into {heads} heads of rotary pairs", t.name, t.shape()))
        })?;
        let order: Vec<i32> = order.into_iter().map(|i| i as i32).collect();
        let order = Array::from_slice(&order, &[rows])?;
        parts = parts.iter().map(|a| a.take(&order, 0)).collect::<Result<_>>()?;
    }
    let names = ["weight", "scales", "biases"].map(|k| format!("{prefix}.{k}"));
    Ok(Some((bits, names.into_iter().zip(parts).collect())))
}

/// The tensors of `f` under HF names. Dense ones in f32 (dequantized); with `keep_packed`,
/// Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K matrices packed, and the `quantization` config that describes
/// them (group size 32, the most common bits as the default, per-layer entries for matrices
/// of other bits and `false` for matrices left dense). `progress` gets (done, total).
pub fn read_tensors(
    f: &GgufFile,
    arch: &Arch,
    keep_packed: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<(String, Array)>, Option<QuantConfig>)> {
    // Tensors that configure rather than hold weights (rope_freqs) are read with the config.
    let tensors: Vec<&TensorInfo> = f.tensors.iter().filter(|t| !arch::is_config_tensor(&t.name)).collect();
    let mut out = Vec::with_capacity(tensors.len());
    let (mut packed_bits, mut dense) = (BTreeMap::new(), Vec::new());
    for (i, &t) in tensors.iter().enumerate() {
        match if keep_packed { packed_tensor(f, arch, t)? } else { None } {
            Some((bits, parts)) => {
                let prefix = parts[0].0.trim_end_matches(".weight").to_string();
                packed_bits.insert(prefix, bits);
                out.extend(parts);
            }
            None => {
                let (name, data, shape) = hf_tensor(f, arch, t)?;
                if shape.len() == 2 {
                    dense.push(name.trim_end_matches(".weight").to_string());
                }
                out.push((name, Array::from_slice(&data, &shape)?));
            }
        }
        progress(i + 1, tensors.len());
    }
    let params = |bits| QuantParams { group_size: packed::GROUP_SIZE as i32, bits, mode: QuantMode::Affine };
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    packed_bits.values().for_each(|b| *counts.entry(*b).or_default() += 1);
    let Some((&default_bits, _)) = counts.iter().max_by_key(|(_, n)| **n) else { return Ok((out, None)) };
    let mut layers: BTreeMap<String, Option<QuantParams>> = BTreeMap::new();
    for (prefix, bits) in packed_bits.into_iter().filter(|(_, b)| *b != default_bits) {
        layers.insert(prefix, Some(params(bits)));
    }
    layers.extend(dense.into_iter().map(|p| (p, None)));
    Ok((out, Some(QuantConfig { default: params(default_bits), layers })))
}

/// Bytes the model's weights will hold once loaded from `f`, from its tensor table alone:
/// matrices that stay packed (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K with `keep_packed`) at their bits
/// plus a 4-byte scale and bias per group, everything else dequantized into `dtype`.
pub fn estimated_bytes(f: &GgufFile, dtype: Dtype, keep_packed: bool) -> usize {
    let mut total = 0u64;
    for t in f.tensors.iter().filter(|t| !arch::is_config_tensor(&t.name)) {
        let n: u64 = t.dims.iter().product();
        total += match packed::packed_bits(t.ty).filter(|_| keep_packed && t.dims.len() == 2) {
            Some(bits) => n * bits as u64 / 8 + n / packed::GROUP_SIZE as u64 * 8,
            None => n * dtype.size() as u64,
        };
    }
    total as usize
}

/// The tensors of `f` as a `Weights` map (dense arrays in f32, converted to `dtype` as the
/// model takes them; with `keep_packed`, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K matrices packed).
/// Tensors are read one at a time, so the f32 copy of the whole model exists only once, inside MLX.
pub fn weights(f: &GgufFile, arch: &Arch, dtype: Option<Dtype>, keep_packed: bool) -> Result<Weights> {
    let (tensors, config) = read_tensors(f, arch, keep_packed, &mut |i, n| super::progress::report(i, n, "tensors"))?;
    let mut w = Weights::from_map(&f.path, tensors.into_iter().collect(), dtype);
    w.quant.config = config;
    w.quant.keep = keep_packed;
    Ok(w)
}
