//! `mlxrun backends`, and the options that choose a backend for `generate`.
use clap::Args;

use crate::engine::backend::{self, BackendChoice, MlxLmOptions, TextModel};
use crate::error::Result;
use crate::models::LoadOptions;

/// Which backend runs the model, and the `mlx_lm` backend's Python.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Backend")]
pub struct BackendArgs {
    /// What runs the model: native (this engine) or mlx_lm (mlx-lm in a Python worker, for
    /// architectures the engine does not have)
    #[arg(long, value_name = "NAME", default_value = backend::NATIVE, value_parser = ["native", "mlx_lm"])]
    pub backend: String,

    /// The mlx_lm backend's Python [default: --venv's, else $MLXRUN_PYTHON, else $VIRTUAL_ENV's,
    /// else python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<std::path::PathBuf>,

    /// A virtualenv whose bin/python the mlx_lm backend runs
    #[arg(long, value_name = "DIR")]
    pub venv: Option<std::path::PathBuf>,
}

impl BackendArgs {
    pub fn mlx_lm(&self) -> MlxLmOptions {
        MlxLmOptions { python: self.python.clone(), venv: self.venv.clone(), ..MlxLmOptions::default() }
    }

    /// Loads `path` with the chosen backend: the native one with a progress bar.
    pub fn load(&self, path: &str, opts: &LoadOptions) -> Result<TextModel> {
        if self.backend == backend::NATIVE {
            return Ok(TextModel::Native(super::progress::load_model(path, opts)?));
        }
        backend::load(path, opts, &BackendChoice { name: Some(self.backend.clone()), mlx_lm: self.mlx_lm() })
    }
}

#[derive(Args, Debug)]
pub struct BackendsArgs {
    /// The mlx_lm backend's Python [default: --venv's, else $MLXRUN_PYTHON, else $VIRTUAL_ENV's,
    /// else python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<std::path::PathBuf>,

    /// A virtualenv whose bin/python the mlx_lm backend runs
    #[arg(long, value_name = "DIR")]
    pub venv: Option<std::path::PathBuf>,

    /// One JSON array of {name, available, reason, version}
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BackendsArgs) -> Result<()> {
    let opts = MlxLmOptions { python: args.python, venv: args.venv, ..MlxLmOptions::default() };
    let list = backend::list(&opts);
    if args.json {
        let v: Vec<_> = list
            .iter()
            .map(|a| serde_json::json!({"name": a.name, "available": a.available, "reason": a.reason, "version": a.version}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    for a in &list {
        match &a.reason {
            None => println!("{:<8} available      {}", a.name, a.version),
            Some(why) => println!("{:<8} unavailable    {why}", a.name),
        }
    }
    Ok(())
}
