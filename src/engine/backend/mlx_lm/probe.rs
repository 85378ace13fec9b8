//! Whether a Python can run the `mlx_lm` backend: it starts, imports MLX and mlx-lm, and
//! mlx-lm is a version the worker speaks to. The answer is kept per Python executable
//! for the life of the process (a probe costs a Python start and an import of MLX).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{Next, Worker};
use super::{MlxLmOptions, SERVER};
use crate::error::{Error, Result};

/// What a Python reported about itself.
#[derive(Clone, Debug)]
pub struct Probe {
    pub python: PathBuf,
    pub python_version: String,
    pub mlx_version: String,
    pub mlx_lm_version: String,
    /// The oldest mlx-lm the worker speaks to.
    pub min_mlx_lm_version: String,
    pub mlx_lm_supported: bool,
    /// The `model_type`s mlx-lm has a module for, and those it maps onto another.
    pub model_types: Vec<String>,
    pub remapped_types: HashMap<String, String>,
    /// MLX's default device in that Python ("Device(gpu, 0)").
    pub device: String,
}

impl Probe {
    pub(crate) fn from_ready(python: &Path, v: &Value) -> Result<Probe> {
        if v["type"] == "fatal" {
            return Err(Error::Backend(format!(
                "mlx_lm: {} cannot run the worker: {}",
                python.display(),
                v["message"].as_str().unwrap_or("unknown error")
            )));
        }
        if v["type"] != "ready" {
            return Err(Error::Backend(format!("mlx_lm: the worker's first message is not \"ready\": {v}")));
        }
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        Ok(Probe {
            python: python.to_path_buf(),
            python_version: s("python"),
            mlx_version: s("mlx"),
            mlx_lm_version: s("mlx_lm"),
            min_mlx_lm_version: s("min_mlx_lm"),
            mlx_lm_supported: v["mlx_lm_ok"].as_bool().unwrap_or(false),
            model_types: v["model_types"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            remapped_types: v["remapped_types"]
                .as_object()
                .map(|m| m.iter().filter_map(|(k, t)| Some((k.clone(), t.as_str()?.to_owned()))).collect())
                .unwrap_or_default(),
            device: s("device"),
        })
    }

    /// Fails when the mlx-lm found is older than the worker speaks to.
    pub fn check(&self) -> Result<()> {
        if self.mlx_lm_supported {
            Ok(())
        } else {
            Err(Error::Backend(format!(
                "mlx_lm: {} has mlx-lm {}; the backend needs {} or newer",
                self.python.display(),
                self.mlx_lm_version,
                self.min_mlx_lm_version
            )))
        }
    }

    pub(crate) fn on_cpu(&self) -> bool {
        self.device.contains("cpu")
    }

    /// Whether mlx-lm has an implementation of `model_type` (as its `load` resolves it).
    pub fn knows(&self, model_type: &str) -> bool {
        let t = self.remapped_types.get(model_type).map_or(model_type, String::as_str);
        self.model_types.iter().any(|m| m == t)
    }
}

/// Probes the Python `opts` chooses (once per executable and process).
pub fn probe(opts: &MlxLmOptions) -> Result<Probe> {
    static SEEN: OnceLock<Mutex<HashMap<PathBuf, std::result::Result<Probe, String>>>> = OnceLock::new();
    let python = opts.python_path();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(r) = seen.lock().unwrap_or_else(|p| p.into_inner()).get(&python) {
        return r.clone().map_err(Error::Backend);
    }
    let r = run_probe(&python, opts);
    let kept = r.as_ref().map(Clone::clone).map_err(|e| match e {
        Error::Backend(m) => m.clone(),
        other => other.to_string(),
    });
    seen.lock().unwrap_or_else(|p| p.into_inner()).insert(python, kept);
    r
}

fn run_probe(python: &Path, opts: &MlxLmOptions) -> Result<Probe> {
    let mut w = Worker::spawn(python, SERVER, &["--probe"], opts.max_message_bytes).map_err(|e| match e {
        Error::Backend(m) => Error::Backend(format!("{m} (set the backend's python or venv, or MLXRUN_PYTHON)")),
        other => other,
    })?;
    let start = Instant::now();
    // Importing MLX and mlx-lm takes a few seconds on a cold disk.
    let timeout = Duration::from_secs(60).min(opts.load_timeout);
    loop {
        if let Next::Message(v) = w.next(Duration::from_millis(50), start, timeout, "the availability check")? {
            return Probe::from_ready(python, &v);
        }
    }
}
