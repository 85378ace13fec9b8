//! A model's own chat template, rendered as transformers' `apply_chat_template` renders it.
//!
//! Where the template comes from follows transformers' tokenizer loading:
//! `chat_template.jinja` (the default template) and `additional_chat_templates/NAME.jinja`
//! (named ones) in the model folder; when any of those files exists, the
//! `chat_template` field of `tokenizer_config.json` is ignored. Otherwise that field is
//! used: a string (the default template) or a list of `{"name", "template"}` objects. A
//! processor's `chat_template.json` (`{"chat_template": "..."}`, multimodal checkpoints)
//! is read last, when nothing else gives a template.
//!
//! Rendering is Jinja (minijinja) set up as transformers sets up Jinja2: `trim_blocks` and
//! `lstrip_blocks`, one trailing newline dropped, loop controls, no auto-escaping, Python's
//! string and dict methods (`.strip()`, `.split()`, `.startswith()`, `.items()`, ...),
//! `raise_exception(message)`, `strftime_now(format)` (local time) and a `tojson` that
//! writes what Python's `json.dumps(ensure_ascii=False)` writes. The variables are those
//! transformers passes: `messages`, `add_generation_prompt`, `tools` and `documents`
//! (none), the special tokens of tokenizer_config.json (`bos_token`, `eos_token`, ...),
//! and the caller's extra variables, which override the special tokens.
use std::error::Error as _;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, Value};
use serde_json::{Map, Value as Json};

use super::pyjson;
use super::{ChatOptions, Message};
use crate::error::{Error, Result};

/// The name transformers gives the template used when no other is asked for.
pub const DEFAULT_TEMPLATE: &str = "default";

/// The internal name of the one template each environment holds.
const TEMPLATE_NAME: &str = "chat_template";

/// A compiled chat template with the variables it is rendered with. Cheap to share
/// (`Arc`); rendering does not change it.
pub struct ChatTemplate {
    name: String,
    origin: String,
    source: String,
    variables: Vec<(String, String)>,
    env: Environment<'static>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate").field("name", &self.name).field("origin", &self.origin).finish()
    }
}

/// A template's text as found in a model folder.
struct Found {
    name: String,
    origin: String,
    source: String,
}

impl ChatTemplate {
    /// Loads the chat template of a model folder: the one named `name`, or with `None`
    /// the default one. Errors name the files looked at (no template), the names the
    /// folder has (no template of that name), or the template's line and problem (a
    /// template that does not compile).
    pub fn load(dir: impl AsRef<Path>, name: Option<&str>) -> Result<ChatTemplate> {
        let dir = dir.as_ref();
        let found = find_templates(dir)?;
        let want = name.unwrap_or(DEFAULT_TEMPLATE);
        let Some(t) = found.iter().find(|t| t.name == want) else {
            return Err(missing_template(dir, &found, name));
        };
        let variables = special_token_variables(dir)?;
        ChatTemplate::compile(&t.name, &t.origin, t.source.clone(), variables)
    }

