//! The `mlx_lm` backend against the native one on every family's fixture, and its worker
//! process misbehaving: killed, stalled, printing garbage, oversized messages, missing.
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlxrun::engine::backend::{self, BackendChoice, MlxLmOptions, TextModel};
use mlxrun::engine::{BatchParams, FinishReason, GenerateParams};
use mlxrun::{ChatOptions, Error, LoadOptions, Message};

const FAMILIES: &[&str] = &["qwen3", "gemma3", "llama3", "qwen2"];

fn venv_options() -> MlxLmOptions {
    MlxLmOptions { venv: Some(common::deps_file("venv")), ..MlxLmOptions::default() }
}

fn load(family: &str, backend_name: &str, mlx_lm: MlxLmOptions) -> mlxrun::Result<TextModel> {
    let choice = BackendChoice { name: Some(backend_name.into()), mlx_lm };
    backend::load(common::deps_file(&format!("fixtures/{family}")), &LoadOptions::default(), &choice)
}

fn params(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, ..GenerateParams::default() }
}

#[test]
fn both_backends_are_listed_and_available() {
    let list = backend::list(&venv_options());
    let names: Vec<&str> = list.iter().map(|a| a.name).collect();
    assert_eq!(names, ["native", "mlx_lm"]);
    for a in &list {
        assert!(a.available, "{} unavailable: {:?}", a.name, a.reason);
    }
    assert!(list[1].version.contains("mlx-lm 0.32.2"), "{}", list[1].version);
}

#[test]
fn a_missing_python_is_unavailable_with_the_reason() {
    let opts = MlxLmOptions { python: Some(PathBuf::from("/nonexistent/python3")), ..MlxLmOptions::default() };
    let a = backend::availability("mlx_lm", &opts).unwrap();
    assert!(!a.available);
    let why = a.reason.unwrap();
    assert!(why.contains("/nonexistent/python3") && why.contains("cannot start"), "{why}");
    let e = backend::availability("tensorrt", &opts).unwrap_err();
    assert!(e.to_string().contains("unknown backend \"tensorrt\""), "{e}");
    // A Python without mlx-lm: the system's, with an empty module path.
    let bare = tempdir("bare-python");
    let fake = write_script(&bare, "python", "#!/bin/sh\nexec python3 -I -S \"$@\"\n");
    let a = backend::availability("mlx_lm", &MlxLmOptions { python: Some(fake), ..MlxLmOptions::default() }).unwrap();
    assert!(!a.available);
    assert!(a.reason.as_deref().unwrap_or("").contains("cannot import mlx-lm"), "{:?}", a.reason);
}

#[test]
fn generate_chat_classify_and_batch_give_native_tokens_and_text() {
    for family in FAMILIES {
        let mut native = load(family, "native", venv_options()).unwrap();
        let mut remote = load(family, "mlx_lm", venv_options()).unwrap();
        assert_eq!(remote.backend(), "mlx_lm");
        assert_eq!(native.info().num_layers, remote.info().num_layers, "{family}: layers");
        assert_eq!(native.info().vocab_size, remote.info().vocab_size, "{family}: vocabulary");

        let prompt = "The capital of France is";
        let (mut a, mut b) = (String::new(), String::new());
        let gn = native.generate(prompt, &params(12), |e| { a.push_str(e.text); true }).unwrap();
        let gr = remote.generate(prompt, &params(12), |e| { b.push_str(e.text); true }).unwrap();
        assert_eq!(gn.prompt_tokens, gr.prompt_tokens, "{family}: prompt ids");
        assert_eq!(gn.tokens, gr.tokens, "{family}: generated ids");
        assert_eq!(gn.text, gr.text, "{family}: text");
        assert_eq!((a, gn.finish_reason), (b, gr.finish_reason), "{family}: streamed text");
        assert_eq!(gr.metrics.prompt_tokens, gr.prompt_tokens.len());
        assert!(gr.metrics.peak_memory > 0, "{family}: peak memory");

        let messages = [Message::system("Be brief."), Message::user("Name a colour.")];
        let opts = ChatOptions::default();
        let cn = native.chat(&messages, &opts, &params(10), |_| true).unwrap();
        let cr = remote.chat(&messages, &opts, &params(10), |_| true).unwrap();
        assert_eq!(native.render_chat(&messages, &opts).unwrap(), remote.render_chat(&messages, &opts).unwrap(), "{family}: template text");
        assert_eq!((cn.prompt_tokens, cn.tokens, cn.text), (cr.prompt_tokens, cr.tokens, cr.text), "{family}: chat");

        let prompts = ["I love this film", "Terrible service, never again", "", "Paris is in"];
        let batch = BatchParams::default();
        let kn = native.classify(&prompts, &params(1), &batch).unwrap();
        let kr = remote.classify(&prompts, &params(1), &batch).unwrap();
        for (i, (n, r)) in kn.iter().zip(&kr).enumerate() {
            match (n, r) {
                (Ok(n), Ok(r)) => assert_eq!((&n.prompt_tokens, n.token), (&r.prompt_tokens, r.token), "{family}: classify {i}"),
                (Err(n), Err(r)) => assert_eq!(std::mem::discriminant(n), std::mem::discriminant(r), "{family}: classify {i}: {n} / {r}"),
                other => panic!("{family}: classify {i}: {other:?}"),
            }
        }

        let prompts = ["Once upon a time", "The capital of France is", "1, 2, 3,"];
        let bn = native.batch_generate(&prompts, &params(8), &batch, |_, _| true).unwrap();
        let br = remote.batch_generate(&prompts, &params(8), &batch, |_, _| true).unwrap();
        for (i, (n, r)) in bn.into_iter().zip(br).enumerate() {
            let (n, r) = (n.unwrap(), r.unwrap());
            assert_eq!((n.tokens, n.text, n.finish_reason), (r.tokens, r.text, r.finish_reason), "{family}: batch row {i}");
        }
    }
}

