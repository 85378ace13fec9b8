//! The tokenizer a GGUF file describes in its metadata, rebuilt as the `tokenizer.json`
//! the model was converted from would have it, then loaded by the `tokenizers` library.
//!
//! Supported: byte-level BPE (`tokenizer.ggml.model` = `gpt2`: GPT-2, SmolLM, Llama 3,
//! Qwen2/3 and most BPE models) with its vocabulary, merges and token types, here; and
//! SentencePiece-style vocabularies (`llama`: Llama 2, Mistral, Gemma) in `gguf_spm`, which
//! shares the token-type, special-token and post-processor pieces below. Control
//! tokens become special added tokens, user-defined ones plain added tokens (both are
//! matched whole in the text, as llama.cpp and HF do). `tokenizer.ggml.pre` names how the
//! text is split before BPE; each name maps to the pre-tokenizer of the HF tokenizers
//! llama.cpp recognises it from (its `convert_hf_to_gguf.py` picks the name by hashing
//! what the HF tokenizer does), e.g. `smollm`/`starcoder`: digits one by one, then GPT-2's
//! split. A file whose name is not known here is refused rather than tokenized differently.
//!
//! Special tokens: `bos/eos/unknown/padding_token_id`, `add_bos_token`/`add_eos_token`
//! (what `encode(.., add_special_tokens = true)` adds), and `eot/eom_token_id`, which end
//! generation as EOS does (llama.cpp stops on them too).
use serde_json::{json, Map, Value as Json};

use super::Tokenizer;
use crate::error::{Error, Result};
use crate::models::gguf::{GgufFile, Value};

/// Llama 3's split (also Falcon 3, DBRX, ...), as in its tokenizer.json.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split (Qwen2, 2.5 and 3), as in its tokenizer.json.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` names understood, by the split they stand for.
const PRE_GPT2: &[&str] = &["default", "gpt2", "gpt-2", "mpt", "olmo", "jais"];
const PRE_DIGITS: &[&str] = &["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"];
const PRE_LLAMA3: &[&str] = &["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"];
const PRE_QWEN2: &[&str] = &["qwen2", "deepseek-r1-qwen", "megrez"];

/// llama.cpp's token types.
const TOKEN_NORMAL: i64 = 1;
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

pub(super) fn from_gguf(f: &GgufFile) -> Result<Tokenizer> {
    let err = |what: String| Error::Tokenizer(format!("{}: {what}", f.path.display()));
    let model = match f.get("tokenizer.ggml.model") {
        Some(Value::Str(s)) => s.as_str(),
        Some(v) => return Err(err(format!("metadata tokenizer.ggml.model must be a string, found {}", v.type_name()))),
        None => return Err(err(
            "metadata tokenizer.ggml.model is missing: the file carries no tokenizer (put a tokenizer.json beside it)"
                .into(),
        )),
    };
    match model {
        "gpt2" => {}
        "llama" => return super::gguf_spm::from_gguf(f),
        _ => {
            return Err(err(format!(
                "tokenizer.ggml.model {model:?} is not supported (supported: \"gpt2\", byte-level BPE; \"llama\", SentencePiece BPE); put the model's tokenizer.json beside the file"
            )))
        }
    }
    let tokens = string_array(f, "tokenizer.ggml.tokens")?;
    let merges = string_array(f, "tokenizer.ggml.merges")?;
    let types = token_types(f, tokens.len())?;

    let byte_chars = byte_alphabet();
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, (tok, ty)) in tokens.iter().zip(&types).enumerate() {
        let added_as = added_token(id, tok, *ty);
        // The vocabulary is spelled in the byte-level alphabet; a plain token written
        // otherwise is respelled so that BPE and the decoder see its bytes.
        let spelled = if added_as.is_some() || tok.chars().all(|c| byte_chars.contains(&c)) {
            tok.to_string()
        } else {
            tok.bytes().map(|b| byte_chars[b as usize]).collect()
        };
        // A repeated spelling keeps its first id, as HF's vocabulary would.
        vocab.entry(spelled).or_insert(json!(id));
        added.extend(added_as);
    }

    let pre = match f.get("tokenizer.ggml.pre") {
        None => "default",
        Some(Value::Str(s)) => s.as_str(),
        Some(v) => return Err(err(format!("metadata tokenizer.ggml.pre must be a string, found {}", v.type_name()))),
    };
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    // ByteLevel with `use_regex` splits as GPT-2 does.
    let (normalizer, pre_tokenizer) = if PRE_GPT2.contains(&pre) {
        (Json::Null, byte_level(true))
    } else if PRE_DIGITS.contains(&pre) {
        (
            Json::Null,
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        )
    } else if PRE_LLAMA3.contains(&pre) {
        (Json::Null, split(LLAMA3_SPLIT))
    } else if PRE_QWEN2.contains(&pre) {
        (json!({"type": "NFC"}), split(QWEN2_SPLIT))
    } else {
        let known: Vec<&str> = [PRE_GPT2, PRE_DIGITS, PRE_LLAMA3, PRE_QWEN2].concat();
        return Err(err(format!("tokenizer.ggml.pre {pre:?} is not supported (supported: {})", known.join(", "))));
    };

    let specials = SpecialFlags::read(f, &tokens, false)?;
    // Byte-level BPE spells every byte, so it never needs an unknown token; the id is only
    // checked (HF's tokenizer.json for these models has none either).
    token_by_id(f, &tokens, "tokenizer.ggml.unknown_token_id")?;
    let byte_level_post =
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    let post_processor = match specials.template_processing() {
        None => byte_level_post,
        Some(template) => json!({"type": "Sequence", "processors": [byte_level_post, template]}),
    };

    let parts = TokenizerJson {
        added: added.into(),
        normalizer,
        pre_tokenizer,
        post_processor,
        decoder: json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
        bpe: json!({
            "unk_token": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges,
        }),
    };
    finish(f, &parts.build())
}

