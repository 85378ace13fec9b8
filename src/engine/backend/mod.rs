//! Backends: what runs a loaded model.
//!
//! - `native`: this engine, in process, on MLX (the families in `models`).
//! - `mlx_lm`: mlx-lm in a Python worker process — every architecture mlx-lm has, before
//!   the engine has it natively. Its availability depends on the machine (a Python with
//!   MLX and mlx-lm), so it is checked, with the reason when it is not there.
//!
//! Both hand back the same types (`Generation`, `Classification`, `Metrics`, `Error`)
//! through [`TextModel`], which is what the C API's model handle holds.
pub mod mlx_lm;

use std::path::Path;

use crate::chat::{ChatOptions, Message};
use crate::engine::batch::{BatchParams, Classification};
use crate::engine::generate::{CancelToken, GenerateParams};
use crate::engine::metrics::Metrics;
use crate::engine::model::{Generation, Model, TokenEvent};
use crate::error::{Error, Result};
use crate::models::{LoadOptions, ModelInfo};

pub use mlx_lm::{MlxLmModel, MlxLmOptions};

/// The backends, in the order they are listed and preferred.
pub const NAMES: &[&str] = &[NATIVE, MLX_LM];
pub const NATIVE: &str = "native";
pub const MLX_LM: &str = "mlx_lm";

/// Whether a backend can run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Availability {
    pub name: &'static str,
    pub available: bool,
    /// Why not, when it is not.
    pub reason: Option<String>,
    /// What it runs on ("mlx 0.32.4", "mlx-lm 0.32.2 on Python 3.11.2 (/usr/bin/python3)").
    pub version: String,
}

/// Every backend with its availability. The `mlx_lm` check starts `opts`' Python once
/// per process (a few seconds); later calls answer from memory.
pub fn list(opts: &MlxLmOptions) -> Vec<Availability> {
    NAMES.iter().map(|n| availability(n, opts).expect("a listed name")).collect()
}

/// The availability of the backend `name`; an unknown name is an error listing the known.
pub fn availability(name: &str, opts: &MlxLmOptions) -> Result<Availability> {
    match name {
        NATIVE => Ok(Availability {
            name: NATIVE,
            available: true,
            reason: None,
            version: format!("mlxrun {} on mlx {}", env!("CARGO_PKG_VERSION"), crate::mlx::version()),
        }),
        MLX_LM => Ok(match mlx_lm::probe(opts).and_then(|p| p.check().map(|_| p)) {
            Ok(p) => Availability {
                name: MLX_LM,
                available: true,
                reason: None,
                version: format!(
                    "mlx-lm {} on mlx {}, Python {} ({})",
                    p.mlx_lm_version,
                    p.mlx_version,
                    p.python_version,
                    p.python.display()
                ),
            },
            Err(e) => Availability { name: MLX_LM, available: false, reason: Some(reason(e)), version: String::new() },
        }),
        other => Err(unknown(other)),
    }
}

/// A backend error's message without the "backend: " of its display.
fn reason(e: Error) -> String {
    match e {
        Error::Backend(m) => m,
        other => other.to_string(),
    }
}

fn unknown(name: &str) -> Error {
    Error::invalid(format!("unknown backend {name:?} (known: {})", NAMES.join(", ")))
}

/// What is known of a model on disk, for deciding which backends can load it.
#[derive(Clone, Copy, Debug)]
pub struct ModelFacts<'a> {
    /// config.json's `model_type`, or a GGUF file's `general.architecture`.
    pub model_type: Option<&'a str>,
    /// A GGUF file (rather than an HF-layout folder).
    pub gguf: bool,
}

/// Whether one backend can load a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Support {
    pub backend: &'static str,
    pub ok: bool,
    /// Why not, when it cannot.
    pub reason: Option<String>,
}

/// Which backends can load a model with these facts (with the default `mlx_lm` options).
pub fn can_load(facts: &ModelFacts<'_>) -> Vec<Support> {
    can_load_with(facts, &MlxLmOptions::default())
}

