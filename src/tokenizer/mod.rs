//! Tokenizers: a model folder's Hugging Face `tokenizer.json`, its special tokens (BOS, EOS,
//! added tokens) and streaming detokenization.
//!
//! Encoding and decoding are those of the `tokenizers` library (the Rust core of Hugging
//! Face's tokenizers), so ids and text match Python's `Tokenizer.from_file(...)` exactly.
//! The files beside `tokenizer.json` supply what it does not say itself: which token is BOS
//! and which ids end generation.
//!
//! Where transformers' `AutoTokenizer` differs from the `tokenizers` library on the same
//! files, this module follows the `tokenizers` library (see `scripts/tokenizer_refs.py`, which
//! records the differences).

mod detokenizer;
mod gguf;
mod gguf_spm;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};

pub use detokenizer::Detokenizer;
pub(crate) use gguf::template_variables as gguf_template_variables;

/// A token added on top of the model's vocabulary (`added_tokens` in tokenizer.json):
/// control tokens such as `<|im_start|>`, and extra pieces such as `<think>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    pub id: u32,
    pub content: String,
    /// Special tokens are the ones `decode(.., skip_special_tokens = true)` leaves out.
    pub special: bool,
}

/// A loaded tokenizer. Cloning is cheap (the tables are shared), and it may be used from
/// several threads at once.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    hf: tokenizers::Tokenizer,
    dir: PathBuf,
    /// The file errors name: the folder's tokenizer.json, or the GGUF file.
    origin: PathBuf,
    bos_token: Option<String>,
    bos_token_id: Option<u32>,
    adds_bos: bool,
    eos_token: Option<String>,
    eos_token_ids: Vec<u32>,
    added_tokens: Vec<AddedToken>,
    special_ids: HashSet<u32>,
    /// Ids the decoder turns into one raw byte (SentencePiece byte fallback, `<0xE4>`);
    /// empty when the decoder has no byte fallback.
    byte_ids: HashSet<u32>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("dir", &self.inner.dir)
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.inner.bos_token)
            .field("eos_token_ids", &self.inner.eos_token_ids)
            .finish()
    }
}