#[test]
fn stop_strings_callbacks_and_cancel_stop_where_native_does_and_keep_the_worker() {
    let mut native = load("qwen3", "native", venv_options()).unwrap();
    let mut remote = load("qwen3", "mlx_lm", venv_options()).unwrap();
    let full = native.generate("Hello", &params(16), |_| true).unwrap();
    // A stop string from the middle of the native text.
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let p = GenerateParams { stop_strings: vec![stop.clone()], ..params(16) };
    let n = native.generate("Hello", &p, |_| true).unwrap();
    let r = remote.generate("Hello", &p, |_| true).unwrap();
    assert_eq!(n.finish_reason, FinishReason::StopString, "stop {stop:?} in {:?}", full.text);
    assert_eq!((n.text, n.finish_reason), (r.text, r.finish_reason));

    let mut seen = 0;
    let r = remote.generate("Hello", &params(16), |_| { seen += 1; seen < 3 }).unwrap();
    assert_eq!(r.finish_reason, FinishReason::Callback);
    assert_eq!(r.tokens.len(), 3);

    // Cancel from another thread: the call ends Cancelled, and the worker serves the next.
    let cancel = remote.canceller();
    let mut n = 0;
    let r = remote
        .generate("Hello", &params(200), |_| {
            n += 1;
            if n == 2 {
                let c = cancel.clone();
                std::thread::spawn(move || c.cancel()).join().unwrap();
            }
            true
        })
        .unwrap();
    assert_eq!(r.finish_reason, FinishReason::Cancelled);
    assert!(r.tokens.len() < 200);
    let again = remote.generate("Hello", &params(16), |_| true).unwrap();
    assert_eq!(again.tokens, full.tokens);

    // What only the native backend does is refused by name.
    let e = remote.native("training").err().unwrap();
    assert!(matches!(e, Error::Unsupported(_)) && e.to_string().contains("mlx_lm backend does not do training"), "{e}");
}

#[test]
fn a_killed_worker_fails_the_call_within_a_second_and_the_next_load_works() {
    let mut remote = load("qwen3", "mlx_lm", venv_options()).unwrap();
    let TextModel::MlxLm(m) = &remote else { unreachable!() };
    let pid = m.pid();
    let mut killed_at = None;
    let e = remote
        .generate("Hello", &params(100_000), |_| {
            if killed_at.is_none() {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                killed_at = Some(Instant::now());
            }
            true
        })
        .unwrap_err();
    let took = killed_at.unwrap().elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let msg = e.to_string();
    assert!(matches!(e, Error::Backend(_)) && msg.contains("exited during generate") && msg.contains("signal: 9"), "{msg}");
    // The dead worker is reported as such, not waited on.
    let e = remote.generate("Hello", &params(4), |_| true).unwrap_err();
    assert!(e.to_string().contains("load the model again"), "{e}");
    drop(remote);
    let mut again = load("qwen3", "mlx_lm", venv_options()).unwrap();
    assert_eq!(again.generate("Hello", &params(4), |_| true).unwrap().tokens.len(), 4);
}

