//! The key/value cache of one attention layer, in the two kinds mlx-lm uses:
//!
//! - `Full` keeps every position. Storage grows in blocks of `STEP` positions (one
//!   allocation per block rather than per token) and new keys are written in place with
//!   `slice_update`; attention reads the filled prefix (mlx-lm's `KVCache`).
//! - `Rotating` keeps at most `max_size` positions for sliding-window attention, so its
//!   memory stays bounded however long the sequence grows (mlx-lm's `RotatingKVCache`).
//!
//! - `Batch` holds several left-padded sequences at once (`batch_kv_cache`), for batched
//!   prefill and decoding.
//! - `Quantized` stores them MLX-quantized once it holds enough positions (mlx-lm's
//!   `QuantizedKVCache`; see `quantized_kv_cache`).
//!
//! The full and rotating kinds reproduce mlx-lm's buffer layouts step for step — sizes,
//! growth, the ring order of the rotating buffer — because attention sums over the keys in
//! buffer order, and any other order or length changes the last bits of the result.
use super::attention::Mask;
use super::batch_kv_cache::BatchKvCache;
use super::quantized_kv_cache::{KvQuantization, QuantizedKvCache};
use crate::mlx::fast::RopeOffset;
use crate::mlx::{concatenate, Array};
use crate::Result;

/// Positions allocated at a time.
const STEP: i32 = 256;

/// `Clone` is cheap and safe: it copies array handles, and since MLX arrays are immutable
/// (a write makes a new array) the copy and the original never see each other's writes.
#[derive(Clone)]
pub enum KvCache {
    /// No cache: each call attends over its own keys only and keeps nothing (training's
    /// whole-sequence passes, as mlx-lm's models run without a cache). Writing the keys
    /// into a cache buffer would cost a copy, and its gradient another.
    Uncached,
    Full(FullKvCache),
    Rotating(RotatingKvCache),
    Batch(BatchKvCache),
    Quantized(QuantizedKvCache),
}

impl Default for KvCache {
    fn default() -> Self {
        KvCache::new()
    }
}

impl KvCache {
    /// An empty cache that keeps every position.
    pub fn new() -> KvCache {
        KvCache::Full(FullKvCache::default())
    }

    /// No cache (see [`KvCache::Uncached`]).
    pub fn uncached() -> KvCache {
        KvCache::Uncached
    }

    /// An empty sliding-window cache holding the last `max_size` positions, the first
    /// `keep` of them never evicted (attention sinks; 0 for Gemma). `max_size` is at least
    /// 1 and `keep` less than it (other values are clamped).
    pub fn rotating(max_size: i32, keep: i32) -> KvCache {
        let max_size = max_size.max(1);
        KvCache::Rotating(RotatingKvCache::new(max_size, keep.clamp(0, max_size - 1)))
    }

    /// An empty cache that keeps every position and stores them quantized from
    /// `q.start` positions on. Attention reads it through `quantized_sdpa`.
    pub fn quantized(q: KvQuantization) -> KvCache {
        KvCache::Quantized(QuantizedKvCache::new(q))
    }

    /// Number of positions processed so far (the next position's index). A rotating
    /// cache may hold fewer (see `len`).
    pub fn offset(&self) -> i32 {
        match self {
            KvCache::Uncached => 0,
            KvCache::Full(c) => c.offset,
            KvCache::Rotating(c) => c.offset,
            KvCache::Batch(c) => c.max_offset(),
            KvCache::Quantized(c) => c.offset(),
        }
    }

