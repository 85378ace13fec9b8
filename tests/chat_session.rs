//! Chat on the fixture models: `Model::chat` stops at the template's end of turn, and a
//! `ChatSession` reuses its KV cache across turns — computing only new tokens — while
//! giving exactly what a fresh `Model::chat` over the same conversation gives, also after
//! earlier messages are edited, a reply is regenerated, or the session is reset.
mod common;

use std::path::PathBuf;

use mlxrun::chat::{ChatOptions, ChatSession, Message};
use mlxrun::engine::{FinishReason, GenerateParams, Generation, Model};
use mlxrun::mlx::{io, Array};
use mlxrun::LoadOptions;

fn model(fixture: &str) -> Model {
    Model::load(common::deps_file(&format!("fixtures/{fixture}")), &LoadOptions::default()).unwrap()
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, ..GenerateParams::default() }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A fresh `Model::chat` over the session's conversation without its last reply gives
/// that reply.
fn assert_same_as_fresh(m: &mut Model, s: &ChatSession, turn: &Generation, params: &GenerateParams, what: &str) {
    let conversation = &s.messages()[..s.messages().len() - 1];
    let fresh = m.chat(conversation, s.options(), params, |_| true).unwrap();
    assert_eq!(fresh.metrics.cached_prompt_tokens, 0);
    assert_eq!(turn.prompt_tokens, fresh.prompt_tokens, "{what}: prompt ids");
    assert_eq!(turn.tokens, fresh.tokens, "{what}: generated ids");
    assert_eq!(turn.text, fresh.text, "{what}: text");
    assert_eq!(turn.finish_reason, fresh.finish_reason, "{what}: finish reason");
    assert_eq!(s.messages().last().unwrap(), &Message::assistant(turn.text.clone()), "{what}: reply added");
}

#[test]
fn later_turns_compute_only_new_tokens_and_match_a_fresh_chat() {
    for fixture in ["qwen3", "llama3"] {
        let mut m = model(fixture);
        let params = greedy(24);
        let mut s = ChatSession::new(&mut m, ChatOptions::default()).unwrap();
        s.messages_mut().push(Message::system("You are a terse assistant."));

        let t1 = s.send(&mut m, Message::user("Hello there! Who are you?"), &params, |_| true).unwrap();
        assert_eq!(t1.metrics.cached_prompt_tokens, 0, "{fixture}: nothing cached on the first turn");
        assert_eq!(s.messages().len(), 3);
        assert_same_as_fresh(&mut m, &s, &t1, &params, &format!("{fixture} turn 1"));
        // The cache holds the prompt and the reply.
        let held = s.cached_tokens().to_vec();
        // (The last reply token's position is computed only when the loop went on past it.)
        assert!(held.len() >= t1.prompt_tokens.len() + t1.tokens.len() - 1, "{fixture}: {} cached", held.len());
        assert_eq!(held[..t1.prompt_tokens.len()], t1.prompt_tokens[..]);

        let mut prev = t1;
        for (turn, text) in [(2, "Tell me more, in one sentence."), (3, "Thanks — and in français? 日本語?")] {
            let before = s.cached_tokens().to_vec();
            let g = s.send(&mut m, Message::user(text), &params, |_| true).unwrap();
            let what = format!("{fixture} turn {turn}");
            let expect = common_prefix(&before, &g.prompt_tokens).min(g.prompt_tokens.len() - 1);
            let mt = &g.metrics;
            assert_eq!(mt.cached_prompt_tokens, expect, "{what}: cached = common prefix");
            assert_eq!(mt.prompt_tokens, g.prompt_tokens.len(), "{what}: prompt_tokens counts the whole prompt");
            // The previous turn's prompt is reused whole. What is computed is the new
            // message with its turn markers and the part of the previous reply whose
            // re-encoded text differs from the ids the model produced (a random model's
            // text rarely re-encodes to the same ids; a trained model's usually does).
            assert!(mt.cached_prompt_tokens >= prev.prompt_tokens.len(), "{what}: {} cached", mt.cached_prompt_tokens);
            let computed = mt.prompt_tokens - mt.cached_prompt_tokens;
            let new_message = m.tokenizer().encode(text, false).unwrap().len();
            assert!(computed <= prev.tokens.len() + new_message + 12, "{what}: {computed} prompt tokens computed");
            eprintln!(
                "{what}: prompt {} tokens, {} cached, {computed} computed; prefill {:?}",
                mt.prompt_tokens, mt.cached_prompt_tokens, mt.prefill
            );
            assert_same_as_fresh(&mut m, &s, &g, &params, &what);
            prev = g;
        }

        // With a history whose text encodes to the ids in the cache (typed replies, not
        // a random model's), a turn computes only the new message and its markers.
        s.reset();
        s.messages_mut().extend([Message::user("What is 2+2?"), Message::assistant("Four."), Message::user("And 3+3?")]);
        let g = s.reply(&mut m, &params, |_| true).unwrap();
        s.messages_mut().pop();
        let text = "And 4+4?";
        let g2 = s.send(&mut m, Message::user(text), &params, |_| true).unwrap();
        let what = format!("{fixture} typed history");
        // The generation prompt's header of the previous turn ("<|im_start|>assistant\n")
        // becomes the new user turn's header; all before it is reused.
        assert!(g2.metrics.cached_prompt_tokens + 3 >= g.prompt_tokens.len(), "{what}: {:?}", g2.metrics);
        let computed = g2.metrics.prompt_tokens - g2.metrics.cached_prompt_tokens;
        assert!(computed <= m.tokenizer().encode(text, false).unwrap().len() + 12, "{what}: {computed} computed");
        eprintln!("{what}: prompt {} tokens, {} cached, {computed} computed", g2.metrics.prompt_tokens, g2.metrics.cached_prompt_tokens);
        assert_same_as_fresh(&mut m, &s, &g2, &params, &what);
    }
}