    /// The template `name` (`None`: the default) of those a model file carries in its
    /// metadata. Errors name the file and the templates it has.
    pub(crate) fn from_embedded(e: &crate::engine::model::EmbeddedTemplates, name: Option<&str>) -> Result<ChatTemplate> {
        let want = name.unwrap_or(DEFAULT_TEMPLATE);
        let Some((n, source)) = e.templates.iter().find(|(n, _)| n == want) else {
            let names: Vec<&str> = e.templates.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Template(format!(
                "{} has no chat template named {want:?} (it has: {})",
                e.file.display(),
                names.join(", ")
            )));
        };
        let key = if n == DEFAULT_TEMPLATE { "tokenizer.chat_template".to_string() } else { format!("tokenizer.chat_template.{n}") };
        let origin = format!("{} (metadata {key})", e.file.display());
        ChatTemplate::compile(n, &origin, source.clone(), e.variables.clone())
    }

    /// The names of the chat templates a model folder has (`default` first when present);
    /// empty when it has none.
    pub fn names(dir: impl AsRef<Path>) -> Result<Vec<String>> {
        let mut names: Vec<String> = find_templates(dir.as_ref())?.into_iter().map(|t| t.name).collect();
        names.sort_by_key(|n| (n != DEFAULT_TEMPLATE, n.clone()));
        Ok(names)
    }

    /// Compiles a template given as text, rendered with `variables` (such as
    /// `("bos_token", "<s>")`) besides the messages and options.
    pub fn from_source(
        source: impl Into<String>,
        variables: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ChatTemplate> {
        ChatTemplate::compile(DEFAULT_TEMPLATE, "the given chat template", source.into(), variables.into_iter().collect())
    }

    /// Compiles a template given as text, rendered with the special tokens of the model
    /// folder `dir` (as a template loaded from it would be).
    pub fn from_source_in(dir: impl AsRef<Path>, source: impl Into<String>) -> Result<ChatTemplate> {
        let variables = special_token_variables(dir.as_ref())?;
        ChatTemplate::compile(DEFAULT_TEMPLATE, "the given chat template", source.into(), variables)
    }

    fn compile(name: &str, origin: &str, source: String, variables: Vec<(String, String)>) -> Result<ChatTemplate> {
        let mut env = environment()?;
        env.add_template_owned(TEMPLATE_NAME, generation_blocks_as_plain(&source))
            .map_err(|e| Error::Template(describe(origin, &e)))?;
        Ok(ChatTemplate { name: name.to_string(), origin: origin.to_string(), source, variables, env })
    }

    /// The template's name (`default` unless a named one was loaded).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the template came from: a file, or a file and field.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The template's Jinja text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The special-token variables it is rendered with, such as `bos_token`.
    pub fn variables(&self) -> &[(String, String)] {
        &self.variables
    }

    /// Renders `messages` to the prompt text. Fails when the conversation is empty, a
    /// message has no role, an extra variable takes a reserved name (`messages`,
    /// `add_generation_prompt`), or the template fails or calls `raise_exception` — the
    /// error then carries the template's own message. `options.template` is not read
    /// here: it chooses which template to load.
    pub fn render(&self, messages: &[Message], options: &ChatOptions) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::invalid("the conversation has no messages"));
        }
        if let Some(i) = messages.iter().position(|m| m.role.is_empty()) {
            return Err(Error::invalid(format!("message {i} has an empty role")));
        }
        for reserved in ["messages", "add_generation_prompt"] {
            if options.template_kwargs.contains_key(reserved) {
                return Err(Error::invalid(format!(
                    "template_kwargs may not set {reserved:?}: it is set from the chat call itself"
                )));
            }
        }
        // The variables in the order transformers passes them: special tokens, then the
        // caller's, which may replace them.
        let mut vars = Map::new();
        for (k, v) in &self.variables {
            vars.insert(k.clone(), Json::String(v.clone()));
        }
        vars.insert("tools".into(), Json::Null);
        vars.insert("documents".into(), Json::Null);
        for (k, v) in &options.template_kwargs {
            vars.insert(k.clone(), v.clone());
        }
        vars.insert("messages".into(), Json::Array(messages.iter().map(Message::to_json).collect()));
        vars.insert("add_generation_prompt".into(), Json::Bool(options.add_generation_prompt));
        let ctx = Value::from(minijinja::value::Serde(&vars));
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| Error::Template(describe(&self.origin, &e)))?;
        template.render(ctx).map_err(|e| Error::Template(describe(&self.origin, &e)))
    }
}

/// A Jinja environment configured as transformers configures Jinja2 for chat templates.
fn environment() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| Error::Template(format!("cannot configure the template syntax: {e}")))?;
    env.set_syntax(syntax);
    // Prompts are plain text: nothing may be HTML-escaped, whatever the template's name.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", pyjson::tojson);
    env.set_formatter(|out, state, value| match pyjson::py_str(value) {
        Some(text) => out.write_str(&text).map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "cannot write")),
        None => minijinja::escape_formatter(out, state, value),
    });
    Ok(env)
}

