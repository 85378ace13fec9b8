//! Tokenizers against Hugging Face: for the real Qwen3, Gemma 3 and Llama 3.1 tokenizers,
//! encode, decode and streaming detokenization over a corpus of tricky text must give what
//! scripts/tokenizer_refs.py computed with the `tokenizers` library (and, for the ids a
//! prompt becomes, with transformers' AutoTokenizer, which mlx-lm uses). Bad model folders
//! must give errors that name the file, and leave the process working.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use common::Scratch;
use mlxrun::tokenizer::{Detokenizer, Tokenizer};
use mlxrun::Error;
use serde_json::Value;

const NAMES: [&str; 3] = ["qwen3", "gemma3", "llama3_1"];

fn refs() -> Value {
    let path = common::deps_file("refs/tokenizer.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("refs/tokenizer.json parses")
}

fn tokenizer_dir(name: &str) -> PathBuf {
    common::deps_file(&format!("tokenizers/{name}"))
}

fn load_fresh(name: &str) -> Tokenizer {
    Tokenizer::load(tokenizer_dir(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Each tokenizer is loaded once for all the tests (an unoptimized build takes seconds to
/// parse Gemma's 33 MB tokenizer.json).
fn load(name: &str) -> Tokenizer {
    static LOADED: [OnceLock<Tokenizer>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = NAMES.iter().position(|n| *n == name).expect("a known tokenizer");
    LOADED[i].get_or_init(|| load_fresh(name)).clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn text(v: &Value) -> &str {
    v.as_str().expect("string")
}

/// Collects mismatches so that one run reports all of them.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: impl FnOnce() -> String, got: T, want: T) {
        if got != want {
            self.0.push(format!("{}:\n   got  {got:?}\n   want {want:?}", what()));
        }
    }
    fn fail(&mut self, msg: String) {
        self.0.push(msg);
    }
    fn finish(self, n_checks: usize) {
        assert!(self.0.is_empty(), "{} of {n_checks} checks failed:\n{}", self.0.len(), self.0.join("\n"));
    }
}

#[test]
fn metadata_matches_reference() {
    let refs = refs();
    for name in NAMES {
        let tok = load(name);
        let meta = &refs["tokenizers"][name]["meta"];
        assert_eq!(tok.vocab_size() as u64, meta["vocab_size"].as_u64().unwrap(), "{name}: vocab size");
        assert_eq!(tok.vocab_size() as u64, meta["transformers_len"].as_u64().unwrap(), "{name}: len(AutoTokenizer)");
        assert_eq!(tok.bos_token(), meta["bos_token"].as_str(), "{name}: bos token");
        assert_eq!(tok.bos_token_id().map(u64::from), meta["bos_token_id"].as_u64(), "{name}: bos id");
        assert_eq!(tok.adds_bos(), meta["adds_bos"].as_bool().unwrap(), "{name}: adds bos");
        assert_eq!(tok.eos_token(), meta["eos_token"].as_str(), "{name}: eos token");
        // These folders have no config.json / generation_config.json: EOS is the tokenizer's.
        let eos = meta["eos_token_id"].as_u64().unwrap() as u32;
        assert_eq!(tok.eos_token_ids(), &[eos], "{name}: eos ids");
        assert!(tok.is_eos(eos) && !tok.is_eos(eos + 1), "{name}: is_eos");

        let added = meta["added_tokens"].as_array().unwrap();
        assert_eq!(tok.added_tokens().len(), added.len(), "{name}: added tokens");
        for (mine, theirs) in tok.added_tokens().iter().zip(added) {
            assert_eq!(mine.id as u64, theirs["id"].as_u64().unwrap(), "{name}: added token id");
            assert_eq!(mine.content, text(&theirs["content"]), "{name}: added token {}", mine.id);
            assert_eq!(mine.special, theirs["special"].as_bool().unwrap(), "{name}: added token {} special", mine.id);
            assert_eq!(tok.is_special(mine.id), mine.special, "{name}: is_special({})", mine.id);
        }
        for pair in meta["id_tokens"].as_array().unwrap() {
            let id = pair[0].as_u64().unwrap() as u32;
            let token = text(&pair[1]);
            assert_eq!(tok.id_to_token(id).as_deref(), Some(token), "{name}: id_to_token({id})");
            assert_eq!(tok.token_to_id(token), Some(id), "{name}: token_to_id({token:?})");
        }
        assert_eq!(tok.id_to_token(u32::MAX), None, "{name}: id_to_token out of range");
        assert_eq!(tok.token_to_id("no such token \u{1F600}\u{1F600}"), None, "{name}: token_to_id unknown");
    }
}

#[test]
fn encode_matches_reference() {
    let refs = refs();
    let mut f = Failures::default();
    let mut n = 0;
    for name in NAMES {
        let tok = load(name);
        for case in refs["tokenizers"][name]["cases"].as_array().unwrap() {
            let t = text(&case["text"]);
            for (key, got) in [
                ("ids_special", tok.encode(t, true)),
                ("ids_plain", tok.encode(t, false)),
                ("prompt_ids", tok.encode_prompt(t)),
            ] {
                n += 1;
                f.check(|| format!("{name} {key} {t:?}"), got.unwrap(), ids(&case[key]));
            }
            // The token strings, for id_to_token on every id the corpus uses.
            let tokens: Vec<Option<String>> = ids(&case["ids_special"]).iter().map(|&i| tok.id_to_token(i)).collect();
            let want: Vec<Option<String>> =
                case["tokens_special"].as_array().unwrap().iter().map(|s| Some(text(s).to_string())).collect();
            n += 1;
            f.check(|| format!("{name} tokens {t:?}"), tokens, want);
            // mlx-lm encodes prompts with transformers: the ids must agree with it too.
            if let Some(diff) = case.get("transformers") {
                for key in ["ids_special", "ids_plain", "prompt_ids"] {
                    if let Some(v) = diff.get(key) {
                        f.fail(format!("{name} {key} {t:?}: transformers gives {v}, the tokenizers library another"));
                    }
                }
            }
        }
    }
    f.finish(n);
}

#[test]
fn truncation_and_padding_in_tokenizer_json_are_ignored() {
    // As transformers does: the tokenizers library would cut these to 4 ids and pad to 16.
    let refs = refs();
    let tok = Tokenizer::load(common::deps_file("refs/tokenizer_variants/qwen3_truncation")).unwrap();
    for case in refs["truncation_variant"].as_array().unwrap() {
        let t = text(&case["text"]);
        assert_eq!(tok.encode(t, true).unwrap(), ids(&case["transformers_ids"]), "{t:?}");
        assert_ne!(ids(&case["tokenizers_ids"]), ids(&case["transformers_ids"]), "{t:?}: the variant should differ");
    }
}

#[test]
fn prompt_bos_is_never_doubled() {
    for name in NAMES {
        let tok = load(name);
        let Some(bos) = tok.bos_token() else {
            assert!(tok.prompt_needs_special_tokens("<|im_start|>user"), "{name}");
            continue;
        };
        let bos_id = tok.bos_token_id().unwrap();
        let with = tok.encode_prompt(&format!("{bos}Hello")).unwrap();
        let without = tok.encode_prompt("Hello").unwrap();
        assert_eq!(with.iter().filter(|&&i| i == bos_id).count(), 1, "{name}: {with:?}");
        assert_eq!(with, without, "{name}: a prompt with BOS written in it gets the same ids");
    }
}

#[test]
fn decode_matches_reference() {
    let refs = refs();
    let mut f = Failures::default();
    let mut n = 0;
    let mut transformers_differs = Vec::new();
    for name in NAMES {
        let tok = load(name);
        let r = &refs["tokenizers"][name];
        let cases = r["cases"].as_array().unwrap().iter().map(|c| (ids(&c["ids_special"]), c));
        let decodes = r["decodes"].as_array().unwrap().iter().map(|c| (ids(&c["ids"]), c));
        for (seq, case) in cases.chain(decodes) {
            for (key, skip) in [("decode_keep", false), ("decode_skip", true)] {
                n += 1;
                f.check(
                    || format!("{name} {key} {seq:?}"),
                    tok.decode(&seq, skip).unwrap(),
                    text(&case[key]).to_string(),
                );
                if let Some(v) = case.get("transformers").and_then(|d| d.get(key)) {
                    transformers_differs.push(format!("{name} {key} {seq:?}: transformers {v}"));
                }
            }
        }
        // Ids that name no token are left out, as the tokenizers library does.
        let hello = tok.encode("hello", false).unwrap();
        let mut padded = vec![u32::MAX];
        padded.extend(&hello);
        padded.push(tok.vocab_size() as u32 + 7);
        assert_eq!(tok.decode(&padded, false).unwrap(), "hello", "{name}: unknown ids");
    }
    // Where transformers decodes otherwise (it marks Gemma's <mask> special), say so.
    for d in &transformers_differs {
        eprintln!("note: {d}");
    }
    f.finish(n);
}

/// Streams `seq` through a detokenizer; returns the chunks (the last one from `flush`) and,
/// after each id, the text emitted so far.
fn stream(detok: &mut Detokenizer, seq: &[u32]) -> (Vec<String>, Vec<String>) {
    let mut chunks = Vec::new();
    let mut so_far = Vec::new();
    let mut acc = String::new();
    for &id in seq {
        let c = detok.push(id).unwrap();
        acc.push_str(&c);
        chunks.push(c);
        so_far.push(acc.clone());
    }
    chunks.push(detok.flush().unwrap());
    (chunks, so_far)
}

/// Whether the last token of `seq` that the decoder sees (skipped special tokens and
/// unknown ids it does not) is a byte-fallback token such as `<0xE4>`.
fn ends_in_byte_token(tok: &Tokenizer, seq: &[u32], skip: bool) -> bool {
    let seen = seq.iter().rev().find(|&&i| tok.id_to_token(i).is_some() && !(skip && tok.is_special(i)));
    let token = seen.and_then(|&i| tok.id_to_token(i));
    token.is_some_and(|t| t.len() == 6 && t.starts_with("<0x") && t.ends_with('>'))
}

/// Streams every sequence with both `skip_special_tokens` settings and checks the text
/// against the reference decode in `case["decode_keep" / "decode_skip"]`.
fn check_streaming(f: &mut Failures, n: &mut usize, name: &str, tok: &Tokenizer, seqs: &[(Vec<u32>, &Value)]) {
    for skip in [false, true] {
        let key = if skip { "decode_skip" } else { "decode_keep" };
        // One detokenizer for every sequence: flush must leave it ready for the next.
        let mut detok = tok.detokenizer(skip);
        for (seq, case) in seqs {
            let want = text(&case[key]);
            let (chunks, so_far) = stream(&mut detok, seq);
            *n += 1;
            f.check(|| format!("{name} stream {key} {seq:?}"), chunks.concat(), want.to_string());

            // No chunk shows a replacement character that the full text does not have.
            let bad: Vec<&String> = chunks.iter().filter(|c| c.contains('\u{FFFD}')).collect();
            if !want.contains('\u{FFFD}') && !bad.is_empty() {
                f.fail(format!("{name} stream {key} {seq:?}: chunks with U+FFFD {bad:?}"));
            }
            // Text comes out as soon as it is final: after each id, everything decoded so
            // far, unless it ends in an incomplete character or a run of byte tokens.
            for k in 1..=seq.len() {
                let prefix = tok.decode(&seq[..k], skip).unwrap();
                if !prefix.contains('\u{FFFD}') && !ends_in_byte_token(tok, &seq[..k], skip) {
                    *n += 1;
                    f.check(
                        || format!("{name} stream {key} {seq:?} after {k} ids"),
                        so_far[k - 1].as_str(),
                        prefix.as_str(),
                    );
                }
            }
        }
    }
}

#[test]
fn streaming_matches_decode() {
    let refs = refs();
    let mut f = Failures::default();
    let mut n = 0;
    for name in NAMES {
        let tok = load(name);
        let r = &refs["tokenizers"][name];
        let mut seqs: Vec<(Vec<u32>, &Value)> = Vec::new();
        for c in r["cases"].as_array().unwrap() {
            seqs.push((ids(&c["ids_special"]), c));
        }
        for c in r["decodes"].as_array().unwrap() {
            seqs.push((ids(&c["ids"]), c));
        }
        check_streaming(&mut f, &mut n, name, &tok, &seqs);
    }
    f.finish(n);
}

#[test]
fn streaming_matches_decode_when_the_first_token_is_special() {
    // Decoders that strip the first token's leading space (Llama 2, Mistral, Metaspace), on
    // Gemma's vocabulary: the text after any token must not change when that token starts
    // the detokenizer's window.
    let refs = refs();
    let mut f = Failures::default();
    let mut n = 0;
    for (name, r) in refs["variants"].as_object().expect("variants in refs/tokenizer.json") {
        let tok = Tokenizer::load(common::deps_file(&format!("refs/tokenizer_variants/{name}"))).unwrap();
        let seqs: Vec<(Vec<u32>, &Value)> =
            r["decodes"].as_array().unwrap().iter().map(|c| (ids(&c["ids"]), c)).collect();
        for (seq, case) in &seqs {
            for (key, skip) in [("decode_keep", false), ("decode_skip", true)] {
                n += 1;
                f.check(
                    || format!("{name} {key} {seq:?}"),
                    tok.decode(seq, skip).unwrap(),
                    text(&case[key]).to_string(),
                );
            }
        }
        check_streaming(&mut f, &mut n, name, &tok, &seqs);
    }
    f.finish(n);
}

#[test]
fn streaming_splits_characters_only_between_chunks() {
    // Emoji and rare CJK are split over byte tokens: byte-level pieces in Qwen and Llama,
    // <0xNN> byte-fallback tokens in Gemma.
    for name in NAMES {
        let tok = load(name);
        let s = "👨‍👩‍👧‍👦 𠀀𪚥 🇯🇵 e\u{301} 中文";
        let seq = tok.encode(s, false).unwrap();
        let pieces = seq.iter().filter(|&&i| tok.decode(&[i], false).unwrap().contains('\u{FFFD}')).count();
        assert!(pieces > 0, "{name}: the text should split characters across tokens");
        let (chunks, _) = stream(&mut tok.detokenizer(false), &seq);
        for c in &chunks {
            assert!(!c.contains('\u{FFFD}'), "{name}: chunk {c:?} of {chunks:?}");
        }
        assert_eq!(chunks.concat(), tok.decode(&seq, false).unwrap(), "{name}");
    }
}

#[test]
fn streaming_handles_odd_ids() {
    for name in NAMES {
        let tok = load(name);
        let hello = tok.encode(" hello world", false).unwrap();
        let special = tok.added_tokens().iter().find(|t| t.special).unwrap().id;
        let mut seq = vec![u32::MAX, special];
        seq.extend(&hello);
        seq.extend([tok.vocab_size() as u32 + 3, special]);
        seq.extend(&hello);
        for skip in [false, true] {
            let (chunks, _) = stream(&mut tok.detokenizer(skip), &seq);
            assert_eq!(chunks.concat(), tok.decode(&seq, skip).unwrap(), "{name} skip={skip}");
        }
        // Nothing pushed: flush gives nothing.
        assert_eq!(tok.detokenizer(false).flush().unwrap(), "");
        // reset drops what was pending.
        let mut d = tok.detokenizer(false);
        let first = tok.encode("🎉", false).unwrap();
        d.push(first[0]).unwrap();
        d.reset();
        let (chunks, _) = stream(&mut d, &hello);
        assert_eq!(chunks.concat(), tok.decode(&hello, false).unwrap(), "{name}: after reset");
    }
}

#[test]
fn streaming_cost_per_token_does_not_grow() {
    // Decoding the whole sequence at every token would make 4x the tokens cost 16x the time.
    let tok = load("qwen3");
    let refs = refs();
    let mut base = Vec::new();
    for c in refs["tokenizers"]["qwen3"]["cases"].as_array().unwrap() {
        base.extend(ids(&c["ids_plain"]));
    }
    let seq_of = |n: usize| base.iter().copied().cycle().take(n).collect::<Vec<u32>>();
    let time = |seq: &[u32]| {
        let mut d = tok.detokenizer(false);
        let start = Instant::now();
        let mut out = String::new();
        for &id in seq {
            out.push_str(&d.push(id).unwrap());
        }
        out.push_str(&d.flush().unwrap());
        (start.elapsed().as_secs_f64(), out)
    };
    let (short, long) = (seq_of(10_000), seq_of(40_000));
    // The best of a few runs, so that other tests running meanwhile do not skew the ratio.
    let best = |seq: &[u32], runs: usize| (0..runs).map(|_| time(seq).0).fold(f64::INFINITY, f64::min);
    let t_short = best(&short, 3);
    // Linear cost streams this in well under a second even unoptimized; quadratic cost
    // would take minutes for the long sequence, so stop here.
    assert!(t_short < 10.0, "10000 tokens took {t_short:.1}s to stream");
    let t_long = best(&long, 2);
    assert_eq!(time(&long).1, tok.decode(&long, false).unwrap());
    let ratio = t_long / t_short;
    eprintln!("streaming: 4x the tokens took {ratio:.1}x the time ({t_short:.3}s, {t_long:.3}s)");
    assert!(ratio < 9.0, "4x the tokens took {ratio:.1}x the time ({t_short:.3}s, {t_long:.3}s)");
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tokenizer>();
    fn send<T: Send>() {}
    send::<Detokenizer>();

    let tok = load("llama3_1");
    let want = tok.encode("The same text on every thread 🧵", true).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let tok = tok.clone();
            std::thread::spawn(move || tok.encode("The same text on every thread 🧵", true).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}

// --- EOS ids from the config files ------------------------------------------------------

fn scratch(tag: &str) -> Scratch {
    Scratch::new(&format!("tokenizer-{tag}"))
}

/// A model folder with `name`'s tokenizer files (linked, they are large) and the given
/// extra files.
fn model_dir(tag: &str, name: &str, files: &[(&str, &str)]) -> Scratch {
    let dir = scratch(tag);
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::os::unix::fs::symlink(tokenizer_dir(name).join(f), dir.join(f)).unwrap();
    }
    for (file, content) in files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

#[test]
fn eos_ids_are_the_union_of_the_config_files() {
    let tok = load("llama3_1");
    let id = |t: &str| tok.token_to_id(t).unwrap();
    // 128008, <|eom_id|> in Meta's release, is still a reserved name in this tokenizer.json.
    let (end_of_text, eom, eot) = (id("<|end_of_text|>"), id("<|reserved_special_token_4|>"), id("<|eot_id|>"));

    // Llama 3.1's own layout: config.json names one id, generation_config.json a list.
    let dir = model_dir(
        "eos-llama",
        "llama3_1",
        &[
            ("config.json", &format!(r#"{{"eos_token_id": {end_of_text}}}"#)),
            ("generation_config.json", &format!(r#"{{"eos_token_id": [{end_of_text}, {eom}, {eot}]}}"#)),
        ],
    );
    let t = Tokenizer::load(&dir).unwrap();
    assert_eq!(t.eos_token_ids(), &[end_of_text, eom, eot]);
    assert!(t.is_eos(eom));

    // Only config.json, an id the tokenizer config does not name: both count.
    let dir = model_dir("eos-config", "llama3_1", &[("config.json", &format!(r#"{{"eos_token_id": [{eom}]}}"#))]);
    assert_eq!(Tokenizer::load(&dir).unwrap().eos_token_ids(), &[eom, eot]);

    // The layout of multimodal checkpoints (Gemma 3): the ids under text_config; a null at
    // the top is no id.
    let qwen = load("qwen3");
    let q_eot = qwen.token_to_id("<|endoftext|>").unwrap();
    let q_im_end = qwen.token_to_id("<|im_end|>").unwrap();
    let dir = model_dir(
        "eos-nested",
        "qwen3",
        &[
            ("config.json", &format!(r#"{{"eos_token_id": null, "text_config": {{"eos_token_id": [{q_eot}]}}}}"#)),
            ("generation_config.json", r#"{"eos_token_id": null, "do_sample": true}"#),
        ],
    );
    assert_eq!(Tokenizer::load(&dir).unwrap().eos_token_ids(), &[q_eot, q_im_end]);
}

// --- Bad model folders ------------------------------------------------------------------

/// After an error, tokenizers still work.
fn still_works() {
    let tok = load("qwen3");
    let seq = tok.encode("still works ✓", false).unwrap();
    assert_eq!(tok.decode(&seq, false).unwrap(), "still works ✓");
}

/// The load must fail with a tokenizer error whose message names `file` and contains
/// `problem`.
fn expect_load_error(what: &str, dir: &Path, file: &Path, problem: &str) {
    match Tokenizer::load(dir) {
        Ok(t) => panic!("{what}: expected an error, loaded {t:?}"),
        Err(e) => {
            assert!(matches!(e, Error::Tokenizer(_)), "{what}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains(&file.display().to_string()),
                "{what}: message {msg:?} does not name {}",
                file.display()
            );
            assert!(msg.to_lowercase().contains(problem), "{what}: message {msg:?} lacks {problem:?}");
        }
    }
    still_works();
}

#[test]
fn bad_model_folders_are_reported() {
    let missing = scratch("missing").join("no-such-model");
    expect_load_error("folder missing", &missing, &missing, "no such folder");

    let empty = scratch("empty");
    expect_load_error("no tokenizer.json", &empty, &empty.join("tokenizer.json"), "not found");

    let real = std::fs::read(tokenizer_dir("qwen3").join("tokenizer.json")).unwrap();
    for (tag, content) in [
        ("truncated", real[..real.len() / 2].to_vec()),
        ("garbage", b"\xff\xfe\x00not json at all".to_vec()),
        ("empty-file", Vec::new()),
        ("not-a-tokenizer", br#"{"version": "1.0", "model": 42}"#.to_vec()),
        ("wrong-type", b"[1, 2, 3]".to_vec()),
    ] {
        let dir = scratch(tag);
        std::fs::write(dir.join("tokenizer.json"), content).unwrap();
        expect_load_error(tag, &dir, &dir.join("tokenizer.json"), "not a valid tokenizer.json");
    }

    let dir = scratch("dir-not-file");
    std::fs::create_dir(dir.join("tokenizer.json")).unwrap();
    expect_load_error("tokenizer.json is a folder", &dir, &dir.join("tokenizer.json"), "not a file");

    for (file, content, problem) in [
        ("tokenizer_config.json", "{\"bos_token\": ", "not valid json"),
        ("tokenizer_config.json", r#"{"eos_token": 7}"#, "eos_token must be a string"),
        ("config.json", "{not json}", "not valid json"),
        ("config.json", "[]", "expected a json object"),
        ("generation_config.json", r#"{"eos_token_id": "two"}"#, "eos_token_id must be a token id"),
        ("generation_config.json", r#"{"eos_token_id": [1, -2]}"#, "eos_token_id must be a token id"),
    ] {
        let dir = scratch(&format!("bad-{file}-{}", content.len()));
        std::os::unix::fs::symlink(tokenizer_dir("qwen3").join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        std::fs::write(dir.join(file), content).unwrap();
        expect_load_error(&format!("{file} {content}"), &dir, &dir.join(file), problem);
    }

    // And a good folder still loads.
    let tok = load_fresh("qwen3");
    assert_eq!(tok.decode(&tok.encode("ok", false).unwrap(), false).unwrap(), "ok");
}
