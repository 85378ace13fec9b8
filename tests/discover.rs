//! Model discovery: trees of links to the fixture models (HF folders, mlx-lm quantized
//! folders, a sharded folder, the real SmolLM2 GGUF file, GGUF files written here) and
//! broken copies of them, searched with `mlxrun::discover` and `mlxrun discover`.
//!
//! Parameter counts are checked against references that do not come from the code under
//! test: the dense fixtures' counts are computed here from their config.json fields (the
//! Llama/Qwen3 layer formula), the quantized fixtures' against the `total_parameters`
//! mlx-lm's converter wrote into their `model.safetensors.index.json` (mlx-lm counts a
//! packed matrix as the values it unpacks to, as discovery must), SmolLM2's from its GGUF
//! metadata (sizes, not tensors) by the same formula, and the written GGUF files' from the
//! tensors the test wrote.
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::gguf_writer::{self, Kv};
use common::{deps_file, Scratch};
use mlxrun::engine::discover::{ModelFormat, DEFAULT_MAX_DEPTH};
use mlxrun::models::gguf::GgufFile;
use mlxrun::{discover, DiscoverOptions, DiscoveredModel};
use serde_json::Value;

/// `dst` as a folder of links to the files of `src`, leaving out `skip`.
fn link_model(src: &Path, dst: &Path, skip: &[&str]) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        if p.is_file() && !skip.iter().any(|s| name == *s) {
            std::os::unix::fs::symlink(&p, dst.join(name)).unwrap();
        }
    }
}

/// Bytes of the files of `src` (links followed), leaving out `skip`.
fn files_size(src: &Path, skip: &[&str]) -> u64 {
    fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !skip.iter().any(|s| p.file_name().unwrap() == *s))
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap()
}

/// Parameters of a Llama-style decoder (Qwen3 adds per-head q/k norms) from its sizes.
#[allow(clippy::too_many_arguments)]
fn decoder_params(vocab: u64, hidden: u64, layers: u64, heads: u64, kv_heads: u64, head_dim: u64, inter: u64, tied: bool, qk_norm: bool) -> u64 {
    let attn = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim;
    let mlp = 3 * hidden * inter;
    let norms = 2 * hidden + if qk_norm { 2 * head_dim } else { 0 };
    vocab * hidden * if tied { 1 } else { 2 } + layers * (attn + mlp + norms) + hidden
}

/// `decoder_params` from an HF config.json.
fn config_params(dir: &Path, qk_norm: bool) -> u64 {
    let c = read_json(&dir.join("config.json"));
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k} in {}", dir.display()));
    let head_dim = c["head_dim"].as_u64().unwrap_or(n("hidden_size") / n("num_attention_heads"));
    decoder_params(
        n("vocab_size"),
        n("hidden_size"),
        n("num_hidden_layers"),
        n("num_attention_heads"),
        n("num_key_value_heads"),
        head_dim,
        n("intermediate_size"),
        c["tie_word_embeddings"].as_bool().unwrap_or(false),
        qk_norm,
    )
}

/// What mlx-lm's converter recorded as the model's parameter count.
fn mlx_lm_total_parameters(dir: &Path) -> u64 {
    read_json(&dir.join("model.safetensors.index.json"))["metadata"]["total_parameters"].as_u64().unwrap()
}

fn find<'a>(found: &'a [DiscoveredModel], path: &Path) -> &'a DiscoveredModel {
    found.iter().find(|m| m.path == path).unwrap_or_else(|| {
        panic!("{} not found; found: {:?}", path.display(), found.iter().map(|m| &m.path).collect::<Vec<_>>())
    })
}

fn native_ok(m: &DiscoveredModel) -> bool {
    m.backends.iter().any(|b| b.backend == "native" && b.ok)
}

