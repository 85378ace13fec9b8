//! The KV cache of one attention layer for a batch of sequences of different lengths
//! (mlx-lm's `BatchKVCache` / `BatchRotatingKVCache`).
//!
//! Rows are left-padded so that every row's newest position sits in the same column:
//! column `j` holds position `j - start[b]` of row `b` (a negative position is padding).
//! Each forward pass then appends the same number of columns to every row, the last
//! column is every row's last token, and the only per-row facts are `start` (rotary
//! offsets and the padding mask come from it). Rows can leave (`filter`) and batches can
//! be joined (`extend`, re-aligning their padding), which is what continuous batching
//! needs.
//!
//! A sliding-window layer (`window`) keeps at most `window - 1` old columns before each
//! update, as mlx-lm's rotating cache does for a multi-token update, so its memory stays
//! bounded. Columns are dropped only when the buffer must grow anyway, a block of `STEP`
//! at a time, so a decode step writes in place like the full cache; the mask hides
//! everything outside each query's window.
use super::attention::Mask;
use crate::mlx::fast::RopeOffset;
use crate::mlx::{concatenate, Array, Dtype};
use crate::{Error, Result};

/// Columns allocated at a time.
const STEP: i32 = 256;

#[derive(Clone)]
pub struct BatchKvCache {
    keys: Option<Array>,
    values: Option<Array>,
    /// Columns filled (all rows alike).
    len: i32,
    /// Per row: the column of its position 0 (the row's left padding; negative once
    /// columns holding its first positions were dropped from a sliding window).
    starts: Vec<i32>,
    /// `len - starts[b]`: the position of each row's next column, as the `[B]` int32
    /// array rotary embedding takes.
    offsets: Array,
    /// `starts` on the device, for the padding mask.
    starts_dev: Array,
    /// The sliding window, for a local-attention layer.
    window: Option<i32>,
}

impl BatchKvCache {
    /// An empty cache for rows whose prompts are left-padded by `left_padding` columns.
    pub fn new(left_padding: &[i32], window: Option<i32>) -> Result<BatchKvCache> {
        if let Some(w) = window.filter(|w| *w < 1) {
            return Err(Error::invalid(format!("a sliding window of {w} positions is invalid (at least 1)")));
        }
        let mut c = BatchKvCache {
            keys: None,
            values: None,
            len: 0,
            starts: left_padding.to_vec(),
            offsets: Array::scalar(0i32)?,
            starts_dev: Array::scalar(0i32)?,
            window,
        };
        c.sync_rows()?;
        Ok(c)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    /// Columns filled.
    pub fn columns(&self) -> i32 {
        self.len
    }

    /// The longest row's position count.
    pub fn max_offset(&self) -> i32 {
        self.starts.iter().map(|s| self.len - s).max().unwrap_or(0)
    }

    pub fn window(&self) -> Option<i32> {
        self.window
    }

    /// Each row's next position, for rotary embedding.
    pub fn rope_offset(&self) -> RopeOffset<'_> {
        RopeOffset::Dynamic(&self.offsets)
    }

    fn sync_rows(&mut self) -> Result<()> {
        let offsets: Vec<i32> = self.starts.iter().map(|s| self.len - s).collect();
        let n = self.starts.len() as i32;
        self.offsets = Array::from_slice(&offsets, &[n])?;
        self.starts_dev = Array::from_slice(&self.starts, &[n])?;
        Ok(())
    }

    /// How many leading columns an update of `n` columns drops (a sliding window keeps
    /// `window - 1` old ones, and drops only when its buffer must grow).
    fn drop_before(&self, n: i32) -> i32 {
        let Some(w) = self.window else { return 0 };
        let cap = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.len + n <= cap {
            return 0;
        }
        (self.len - (w - 1)).max(0)
    }

