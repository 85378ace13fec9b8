//! `mlxrun train`: LoRA fine-tuning with mlx_lm.lora's flag names and defaults. Reports go
//! to stdout as mlx-lm prints them (or one JSON object per line with `--json`); a progress
//! bar on stderr when it is a terminal; the adapter folder loads with `--adapter-path`.
//! `--plot` draws the losses into an SVG when training ends, however it ends.
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::progress::Bar;
use super::ModelArgs;
use crate::error::{Error, Result};
use crate::train::{trainer, DatasetOptions, LoraConfig, OptimizerKind, Progress, Schedule, Splits, TrainConfig};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The data folder: train.jsonl, and valid.jsonl / test.jsonl if present
    #[arg(long, value_name = "DIR", help_heading = "Data")]
    pub data: PathBuf,

    /// Leave the prompt out of the loss (prompt/completion and chat data)
    #[arg(long, help_heading = "Data")]
    pub mask_prompt: bool,

    /// Longer examples are truncated to this many tokens, with a warning
    #[arg(long, default_value_t = 2048, value_name = "N", help_heading = "Data")]
    pub max_seq_length: usize,

    /// Rank of the adapters
    #[arg(long, default_value_t = 8, value_name = "R", allow_negative_numbers = true, help_heading = "Adapter")]
    pub rank: i32,

    /// Scale of the adapters' output (mlx-lm's "scale")
    #[arg(long, default_value_t = 20.0, value_name = "S", help_heading = "Adapter")]
    pub scale: f32,

    /// PEFT-style alpha; sets the scale to alpha / rank
    #[arg(long, value_name = "A", conflicts_with = "scale", help_heading = "Adapter")]
    pub alpha: Option<f32>,

    /// Dropout on the adapters' input
    #[arg(long, default_value_t = 0.0, value_name = "P", help_heading = "Adapter")]
    pub dropout: f32,

    /// Projections to adapt, comma-separated: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj", value_name = "KEYS", help_heading = "Adapter")]
    pub lora_keys: Vec<String>,

    /// Adapt the last N layers [default: all]
    #[arg(long, value_name = "N", allow_negative_numbers = true, help_heading = "Adapter")]
    pub num_layers: Option<i32>,

    /// Start from these adapter weights (an adapters.safetensors of the same configuration)
    #[arg(long, value_name = "FILE", help_heading = "Adapter")]
    pub resume_adapter_file: Option<PathBuf>,

    /// Minibatch size
    #[arg(long, default_value_t = 4, value_name = "N", help_heading = "Training")]
    pub batch_size: usize,

    /// Iterations to train for
    #[arg(long, default_value_t = 1000, value_name = "N", help_heading = "Training")]
    pub iters: usize,

    /// Optimizer: adam, adamw or sgd
    #[arg(long, default_value = "adam", value_name = "NAME", help_heading = "Training")]
    pub optimizer: String,

    /// Learning rate (the peak, with a schedule)
    #[arg(long, default_value_t = 1e-5, value_name = "LR", help_heading = "Training")]
    pub learning_rate: f32,

    /// Linear warmup steps from 0 to the learning rate (0: none)
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Training")]
    pub warmup: usize,

    /// Cosine decay of the learning rate over N steps (after the warmup) [default: constant]
    #[arg(long, value_name = "N", help_heading = "Training")]
    pub cosine_decay_steps: Option<usize>,

    /// The learning rate the cosine decay ends at
    #[arg(long, default_value_t = 0.0, value_name = "LR", help_heading = "Training")]
    pub lr_end: f32,

    /// Batches whose gradients are summed before each update
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = "Training")]
    pub grad_accumulation_steps: usize,

    /// Recompute each layer's activations in the backward pass: less memory, more compute
    #[arg(long, help_heading = "Training")]
    pub grad_checkpoint: bool,

    /// Seed of the batch order and of dropout
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Training")]
    pub seed: u64,

    /// Training steps between loss reports
    #[arg(long, default_value_t = 10, value_name = "N", help_heading = "Reports")]
    pub steps_per_report: usize,

    /// Training steps between validations
    #[arg(long, default_value_t = 200, value_name = "N", help_heading = "Reports")]
    pub steps_per_eval: usize,

    /// Validation batches per validation; -1 for the whole set
    #[arg(long, default_value_t = 25, value_name = "N", allow_negative_numbers = true, help_heading = "Reports")]
    pub val_batches: i64,

    /// Write the adapter every N iterations (0: only at the end)
    #[arg(long, default_value_t = 100, value_name = "N", help_heading = "Reports")]
    pub save_every: usize,

    /// After training, the loss and perplexity on test.jsonl
    #[arg(long, help_heading = "Reports")]
    pub test: bool,

    /// Test batches; -1 for the whole set
    #[arg(long, default_value_t = 500, value_name = "N", allow_negative_numbers = true, help_heading = "Reports")]
    pub test_batches: i64,

    /// Print one JSON object per report instead of text
    #[arg(long, help_heading = "Reports")]
    pub json: bool,

    /// Draw the training and validation losses against the iteration into this SVG file when
    /// training ends (also when it fails or Ctrl-C stops it)
    #[arg(long, value_name = "FILE.svg", help_heading = "Reports")]
    pub plot: Option<PathBuf>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut load = args.model.options()?;
    let adapter_path = load.adapter_path.take().unwrap_or_else(|| PathBuf::from("adapters"));
    let lora = LoraConfig {
        rank: args.rank,
        scale: args.scale,
        dropout: args.dropout,
        num_layers: args.num_layers,
        keys: args.lora_keys.clone(),
        seed: Some(args.seed),
        ..LoraConfig::default()
    };
    let lora = match args.alpha {
        Some(a) => lora.with_alpha(a),
        None => lora,
    };
    let cfg = TrainConfig {
        batch_size: args.batch_size,
        iters: args.iters,
        val_batches: trainer::batch_limit(args.val_batches, "--val-batches")?,
        steps_per_report: args.steps_per_report,
        steps_per_eval: args.steps_per_eval,
        save_every: args.save_every,
        max_seq_length: args.max_seq_length,
        grad_accumulation_steps: args.grad_accumulation_steps,
        optimizer: OptimizerKind::from_name(&args.optimizer)?,
        schedule: Schedule {
            peak: args.learning_rate,
            cosine_decay: args.cosine_decay_steps.map(|n| (n, args.lr_end)),
            warmup: args.warmup,
            warmup_init: 0.0,
        },
        seed: args.seed,
        adapter_path: Some(adapter_path.clone()),
        grad_checkpoint: args.grad_checkpoint,
        compile: None,
    };
    let test_batches = trainer::batch_limit(args.test_batches, "--test-batches")?;
    cfg.validate()?;
    if let Some(p) = &args.plot {
        super::plot::check_path(p)?;
    }

    let mut model = args.model.load(&load)?;
    let data_opts = DatasetOptions { mask_prompt: args.mask_prompt };
    let splits = Splits::load(&args.data, &mut model, &data_opts)?;
    let train = splits.train.as_ref().ok_or_else(|| {
        Error::invalid(format!("{}: no train.jsonl: training needs one", args.data.display()))
    })?;
    let info = model.apply_lora(&lora)?;
    if let Some(file) = &args.resume_adapter_file {
        model.load_adapter_weights(file)?;
    }
    let json = args.json;
    if json {
        println!("{}", json!({"event": "start", "trainable_parameters": info.trainable_params, "modules": info.modules.len(), "examples": train.len(), "adapter_path": adapter_path.display().to_string()}));
    } else {
        println!(
            "Trainable parameters: {} in {} projections; {} training examples; adapter in {}",
            info.trainable_params,
            info.modules.len(),
            train.len(),
            adapter_path.display()
        );
    }
    let bar = Bar::new("training");
    let (mut train_points, mut val_points) = (Vec::new(), Vec::new());
    // With a plot to draw, Ctrl-C stops training after the step in progress instead of
    // killing the program, so that the plot shows how far it got.
    let interrupt = args.plot.as_ref().map(|_| interrupt::Stop::install(model.canceller()));
    let summary = model.train(train, splits.valid.as_ref(), &cfg, |p| {
        match p {
            Progress::Train(t) => train_points.push((t.iteration, t.train_loss)),
            Progress::Val(v) => val_points.push((v.iteration, v.val_loss)),
            _ => {}
        }
        report(p, json, &bar, cfg.iters);
        !interrupt.as_ref().is_some_and(interrupt::Stop::requested)
    });
    drop(interrupt);
    bar.clear();
    if let Some(path) = &args.plot {
        let plotted = plot(path, &args, &train_points, &val_points, json);
        match (&summary, plotted) {
            (Ok(_), plotted) => plotted?,
            // The training error is the one to report.
            (Err(_), Err(e)) => eprintln!("mlxrun: {e}"),
            (Err(_), Ok(())) => {}
        }
    }
    summary?;
    if args.test {
        let test = splits.test.as_ref().ok_or_else(|| Error::invalid(format!("{}: --test needs test.jsonl", args.data.display())))?;
        let loss = trainer::evaluate(model.language_model(), &test.examples, cfg.batch_size, test_batches, cfg.max_seq_length)?;
        if json {
            println!("{}", json!({"event": "test", "test_loss": loss, "test_ppl": (loss as f64).exp()}));
        } else {
            println!("Test loss {loss:.3}, Test ppl {:.3}.", (loss as f64).exp());
        }
    }
    Ok(())
}

