//! The training loop, step for step mlx-lm's `trainer.train`: batches in a seeded random
//! order, the loss and the adapter's gradients from `value_and_grad`, gradients summed
//! over `grad_accumulation_steps` batches and averaged before each optimizer update,
//! validation before the first step, every `steps_per_eval` steps and after the last,
//! reports every `steps_per_report` steps, checkpoints every `save_every` steps.
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::adapter;
use super::batch::{batch_indices, make_batch, Batch, Shuffler};
use super::dataset::{Dataset, Example};
use super::loss::loss;
use super::optimizer::{Optimizer, OptimizerKind, Schedule};
use crate::engine::Model;
use crate::error::{Error, Result};
use crate::mlx::{eval, memory, value_and_grad, with_compiled, Array, Compiled, Device};
use crate::models::LanguageModel;

/// How to train; the defaults are mlx-lm's `lora` defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Optimizer updates... strictly, batches: with gradient accumulation an update is
    /// made every `grad_accumulation_steps` iterations.
    pub iters: usize,
    /// Validation batches per evaluation; `None` for the whole validation set.
    pub val_batches: Option<usize>,
    pub steps_per_report: usize,
    pub steps_per_eval: usize,
    /// Write the adapter every this many iterations (with `adapter_path`); 0 for never.
    pub save_every: usize,
    /// Longer examples are truncated to this many tokens (with a warning, as mlx-lm does).
    pub max_seq_length: usize,
    pub grad_accumulation_steps: usize,
    pub optimizer: OptimizerKind,
    pub schedule: Schedule,
    /// Seeds the batch order and MLX's generator (dropout).
    pub seed: u64,
    /// The adapter folder: `adapter_config.json` at the start, `adapters.safetensors` at
    /// each checkpoint and at the end, with a numbered copy per checkpoint.
    pub adapter_path: Option<PathBuf>,
    /// Gradient checkpointing: each decoder layer's activations are recomputed in the
    /// backward pass instead of kept from the forward one (mlx-lm's `--grad-checkpoint`):
    /// less memory for about a third more compute.
    pub grad_checkpoint: bool,
    /// Compile each step's forward and backward pass into fused kernels (mlx-lm compiles
    /// its step). `None`: on a GPU only — on the CPU, MLX builds fused kernels with the C++
    /// compiler at run time, once per batch shape, which costs more than it saves. Adapters
    /// with dropout are never compiled (a compiled step would replay one dropout mask).
    pub compile: Option<bool>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 4,
            iters: 1000,
            val_batches: Some(25),
            steps_per_report: 10,
            steps_per_eval: 200,
            save_every: 100,
            max_seq_length: 2048,
            grad_accumulation_steps: 1,
            optimizer: OptimizerKind::adam(),
            schedule: Schedule::constant(1e-5),
            seed: 0,
            adapter_path: None,
            grad_checkpoint: false,
            compile: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("batch_size", self.batch_size),
            ("iters", self.iters),
            ("steps_per_report", self.steps_per_report),
            ("steps_per_eval", self.steps_per_eval),
            ("grad_accumulation_steps", self.grad_accumulation_steps),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::invalid(format!("{name} must be at least 1")));
        }
        if self.max_seq_length < 2 {
            return Err(Error::invalid("max_seq_length must be at least 2 (an input and a target)"));
        }
        self.schedule.validate()
    }
}

/// A batch count where -1 means all of them (mlx-lm's `--val-batches`, `--test-batches`):
/// `None` for -1; `what` names the setting in the error.
pub fn batch_limit(n: i64, what: &str) -> Result<Option<usize>> {
    match n {
        -1 => Ok(None),
        n if n >= 1 => Ok(Some(n as usize)),
        n => Err(Error::invalid(format!("{what} must be -1 (all) or at least 1, not {n}"))),
    }
}

/// Training-loss report, every `steps_per_report` iterations (and after the last).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    pub iteration: usize,
    /// The mean loss of the iterations since the last report.
    pub train_loss: f32,
    /// The learning rate the next update uses.
    pub learning_rate: f32,
    pub iterations_per_second: f64,
    pub tokens_per_second: f64,
    /// Loss tokens trained on so far.
    pub trained_tokens: u64,
    /// MLX's peak memory so far, in bytes.
    pub peak_memory: usize,
}

