//! SentencePiece-style vocabularies in GGUF metadata (`tokenizer.ggml.model` = `llama`:
//! Llama 2, Mistral, Gemma), rebuilt as the BPE `tokenizer.json` transformers' GGUF
//! converter makes of them (`integrations/gguf/gguf_tokenizer_mapping.py`), which encodes
//! as the models' own HF tokenizers do.
//!
//! The file gives tokens spelled with `▁` for spaces, a score per token, token types
//! (control, user-defined, byte) and the flags `add_bos_token`, `add_eos_token` and
//! `add_space_prefix`; it gives no merges. The merges are recovered from the vocabulary:
//! every way of cutting a token into two tokens is a merge, ranked by the token's score
//! (Gemma: by the token's position in the file, since Gemma's scores do not follow its
//! merge order). Bytes the vocabulary does not spell fall back to the `<0xNN>` tokens.
use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use super::gguf::{added_token, bool_flag, finish, string_array, token_by_id, token_types, SpecialFlags, TokenizerJson};
use super::Tokenizer;
use crate::error::{Error, Result};
use crate::models::gguf::{GgufFile, Value};

/// SentencePiece's space.
const SPACE: &str = "\u{2581}";

pub(super) fn from_gguf(f: &GgufFile) -> Result<Tokenizer> {
    let err = |what: String| Error::Tokenizer(format!("{}: {what}", f.path.display()));
    let raw = string_array(f, "tokenizer.ggml.tokens")?;
    let types = token_types(f, raw.len())?;
    let scores = scores(f, raw.len())?;
    // Whitespace-only tokens of several characters are stored with real spaces by Gemma's
    // converter; the text reaches BPE with every space already turned into `▁`, so they are
    // spelled that way (as transformers does).
    let tokens: Vec<String> = raw
        .iter()
        .map(|t| {
            if t.chars().count() > 1 && t.contains(' ') && t.trim().is_empty() {
                SPACE.repeat(t.chars().count())
            } else {
                t.to_string()
            }
        })
        .collect();
    if !tokens.iter().any(|t| t == "<0x00>") {
        return Err(err("the SentencePiece vocabulary has no byte tokens (<0x00>...<0xFF>) to fall back on".into()));
    }
    let gemma = f.architecture().is_ok_and(|a| a.starts_with("gemma"));
    let rank: Vec<f64> = if gemma { (0..tokens.len()).map(|i| -(i as f64)).collect() } else { scores };
    let merges = merges_from_vocabulary(&tokens, &rank);

    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, (tok, ty)) in tokens.iter().zip(&types).enumerate() {
        // A repeated spelling keeps its last id, as transformers' vocabulary does.
        vocab.insert(tok.clone(), json!(id));
        added.extend(added_token(id, tok, *ty));
    }
    let unk = token_by_id(f, &raw, "tokenizer.ggml.unknown_token_id")?.map(|t| t.1);
    let specials = SpecialFlags::read(f, &raw, true)?;

    // With a space prefix (llama.cpp's default for these vocabularies), `▁` is put before
    // the text and taken off the decoded text again, as LlamaTokenizer does; without one
    // (Gemma), spaces just become `▁`, as GemmaTokenizer does.
    let prefix = bool_flag(f, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    let (normalizer, pre_tokenizer) = if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        (Json::Null, json!({"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": false}))
    } else {
        (
            json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE}),
            json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false}),
        )
    };
    let parts = TokenizerJson {
        added: added.into(),
        normalizer,
        pre_tokenizer,
        post_processor: specials.template_processing().into(),
        decoder: json!({"type": "Sequence", "decoders": decoders}),
        bpe: json!({"unk_token": unk, "fuse_unk": true, "byte_fallback": true, "vocab": vocab, "merges": merges}),
    };
    finish(f, &parts.build())
}

/// `tokenizer.ggml.scores`, one per token.
fn scores(f: &GgufFile, n_tokens: usize) -> Result<Vec<f64>> {
    let err = |what: String| Error::Tokenizer(format!("{}: metadata tokenizer.ggml.scores {what}", f.path.display()));
    match f.get("tokenizer.ggml.scores") {
        Some(Value::Array(a)) if a.len() == n_tokens => {
            a.iter().map(|v| v.as_f64().ok_or_else(|| err(format!("must hold numbers, found {}", v.type_name())))).collect()
        }
        Some(v) => Err(err(format!("must be an array of {n_tokens} numbers (one per token), found {v}"))),
        None => Err(err("is missing (a SentencePiece vocabulary needs a score per token)".into())),
    }
}

/// The merges a vocabulary implies: for each token, each cut into two tokens of the
/// vocabulary, the token's cuts ordered by the ids of their halves; all of them ranked by
/// `rank` (higher first), then longer halves first. This is transformers'
/// `generate_merges`, step for step, so ties break the same way.
fn merges_from_vocabulary(tokens: &[String], rank: &[f64]) -> Vec<[String; 2]> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    // Python's dict: a repeated token keeps its first place in the order and its last id.
    let mut order = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if ids.insert(t.as_str(), i).is_none() {
            order.push(t.as_str());
        }
    }
    struct Cut<'a> {
        left: &'a str,
        right: &'a str,
        rank: f64,
        len: (usize, usize),
    }
    let mut cuts: Vec<Cut> = Vec::new();
    for token in order {
        let rank = rank[ids[token]];
        let start = cuts.len();
        for (at, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(at);
            if ids.contains_key(left) && ids.contains_key(right) {
                cuts.push(Cut { left, right, rank, len: (left.chars().count(), right.chars().count()) });
            }
        }
        cuts[start..].sort_by_key(|c| (ids[c.left], ids[c.right]));
    }
    // Stable, descending: equal keys keep their order, as Python's sorted(reverse=True).
    cuts.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(b.len.cmp(&a.len)));
    cuts.into_iter().map(|c| [c.left.to_string(), c.right.to_string()]).collect()
}
