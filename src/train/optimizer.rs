//! The optimizers and learning-rate schedules of MLX's `mlx.optimizers`, with their
//! formulas and defaults: Adam and AdamW without bias correction (MLX's default), SGD
//! with optional momentum and weight decay, a linear warmup joined to a cosine decay.
use crate::error::{Error, Result};
use crate::mlx::Array;

/// Which update rule, with its hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `m ← β₁m + (1-β₁)g; v ← β₂v + (1-β₂)g²; w ← w - λ m / (√v + ε)`.
    Adam { betas: (f64, f64), eps: f64 },
    /// Adam applied to `w (1 - λ·weight_decay)`.
    AdamW { betas: (f64, f64), eps: f64, weight_decay: f64 },
    /// `g ← g + weight_decay·w; v ← μv + g; w ← w - λ v` (plain `w - λg` without momentum).
    Sgd { momentum: f64, weight_decay: f64 },
}

impl OptimizerKind {
    pub fn adam() -> OptimizerKind {
        OptimizerKind::Adam { betas: (0.9, 0.999), eps: 1e-8 }
    }
    pub fn adamw() -> OptimizerKind {
        OptimizerKind::AdamW { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01 }
    }
    pub fn sgd() -> OptimizerKind {
        OptimizerKind::Sgd { momentum: 0.0, weight_decay: 0.0 }
    }

    /// By mlx-lm's `--optimizer` names, with MLX's default hyperparameters.
    pub fn from_name(name: &str) -> Result<OptimizerKind> {
        match name.to_ascii_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::adam()),
            "adamw" => Ok(OptimizerKind::adamw()),
            "sgd" => Ok(OptimizerKind::sgd()),
            other => Err(Error::invalid(format!("unknown optimizer {other:?} (known: adam, adamw, sgd)"))),
        }
    }
}

/// The learning rate as a function of the update count (0 for the first update), as
/// mlx-lm's `build_schedule` makes it: an optional linear warmup from `warmup_init` to
/// `peak` over `warmup` steps, then a cosine decay from `peak` to `end` over
/// `decay_steps` (or a constant `peak` without one).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub peak: f32,
    pub cosine_decay: Option<(usize, f32)>,
    pub warmup: usize,
    pub warmup_init: f32,
}

impl Schedule {
    pub fn constant(lr: f32) -> Schedule {
        Schedule { peak: lr, cosine_decay: None, warmup: 0, warmup_init: 0.0 }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.peak.is_finite() && self.peak >= 0.0) {
            return Err(Error::invalid(format!("learning rate must be a finite number ≥ 0, not {}", self.peak)));
        }
        if let Some((0, _)) = self.cosine_decay {
            return Err(Error::invalid("cosine decay needs decay steps ≥ 1"));
        }
        Ok(())
    }

    pub fn at(&self, step: usize) -> f32 {
        let decayed = |s: usize| match self.cosine_decay {
            Some((steps, end)) => {
                let s = s.min(steps) as f64;
                let decay = 0.5 * (1.0 + (std::f64::consts::PI / steps as f64 * s).cos());
                (end as f64 + decay * (self.peak as f64 - end as f64)) as f32
            }
            None => self.peak,
        };
        // mlx-lm joins the warmup to the decay at warmup + 1: the decay starts its count
        // from 0 one step after the warmup reached its peak.
        if self.warmup > 0 && step < self.warmup + 1 {
            let s = step.min(self.warmup) as f64;
            (s * ((self.peak as f64 - self.warmup_init as f64) / self.warmup as f64) + self.warmup_init as f64) as f32
        } else if self.warmup > 0 {
            decayed(step - (self.warmup + 1))
        } else {
            decayed(step)
        }
    }
}

/// An optimizer's state for a list of parameters (the adapter's, in a fixed order).
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub schedule: Schedule,
    /// Updates made so far.
    pub step: usize,
    /// Per parameter: Adam's `(m, v)` or SGD's `(v, _)`, created at the first update.
    state: Vec<Option<(Array, Array)>>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, schedule: Schedule) -> Result<Optimizer> {
        schedule.validate()?;
        Ok(Optimizer { kind, schedule, step: 0, state: Vec::new() })
    }

    /// The learning rate the next update uses.
    pub fn learning_rate(&self) -> f32 {
        self.schedule.at(self.step)
    }

    /// The state arrays, to evaluate with the parameters after an update.
    pub fn state_arrays(&self) -> Vec<&Array> {
        self.state.iter().flatten().flat_map(|(a, b)| [a, b]).collect()
    }

    /// The parameters after one update with `grads`.
    pub fn update(&mut self, params: &[Array], grads: &[Array]) -> Result<Vec<Array>> {
        if params.len() != grads.len() {
            return Err(Error::invalid(format!("{} gradients for {} parameters", grads.len(), params.len())));
        }
        if self.state.is_empty() {
            self.state = (0..params.len()).map(|_| None).collect();
        }
        let lr = Array::scalar(self.learning_rate())?;
        self.step += 1;
        let mut out = Vec::with_capacity(params.len());
        for ((p, g), state) in params.iter().zip(grads).zip(self.state.iter_mut()) {
            let lr = lr.astype(g.dtype())?;
            let (m0, v0) = match state.take() {
                Some(s) => s,
                None => (Array::zeros(&p.shape(), p.dtype())?, Array::zeros(&p.shape(), p.dtype())?),
            };
            let (new_p, new_state) = match self.kind {
                OptimizerKind::Adam { betas, eps } => adam(p, g, &lr, betas, eps, m0, v0)?,
                OptimizerKind::AdamW { betas, eps, weight_decay } => {
                    // MLX computes (1 - lr·wd) as an array and scales the parameter by it.
                    let keep = lr.mul_scalar(weight_decay)?.neg()?.add_scalar(1.0)?;
                    adam(&p.mul(&keep)?, g, &lr, betas, eps, m0, v0)?
                }
                OptimizerKind::Sgd { momentum, weight_decay } => {
                    let g = if weight_decay != 0.0 { g.add(&p.mul_scalar(weight_decay)?)? } else { g.clone() };
                    if momentum <= 0.0 {
                        (p.sub(&lr.mul(&g)?)?, (m0, v0))
                    } else {
                        let v = m0.mul_scalar(momentum)?.add(&g)?;
                        (p.sub(&lr.mul(&v)?)?, (v, v0))
                    }
                }
            };
            *state = Some(new_state);
            out.push(new_p);
        }
        Ok(out)
    }
}

fn adam(p: &Array, g: &Array, lr: &Array, (b1, b2): (f64, f64), eps: f64, m: Array, v: Array) -> Result<(Array, (Array, Array))> {
    let m = m.mul_scalar(b1)?.add(&g.mul_scalar(1.0 - b1)?)?;
    let v = v.mul_scalar(b2)?.add(&g.square()?.mul_scalar(1.0 - b2)?)?;
    let step = lr.mul(&m)?.div(&v.sqrt()?.add_scalar(eps)?)?;
    Ok((p.sub(&step)?, (m, v)))
}