/// Turns `{% generation %}` ... `{% endgeneration %}` into `{% if true %}` ... `{% endif %}`.
/// Templates made for training mark the assistant's text with that block; transformers
/// renders its body unchanged (the tag only records where the text is), while Jinja
/// without that extension, minijinja included, rejects the unknown tag. Only the keyword
/// changes: the delimiters and their whitespace control stay, and so does every line.
fn generation_blocks_as_plain(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        let inner = &tag[2..];
        let marker = inner.chars().next().filter(|c| *c == '-' || *c == '+');
        let body = &inner[marker.map_or(0, char::len_utf8)..];
        let trimmed = body.trim_start();
        let keyword = ["endgeneration", "generation"].into_iter().find(|k| {
            trimmed.starts_with(k) && {
                let after = trimmed[k.len()..].trim_start();
                after.starts_with("%}") || after.starts_with("-%}") || after.starts_with("+%}")
            }
        });
        match keyword {
            Some(k) => {
                let pad = &body[..body.len() - trimmed.len()];
                out.push_str("{%");
                out.extend(marker);
                out.push_str(pad);
                out.push_str(if k == "generation" { "if true" } else { "endif" });
                rest = &trimmed[k.len()..];
            }
            None => {
                out.push_str("{%");
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The message a template gave `raise_exception`, kept as the error's source so that the
/// message reaches the caller unchanged.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// `strftime_now(format)`: the local time in a C `strftime` format, as Python's
/// `datetime.now().strftime(format)`.
fn strftime_now(format: String) -> std::result::Result<Value, minijinja::Error> {
    use std::fmt::Write;
    let mut out = String::new();
    // chrono reports an unknown `%` directive as a formatting error, which `write!` hands
    // back (`to_string` would panic on it).
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("strftime_now: invalid format {format:?}"))
    })?;
    Ok(Value::from(out))
}

/// An error message naming the template, the line, and the problem — or the message the
/// template raised.
fn describe(origin: &str, err: &minijinja::Error) -> String {
    let line = err.line().map(|l| format!(", line {l}")).unwrap_or_default();
    let mut source = err.source();
    while let Some(s) = source {
        if let Some(raised) = s.downcast_ref::<Raised>() {
            return format!("{origin}{line}: the template raised an error: {raised}");
        }
        source = s.source();
    }
    let mut msg = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    format!("{origin}{line}: {msg}")
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Template(format!("{}: cannot read: {e}", path.display())))
}

fn read_json_object(path: &Path) -> Result<Option<Map<String, Json>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(path)?;
    match serde_json::from_str(&text) {
        Ok(Json::Object(o)) => Ok(Some(o)),
        Ok(_) => Err(Error::Template(format!("{}: expected a JSON object", path.display()))),
        Err(e) => Err(Error::Template(format!("{}: not valid JSON: {e}", path.display()))),
    }
}

/// The files that may hold a chat template, in the order they are looked at.
fn candidate_files(dir: &Path) -> [PathBuf; 4] {
    [
        dir.join("chat_template.jinja"),
        dir.join("additional_chat_templates"),
        dir.join("tokenizer_config.json"),
        dir.join("chat_template.json"),
    ]
}

