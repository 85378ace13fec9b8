//! Chat templates: compiling and rendering an arbitrary template, and the fixture
//! models' real templates (Qwen3, Llama 3, Gemma 3) with arbitrary messages and
//! variables. The input is NUL-separated parts: a first part whose first byte picks the
//! template (its low bits: the fixture's, else the rest of the part is the template's
//! source) and the options, then role, content, role, content, ..., and an odd last part
//! as the template variables (a JSON object, when it is one).
use std::sync::OnceLock;

use mlxrun::{ChatOptions, ChatTemplate, Message};

fn fixture_templates() -> &'static [ChatTemplate] {
    static TEMPLATES: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        super::FIXTURES
            .iter()
            .map(|name| {
                let dir = super::fixture(name);
                ChatTemplate::load(&dir, None).unwrap_or_else(|e| panic!("fixture template {}: {e} (run scripts/setup.sh)", dir.display()))
            })
            .collect()
    })
}

/// Compiles the fixture templates before the first input.
pub fn init() {
    fixture_templates();
}

pub fn run(data: &[u8]) {
    let parts = super::parts(data);
    let Some((&head, source)) = parts[0].split_first() else { return };
    let own;
    let template = match head as usize % 4 {
        0 => {
            let vars = [("bos_token", "<s>"), ("eos_token", "</s>")].map(|(k, v)| (k.to_string(), v.to_string()));
            let Ok(t) = ChatTemplate::from_source(super::text(source), vars) else { return };
            own = t;
            &own
        }
        i => &fixture_templates()[i - 1],
    };
    let mut options = ChatOptions { add_generation_prompt: head & 0x80 != 0, ..ChatOptions::default() };
    let pairs = &parts[1..];
    if pairs.len() % 2 == 1 {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(pairs[pairs.len() - 1]) {
            options.template_kwargs = map;
        }
    }
    let messages: Vec<Message> =
        pairs.chunks_exact(2).map(|m| Message::new(super::text(m[0]), super::text(m[1]))).collect();
    let _ = template.render(&messages, &options);
}
