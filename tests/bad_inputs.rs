//! Bad inputs of every class docs/reliability.md lists that no other suite covers: absurd
//! and inconsistent configs, paths that are not model folders, NaN weights, odd prompts
//! and parameters, absurd GGUF metadata. Each gets a defined result (an error naming the
//! problem, or documented behaviour), never a panic, a hang or a giant allocation; and a
//! model loaded before the failures keeps giving the same logits.
mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::bad_model::{assert_has, copy_fixture, edit_tensor};
use common::gguf_writer::{self, Kv};
use common::Scratch;
use mlxrun::engine::generate::forward_logits;
use mlxrun::engine::BatchParams;
use mlxrun::mlx::{io, Array, Dtype};
use mlxrun::models::{load, LanguageModel, LoadOptions};
use mlxrun::{ChatOptions, Error, GenerateParams, Message, Model, SamplerParams};

/// A model loaded first, whose logits must not change through the failures.
struct Witness {
    model: Box<dyn LanguageModel>,
    logits: Vec<f32>,
}

impl Witness {
    fn new() -> Witness {
        let model = load(&common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
        let logits = forward_logits(model.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();
        Witness { model, logits }
    }
    fn still_works(&self) {
        let now = forward_logits(self.model.as_ref(), &[1, 2, 3]).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(now, self.logits, "the model loaded first still gives the same logits");
    }
}

/// `f()` on another thread, failing the test (rather than hanging it) after 60 s.
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}: no answer in 60 s (a hang)"))
}

fn config_error(dir: &Path) -> String {
    match load(dir, &LoadOptions::default()) {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("{}: expected a config error, got {e:?}", dir.display()),
        Ok(_) => panic!("{} loaded, expected a config error", dir.display()),
    }
}

