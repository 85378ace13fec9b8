//! Finding models under a folder without loading them: HF-layout model folders
//! (`config.json` + safetensors) and GGUF files, with what each one is, how big it is and
//! which backends can load it.
//!
//! Only metadata is read: `config.json`, the safetensors headers (never the tensor data),
//! the GGUF header and tensor table. A model whose files are broken (malformed config, no
//! weights, an index naming a missing shard, a truncated safetensors or GGUF file) is
//! still listed, with `error` naming the file and the problem; so is a folder that cannot
//! be listed. Only a `dir` that cannot be read at all is an error.
//!
//! The walk follows symbolic links (so that a Hugging Face cache snapshot, whose files are
//! links into `blobs/`, is measured by its targets), visits each folder once by its
//! device and inode (a link loop or two links to one folder cost nothing), and goes at
//! most `max_depth` folders below `dir`.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::models::config::ConfigFile;
use crate::models::gguf::{self, GgmlType, GgufFile};
use crate::models::quantization::QuantConfig;
use crate::models::weights::{read_safetensors_header, weight_files, HeaderTensor};
use crate::chat::ChatTemplate;
use crate::engine::backend::{can_load_with, MlxLmOptions, ModelFacts};
use crate::error::{Error, Result};

/// How deep `discover` looks when not told: deep enough for `org/name/` trees and for a
/// Hugging Face cache's `models--org--name/snapshots/HASH/`, shallow enough that pointing
/// it at a home folder ends quickly.
pub const DEFAULT_MAX_DEPTH: usize = 4;

/// How to search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// The deepest folder level looked into, `dir` itself being level 0: 0 looks only at
    /// `dir` (a model folder, or GGUF files in it), 1 also at its subfolders, and so on.
    pub max_depth: usize,
    /// The Python whose mlx-lm judges whether the `mlx_lm` backend can load each model.
    pub mlx_lm: MlxLmOptions,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions { max_depth: DEFAULT_MAX_DEPTH, mlx_lm: MlxLmOptions::default() }
    }
}

/// How a model is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// A folder with `config.json` and safetensors weights.
    Safetensors,
    /// A single GGUF file.
    Gguf,
}

impl ModelFormat {
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Gguf => "gguf",
        }
    }
}

/// How a model's weights are quantized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredQuant {
    /// Bits per weight: mlx-lm's default setting (some layers may differ), or the nominal
    /// bits of a GGUF file type (4 for Q4_K_M).
    pub bits: i32,
    /// Weights per scale: mlx-lm's group size, or the GGML block size (32 for Q4_0, 256
    /// for the K-quants).
    pub group_size: i32,
    /// mlx-lm's mode (`affine`, `mxfp4`, `mxfp8`, `nvfp4`), or for GGUF llama.cpp's file
    /// type in lower case (`q4_k_m`).
    pub mode: String,
}

/// Whether one backend can load a model, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSupport {
    pub backend: String,
    pub ok: bool,
    pub reason: Option<String>,
}

/// One model found (or one folder that could not be searched).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveredModel {
    /// The model folder or GGUF file, under the absolute form of the `dir` searched
    /// (links are not resolved, so the path is the one the caller would use).
    pub path: PathBuf,
    /// `None` only for a folder that could not be listed (see `error`).
    pub format: Option<ModelFormat>,
    /// config.json's `model_type`, or GGUF `general.architecture`.
    pub model_type: Option<String>,
    /// Each backend's verdict; a broken model is refused by all of them.
    pub backends: Vec<BackendSupport>,
    pub quantization: Option<DiscoveredQuant>,
    /// Safetensors: the float dtype most parameters are stored in (MLX's names:
    /// `bfloat16`, `float16`, `float32`), else config.json's `torch_dtype`. GGUF: the
    /// file type in llama.cpp's names (`Q4_K_M`, `F16`).
    pub dtype: Option<String>,
    /// Parameters, counted from the headers' shapes; quantized matrices count as the
    /// values they unpack to (see `logical_params`).
    pub params: Option<u64>,
    /// Bytes of the files that make up the model: every file directly in a model folder
    /// (weights, config, tokenizer; links measured by their targets), or the GGUF file.
    pub size_bytes: u64,
    /// Weight files: safetensors shards, or 1 for a GGUF file.
    pub num_files: usize,
    /// A `tokenizer.json` (GGUF: a tokenizer in the metadata, or a tokenizer.json beside).
    pub has_tokenizer: bool,
    /// A chat template: `chat_template.jinja`, `tokenizer_config.json`'s `chat_template`
    /// (and the other places transformers reads), or GGUF `tokenizer.chat_template`.
    pub has_chat_template: bool,
    /// What is wrong with the model, naming the file and the problem; `None` when its
    /// metadata reads cleanly (whether a backend supports it is in `backends`).
    pub error: Option<String>,
}