#[test]
fn edited_history_regenerate_and_reset() {
    for fixture in ["qwen3", "llama3"] {
        let mut m = model(fixture);
        let params = greedy(16);
        let mut s = ChatSession::new(&mut m, ChatOptions::default()).unwrap();
        s.send(&mut m, Message::user("First question?"), &params, |_| true).unwrap();
        s.send(&mut m, Message::user("Second question?"), &params, |_| true).unwrap();

        // Edit the first message: the cache is cut back to just before the edit and the
        // rest computed again.
        s.messages_mut()[0] = Message::user("An edited first question?");
        s.messages_mut().truncate(3);
        let before = s.cached_tokens().to_vec();
        let g = s.reply(&mut m, &params, |_| true).unwrap();
        let what = format!("{fixture} after an edit");
        let expect = common_prefix(&before, &g.prompt_tokens);
        assert_eq!(g.metrics.cached_prompt_tokens, expect, "{what}");
        assert!(expect < g.prompt_tokens.len() / 2, "{what}: {expect} cached");
        assert_same_as_fresh(&mut m, &s, &g, &params, &what);

        // Regenerate the last reply: the whole prompt is cached, and one token is given
        // back so that the reply has logits to start from.
        let last = s.messages_mut().pop().unwrap();
        let again = s.reply(&mut m, &params, |_| true).unwrap();
        assert_eq!(again.metrics.cached_prompt_tokens, again.prompt_tokens.len() - 1, "{fixture}: regenerate");
        assert_eq!(s.messages().last().unwrap(), &last, "{fixture}: the same reply again");
        assert_eq!(again.tokens, g.tokens);

        // Changing a template variable changes the rendering; the cache follows.
        s.options_mut().template_kwargs.insert("enable_thinking".into(), false.into());
        s.send(&mut m, Message::user("Third?"), &params, |_| true).unwrap();
        let t = s.messages().len();
        let g = s.messages()[t - 1].clone();
        s.messages_mut().pop();
        let fresh = m.chat(s.messages(), s.options(), &params, |_| true).unwrap();
        assert_eq!(Message::assistant(fresh.text), g, "{fixture}: with enable_thinking=false");
        s.messages_mut().push(g);

        // Reset: an empty conversation and cache; the next turn computes everything and
        // matches a fresh chat.
        s.reset();
        assert!(s.messages().is_empty() && s.cached_tokens().is_empty());
        let g = s.send(&mut m, Message::user("New conversation."), &params, |_| true).unwrap();
        assert_eq!(g.metrics.cached_prompt_tokens, 0);
        assert_same_as_fresh(&mut m, &s, &g, &params, &format!("{fixture} after reset"));
        // Dropping only the cache keeps the conversation.
        s.clear_cache();
        assert_eq!(s.messages().len(), 2);
        let g = s.send(&mut m, Message::user("Go on."), &params, |_| true).unwrap();
        assert_eq!(g.metrics.cached_prompt_tokens, 0);
        assert_same_as_fresh(&mut m, &s, &g, &params, &format!("{fixture} after clear_cache"));
    }
}

