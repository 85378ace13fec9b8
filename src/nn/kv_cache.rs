//! The key/value cache of one attention layer.
//!
//! Storage grows in blocks of `STEP` positions (one allocation per block rather than per
//! token) and new keys are written in place with `slice_update`; attention reads the
//! filled prefix. This is the layout mlx-lm's `KVCache` uses, which keeps results
//! identical to it.
use crate::mlx::{concatenate, Array};
use crate::Result;

const STEP: i32 = 256;

#[derive(Default)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    pub fn new() -> KvCache {
        KvCache::default()
    }

    /// Number of positions held.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Appends `keys, values: [batch, kv_heads, seq, head_dim]` and returns everything
    /// held so far (the new positions included).
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let (kshape, vshape) = (keys.shape(), values.shape());
        let n = kshape[2];
        let prev = self.offset;
        let capacity = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.keys.is_none() || prev + n > capacity {
            let blocks = (STEP + n - 1) / STEP;
            let grow = |shape: &[i32], like: &Array| {
                Array::zeros(&[shape[0], shape[1], blocks * STEP, shape[3]], like.dtype())
            };
            let (new_k, new_v) = (grow(&kshape, keys)?, grow(&vshape, values)?);
            match (self.keys.take(), self.values.take()) {
                (Some(mut k), Some(mut v)) => {
                    if prev % STEP != 0 {
                        k = k.slice_axis(2, 0, prev)?;
                        v = v.slice_axis(2, 0, prev)?;
                    }
                    self.keys = Some(concatenate(&[&k, &new_k], 2)?);
                    self.values = Some(concatenate(&[&v, &new_v], 2)?);
                }
                _ => {
                    self.keys = Some(new_k);
                    self.values = Some(new_v);
                }
            }
        }
        self.offset += n;
        let (k, v) = (self.keys.as_ref().unwrap(), self.values.as_ref().unwrap());
        let write = |dst: &Array, src: &Array| -> Result<Array> {
            let mut start = vec![0; 4];
            start[2] = prev;
            let mut stop = dst.shape();
            stop[2] = self.offset;
            dst.slice_update(src, &start, &stop, &[1, 1, 1, 1])
        };
        let (k, v) = (write(k, keys)?, write(v, values)?);
        self.keys = Some(k);
        self.values = Some(v);
        self.fetch()
    }

    fn fetch(&self) -> Result<(Array, Array)> {
        let (k, v) = (self.keys.as_ref().unwrap(), self.values.as_ref().unwrap());
        if self.offset < k.shape()[2] {
            Ok((k.slice_axis(2, 0, self.offset)?, v.slice_axis(2, 0, self.offset)?))
        } else {
            Ok((k.clone(), v.clone()))
        }
    }

    /// The arrays to evaluate to materialise the cache (after a prefill chunk).
    pub fn state(&self) -> Vec<&Array> {
        self.keys.iter().chain(self.values.iter()).collect()
    }

    /// Forgets the last `n` positions (for reusing a prompt prefix); returns how many were
    /// dropped.
    pub fn trim(&mut self, n: i32) -> i32 {
        let n = n.min(self.offset).max(0);
        self.offset -= n;
        n
    }

    /// Bytes held by the cache's buffers.
    pub fn nbytes(&self) -> usize {
        self.state().iter().map(|a| a.nbytes()).sum()
    }
}
