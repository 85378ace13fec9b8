//! `Model::inspect_attention`: the queries and keys every attention layer computes over a
//! prompt, for interpretability tools (go-inference's `AttentionInspector`).
use super::generate::GenerateParams;
use super::model::Model;
use crate::error::{Error, Result};
use crate::mlx::{concatenate, eval, memory, Array, Dtype};
use crate::nn::capture::{self, Captured};

/// The post-RoPE keys (and queries) of every layer and head over a prompt, in the shape of
/// go-inference's `AttentionSnapshot`.
///
/// What is returned, for every layer alike: all `seq_len` prompt positions, each layer's
/// keys and queries as its attention computed them — after the per-head q/k norms (Qwen3,
/// Gemma 3) and rotary embedding, before they are written to the KV cache. So for Gemma 3's
/// sliding-window layers, whose rotating cache keeps only the last `sliding_window`
/// positions, the snapshot still has every position (the key at position p is the one
/// that was stored in the cache when p was written); the window limits which keys a query
/// attends to, not which keys exist. Values are float32 whatever the compute dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionSnapshot {
    pub num_layers: usize,
    /// Key/value heads (fewer than the query heads under grouped-query attention).
    pub num_heads: usize,
    /// Query heads (`num_attention_heads`).
    pub num_query_heads: usize,
    pub seq_len: usize,
    pub head_dim: usize,
    /// `[layer][kv_head]` → `seq_len * head_dim` values, position-major.
    pub keys: Vec<Vec<Vec<f32>>>,
    /// `[layer][query_head]` → `seq_len * head_dim` values, position-major.
    pub queries: Vec<Vec<Vec<f32>>>,
    /// The model's `model_type`.
    pub architecture: String,
    /// The prompt's token ids, as encoded for generation (BOS included when added).
    pub prompt_tokens: Vec<u32>,
}

impl Model {
    /// Runs the prefill of `prompt` (encoded as `generate` encodes it) on fresh caches and
    /// returns every layer's keys and queries over all its positions (see
    /// [`AttentionSnapshot`]). Of `params`, `prefill_step_size` (the prompt goes through
    /// the model in chunks of that many tokens, as a generation's prefill does) and
    /// `context_length` apply; nothing is sampled. The model's cancel token stops it
    /// between chunks with `Error::Cancelled`. The model's metrics are not changed.
    pub fn inspect_attention(&mut self, prompt: &str, params: &GenerateParams) -> Result<AttentionSnapshot> {
        self.begin_call();
        if prompt.is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        let ids = self.tokenizer().encode_prompt(prompt)?;
        self.inspect_attention_ids(&ids, params)
    }

    /// `inspect_attention` over token ids.
    pub fn inspect_attention_ids(&mut self, ids: &[u32], params: &GenerateParams) -> Result<AttentionSnapshot> {
        if ids.is_empty() {
            return Err(Error::invalid("the prompt has no tokens"));
        }
        if params.prefill_step_size == 0 {
            return Err(Error::invalid("prefill_step_size must be at least 1"));
        }
        if let Some(ctx) = params.context_length.filter(|&c| ids.len() > c) {
            return Err(Error::invalid(format!("the prompt has {} tokens; the context length is {ctx}", ids.len())));
        }
        let info = self.info().clone();
        let vocab = info.vocab_size as u32;
        if let Some(&bad) = ids.iter().find(|&&t| t >= vocab) {
            return Err(Error::invalid(format!("prompt token {bad} is outside the vocabulary of {vocab}")));
        }
        let layers = info.num_layers as usize;
        let cancel = self.canceller();
        let lm = self.language_model();
        let mut caches = lm.new_caches();
        // Per layer, the captured queries and keys of each chunk.
        let mut per_layer: Vec<Vec<Captured>> = (0..layers).map(|_| Vec::new()).collect();
        for chunk in ids.chunks(params.prefill_step_size) {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let v: Vec<i32> = chunk.iter().map(|&t| t as i32).collect();
            let tokens = Array::from_slice(&v, &[1, v.len() as i32])?;
            // The hidden states are not needed: evaluating the captures and the caches
            // computes every layer's attention inputs and nothing after the last one.
            let (_, captured) = capture::capturing(|| lm.forward_hidden(&tokens, &mut caches))?;
            if captured.len() != layers {
                return Err(Error::Mlx(format!(
                    "{} attention layers ran for a model of {layers} layers; inspection needs one per layer",
                    captured.len()
                )));
            }
            let mut pending: Vec<&Array> = captured.iter().flat_map(|c| [&c.queries, &c.keys]).collect();
            pending.extend(caches.iter().flat_map(|c| c.state()));
            eval(&pending)?;
            for (slot, c) in per_layer.iter_mut().zip(captured) {
                slot.push(c);
            }
            memory::clear_cache();
        }
        drop(caches);

        let seq = ids.len();
        let head_dim = info.head_dim as usize;
        let (q_heads, kv_heads) = (info.num_heads as usize, info.num_kv_heads as usize);
        let mut keys = Vec::with_capacity(layers);
        let mut queries = Vec::with_capacity(layers);
        for chunks in per_layer {
            let q: Vec<&Array> = chunks.iter().map(|c| &c.queries).collect();
            let k: Vec<&Array> = chunks.iter().map(|c| &c.keys).collect();
            queries.push(per_head(&q, q_heads, seq, head_dim, "queries")?);
            keys.push(per_head(&k, kv_heads, seq, head_dim, "keys")?);
        }
        Ok(AttentionSnapshot {
            num_layers: layers,
            num_heads: kv_heads,
            num_query_heads: q_heads,
            seq_len: seq,
            head_dim,
            keys,
            queries,
            architecture: info.model_type,
            prompt_tokens: ids.to_vec(),
        })
    }
}

/// Chunks of `[1, heads, n, head_dim]` joined along the positions → one flat f32 vector
/// per head.
fn per_head(chunks: &[&Array], heads: usize, seq: usize, head_dim: usize, what: &str) -> Result<Vec<Vec<f32>>> {
    let all = if chunks.len() == 1 { chunks[0].clone() } else { concatenate(chunks, 2)? };
    let want = [1, heads as i32, seq as i32, head_dim as i32];
    if all.shape() != want {
        return Err(Error::Mlx(format!("captured {what} have shape {:?}, {want:?} expected", all.shape())));
    }
    let flat = all.astype(Dtype::F32)?.to_vec::<f32>()?;
    Ok(flat.chunks_exact(seq * head_dim).map(<[f32]>::to_vec).collect())
}

impl AttentionSnapshot {
    /// The keys of `layer`'s key/value head `head`: `seq_len * head_dim` values.
    pub fn key(&self, layer: usize, head: usize) -> Option<&[f32]> {
        self.keys.get(layer)?.get(head).map(Vec::as_slice)
    }

    /// The queries of `layer`'s query head `head`.
    pub fn query(&self, layer: usize, head: usize) -> Option<&[f32]> {
        self.queries.get(layer)?.get(head).map(Vec::as_slice)
    }
}