/// A small llama GGUF file written here, with the number of parameters its tensors hold.
fn tiny_gguf(chat_template: bool) -> (Vec<u8>, u64) {
    let (mut kvs, tensors) = gguf_writer::tiny_llama("llama");
    if chat_template {
        kvs.push(("tokenizer.chat_template", Kv::Str("{% for m in messages %}{{ m.content }}{% endfor %}".into())));
    }
    let params = tensors.iter().map(|t| t.dims.iter().product::<u64>()).sum();
    (gguf_writer::write(&kvs, &tensors), params)
}

#[test]
fn finds_models_in_nested_folders_with_what_they_are() {
    let tmp = Scratch::new("discover-nested");
    let qwen3 = deps_file("fixtures/qwen3");
    let q4 = deps_file("fixtures-quant/qwen3-q4g64");
    let mixed = deps_file("fixtures-quant/gemma3-mixed36");
    let q8 = deps_file("fixtures-quant/qwen2-q8g32");
    let sharded = deps_file("fixtures/llama-linear");
    let smollm2 = deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    link_model(&qwen3, &tmp.join("org/qwen3"), &[]);
    link_model(&q4, &tmp.join("org/quantized/qwen3-q4g64"), &[]);
    link_model(&mixed, &tmp.join("mixed/gemma3-mixed36"), &[]);
    link_model(&q8, &tmp.join("q8/qwen2-q8g32"), &[]);
    link_model(&sharded, &tmp.join("sharded"), &[]);
    fs::create_dir_all(tmp.join("gguf/tiny")).unwrap();
    std::os::unix::fs::symlink(&smollm2, tmp.join("gguf/smollm2.gguf")).unwrap();
    let (tiny, tiny_params) = tiny_gguf(true);
    fs::write(tmp.join("gguf/tiny/tiny.gguf"), &tiny).unwrap();
    // Neither a model folder nor a GGUF file: not listed.
    fs::create_dir_all(tmp.join("notes/adapter")).unwrap();
    fs::write(tmp.join("notes/readme.txt"), "hello").unwrap();
    fs::write(tmp.join("notes/adapter/adapter_config.json"), "{}").unwrap();
    // A folder without a tokenizer or template: listed, and says so.
    link_model(&qwen3, &tmp.join("bare"), &["tokenizer.json", "tokenizer_config.json"]);

    let t = std::time::Instant::now();
    let found = discover(&tmp, &DiscoverOptions::default()).unwrap();
    println!("searched in {:?}", t.elapsed());
    let paths: Vec<&Path> = found.iter().map(|m| m.path.as_path()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "sorted by path");
    assert_eq!(found.len(), 8, "{paths:?}");
    for m in &found {
        assert_eq!(m.error, None, "{}", m.path.display());
        assert!(native_ok(m), "{}: {:?}", m.path.display(), m.backends);
        assert_eq!(m.backends.iter().map(|b| b.backend.as_str()).collect::<Vec<_>>(), ["native", "mlx_lm"]);
    }

    let dense = config_params(&qwen3, true);
    let m = find(&found, &tmp.join("org/qwen3"));
    assert_eq!(m.format, Some(ModelFormat::Safetensors));
    assert_eq!(m.model_type.as_deref(), Some("qwen3"));
    assert_eq!(m.quantization, None);
    assert_eq!(m.dtype.as_deref(), Some("float32"), "the fixture stores float32, as its torch_dtype says");
    assert_eq!(m.params, Some(dense));
    assert_eq!(m.size_bytes, files_size(&qwen3, &[]));
    assert_eq!(m.num_files, 1);
    assert!(m.has_tokenizer && m.has_chat_template);

    // The quantized copy of the same model: mlx-lm's count, which is the dense one.
    let m = find(&found, &tmp.join("org/quantized/qwen3-q4g64"));
    assert_eq!(mlx_lm_total_parameters(&q4), dense, "the q4 fixture is made from the dense one");
    assert_eq!(m.params, Some(dense));
    let q = m.quantization.as_ref().unwrap();
    assert_eq!((q.bits, q.group_size, q.mode.as_str()), (4, 64, "affine"));
    assert_eq!(m.size_bytes, files_size(&q4, &[]));
    assert!(m.size_bytes < find(&found, &tmp.join("org/qwen3")).size_bytes);
    assert!(m.has_tokenizer && m.has_chat_template, "chat_template.jinja");

    // Mixed 3/6-bit layers: the per-layer bits are what unpacking uses.
    let m = find(&found, &tmp.join("mixed/gemma3-mixed36"));
    assert_eq!(m.model_type.as_deref(), Some("gemma3_text"));
    assert_eq!(m.params, Some(mlx_lm_total_parameters(&mixed)));
    assert_eq!(m.dtype.as_deref(), Some("bfloat16"));
    assert_eq!(m.quantization.as_ref().map(|q| (q.bits, q.group_size)), Some((4, 64)), "the config's default");

    let m = find(&found, &tmp.join("q8/qwen2-q8g32"));
    assert_eq!(m.params, Some(mlx_lm_total_parameters(&q8)));
    assert_eq!(m.quantization.as_ref().map(|q| (q.bits, q.group_size)), Some((8, 32)));
    assert_eq!(m.dtype.as_deref(), Some("float16"));

    let m = find(&found, &tmp.join("sharded"));
    assert_eq!(m.num_files, 3);
    assert_eq!(m.params, Some(config_params(&sharded, false)));
    assert_eq!(m.dtype.as_deref(), Some("bfloat16"));
    assert_eq!(m.size_bytes, files_size(&sharded, &[]));

    let m = find(&found, &tmp.join("bare"));
    assert!(!m.has_tokenizer && !m.has_chat_template);
    assert_eq!(m.params, Some(dense));

    // SmolLM2's GGUF file: the count from its metadata's sizes.
    let g = GgufFile::open(&smollm2).unwrap();
    let meta = |k: &str| g.get(&format!("llama.{k}")).and_then(|v| v.as_i64()).unwrap() as u64;
    let vocab = g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).unwrap().len() as u64;
    let (hidden, heads) = (meta("embedding_length"), meta("attention.head_count"));
    let smollm2_params = decoder_params(
        vocab,
        hidden,
        meta("block_count"),
        heads,
        meta("attention.head_count_kv"),
        hidden / heads,
        meta("feed_forward_length"),
        g.tensor("output.weight").is_none(),
        false,
    );
    let m = find(&found, &tmp.join("gguf/smollm2.gguf"));
    assert_eq!(m.format, Some(ModelFormat::Gguf));
    assert_eq!(m.model_type.as_deref(), Some("llama"));
    assert_eq!(m.params, Some(smollm2_params));
    assert_eq!(smollm2_params, 134_515_008, "SmolLM2-135M's published size");
    assert_eq!(m.dtype.as_deref(), Some("Q4_1"));
    let q = m.quantization.as_ref().unwrap();
    assert_eq!((q.bits, q.group_size, q.mode.as_str()), (4, 32, "q4_1"));
    assert_eq!((m.num_files, m.size_bytes), (1, fs::metadata(&smollm2).unwrap().len()));
    assert!(m.has_tokenizer && m.has_chat_template);
    let mlx_lm = m.backends.iter().find(|b| b.backend == "mlx_lm").unwrap();
    assert!(!mlx_lm.ok && mlx_lm.reason.as_deref().unwrap_or("").contains("GGUF"), "{mlx_lm:?}");

    let m = find(&found, &tmp.join("gguf/tiny/tiny.gguf"));
    assert_eq!(m.params, Some(tiny_params));
    assert_eq!(m.dtype.as_deref(), Some("F32"), "no file type stated: the tensors' type");
    assert_eq!(m.quantization, None);
    assert!(m.has_tokenizer && m.has_chat_template);
    assert_eq!(m.size_bytes, tiny.len() as u64);
}