/// `can_load` with the `mlx_lm` backend's Python chosen by `opts`.
pub fn can_load_with(facts: &ModelFacts<'_>, opts: &MlxLmOptions) -> Vec<Support> {
    let verdict = |backend, r: std::result::Result<(), String>| Support { backend, ok: r.is_ok(), reason: r.err() };
    let Some(model_type) = facts.model_type else {
        let why = || Err("the model type is unknown".to_string());
        return vec![verdict(NATIVE, why()), verdict(MLX_LM, why())];
    };
    let native = if facts.gguf {
        if crate::models::gguf::arch::SUPPORTED.contains(&model_type) {
            Ok(())
        } else {
            Err(format!("GGUF architecture {model_type:?} is not supported (supported: {})", crate::models::gguf::arch::SUPPORTED.join(", ")))
        }
    } else if crate::models::SUPPORTED_MODEL_TYPES.contains(&model_type) {
        Ok(())
    } else {
        Err(format!("model_type {model_type:?} is not supported (supported: {})", crate::models::SUPPORTED_MODEL_TYPES.join(", ")))
    };
    let mlx_lm = if facts.gguf {
        Err("mlx-lm does not load GGUF files".to_string())
    } else {
        match mlx_lm::probe(opts).and_then(|p| p.check().map(|_| p)) {
            Err(e) => Err(reason(e)),
            Ok(p) if p.knows(model_type) => Ok(()),
            Ok(p) => Err(format!("mlx-lm {} has no model_type {model_type:?}", p.mlx_lm_version)),
        }
    };
    vec![verdict(NATIVE, native), verdict(MLX_LM, mlx_lm)]
}

/// Which backend loads a model, and how.
#[derive(Clone, Debug, Default)]
pub struct BackendChoice {
    /// A backend's name; `None` or "" for `native`.
    pub name: Option<String>,
    pub mlx_lm: MlxLmOptions,
}

/// Loads `path` with the chosen backend. An unavailable backend fails with its reason.
pub fn load(path: impl AsRef<Path>, opts: &LoadOptions, choice: &BackendChoice) -> Result<TextModel> {
    match choice.name.as_deref().filter(|n| !n.is_empty()).unwrap_or(NATIVE) {
        NATIVE => Ok(TextModel::Native(Model::load(path, opts)?)),
        MLX_LM if opts.group.is_some() => {
            Err(Error::Unsupported("the mlx_lm backend does not run sharded over a distributed group (the native backend does)".into()))
        }
        MLX_LM => Ok(TextModel::MlxLm(MlxLmModel::load(path, opts, &choice.mlx_lm)?)),
        other => Err(unknown(other)),
    }
}

/// A loaded model, whichever backend runs it. The calls every backend has are here;
/// the rest (training, chat sessions, adapters) need the native model
/// ([`TextModel::native`]) and say so otherwise.
pub enum TextModel {
    Native(Model),
    MlxLm(MlxLmModel),
}