/// The pieces of an HF tokenizer.json that a GGUF vocabulary decides; `build` fills in
/// the rest of the document, which both vocabulary kinds (byte-level and SentencePiece)
/// share.
pub(super) struct TokenizerJson {
    pub added: Json,
    pub normalizer: Json,
    pub pre_tokenizer: Json,
    pub post_processor: Json,
    pub decoder: Json,
    /// The BPE model's own fields (`unk_token`, `fuse_unk`, `byte_fallback`, `vocab`,
    /// `merges`); the others take the HF defaults.
    pub bpe: Json,
}

impl TokenizerJson {
    pub fn build(self) -> Json {
        let mut model = json!({
            "type": "BPE", "dropout": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "ignore_merges": false,
        });
        if let (Json::Object(m), Json::Object(b)) = (&mut model, self.bpe) {
            m.extend(b);
        }
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added,
            "normalizer": self.normalizer,
            "pre_tokenizer": self.pre_tokenizer,
            "post_processor": self.post_processor,
            "decoder": self.decoder,
            "model": model,
        })
    }
}

/// Loads a tokenizer.json built from `f`'s metadata, with the file's special tokens.
pub(super) fn finish(f: &GgufFile, json: &Json) -> Result<Tokenizer> {
    let err = |what: String| Error::Tokenizer(format!("{}: {what}", f.path.display()));
    let bytes = serde_json::to_vec(json).map_err(|e| err(format!("cannot build the tokenizer: {e}")))?;
    let hf = tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| err(format!("the tokenizer metadata does not make a valid tokenizer: {e}")))?;
    let (bos, eos, eos_ids) = special_tokens(f)?;
    Tokenizer::from_parts(hf, &f.path, &f.path, bos, eos, eos_ids)
}

/// BOS/EOS and whether `encode(.., add_special_tokens = true)` adds them
/// (`add_bos_token` / `add_eos_token`).
pub(super) struct SpecialFlags {
    bos: Option<(u32, String)>,
    eos: Option<(u32, String)>,
}

impl SpecialFlags {
    /// `default_add_bos`: what a file without `add_bos_token` means (llama.cpp adds BOS
    /// for SentencePiece vocabularies that do not say otherwise, not for byte-level BPE).
    pub(super) fn read(f: &GgufFile, tokens: &[&str], default_add_bos: bool) -> Result<SpecialFlags> {
        let bos = token_by_id(f, tokens, "tokenizer.ggml.bos_token_id")?;
        let eos = token_by_id(f, tokens, "tokenizer.ggml.eos_token_id")?;
        let add_bos = bool_flag(f, "tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos);
        let add_eos = bool_flag(f, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        Ok(SpecialFlags { bos: bos.filter(|_| add_bos), eos: eos.filter(|_| add_eos) })
    }

    /// The `TemplateProcessing` post-processor that adds the tokens, or `None` when
    /// nothing is added.
    pub(super) fn template_processing(&self) -> Option<Json> {
        if self.bos.is_none() && self.eos.is_none() {
            return None;
        }
        let piece = |t: &(u32, String)| json!({"SpecialToken": {"id": t.1, "type_id": 0}});
        let seq = |t: &str| json!({"Sequence": {"id": t, "type_id": 0}});
        let mut single = Vec::new();
        let mut specials = Map::new();
        for t in [&self.bos, &self.eos].into_iter().flatten() {
            specials.insert(t.1.clone(), json!({"id": t.1, "ids": [t.0], "tokens": [t.1]}));
        }
        if let Some(b) = &self.bos {
            single.push(piece(b));
        }
        single.push(seq("A"));
        if let Some(e) = &self.eos {
            single.push(piece(e));
        }
        let mut pair = single.clone();
        pair.extend(single.iter().map(|p| if p.get("Sequence").is_some() { seq("B") } else { p.clone() }));
        Some(json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}))
    }
}

