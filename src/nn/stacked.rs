//! Projections of one input stacked into one matrix, for decoding on a GPU.
//!
//! A decode step multiplies one row by each layer's q, k and v matrices and by its gate and
//! up matrices: five matrix-vector products, each a kernel launch that costs more than its
//! arithmetic at that size. Stacked row-wise they are two. Each part's own weights become
//! a view of its rows of the stacked matrix, so nothing is held twice, and the parts still
//! serve multi-row passes (prefill), which thus compute exactly what mlx-lm computes. A
//! one-row product through the stack computes the same dot products over the same columns.
//!
//! Models stack their projections on a GPU (`LoadOptions::stack_projections`): on the CPU
//! a product has no launch cost to save.
use super::quantized::Weight;
use super::Linear;
use crate::mlx::quant::Quantized;
use crate::mlx::{concatenate, eval, Array};
use crate::Result;

#[derive(Clone)]
pub struct Stacked {
    linear: Linear,
    /// Output columns of each part, in order.
    sizes: Vec<i32>,
}

impl Stacked {
    /// Stacks `parts` when they can be (no adapters; all dense in one dtype, or all packed
    /// alike; biases on all or none) and points each part at its rows of the stack.
    /// `None` leaves the parts as they were.
    pub fn new(parts: &mut [&mut Linear]) -> Result<Option<Stacked>> {
        if parts.len() < 2 || parts.iter().any(|p| p.lora.is_some()) {
            return Ok(None);
        }
        let bias = match parts.iter().filter(|p| p.bias.is_some()).count() {
            0 => None,
            n if n == parts.len() => Some(concatenate(
                &parts
                    .iter()
                    .filter_map(|p| p.bias.as_ref())
                    .collect::<Vec<_>>(),
                0,
            )?),
            _ => return Ok(None),
        };
        let weight = match &parts[0].weight {
            Weight::Dense(w0) => {
                let ws: Option<Vec<&Array>> = parts
                    .iter()
                    .map(|p| match &p.weight {
                        Weight::Dense(w)
                            if w.dtype() == w0.dtype() && w.shape()[1] == w0.shape()[1] =>
                        {
                            Some(w)
                        }
                        _ => None,
                    })
                    .collect();
                let Some(ws) = ws else { return Ok(None) };
                Weight::Dense(concatenate(&ws, 0)?)
            }
            Weight::Quantized { q: q0, dtype } => {
                let qs: Option<Vec<&Quantized>> = parts
                    .iter()
                    .map(|p| match &p.weight {
                        Weight::Quantized { q, dtype: d }
                            if d == dtype
                                && q.params() == q0.params()
                                && q.weight.shape()[1] == q0.weight.shape()[1]
                                && q.biases.is_some() == q0.biases.is_some() =>
                        {
                            Some(q)
                        }
                        _ => None,
                    })
                    .collect();
                let Some(qs) = qs else { return Ok(None) };
                let cat = |f: fn(&Quantized) -> Option<&Array>| -> Result<Option<Array>> {
                    let arrays: Option<Vec<&Array>> = qs.iter().map(|q| f(q)).collect();
                    arrays.map(|a| concatenate(&a, 0)).transpose()
                };
                let stacked = Quantized {
                    weight: cat(|q| Some(&q.weight))?.expect("every part has packed weights"),
                    scales: cat(|q| Some(&q.scales))?.expect("every part has scales"),
                    biases: cat(|q| q.biases.as_ref())?,
                    ..q0.clone()
                };
                Weight::Quantized {
                    q: stacked,
                    dtype: *dtype,
                }
            }
        };
        let sizes: Vec<i32> = parts.iter().map(|p| p.dims().1).collect();
        let mut linear = Linear { weight, bias, lora: None, transposed: None, parallel: Default::default() };
        // Made now, so that the parts' old arrays can go.
        let mut arrays = match &linear.weight {
            Weight::Dense(w) => vec![w],
            Weight::Quantized { q, .. } => [Some(&q.weight), Some(&q.scales), q.biases.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
        };
        arrays.extend(linear.bias.as_ref());
        eval(&arrays)?;
        let mut start = 0;
        for (part, &n) in parts.iter_mut().zip(&sizes) {
            let rows = |a: &Array| a.slice_axis(0, start, start + n);
            part.weight = match &linear.weight {
                Weight::Dense(w) => Weight::Dense(rows(w)?),
                Weight::Quantized { q, dtype } => Weight::Quantized {
                    q: Quantized {
                        weight: rows(&q.weight)?,
                        scales: rows(&q.scales)?,
                        biases: q.biases.as_ref().map(rows).transpose()?,
                        ..q.clone()
                    },
                    dtype: *dtype,
                },
            };
            part.bias = linear.bias.as_ref().map(rows).transpose()?;
            part.prepare()?;
            start += n;
        }
        linear.prepare()?;
        Ok(Some(Stacked { linear, sizes }))
    }

    /// Whether the stack serves input `x: [batch, seq, in]`: single-position steps only
    /// (multi-row products go through the parts, as mlx-lm computes them).
    pub fn serves(&self, x: &Array) -> bool {
        x.ndim() == 3 && x.shape()[1] == 1
    }

    /// Each of `parts`' outputs for `x`: through `stack`, the stack of those parts, where it
    /// serves `x`, else part by part.
    pub fn project<const N: usize>(stack: Option<&Stacked>, parts: [&Linear; N], x: &Array) -> Result<[Array; N]> {
        let outs = match stack.filter(|s| s.serves(x)) {
            Some(s) => s.forward(x)?,
            None => parts.iter().map(|p| p.forward(x)).collect::<Result<Vec<_>>>()?,
        };
        let n = outs.len();
        outs.try_into().map_err(|_| crate::Error::Mlx(format!("{n} projections where {N} were stacked")))
    }

    /// For one position `x: [b, 1, in]` whose parts are `heads[i]` heads of one size each
    /// (attention's q, k and v): each part as `[b, heads[i], 1, head_dim]`. The stack's
    /// output `[b, 1, Σ heads·d]` holds the heads one after another, so one reshape and one
    /// split along the heads make all three: two graph nodes, where splitting the columns
    /// and reshaping each part took four. `None` where the parts are not whole heads of
    /// one size, or `x` is not one position.
    pub fn forward_heads(&self, x: &Array, heads: &[i32]) -> Result<Option<Vec<Array>>> {
        let d = match (self.sizes.first(), heads.first()) {
            (Some(&size), Some(&n)) if n > 0 => size / n,
            _ => return Ok(None),
        };
        let whole = heads.len() == self.sizes.len() && self.sizes.iter().zip(heads).all(|(&size, &n)| n > 0 && size == n * d);
        if !whole || !self.serves(x) {
            return Ok(None);
        }
        let b = x.shape()[0];
        let y = self.linear.forward(x)?.reshape(&[b, heads.iter().sum(), 1, d])?;
        y.split_at(&cuts(heads), 1).map(Some)
    }

    /// Each part's output for `x`, in order.
    pub fn forward(&self, x: &Array) -> Result<Vec<Array>> {
        self.linear.forward(x)?.split_at(&cuts(&self.sizes), -1)
    }
}

/// Where consecutive parts of the given sizes meet: the running sums but the last.
fn cuts(sizes: &[i32]) -> Vec<i32> {
    sizes[..sizes.len().saturating_sub(1)]
        .iter()
        .scan(0, |at, n| {
            *at += n;
            Some(*at)
        })
        .collect()
}