/// Every chat template of a model folder, by the precedence described in the module doc.
fn find_templates(dir: &Path) -> Result<Vec<Found>> {
    if !dir.is_dir() {
        return Err(Error::Template(format!("{}: no such folder", dir.display())));
    }
    let [jinja, extra_dir, tok_config, processor] = candidate_files(dir);
    let mut found = Vec::new();
    if jinja.is_file() {
        found.push(Found { name: DEFAULT_TEMPLATE.into(), origin: jinja.display().to_string(), source: read_text(&jinja)? });
    }
    if extra_dir.is_dir() {
        let entries = std::fs::read_dir(&extra_dir)
            .map_err(|e| Error::Template(format!("{}: cannot list: {e}", extra_dir.display())))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::Template(format!("{}: cannot list: {e}", extra_dir.display())))?;
            paths.push(entry.path());
        }
        paths.sort();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".jinja")) else {
                continue;
            };
            if path.is_file() {
                found.push(Found { name: name.to_string(), origin: path.display().to_string(), source: read_text(&path)? });
            }
        }
    }
    if !found.is_empty() {
        return Ok(found);
    }
    if let Some(config) = read_json_object(&tok_config)? {
        let origin = format!("{} (chat_template)", tok_config.display());
        match config.get("chat_template") {
            None | Some(Json::Null) => {}
            Some(Json::String(s)) => found.push(Found { name: DEFAULT_TEMPLATE.into(), origin, source: s.clone() }),
            Some(Json::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let (Some(name), Some(source)) = (
                        item.get("name").and_then(Json::as_str),
                        item.get("template").and_then(Json::as_str),
                    ) else {
                        return Err(Error::Template(format!(
                            "{}: chat_template[{i}] must be an object with string fields \"name\" and \"template\"",
                            tok_config.display()
                        )));
                    };
                    let origin = format!("{} (chat_template \"{name}\")", tok_config.display());
                    found.push(Found { name: name.to_string(), origin, source: source.to_string() });
                }
            }
            Some(other) => {
                return Err(Error::Template(format!(
                    "{}: chat_template must be a string or a list of {{\"name\", \"template\"}} objects, found {}",
                    tok_config.display(),
                    json_kind(other)
                )))
            }
        }
    }
    if found.is_empty() {
        if let Some(config) = read_json_object(&processor)? {
            match config.get("chat_template") {
                None | Some(Json::Null) => {}
                Some(Json::String(s)) => found.push(Found {
                    name: DEFAULT_TEMPLATE.into(),
                    origin: format!("{} (chat_template)", processor.display()),
                    source: s.clone(),
                }),
                Some(other) => {
                    return Err(Error::Template(format!(
                        "{}: chat_template must be a string, found {}",
                        processor.display(),
                        json_kind(other)
                    )))
                }
            }
        }
    }
    Ok(found)
}

fn missing_template(dir: &Path, found: &[Found], name: Option<&str>) -> Error {
    if found.is_empty() {
        let files: Vec<String> = candidate_files(dir).iter().map(|p| p.display().to_string()).collect();
        return Error::Template(format!(
            "the model in {} has no chat template: looked for {}, {}/*.jinja, the \"chat_template\" field of {} \
             and {}",
            dir.display(),
            files[0],
            files[1],
            files[2],
            files[3]
        ));
    }
    let mut names: Vec<&str> = found.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    match name {
        Some(name) => Error::Template(format!(
            "the model in {} has no chat template named {name:?}; it has: {}",
            dir.display(),
            names.join(", ")
        )),
        None => Error::Template(format!(
            "the model in {} has several chat templates and none named \"default\"; choose one of: {}",
            dir.display(),
            names.join(", ")
        )),
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// The special tokens transformers passes to a template by name: every `*_token` field of
/// tokenizer_config.json that holds a token (a string, or an object with a "content"
/// string) and the named tokens of its `extra_special_tokens` object (Gemma's
/// `boi_token`, ...); then those of a legacy special_tokens_map.json not already given.
fn special_token_variables(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let add = |vars: &mut Vec<(String, String)>, key: &str, value: &Json| {
        let token = match value {
            Json::String(s) => Some(s.as_str()),
            Json::Object(o) => o.get("content").and_then(Json::as_str),
            _ => None,
        };
        if let Some(token) = token {
            if !vars.iter().any(|(k, _)| k == key) {
                vars.push((key.to_string(), token.to_string()));
            }
        }
    };
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let Some(config) = read_json_object(&dir.join(file))? else { continue };
        for (key, value) in &config {
            if key.ends_with("_token") {
                add(&mut vars, key, value);
            }
        }
        if let Some(Json::Object(extra)) = config.get("extra_special_tokens") {
            for (key, value) in extra {
                add(&mut vars, key, value);
            }
        }
    }
    Ok(vars)
}