impl DiscoveredModel {
    /// The JSON object `mlxrun discover --json` prints for the model.
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path.display().to_string(),
            "format": self.format.map(ModelFormat::name),
            "model_type": self.model_type,
            "quantization": self.quantization.as_ref().map(|q| json!({
                "bits": q.bits,
                "group_size": q.group_size,
                "mode": q.mode,
            })),
            "dtype": self.dtype,
            "params": self.params,
            "size_bytes": self.size_bytes,
            "num_files": self.num_files,
            "has_tokenizer": self.has_tokenizer,
            "has_chat_template": self.has_chat_template,
            "backends": self.backends.iter().map(|b| json!({
                "backend": b.backend,
                "ok": b.ok,
                "reason": b.reason,
            })).collect::<Vec<_>>(),
            "error": self.error,
        })
    }
}

/// The models under `dir`, sorted by path. Errors only when `dir` itself is missing, not
/// a folder, or cannot be listed; every problem below it is reported in an entry's `error`.
pub fn discover(dir: &Path, opts: &DiscoverOptions) -> Result<Vec<DiscoveredModel>> {
    let meta = fs::metadata(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!("{} is not a folder", dir.display())));
    }
    let base = std::path::absolute(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let entries = list(&base).map_err(|e| Error::Io(format!("{}: cannot list the folder: {e}", base.display())))?;
    let mut walk = Walk { max_depth: opts.max_depth, seen: HashSet::new(), out: Vec::new() };
    walk.seen.insert(dir_key(&base, &meta));
    walk.visit(&base, entries, 0);
    walk.out.sort_by(|a, b| a.path.cmp(&b.path));
    // Judged once the walk is done, with the caller's Python for the mlx_lm backend (its
    // answer is kept per process, so this costs one Python start at most).
    for m in &mut walk.out {
        if let Some(format) = m.format {
            m.backends = backends(m.model_type.as_deref(), format == ModelFormat::Gguf, m.error.is_some(), &opts.mlx_lm);
        }
    }
    Ok(walk.out)
}

/// What identifies a folder however it is reached.
#[cfg(unix)]
type DirKey = (u64, u64);
#[cfg(not(unix))]
type DirKey = PathBuf;