impl TextModel {
    pub fn backend(&self) -> &'static str {
        match self {
            TextModel::Native(_) => NATIVE,
            TextModel::MlxLm(_) => MLX_LM,
        }
    }

    /// The native model, or an `Unsupported` error naming `what` and the backend.
    pub fn native(&mut self, what: &str) -> Result<&mut Model> {
        match self {
            TextModel::Native(m) => Ok(m),
            other => Err(Error::Unsupported(format!("the {} backend does not do {what} (the native backend does)", other.backend()))),
        }
    }

    /// `native` for a shared reference.
    pub fn native_ref(&self, what: &str) -> Result<&Model> {
        match self {
            TextModel::Native(m) => Ok(m),
            other => Err(Error::Unsupported(format!("the {} backend does not do {what} (the native backend does)", other.backend()))),
        }
    }

    pub fn info(&self) -> &ModelInfo {
        match self {
            TextModel::Native(m) => m.info(),
            TextModel::MlxLm(m) => m.info(),
        }
    }

    /// The model folder (for a GGUF model, the file).
    pub fn dir(&self) -> &Path {
        match self {
            TextModel::Native(m) => m.dir(),
            TextModel::MlxLm(m) => m.dir(),
        }
    }

    pub fn canceller(&self) -> CancelToken {
        match self {
            TextModel::Native(m) => m.canceller(),
            TextModel::MlxLm(m) => m.canceller(),
        }
    }

    pub fn last_metrics(&self) -> Option<&Metrics> {
        match self {
            TextModel::Native(m) => m.last_metrics(),
            TextModel::MlxLm(m) => m.last_metrics(),
        }
    }

    pub fn generate(&mut self, prompt: &str, params: &GenerateParams, on_text: impl FnMut(&TokenEvent<'_>) -> bool) -> Result<Generation> {
        match self {
            TextModel::Native(m) => m.generate(prompt, params, on_text),
            TextModel::MlxLm(m) => m.generate(prompt, params, on_text),
        }
    }

    pub fn generate_ids(&mut self, prompt: &[u32], params: &GenerateParams, on_text: impl FnMut(&TokenEvent<'_>) -> bool) -> Result<Generation> {
        match self {
            TextModel::Native(m) => m.generate_ids(prompt, params, on_text),
            TextModel::MlxLm(m) => m.generate_ids(prompt, params, on_text),
        }
    }

    pub fn chat(
        &mut self,
        messages: &[Message],
        options: &ChatOptions,
        params: &GenerateParams,
        on_text: impl FnMut(&TokenEvent<'_>) -> bool,
    ) -> Result<Generation> {
        match self {
            TextModel::Native(m) => m.chat(messages, options, params, on_text),
            TextModel::MlxLm(m) => m.chat(messages, options, params, on_text),
        }
    }

    pub fn render_chat(&mut self, messages: &[Message], options: &ChatOptions) -> Result<String> {
        match self {
            TextModel::Native(m) => m.render_chat(messages, options),
            TextModel::MlxLm(m) => m.render_chat(messages, options),
        }
    }

    pub fn classify(&mut self, prompts: &[&str], params: &GenerateParams, batch: &BatchParams) -> Result<Vec<Result<Classification>>> {
        match self {
            TextModel::Native(m) => m.classify(prompts, params, batch),
            TextModel::MlxLm(m) => m.classify(prompts, params, batch),
        }
    }

    pub fn classify_ids(&mut self, prompts: &[Vec<u32>], params: &GenerateParams, batch: &BatchParams) -> Result<Vec<Result<Classification>>> {
        match self {
            TextModel::Native(m) => m.classify_ids(prompts, params, batch),
            TextModel::MlxLm(m) => m.classify_ids(prompts, params, batch),
        }
    }

    pub fn batch_generate(
        &mut self,
        prompts: &[&str],
        params: &GenerateParams,
        batch: &BatchParams,
        on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        match self {
            TextModel::Native(m) => m.batch_generate(prompts, params, batch, on_text),
            TextModel::MlxLm(m) => m.batch_generate(prompts, params, batch, on_text),
        }
    }

    pub fn batch_generate_ids(
        &mut self,
        prompts: &[Vec<u32>],
        params: &GenerateParams,
        batch: &BatchParams,
        on_text: impl FnMut(usize, &TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Result<Generation>>> {
        match self {
            TextModel::Native(m) => m.batch_generate_ids(prompts, params, batch, on_text),
            TextModel::MlxLm(m) => m.batch_generate_ids(prompts, params, batch, on_text),
        }
    }

    /// Ids of `text`, with the tokenizer's special tokens when `add_special_tokens`.
    pub fn encode(&mut self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        match self {
            TextModel::Native(m) => m.tokenizer().encode(text, add_special_tokens),
            TextModel::MlxLm(m) => m.encode(text, add_special_tokens),
        }
    }

    pub fn decode(&mut self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        match self {
            TextModel::Native(m) => m.tokenizer().decode(ids, skip_special_tokens),
            TextModel::MlxLm(m) => m.decode(ids, skip_special_tokens),
        }
    }
}