#[test]
fn sliding_window_caches_are_rebuilt_when_they_cannot_be_cut_back() {
    // Gemma 3's sliding-window layers (a window of 16 in the fixture) keep only the last
    // positions; once they have evicted some, they cannot be cut back, so a turn that
    // must drop cached tokens computes its whole prompt. A turn that only appends still
    // reuses them. Either way the reply is the one a fresh chat gives.
    let mut m = model("gemma3");
    let params = greedy(12);
    let mut s = ChatSession::new(&mut m, ChatOptions::default()).unwrap();
    for text in ["Hello there! Who are you?", "Tell me more.", "And more?", "Last one."] {
        let before = s.cached_tokens().to_vec();
        let g = s.send(&mut m, Message::user(text), &params, |_| true).unwrap();
        let common = common_prefix(&before, &g.prompt_tokens);
        let cached = g.metrics.cached_prompt_tokens;
        if common == before.len() {
            assert_eq!(cached, common, "gemma3 {text:?}: nothing to drop, so the cache is reused");
        } else {
            assert_eq!(cached, 0, "gemma3 {text:?}: the cache had to be cut back, so it was rebuilt");
        }
        assert_same_as_fresh(&mut m, &s, &g, &params, &format!("gemma3 {text:?}"));
    }
    // Regenerating drops the last reply from the cache: rebuilt.
    s.messages_mut().pop();
    let g = s.reply(&mut m, &params, |_| true).unwrap();
    assert_eq!(g.metrics.cached_prompt_tokens, 0);
    assert_same_as_fresh(&mut m, &s, &g, &params, "gemma3 regenerate");
}

