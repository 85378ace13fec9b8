//! The GGUF container: header, metadata, tensor table, alignment and data offsets.
//!
//! Layout (little-endian, versions 2 and 3): the magic `GGUF`, a u32 version, u64 tensor and
//! metadata counts; the metadata as (string key, u32 value type, value) records; the tensor
//! table as (string name, u32 dimension count, u64 dimensions innermost first, u32 GGML
//! type, u64 offset); padding to `general.alignment` (32 by default); then the tensor data,
//! each tensor at its offset from there. Strings are a u64 byte length and UTF-8 bytes.
//!
//! Everything is checked against the file before anything is allocated from a count the
//! file gives: a truncated or corrupted file is an error naming the file, and the tensor or
//! key where it goes wrong, never a huge allocation or a panic.
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::quants::GgmlType;
use crate::error::{Error, Result};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// An array of values of one type (possibly arrays themselves).
    Array(Vec<Value>),
}

impl Value {
    /// The value as an integer, whatever its integer type (and a bool as 0/1, which some
    /// writers use for flags).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::U8(v) => v as i64,
            Value::I8(v) => v as i64,
            Value::U16(v) => v as i64,
            Value::I16(v) => v as i64,
            Value::U32(v) => v as i64,
            Value::I32(v) => v as i64,
            Value::U64(v) => i64::try_from(v).ok()?,
            Value::I64(v) => v,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF name of the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "uint8",
            Value::I8(_) => "int8",
            Value::U16(_) => "uint16",
            Value::I16(_) => "int16",
            Value::U32(_) => "uint32",
            Value::I32(_) => "int32",
            Value::F32(_) => "float32",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::U64(_) => "uint64",
            Value::I64(_) => "int64",
            Value::F64(_) => "float64",
            Value::Array(_) => "array",
        }
    }

    /// A JSON rendering (for `mlxrun info --json` and tests).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::F32(v) => serde_json::Number::from_f64(*v as f64).map_or(J::Null, J::Number),
            Value::F64(v) => serde_json::Number::from_f64(*v).map_or(J::Null, J::Number),
            Value::Bool(b) => J::Bool(*b),
            Value::Str(s) => J::String(s.clone()),
            Value::U64(v) => J::from(*v),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            other => other.as_i64().map_or(J::Null, J::from),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) if s.len() > 60 => {
                let mut cut = 60;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                write!(f, "{:?}… ({} bytes)", &s[..cut], s.len())
            }
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "[{} values]", a.len()),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF lists them: innermost (contiguous) first. The row-major shape
    /// (`[out, in]` for a matrix) is these reversed; see `shape`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// The row-major shape (outermost first), as MLX and safetensors give it.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: its metadata and tensor table (the data stays on disk until read).
#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where the data section starts in the file.
    pub data_start: u64,
    pub file_size: u64,
    index: BTreeMap<String, usize>,
}

/// Bounds no real file comes near; larger counts mean corruption, caught before allocating.
const MAX_DIMS: u32 = 4;
const MAX_ARRAY_DEPTH: u32 = 4;

/// Reads the header region with a running position and the file size, so that every
/// count can be checked against the bytes left.
struct Cursor<'a> {
    r: BufReader<File>,
    pos: u64,
    size: u64,
    path: &'a Path,
}

impl Cursor<'_> {
    fn err(&self, what: impl fmt::Display) -> Error {
        Error::Weights(format!("{}: {what}", self.path.display()))
    }

    fn left(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        if self.left() < N as u64 {
            return Err(self.err(format!("truncated: the file ends at byte {} inside {}", self.size, what())));
        }
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| self.err(format!("reading {}: {e}", what())))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(what)?;
        if len > self.left() {
            return Err(self.err(format!(
                "{} claims a {len}-byte string but only {} bytes remain (truncated or corrupted)",
                what(),
                self.left()
            )));
        }
        let mut buf = vec![0u8; len as usize];
        self.r.read_exact(&mut buf).map_err(|e| self.err(format!("reading {}: {e}", what())))?;
        self.pos += len;
        String::from_utf8(buf).map_err(|_| self.err(format!("{} is not valid UTF-8", what())))
    }

    fn value(&mut self, ty: u32, depth: u32, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.bytes::<1>(what)?[0]),
            1 => Value::I8(self.bytes::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.bytes(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.bytes(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(what)?)),
            7 => match self.bytes::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{} is a bool of byte value {b} (corrupted?)", what()))),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(
                        self.err(format!("{} nests arrays more than {MAX_ARRAY_DEPTH} deep (corrupted?)", what()))
                    );
                }
                let item_ty = self.u32(what)?;
                let count = self.u64(what)?;
                // Every element takes at least one byte (strings at least eight).
                let min = match item_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(self.err(format!("{} is an array of unknown value type {t}", what()))),
                };
                if count.saturating_mul(min) > self.left() {
                    return Err(self.err(format!(
                        "{} claims {count} array elements but only {} bytes remain (truncated or corrupted)",
                        what(),
                        self.left()
                    )));
                }
                let mut items = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let item = || format!("{} element {i}", what());
                    items.push(self.value(item_ty, depth + 1, &item)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.bytes(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(what)?)),
            t => return Err(self.err(format!("{} has unknown value type {t} (corrupted, or a newer GGUF)", what()))),
        })
    }
}

impl GgufFile {
    /// Parses the header, metadata and tensor table of `path` and checks every tensor's
    /// type, shape and byte range against the file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let size = file.metadata().map_err(|e| Error::Io(format!("{}: {e}", path.display())))?.len();
        let mut c = Cursor { r: BufReader::with_capacity(1 << 16, file), pos: 0, size, path };

