//! Finding, validating and taking a model's tensors from its safetensors files.
//!
//! Files are checked by the `safetensors` crate before MLX reads them (`mlx::io`): a
//! truncated or corrupted file, or one whose tensors overlap, is reported with its name
//! (and the tensor, expected and found) instead of failing later inside a forward pass.
//! Tensors are taken by name with the shape the config implies; anything missing or
//! misshapen is an error naming the tensor, and tensors left over are reported
//! too (a checkpoint that does not match its config is refused, as mlx-lm refuses it).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::mlx::io;
pub(crate) use crate::mlx::io::HeaderTensor;
use crate::mlx::{Array, Dtype};
use super::quantization::{QuantLoad, QuantSummary};
use crate::nn::{Embedding, Linear, RmsNorm};

pub struct Weights {
    pub(super) dir: PathBuf,
    pub(super) tensors: BTreeMap<String, Array>,
    taken: BTreeSet<String>,
    /// Floating-point tensors are converted to this dtype as they are taken.
    pub dtype: Option<Dtype>,
    /// Which matrices are (or become) quantized and whether they stay packed.
    pub quant: QuantLoad,
    /// What the matrices taken so far hold (for `ModelInfo`).
    pub(super) quant_summary: QuantSummary,
    /// Stack each layer's projections once they are built (`LoadOptions::stack_projections`).
    pub stack_projections: bool,
    /// The group whose ranks share the model (tensor parallelism, see `shard`): each
    /// layer's projections are cut to this rank's slice as they are taken.
    pub group: Option<crate::mlx::distributed::Group>,
    /// Where each tensor of the folder's safetensors files lies on disk, so that a shard
    /// can read just its part (see `slice_read`); empty for weights from elsewhere.
    pub(super) sources: BTreeMap<String, super::slice_read::TensorSource>,
}

/// The safetensors files of a model folder: those an index names, else every
/// `*.safetensors` file in it.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::Io(format!("{}: {e}", index.display())))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Weights(format!("{} is not valid JSON: {e}", index.display())))?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::Weights(format!("{} has no \"weight_map\" object", index.display())))?;
        let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        let mut out = Vec::new();
        for f in files {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(Error::Weights(format!("{} names shard {f}, which is missing from {}", index.display(), dir.display())));
            }
            out.push(p);
        }
        return Ok(out);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Weights(format!("no *.safetensors weights in {}", dir.display())));
    }
    Ok(files)
}

/// Checks a safetensors file's header against its size with the `safetensors` crate:
/// dtypes, shapes and `data_offsets` (contiguous, non-overlapping, covering the data
/// exactly). See [`io::read_header`].
pub fn validate_safetensors(path: &Path) -> Result<()> {
    io::read_header(path).map(|_| ())
}

/// The tensors a safetensors file's header lists, validated as [`validate_safetensors`]
/// validates them; only the header is read, never the tensor data (model discovery counts
/// parameters this way).
pub(crate) fn read_safetensors_header(path: &Path) -> Result<Vec<HeaderTensor>> {
    io::read_header(path).map(|h| h.tensors)
}

impl Weights {
    /// Validates and opens every weight file of `dir` (tensors are read lazily).
    pub fn open(dir: &Path, dtype: Option<Dtype>) -> Result<Weights> {
        let mut tensors = BTreeMap::new();
        let files = weight_files(dir)?;
        for (i, file) in files.iter().enumerate() {
            let file = file.as_path();
            // Validated by the `safetensors` crate before MLX's loader takes it.
            let st = io::load_safetensors(&file)?;
            for (name, arr) in st.tensors {
                if tensors.insert(name.clone(), arr).is_some() {
                    return Err(Error::Weights(format!("tensor {name} appears in more than one file of {}", dir.display())));
                }
            }
            super::progress::report(i + 1, files.len(), "files");
        }
        let mut w = Weights::from_map(dir, tensors, dtype);
        for file in &files {
            w.sources.extend(super::slice_read::sources(file)?);
        }
        Ok(w)
    }

    /// Rows (`axis` 0) or columns (1) `start..start + n` of the dense matrix `name`, which
    /// must have `shape`, read from disk alone and converted to the compute dtype; `None`
    /// when that cannot be done here (a packed or to-be-quantized matrix, weights not from
    /// safetensors files, a shape that `take` must report): then the caller reads the whole.
    pub(super) fn take_dense_slice(&mut self, name: &str, shape: &[i32], axis: usize, start: i32, n: i32) -> Result<Option<Array>> {
        let prefix = name.strip_suffix(".weight").unwrap_or(name);
        if self.quant.quantize.is_some() || self.contains(&format!("{prefix}.scales")) {
            return Ok(None);
        }
        let Some(src) = self.sources.get(name).filter(|s| s.shape == shape && s.dtype.is_float()) else { return Ok(None) };
        let a = src.read_slice(axis, start, n)?;
        let a = match self.dtype {
            Some(d) if a.dtype() != d => a.astype(d)?,
            _ => a,
        };
        self.taken.insert(name.to_string());
        self.quant_summary.dense += 1;
        Ok(Some(a))
    }