#[test]
fn errors_leave_the_session_usable() {
    let mut m = model("qwen3");
    let mut other = model("qwen3");
    let params = greedy(4);
    let mut s = ChatSession::new(&mut m, ChatOptions::default()).unwrap();
    s.send(&mut m, Message::user("Hi"), &params, |_| true).unwrap();
    let cached = s.cached_tokens().to_vec();

    // Another model instance, bad parameters, a message the template cannot take, a
    // reserved variable: each is an error naming the problem, and the conversation and
    // cache are as before.
    let e = s.send(&mut other, Message::user("x"), &params, |_| true).unwrap_err().to_string();
    assert!(e.contains("another model"), "{e}");
    let bad = GenerateParams { prefill_step_size: 0, ..greedy(4) };
    let e = s.send(&mut m, Message::user("x"), &bad, |_| true).unwrap_err().to_string();
    assert!(e.contains("prefill_step_size"), "{e}");
    let e = s.send(&mut m, Message::new("", "x"), &params, |_| true).unwrap_err().to_string();
    assert!(e.contains("empty role"), "{e}");
    assert_eq!(s.messages().len(), 2);
    assert_eq!(s.cached_tokens(), &cached[..]);
    let g = s.send(&mut m, Message::user("Still there?"), &params, |_| true).unwrap();
    assert!(g.metrics.cached_prompt_tokens > 0);

    // A model without a chat template: sessions and chat say which files were looked at.
    let src = common::deps_file("fixtures/qwen3");
    let dir = temp_copy(&src, "notemplate", |name, text| {
        if name == "tokenizer_config.json" {
            let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
            v.as_object_mut().unwrap().remove("chat_template");
            v.to_string()
        } else {
            text.to_string()
        }
    });
    let mut bare = Model::load(&dir, &LoadOptions::default()).unwrap();
    let e = ChatSession::new(&mut bare, ChatOptions::default()).err().unwrap().to_string();
    assert!(e.contains("no chat template") && e.contains("chat_template.jinja"), "{e}");
    let e = bare.chat(&[Message::user("x")], &ChatOptions::default(), &params, |_| true).unwrap_err().to_string();
    assert!(e.contains("tokenizer_config.json"), "{e}");
    // It still generates, and a template can be given to it.
    assert_eq!(bare.generate("Hello", &params, |_| true).unwrap().tokens.len(), 4);
    bare.set_chat_template("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n{# Jinja drops one trailing newline #}").unwrap();
    let g = bare.chat(&[Message::user("x")], &ChatOptions::default(), &params, |_| true).unwrap();
    assert_eq!(bare.tokenizer().decode(&g.prompt_tokens, false).unwrap(), "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
    let e = bare.set_chat_template("{% if %}").unwrap_err().to_string();
    assert!(e.contains("syntax error"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Copies a fixture folder, passing the text files through `edit`; the weights are linked.
fn temp_copy(src: &std::path::Path, name: &str, edit: impl Fn(&str, &str) -> String) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("mlxrun-chat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if file.ends_with(".json") {
            std::fs::write(dst.join(&file), edit(&file, &std::fs::read_to_string(&path).unwrap())).unwrap();
        } else {
            std::os::unix::fs::symlink(&path, dst.join(&file)).unwrap();
        }
    }
    dst
}

#[test]
fn the_templates_end_of_turn_token_stops_generation() {
    // The fixtures' EOS sets already hold their templates' end-of-turn tokens.
    let mut q = model("qwen3");
    let im_end = q.tokenizer().token_to_id("<|im_end|>").unwrap();
    assert!(q.chat_stop_tokens(&ChatOptions::default()).unwrap().contains(&im_end));
    let mut l = model("llama3");
    let eot = l.tokenizer().token_to_id("<|eot_id|>").unwrap();
    assert!(l.chat_stop_tokens(&ChatOptions::default()).unwrap().contains(&eot));

    // A template that closes assistant turns with a special token outside the EOS set
    // (<|box_start|> here) stops there too. A random model never picks a special token,
    // so a copy of the fixture gets the embedding rows of <|box_start|> and of a token the
    // model does produce swapped (the embeddings are tied): that copy produces exactly
    // the same ids with <|box_start|> in place of the other token.
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\
                    {% if m.role == 'assistant' %}<|box_start|>{% else %}<|im_end|>{% endif %}\n{% endfor %}\
                    {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let conversation = [Message::user("Hello there!")];
    let opts = ChatOptions::default();
    let free = GenerateParams { ignore_eos: true, ..greedy(12) };
    q.set_chat_template(template).unwrap();
    let box_start = q.tokenizer().token_to_id("<|box_start|>").unwrap();
    assert!(!q.tokenizer().is_eos(box_start) && q.tokenizer().is_special(box_start));
    assert_eq!(q.chat_stop_tokens(&opts).unwrap().last(), Some(&box_start));
    let base = q.chat(&conversation, &opts, &free, |_| true).unwrap();
    let swap = base.tokens[3];
    assert!(!base.prompt_tokens.contains(&swap) && !q.tokenizer().is_special(swap));
    let first = base.tokens.iter().position(|&t| t == swap).unwrap();

    let src = common::deps_file("fixtures/qwen3");
    let dir = temp_copy(&src, "endofturn", |_, text| text.to_string());
    let st = io::load_safetensors(src.join("model.safetensors")).unwrap();
    let name = "model.embed_tokens.weight";
    let embed = &st.tensors[name];
    let (rows, dim) = (embed.shape()[0], embed.shape()[1] as usize);
    let mut w = embed.to_vec::<f32>().unwrap();
    for j in 0..dim {
        w.swap(swap as usize * dim + j, box_start as usize * dim + j);
    }
    let swapped = Array::from_slice(&w, &[rows, dim as i32]).unwrap();
    let tensors: Vec<(&str, &Array)> =
        st.tensors.iter().map(|(k, v)| (k.as_str(), if k == name { &swapped } else { v })).collect();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    io::save_safetensors(dir.join("model.safetensors"), &tensors, &[("format", "mlx")]).unwrap();

    let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
    m.set_chat_template(template).unwrap();
    let g = m.chat(&conversation, &opts, &free, |_| true).unwrap();
    let want: Vec<u32> = base.tokens.iter().map(|&t| if t == swap { box_start } else { t }).collect();
    assert_eq!(g.tokens, want, "the swapped copy produces <|box_start|> in place of {swap}");
    let g = m.chat(&conversation, &opts, &greedy(12), |_| true).unwrap();
    assert_eq!(g.finish_reason, FinishReason::Stop);
    assert_eq!(g.tokens, base.tokens[..first], "the reply ends before the end-of-turn token");
    assert!(!g.text.contains("<|box_start|>"));
    // ignore_eos ignores it as it ignores EOS.
    assert_eq!(m.chat(&conversation, &opts, &free, |_| true).unwrap().tokens.len(), 12);
    std::fs::remove_dir_all(&dir).ok();
}