/// Validation-loss report: the loss after `iteration` iterations.
#[derive(Clone, Debug, PartialEq)]
pub struct ValReport {
    pub iteration: usize,
    pub val_loss: f32,
    pub seconds: f64,
}

/// What training tells its caller as it goes. Returning `false` from the callback
/// cancels training, as the model's canceller does.
#[derive(Debug)]
pub enum Progress<'a> {
    Train(&'a TrainReport),
    Val(&'a ValReport),
    /// The adapter was written (a checkpoint or the final one).
    Saved { iteration: usize, path: &'a Path },
    Warning(&'a str),
}

/// The end of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainSummary {
    pub iterations: usize,
    pub reports: Vec<TrainReport>,
    pub validations: Vec<ValReport>,
    pub trained_tokens: u64,
    pub seconds: f64,
}

/// The loss over `num_batches` batches of `data` (in length order; `None`: all of them),
/// weighted by their token counts, as mlx-lm's `evaluate` computes it.
pub fn evaluate(model: &dyn LanguageModel, data: &[Example], batch_size: usize, num_batches: Option<usize>, max_seq_length: usize) -> Result<f32> {
    let batches = batch_indices(data, batch_size)?;
    let take = num_batches.unwrap_or(batches.len()).min(batches.len());
    let (mut total, mut ntoks) = (0f64, 0f64);
    for rows in &batches[..take] {
        let b = make_batch(data, rows, max_seq_length)?;
        let (l, n) = loss(model, &b.tokens, &b.lengths)?;
        let n = n.astype(crate::mlx::Dtype::F32)?;
        eval(&[&l, &n])?;
        let n = n.item::<f32>()? as f64;
        total += l.item::<f32>()? as f64 * n;
        ntoks += n;
    }
    Ok((total / ntoks.max(1.0)) as f32)
}

/// One forward and backward pass: `(loss, tokens, gradients)` of the adapter parameters
/// `params` (in [`adapter::parameters`]' order) on `batch`.
pub fn loss_and_grad(model: &mut dyn LanguageModel, params: &[Array], batch: &Batch) -> Result<(Array, Array, Vec<Array>)> {
    loss_and_grad_of(model, params, &batch.tokens, &batch.lengths)
}

/// [`loss_and_grad`] of a batch given by its arrays (`tokens`, `lengths`).
fn loss_and_grad_of(model: &mut dyn LanguageModel, params: &[Array], tokens: &Array, lengths: &Array) -> Result<(Array, Array, Vec<Array>)> {
    let argnums: Vec<i32> = (0..params.len() as i32).collect();
    let refs: Vec<&Array> = params.iter().collect();
    let result = value_and_grad(
        |inputs| {
            adapter::set_parameters(model, inputs)?;
            let (l, n) = loss(model, tokens, lengths)?;
            Ok(vec![l, n])
        },
        &refs,
        &argnums,
    );
    // The traced inputs must not stay in the model, whatever happened.
    adapter::set_parameters(model, params)?;
    let (mut values, grads) = result?;
    let n = values.pop().ok_or_else(|| Error::invalid("the loss returned no token count"))?;
    let l = values.pop().ok_or_else(|| Error::invalid("the loss returned no value"))?;
    Ok((l, n, grads))
}

impl Model {
    /// Trains the adapter on the model (see [`Model::apply_lora`]) on `train`, validating
    /// on `valid`. `on_progress` sees each report; returning `false` cancels. A cancelled
    /// or failed run returns its error and leaves the last adapter written intact.
    pub fn train(
        &mut self,
        train: &Dataset,
        valid: Option<&Dataset>,
        cfg: &TrainConfig,
        mut on_progress: impl FnMut(&Progress<'_>) -> bool,
    ) -> Result<TrainSummary> {
        cfg.validate()?;
        self.begin_call();
        let (lora_cfg, info) = self.adapter().cloned().ok_or_else(|| Error::invalid("the model has no adapter to train: apply LoRA or load an adapter first"))?;
        let batches = batch_indices(&train.examples, cfg.batch_size).map_err(|e| with_file(e, &train.path))?;
        if let Some(v) = valid {
            batch_indices(&v.examples, cfg.batch_size).map_err(|e| with_file(e, &v.path))?;
        }
        if let Some(dir) = &cfg.adapter_path {
            adapter::save_config(dir, &lora_cfg, &info)?;
        }
        crate::mlx::random::seed(cfg.seed)?;
        let mut order = Shuffler::new(cfg.seed);
        let cancel = self.canceller();
        let mut optimizer = Optimizer::new(cfg.optimizer.clone(), cfg.schedule.clone())?;
        let on_gpu = Device::default_device()? != Device::cpu();
        let compile = cfg.compile.unwrap_or(on_gpu) && lora_cfg.dropout == 0.0;
        // The model, borrowed in turn by the loop and by the traced step (MLX traces it
        // inside the loop's calls of the compiled step, while the loop holds no borrow).
        let model = RefCell::new(self.language_model_mut());
        let lm = || model.borrow_mut();
        // The step as a function of arrays, for compiling: [params…, tokens, lengths] →
        // [loss, tokens, gradients…].
        let traced = |inputs: &[Array]| -> Result<Vec<Array>> {
            let k = inputs.len().checked_sub(2).ok_or_else(|| Error::invalid("a training step called without its batch"))?;
            let (l, n, grads) = loss_and_grad_of(&mut **lm(), &inputs[..k], &inputs[k], &inputs[k + 1])?;
            Ok([l, n].into_iter().chain(grads).collect())
        };
        // The loop, in a closure so that dropout is switched off however it ends.
        let mut run = |compiled: Option<&Compiled>| -> Result<TrainSummary> {
            let mut summary = TrainSummary::default();
            let start = Instant::now();
            let (mut window_loss, mut window_tokens, mut window_steps, mut window_time) = (0f64, 0u64, 0usize, 0f64);
            let mut accumulated: Option<Vec<Array>> = None;
            let mut epoch: Vec<usize> = Vec::new();
            let mut warned = false;
            let stop = |keep_going: bool| if keep_going && !cancel.is_cancelled() { Ok(()) } else { Err(Error::Cancelled) };

            for it in 1..=cfg.iters {
                if let Some(v) = valid.filter(|_| it == 1 || it % cfg.steps_per_eval == 0 || it == cfg.iters) {
                    let t = Instant::now();
                    adapter::set_training(&mut **lm(), false);
                    lm().set_grad_checkpoint(false);
                    let val_loss = evaluate(&**lm(), &v.examples, cfg.batch_size, cfg.val_batches, cfg.max_seq_length)?;
                    let report = ValReport { iteration: it - 1, val_loss, seconds: t.elapsed().as_secs_f64() };
                    stop(on_progress(&Progress::Val(&report)))?;
                    summary.validations.push(report);
                }
                let tic = Instant::now();
                if epoch.is_empty() {
                    epoch = order.permutation(batches.len());
                    epoch.reverse();
                }
                let rows = &batches[epoch.pop().expect("an epoch has batches")];
                let batch = make_batch(&train.examples, rows, cfg.max_seq_length)?;
                if let (Some((rows_cut, longest)), false) = (batch.truncated, warned) {
                    let msg = format!(
                        "{rows_cut} example(s) of a batch are longer than max_seq_length={} (the longest has {longest} tokens) and were truncated",
                        cfg.max_seq_length
                    );
                    warned = true;
                    stop(on_progress(&Progress::Warning(&msg)))?;
                }
                adapter::set_training(&mut **lm(), true);
                lm().set_grad_checkpoint(cfg.grad_checkpoint);
                let params: Vec<Array> = adapter::parameters(&mut **lm()).into_iter().map(|(_, a)| a).collect();
                let (l, n, grads) = match compiled {
                    Some(step) => {
                        let mut inputs: Vec<&Array> = params.iter().collect();
                        inputs.extend([&batch.tokens, &batch.lengths]);
                        let outputs = step.call(&inputs);
                        // A trace leaves its placeholder arrays in the adapter.
                        adapter::set_parameters(&mut **lm(), &params)?;
                        let mut outputs = outputs?.into_iter();
                        let (Some(l), Some(n)) = (outputs.next(), outputs.next()) else {
                            return Err(Error::invalid("the compiled training step returned no loss"));
                        };
                        (l, n, outputs.collect())
                    }
                    None => loss_and_grad(&mut **lm(), &params, &batch)?,
                };
                let grads = match accumulated.take() {
                    Some(prev) => prev.iter().zip(&grads).map(|(a, b)| a.add(b)).collect::<Result<Vec<_>>>()?,
                    None => grads,
                };
                if it % cfg.grad_accumulation_steps == 0 {
                    let grads = if cfg.grad_accumulation_steps > 1 {
                        let k = cfg.grad_accumulation_steps as f64;
                        grads.iter().map(|g| g.div(&g.scalar_like(k)?)).collect::<Result<Vec<_>>>()?
                    } else {
                        grads
                    };
                    let updated = optimizer.update(&params, &grads)?;
                    adapter::set_parameters(&mut **lm(), &updated)?;
                    let mut to_eval: Vec<&Array> = updated.iter().collect();
                    to_eval.extend(optimizer.state_arrays());
                    to_eval.extend([&l, &n]);
                    eval(&to_eval)?;
                } else {
                    let mut to_eval: Vec<&Array> = grads.iter().collect();
                    to_eval.extend([&l, &n]);
                    eval(&to_eval)?;
                    accumulated = Some(grads);
                }
                window_loss += l.item::<f32>()? as f64;
                window_tokens += n.astype(crate::mlx::Dtype::F32)?.item::<f32>()? as u64;
                window_steps += 1;
                window_time += tic.elapsed().as_secs_f64();
                summary.iterations = it;

                if it % cfg.steps_per_report == 0 || it == cfg.iters {
                    summary.trained_tokens += window_tokens;
                    let report = TrainReport {
                        iteration: it,
                        train_loss: (window_loss / window_steps as f64) as f32,
                        learning_rate: optimizer.learning_rate(),
                        iterations_per_second: window_steps as f64 / window_time.max(1e-9),
                        tokens_per_second: window_tokens as f64 / window_time.max(1e-9),
                        trained_tokens: summary.trained_tokens,
                        peak_memory: memory::peak_memory(),
                    };
                    (window_loss, window_tokens, window_steps, window_time) = (0.0, 0, 0, 0.0);
                    let keep_going = on_progress(&Progress::Train(&report));
                    summary.reports.push(report);
                    stop(keep_going)?;
                } else {
                    stop(true)?;
                }
                if let Some(dir) = cfg.adapter_path.as_deref().filter(|_| cfg.save_every > 0 && it % cfg.save_every == 0) {
                    let file = dir.join(adapter::ADAPTER_FILE);
                    adapter::save_weights(&mut **lm(), &file)?;
                    adapter::save_weights(&mut **lm(), &dir.join(format!("{it:07}_adapters.safetensors")))?;
                    stop(on_progress(&Progress::Saved { iteration: it, path: &file }))?;
                }
            }
            if let Some(dir) = &cfg.adapter_path {
                let file = dir.join(adapter::ADAPTER_FILE);
                adapter::save_weights(&mut **lm(), &file)?;
                on_progress(&Progress::Saved { iteration: cfg.iters, path: &file });
            }
            summary.seconds = start.elapsed().as_secs_f64();
            Ok(summary)
        };
        let result = if compile { with_compiled(traced, |step| run(Some(step))).and_then(|r| r) } else { run(None) };
        adapter::set_training(&mut **lm(), false);
        lm().set_grad_checkpoint(false);
        result
    }
}

/// `e` with the data file's name in front of an invalid-argument message.
pub fn with_file(e: Error, path: &Path) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::invalid(format!("{}: {m}", path.display())),
        other => other,
    }
}
