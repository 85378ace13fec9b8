//! Reading a model's `config.json` with errors that name the file and the field.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// A parsed JSON configuration file and where it came from — or one object nested in it
/// (`section`), whose fields errors then name by their full path (`text_config.hidden_size`).
pub struct ConfigFile {
    pub path: PathBuf,
    pub json: Value,
    /// `""` for the whole file, else the nested object's key and a dot.
    prefix: String,
}

impl ConfigFile {
    /// Reads `dir/name`; a missing or malformed file is an error naming it.
    pub fn read(dir: &Path, name: &str) -> Result<ConfigFile> {
        let path = dir.join(name);
        // A FIFO or a device would block the read (or never end); a folder fails with an
        // unclear OS message.
        if let Ok(meta) = std::fs::metadata(&path) {
            if !meta.is_file() {
                return Err(Error::Config(format!("{} is not a regular file", path.display())));
            }
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Config(format!("{} not found (is {} a model folder?)", path.display(), dir.display()))
            } else {
                Error::Io(format!("{}: {e}", path.display()))
            }
        })?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{} is not valid JSON: {e}", path.display())))?;
        if !json.is_object() {
            return Err(Error::Config(format!("{} must hold a JSON object", path.display())));
        }
        Ok(ConfigFile { path, json, prefix: String::new() })
    }

    /// A configuration made in memory (from a GGUF file's metadata, say); errors name
    /// `path` as its origin.
    pub fn from_json(path: impl Into<PathBuf>, json: Value) -> ConfigFile {
        ConfigFile { path: path.into(), json, prefix: String::new() }
    }

    /// Reads `dir/name` if it exists.
    pub fn read_optional(dir: &Path, name: &str) -> Result<Option<ConfigFile>> {
        if dir.join(name).exists() {
            ConfigFile::read(dir, name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The object under `key` (e.g. a multimodal model's `text_config`), if present.
    pub fn section(&self, key: &str) -> Result<Option<ConfigFile>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_object() => {
                Ok(Some(ConfigFile { path: self.path.clone(), json: v.clone(), prefix: self.field(key) + "." }))
            }
            Some(v) => Err(self.bad(key, "a JSON object", v)),
        }
    }

    /// `key` as errors name it: with the section's path.
    pub fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The error for a required field that is absent.
    pub fn missing(&self, key: &str) -> Error {
        Error::Config(format!("{}: required field {:?} is missing", self.path.display(), self.field(key)))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    /// The error for a field whose value is not `want`.
    pub fn bad(&self, key: &str, want: &str, found: &Value) -> Error {
        Error::Config(format!("{}: field {:?} must be {want}, found {found}", self.path.display(), self.field(key)))
    }

    /// A required positive integer.
    pub fn dim(&self, key: &str) -> Result<i32> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        self.as_dim(key, v)
    }

    /// An optional positive integer.
    pub fn opt_dim(&self, key: &str) -> Result<Option<i32>> {
        self.get(key).map(|v| self.as_dim(key, v)).transpose()
    }

    fn as_dim(&self, key: &str, v: &Value) -> Result<i32> {
        match v.as_i64() {
            Some(n) if n > 0 && n <= i32::MAX as i64 => Ok(n as i32),
            _ => Err(self.bad(key, "a positive integer (at most 2147483647)", v)),
        }
    }

    /// An optional number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| self.bad(key, "a number", v))).transpose()
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    /// A required number.
    pub fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, "true or false", v)),
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The rotary base: `rope_theta`, or transformers 5's nested `rope_parameters.rope_theta`.
    pub fn rope_theta(&self, default: Option<f64>) -> Result<f64> {
        if let Some(t) = self.opt_f64("rope_theta")? {
            return Ok(t);
        }
        if let Some(t) = self.get("rope_parameters").and_then(|p| p.get("rope_theta")).and_then(Value::as_f64) {
            return Ok(t);
        }
        default.ok_or_else(|| self.missing("rope_theta"))
    }

    /// The rotary scaling entry: `rope_scaling`, or transformers 5's `rope_parameters`.
    pub fn rope_scaling(&self) -> Option<&Value> {
        self.get("rope_scaling").or_else(|| self.get("rope_parameters"))
    }

    /// An integer or a list of integers (token ids such as `eos_token_id`).
    pub fn ids(&self, key: &str) -> Vec<u32> {
        match self.get(key) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|v| v as u32).collect(),
            Some(v) => v.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            None => vec![],
        }
    }
}