/// Draws the losses into `path` if there are any, and says so.
fn plot(path: &Path, args: &TrainArgs, train: &[(usize, f32)], val: &[(usize, f32)], json: bool) -> Result<()> {
    if train.is_empty() && val.is_empty() {
        return Ok(());
    }
    let name = |p: &Path| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
    let title = format!("LoRA: {} on {}", name(Path::new(&args.model.model)), name(&args.data));
    super::plot::draw(path, &title, train, val)?;
    if json {
        println!("{}", json!({"event": "plot", "path": path.display().to_string(), "train_points": train.len(), "val_points": val.len()}));
    } else {
        println!("Plotted the losses in {}.", path.display());
    }
    Ok(())
}

/// Ctrl-C (SIGINT) as a request to stop training: the handler cancels the model's training
/// at its next step and puts the default action back, so a second Ctrl-C quits at once.
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    use crate::engine::CancelToken;

    static REQUESTED: AtomicBool = AtomicBool::new(false);
    static TOKEN: OnceLock<CancelToken> = OnceLock::new();

    /// The handler, installed while this lives.
    pub struct Stop;

    impl Stop {
        pub fn install(token: CancelToken) -> Stop {
            let _ = TOKEN.set(token);
            REQUESTED.store(false, Ordering::SeqCst);
            #[cfg(unix)]
            // SAFETY: the handler only stores to atomics, writes to stderr and resets the
            // signal's action, all async-signal-safe.
            unsafe {
                libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
            }
            Stop
        }

        /// Whether Ctrl-C was pressed since [`Stop::install`].
        pub fn requested(&self) -> bool {
            REQUESTED.load(Ordering::SeqCst)
        }
    }

    impl Drop for Stop {
        fn drop(&mut self) {
            #[cfg(unix)]
            // SAFETY: restores the default action.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
            }
        }
    }

    #[cfg(unix)]
    extern "C" fn on_sigint(_: libc::c_int) {
        REQUESTED.store(true, Ordering::SeqCst);
        if let Some(t) = TOKEN.get() {
            t.cancel();
        }
        let msg = b"\nmlxrun: stopping after this step (Ctrl-C again quits at once)\n";
        // SAFETY: write(2) and signal(2) are async-signal-safe; msg outlives the call.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
}

