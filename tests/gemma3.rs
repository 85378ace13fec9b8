//! Gemma 3 beyond the comparisons with mlx-lm (tests/generate_reference.rs): the sliding
//! layers' KV memory stays bounded over a long generation while the global layers' grows,
//! the rotating cache's layout and trim rules, the configs' defaults, and load errors that
//! name the problem.
mod common;

use common::bad_model::{assert_has, copy_fixture, edit_config, edit_tensor, load_err};
use mlxrun::engine::generate::generate_tokens;
use mlxrun::engine::SamplerParams;
use mlxrun::mlx::{Array, Dtype};
use mlxrun::models::{load, LanguageModel, LoadOptions};
use mlxrun::nn::{causal_mask, KvCache, Mask};
use serde_json::json;

fn load_f32(name: &str) -> Box<dyn LanguageModel> {
    load(&common::deps_file(&format!("fixtures/{name}")), &LoadOptions::with_dtype(Some(Dtype::F32))).unwrap()
}

fn ids(tokens: &[u32]) -> Array {
    let v: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    Array::from_slice(&v, &[1, v.len() as i32]).unwrap()
}

/// Logits of the last position, as f32.
fn last_logits(logits: &Array) -> Vec<f32> {
    let n = logits.dim(1).unwrap();
    logits.slice_axis(1, n - 1, n).unwrap().astype(Dtype::F32).unwrap().to_vec::<f32>().unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as u32
}

/// Bytes held by the sliding layers' caches (each) and the global layers' (each), checking
/// that all layers of one kind hold the same.
fn bytes_by_kind(caches: &[KvCache]) -> (usize, usize) {
    let of = |sliding: bool| {
        let b: Vec<usize> = caches.iter().filter(|c| c.max_size().is_some() == sliding).map(KvCache::nbytes).collect();
        assert!(b.windows(2).all(|w| w[0] == w[1]), "layers of one kind hold different sizes: {b:?}");
        b[0]
    };
    (of(true), of(false))
}

#[test]
fn sliding_layers_keep_kv_memory_bounded_over_a_long_generation() {
    let model = load_f32("gemma3");
    let info = model.info().clone();
    let mut caches = model.new_caches();
    let windows: Vec<Option<i32>> = caches.iter().map(KvCache::max_size).collect();
    assert_eq!(windows, [Some(16), Some(16), None, Some(16), Some(16), None], "sliding_window_pattern 3, window 16");
    // Bytes per cached position: keys and values, f32.
    let per_pos = (2 * info.num_kv_heads * info.head_dim * 4) as usize;
    let window = 16usize;

    // A 40-token prompt in one chunk (the sliding caches briefly hold all of it), then 600
    // greedy single-token steps.
    let prompt: Vec<u32> = (0..40).map(|i| 1000 + 37 * i).collect();
    let mut tok = argmax(&last_logits(&model.forward(&ids(&prompt), &mut caches).unwrap()));
    let (s, g) = bytes_by_kind(&caches);
    println!("KV bytes per layer (f32, {per_pos} B/position): sliding | global");
    println!("  after the 40-token prefill: {s:>7} | {g:>7}");
    assert_eq!(s, 40 * per_pos, "a multi-token chunk is appended whole");
    assert_eq!(g, 256 * per_pos, "the full cache grows in 256-position blocks");
    let mut sliding_max = 0;
    for step in 1..=600usize {
        tok = argmax(&last_logits(&model.forward(&ids(&[tok]), &mut caches).unwrap()));
        let (s, g) = bytes_by_kind(&caches);
        sliding_max = sliding_max.max(s);
        assert_eq!(s, window * per_pos, "step {step}: sliding layers hold exactly the window");
        let positions = 40 + step;
        assert_eq!(g, positions.div_ceil(256) * 256 * per_pos, "step {step}: global layers hold every position");
        if [1, 16, 100, 256, 600].contains(&step) {
            println!("  after {step:>3} generated tokens: {s:>7} | {g:>7}  (offset {})", caches[0].offset());
        }
    }
    assert!(caches.iter().all(|c| c.offset() == 640));
    assert_eq!(sliding_max, window * per_pos);

    // The engine's pipelined loop, prefilling in chunks of 8: same bounds at the end.
    let mut caches = model.new_caches();
    generate_tokens(model.as_ref(), &mut caches, &prompt, 600, &SamplerParams::default(), 8, None, &mut |_| Ok(true))
        .unwrap();
    let (s, g) = bytes_by_kind(&caches);
    println!("  generate_tokens (prefill step 8), 600 tokens: {s:>7} | {g:>7}");
    assert_eq!((s, g), (window * per_pos, 768 * per_pos));
}

