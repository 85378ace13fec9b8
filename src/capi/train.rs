//! LoRA fine-tuning through the C API: put an adapter on a model, train it on a data
//! folder with a progress callback, save, load or remove it.
use std::ffi::c_char;
use std::os::raw::c_void;
use std::path::PathBuf;

use super::{c_str, guard, mlxrun_model, mlxrun_status, non_null, read_params};
use crate::error::Error;
use crate::train::{trainer, Dataset, DatasetOptions, LoraConfig, OptimizerKind, Progress, Schedule, Splits, TrainConfig};

/// Where adapters go and their shape. Get one from `mlxrun_lora_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_lora_params {
    /// `sizeof(mlxrun_lora_params)`.
    pub struct_size: u32,
    /// Rank of the adapters (default 8).
    pub rank: i32,
    /// Scale of the adapters' output, mlx-lm's `scale` (default 20); `alpha / rank` in
    /// the PEFT convention.
    pub scale: f32,
    /// Dropout on the adapters' input while training (default 0).
    pub dropout: f32,
    /// Adapt the last `num_layers` layers; 0 = all (default).
    pub num_layers: i32,
    /// NUL-terminated, comma-separated projections to adapt: any of q_proj, k_proj,
    /// v_proj, o_proj, gate_proj, up_proj, down_proj (or with their `self_attn.` /
    /// `mlp.` prefix). NULL = "q_proj,v_proj" (default).
    pub keys: *const c_char,
    /// Seeds the adapters' random initial weights: the same seed, the same start
    /// (default 0, as mlx-lm's `--seed`).
    pub seed: u64,
}

/// Default LoRA parameters: rank 8, scale 20, no dropout, all layers, q_proj and v_proj,
/// seed 0.
#[no_mangle]
pub extern "C" fn mlxrun_lora_default_params() -> mlxrun_lora_params {
    mlxrun_lora_params {
        struct_size: std::mem::size_of::<mlxrun_lora_params>() as u32,
        rank: 8,
        scale: 20.0,
        dropout: 0.0,
        num_layers: 0,
        keys: std::ptr::null(),
        seed: 0,
    }
}

/// Puts fresh LoRA adapters on `model` (its output is unchanged until they are trained).
/// `params` may be NULL for the defaults. `*trainable_params`, when not NULL, receives
/// the number of trainable values. Fails, leaving the model as it was, when the model
/// already has an adapter or a key matches no projection. Not to be called while the
/// model generates or trains on another thread (the call waits for it).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_apply_lora(
    model: *mut mlxrun_model,
    params: *const mlxrun_lora_params,
    trainable_params: *mut u64,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let p = read_params(params, mlxrun_lora_default_params(), std::mem::size_of::<mlxrun_lora_params>(), "mlxrun_lora_params")?;
        let mut cfg = LoraConfig {
            rank: p.rank,
            scale: p.scale,
            dropout: p.dropout,
            num_layers: (p.num_layers != 0).then_some(p.num_layers),
            seed: Some(p.seed),
            ..LoraConfig::default()
        };
        if !p.keys.is_null() {
            cfg.keys = c_str(p.keys, "mlxrun_lora_params.keys")?.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect();
        }
        let info = (*model).lock().native("LoRA training")?.apply_lora(&cfg)?;
        if !trainable_params.is_null() {
            *trainable_params = info.trainable_params as u64;
        }
        Ok(())
    })
}

/// Values of `mlxrun_train_params.optimizer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_optimizer {
    /// MLX's Adam (betas 0.9, 0.999, eps 1e-8, no bias correction): mlx-lm's default.
    MLXRUN_OPTIMIZER_ADAM = 0,
    /// AdamW with weight decay 0.01.
    MLXRUN_OPTIMIZER_ADAMW = 1,
    /// Plain SGD.
    MLXRUN_OPTIMIZER_SGD = 2,
}

