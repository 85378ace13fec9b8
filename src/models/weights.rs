//! Finding, validating and taking a model's tensors from its safetensors files.
//!
//! Files are checked before MLX maps them: a truncated or corrupted file is reported with
//! its name (and the tensor whose bytes are missing) instead of failing later inside a
//! forward pass. Tensors are taken by name with the shape the config implies; anything
//! missing or misshapen is an error naming the tensor, and tensors left over are reported
//! too (a checkpoint that does not match its config is refused, as mlx-lm refuses it).
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::mlx::{io, Array, Dtype};
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

fn dtype_size(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// Checks a safetensors file's header against its size: every tensor's byte range must
/// match its dtype and shape and lie inside the file.
pub fn validate_safetensors(path: &Path) -> Result<()> {
    read_safetensors_header(path).map(|_| ())
}

/// One tensor as a safetensors header describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeaderTensor {
    pub name: String,
    /// The safetensors dtype name (`F32`, `BF16`, `U32`, ...).
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// The tensors a safetensors file's header lists, checked as `validate_safetensors`
/// checks them; only the header is read, never the tensor data (model discovery counts
/// parameters this way).
pub(crate) fn read_safetensors_header(path: &Path) -> Result<Vec<HeaderTensor>> {
    let bad = |what: String| Error::Weights(format!("{}: {what}", path.display()));
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let size = f.metadata().map_err(|e| Error::Io(format!("{}: {e}", path.display())))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| bad(format!("only {size} bytes, too short for a safetensors header")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > size - 8 || header_len > 100 << 20 {
        return Err(bad(format!("header claims {header_len} bytes but the file holds {size} (truncated or not safetensors)")));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| bad(format!("reading header: {e}")))?;
    let json: Value = serde_json::from_slice(&header).map_err(|e| bad(format!("header is not valid JSON ({e})")))?;
    let obj = json.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_len = size - 8 - header_len;
    let mut tensors = Vec::with_capacity(obj.len());
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t.get("dtype").and_then(Value::as_str).unwrap_or("?");
        let item = dtype_size(dtype).ok_or_else(|| bad(format!("tensor {name} has unsupported dtype {dtype}")))?;
        let shape: Option<Vec<u64>> = t.get("shape").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect());
        let offs: Option<Vec<u64>> = t.get("data_offsets").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect());
        let (Some(shape), Some(offs)) = (shape, offs) else {
            return Err(bad(format!("tensor {name} lacks a valid shape or data_offsets")));
        };
        if offs.len() != 2 || offs[1] < offs[0] {
            return Err(bad(format!("tensor {name} has invalid data_offsets {offs:?}")));
        }
        let want = shape.iter().product::<u64>() * item;
        if offs[1] - offs[0] != want {
            return Err(bad(format!(
                "tensor {name} ({dtype} {shape:?}) needs {want} bytes but its offsets span {}",
                offs[1] - offs[0]
            )));
        }
        if offs[1] > data_len {
            return Err(bad(format!(
                "tensor {name} ends at data byte {} but the file holds only {data_len} data bytes (truncated?)",
                offs[1]
            )));
        }
        tensors.push(HeaderTensor { name: name.clone(), dtype: dtype.to_string(), shape });
    }
    Ok(tensors)
}

impl Weights {
    /// Validates and opens every weight file of `dir` (tensors are read lazily).
    pub fn open(dir: &Path, dtype: Option<Dtype>) -> Result<Weights> {
        let mut tensors = BTreeMap::new();
        let files = weight_files(dir)?;
        for (i, file) in files.iter().enumerate() {
            let file = file.as_path();
            validate_safetensors(file)?;
            let st = io::load_safetensors(&file)?;
            for (name, arr) in st.tensors {
                if tensors.insert(name.clone(), arr).is_some() {
                    return Err(Error::Weights(format!("tensor {name} appears in more than one file of {}", dir.display())));
                }
            }
            super::progress::report(i + 1, files.len(), "files");
        }
        Ok(Weights::from_map(dir, tensors, dtype))
    }

    /// From tensors already in memory (tests, conversions).
    pub fn from_map(dir: &Path, tensors: BTreeMap<String, Array>, dtype: Option<Dtype>) -> Weights {
        Weights {
            dir: dir.to_path_buf(),
            tensors,
            taken: BTreeSet::new(),
            dtype,
            quant: QuantLoad::default(),
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
        Ok(Linear { weight, bias, lora: None })
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
        Ok(Embedding { weight: self.matrix(name, vocab, hidden)? })
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
