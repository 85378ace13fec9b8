//! Chat templates render byte for byte what transformers' `apply_chat_template(...,
//! tokenize=False)` renders (scripts/chat_template_refs.py records it), template errors
//! carry the template's message, and broken or missing templates give errors that say
//! what is wrong.
mod common;

use std::path::{Path, PathBuf};

use mlxrun::chat::{ChatOptions, ChatTemplate, Message};
use mlxrun::Error;
use serde_json::{Map, Value};

fn refs() -> Value {
    let p = common::deps_file("refs/chat_templates.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn messages(v: &Value) -> Vec<Message> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

fn options(add_generation_prompt: bool, kwargs: &Value) -> ChatOptions {
    ChatOptions {
        add_generation_prompt,
        template_kwargs: kwargs.as_object().cloned().unwrap_or_default(),
        ..ChatOptions::default()
    }
}

/// Checks a rendering against a recorded one: the same text, or an error that carries the
/// template's message.
fn check(what: &str, got: mlxrun::Result<String>, want: &Value) {
    match (got, want.get("text"), want.get("error")) {
        (Ok(text), Some(w), _) => assert_eq!(text, w.as_str().unwrap(), "{what}"),
        (Err(Error::Template(msg)), _, Some(w)) => {
            assert!(msg.contains(w.as_str().unwrap()), "{what}: error {msg:?} lacks the template's message {w}")
        }
        (got, _, _) => panic!("{what}: got {got:?}, want {want}"),
    }
}

#[test]
fn real_templates_render_as_transformers_does() {
    let refs = refs();
    let convs = refs["conversations"].as_object().unwrap();
    let mut compared = 0;
    for (tok, cases) in refs["tokenizers"].as_object().unwrap() {
        let t = ChatTemplate::load(common::deps_file(&format!("tokenizers/{tok}")), None).unwrap();
        for (name, want) in cases.as_object().unwrap() {
            let c = &convs[name];
            let got = t.render(&messages(&c["messages"]), &options(c["add_generation_prompt"].as_bool().unwrap(), &c["kwargs"]));
            check(&format!("{tok} {name}"), got, want);
            compared += 1;
        }
    }
    assert!(compared >= 39, "{compared} renderings compared");
    // The raising cases are there (Gemma refuses roles that do not alternate).
    assert!(refs["tokenizers"]["gemma3"]["roles_not_alternating"]["error"].is_string());
}

fn variant(name: &str) -> PathBuf {
    common::deps_file(&format!("refs/chat_template_variants/{name}"))
}

#[test]
fn named_templates_and_template_files_are_found_as_transformers_finds_them() {
    let refs = refs();
    let v = &refs["variants"]["named_list"];
    let msgs = messages(&v["user_only"]);
    let dir = variant("named_list");
    assert_eq!(ChatTemplate::names(&dir).unwrap(), ["default", "tool_use"]);
    let t = ChatTemplate::load(&dir, None).unwrap();
    assert_eq!(t.name(), "default");
    check("named_list default", t.render(&msgs, &ChatOptions::default()), &v["renders"]["default"]);
    let t = ChatTemplate::load(&dir, Some("tool_use")).unwrap();
    let mut kwargs = Map::new();
    kwargs.insert("tools".into(), v["tools"].clone());
    let opts = ChatOptions { add_generation_prompt: false, template_kwargs: kwargs, ..ChatOptions::default() };
    check("named_list tool_use", t.render(&msgs, &opts), &v["renders"]["tool_use"]);

    // chat_template.jinja wins over tokenizer_config.json's template, and
    // additional_chat_templates/ holds the named ones.
    let v = &refs["variants"]["jinja_file"];
    let dir = variant("jinja_file");
    assert_eq!(ChatTemplate::names(&dir).unwrap(), ["default", "extra"]);
    let t = ChatTemplate::load(&dir, None).unwrap();
    assert!(t.origin().ends_with("chat_template.jinja"), "{}", t.origin());
    check("jinja_file default", t.render(&msgs, &ChatOptions::default()), &v["renders"]["default"]);
    let t = ChatTemplate::load(&dir, Some("extra")).unwrap();
    check("jinja_file extra", t.render(&msgs, &ChatOptions::default()), &v["renders"]["extra"]);

    let e = ChatTemplate::load(&dir, Some("tool_use")).unwrap_err().to_string();
    assert!(e.contains("\"tool_use\"") && e.contains("default, extra"), "{e}");

    // Training templates' {% generation %} blocks render their body, as in transformers.
    let v = &refs["variants"]["generation_tag"];
    let t = ChatTemplate::load(variant("generation_tag"), None).unwrap();
    assert!(t.source().contains("{%- generation -%}"), "the source is kept as written");
    let opts = ChatOptions { add_generation_prompt: false, ..ChatOptions::default() };
    check("generation_tag", t.render(&msgs, &opts), &v["renders"]["default"]);
}

#[test]
fn jinja_features_render_as_jinja2_does() {
    // tojson and its options, namespaces, loop controls, Python string and dict methods,
    // Python's printing of values, extra variables of every JSON type.
    let refs = refs();
    let v = &refs["variants"]["features"];
    let t = ChatTemplate::load(variant("features"), None).unwrap();
    check("features", t.render(&messages(&v["messages"]), &options(true, &v["kwargs"])), &v["renders"]["default"]);
    let kwargs = serde_json::json!({"flag": false, "number": -2.5});
    let first = &messages(&v["messages"])[..1];
    check("features no_config", t.render(first, &options(false, &kwargs)), &v["renders"]["no_config"]);
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mlxrun-chat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_config(dir: &Path, config: Value) {
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
}

fn template_error<T: std::fmt::Debug>(r: mlxrun::Result<T>) -> String {
    match r {
        Err(Error::Template(m)) => m,
        other => panic!("expected a template error, got {other:?}"),
    }
}

#[test]
fn broken_and_missing_templates_are_clear_errors() {
    let user = [Message::user("hi")];
    let opts = ChatOptions::default();

    // No template anywhere: the error names the files looked at.
    let dir = temp_dir("none");
    write_config(&dir, serde_json::json!({"eos_token": "</s>"}));
    let e = template_error(ChatTemplate::load(&dir, None));
    for f in ["chat_template.jinja", "additional_chat_templates", "tokenizer_config.json", "chat_template.json"] {
        assert!(e.contains(f), "{e} lacks {f}");
    }
    assert!(ChatTemplate::names(&dir).unwrap().is_empty());
    let e = template_error(ChatTemplate::load(dir.join("missing"), None));
    assert!(e.contains("no such folder"), "{e}");

    // A syntax error: the line and the problem.
    write_config(&dir, serde_json::json!({"chat_template": "line one\n{% for m in messages %}\n{{ m.content }}\n"}));
    let e = template_error(ChatTemplate::load(&dir, None));
    assert!(e.contains("tokenizer_config.json") && e.contains("syntax error") && e.contains("line"), "{e}");
    write_config(&dir, serde_json::json!({"chat_template": "{{ messages[0].content | no_such_filter }}"}));
    let e = template_error(ChatTemplate::load(&dir, None).and_then(|t| t.render(&user, &opts)));
    assert!(e.contains("no_such_filter") || e.contains("unknown filter"), "{e}");
    write_config(&dir, serde_json::json!({"chat_template": "{{ messages[0].content.no_such_method() }}"}));
    let e = template_error(ChatTemplate::load(&dir, None).unwrap().render(&user, &opts));
    assert!(e.contains("no_such_method") || e.contains("unknown method"), "{e}");
    // Attributes of undefined values fail as in Jinja2.
    write_config(&dir, serde_json::json!({"chat_template": "{{ nothing.attr }}"}));
    let e = template_error(ChatTemplate::load(&dir, None).unwrap().render(&user, &opts));
    assert!(e.contains("undefined"), "{e}");

    // raise_exception: the template's message, whatever the template.
    write_config(&dir, serde_json::json!({"chat_template": "{% if messages[0].role != 'system' %}{{ raise_exception('a system message must come first') }}{% endif %}"}));
    let e = template_error(ChatTemplate::load(&dir, None).unwrap().render(&user, &opts));
    assert!(e.contains("raised an error: a system message must come first"), "{e}");

    // chat_template of the wrong shape, and JSON that does not parse.
    write_config(&dir, serde_json::json!({"chat_template": 42}));
    let e = template_error(ChatTemplate::load(&dir, None));
    assert!(e.contains("chat_template must be a string or a list") && e.contains("a number"), "{e}");
    write_config(&dir, serde_json::json!({"chat_template": [{"name": "default"}]}));
    let e = template_error(ChatTemplate::load(&dir, None));
    assert!(e.contains("chat_template[0]"), "{e}");
    std::fs::write(dir.join("tokenizer_config.json"), "{not json").unwrap();
    let e = template_error(ChatTemplate::load(&dir, None));
    assert!(e.contains("not valid JSON"), "{e}");

    // Several templates and no "default": the names to choose from.
    write_config(&dir, serde_json::json!({"chat_template": [{"name": "a", "template": "A"}, {"name": "b", "template": "B"}]}));
    let e = template_error(ChatTemplate::load(&dir, None));
    assert!(e.contains("none named \"default\"") && e.contains("a, b"), "{e}");
    assert_eq!(ChatTemplate::load(&dir, Some("b")).unwrap().render(&user, &opts).unwrap(), "B");

    // A processor's chat_template.json is the last place looked at.
    std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap();
    std::fs::write(dir.join("chat_template.json"), r#"{"chat_template": "P{{ messages|length }}"}"#).unwrap();
    assert_eq!(ChatTemplate::load(&dir, None).unwrap().render(&user, &opts).unwrap(), "P1");

    // Bad calls: no messages, an empty role, reserved variables.
    let t = ChatTemplate::from_source("{{ messages[0].content }}", []).unwrap();
    let e = t.render(&[], &opts).unwrap_err().to_string();
    assert!(e.contains("no messages"), "{e}");
    let e = t.render(&[Message::new("", "x")], &opts).unwrap_err().to_string();
    assert!(e.contains("empty role"), "{e}");
    let bad = ChatOptions::default().with_kwarg("messages", serde_json::json!([]));
    let e = t.render(&user, &bad).unwrap_err().to_string();
    assert!(e.contains("\"messages\""), "{e}");

    // After all that, rendering still works.
    assert_eq!(t.render(&user, &opts).unwrap(), "hi");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn strftime_now_tojson_and_variables() {
    let user = [Message::user("hi")];
    let opts = ChatOptions::default();
    let t = ChatTemplate::from_source("{{ strftime_now('%Y') }}|{{ strftime_now('%d %b %Y') | length }}", []).unwrap();
    let out = t.render(&user, &opts).unwrap();
    let (year, len) = out.split_once('|').unwrap();
    let year: i32 = year.parse().unwrap();
    assert!((2024..3000).contains(&year), "{out}");
    assert_eq!(len, "11");
    let t = ChatTemplate::from_source("{{ strftime_now('%Q') }}", []).unwrap();
    let e = template_error(t.render(&user, &opts));
    assert!(e.contains("strftime_now") && e.contains("%Q"), "{e}");

    // tojson does not escape HTML, and its arguments are checked.
    let t = ChatTemplate::from_source("{{ x | tojson }}", []).unwrap();
    let o = opts.clone().with_kwarg("x", serde_json::json!({"b": "<a href='x'>&</a>", "a": [1.0, 2]}));
    assert_eq!(t.render(&user, &o).unwrap(), r#"{"b": "<a href='x'>&</a>", "a": [1.0, 2]}"#);
    let t = ChatTemplate::from_source("{{ x | tojson(indent=[1]) }}", []).unwrap();
    let e = template_error(t.render(&user, &o));
    assert!(e.contains("indent"), "{e}");
    let t = ChatTemplate::from_source("{{ nothing | tojson }}", []).unwrap();
    let e = template_error(t.render(&user, &o));
    assert!(e.contains("undefined"), "{e}");

    // Special-token variables, and extra variables overriding them.
    let t = ChatTemplate::from_source("{{ bos_token }}{{ messages[0].content }}", [("bos_token".to_string(), "<s>".to_string())]).unwrap();
    assert_eq!(t.render(&user, &opts).unwrap(), "<s>hi");
    assert_eq!(t.render(&user, &opts.clone().with_kwarg("bos_token", "[B]")).unwrap(), "[B]hi");
    let vars = ChatTemplate::load(common::deps_file("tokenizers/gemma3"), None).unwrap().variables().to_vec();
    for (k, v) in [("bos_token", "<bos>"), ("eos_token", "<end_of_turn>"), ("boi_token", "<start_of_image>")] {
        assert!(vars.contains(&(k.to_string(), v.to_string())), "{k} in {vars:?}");
    }
}