        let magic = c.bytes::<4>(&|| "the magic number".into()).map_err(|_| {
            Error::Weights(format!("{}: only {size} bytes, too short to be a GGUF file", path.display()))
        })?;
        if &magic != b"GGUF" {
            return Err(c.err(format!("not a GGUF file (it starts with {magic:02x?}, not \"GGUF\")")));
        }
        let version = c.u32(&|| "the version".into())?;
        if version.swap_bytes() <= 3 && version > 3 {
            return Err(c.err("a big-endian GGUF file; only little-endian files are supported"));
        }
        if !(2..=3).contains(&version) {
            return Err(c.err(format!("GGUF version {version} is not supported (versions 2 and 3 are)")));
        }
        let n_tensors = c.u64(&|| "the tensor count".into())?;
        let n_kv = c.u64(&|| "the metadata count".into())?;
        // A metadata record takes at least 13 bytes, a tensor entry at least 28.
        if n_kv.saturating_mul(13) > c.left() || n_tensors.saturating_mul(28) > c.left() {
            return Err(c.err(format!(
                "the header claims {n_tensors} tensors and {n_kv} metadata entries, more than {size} bytes can hold (truncated or corrupted)"
            )));
        }

        let mut metadata = Vec::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = c.string(&|| format!("metadata entry {i}'s key"))?;
            let what = || format!("metadata {key:?}");
            let ty = c.u32(&what)?;
            let value = c.value(ty, 0, &what)?;
            if metadata.iter().any(|(k, _)| *k == key) {
                return Err(c.err(format!("metadata key {key:?} appears twice")));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => 32,
            Some((_, v)) => match v.as_i64() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
                _ => return Err(c.err(format!("general.alignment is {v}, not a power of two"))),
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut index = BTreeMap::new();
        for i in 0..n_tensors {
            let name = c.string(&|| format!("tensor {i}'s name"))?;
            let what = || format!("tensor {name}");
            let n_dims = c.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(
                    c.err(format!("tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} expected; corrupted?)"))
                );
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&what)?);
            }
            let ty = GgmlType(c.u32(&what)?);
            let offset = c.u64(&what)?;
            let Some((block, block_bytes)) = ty.block() else {
                return Err(c.err(format!(
                    "tensor {name} has GGML type id {} which is unknown (corrupted, or a newer type; supported: {})",
                    ty.0,
                    GgmlType::supported_names()
                )));
            };
            let shape: Vec<u64> = dims.iter().rev().copied().collect();
            let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= 1 << 40);
            let Some(elements) = elements.filter(|_| dims.iter().all(|&d| d > 0)) else {
                return Err(c.err(format!("tensor {name} has an invalid shape {shape:?} (corrupted?)")));
            };
            if dims[0] % block != 0 {
                return Err(c.err(format!(
                    "tensor {name} ({} {shape:?}) has rows of {} elements, not a multiple of the {} block of {block}",
                    ty.name(),
                    dims[0],
                    ty.name()
                )));
            }
            if offset % alignment != 0 {
                return Err(c.err(format!(
                    "tensor {name}'s data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(c.err(format!("tensor {name} appears twice in the tensor table")));
            }
            tensors.push(TensorInfo { name, dims, ty, offset, size: elements / block * block_bytes });
        }

        let data_start = c.pos.div_ceil(alignment) * alignment;
        for t in &tensors {
            let end = data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.size));
            if end.map_or(true, |end| end > size) {
                return Err(c.err(format!(
                    "tensor {} ({} {:?}, {} bytes at data offset {}) ends past the end of the file ({size} bytes; truncated?)",
                    t.name,
                    t.ty.name(),
                    t.shape(),
                    t.size,
                    t.offset
                )));
            }
        }
        // Tensors must not overlap: sorted by offset, each ends before the next starts.
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        for w in by_offset.windows(2) {
            if w[0].offset + w[0].size > w[1].offset {
                return Err(
                    c.err(format!("tensors {} and {} overlap in the data section (corrupted?)", w[0].name, w[1].name))
                );
            }
        }

        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            file_size: size,
            index,
        })
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// `general.architecture`, which every model file states.
    pub fn architecture(&self) -> Result<&str> {
        match self.get("general.architecture") {
            Some(Value::Str(s)) => Ok(s),
            Some(v) => Err(self.err(format!("general.architecture must be a string, found {}", v.type_name()))),
            None => Err(self.err("metadata general.architecture is missing (not a model file?)")),
        }
    }

    pub fn err(&self, what: impl fmt::Display) -> Error {
        Error::Weights(format!("{}: {what}", self.path.display()))
    }

    /// The raw bytes of a tensor.
    pub fn read_bytes(&self, t: &TensorInfo) -> Result<Vec<u8>> {
        let mut f = File::open(&self.path).map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))?;
        f.seek(SeekFrom::Start(self.data_start + t.offset))
            .map_err(|e| self.err(format!("seeking to tensor {}: {e}", t.name)))?;
        let mut buf = vec![0u8; t.size as usize];
        f.read_exact(&mut buf).map_err(|e| self.err(format!("reading tensor {} ({} bytes): {e}", t.name, t.size)))?;
        Ok(buf)
    }

    /// A tensor's values as f32, row-major in `t.shape()`. Types other than the supported
    /// ones are an error naming the tensor and its type.
    pub fn read_f32(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        if !t.ty.is_supported() {
            return Err(self.err(format!(
                "tensor {} has type {}, which is not supported (supported: {})",
                t.name,
                t.ty.name(),
                GgmlType::supported_names()
            )));
        }
        let bytes = self.read_bytes(t)?;
        let mut out = vec![0f32; t.elements() as usize];
        if !super::quants::dequantize(t.ty, &bytes, &mut out) {
            return Err(self.err(format!("tensor {} has type {}, which cannot be dequantized", t.name, t.ty.name())));
        }
        Ok(out)
    }
}