#[test]
fn broken_models_are_listed_with_their_error() {
    let tmp = Scratch::new("discover-broken");
    let qwen3 = deps_file("fixtures/qwen3");
    let q4 = deps_file("fixtures-quant/qwen3-q4g64");
    let sharded = deps_file("fixtures/llama-linear");

    link_model(&qwen3, &tmp.join("bad-config"), &["config.json"]);
    fs::write(tmp.join("bad-config/config.json"), "{\"model_type\": \"qwen3\",").unwrap();
    link_model(&qwen3, &tmp.join("no-weights"), &["model.safetensors"]);
    link_model(&sharded, &tmp.join("missing-shard"), &["model-00002-of-00003.safetensors"]);
    link_model(&qwen3, &tmp.join("truncated-weights"), &["model.safetensors"]);
    let weights = fs::read(qwen3.join("model.safetensors")).unwrap();
    fs::write(tmp.join("truncated-weights/model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    // Packed matrices, but a config that does not say how they are packed.
    link_model(&q4, &tmp.join("no-quant-config"), &["config.json"]);
    let mut cfg = read_json(&q4.join("config.json"));
    cfg.as_object_mut().unwrap().retain(|k, _| k != "quantization" && k != "quantization_config");
    fs::write(tmp.join("no-quant-config/config.json"), cfg.to_string()).unwrap();
    link_model(&qwen3, &tmp.join("no-model-type"), &["config.json"]);
    fs::write(tmp.join("no-model-type/config.json"), "{\"hidden_size\": 64}").unwrap();
    fs::create_dir_all(tmp.join("gguf")).unwrap();
    let (tiny, _) = tiny_gguf(false);
    fs::write(tmp.join("gguf/truncated.gguf"), &tiny[..tiny.len() - 64]).unwrap();
    fs::write(tmp.join("gguf/empty.gguf"), b"").unwrap();
    // Whole, but of an architecture the engine does not have: not an error, a refusal.
    link_model(&qwen3, &tmp.join("unknown-arch"), &["config.json"]);
    let mut cfg = read_json(&qwen3.join("config.json"));
    cfg["model_type"] = "mamba9".into();
    fs::write(tmp.join("unknown-arch/config.json"), cfg.to_string()).unwrap();
    // A good model beside the broken ones is unaffected.
    link_model(&qwen3, &tmp.join("good"), &[]);

    let found = discover(&tmp, &DiscoverOptions::default()).unwrap();
    assert_eq!(found.len(), 10, "{:?}", found.iter().map(|m| &m.path).collect::<Vec<_>>());
    let err = |rel: &str| {
        let m = find(&found, &tmp.join(rel));
        assert!(m.backends.iter().all(|b| !b.ok), "{rel}: a broken model is loadable by none: {:?}", m.backends);
        m.error.clone().unwrap_or_else(|| panic!("{rel} has no error"))
    };
    let has = |e: &str, needles: &[&str]| {
        for n in needles {
            assert!(e.contains(n), "{e:?} lacks {n:?}");
        }
    };
    let e = err("bad-config");
    has(&e, &["bad-config/config.json", "not valid JSON"]);
    let e = err("no-weights");
    has(&e, &["no *.safetensors weights", "no-weights"]);
    assert_eq!(find(&found, &tmp.join("no-weights")).model_type.as_deref(), Some("qwen3"), "what could be read is kept");
    let e = err("missing-shard");
    has(&e, &["model.safetensors.index.json", "model-00002-of-00003.safetensors", "missing"]);
    let e = err("truncated-weights");
    has(&e, &["truncated-weights/model.safetensors", "truncated"]);
    let e = err("no-quant-config");
    has(&e, &["no-quant-config", "marks model.", "quantized", "quantization"]);
    let e = err("no-model-type");
    has(&e, &["no-model-type/config.json", "model_type", "missing"]);
    let e = err("gguf/truncated.gguf");
    has(&e, &["gguf/truncated.gguf", "truncated"]);
    let e = err("gguf/empty.gguf");
    has(&e, &["gguf/empty.gguf", "too short"]);

    let m = find(&found, &tmp.join("unknown-arch"));
    assert_eq!(m.error, None);
    assert_eq!(m.params, Some(config_params(&qwen3, true)));
    let native = m.backends.iter().find(|b| b.backend == "native").unwrap();
    assert!(!native.ok && native.reason.as_deref().unwrap_or("").contains("mamba9"), "{native:?}");
    let m = find(&found, &tmp.join("good"));
    assert!(m.error.is_none() && native_ok(m));
}

#[test]
fn link_loops_and_aliases_are_walked_once() {
    let tmp = Scratch::new("discover-links");
    let qwen3 = deps_file("fixtures/qwen3");
    link_model(&qwen3, &tmp.join("a/model"), &[]);
    // Loops: to the root, to a parent, to itself; and a second name for the model folder.
    std::os::unix::fs::symlink(&*tmp, tmp.join("a/model/root")).unwrap();
    std::os::unix::fs::symlink("..", tmp.join("a/up")).unwrap();
    std::os::unix::fs::symlink(".", tmp.join("a/self")).unwrap();
    std::os::unix::fs::symlink(tmp.join("a/model"), tmp.join("z-alias")).unwrap();
    // A dangling link is not a model part and not a failure.
    std::os::unix::fs::symlink(tmp.join("nowhere"), tmp.join("a/dangling")).unwrap();

    let found = discover(&tmp, &DiscoverOptions { max_depth: 64, ..Default::default() }).unwrap();
    assert_eq!(found.len(), 1, "{:?}", found.iter().map(|m| &m.path).collect::<Vec<_>>());
    assert_eq!(found[0].path, tmp.join("a/model"), "reported under the first name reached");
    assert!(found[0].error.is_none());

    // The link itself as the folder searched: reported under the caller's name.
    let found = discover(&tmp.join("z-alias"), &DiscoverOptions::default()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, tmp.join("z-alias"));
}

#[test]
fn the_depth_bound_limits_the_search() {
    let tmp = Scratch::new("discover-depth");
    let qwen3 = deps_file("fixtures/qwen3");
    let deep = tmp.join("1/2/3/4/5");
    link_model(&qwen3, &deep, &[]);
    link_model(&qwen3, &tmp.join("1/shallow"), &[]);
    let (tiny, _) = tiny_gguf(false);
    fs::write(tmp.join("top.gguf"), &tiny).unwrap();

    let paths = |depth: usize| -> Vec<PathBuf> {
        discover(&tmp, &DiscoverOptions { max_depth: depth, ..Default::default() }).unwrap().into_iter().map(|m| m.path).collect()
    };
    assert_eq!(DEFAULT_MAX_DEPTH, 4);
    assert_eq!(paths(DEFAULT_MAX_DEPTH), [tmp.join("1/shallow"), tmp.join("top.gguf")], "level 5 is past the default");
    assert_eq!(paths(5), [tmp.join("1/2/3/4/5"), tmp.join("1/shallow"), tmp.join("top.gguf")]);
    assert_eq!(paths(0), [tmp.join("top.gguf")], "depth 0: the folder itself only");
    assert_eq!(paths(1), [tmp.join("top.gguf")]);
    assert_eq!(paths(2), [tmp.join("1/shallow"), tmp.join("top.gguf")]);
    // A model folder searched at depth 0 is itself the result.
    let found = discover(&deep, &DiscoverOptions { max_depth: 0, ..Default::default() }).unwrap();
    assert_eq!(found.iter().map(|m| &m.path).collect::<Vec<_>>(), [&deep]);
}

#[test]
fn an_unreadable_folder_is_an_entry_not_a_failure() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = Scratch::new("discover-unreadable");
    let qwen3 = deps_file("fixtures/qwen3");
    link_model(&qwen3, &tmp.join("locked/model"), &[]);
    link_model(&qwen3, &tmp.join("open"), &[]);
    fs::set_permissions(tmp.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let found = discover(&tmp, &DiscoverOptions::default());
    // Give the folder back its permissions before asserting, so that the scratch folder
    // can be removed whatever happens.
    fs::set_permissions(tmp.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    let found = found.unwrap();
    assert!(find(&found, &tmp.join("open")).error.is_none(), "the readable model is still found");
    // Root reads any folder whatever its mode, so there the locked model is simply found.
    if fs::read_dir(tmp.join("locked")).is_ok() && unsafe { libc::geteuid() } == 0 {
        println!("running as root: chmod 000 does not stop root, the unreadable-folder assertion is skipped");
        assert_eq!(found.len(), 2);
        return;
    }
    assert_eq!(found.len(), 2, "{found:?}");
    let m = find(&found, &tmp.join("locked"));
    assert_eq!(m.format, None);
    let e = m.error.as_deref().unwrap();
    assert!(e.contains("locked") && e.contains("cannot list"), "{e}");
}

#[test]
fn a_missing_or_non_folder_dir_is_an_error() {
    let e = discover(Path::new("/nonexistent/models"), &DiscoverOptions::default()).unwrap_err();
    assert!(matches!(e, mlxrun::Error::Io(_)) && e.to_string().contains("/nonexistent/models"), "{e}");
    let file = deps_file("fixtures/qwen3/config.json");
    let e = discover(&file, &DiscoverOptions::default()).unwrap_err();
    assert!(matches!(e, mlxrun::Error::InvalidArgument(_)) && e.to_string().contains("not a folder"), "{e}");
}

#[test]
fn the_command_line_prints_a_table_and_json() {
    let tmp = Scratch::new("discover-cli");
    let qwen3 = deps_file("fixtures/qwen3");
    link_model(&qwen3, &tmp.join("org/qwen3"), &[]);
    link_model(&qwen3, &tmp.join("broken"), &["model.safetensors"]);
    let (tiny, _) = tiny_gguf(false);
    fs::write(tmp.join("tiny.gguf"), &tiny).unwrap();
    let exe = env!("CARGO_BIN_EXE_mlxrun");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(exe).args(args).output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };

    let dir = tmp.to_str().unwrap();
    let (code, stdout, stderr) = run(&["discover", dir, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let a = v.as_array().expect("one JSON array");
    assert_eq!(a.len(), 3);
    let by_path = |rel: &str| a.iter().find(|m| m["path"] == tmp.join(rel).to_str().unwrap()).unwrap();
    let q = by_path("org/qwen3");
    assert_eq!(q["model_type"], "qwen3");
    assert_eq!(q["format"], "safetensors");
    assert_eq!(q["params"], config_params(&qwen3, true));
    assert_eq!(q["quantization"], Value::Null);
    assert_eq!(q["error"], Value::Null);
    assert_eq!(q["backends"][0]["backend"], "native");
    assert_eq!(q["backends"][0]["ok"], true);
    assert!(by_path("broken")["error"].as_str().unwrap().contains("no *.safetensors weights"));
    assert_eq!(by_path("tiny.gguf")["format"], "gguf");

    let (code, stdout, _) = run(&["discover", dir, "--json", "--depth", "0"]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap().as_array().unwrap().len(), 1, "only tiny.gguf at depth 0");

    let (code, stdout, stderr) = run(&["discover", dir]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("3 models under "), "{stdout}");
    for needle in ["PATH", "ARCH", "QUANT", "DTYPE", "PARAMS", "SIZE", "BACKENDS", "org/qwen3", "float32", "9.9M", "tiny.gguf", "broken", "error:"] {
        assert!(stdout.contains(needle), "{needle:?} missing from:\n{stdout}");
    }

    let (code, _, stderr) = run(&["discover", "/nonexistent/models"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("/nonexistent/models"), "{stderr}");
    let (code, _, stderr) = run(&["discover", dir, "--depth", "x"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--depth"), "{stderr}");
}