    /// The position of the first new row of keys, for rotary embedding: one number, or
    /// one per row for a batch.
    pub fn rope_offset(&self) -> RopeOffset<'_> {
        match self {
            KvCache::Batch(c) => c.rope_offset(),
            _ => RopeOffset::Fixed(self.offset()),
        }
    }

    /// Number of positions held (attended to by the next single-token step).
    pub fn len(&self) -> i32 {
        match self {
            KvCache::Uncached => 0,
            KvCache::Full(c) => c.offset,
            KvCache::Rotating(c) => c.offset.min(c.max_size),
            KvCache::Batch(c) => c.columns(),
            KvCache::Quantized(c) => c.offset(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.offset() == 0
    }

    /// The most positions kept: `None` for a full cache.
    pub fn max_size(&self) -> Option<i32> {
        match self {
            KvCache::Uncached | KvCache::Full(_) | KvCache::Quantized(_) => None,
            KvCache::Rotating(c) => Some(c.max_size),
            KvCache::Batch(c) => c.window(),
        }
    }

    /// Appends `keys, values: [batch, kv_heads, seq, head_dim]` and returns the keys and
    /// values attention must see (the new positions included).
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        match self {
            KvCache::Uncached => Ok((keys.clone(), values.clone())),
            KvCache::Full(c) => c.update_and_fetch(keys, values),
            KvCache::Rotating(c) => c.update_and_fetch(keys, values),
            KvCache::Batch(c) => c.update_and_fetch(keys, values),
            KvCache::Quantized(c) => match c.update_and_fetch(keys, values)? {
                super::quantized_kv_cache::Fetched::Dense(k, v) => Ok((k, v)),
                super::quantized_kv_cache::Fetched::Packed(..) => {
                    Err(crate::Error::invalid("a quantized KV cache is read through quantized attention"))
                }
            },
        }
    }

    /// The mask for `n` new positions, as mlx-lm's `make_mask` builds it from the cache
    /// before they are added. `window`: the sliding window of the layer, if any.
    pub fn make_mask(&self, n: i32, window: Option<i32>) -> Result<Mask> {
        match self {
            KvCache::Uncached => full_mask(n, 0, window),
            KvCache::Full(c) => c.make_mask(n, window),
            KvCache::Rotating(c) => c.make_mask(n, window),
            KvCache::Batch(c) => c.make_mask(n, window),
            KvCache::Quantized(c) => full_mask(n, c.offset(), window),
        }
    }

    /// The arrays to evaluate to materialise the cache (after a prefill chunk).
    pub fn state(&self) -> Vec<&Array> {
        let b = match self {
            KvCache::Uncached => return Vec::new(),
            KvCache::Full(c) => &c.buf,
            KvCache::Rotating(c) => &c.buf,
            KvCache::Batch(c) => return c.state(),
            KvCache::Quantized(c) => return c.state(),
        };
        b.keys.iter().chain(b.values.iter()).collect()
    }

    /// Whether positions can be removed from the end at all. A full cache always can; a
    /// rotating cache only until it first evicts a position (its offset reaches
    /// `max_size`): after that, removing recent positions would leave a window missing
    /// the older ones it dropped, so a caller must rebuild it from the tokens instead.
    pub fn is_trimmable(&self) -> bool {
        match self {
            KvCache::Full(_) | KvCache::Quantized(_) => true,
            KvCache::Uncached => false,
            KvCache::Rotating(c) => c.offset < c.max_size,
            // Rows end at different positions: there is no common prefix to keep.
            KvCache::Batch(_) => false,
        }
    }

    /// Whether `trim(n)` would remove exactly `n` positions.
    pub fn can_trim(&self, n: i32) -> bool {
        n >= 0 && n <= self.offset() && self.is_trimmable()
    }

    /// Forgets the last `n` positions (for reusing a prompt prefix); returns how many were
    /// dropped: at most the offset, and 0 when the cache is not trimmable.
    pub fn trim(&mut self, n: i32) -> i32 {
        let n = n.min(self.offset()).max(0);
        match self {
            KvCache::Full(c) => c.offset -= n,
            KvCache::Rotating(c) => {
                if c.offset >= c.max_size {
                    return 0;
                }
                c.offset -= n;
                c.idx -= n;
            }
            KvCache::Uncached | KvCache::Batch(_) => return 0,
            KvCache::Quantized(c) => return c.trim(n),
        }
        n
    }

    /// Takes back the last single-position write, so that the next write lands in its
    /// slot at the same position. Generation queues step n+1 before it has read token n;
    /// when reading shows that step was fed the wrong token, its position is written again.
    /// Unlike `trim` this works on a full sliding window: the slot the write took held the
    /// position that had just left the window, which the rewritten position does not see
    /// either. Returns false (and changes nothing) for an empty cache, batch caches and no
    /// cache.
    pub fn rewind_step(&mut self) -> bool {
        if self.offset() < 1 {
            return false;
        }
        match self {
            KvCache::Full(c) => c.offset -= 1,
            KvCache::Rotating(c) => {
                c.offset -= 1;
                c.idx -= 1;
            }
            KvCache::Quantized(c) => return c.trim(1) == 1,
            KvCache::Uncached | KvCache::Batch(_) => return false,
        }
        true
    }

    /// The batch cache of `rows` empty rows to hold the same kind of layer as this
    /// (unbounded, or a sliding window of this cache's size), left-padded by
    /// `left_padding` columns each.
    pub fn batch_like(&self, left_padding: &[i32]) -> Result<KvCache> {
        Ok(KvCache::Batch(BatchKvCache::new(left_padding, self.max_size())?))
    }

    /// The batch cache inside, to read rows from.
    pub fn as_batch(&self) -> Option<&BatchKvCache> {
        match self {
            KvCache::Batch(c) => Some(c),
            _ => None,
        }
    }

    /// The batch cache inside, for `filter` / `extend`.
    pub fn as_batch_mut(&mut self) -> Option<&mut BatchKvCache> {
        match self {
            KvCache::Batch(c) => Some(c),
            _ => None,
        }
    }

    /// Bytes held by the cache's buffers.
    pub fn nbytes(&self) -> usize {
        self.state().iter().map(|a| a.nbytes()).sum()
    }
}