#[test]
fn a_stalled_worker_is_stopped_after_the_reply_timeout() {
    let opts = MlxLmOptions { reply_timeout: Duration::from_millis(1500), ..venv_options() };
    let mut remote = load("qwen3", "mlx_lm", opts).unwrap();
    let TextModel::MlxLm(m) = &remote else { unreachable!() };
    let pid = m.pid() as i32;
    let start = Instant::now();
    let mut stopped = false;
    let e = remote
        .generate("Hello", &params(100_000), |_| {
            if !stopped {
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                stopped = true;
            }
            true
        })
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(e.to_string().contains("sent nothing for 1.5 s during generate"), "{e}");
    // It was killed, not left stopped.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} still exists");
}

#[test]
fn garbage_oversized_and_silent_workers_are_reported() {
    let dir = tempdir("fake-workers");
    let cases = [
        ("garbage", "#!/bin/sh\necho 'Traceback? no: just words'\nsleep 30\n", "not a protocol message", 64 << 20),
        ("huge", "#!/bin/sh\nhead -c 3000000 /dev/zero | tr '\\0' 'x'\necho\nsleep 30\n", "over 1048576 bytes", 1 << 20),
        ("silent", "#!/bin/sh\nsleep 30\n", "sent nothing for 1.0 s during start-up", 64 << 20),
        ("crash", "#!/bin/sh\necho 'fatal: no GPU' >&2\nexit 3\n", "exit status: 3; its stderr ended: fatal: no GPU", 64 << 20),
    ];
    for (name, script, want, max) in cases {
        let python = write_script(&dir, name, script);
        let opts = MlxLmOptions { python: Some(python), load_timeout: Duration::from_secs(1), max_message_bytes: max, ..MlxLmOptions::default() };
        let start = Instant::now();
        let e = load("qwen3", "mlx_lm", opts).err().unwrap_or_else(|| panic!("{name}: loaded"));
        assert!(start.elapsed() < Duration::from_secs(4), "{name}: took {:?}", start.elapsed());
        assert!(matches!(e, Error::Backend(_)) && e.to_string().contains(want), "{name}: {e}");
    }
}

#[test]
fn what_mlx_lm_cannot_load_is_refused_by_name() {
    let gguf = common::deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let choice = BackendChoice { name: Some("mlx_lm".into()), mlx_lm: venv_options() };
    let e = backend::load(&gguf, &LoadOptions::default(), &choice).err().unwrap();
    assert!(matches!(e, Error::Unsupported(_)) && e.to_string().contains("GGUF"), "{e}");
    let e = backend::load("/nonexistent/model", &LoadOptions::default(), &choice).err().unwrap();
    assert!(e.to_string().contains("/nonexistent/model"), "{e}");
    let empty = tempdir("no-config");
    let e = backend::load(&*empty, &LoadOptions::default(), &choice).err().unwrap();
    assert!(matches!(e, Error::Config(_)) && e.to_string().contains("config.json"), "{e}");
    let e = backend::load(&*empty, &LoadOptions::default(), &BackendChoice { name: Some("onnx".into()), ..choice }).err().unwrap();
    assert!(e.to_string().contains("unknown backend \"onnx\""), "{e}");
}

#[test]
fn can_load_says_which_backend_takes_a_model_type() {
    use backend::{can_load_with, ModelFacts};
    let opts = venv_options();
    let ok = |facts| can_load_with(&facts, &opts).iter().map(|s| (s.backend, s.ok)).collect::<Vec<_>>();
    assert_eq!(ok(ModelFacts { model_type: Some("qwen3"), gguf: false }), [("native", true), ("mlx_lm", true)]);
    assert_eq!(ok(ModelFacts { model_type: Some("phi3"), gguf: false }), [("native", false), ("mlx_lm", true)]);
    assert_eq!(ok(ModelFacts { model_type: Some("mistral"), gguf: false }), [("native", false), ("mlx_lm", true)]);
    assert_eq!(ok(ModelFacts { model_type: Some("qwen3"), gguf: true }), [("native", true), ("mlx_lm", false)]);
    let s = can_load_with(&ModelFacts { model_type: Some("no_such_arch"), gguf: false }, &opts);
    assert!(s[1].reason.as_deref().unwrap().contains("no model_type \"no_such_arch\""), "{:?}", s[1]);
}