#[cfg(unix)]
fn dir_key(_path: &Path, meta: &fs::Metadata) -> DirKey {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn dir_key(path: &Path, _meta: &fs::Metadata) -> DirKey {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A folder entry with links followed.
enum Kind {
    File { size: u64 },
    Dir(DirKey),
    /// A dangling link, a socket, something that cannot be examined: not a model's part.
    Other,
}

struct Entry {
    path: PathBuf,
    name: String,
    kind: Kind,
}

/// The entries of `dir`, sorted by name, links followed.
fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        let kind = match fs::metadata(&path) {
            Ok(m) if m.is_file() => Kind::File { size: m.len() },
            Ok(m) if m.is_dir() => Kind::Dir(dir_key(&path, &m)),
            _ => Kind::Other,
        };
        out.push(Entry { name: e.file_name().to_string_lossy().into_owned(), path, kind });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

struct Walk {
    max_depth: usize,
    seen: HashSet<DirKey>,
    out: Vec<DiscoveredModel>,
}

impl Walk {
    fn visit(&mut self, dir: &Path, entries: Vec<Entry>, depth: usize) {
        let is_file = |name: &str| entries.iter().any(|e| e.name == name && matches!(e.kind, Kind::File { .. }));
        let ggufs: Vec<(&Entry, u64)> = entries
            .iter()
            .filter_map(|e| match e.kind {
                Kind::File { size } if has_ext(&e.name, "gguf") => Some((e, size)),
                _ => None,
            })
            .collect();
        let has_safetensors = entries.iter().any(|e| has_ext(&e.name, "safetensors"))
            || is_file("model.safetensors.index.json");
        // A folder of GGUF files with a config.json beside them (as some repositories
        // ship) is listed through its GGUF files, not as a folder without weights.
        if is_file("config.json") && (has_safetensors || ggufs.is_empty()) {
            self.out.push(folder_model(dir, &entries));
        }
        for (e, size) in ggufs {
            self.out.push(gguf_model(&e.path, size));
        }
        if depth >= self.max_depth {
            return;
        }
        for e in entries {
            let Kind::Dir(key) = e.kind else { continue };
            if !self.seen.insert(key) {
                continue; // reached before: a link loop, or a second link to one folder
            }
            match list(&e.path) {
                Ok(sub) => self.visit(&e.path, sub, depth + 1),
                Err(err) => self.out.push(DiscoveredModel {
                    path: e.path.clone(),
                    error: Some(format!("{}: cannot list the folder: {err}", e.path.display())),
                    ..DiscoveredModel::default()
                }),
            }
        }
    }
}

fn has_ext(name: &str, ext: &str) -> bool {
    Path::new(name).extension().is_some_and(|x| x.eq_ignore_ascii_case(ext))
}

/// Each backend's verdict on a model of `model_type`; a broken model is refused by all
/// (whatever its type, its files would not load).
fn backends(model_type: Option<&str>, gguf: bool, broken: bool, mlx_lm: &MlxLmOptions) -> Vec<BackendSupport> {
    can_load_with(&ModelFacts { model_type, gguf }, mlx_lm)
        .into_iter()
        .map(|s| BackendSupport {
            backend: s.backend.to_string(),
            ok: s.ok && !broken,
            reason: if broken && s.ok { Some("the model's files are broken (see its error)".into()) } else { s.reason },
        })
        .collect()
}

/// An HF-layout folder: what config.json and the safetensors headers say.
fn folder_model(dir: &Path, entries: &[Entry]) -> DiscoveredModel {
    let mut m = DiscoveredModel {
        path: dir.to_path_buf(),
        format: Some(ModelFormat::Safetensors),
        size_bytes: entries.iter().map(|e| if let Kind::File { size } = e.kind { size } else { 0 }).sum(),
        has_tokenizer: dir.join("tokenizer.json").is_file(),
        ..DiscoveredModel::default()
    };
    let mut errors = Vec::new();
    if let Err(e) = read_folder(dir, &mut m) {
        errors.push(e.to_string());
    }
    // The template is looked for even in a folder whose weights are broken: the two are
    // independent, and both are worth reporting.
    match ChatTemplate::names(dir) {
        Ok(names) => m.has_chat_template = !names.is_empty(),
        Err(e) => errors.push(e.to_string()),
    }
    m.error = (!errors.is_empty()).then(|| errors.join("; "));
    m
}

/// Fills `m` from the folder's config and weight headers, as far as they read.
fn read_folder(dir: &Path, m: &mut DiscoveredModel) -> Result<()> {
    let cfg = ConfigFile::read(dir, "config.json")?;
    m.model_type = cfg.str("model_type").map(str::to_string);
    let quant = QuantConfig::from_config(&cfg)?;
    m.quantization = quant.as_ref().map(|q| DiscoveredQuant {
        bits: q.default.bits,
        group_size: q.default.group_size,
        mode: q.default.mode.name().to_string(),
    });
    let files = weight_files(dir)?;
    m.num_files = files.len();
    let mut tensors: Vec<HeaderTensor> = Vec::new();
    let mut seen = HashSet::new();
    for f in &files {
        for t in read_safetensors_header(f)? {
            if !seen.insert(t.name.clone()) {
                return Err(Error::Weights(format!("tensor {} appears in more than one file of {}", t.name, dir.display())));
            }
            tensors.push(t);
        }
    }
    m.dtype = stored_float_dtype(&tensors).or_else(|| crate::models::conversion_dtype(&cfg).map(|d| d.name().to_string()));
    m.params = Some(logical_params(&tensors, quant.as_ref(), dir)?);
    if m.model_type.is_none() {
        return Err(cfg.missing("model_type"));
    }
    Ok(())
}

/// The float dtype holding the most values, in MLX's names.
fn stored_float_dtype(tensors: &[HeaderTensor]) -> Option<String> {
    let mut by_dtype: BTreeMap<&str, u64> = BTreeMap::new();
    for t in tensors {
        let name = match t.dtype.as_str() {
            "F16" => "float16",
            "BF16" => "bfloat16",
            "F32" => "float32",
            "F64" => "float64",
            _ => continue,
        };
        *by_dtype.entry(name).or_default() += t.shape.iter().product::<u64>();
    }
    by_dtype.into_iter().max_by_key(|(_, n)| *n).map(|(d, _)| d.to_string())
}

/// The parameters the tensors hold, as mlx-lm counts them (its `get_total_parameters`):
/// a quantized matrix `P` (`P.weight` packed into uint32 words, with `P.scales` beside it)
/// counts as the `32 / bits` values each word packs, i.e. the dense matrix it unpacks to,
/// and its `P.scales` / `P.biases` count nothing (they describe the packing, they are not
/// parameters of the model). So a quantized checkpoint reports the count of the dense one
/// it was made from.
fn logical_params(tensors: &[HeaderTensor], quant: Option<&QuantConfig>, dir: &Path) -> Result<u64> {
    let dtypes: HashMap<&str, &str> = tensors.iter().map(|t| (t.name.as_str(), t.dtype.as_str())).collect();
    let packed = |prefix: &str| {
        dtypes.get(format!("{prefix}.weight").as_str()) == Some(&"U32") && dtypes.contains_key(format!("{prefix}.scales").as_str())
    };
    let mut total = 0u64;
    for t in tensors {
        let elements: u64 = t.shape.iter().product();
        if let Some(prefix) = t.name.strip_suffix(".scales").or_else(|| t.name.strip_suffix(".biases")) {
            if packed(prefix) {
                continue;
            }
        }
        if let Some(prefix) = t.name.strip_suffix(".weight").filter(|p| packed(p)) {
            let bits = quant.and_then(|q| q.for_layer(prefix)).map(|p| p.bits).ok_or_else(|| {
                Error::Weights(format!(
                    "tensor {prefix}.scales in {} marks {prefix} as quantized, but config.json's \"quantization\" gives it no bits",
                    dir.display()
                ))
            })?;
            total += elements * 32 / bits as u64;
            continue;
        }
        total += elements;
    }
    Ok(total)
}

/// llama.cpp's file types (`general.file_type`, its `enum llama_ftype`): the number, the
/// name, and the GGML type most of the file's matrices have.
const GGUF_FILE_TYPES: &[(i64, &str, u32)] = &[
    (0, "F32", 0),
    (1, "F16", 1),
    (2, "Q4_0", 2),
    (3, "Q4_1", 3),
    (7, "Q8_0", 8),
    (8, "Q5_0", 6),
    (9, "Q5_1", 7),
    (10, "Q2_K", 10),
    (11, "Q3_K_S", 11),
    (12, "Q3_K_M", 11),
    (13, "Q3_K_L", 11),
    (14, "Q4_K_S", 12),
    (15, "Q4_K_M", 12),
    (16, "Q5_K_S", 13),
    (17, "Q5_K_M", 13),
    (18, "Q6_K", 14),
    (19, "IQ2_XXS", 16),
    (20, "IQ2_XS", 17),
    (21, "Q2_K_S", 10),
    (22, "IQ3_XS", 21),
    (23, "IQ3_XXS", 18),
    (24, "IQ1_S", 19),
    (25, "IQ4_NL", 20),
    (26, "IQ3_S", 21),
    (27, "IQ3_M", 21),
    (28, "IQ2_S", 22),
    (29, "IQ2_M", 22),
    (30, "IQ4_XS", 23),
    (31, "IQ1_M", 29),
    (32, "BF16", 30),
    (36, "TQ1_0", 34),
    (37, "TQ2_0", 35),
    (38, "MXFP4_MOE", 39),
];

/// The nominal bits per weight of a quantized GGML type; `None` for the float types.
fn ggml_bits(ty: GgmlType) -> Option<i32> {
    Some(match ty.0 {
        19 | 29 | 34 | 41 => 1,
        10 | 16 | 17 | 22 | 35 => 2,
        11 | 18 | 21 => 3,
        2 | 3 | 12 | 20 | 23 | 39 | 40 => 4,
        6 | 7 | 13 => 5,
        14 => 6,
        8 | 9 | 15 => 8,
        _ => return None,
    })
}

/// A GGUF file: what its header and tensor table say.
fn gguf_model(path: &Path, size: u64) -> DiscoveredModel {
    let mut m = DiscoveredModel {
        path: path.to_path_buf(),
        format: Some(ModelFormat::Gguf),
        size_bytes: size,
        num_files: 1,
        ..DiscoveredModel::default()
    };
    match GgufFile::open(path) {
        Ok(f) => {
            if let Err(e) = read_gguf(&f, &mut m) {
                m.error = Some(e.to_string());
            }
        }
        Err(e) => m.error = Some(e.to_string()),
    }
    m
}

fn read_gguf(f: &GgufFile, m: &mut DiscoveredModel) -> Result<()> {
    // rope_freqs and the like configure the model; they are not parameters.
    m.params = Some(f.tensors.iter().filter(|t| !gguf::arch::is_config_tensor(&t.name)).map(|t| t.elements()).sum());
    m.has_tokenizer = f.get("tokenizer.ggml.tokens").is_some()
        || f.path.parent().is_some_and(|d| d.join("tokenizer.json").is_file());
    m.has_chat_template = f.metadata.iter().any(|(k, v)| {
        (k == "tokenizer.chat_template" || k.starts_with("tokenizer.chat_template.")) && v.as_str().is_some()
    });
    // The file type the file states, else the type of most matrix values.
    let stated = f.get("general.file_type").and_then(|v| v.as_i64()).and_then(|n| GGUF_FILE_TYPES.iter().find(|t| t.0 == n));
    let (name, main) = match stated {
        Some(&(_, name, ty)) => (name.to_string(), Some(GgmlType(ty))),
        None => {
            let mut by_type: BTreeMap<u32, u64> = BTreeMap::new();
            for t in f.tensors.iter().filter(|t| t.dims.len() >= 2) {
                *by_type.entry(t.ty.0).or_default() += t.elements();
            }
            match by_type.into_iter().max_by_key(|(_, n)| *n) {
                Some((ty, _)) => (GgmlType(ty).name(), Some(GgmlType(ty))),
                None => (String::new(), None),
            }
        }
    };
    if let Some(ty) = main {
        m.quantization = ggml_bits(ty).map(|bits| DiscoveredQuant {
            bits,
            group_size: ty.block().map_or(0, |(n, _)| n as i32),
            mode: name.to_lowercase(),
        });
        m.dtype = Some(name);
    }
    m.model_type = Some(f.architecture()?.to_string());
    Ok(())
}