/// `dst[..., start..start + src_len, :] = src` along the sequence axis.
fn write_at(dst: &Array, src: &Array, start: i32) -> Result<Array> {
    let mut lo = vec![0; 4];
    lo[2] = start;
    let mut hi = dst.shape();
    hi[2] = start + src.shape()[2];
    dst.slice_update(src, &lo, &hi, &[1, 1, 1, 1])
}

/// Zeros shaped like `like` but with `len` positions.
fn zeros_like_with_len(like: &Array, len: i32) -> Result<Array> {
    let mut shape = like.shape();
    shape[2] = len;
    Array::zeros(&shape, like.dtype())
}

/// A cache's key and value buffers, `[batch, kv_heads, positions, head_dim]` each.
#[derive(Clone, Default)]
struct Buffers {
    keys: Option<Array>,
    values: Option<Array>,
}

impl Buffers {
    fn get(&self) -> Option<(&Array, &Array)> {
        self.keys.as_ref().zip(self.values.as_ref())
    }

    /// Writes `keys, values` at position `at` of the buffers `k, v`, keeps the results as
    /// this cache's buffers and returns their first `len` positions.
    fn write(&mut self, k: &Array, v: &Array, keys: &Array, values: &Array, at: i32, len: i32) -> Result<(Array, Array)> {
        let (k, v) = (write_at(k, keys, at)?, write_at(v, values, at)?);
        let fetched = prefix(&k, &v, len)?;
        self.keys = Some(k);
        self.values = Some(v);
        Ok(fetched)
    }
}

/// Every position, grown in `STEP` blocks (mlx-lm's `KVCache`).
#[derive(Clone, Default)]
pub struct FullKvCache {
    buf: Buffers,
    offset: i32,
}

impl FullKvCache {
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let n = keys.shape()[2];
        let prev = self.offset;
        let (k, v) = match self.buf.get() {
            Some((k, v)) if prev + n <= k.shape()[2] => (k.clone(), v.clone()),
            old => {
                let len = (STEP + n - 1) / STEP * STEP;
                let (new_k, new_v) = (zeros_like_with_len(keys, len)?, zeros_like_with_len(values, len)?);
                match old {
                    Some((k, v)) => {
                        // Drop the unfilled tail of a partly used block (after a trim).
                        let (k, v) = if prev % STEP != 0 {
                            (k.slice_axis(2, 0, prev)?, v.slice_axis(2, 0, prev)?)
                        } else {
                            (k.clone(), v.clone())
                        };
                        (concatenate(&[&k, &new_k], 2)?, concatenate(&[&v, &new_v], 2)?)
                    }
                    _ => (new_k, new_v),
                }
            }
        };
        let fetched = self.buf.write(&k, &v, keys, values, prev, prev + n)?;
        self.offset += n;
        Ok(fetched)
    }

    fn make_mask(&self, n: i32, window: Option<i32>) -> Result<Mask> {
        full_mask(n, self.offset, window)
    }
}

/// The mask of `n` new positions after `offset` cached ones, all of them kept.
fn full_mask(n: i32, offset: i32, window: Option<i32>) -> Result<Mask> {
    Ok(match window {
        Some(w) => Mask::Window { offset, window: w },
        None if n == 1 => Mask::None,
        None => Mask::Causal,
    })
}

/// The first `len` positions of a buffer, or all of it when it holds no more.
fn prefix(k: &Array, v: &Array, len: i32) -> Result<(Array, Array)> {
    if len < k.shape()[2] {
        Ok((k.slice_axis(2, 0, len)?, v.slice_axis(2, 0, len)?))
    } else {
        Ok((k.clone(), v.clone()))
    }
}

/// The last `max_size` positions (plus the first `keep`), as mlx-lm's `RotatingKVCache`.
///
/// Two layouts alternate. A multi-token update puts the buffer in temporal order, drops
/// the oldest positions down to `max_size - 1` and appends the new ones, so each new query
/// still sees a full window (the buffer briefly holds up to `max_size - 1 + n`). A
/// single-token update writes into a ring buffer of exactly `max_size` positions, at `idx`,
/// wrapping back to `keep`; attention then reads the ring in buffer order, unmasked.
#[derive(Clone)]
pub struct RotatingKvCache {
    buf: Buffers,
    offset: i32,
    max_size: i32,
    keep: i32,
    /// Where the next single-token write goes (after the buffer's last temporal position).
    idx: i32,
}