/// Keys `[1, 1, n, 1]` whose values are the positions `start..start + n`.
fn positions(start: i32, n: i32) -> Array {
    let v: Vec<f32> = (start..start + n).map(|p| p as f32).collect();
    Array::from_slice(&v, &[1, 1, n, 1]).unwrap()
}

fn held(k: &Array) -> Vec<i32> {
    k.to_vec::<f32>().unwrap().into_iter().map(|v| v as i32).collect()
}

/// The buffer layouts asserted here are those mlx-lm's `RotatingKVCache` produces for the
/// same sequence of updates (the order attention reads the keys in).
#[test]
fn rotating_cache_layout_masks_and_trimming() {
    let mut c = KvCache::rotating(8, 0);
    assert!(c.is_empty() && c.is_trimmable() && c.nbytes() == 0);

    // A chunk shorter than the window: held in order; trimmable until the cache wraps.
    let (k, _) = c.update_and_fetch(&positions(0, 5), &positions(0, 5)).unwrap();
    assert_eq!(held(&k), [0, 1, 2, 3, 4]);
    assert!(c.can_trim(3) && !c.can_trim(6) && !c.can_trim(-1));
    assert_eq!(c.trim(2), 2);
    assert_eq!((c.offset(), c.len()), (3, 3));
    let (k, _) = c.update_and_fetch(&positions(3, 1), &positions(3, 1)).unwrap();
    assert_eq!(held(&k), [0, 1, 2, 3], "the trimmed positions are overwritten");

    // Single tokens fill the ring, then wrap over the oldest.
    for p in 4..11 {
        c.update_and_fetch(&positions(p, 1), &positions(p, 1)).unwrap();
    }
    let (k, _) = c.update_and_fetch(&positions(11, 1), &positions(11, 1)).unwrap();
    assert_eq!(held(&k), [8, 9, 10, 11, 4, 5, 6, 7], "ring order: slot = position mod 8");
    assert_eq!((c.offset(), c.len(), c.max_size()), (12, 8, Some(8)));
    assert!(!c.is_trimmable() && !c.can_trim(1));
    assert_eq!(c.trim(1), 0, "a wrapped cache cannot drop positions");
    assert_eq!(c.offset(), 12);
    assert_eq!(c.nbytes(), 2 * 8 * 4);
    assert!(matches!(c.make_mask(1, Some(8)).unwrap(), Mask::None));

    // A chunk after wrapping: the last 7 positions in temporal order, then the chunk; the
    // mask lets each query see itself and the 7 positions before it.
    let mask = match c.make_mask(3, Some(8)).unwrap() {
        Mask::Window { offset, window } => causal_mask(3, offset, Some(window)).unwrap(),
        _ => panic!("a chunk that crosses the window needs a window mask"),
    };
    assert_eq!(mask.shape(), [3, 10]);
    let m = mask.to_vec::<bool>().unwrap();
    for q in 0..3 {
        let row: Vec<usize> = (0..10).filter(|&j| m[q * 10 + j]).collect();
        assert_eq!(row, (q..q + 8).collect::<Vec<_>>(), "query {q}");
    }
    let (k, _) = c.update_and_fetch(&positions(12, 3), &positions(12, 3)).unwrap();
    assert_eq!(held(&k), (5..15).collect::<Vec<_>>());
    // The next single token trims back to the window.
    let (k, _) = c.update_and_fetch(&positions(15, 1), &positions(15, 1)).unwrap();
    assert_eq!(held(&k), [15, 8, 9, 10, 11, 12, 13, 14]);

    // A full cache can always be trimmed.
    let mut f = KvCache::new();
    f.update_and_fetch(&positions(0, 300), &positions(0, 300)).unwrap();
    assert!(f.is_trimmable() && f.can_trim(300) && !f.can_trim(301) && f.max_size().is_none());
    assert_eq!(f.trim(500), 300);
    assert!(f.is_empty());
}