/// How to train. Get one from `mlxrun_train_default_params()` (mlx-lm's lora defaults).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_train_params {
    /// `sizeof(mlxrun_train_params)`.
    pub struct_size: u32,
    pub batch_size: u32,
    pub iters: u32,
    /// `MLXRUN_OPTIMIZER_*`.
    pub optimizer: i32,
    /// The learning rate (the peak, with warmup or decay).
    pub learning_rate: f32,
    /// Linear warmup steps from 0 to `learning_rate`; 0 = none.
    pub warmup: u32,
    /// Cosine decay to `lr_end` over this many steps after the warmup; 0 = constant.
    pub cosine_decay_steps: u32,
    pub lr_end: f32,
    pub grad_accumulation_steps: u32,
    pub steps_per_report: u32,
    pub steps_per_eval: u32,
    /// Validation batches per validation; -1 = the whole validation set.
    pub val_batches: i32,
    /// Write the adapter every this many steps (into `adapter_path`); 0 = only at the end.
    pub save_every: u32,
    pub max_seq_length: u32,
    pub seed: u64,
    /// Leave the prompt out of the loss (prompt/completion and chat data).
    pub mask_prompt: bool,
    /// NUL-terminated folder the adapter is written to (adapter_config.json first,
    /// adapters.safetensors at checkpoints and at the end); NULL = don't write.
    pub adapter_path: *const c_char,
    /// Gradient checkpointing: recompute each layer in the backward pass (less memory,
    /// about a third more compute). Default false.
    pub grad_checkpoint: bool,
}

/// Default training parameters: mlx-lm's (batch 4, 1000 iterations, Adam at 1e-5,
/// reports every 10 steps, validation every 200, checkpoints every 100, sequences of up
/// to 2048 tokens, seed 0).
#[no_mangle]
pub extern "C" fn mlxrun_train_default_params() -> mlxrun_train_params {
    let d = TrainConfig::default();
    mlxrun_train_params {
        struct_size: std::mem::size_of::<mlxrun_train_params>() as u32,
        batch_size: d.batch_size as u32,
        iters: d.iters as u32,
        optimizer: mlxrun_optimizer::MLXRUN_OPTIMIZER_ADAM as i32,
        learning_rate: d.schedule.peak,
        warmup: 0,
        cosine_decay_steps: 0,
        lr_end: 0.0,
        grad_accumulation_steps: d.grad_accumulation_steps as u32,
        steps_per_report: d.steps_per_report as u32,
        steps_per_eval: d.steps_per_eval as u32,
        val_batches: d.val_batches.map(|n| n as i32).unwrap_or(-1),
        save_every: d.save_every as u32,
        max_seq_length: d.max_seq_length as u32,
        seed: d.seed,
        mask_prompt: false,
        adapter_path: std::ptr::null(),
        grad_checkpoint: false,
    }
}

/// Values of `mlxrun_train_progress.kind`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mlxrun_progress_kind {
    /// A training-loss report (`train_loss`, `learning_rate`, the speeds, memory).
    MLXRUN_PROGRESS_TRAIN = 0,
    /// A validation loss (`val_loss`) after `iteration` steps.
    MLXRUN_PROGRESS_VAL = 1,
    /// The adapter was written to `message`.
    MLXRUN_PROGRESS_SAVED = 2,
    /// A warning in `message` (examples truncated to `max_seq_length`).
    MLXRUN_PROGRESS_WARNING = 3,
}

/// One report, valid for the duration of the callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mlxrun_train_progress {
    /// `MLXRUN_PROGRESS_*`.
    pub kind: i32,
    pub iteration: u32,
    pub train_loss: f32,
    pub val_loss: f32,
    pub learning_rate: f32,
    pub iterations_per_second: f64,
    pub tokens_per_second: f64,
    pub trained_tokens: u64,
    /// MLX's peak memory so far, in bytes.
    pub peak_memory: u64,
    /// NUL-terminated path (SAVED) or warning text (WARNING); NULL otherwise.
    pub message: *const c_char,
}

/// Receives each report; returning false cancels training (the call then returns
/// `MLXRUN_ERR_CANCELLED`, and the last adapter written stays as it was).
pub type mlxrun_train_callback = Option<unsafe extern "C" fn(progress: *const mlxrun_train_progress, user_data: *mut c_void) -> bool>;

const OPTIMIZERS: [(i32, fn() -> OptimizerKind); 3] = [
    (mlxrun_optimizer::MLXRUN_OPTIMIZER_ADAM as i32, OptimizerKind::adam),
    (mlxrun_optimizer::MLXRUN_OPTIMIZER_ADAMW as i32, OptimizerKind::adamw),
    (mlxrun_optimizer::MLXRUN_OPTIMIZER_SGD as i32, OptimizerKind::sgd),
];