impl RotatingKvCache {
    fn new(max_size: i32, keep: i32) -> RotatingKvCache {
        RotatingKvCache { buf: Buffers::default(), offset: 0, max_size, keep, idx: 0 }
    }

    /// `v` without the `trim` oldest positions after the first `keep`, with `append` added.
    fn trim_buffer(&self, trim: i32, v: &Array, append: Option<&Array>) -> Result<Array> {
        let len = v.shape()[2];
        let mut parts = if trim > 0 {
            vec![v.slice_axis(2, 0, self.keep)?, v.slice_axis(2, trim + self.keep, len)?]
        } else {
            vec![v.clone()]
        };
        if let Some(a) = append {
            parts.push(a.clone());
        }
        let refs: Vec<&Array> = parts.iter().collect();
        concatenate(&refs, 2)
    }

    /// The buffer in temporal order, without unused trailing space.
    fn temporal_order(&self, v: &Array) -> Result<Array> {
        let len = v.shape()[2];
        if self.idx == len {
            Ok(v.clone())
        } else if self.idx < self.offset {
            let parts =
                [v.slice_axis(2, 0, self.keep)?, v.slice_axis(2, self.idx, len)?, v.slice_axis(2, self.keep, self.idx)?];
            concatenate(&[&parts[0], &parts[1], &parts[2]], 2)
        } else {
            v.slice_axis(2, 0, self.idx)
        }
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        if keys.shape()[2] == 1 {
            self.update_in_place(keys, values)
        } else {
            self.update_concat(keys, values)
        }
    }

    fn update_concat(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let (k, v) = match self.buf.get() {
            Some((k, v)) => {
                let (k, v) = (self.temporal_order(k)?, self.temporal_order(v)?);
                self.idx = k.shape()[2];
                // Keep max_size - 1 old positions so that every new query sees a full window.
                let trim = self.idx - self.max_size + 1;
                (self.trim_buffer(trim, &k, Some(keys))?, self.trim_buffer(trim, &v, Some(values))?)
            }
            None => (keys.clone(), values.clone()),
        };
        self.offset += keys.shape()[2];
        self.idx = k.shape()[2];
        self.buf = Buffers { keys: Some(k.clone()), values: Some(v.clone()) };
        Ok((k, v))
    }

    fn update_in_place(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let s = keys.shape()[2];
        let prev = self.offset;
        let grow = match self.buf.get() {
            None => true,
            Some((k, _)) => prev >= k.shape()[2] && k.shape()[2] < self.max_size,
        };
        let (mut k, mut v) = match self.buf.get() {
            Some((k, v)) if !grow => (k.clone(), v.clone()),
            old => {
                // Not at the maximum size yet: another block, capped at max_size.
                let len = STEP.min(self.max_size - prev);
                let (new_k, new_v) = (zeros_like_with_len(keys, len)?, zeros_like_with_len(values, len)?);
                let kv = match old {
                    Some((k, v)) => (concatenate(&[k, &new_k], 2)?, concatenate(&[v, &new_v], 2)?),
                    None => (new_k, new_v),
                };
                self.idx = prev;
                kv
            }
        };
        // Back to max_size after a multi-token update left more.
        let trim = k.shape()[2] - self.max_size;
        if trim > 0 {
            k = self.trim_buffer(trim, &k, None)?;
            v = self.trim_buffer(trim, &v, None)?;
            self.idx = self.max_size;
        }
        if self.idx == self.max_size {
            self.idx = self.keep;
        }
        let fetched = self.buf.write(&k, &v, keys, values, self.idx, self.offset + s)?;
        self.offset += s;
        self.idx += s;
        Ok(fetched)
    }

    fn make_mask(&self, n: i32, window: Option<i32>) -> Result<Mask> {
        if n > 1 {
            let window = window.unwrap_or(self.max_size);
            // Positions relative to the oldest one the buffer will hold.
            let offset = (self.max_size - 1).min(self.offset);
            return Ok(if offset + n > window { Mask::Window { offset, window } } else { Mask::Causal });
        }
        let Some(window) = window else { return Ok(Mask::None) };
        if !(self.offset >= window && self.max_size > window) {
            return Ok(Mask::None);
        }
        // A window narrower than the buffer: mask the ring slots older than the window.
        let idx = if self.idx >= self.max_size { 0 } else { self.idx };
        let size = if self.offset < self.max_size { self.offset + 1 } else { self.max_size };
        let shift = (idx + 1) as usize % size as usize;
        let base: Vec<bool> = (0..size).map(|i| i >= size - window).collect();
        let rolled: Vec<bool> = (0..size as usize).map(|j| base[(j + size as usize - shift) % size as usize]).collect();
        Ok(Mask::Array(Array::from_slice(&rolled, &[size])?))
    }
}