    /// Appends `keys, values: [rows, kv_heads, n, head_dim]` to every row and returns the
    /// keys and values attention sees.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let n = keys.shape()[2];
        if keys.shape()[0] as usize != self.rows() {
            return Err(Error::invalid(format!(
                "keys for {} rows given to a batch KV cache of {} rows",
                keys.shape()[0],
                self.rows()
            )));
        }
        let drop = self.drop_before(n);
        let cap = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        let (k, v) = match (&self.keys, &self.values) {
            (Some(k), Some(v)) if self.len + n <= cap => (k.clone(), v.clone()),
            (old_k, old_v) => {
                let kept = self.len - drop;
                let new_cap = kept + (n + STEP - 1) / STEP * STEP;
                let grow = |old: &Option<Array>, like: &Array| -> Result<Array> {
                    let mut shape = like.shape();
                    shape[2] = new_cap - kept;
                    let fresh = Array::zeros(&shape, like.dtype())?;
                    match old {
                        Some(o) if kept > 0 => concatenate(&[&o.slice_axis(2, drop, self.len)?, &fresh], 2),
                        _ => {
                            shape[2] = new_cap;
                            Array::zeros(&shape, like.dtype())
                        }
                    }
                };
                (grow(old_k, keys)?, grow(old_v, values)?)
            }
        };
        if drop > 0 {
            self.len -= drop;
            self.starts.iter_mut().for_each(|s| *s -= drop);
        }
        let at = self.len;
        let write = |dst: &Array, src: &Array| -> Result<Array> {
            let mut hi = dst.shape();
            hi[2] = at + n;
            dst.slice_update(src, &[0, 0, at, 0], &hi, &[1, 1, 1, 1])
        };
        let (k, v) = (write(&k, keys)?, write(&v, values)?);
        self.len += n;
        let fetched = (k.slice_axis(2, 0, self.len)?, v.slice_axis(2, 0, self.len)?);
        self.keys = Some(k);
        self.values = Some(v);
        // Every row moved on by `n` positions (dropping columns moves `len` and `starts`
        // alike): one add on the device rather than a new array from the host per layer
        // and step. `starts` changes only when columns were dropped.
        self.offsets = self.offsets.add_scalar(n as f64)?;
        if drop > 0 {
            self.starts_dev = Array::from_slice(&self.starts, &[self.starts.len() as i32])?;
        }
        Ok(fetched)
    }

    /// The mask for `n` new columns (before they are added): causal, within `window`
    /// (or the cache's own), and never on a row's padding. `Causal`/`None` when no row
    /// has padding and no window applies, as a single sequence's cache gives.
    pub fn make_mask(&self, n: i32, window: Option<i32>) -> Result<Mask> {
        let window = window.or(self.window);
        let drop = self.drop_before(n);
        let total = self.len - drop + n;
        let padded = self.starts.iter().any(|&s| s - drop > 0);
        let windowed = window.is_some_and(|w| total > w);
        if !padded && !windowed {
            return Ok(if n == 1 { Mask::None } else { Mask::Causal });
        }
        let cols = Array::arange(0.0, total as f64, 1.0, Dtype::I32)?;
        let queries = Array::arange((total - n) as f64, total as f64, 1.0, Dtype::I32)?.expand_dims(&[1])?;
        let keys = cols.expand_dims(&[0])?;
        let mut base = queries.greater_equal(&keys)?;
        if let Some(w) = window {
            base = base.logical_and(&queries.less(&keys.add_scalar(w as f64)?)?)?;
        }
        // [B, 1, 1, total]: a row sees the columns at or after its start.
        let first = self.starts_dev.add_scalar(-drop as f64)?.expand_dims(&[1])?;
        let real = keys.greater_equal(&first)?.expand_dims(&[1, 2])?;
        Ok(Mask::Array(base.expand_dims(&[0, 1])?.logical_and(&real)?))
    }

    /// Keeps only the rows `keep` (in that order), and drops leading columns that are now
    /// padding in every row.
    pub fn filter(&mut self, keep: &[usize]) -> Result<()> {
        if let Some(&bad) = keep.iter().find(|&&i| i >= self.rows()) {
            return Err(Error::invalid(format!("row {bad} kept from a batch of {} rows", self.rows())));
        }
        let idx: Vec<i32> = keep.iter().map(|&i| i as i32).collect();
        let idx_arr = Array::from_slice(&idx, &[idx.len() as i32])?;
        self.starts = keep.iter().map(|&i| self.starts[i]).collect();
        let trim = self.starts.iter().copied().min().unwrap_or(0).clamp(0, self.len);
        let take = |a: &Option<Array>| -> Result<Option<Array>> {
            a.as_ref()
                .map(|a| {
                    let a = a.take(&idx_arr, 0)?;
                    if trim > 0 { a.slice_axis(2, trim, a.shape()[2]) } else { Ok(a) }
                })
                .transpose()
        };
        self.keys = take(&self.keys)?;
        self.values = take(&self.values)?;
        self.len -= trim;
        self.starts.iter_mut().for_each(|s| *s -= trim);
        self.sync_rows()
    }

    /// Appends the rows of `other` after this cache's, left-padding whichever holds fewer
    /// columns so that both end in the same column.
    pub fn extend(&mut self, other: BatchKvCache) -> Result<()> {
        let len = self.len.max(other.len);
        let like = self.keys.as_ref().or(other.keys.as_ref()).map(|k| (k.shape(), k.dtype()));
        let aligned = |c: &BatchKvCache, which: fn(&BatchKvCache) -> &Option<Array>| -> Result<Option<Array>> {
            let Some((shape, dtype)) = &like else { return Ok(None) };
            let pad = len - c.len;
            let mut parts = Vec::new();
            if pad > 0 {
                let mut s = shape.clone();
                s[0] = c.rows() as i32;
                s[2] = pad;
                parts.push(Array::zeros(&s, *dtype)?);
            }
            if let Some(a) = which(c) {
                if c.len > 0 {
                    parts.push(a.slice_axis(2, 0, c.len)?);
                }
            }
            let refs: Vec<&Array> = parts.iter().collect();
            Ok(Some(if refs.len() == 1 { parts[0].clone() } else { concatenate(&refs, 2)? }))
        };
        if len > 0 {
            let (ka, kb) = (aligned(self, |c| &c.keys)?, aligned(&other, |c| &c.keys)?);
            let (va, vb) = (aligned(self, |c| &c.values)?, aligned(&other, |c| &c.values)?);
            let cat = |a: Option<Array>, b: Option<Array>| -> Result<Option<Array>> {
                match (a, b) {
                    (Some(a), Some(b)) => Ok(Some(concatenate(&[&a, &b], 0)?)),
                    _ => Ok(None),
                }
            };
            self.keys = cat(ka, kb)?;
            self.values = cat(va, vb)?;
        }
        let (pad_a, pad_b) = (len - self.len, len - other.len);
        self.starts.iter_mut().for_each(|s| *s += pad_a);
        self.starts.extend(other.starts.iter().map(|s| s + pad_b));
        self.len = len;
        self.sync_rows()
    }

    pub fn state(&self) -> Vec<&Array> {
        self.keys.iter().chain(self.values.iter()).collect()
    }

    /// Row `row`'s keys and values in columns `from..to` (`[1, kv_heads, to - from,
    /// head_dim]`), copied out so that they do not keep the whole buffer alive; `None`
    /// when nothing is cached.
    pub fn row_columns(&self, row: usize, from: i32, to: i32) -> Result<Option<(Array, Array)>> {
        if row >= self.rows() || from < 0 || from > to || to > self.len {
            return Err(Error::invalid(format!(
                "columns {from}..{to} of row {row} asked of a batch KV cache of {} rows and {} columns",
                self.rows(),
                self.len
            )));
        }
        let cut = |a: &Array| a.slice_axis(0, row as i32, row as i32 + 1)?.slice_axis(2, from, to)?.contiguous();
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => Ok(Some((cut(k)?, cut(v)?))),
            _ => Ok(None),
        }
    }
}