fn tempdir(tag: &str) -> common::Scratch {
    common::Scratch::new(tag)
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Processes whose environment holds `tag` (the workers a test's host started).
fn processes_tagged(tag: &str) -> Vec<(u32, char)> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        if env.split(|&b| b == 0).any(|kv| kv == tag.as_bytes()) {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next()).unwrap_or('?');
            out.push((pid, state));
        }
    }
    out
}

fn wait_until_none(tag: &str, within: Duration) -> Vec<(u32, char)> {
    let start = Instant::now();
    loop {
        let left: Vec<_> = processes_tagged(tag).into_iter().filter(|&(_, s)| s != 'Z').collect();
        if left.is_empty() || start.elapsed() > within {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_worker_outlives_its_host_whether_it_exits_or_is_killed() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let cli = env!("CARGO_BIN_EXE_mlxrun");
    let model = common::deps_file("fixtures/qwen3");
    let venv = common::deps_file("venv");
    for kill in [false, true] {
        let tag = format!("MLXRUN_HOST_TEST={}-{kill}", std::process::id());
        let (k, v) = tag.split_once('=').unwrap();
        let max = if kill { "100000" } else { "4" };
        let mut host = Command::new(cli)
            .args(["generate", "--backend", "mlx_lm", "--prompt", "Hello", "--max-tokens", max])
            .arg("--model")
            .arg(&model)
            .arg("--venv")
            .arg(&venv)
            .env(k, v)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if kill {
            // Text on stdout: the worker is generating.
            let mut first = [0u8; 1];
            host.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
            assert_eq!(processes_tagged(&tag).len(), 2, "the host and its worker");
            host.kill().unwrap();
        }
        host.wait().unwrap();
        let left = wait_until_none(&tag, Duration::from_secs(3));
        assert!(left.is_empty(), "kill={kill}: processes left: {left:?}");
    }
}

#[test]
fn discover_judges_the_mlx_lm_backend_with_the_chosen_python() {
    use mlxrun::engine::discover::{discover, DiscoverOptions};
    let dir = common::deps_file("fixtures/qwen3");
    let with = |mlx_lm| discover(&dir, &DiscoverOptions { max_depth: 0, mlx_lm }).unwrap();
    let found = with(venv_options());
    let verdicts: Vec<_> = found[0].backends.iter().map(|b| (b.backend.as_str(), b.ok)).collect();
    assert_eq!(verdicts, [("native", true), ("mlx_lm", true)]);
    let found = with(MlxLmOptions { python: Some("/nonexistent/python3".into()), ..MlxLmOptions::default() });
    let mlx_lm = &found[0].backends[1];
    assert!(!mlx_lm.ok && mlx_lm.reason.as_deref().unwrap_or("").contains("/nonexistent/python3"), "{mlx_lm:?}");
}

/// A C, Go or Swift host does not ignore SIGPIPE as Rust programs do: a write to a worker
/// that closed its stdin must fail the call, not kill the host. (The default disposition
/// is restored for the whole test process, as such a host has it.)
#[test]
fn a_worker_that_closed_its_stdin_fails_the_call_without_killing_the_host() {
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let dir = tempdir("closed-stdin");
    let ready = r#"{"type": "ready", "protocol": 1, "mlx_lm": "0.32.2", "mlx_lm_ok": true, "device": "Device(cpu, 0)"}"#;
    let python = write_script(&dir, "python", &format!("#!/bin/sh\nexec 0<&-\necho '{ready}'\nsleep 30\n"));
    let opts = MlxLmOptions { python: Some(python), load_timeout: Duration::from_secs(5), ..MlxLmOptions::default() };
    let e = load("qwen3", "mlx_lm", opts).err().expect("loaded");
    assert!(matches!(e, Error::Backend(_)) && e.to_string().contains("could not be written to"), "{e}");
}