fn report(p: &Progress<'_>, json: bool, bar: &Bar, iters: usize) {
    if let Progress::Train(t) = p {
        bar.update(t.iteration, iters, "steps");
    }
    // The bar steps aside while a report line is printed.
    bar.suspend(|| print_report(p, json));
}

fn print_report(p: &Progress<'_>, json: bool) {
    match p {
        Progress::Train(t) => {
            if json {
                println!("{}", json!({"event": "train", "iteration": t.iteration, "train_loss": t.train_loss, "learning_rate": t.learning_rate, "iterations_per_second": t.iterations_per_second, "tokens_per_second": t.tokens_per_second, "trained_tokens": t.trained_tokens, "peak_memory": t.peak_memory}));
            } else {
                println!(
                    "Iter {}: Train loss {:.3}, Learning Rate {:.3e}, It/sec {:.3}, Tokens/sec {:.3}, Trained Tokens {}, Peak mem {:.3} GB",
                    t.iteration,
                    t.train_loss,
                    t.learning_rate,
                    t.iterations_per_second,
                    t.tokens_per_second,
                    t.trained_tokens,
                    t.peak_memory as f64 / 1e9
                );
            }
        }
        Progress::Val(v) => {
            if json {
                println!("{}", json!({"event": "val", "iteration": v.iteration, "val_loss": v.val_loss, "val_time": v.seconds}));
            } else {
                println!("Iter {}: Val loss {:.3}, Val took {:.3}s", v.iteration, v.val_loss, v.seconds);
            }
        }
        Progress::Saved { iteration, path } => {
            if json {
                println!("{}", json!({"event": "saved", "iteration": iteration, "path": path.display().to_string()}));
            } else {
                println!("Iter {iteration}: Saved adapter weights to {}.", path.display());
            }
        }
        Progress::Warning(w) => eprintln!("mlxrun: warning: {w}"),
    }
}
