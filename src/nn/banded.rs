//! Attention over a prompt chunk in blocks of queries, each over only the keys it can see.
//!
//! MLX's attention on the CPU scores every query against every key and masks afterwards,
//! and its softmax there runs at tens of nanoseconds per score: at a few thousand prompt
//! positions the masked-out scores are most of a prefill's time. A causal chunk needs only
//! the keys up to each block's last query (about half of them); a sliding window only the
//! `window` keys before each block. The result is the same attention: a masked key adds
//! exp(-inf) = 0 to its query's softmax and nothing to its output. (The GPU kernels skip
//! masked blocks themselves, so there the whole chunk goes to MLX in one call.)
use super::attention::{band_mask, causal_mask, Mask};
use crate::mlx::fast::{self, AttentionMask};
use crate::mlx::{concatenate, Array, Device};
use crate::error::Result;

/// Queries per block: large enough that each block's matmuls stay efficient, small enough
/// that the skipped triangle is most of what can be skipped.
const BLOCK: i32 = 256;

/// `softmax(q·kᵀ·scale + mask)·v` for `q: [b, heads, l, d]` over `k`, `v: [b, kv_heads, s, d]`.
pub(super) fn attention(q: &Array, k: &Array, v: &Array, scale: f32, mask: &Mask) -> Result<Array> {
    let (l, s) = (q.shape()[2], k.shape()[2]);
    // The position (in key indices) of the chunk's first query, and the window if any.
    let band = match mask {
        Mask::Causal => Some((s - l, None)),
        Mask::Window { offset, window } => Some((*offset, Some(*window))),
        _ => None,
    };
    match band {
        Some((first, window)) if l > BLOCK && Device::default_device()? == Device::cpu() => {
            blocks(q, k, v, scale, first, window)
        }
        _ => {
            let window_mask;
            let m = match mask {
                Mask::None => AttentionMask::None,
                Mask::Causal => AttentionMask::Causal,
                Mask::Array(a) => AttentionMask::Array(a),
                Mask::Window { offset, window } => {
                    window_mask = causal_mask(l, *offset, Some(*window))?;
                    AttentionMask::Array(&window_mask)
                }
            };
            fast::scaled_dot_product_attention(q, k, v, scale, m, None)
        }
    }
}

fn blocks(q: &Array, k: &Array, v: &Array, scale: f32, first: i32, window: Option<i32>) -> Result<Array> {
    let l = q.shape()[2];
    let mut outs = Vec::with_capacity(((l + BLOCK - 1) / BLOCK) as usize);
    let mut start = 0;
    while start < l {
        let end = (start + BLOCK).min(l);
        // Keys after the block's last query are masked for all of it; with a window, so are
        // those before its first query's window.
        let key_end = first + end;
        let key_start = window.map_or(0, |w| (first + start - w + 1).max(0));
        let qb = q.slice_axis(2, start, end)?;
        let (kb, vb) = (k.slice_axis(2, key_start, key_end)?, v.slice_axis(2, key_start, key_end)?);
        let o = match window {
            // The block's queries are the last of its keys: MLX's causal mask aligns them.
            None => fast::scaled_dot_product_attention(&qb, &kb, &vb, scale, AttentionMask::Causal, None)?,
            Some(w) => {
                let m = band_mask(first + start, end - start, key_start, key_end, Some(w))?;
                fast::scaled_dot_product_attention(&qb, &kb, &vb, scale, AttentionMask::Array(&m), None)?
            }
        };
        outs.push(o);
        start = end;
    }
    let refs: Vec<&Array> = outs.iter().collect();
    concatenate(&refs, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlx::{random, Dtype};

    /// Largest |a - b| of two float32 arrays of one shape.
    fn max_diff(a: &Array, b: &Array) -> f32 {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Blocks against MLX's attention over the whole chunk with the built mask, for chunks
    /// that follow cached positions, with and without a window, on ragged block ends.
    #[test]
    fn blocks_match_whole_chunk_attention() {
        for (cached, l, window) in [(0, 600, None), (300, 520, None), (0, 700, Some(100)), (250, 513, Some(300))] {
            let s = cached + l;
            let r = |shape: &[i32], k: u64| random::normal(shape, Dtype::F32, 0.0, 1.0, Some(&random::key(k).unwrap())).unwrap();
            let (q, k, v) = (r(&[1, 4, l, 16], 0), r(&[1, 2, s, 16], 1), r(&[1, 2, s, 16], 2));
            let mask = match window {
                None => Mask::Causal,
                Some(w) => Mask::Window { offset: cached, window: w },
            };
            let got = blocks(&q, &k, &v, 0.25, cached, window).unwrap();
            let whole = match window {
                None => fast::scaled_dot_product_attention(&q, &k, &v, 0.25, AttentionMask::Causal, None).unwrap(),
                Some(w) => {
                    let m = causal_mask(l, cached, Some(w)).unwrap();
                    fast::scaled_dot_product_attention(&q, &k, &v, 0.25, AttentionMask::Array(&m), None).unwrap()
                }
            };
            let d = max_diff(&got, &whole);
            assert!(d < 1e-5, "{cached} cached, {l} queries, window {window:?}: max diff {d}");
            // And the entry point picks the blocks on the CPU for the same result.
            let via = attention(&q, &k, &v, 0.25, &mask).unwrap();
            assert!(max_diff(&via, &got) == 0.0);
        }
    }
}