/// An optional boolean metadata value.
pub(super) fn bool_flag(f: &GgufFile, key: &str) -> Result<Option<bool>> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            Error::Tokenizer(format!("{}: metadata {key} must be a bool, found {}", f.path.display(), v.type_name()))
        }),
    }
}

/// `tokenizer.ggml.token_type`, one per token (all normal when the file has none).
pub(super) fn token_types(f: &GgufFile, n_tokens: usize) -> Result<Vec<i64>> {
    let err = |what: String| Error::Tokenizer(format!("{}: {what}", f.path.display()));
    match f.get("tokenizer.ggml.token_type") {
        None => Ok(vec![TOKEN_NORMAL; n_tokens]),
        Some(Value::Array(a)) if a.len() == n_tokens => a
            .iter()
            .map(|v| v.as_i64().ok_or_else(|| err("metadata tokenizer.ggml.token_type must hold integers".into())))
            .collect(),
        Some(v) => Err(err(format!(
            "metadata tokenizer.ggml.token_type must be an array of {n_tokens} integers (one per token), found {v}"
        ))),
    }
}

/// The added tokens of a vocabulary: control and unknown tokens as special ones,
/// user-defined tokens as plain ones (all are matched whole in the text, as llama.cpp
/// does; transformers makes the unknown token special too).
pub(super) fn added_token(id: usize, content: &str, ty: i64) -> Option<Json> {
    let special = ty == TOKEN_CONTROL || ty == TOKEN_UNKNOWN;
    (special || ty == TOKEN_USER_DEFINED).then(|| {
        json!({
            "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": special,
        })
    })
}

/// The BOS and EOS tokens a GGUF file names, and the ids that end generation: EOS, and
/// the end-of-turn / end-of-message tokens llama.cpp also stops on.
pub(super) fn special_tokens(f: &GgufFile) -> Result<(Option<String>, Option<String>, Vec<u32>)> {
    let tokens = string_array(f, "tokenizer.ggml.tokens")?;
    let token_of = |key: &str| -> Result<Option<(u32, String)>> { token_by_id(f, &tokens, key) };
    let mut eos_ids = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some((id, _)) = token_of(key)? {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    let bos = token_of("tokenizer.ggml.bos_token_id")?.map(|t| t.1);
    let eos = token_of("tokenizer.ggml.eos_token_id")?.map(|t| t.1);
    Ok((bos, eos, eos_ids))
}

/// The token metadata `key` names by id, if the file gives one.
pub(super) fn token_by_id(f: &GgufFile, tokens: &[&str], key: &str) -> Result<Option<(u32, String)>> {
    let err = |what: String| Error::Tokenizer(format!("{}: {what}", f.path.display()));
    let Some(v) = f.get(key) else { return Ok(None) };
    let id = v.as_i64().ok_or_else(|| err(format!("metadata {key} must be an integer, found {}", v.type_name())))?;
    // Some converters write -1 for "none".
    match usize::try_from(id).ok().and_then(|i| tokens.get(i)) {
        Some(t) => Ok(Some((id as u32, t.to_string()))),
        None if id < 0 => Ok(None),
        None => Err(err(format!("metadata {key} is {id}, outside the vocabulary of {} tokens", tokens.len()))),
    }
}

/// A required metadata array of strings.
pub(super) fn string_array<'a>(f: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let err = |what: String| Error::Tokenizer(format!("{}: metadata {key} {what}", f.path.display()));
    let items = match f.get(key) {
        Some(Value::Array(a)) => a,
        Some(v) => return Err(err(format!("must be an array of strings, found {}", v.type_name()))),
        None => return Err(err("is missing".into())),
    };
    items.iter().map(|v| v.as_str().ok_or_else(|| err(format!("must hold strings, found {}", v.type_name())))).collect()
}

/// GPT-2's byte-to-character table: byte b is spelled `table[b]`. Printable Latin-1 bytes
/// stand for themselves; the others map, in order, to U+0100 onwards.
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut n = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap_or('?')
            }
        })
        .collect()
}

/// The special-token variables a chat template is rendered with (`bos_token`, ...), as
/// transformers derives them from a GGUF file.
pub(crate) fn template_variables(f: &GgufFile) -> Vec<(String, String)> {
    let Ok(tokens) = string_array(f, "tokenizer.ggml.tokens") else { return vec![] };
    let mut vars = Vec::new();
    for (var, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        let id = f.get(key).and_then(Value::as_i64).and_then(|i| usize::try_from(i).ok());
        if let Some(t) = id.and_then(|i| tokens.get(i)) {
            vars.push((var.to_string(), t.to_string()));
        }
    }
    vars
}