#[test]
fn trimmed_caches_continue_like_a_fresh_prefill() {
    let model = load_f32("gemma3");
    let a: Vec<u32> = (0..10).map(|i| 2000 + 11 * i).collect();
    let b: Vec<u32> = vec![7, 8, 9, 10];

    // Ten positions (fewer than the window of 16), three of them dropped, four new ones.
    let mut caches = model.new_caches();
    model.forward(&ids(&a), &mut caches).unwrap();
    assert!(caches.iter().all(|c| c.can_trim(3)));
    assert!(caches.iter_mut().all(|c| c.trim(3) == 3));
    let trimmed = last_logits(&model.forward(&ids(&b), &mut caches).unwrap());

    let mut fresh_caches = model.new_caches();
    let fresh = last_logits(&model.forward(&ids(&[&a[..7], &b[..]].concat()), &mut fresh_caches).unwrap());
    let worst = trimmed.iter().zip(&fresh).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "logits after trimming differ from a fresh prefill by {worst}");

    // Once the sliding caches have wrapped they refuse, and a caller must re-prefill.
    model.forward(&ids(&(0..20).collect::<Vec<u32>>()), &mut caches).unwrap();
    for c in &caches {
        assert_eq!(c.can_trim(1), c.max_size().is_none(), "only the global caches stay trimmable");
    }
}

#[test]
fn configs_take_the_reference_defaults() {
    let text = load_f32("gemma3");
    let i = text.info();
    assert_eq!((i.model_type.as_str(), i.num_heads, i.num_kv_heads, i.head_dim), ("gemma3_text", 4, 1, 32));
    assert_eq!((i.vocab_size, i.num_layers, i.tied_embeddings), (262_144, 6, true));
    // The multimodal text_config names neither heads nor vocabulary: 8 / 4 heads and the
    // 262208-row vocabulary apply; the vision tensors are skipped.
    let mm = load_f32("gemma3-mm");
    let i = mm.info();
    assert_eq!((i.model_type.as_str(), i.num_heads, i.num_kv_heads, i.head_dim), ("gemma3", 8, 4, 32));
    assert_eq!((i.vocab_size, i.num_layers, i.tied_embeddings), (262_208, 7, true));
    let windows: Vec<Option<i32>> = mm.new_caches().iter().map(KvCache::max_size).collect();
    assert_eq!(windows, [Some(12), Some(12), Some(12), Some(12), Some(12), None, Some(12)]);
}

fn text_config(v: &mut serde_json::Value) -> &mut serde_json::Map<String, serde_json::Value> {
    v["text_config"].as_object_mut().unwrap()
}