fn train_config(p: &mlxrun_train_params) -> Result<(TrainConfig, bool), Error> {
    let optimizer = OPTIMIZERS.iter().find(|(c, _)| *c == p.optimizer).map(|(_, f)| f()).ok_or_else(|| {
        Error::invalid(format!("mlxrun_train_params.optimizer = {} is not an MLXRUN_OPTIMIZER_* value", p.optimizer))
    })?;
    let val_batches = trainer::batch_limit(p.val_batches as i64, "mlxrun_train_params.val_batches")?;
    let adapter_path = if p.adapter_path.is_null() {
        None
    } else {
        Some(PathBuf::from(unsafe { c_str(p.adapter_path, "mlxrun_train_params.adapter_path")? }))
    };
    let cfg = TrainConfig {
        batch_size: p.batch_size as usize,
        iters: p.iters as usize,
        val_batches,
        steps_per_report: p.steps_per_report as usize,
        steps_per_eval: p.steps_per_eval as usize,
        save_every: p.save_every as usize,
        max_seq_length: p.max_seq_length as usize,
        grad_accumulation_steps: p.grad_accumulation_steps as usize,
        optimizer,
        schedule: Schedule {
            peak: p.learning_rate,
            cosine_decay: (p.cosine_decay_steps > 0).then_some((p.cosine_decay_steps as usize, p.lr_end)),
            warmup: p.warmup as usize,
            warmup_init: 0.0,
        },
        seed: p.seed,
        adapter_path,
        grad_checkpoint: p.grad_checkpoint,
        compile: None,
    };
    cfg.validate()?;
    Ok((cfg, p.mask_prompt))
}

/// Trains the adapter on `model` (see `mlxrun_model_apply_lora`, `mlxrun_model_load_adapter`)
/// on the data folder `data_dir`: `train.jsonl`, and `valid.jsonl` if present, in
/// mlx-lm's formats. `callback` (may be NULL) sees every report; returning false cancels.
/// `mlxrun_cancel(model)` from another thread cancels too. A malformed line fails with
/// `MLXRUN_ERR_INVALID_ARGUMENT` naming the file and line. The model is locked for the
/// whole run.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_train(
    model: *mut mlxrun_model,
    data_dir: *const c_char,
    params: *const mlxrun_train_params,
    callback: mlxrun_train_callback,
    user_data: *mut c_void,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let dir = c_str(data_dir, "data_dir")?;
        let p = read_params(params, mlxrun_train_default_params(), std::mem::size_of::<mlxrun_train_params>(), "mlxrun_train_params")?;
        let (cfg, mask_prompt) = train_config(&p)?;
        let mut guard = (*model).lock();
        let m = guard.native("LoRA training")?;
        let splits = Splits::load(dir, m, &DatasetOptions { mask_prompt })?;
        let train = splits.train.as_ref().ok_or_else(|| Error::invalid(format!("{dir}: no train.jsonl")))?;
        let summary = m.train(train, splits.valid.as_ref(), &cfg, |progress| {
            let Some(cb) = callback else { return true };
            let mut r = mlxrun_train_progress {
                kind: 0,
                iteration: 0,
                train_loss: f32::NAN,
                val_loss: f32::NAN,
                learning_rate: f32::NAN,
                iterations_per_second: 0.0,
                tokens_per_second: 0.0,
                trained_tokens: 0,
                peak_memory: 0,
                message: std::ptr::null(),
            };
            let text;
            match progress {
                Progress::Train(t) => {
                    r.kind = mlxrun_progress_kind::MLXRUN_PROGRESS_TRAIN as i32;
                    r.iteration = t.iteration as u32;
                    r.train_loss = t.train_loss;
                    r.learning_rate = t.learning_rate;
                    r.iterations_per_second = t.iterations_per_second;
                    r.tokens_per_second = t.tokens_per_second;
                    r.trained_tokens = t.trained_tokens;
                    r.peak_memory = t.peak_memory as u64;
                }
                Progress::Val(v) => {
                    r.kind = mlxrun_progress_kind::MLXRUN_PROGRESS_VAL as i32;
                    r.iteration = v.iteration as u32;
                    r.val_loss = v.val_loss;
                }
                Progress::Saved { iteration, path } => {
                    r.kind = mlxrun_progress_kind::MLXRUN_PROGRESS_SAVED as i32;
                    r.iteration = *iteration as u32;
                    text = std::ffi::CString::new(path.display().to_string()).unwrap_or_default();
                    r.message = text.as_ptr();
                    return cb(&r, user_data);
                }
                Progress::Warning(w) => {
                    r.kind = mlxrun_progress_kind::MLXRUN_PROGRESS_WARNING as i32;
                    text = std::ffi::CString::new(w.replace('\0', " ")).unwrap_or_default();
                    r.message = text.as_ptr();
                    return cb(&r, user_data);
                }
            }
            cb(&r, user_data)
        });
        summary.map(|_| ())
    })
}

