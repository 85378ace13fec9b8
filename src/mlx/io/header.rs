//! A safetensors file's header, read and validated by the `safetensors` crate (Hugging
//! Face's implementation of the format) before MLX is given the file.
//!
//! What is checked, and by whom:
//! - the 8-byte header length: at most [`MAX_HEADER_LEN`] and inside the file (here, before
//!   a byte of the header is read or allocated, so a length of 2^62 costs nothing);
//! - the header is UTF-8 and a JSON object (here, to say which);
//! - every tensor's dtype is one the format knows, its `shape` and `data_offsets` are well
//!   formed, the offsets are contiguous and non-overlapping from data byte 0, and each
//!   tensor's byte count is what its dtype and shape need (the crate: `Metadata`'s
//!   deserialization runs the same `validate` as `SafeTensors::read_metadata`);
//! - the offsets cover the data section exactly, no byte short and no byte over (here: the
//!   one check `read_metadata` makes against its buffer, made against the file's length so
//!   that the file is neither read whole nor mapped);
//! - every dtype is one MLX's loader reads into a dtype this crate has (here).
//!
//! The crate's errors say *what* is wrong (`invalid offset for tensor "b"`) but not by how
//! much; when it refuses a header, [`explain`] walks the tensors in the crate's order and
//! says which tensor, what was expected and what was found. The crate's verdict decides;
//! the explanation only words it.
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype as StDtype;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::mlx::Dtype;

/// The longest JSON header accepted, in bytes. The `safetensors` crate allows up to
/// 100,000,000 (its `MAX_HEADER_SIZE`) and MLX's loader refuses 100,000,000 and more, so
/// the tighter of the two applies: a header both will read.
pub const MAX_HEADER_LEN: u64 = 100_000_000 - 1;

/// One tensor as a safetensors header describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderTensor {
    pub name: String,
    /// The safetensors dtype name (`F32`, `BF16`, `U32`, ...).
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Byte range in the data section (after the header).
    pub data_offsets: (u64, u64),
}

/// A validated header: the tensors in data order and the `__metadata__` strings.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub tensors: Vec<HeaderTensor>,
    pub metadata: BTreeMap<String, String>,
    /// Bytes of the JSON header (after the 8-byte length).
    pub header_len: u64,
}

/// The MLX dtype a safetensors dtype is loaded as, for those MLX's loader reads (its
/// `dtype_from_safetensor_str`) and this crate has a dtype for. MLX reads the two 8-bit
/// float formats as raw `uint8` bytes; its `C64` has no `Dtype` here.
pub fn mlx_dtype(dtype: StDtype) -> Option<Dtype> {
    Some(match dtype {
        StDtype::BOOL => Dtype::Bool,
        StDtype::U8 | StDtype::F8_E4M3 | StDtype::F8_E8M0 => Dtype::U8,
        StDtype::I8 => Dtype::I8,
        StDtype::U16 => Dtype::U16,
        StDtype::I16 => Dtype::I16,
        StDtype::U32 => Dtype::U32,
        StDtype::I32 => Dtype::I32,
        StDtype::U64 => Dtype::U64,
        StDtype::I64 => Dtype::I64,
        StDtype::F16 => Dtype::F16,
        StDtype::BF16 => Dtype::Bf16,
        StDtype::F32 => Dtype::F32,
        _ => return None,
    })
}

const MLX_DTYPES: &str = "BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F8_E4M3, F8_E8M0";