impl Tokenizer {
    /// Loads the tokenizer of a model folder.
    ///
    /// `tokenizer.json` is required. When present, `tokenizer_config.json` names the BOS and
    /// EOS tokens, and `config.json` / `generation_config.json` add EOS ids (`eos_token_id`,
    /// an id or a list). Each file that is present must parse; an error names the file.
    pub fn load(dir: impl AsRef<Path>) -> Result<Tokenizer> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::Tokenizer(format!(
                "{}: no such folder (expected a model folder holding tokenizer.json)",
                dir.display()
            )));
        }
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::Tokenizer(format!(
                "{}: not found; the model folder {} has no tokenizer.json",
                path.display(),
                dir.display()
            )));
        }
        if !path.is_file() {
            return Err(Error::Tokenizer(format!("{}: not a file", path.display())));
        }
        let hf = read_tokenizer_json(&path)?;

        let tok_config = read_json(dir, "tokenizer_config.json")?;
        let config = read_json(dir, "config.json")?;
        let gen_config = read_json(dir, "generation_config.json")?;

        let token_field = |name: &str| -> Result<Option<String>> {
            match &tok_config {
                Some(c) => token_string(&c.1, name).map_err(|m| Error::Tokenizer(format!("{}: {m}", c.0.display()))),
                None => Ok(None),
            }
        };
        let bos_token = token_field("bos_token")?;
        let eos_token = token_field("eos_token")?;

        // EOS: every id any of the files names, in the order generation_config.json,
        // config.json, tokenizer_config.json.
        let mut eos_token_ids = Vec::new();
        for (file, value) in [&gen_config, &config].into_iter().flatten() {
            // Multimodal checkpoints may keep it under text_config only.
            let field = [value.get("eos_token_id"), value.get("text_config").and_then(|t| t.get("eos_token_id"))]
                .into_iter()
                .flatten()
                .find(|v| !v.is_null());
            if let Some(v) = field {
                let ids = id_list(v).ok_or_else(|| {
                    Error::Tokenizer(format!(
                        "{}: eos_token_id must be a token id or a list of token ids, found {v}",
                        file.display()
                    ))
                })?;
                push_unique(&mut eos_token_ids, ids);
            }
        }
        Tokenizer::from_parts(hf, dir, &path, bos_token, eos_token, eos_token_ids)
    }

    /// A tokenizer from a `tokenizers` one and what the files around it say: the BOS and
    /// EOS tokens by name, and EOS ids (the EOS token's id is added to them). `dir` is what
    /// `dir()` reports, `origin` the file errors name.
    pub(crate) fn from_parts(
        hf: tokenizers::Tokenizer,
        dir: &Path,
        origin: &Path,
        bos_token: Option<String>,
        eos_token: Option<String>,
        mut eos_token_ids: Vec<u32>,
    ) -> Result<Tokenizer> {
        let mut added_tokens: Vec<AddedToken> = hf
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| AddedToken { id, content: t.content, special: t.special })
            .collect();
        added_tokens.sort_by_key(|t| t.id);
        let special_ids = added_tokens.iter().filter(|t| t.special).map(|t| t.id).collect();
        let bos_token_id = bos_token.as_deref().and_then(|t| hf.token_to_id(t));

        // Whatever the configs say, the post-processor decides what
        // `encode(text, add_special_tokens = true)` adds; ask it.
        let adds_bos = match bos_token_id {
            Some(bos) => {
                let probe = hf
                    .encode_fast("", true)
                    .map_err(|e| Error::Tokenizer(format!("{}: cannot encode: {e}", origin.display())))?;
                probe.get_ids().first() == Some(&bos)
            }
            None => false,
        };
        if let Some(id) = eos_token.as_deref().and_then(|t| hf.token_to_id(t)) {
            push_unique(&mut eos_token_ids, [id]);
        }

        let byte_ids = if has_byte_fallback_decoder(&hf) { byte_token_ids(&hf) } else { HashSet::new() };

        Ok(Tokenizer {
            inner: Arc::new(Inner {
                hf,
                dir: dir.to_path_buf(),
                origin: origin.to_path_buf(),
                bos_token,
                bos_token_id,
                adds_bos,
                eos_token,
                eos_token_ids,
                added_tokens,
                special_ids,
                byte_ids,
            }),
        })
    }

    /// The tokenizer a GGUF file's metadata describes (`tokenizer.ggml.*`; byte-level BPE).
    pub fn from_gguf(file: &crate::models::gguf::GgufFile) -> Result<Tokenizer> {
        gguf::from_gguf(file)
    }

    /// The tokenizer of a GGUF model given by a `tokenizer.json` beside the file (for
    /// vocabularies the metadata route does not cover). With a `tokenizer_config.json`
    /// there too, the folder loads as a model folder's would; without one, the BOS and EOS
    /// tokens are the GGUF file's.
    pub fn beside_gguf(file: &crate::models::gguf::GgufFile) -> Result<Tokenizer> {
        let dir = file.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if dir.join("tokenizer_config.json").is_file() {
            return Tokenizer::load(dir);
        }
        let path = dir.join("tokenizer.json");
        let hf = read_tokenizer_json(&path)?;
        let (bos, eos, eos_ids) = gguf::special_tokens(file)?;
        Tokenizer::from_parts(hf, dir, &path, bos, eos, eos_ids)
    }

    /// The tokenizer as a `tokenizer.json` document (what `tokenizers` would save).
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .hf
            .to_string(true)
            .map_err(|e| Error::Tokenizer(format!("{}: cannot serialize the tokenizer: {e}", self.inner.origin.display())))
    }

    /// The model folder this tokenizer was loaded from (for a GGUF file: that file).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Text to ids. With `add_special_tokens`, the tokens tokenizer.json's post-processor
    /// adds (such as BOS) are added. Special tokens written in the text (`<|im_start|>`)
    /// always become their ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.hf.encode_fast(text, add_special_tokens).map_err(|e| {
            Error::Tokenizer(format!(
                "{}: cannot encode the text: {e}",
                self.inner.origin.display()
            ))
        })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids for a plain-text prompt, as mlx-lm's `generate` makes them: special tokens are
    /// added unless the text already starts with the BOS token (a prompt rendered by a chat
    /// template usually does), so BOS is never doubled.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(text, self.prompt_needs_special_tokens(text))
    }

    /// `encode_prompt` for many texts at once, encoded in parallel (HF tokenizers' batch
    /// encode); one result per text, so a text that fails does not fail the others.
    pub fn encode_prompts(&self, texts: &[&str]) -> Vec<Result<Vec<u32>>> {
        let mut out: Vec<Option<Result<Vec<u32>>>> = texts.iter().map(|_| None).collect();
        for special in [true, false] {
            let idx: Vec<usize> = (0..texts.len()).filter(|&i| self.prompt_needs_special_tokens(texts[i]) == special).collect();
            if idx.is_empty() {
                continue;
            }
            let inputs: Vec<&str> = idx.iter().map(|&i| texts[i]).collect();
            match self.inner.hf.encode_batch_fast(inputs, special) {
                Ok(encs) => idx.iter().zip(encs).for_each(|(&i, e)| out[i] = Some(Ok(e.get_ids().to_vec()))),
                // One text failed the whole batch: encode them one by one to say which.
                Err(_) => idx.iter().for_each(|&i| out[i] = Some(self.encode(texts[i], special))),
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Ok(vec![]))).collect()
    }

    /// Whether `encode_prompt` adds special tokens to `text`.
    pub fn prompt_needs_special_tokens(&self, text: &str) -> bool {
        match &self.inner.bos_token {
            Some(bos) => !text.starts_with(bos.as_str()),
            None => true,
        }
    }

    /// Ids to text. Ids that name no token are left out. With `skip_special_tokens`, special
    /// tokens (see [`AddedToken::special`]) are left out too.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.hf.decode(ids, skip_special_tokens).map_err(|e| {
            Error::Tokenizer(format!("{}: cannot decode: {e}", self.inner.origin.display()))
        })
    }

    /// A streaming detokenizer: feed it ids one at a time, get back text as it completes.
    pub fn detokenizer(&self, skip_special_tokens: bool) -> Detokenizer {
        Detokenizer::new(self, skip_special_tokens)
    }

    /// The BOS token named by tokenizer_config.json, if any.
    pub fn bos_token(&self) -> Option<&str> {
        self.inner.bos_token.as_deref()
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.inner.bos_token_id
    }

    /// Whether `encode(text, true)` puts the BOS token first.
    pub fn adds_bos(&self) -> bool {
        self.inner.adds_bos
    }

    /// The EOS token named by tokenizer_config.json, if any.
    pub fn eos_token(&self) -> Option<&str> {
        self.inner.eos_token.as_deref()
    }

    /// Every id that ends generation: generation_config.json's and config.json's
    /// `eos_token_id` and tokenizer_config.json's `eos_token`, without repeats.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.inner.eos_token_ids
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.inner.eos_token_ids.contains(&id)
    }

    /// The added tokens, by id.
    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.inner.added_tokens
    }

    /// Whether `id` is a special token (one that `skip_special_tokens` leaves out).
    pub fn is_special(&self, id: u32) -> bool {
        self.inner.special_ids.contains(&id)
    }

    /// The number of tokens, added tokens included (Python's `len(tokenizer)`). A model's
    /// embedding table may have more rows than this.
    pub fn vocab_size(&self) -> usize {
        self.inner.hf.get_vocab_size(true)
    }

    /// The token string of an id, as the vocabulary spells it (byte-level tokens in their
    /// printable byte alphabet, SentencePiece tokens with `▁`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.hf.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.hf.token_to_id(token)
    }

    /// Whether the decoder turns `id` into one raw byte (`<0xE4>`).
    pub(crate) fn is_byte_token(&self, id: u32) -> bool {
        self.inner.byte_ids.contains(&id)
    }
}