/// A folder holding only `fixture`'s config.json with `edit` applied: the config is
/// checked before any weight is looked for, so no weights are needed.
fn config_only(fixture: &str, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Scratch {
    let dir = Scratch::new(&format!("cfg-{tag}"));
    let src = common::deps_file(&format!("fixtures/{fixture}/config.json"));
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    dir
}

#[test]
fn absurd_and_inconsistent_configs_are_config_errors_naming_field_and_value() {
    let witness = Witness::new();
    use serde_json::json;
    // (fixture, field to set, value, what the message must hold)
    let cases: Vec<(&str, &str, serde_json::Value, Vec<&str>)> = vec![
        ("qwen3", "hidden_size", json!(0), vec!["hidden_size", "positive integer", "found 0"]),
        ("qwen3", "hidden_size", json!(-1), vec!["hidden_size", "found -1"]),
        ("qwen3", "hidden_size", json!(1u64 << 40), vec!["hidden_size", "1099511627776"]),
        ("qwen3", "hidden_size", json!(1 << 30), vec!["hidden_size", "1073741824", "between 1 and 1048576"]),
        ("qwen3", "hidden_size", json!(64.5), vec!["hidden_size", "64.5"]),
        ("qwen3", "num_hidden_layers", json!(1_000_000_000), vec!["num_hidden_layers", "1000000000", "between 1 and 16384"]),
        ("qwen3", "num_hidden_layers", json!(1e9), vec!["num_hidden_layers", "1000000000"]),
        ("qwen3", "vocab_size", json!(0), vec!["vocab_size", "found 0"]),
        ("qwen3", "vocab_size", json!(1 << 30), vec!["vocab_size", "1073741824"]),
        ("qwen3", "intermediate_size", json!(i32::MAX), vec!["intermediate_size", "2147483647", "between 1 and"]),
        ("qwen3", "num_attention_heads", json!(0), vec!["num_attention_heads", "found 0"]),
        ("qwen3", "num_attention_heads", json!(1 << 20), vec!["num_attention_heads", "1048576"]),
        ("qwen3", "head_dim", json!(1 << 20), vec!["head_dim", "1048576"]),
        ("qwen3", "head_dim", json!(33), vec!["head size", "33", "even"]),
        ("qwen3", "num_key_value_heads", json!(3), vec!["num_attention_heads", "(4)", "num_key_value_heads", "(3)"]),
        ("qwen3", "num_key_value_heads", json!(8), vec!["num_key_value_heads", "(8)"]),
        ("qwen3", "rope_theta", json!(0), vec!["rope_theta", "is 0", "> 0"]),
        ("qwen3", "rope_theta", json!(-10000.0), vec!["rope_theta", "-10000"]),
        ("qwen3", "rope_theta", json!(1e300), vec!["rope_theta", "inf"]),
        ("qwen3", "rms_norm_eps", json!(-1e-6), vec!["rms_norm_eps", "-0.000001"]),
        ("qwen3", "max_position_embeddings", json!(0), vec!["max_position_embeddings", "found 0"]),
        ("qwen3", "rope_scaling", json!({"rope_type": "yarn-ultra", "factor": 4.0}), vec!["yarn-ultra", "not supported"]),
        ("qwen3", "rope_scaling", json!({"rope_type": "linear", "factor": 0.0}), vec!["factor", "is 0", "> 0"]),
        ("qwen3", "rope_scaling", json!({"rope_type": "llama3", "factor": -8.0}), vec!["factor", "-8"]),
        // Llama and Qwen2 derive the head size from hidden_size / num_attention_heads.
        ("qwen2", "num_attention_heads", json!(6), vec!["hidden_size", "(64)", "not a multiple of", "num_attention_heads", "(6)"]),
        ("qwen2", "num_attention_heads", json!(128), vec!["hidden_size", "(64)", "(128)"]),
        ("qwen2", "hidden_size", json!(66), vec!["hidden_size", "(66)", "num_attention_heads"]),
        ("llama3", "head_dim", json!(0), vec!["head_dim", "found 0"]),
        ("llama3", "rope_theta", json!(-1), vec!["rope_theta", "-1"]),
        // Gemma 3, flat and with its settings in text_config (named with the section).
        ("gemma3", "num_key_value_heads", json!(3), vec!["num_attention_heads", "num_key_value_heads", "(3)"]),
        ("gemma3", "rope_local_base_freq", json!(0.0), vec!["rope_local_base_freq", "is 0"]),
        ("gemma3", "num_hidden_layers", json!(1_000_000_000), vec!["num_hidden_layers", "1000000000"]),
        ("gemma3-mm", "text_config.hidden_size", json!(0), vec!["text_config.hidden_size", "found 0"]),
        ("gemma3-mm", "text_config.num_hidden_layers", json!(2_000_000_000), vec!["text_config.num_hidden_layers", "2000000000"]),
    ];
    for (i, (fixture, field, value, needles)) in cases.into_iter().enumerate() {
        let dir = config_only(fixture, &format!("{i}"), |v| match field.split_once('.') {
            Some((section, key)) => v[section][key] = value.clone(),
            None => v[field] = value.clone(),
        });
        let msg = config_error(&dir);
        let what = format!("{fixture} {field} = {value}");
        assert!(msg.contains("config.json"), "{what}: {msg:?} should name the file");
        for n in needles {
            assert!(msg.contains(n), "{what}: {msg:?} should mention {n:?}");
        }
    }
    // A head size the config may legitimately set apart from hidden / heads (Qwen3 and
    // Gemma do) but that the tensors contradict: a weights error naming the tensor and
    // both shapes.
    let d = copy_fixture("llama3", "head-dim");
    common::bad_model::edit_config(&d, |v| v["head_dim"] = json!(32));
    match load(&d, &LoadOptions::default()) {
        Err(Error::Weights(m)) => assert_has(&m, &["model.layers.0.self_attn.q_proj.weight", "[128, 64]", "[64, 64]"]),
        other => panic!("head_dim 32 against 16-wide heads: {:?}", other.err()),
    }
    // The checks refuse nothing real: every fixture family still loads.
    for fixture in ["qwen3", "llama3", "qwen2", "gemma3", "gemma3-mm"] {
        load(&common::deps_file(&format!("fixtures/{fixture}")), &LoadOptions::default()).unwrap();
    }
    witness.still_works();
}

#[test]
fn paths_that_are_not_model_folders_are_errors_not_hangs() {
    // Tests run as root, for whom chmod does not make a folder unreadable; these are the
    // unreadable paths root meets: a plain file, a FIFO, a dangling symlink, a folder
    // without a config, and a config.json that is a FIFO or a folder.
    let witness = Witness::new();
    let dir = Scratch::new("paths");
    let file = dir.join("notes.txt");
    std::fs::write(&file, "not a model").unwrap();
    let fifo = dir.join("pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("gone"), &dangling).unwrap();
    for p in [&file, &fifo, &dangling] {
        let p2 = p.clone();
        let msg = within_a_minute("load", move || config_error(&p2));
        assert_has(&msg, &[&p.display().to_string(), "not a folder"]);
        // The engine (which also reads the tokenizer) says the same.
        let p2 = p.clone();
        let e = within_a_minute("engine load", move || Model::load(&p2, &LoadOptions::default()).err().map(|e| e.to_string()));
        assert!(e.unwrap().contains("not a folder"));
    }
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_has(&config_error(&empty), &["config.json", "not found"]);

    let piped = dir.join("piped-config");
    std::fs::create_dir(&piped).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(piped.join("config.json")).status().unwrap().success());
    let p2 = piped.clone();
    let msg = within_a_minute("config.json FIFO", move || config_error(&p2));
    assert_has(&msg, &["config.json", "not a regular file"]);

    let folder = dir.join("folder-config");
    std::fs::create_dir_all(folder.join("config.json")).unwrap();
    assert_has(&config_error(&folder), &["config.json", "not a regular file"]);
    witness.still_works();
}

/// A copy of the qwen3 fixture whose final norm holds a NaN: every logit is NaN.
fn nan_model() -> Scratch {
    let d = copy_fixture("qwen3", "nan");
    let f = io::load_safetensors(&d.join("model.safetensors")).unwrap();
    let norm = f.tensors.iter().find(|(k, _)| k.as_str() == "model.norm.weight").unwrap().1.to_vec::<f32>().unwrap();
    let mut poisoned = norm.clone();
    poisoned[5] = f32::NAN;
    edit_tensor(&d, "model.norm.weight", Some(Array::from_slice(&poisoned, &[poisoned.len() as i32]).unwrap()));
    d
}

#[test]
fn nan_weights_load_but_generation_fails_at_the_first_token() {
    let witness = Witness::new();
    let d = nan_model();
    // Loading does not scan the weights (a pass over every tensor of a large model costs
    // as much as reading it again); the logits are checked as tokens are sampled.
    let mut model = Model::load(&d, &LoadOptions::default()).unwrap();
    let is_nan_error = |what: &str, e: &Error| {
        assert!(matches!(e, Error::Weights(_)), "{what}: {e:?}");
        assert_has(&e.to_string(), &["logits contain NaN"]);
    };
    for (what, sampler) in [
        ("greedy", SamplerParams::default()),
        ("sampled", SamplerParams { temperature: 0.8, top_p: 0.9, top_k: 20, seed: Some(1), ..Default::default() }),
        ("penalised", SamplerParams { repetition_penalty: 1.3, ..Default::default() }),
        ("logprobs", SamplerParams { logprobs: true, top_logprobs: 3, ..Default::default() }),
    ] {
        let params = GenerateParams { max_tokens: 4, sampler: sampler.clone(), ..Default::default() };
        let mut texts = 0;
        let e = model.generate("Hello there", &params, |_| {
            texts += 1;
            true
        });
        is_nan_error(&format!("generate {what}"), &e.unwrap_err());
        assert_eq!(texts, 0, "{what}: no token reached the callback");
        let e = model.chat(&[Message::user("Hi")], &ChatOptions::default(), &params, |_| true).unwrap_err();
        is_nan_error(&format!("chat {what}"), &e);
        let e = model.batch_generate(&["Hello", "Hello there"], &params, &BatchParams::default(), |_, _| true).unwrap_err();
        is_nan_error(&format!("batch {what}"), &e);
        let e = model.classify(&["Hello", "Hi"], &params, &BatchParams::default()).unwrap_err();
        is_nan_error(&format!("classify {what}"), &e);
    }
    drop(model);
    witness.still_works();
}

#[test]
fn nan_and_inf_logits_at_the_sampler() {
    let mut s = mlxrun::engine::sampler::Sampler::new(SamplerParams::default()).unwrap();
    let nan = Array::from_slice(&[0.5f32, f32::NAN, 2.0], &[1, 3]).unwrap();
    let e = s.sample(&nan, &[]).unwrap_err();
    assert!(e.to_string().contains("logits contain NaN"), "{e}");
    // One bad row of a batch names the row; the greedy shortcut checks too.
    let rows = Array::from_slice(&[0.5f32, 1.0, 2.0, 1.0, f32::NAN, 0.0], &[2, 3]).unwrap();
    let e = s.sample_batch(&rows, &[]).unwrap_err();
    assert!(e.to_string().contains("batch row 1"), "{e}");
    assert!(s.greedy_shortcut_applies(&rows));
    let e = s.sample_batch_greedy_now(&rows, &[]).unwrap_err();
    assert!(e.to_string().contains("batch row 1"), "{e}");
    // Half precision too.
    let e = s.sample(&nan.astype(Dtype::F16).unwrap(), &[]).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
    // +inf is an unambiguous maximum: greedy picks it, no error.
    let inf = Array::from_slice(&[0.5f32, f32::INFINITY, 2.0], &[1, 3]).unwrap();
    assert_eq!(s.sample(&inf, &[]).unwrap().token, 1);
}

#[test]
fn odd_prompts_have_defined_results() {
    let witness = Witness::new();
    let mut qwen = Model::load(common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    let params = GenerateParams { max_tokens: 3, ..Default::default() };

    // An empty prompt: Qwen's tokenizer adds no BOS, so "" has no tokens: an error in
    // every call, the same message per prompt.
    let e = qwen.generate("", &params, |_| true).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("no tokens"), "{e:?}");
    let rows = qwen.batch_generate(&["", "Hi"], &params, &BatchParams::default(), |_, _| true).unwrap();
    assert!(rows[0].as_ref().unwrap_err().to_string().contains("prompt 0 encodes to no tokens"), "{:?}", rows[0]);
    assert_eq!(rows[1].as_ref().unwrap().tokens.len(), 3, "the other row runs");
    let rows = qwen.classify(&["", "Hi"], &params, &BatchParams::default()).unwrap();
    assert!(rows[0].as_ref().unwrap_err().to_string().contains("prompt 0 encodes to no tokens"), "{:?}", rows[0]);
    assert!(rows[1].is_ok());
    // An empty user message is not an empty prompt: the template adds its markers.
    qwen.chat(&[Message::user("")], &ChatOptions::default(), &params, |_| true).unwrap();
    // No messages at all is an error of the template call.
    let e = qwen.chat(&[], &ChatOptions::default(), &params, |_| true).unwrap_err();
    assert!(e.to_string().contains("no messages"), "{e}");
    // Empty lists of prompts: nothing to do, no results.
    assert!(qwen.batch_generate(&[], &params, &BatchParams::default(), |_, _| true).unwrap().is_empty());
    assert!(qwen.classify(&[], &params, &BatchParams::default()).unwrap().is_empty());

    // Llama 3's tokenizer adds BOS: "" is one token and generates.
    let mut llama = Model::load(common::deps_file("fixtures/llama3"), &LoadOptions::default()).unwrap();
    let g = llama.generate("", &params, |_| true).unwrap();
    assert_eq!(g.prompt_tokens.len(), 1);

    // A Rust string may hold NUL: it is text like any other (a byte-level token).
    let g = qwen.generate("a\0b", &params, |_| true).unwrap();
    assert!(g.prompt_tokens.len() >= 3, "{:?}", g.prompt_tokens);

    // Longer than the context: refused before any computation, naming both lengths.
    let ctx = GenerateParams { context_length: Some(8), ..params.clone() };
    let long = "one two three four five six seven eight nine ten eleven twelve";
    let e = qwen.generate(long, &ctx, |_| true).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("the context length is 8"), "{e}");
    // A prompt that fits gets at most the room left.
    let g = qwen.generate("one two", &GenerateParams { max_tokens: 50, ..ctx.clone() }, |_| true).unwrap();
    assert!(g.prompt_tokens.len() + g.tokens.len() <= 8, "{} + {}", g.prompt_tokens.len(), g.tokens.len());
    let e = qwen.chat(&[Message::user(long)], &ChatOptions::default(), &ctx, |_| true).unwrap_err();
    assert!(e.to_string().contains("context length is 8"), "{e}");

    // Token ids outside the vocabulary.
    let e = qwen.generate_ids(&[1, 10_000_000], &params, |_| true).unwrap_err();
    assert!(e.to_string().contains("10000000") && e.to_string().contains("vocabulary"), "{e}");
    drop((qwen, llama));
    witness.still_works();
}