    /// From tensors already in memory (tests, conversions).
    pub fn from_map(dir: &Path, tensors: BTreeMap<String, Array>, dtype: Option<Dtype>) -> Weights {
        Weights {
            dir: dir.to_path_buf(),
            tensors,
            taken: BTreeSet::new(),
            dtype,
            quant: QuantLoad::default(),
            stack_projections: false,
            group: None,
            sources: BTreeMap::new(),
            quant_summary: QuantSummary::default(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Takes tensor `name`, which must have `shape`; floating tensors are converted to the
    /// compute dtype.
    pub fn take(&mut self, name: &str, shape: &[i32]) -> Result<Array> {
        let a = self.take_stored(name, shape)?;
        match self.dtype {
            Some(d) if a.dtype().is_float() && a.dtype() != d => a.astype(d),
            _ => Ok(a),
        }
    }

    /// Takes tensor `name`, which must have `shape`, in the dtype the checkpoint stores.
    pub fn take_stored(&mut self, name: &str, shape: &[i32]) -> Result<Array> {
        let a = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("tensor {name} is missing from {}", self.dir.display())))?;
        if a.shape() != shape {
            return Err(Error::Weights(format!(
                "tensor {name} has shape {:?}, the config implies {shape:?}",
                a.shape()
            )));
        }
        let a = a.clone();
        self.taken.insert(name.to_string());
        Ok(a)
    }

    /// Takes `name` if the checkpoint has it.
    pub fn take_opt(&mut self, name: &str, shape: &[i32]) -> Result<Option<Array>> {
        if self.contains(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The linear layer `name.weight: [out, inp]` (dense, or packed with `name.scales`
    /// and `name.biases`), with `name.bias: [out]` if `bias`.
    pub fn linear(&mut self, name: &str, out: i32, inp: i32, bias: bool) -> Result<Linear> {
        let weight = self.matrix(name, out, inp)?;
        let bias = if bias { Some(self.take(&format!("{name}.bias"), &[out])?) } else { None };
        let mut linear = Linear { weight, bias, lora: None, transposed: None, parallel: Default::default() };
        linear.prepare()?;
        Ok(linear)
    }

    /// The linear layer `name` if the checkpoint has `name.weight`.
    pub fn linear_opt(&mut self, name: &str, out: i32, inp: i32, bias: bool) -> Result<Option<Linear>> {
        if self.contains(&format!("{name}.weight")) {
            self.linear(name, out, inp, bias).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The embedding table `name.weight: [vocab, hidden]` (dense or packed).
    pub fn embedding(&mut self, name: &str, vocab: i32, hidden: i32) -> Result<Embedding> {
        Embedding::prepared(self.matrix(name, vocab, hidden)?)
    }

    /// The RMS norm `name.weight: [dim]`.
    pub fn rms_norm(&mut self, name: &str, dim: i32, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: self.take(&format!("{name}.weight"), &[dim])?, eps })
    }

    /// Bytes the loaded weights will hold, from the tensors' headers alone (nothing is
    /// read): floating tensors in the compute dtype; packed matrices as stored when they
    /// stay packed, else unpacked to the compute dtype (their scales and biases then go).
    /// Quantizing at load is not counted, so for it this is an upper bound. Used to refuse
    /// a load the memory limit cannot hold before any weight is read.
    pub fn estimated_bytes(&self) -> usize {
        let float = |a: &Array| a.size() * self.dtype.unwrap_or(a.dtype()).size();
        let mut total = 0;
        for (name, a) in &self.tensors {
            let prefix = name.rsplit_once('.').map_or(name.as_str(), |(p, _)| p);
            let packed = self.tensors.contains_key(&format!("{prefix}.scales"));
            total += match (packed, self.quant.keep) {
                (true, true) => a.nbytes(),
                (true, false) if name.ends_with(".weight") => {
                    // One scale per group: the dense matrix has scales × group_size values.
                    let group = self.quant.config.as_ref().and_then(|c| c.for_layer(prefix)).map_or(64, |p| p.group_size);
                    let scales = &self.tensors[&format!("{prefix}.scales")];
                    scales.size() * group as usize * self.dtype.unwrap_or(scales.dtype()).size()
                }
                (true, false) => 0,
                (false, _) if a.dtype().is_float() => float(a),
                (false, _) => a.nbytes(),
            };
        }
        total
    }

    /// Drops the tensors already taken whose names start with `prefix`, so that the whole
    /// arrays can be freed once what was made from them is evaluated (a shard keeps only its
    /// slice). `finish` does not miss them: only untaken tensors are reported.
    pub(crate) fn release(&mut self, prefix: &str) {
        let taken = &self.taken;
        self.tensors.retain(|k, _| !(k.starts_with(prefix) && taken.contains(k)));
    }

    /// Marks tensors the model does not use (e.g. precomputed rotary tables) as consumed.
    pub fn discard(&mut self, pred: impl Fn(&str) -> bool) {
        let names: Vec<String> = self.tensors.keys().filter(|k| pred(k)).cloned().collect();
        self.taken.extend(names);
    }

    /// Fails when tensors were left unused: the checkpoint holds more than the config
    /// describes (a wrong config, or an architecture variant we do not implement).
    pub fn finish(self) -> Result<()> {
        let left: Vec<&String> = self.tensors.keys().filter(|k| !self.taken.contains(*k)).collect();
        if left.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = left.iter().take(5).map(|s| s.as_str()).collect();
        Err(Error::Weights(format!(
            "{} tensor(s) in {} are not used by the model as configured: {}{}",
            left.len(),
            self.dir.display(),
            shown.join(", "),
            if left.len() > 5 { ", …" } else { "" }
        )))
    }
}