/// The mean loss of `model` (with its adapter, if any) on the JSONL file `file` (any of
/// the training formats), in batches of `params->batch_size` examples of at most
/// `params->max_seq_length` tokens, the prompt left out with `params->mask_prompt`, over
/// the first `num_batches` batches in length order (-1: all) — mlx_lm.lora's `--test`;
/// the perplexity is `exp(loss)`. `params` may be NULL for the defaults. Fails naming the
/// file and line on malformed data, or when the file has fewer examples than a batch.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_evaluate(
    model: *mut mlxrun_model,
    file: *const c_char,
    params: *const mlxrun_train_params,
    num_batches: i32,
    loss: *mut f32,
) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        non_null(loss, "loss")?;
        let file = c_str(file, "file")?;
        let p = read_params(params, mlxrun_train_default_params(), std::mem::size_of::<mlxrun_train_params>(), "mlxrun_train_params")?;
        let (cfg, mask_prompt) = train_config(&p)?;
        let num_batches = trainer::batch_limit(num_batches as i64, "num_batches")?;
        let mut guard = (*model).lock();
        let m = guard.native("LoRA evaluation")?;
        let data = Dataset::load(file, m, &DatasetOptions { mask_prompt })?;
        *loss = trainer::evaluate(m.language_model(), &data.examples, cfg.batch_size, num_batches, cfg.max_seq_length)
            .map_err(|e| trainer::with_file(e, &data.path))?;
        Ok(())
    })
}

/// Writes the model's adapter to the folder `dir` (NUL-terminated; created if needed) in
/// mlx-lm's layout: adapters.safetensors + adapter_config.json.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_save_adapter(model: *mut mlxrun_model, dir: *const c_char) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let dir = c_str(dir, "dir")?;
        (*model).lock().native("LoRA adapters")?.save_adapter(dir)
    })
}

/// Puts the adapter in the folder `dir` (mlx-lm's layout, from mlx_lm.lora or
/// `mlxrun_model_train`) on the model. Fails, leaving the model as it was, when its
/// shapes or layers do not fit the model; the error names the tensor or field.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_load_adapter(model: *mut mlxrun_model, dir: *const c_char) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        let dir = c_str(dir, "dir")?;
        (*model).lock().native("LoRA adapters")?.load_adapter(dir).map(|_| ())
    })
}

/// Takes the adapter off the model (no-op without one).
#[no_mangle]
pub unsafe extern "C" fn mlxrun_model_remove_adapter(model: *mut mlxrun_model) -> mlxrun_status {
    guard(|| {
        non_null(model, "model")?;
        (*model).lock().native("LoRA adapters")?.remove_adapter();
        Ok(())
    })
}

/// Fuses the adapter folder `adapter_dir` into the base model at `model_path` (an HF-layout
/// folder, or a GGUF file whose float tensors are written as float32) and writes the
/// result to the folder `save_dir` (created if needed), as mlx_lm.fuse does: a quantized
/// base stays quantized unless `dequantize`. The folder loads in this library and in
/// mlx-lm without the adapter. Works on files alone: no model handle is needed, and none
/// is touched. `fused_projections`, when not NULL, receives the number of projections fused.
#[no_mangle]
pub unsafe extern "C" fn mlxrun_fuse_adapter(
    model_path: *const c_char,
    adapter_dir: *const c_char,
    save_dir: *const c_char,
    dequantize: bool,
    fused_projections: *mut u64,
) -> mlxrun_status {
    guard(|| {
        let model = c_str(model_path, "model_path")?;
        let adapter = c_str(adapter_dir, "adapter_dir")?;
        let out = c_str(save_dir, "save_dir")?;
        let done = crate::train::fuse::fuse(model.as_ref(), adapter.as_ref(), out.as_ref(), dequantize, crate::mlx::Dtype::F32)?;
        if !fused_projections.is_null() {
            *fused_projections = done.fused as u64;
        }
        Ok(())
    })
}