/// Reads and validates the header of the safetensors file `path`. Only the 8-byte length
/// and the header are read, never the tensor data. A missing or unreadable file is
/// `Error::Io`; everything wrong with its contents is `Error::Weights` naming the file
/// (and the tensor, with expected and found values, where there is one).
pub fn read_header(path: &Path) -> Result<Header> {
    let bad = |what: String| Error::Weights(format!("{}: {what}", path.display()));
    let io_err = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(io_err)?;
    let size = f.metadata().map_err(io_err)?.len();
    let mut len = [0u8; 8];
    if size < 8 {
        return Err(bad(format!(
            "only {size} bytes, too short for a safetensors header (an 8-byte length, then the JSON header)"
        )));
    }
    f.read_exact(&mut len).map_err(io_err)?;
    let n = u64::from_le_bytes(len);
    if n == 0 {
        return Err(bad("header length is 0: not a safetensors file".into()));
    }
    if n > MAX_HEADER_LEN {
        return Err(bad(format!(
            "header claims {n} bytes, over the limit of {MAX_HEADER_LEN} that the safetensors format \
             and MLX's loader allow (corrupt, or not safetensors)"
        )));
    }
    if n > size - 8 {
        return Err(bad(format!(
            "header claims {n} bytes but the file holds only {} after the length (truncated, or not safetensors)",
            size - 8
        )));
    }
    let mut raw = vec![0u8; n as usize];
    f.read_exact(&mut raw).map_err(io_err)?;
    let text = std::str::from_utf8(&raw).map_err(|e| {
        bad(format!("header is not UTF-8 text (invalid byte at header offset {})", e.valid_up_to()))
    })?;
    let json: Value = serde_json::from_str(text).map_err(|e| bad(format!("header is not valid JSON ({e})")))?;
    let Value::Object(obj) = &json else {
        return Err(bad(format!("header is not a JSON object but {}", json_kind(&json))));
    };

    // The crate's verdict on dtypes, shapes and offsets.
    let metadata: Metadata = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            let why = explain(obj).unwrap_or_default();
            return Err(bad(format!("{why}{}(safetensors: {e})", if why.is_empty() { "" } else { " " })));
        }
    };
    // `read_metadata`'s last check: the data section is exactly what the tensors cover.
    let data_len = size - 8 - n;
    let end = metadata.data_len() as u64;
    let last = metadata.offset_keys().pop().unwrap_or_default();
    if end > data_len {
        return Err(bad(format!(
            "tensor {last} ends at data byte {end} but the file holds only {data_len} data bytes after its header (truncated?)"
        )));
    }
    if end < data_len {
        return Err(bad(format!(
            "the file holds {data_len} data bytes after its header but its tensors cover only {end}: \
             {} trailing bytes belong to no tensor",
            data_len - end
        )));
    }

    let infos = metadata.tensors();
    let mut tensors = Vec::with_capacity(infos.len());
    for name in metadata.offset_keys() {
        let info = infos[&name];
        if mlx_dtype(info.dtype).is_none() {
            return Err(bad(format!(
                "tensor {name} has dtype {}, which MLX's loader does not read (it reads {MLX_DTYPES})",
                info.dtype
            )));
        }
        tensors.push(HeaderTensor {
            dtype: info.dtype.to_string(),
            shape: info.shape.iter().map(|&d| d as u64).collect(),
            data_offsets: (info.data_offsets.0 as u64, info.data_offsets.1 as u64),
            name,
        });
    }
    let metadata = metadata.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok(Header { tensors, metadata, header_len: n })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Says which entry of a header the crate refused and why, with expected and found
/// values: it walks the tensors as the crate's `Metadata::validate` does (sorted by
/// `data_offsets`, each starting where the one before ended, each spanning what its dtype
/// and shape need). `None` when it finds nothing to add to the crate's own message.
fn explain(obj: &serde_json::Map<String, Value>) -> Option<String> {
    let mut tensors: Vec<(&str, TensorInfo)> = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            if serde_json::from_value::<HashMap<String, String>>(v.clone()).is_err() {
                return Some(format!("__metadata__ must map strings to strings, found {v}"));
            }
            continue;
        }
        match serde_json::from_value::<TensorInfo>(v.clone()) {
            Ok(info) => tensors.push((name, info)),
            Err(e) => return Some(explain_entry(name, v, &e)),
        }
    }
    tensors.sort_by_key(|(_, t)| t.data_offsets);
    let mut prev: Option<(&str, (usize, usize))> = None;
    for (name, t) in &tensors {
        let (s, e) = t.data_offsets;
        if e < s {
            return Some(format!("tensor {name} has data_offsets [{s}, {e}]: its end comes before its start"));
        }
        match prev {
            Some((p, (ps, pe))) if s < pe => {
                return Some(format!(
                    "tensor {name} (data_offsets [{s}, {e}]) overlaps tensor {p} ([{ps}, {pe}]): \
                     each tensor must have bytes of its own, starting where the one before it ends"
                ))
            }
            Some((p, (_, pe))) if s > pe => {
                return Some(format!(
                    "a gap of {} bytes between tensor {p} (ends at data byte {pe}) and tensor {name} \
                     (starts at {s}): data_offsets must be contiguous",
                    s - pe
                ))
            }
            None if s != 0 => {
                return Some(format!(
                    "the first tensor, {name}, starts at data byte {s}, not 0: data_offsets must cover the data from its start"
                ))
            }
            _ => {}
        }
        let bits = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).and_then(|n| n.checked_mul(t.dtype.bitsize()));
        let Some(bits) = bits else {
            return Some(format!("tensor {name}'s shape {:?} of {} overflows the byte count", t.shape, t.dtype));
        };
        if bits % 8 != 0 {
            return Some(format!("tensor {name} ({} {:?}) is not a whole number of bytes ({bits} bits)", t.dtype, t.shape));
        }
        if e - s != bits / 8 {
            return Some(format!(
                "tensor {name} ({} {:?}) needs {} bytes but its data_offsets [{s}, {e}] span {}",
                t.dtype,
                t.shape,
                bits / 8,
                e - s
            ));
        }
        prev = Some((name, (s, e)));
    }
    None
}

/// One tensor entry the crate could not read: an unknown dtype is named as such (the
/// crate's message, appended, lists the known ones), anything else (a missing field, a
/// field of the wrong type) with serde's words.
fn explain_entry(name: &str, v: &Value, e: &serde_json::Error) -> String {
    if let Some(d) = v.get("dtype") {
        if serde_json::from_value::<StDtype>(d.clone()).is_err() {
            return format!("tensor {name} has unknown dtype {d}");
        }
    }
    format!("tensor {name}: {e} in {v}")
}
