//! Training data in mlx-lm's JSONL formats, tokenized as mlx-lm tokenizes them:
//!
//! - `{"text": ...}`: the text encoded with the tokenizer's special tokens, EOS appended
//!   when the encoding does not end with it;
//! - `{"prompt": ..., "completion": ...}`: a user and an assistant message through the
//!   model's chat template;
//! - `{"messages": [{"role": ..., "content": ...}, ...]}`: the conversation through the
//!   chat template.
//!
//! Either chat form may carry `"tools"` (passed to the template). The first line decides
//! the format, as in mlx-lm; every line must then have that format's fields and no others.
//! With prompt masking each example also records where its completion starts (the length
//! of the conversation without its last message), so the loss skips the prompt.
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::chat::{ChatOptions, Message};
use crate::engine::Model;
use crate::error::{Error, Result};

/// The JSONL format of a dataset, named by the keys its lines hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Completions,
    Chat,
}

impl Format {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Format::Text => &["text"],
            Format::Completions => &["prompt", "completion", "tools"],
            Format::Chat => &["messages", "tools"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Completions => "prompt/completion",
            Format::Chat => "chat (messages)",
        }
    }

    /// The format a first line announces, by mlx-lm's precedence.
    fn of(line: &Map<String, Json>) -> Option<Format> {
        if line.contains_key("prompt") && line.contains_key("completion") {
            Some(Format::Completions)
        } else if line.contains_key("messages") {
            Some(Format::Chat)
        } else if line.contains_key("text") {
            Some(Format::Text)
        } else {
            None
        }
    }
}

/// How examples are read.
#[derive(Clone, Debug, Default)]
pub struct DatasetOptions {
    /// Leave the prompt out of the loss: everything before the last message (chat), or the
    /// prompt (prompt/completion). Not possible for text datasets.
    pub mask_prompt: bool,
}

/// One tokenized example: the loss covers the targets from `offset` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub offset: usize,
}

/// A tokenized JSONL file.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    pub format: Format,
    pub examples: Vec<Example>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Reads and tokenizes `path` with `model`'s tokenizer and chat template.
    pub fn load(path: impl AsRef<Path>, model: &mut Model, opts: &DatasetOptions) -> Result<Dataset> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let at = |line: usize, msg: String| Error::invalid(format!("{}:{line}: {msg}", path.display()));
        let mut format = None;
        let mut examples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let value: Json = serde_json::from_str(raw).map_err(|e| at(n, format!("not valid JSON: {e}")))?;
            let Json::Object(obj) = value else {
                return Err(at(n, "expected a JSON object".into()));
            };
            let f = match format {
                Some(f) => f,
                None => {
                    let f = Format::of(&obj).ok_or_else(|| {
                        at(n, "the line has none of the fields that name a format: \"text\", \"prompt\" + \"completion\", or \"messages\"".into())
                    })?;
                    if f == Format::Text && opts.mask_prompt {
                        return Err(at(n, "prompt masking needs prompts: a text dataset has none (use prompt/completion or messages lines)".into()));
                    }
                    format = Some(f);
                    f
                }
            };
            let example = tokenize(&obj, f, model, opts).map_err(|e| match e {
                Error::InvalidArgument(m) => at(n, m),
                other => at(n, other.to_string()),
            })?;
            examples.push(example);
        }
        let Some(format) = format else {
            return Err(Error::invalid(format!("{}: the dataset has no examples", path.display())));
        };
        Ok(Dataset { path: path.to_path_buf(), format, examples })
    }
}

/// The splits of a data folder, as mlx-lm reads one: `train.jsonl`, `valid.jsonl` and
/// `test.jsonl`, each optional on disk.
#[derive(Clone, Debug, Default)]
pub struct Splits {
    pub train: Option<Dataset>,
    pub valid: Option<Dataset>,
    pub test: Option<Dataset>,
}

impl Splits {
    pub fn load(dir: impl AsRef<Path>, model: &mut Model, opts: &DatasetOptions) -> Result<Splits> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "{} is not a folder (a data folder holds train.jsonl, valid.jsonl and test.jsonl)",
                dir.display()
            )));
        }
        let mut split = |name: &str| -> Result<Option<Dataset>> {
            let p = dir.join(format!("{name}.jsonl"));
            if p.exists() {
                Dataset::load(&p, model, opts).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Splits { train: split("train")?, valid: split("valid")?, test: split("test")? })
    }
}

fn field<'a>(obj: &'a Map<String, Json>, key: &str, f: Format) -> Result<&'a Json> {
    obj.get(key).ok_or_else(|| {
        Error::invalid(format!("missing field {key:?} (the first line made this a {} dataset)", f.name()))
    })
}

fn string<'a>(obj: &'a Map<String, Json>, key: &str, f: Format) -> Result<&'a str> {
    field(obj, key, f)?.as_str().ok_or_else(|| Error::invalid(format!("field {key:?} must be a string")))
}

fn message(i: usize, v: &Json) -> Result<Message> {
    let bad = |what: String| Error::invalid(format!("messages[{i}]: {what}"));
    let obj = v.as_object().ok_or_else(|| bad("expected an object with \"role\" and \"content\"".into()))?;
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "role" | "content")) {
        return Err(bad(format!("unknown key {k:?} (a message holds \"role\" and \"content\")")));
    }
    let text = |key: &str| -> Result<String> {
        match obj.get(key) {
            Some(Json::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(format!("{key:?} must be a string"))),
            None => Err(bad(format!("missing field {key:?}"))),
        }
    };
    Ok(Message::new(text("role")?, text("content")?))
}

fn tokenize(obj: &Map<String, Json>, f: Format, model: &mut Model, opts: &DatasetOptions) -> Result<Example> {
    if let Some(k) = obj.keys().find(|k| !f.keys().contains(&k.as_str())) {
        return Err(Error::invalid(format!(
            "unknown key {k:?} (the lines of a {} dataset hold: {})",
            f.name(),
            f.keys().join(", ")
        )));
    }
    if f == Format::Text {
        let tok = model.tokenizer();
        let mut tokens = tok.encode(string(obj, "text", f)?, true)?;
        let eos = tok.eos_token().and_then(|t| tok.token_to_id(t));
        if let Some(eos) = eos {
            if tokens.last() != Some(&eos) {
                tokens.push(eos);
            }
        }
        return Ok(Example { tokens, offset: 0 });
    }
    let messages = match f {
        Format::Completions => vec![Message::user(string(obj, "prompt", f)?), Message::assistant(string(obj, "completion", f)?)],
        _ => {
            let list = field(obj, "messages", f)?.as_array().ok_or_else(|| Error::invalid("field \"messages\" must be a list"))?;
            if list.is_empty() {
                return Err(Error::invalid("\"messages\" is empty"));
            }
            list.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<Vec<_>>>()?
        }
    };
    let mut options = ChatOptions { add_generation_prompt: false, ..ChatOptions::default() };
    if let Some(tools) = obj.get("tools") {
        options.template_kwargs.insert("tools".into(), tools.clone());
    }
    // transformers' apply_chat_template(tokenize=True) encodes the rendered text without
    // adding special tokens: the template writes them.
    let text = model.render_chat(&messages, &options)?;
    let tokens = model.tokenizer().encode(&text, false)?;
    let offset = if opts.mask_prompt {
        let prompt = &messages[..messages.len() - 1];
        options.add_generation_prompt = messages.last().is_some_and(|m| m.role == "assistant");
        let text = model.render_chat(prompt, &options)?;
        model.tokenizer().encode(&text, false)?.len()
    } else {
        0
    };
    Ok(Example { tokens, offset })
}