#[test]
fn generation_and_batch_parameters_at_their_edges() {
    let mut qwen = Model::load(common::deps_file("fixtures/qwen3"), &LoadOptions::default()).unwrap();
    // max_tokens 0 (usize: never negative in Rust) generates nothing and says why.
    let g = qwen.generate("Hi", &GenerateParams { max_tokens: 0, ..Default::default() }, |_| true).unwrap();
    assert!(g.tokens.is_empty());
    assert_eq!(g.finish_reason, mlxrun::engine::FinishReason::Length);
    // Bad sampler settings fail every call before any work (tests/sampler.rs checks each
    // field's message).
    let bad = GenerateParams { sampler: SamplerParams { temperature: f32::NAN, ..Default::default() }, ..Default::default() };
    let want = |e: Error| assert!(matches!(&e, Error::InvalidArgument(m) if m.contains("temperature")), "{e:?}");
    want(qwen.generate("Hi", &bad, |_| true).unwrap_err());
    want(qwen.chat(&[Message::user("Hi")], &ChatOptions::default(), &bad, |_| true).unwrap_err());
    want(qwen.batch_generate(&["Hi"], &bad, &BatchParams::default(), |_, _| true).unwrap_err());
    want(qwen.classify(&["Hi"], &bad, &BatchParams::default()).unwrap_err());
    let e = qwen.generate("Hi", &GenerateParams { prefill_step_size: 0, ..Default::default() }, |_| true).unwrap_err();
    assert!(e.to_string().contains("prefill_step_size"), "{e}");
    let e = qwen.generate("Hi", &GenerateParams { stop_strings: vec![String::new()], ..Default::default() }, |_| true).unwrap_err();
    assert!(e.to_string().contains("stop_strings"), "{e}");
    // max_batch_size 0 means automatic; a context too small for a row fails that row.
    let p = GenerateParams { max_tokens: 2, ..Default::default() };
    let auto = qwen.batch_generate(&["Hi", "Hello"], &p, &BatchParams { max_batch_size: 0, ..Default::default() }, |_, _| true).unwrap();
    assert!(auto.iter().all(|r| r.is_ok()));
    let tight = BatchParams { context_length: Some(2), ..Default::default() };
    let rows = qwen.batch_generate(&["Hi", "one two three four five"], &p, &tight, |_, _| true).unwrap();
    assert!(rows[1].as_ref().unwrap_err().to_string().contains("context length is 2"), "{:?}", rows[1]);
}