#[test]
fn bad_gemma_checkpoints_are_reported() {
    let d = copy_fixture("gemma3-mm", "g3-notext");
    edit_config(&d, |v| {
        v.as_object_mut().unwrap().remove("text_config");
    });
    assert_has(&load_err(&d), &["config.json", "text_config", "missing"]);

    let d = copy_fixture("gemma3-mm", "g3-textstr");
    edit_config(&d, |v| v["text_config"] = json!("small"));
    assert_has(&load_err(&d), &["\"text_config\"", "JSON object", "\"small\""]);

    let d = copy_fixture("gemma3-mm", "g3-hidden");
    edit_config(&d, |v| {
        text_config(v).remove("hidden_size");
    });
    assert_has(&load_err(&d), &["config.json", "\"text_config.hidden_size\"", "missing"]);

    let d = copy_fixture("gemma3-mm", "g3-window");
    edit_config(&d, |v| {
        text_config(v).insert("sliding_window".into(), json!("wide"));
    });
    assert_has(&load_err(&d), &["\"text_config.sliding_window\"", "positive integer", "\"wide\""]);

    let d = copy_fixture("gemma3", "g3-layers");
    edit_config(&d, |v| {
        v.as_object_mut().unwrap().remove("num_hidden_layers");
    });
    assert_has(&load_err(&d), &["\"num_hidden_layers\"", "missing"]);

    let d = copy_fixture("gemma3", "g3-attncap");
    edit_config(&d, |v| v["attn_logit_softcapping"] = json!(50.0));
    assert_has(&load_err(&d), &["attn_logit_softcapping", "50", "not supported"]);

    let d = copy_fixture("gemma3", "g3-cap");
    edit_config(&d, |v| v["final_logit_softcapping"] = json!(-1.0));
    assert_has(&load_err(&d), &["\"final_logit_softcapping\"", "positive", "-1"]);

    let d = copy_fixture("gemma3", "g3-act");
    edit_config(&d, |v| v["hidden_activation"] = json!("relu"));
    assert_has(&load_err(&d), &["\"hidden_activation\"", "gelu_pytorch_tanh", "\"relu\""]);

    let d = copy_fixture("gemma3", "g3-types");
    edit_config(&d, |v| v["layer_types"] = json!(vec!["full_attention"; 6]));
    assert_has(&load_err(&d), &["\"layer_types\"", "\"sliding_window_pattern\" = 3"]);

    let d = copy_fixture("gemma3", "g3-typelen");
    edit_config(&d, |v| v["layer_types"] = json!(["sliding_attention", "full_attention"]));
    assert_has(&load_err(&d), &["\"layer_types\"", "6 \"sliding_attention\""]);

    let d = copy_fixture("gemma3", "g3-rope");
    edit_config(&d, |v| v["rope_scaling"] = json!({"rope_type": "yarn-ish", "factor": 8.0}));
    assert_has(&load_err(&d), &["yarn-ish", "not supported"]);

    let d = copy_fixture("gemma3", "g3-heads");
    edit_config(&d, |v| v["num_key_value_heads"] = json!(3));
    assert_has(&load_err(&d), &["\"num_attention_heads\" (4)", "multiple", "\"num_key_value_heads\" (3)"]);

    let d = copy_fixture("gemma3-mm", "g3-tensor");
    edit_tensor(&d, "language_model.model.layers.3.pre_feedforward_layernorm.weight", None);
    assert_has(&load_err(&d), &["language_model.model.layers.3.pre_feedforward_layernorm.weight", "missing"]);

    let d = copy_fixture("gemma3", "g3-shape");
    edit_tensor(&d, "model.layers.2.self_attn.q_norm.weight", Some(Array::zeros(&[16], Dtype::Bf16).unwrap()));
    assert_has(&load_err(&d), &["model.layers.2.self_attn.q_norm.weight", "[16]", "[32]"]);

    let d = copy_fixture("gemma3", "g3-embed");
    edit_tensor(&d, "model.embed_tokens.weight", Some(Array::zeros(&[1000, 64], Dtype::Bf16).unwrap()));
    assert_has(&load_err(&d), &["model.embed_tokens.weight", "[1000, 64]", "[262144, 64]"]);

    // Text tensors outside language_model.* in a multimodal checkpoint are not skipped.
    let d = copy_fixture("gemma3-mm", "g3-stray");
    edit_tensor(&d, "model.norm.weight", Some(Array::zeros(&[64], Dtype::Bf16).unwrap()));
    assert_has(&load_err(&d), &["model.norm.weight", "not used"]);

    // A vision tensor in a text-only checkpoint is not skipped either.
    let d = copy_fixture("gemma3", "g3-vision");
    edit_tensor(&d, "vision_tower.vision_model.post_layernorm.weight", Some(Array::zeros(&[16], Dtype::Bf16).unwrap()));
    assert_has(&load_err(&d), &["vision_tower.vision_model.post_layernorm.weight", "not used"]);
}
