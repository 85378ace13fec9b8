//! Prompt-prefix reuse in a continuously batched run: the keys and values of the most
//! recently prefilled prompt are kept, and rows joining later whose prompts start with
//! the same tokens begin from them instead of prefilling that part again.
//!
//! `mlx_lm.server` does the same through its prompt cache (an LRU of finished
//! conversations, fetched by longest common prefix). One prompt kept covers what matters
//! most under load: requests rendered by one chat template share its system prompt and
//! the head of the user turn (24 of 43 tokens in scripts/bench_serve.sh's requests).
//!
//! Rows are left-padded, so a group's shared part starts in a different column of each
//! row. Row `r` with padding `pad_r` sharing `p_r` tokens has columns
//! `pad_r .. pad_r + p_r` known; every row then knows columns `0 .. min(pad_r + p_r)`
//! (padding, then the kept keys), and the group's caches are seeded with those columns
//! and prefilled from there. The kept keys carry their rotary positions, which are the
//! same in every row (a row's position counts from its own first token). Sliding-window
//! caches (Gemma's local layers) are not seeded: they may have dropped columns.
use crate::error::{Error, Result};
use crate::mlx::{concatenate, eval, Array};
use crate::nn::KvCache;

/// Most prompt tokens kept: bounds the memory of the entry (one row's KV for them).
const MAX_KEPT: usize = 2048;
/// Fewest known columns worth seeding a group's caches with.
const MIN_SEEDED: i32 = 4;

/// The kept prompt.
#[derive(Default)]
pub(super) struct PrefixCache {
    tokens: Vec<u32>,
    /// Per layer: the keys and values of `tokens`, `[1, kv_heads, tokens.len(), head_dim]`.
    layers: Vec<(Array, Array)>,
}

/// Whether `caches` are batch caches without a sliding window (seedable and readable).
fn plain(caches: &[KvCache]) -> bool {
    caches.iter().all(|c| c.as_batch().is_some_and(|b| b.window().is_none()))
}

impl PrefixCache {
    /// Columns of a new group that the kept prompt covers in every row (0 when too few
    /// to bother): rows left-padded by `left_padding`, each prefilling all of its prompt
    /// but the last token.
    pub fn known_columns(&self, prompts: &[&[u32]], left_padding: &[i32], caches: &[KvCache]) -> i32 {
        if self.tokens.is_empty() || !plain(caches) || caches.len() != self.layers.len() {
            return 0;
        }
        let known = prompts
            .iter()
            .zip(left_padding)
            .map(|(p, &pad)| pad + p[..p.len() - 1].iter().zip(&self.tokens).take_while(|(a, b)| a == b).count() as i32)
            .min()
            .unwrap_or(0);
        if known >= MIN_SEEDED {
            known
        } else {
            0
        }
    }

    /// Fills empty `caches` (rows left-padded by `left_padding`) with their first
    /// `columns` columns: each row's padding, then the kept keys and values.
    pub fn seed(&self, caches: &mut [KvCache], left_padding: &[i32], columns: i32) -> Result<()> {
        for (cache, (k, v)) in caches.iter_mut().zip(&self.layers) {
            let batch = cache.as_batch_mut().ok_or_else(|| Error::invalid("only batch KV caches can be seeded"))?;
            let rows = |kept: &Array| -> Result<Array> {
                let mut parts = Vec::with_capacity(left_padding.len());
                for &pad in left_padding {
                    let pad = pad.min(columns);
                    let mut row = Vec::with_capacity(2);
                    if pad > 0 {
                        let mut shape = kept.shape();
                        shape[2] = pad;
                        row.push(Array::zeros(&shape, kept.dtype())?);
                    }
                    if columns > pad {
                        row.push(kept.slice_axis(2, 0, columns - pad)?);
                    }
                    let refs: Vec<&Array> = row.iter().collect();
                    parts.push(if refs.len() == 1 { row[0].clone() } else { concatenate(&refs, 2)? });
                }
                concatenate(&parts.iter().collect::<Vec<_>>(), 0)
            };
            batch.update_and_fetch(&rows(k)?, &rows(v)?)?;
        }
        Ok(())
    }

    /// Keeps `prompt` less its last token, row `row` of `caches` just prefilled (its
    /// first token in column `pad`), unless the kept prompt already starts with it.
    pub fn keep(&mut self, caches: &[KvCache], row: usize, prompt: &[u32], pad: i32) -> Result<()> {
        let n = (prompt.len() - 1).min(MAX_KEPT);
        if n == 0 || !plain(caches) || self.tokens.starts_with(&prompt[..n]) {
            return Ok(());
        }
        let mut layers = Vec::with_capacity(caches.len());
        for c in caches {
            let batch = c.as_batch().ok_or_else(|| Error::invalid("only batch KV caches can be read by row"))?;
            match batch.row_columns(row, pad, pad + n as i32)? {
                Some(kv) => layers.push(kv),
                None => return Ok(()),
            }
        }
        // Copied now, so that the group's buffers are not held by lazy slices.
        eval(&layers.iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>())?;
        self.tokens = prompt[..n].to_vec();
        self.layers = layers;
        Ok(())
    }
}