#[test]
fn absurd_gguf_metadata_and_tensor_shapes_are_errors() {
    let witness = Witness::new();
    let dir = Scratch::new("gguf-absurd");
    let with = |tag: &str, key: &str, kv: Kv| {
        let (mut kvs, tensors) = gguf_writer::tiny_llama("llama");
        for (k, v) in kvs.iter_mut() {
            if *k == key {
                *v = match &kv {
                    Kv::U32(x) => Kv::U32(*x),
                    Kv::F32(x) => Kv::F32(*x),
                    _ => unreachable!(),
                };
            }
        }
        let p = dir.join(format!("{tag}.gguf"));
        std::fs::write(&p, gguf_writer::write(&kvs, &tensors)).unwrap();
        p
    };
    for (tag, key, kv, needles) in [
        ("layers", "llama.block_count", Kv::U32(1_000_000_000), vec!["num_hidden_layers", "1000000000"]),
        ("hidden", "llama.embedding_length", Kv::U32(u32::MAX), vec!["llama.embedding_length", "4294967295"]),
        ("heads", "llama.attention.head_count", Kv::U32(3), vec!["llama.embedding_length", "not a multiple of the 3 heads"]),
        ("kv-heads", "llama.attention.head_count_kv", Kv::U32(0), vec!["llama.attention.head_count_kv", "0"]),
        ("rope", "llama.rope.freq_base", Kv::F32(-1.0), vec!["rope_theta", "-1"]),
    ] {
        let p = with(tag, key, kv);
        let e = match load(&p, &LoadOptions::default()) {
            Err(e) => e,
            Ok(_) => panic!("{tag}: loaded"),
        };
        assert!(matches!(e, Error::Config(_)), "{tag}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("{tag}.gguf")), "{tag}: {msg} should name the file");
        for n in needles {
            assert!(msg.contains(n), "{tag}: {msg:?} should mention {n:?}");
        }
    }
    // A tensor whose dimensions claim more bytes than any file holds.
    let (kvs, mut tensors) = gguf_writer::tiny_llama("llama");
    tensors[3].dims = vec![1 << 40, 1 << 40];
    let p = dir.join("huge-tensor.gguf");
    std::fs::write(&p, gguf_writer::write(&kvs, &tensors)).unwrap();
    let msg = match load(&p, &LoadOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a tensor of 2^80 values loaded"),
    };
    assert!(msg.contains("huge-tensor.gguf") && msg.contains("blk.0.attn_q.weight"), "{msg}");
    witness.still_works();
}
