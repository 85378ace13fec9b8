//! LoRA fine-tuning, as mlx-lm's `lora` does it and in its file formats: adapters on a
//! model's projections (`adapter`), mlx-lm's JSONL datasets (`dataset`), padded,
//! length-sorted batches (`batch`), the masked cross-entropy loss (`loss`), MLX's
//! optimizers and schedules (`optimizer`) and the loop with its reports (`trainer`).
//!
//! It sits beside `chat`, above `engine`: datasets are tokenized with a loaded `Model`'s
//! tokenizer and chat template, and training runs on the `Model`.
pub mod adapter;
pub mod batch;
pub mod dataset;
pub mod fuse;
pub mod loss;
pub mod optimizer;
pub mod trainer;

use std::path::Path;

pub use adapter::{AdapterInfo, LoraConfig};
pub use dataset::{Dataset, DatasetOptions, Example, Format, Splits};
pub use optimizer::{OptimizerKind, Schedule};
pub use trainer::{Progress, TrainConfig, TrainReport, TrainSummary, ValReport};

use crate::engine::Model;
use crate::error::{Error, Result};

/// The adapter a model carries: how it was configured and what it covers.
pub type Adapter = (LoraConfig, AdapterInfo);

impl Model {
    /// Puts fresh LoRA adapters on the model (see [`adapter::apply`]); a model holds one
    /// adapter at a time.
    pub fn apply_lora(&mut self, cfg: &LoraConfig) -> Result<AdapterInfo> {
        if self.adapter().is_some() {
            return Err(Error::invalid("the model already has an adapter"));
        }
        let info = adapter::apply(self.language_model_mut(), cfg)?;
        self.set_adapter(Some((cfg.clone(), info.clone())));
        Ok(info)
    }

    /// Loads an adapter folder in mlx-lm's layout onto the model.
    pub fn load_adapter(&mut self, dir: impl AsRef<Path>) -> Result<AdapterInfo> {
        if self.adapter().is_some() {
            return Err(Error::invalid("the model already has an adapter"));
        }
        let dir = dir.as_ref();
        let (cfg, info) = adapter::load(self.language_model_mut(), dir)?;
        self.set_adapter(Some((cfg, info.clone())));
        Ok(info)
    }

    /// Replaces the adapter's weights with those of `file` (a checkpoint to resume from).
    pub fn load_adapter_weights(&mut self, file: impl AsRef<Path>) -> Result<()> {
        if self.adapter().is_none() {
            return Err(Error::invalid("the model has no adapter: apply LoRA first"));
        }
        adapter::load_weights(self.language_model_mut(), file.as_ref())
    }

    /// Writes the adapter as an mlx-lm adapter folder.
    pub fn save_adapter(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let (cfg, info) = self.adapter().cloned().ok_or_else(|| Error::invalid("the model has no adapter to save"))?;
        let dir = dir.as_ref();
        adapter::save_config(dir, &cfg, &info)?;
        adapter::save_weights(self.language_model_mut(), &dir.join(adapter::ADAPTER_FILE))
    }

    /// Takes the adapter off, leaving the base model.
    pub fn remove_adapter(&mut self) {
        adapter::remove(self.language_model_mut());
        self.set_adapter(None);
    }
}