/// Reads a tokenizer.json, with its truncation and padding turned off.
fn read_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::Tokenizer(format!("{}: cannot read: {e}", path.display())))?;
    let mut hf = tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| Error::Tokenizer(format!("{}: not a valid tokenizer.json: {e}", path.display())))?;
    // A tokenizer.json may carry truncation and padding settings; transformers ignores
    // them unless a call asks, and a prompt must never be cut or padded silently.
    hf.with_truncation(None)
        .map_err(|e| Error::Tokenizer(format!("{}: cannot turn truncation off: {e}", path.display())))?;
    hf.with_padding(None);
    Ok(hf)
}

/// Reads `dir/name` as JSON if the file exists: `Ok(None)` when it does not, an error naming
/// the file when it cannot be read or parsed.
fn read_json(dir: &Path, name: &str) -> Result<Option<(PathBuf, Value)>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Tokenizer(format!("{}: cannot read: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Tokenizer(format!("{}: not valid JSON: {e}", path.display())))?;
    if !value.is_object() {
        return Err(Error::Tokenizer(format!("{}: expected a JSON object", path.display())));
    }
    Ok(Some((path, value)))
}

/// A token field of tokenizer_config.json: a string, an added-token object
/// (`{"content": "<s>", ...}`, as older files have it), or null/absent.
fn token_string(config: &Value, name: &str) -> std::result::Result<Option<String>, String> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(format!("{name} is an object without a \"content\" string")),
        },
        Some(v) => Err(format!("{name} must be a string, found {v}")),
    }
}

/// `eos_token_id` as a list of ids: one id, or a list of them.
fn id_list(v: &Value) -> Option<Vec<u32>> {
    let one = |x: &Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        _ => one(v).map(|id| vec![id]),
    }
}

fn push_unique(list: &mut Vec<u32>, ids: impl IntoIterator<Item = u32>) {
    for id in ids {
        if !list.contains(&id) {
            list.push(id);
        }
    }
}

/// Whether the decoder pipeline contains a ByteFallback step.
fn has_byte_fallback_decoder(hf: &tokenizers::Tokenizer) -> bool {
    fn find(v: &Value) -> bool {
        match v {
            Value::Object(o) => o.get("type").and_then(Value::as_str) == Some("ByteFallback") || o.values().any(find),
            Value::Array(a) => a.iter().any(find),
            _ => false,
        }
    }
    hf.get_decoder().and_then(|d| serde_json::to_value(d).ok()).is_some_and(|v| find(&v))
}

/// The ids of the `<0xNN>` tokens (either hex case, as ByteFallback accepts both).
fn byte_token_ids(hf: &tokenizers::Tokenizer) -> HashSet<u32> {
    (0..=255u8)
        .flat_map(|b| [format!("<0x{b:02X}>"), format!("<0x{b:02x}>")])
        .filter_map(|t| hf.token_to_id(&t))
        .collect()
}
