//! Generation on a model sharded over 2 ranks (tensor parallelism over MLX's ring backend on
//! 127.0.0.1), through the CLI: `mlxrun launch -n 2 -- generate ...` must give the greedy
//! tokens one process gives, and those of mlx-lm's own sharded generation where mlx-lm
//! shards the family (refs/distributed, from scripts/distributed_refs.py). A rank killed
//! mid-generation must end the other's call with an error, not a hang.
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROMPT: &str = "Hello world";
const MAX_TOKENS: &str = "16";

fn mlxrun() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlxrun"))
}

/// The generated ids and the prompt's ids of `generate --json`'s output.
fn tokens(what: &str, out: std::process::Output) -> (Vec<i64>, Vec<i64>) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"));
    (ids(&v["tokens"]), ids(&v["prompt_tokens"]))
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect()
}

fn generate_args<'a>(model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["generate", "--model", model, "--prompt", PROMPT, "--max-tokens", MAX_TOKENS, "--ignore-eos", "--json"];
    a.extend(extra);
    a
}

fn check(rel: &str, extra: &[&str]) {
    let model = common::deps_file(rel);
    let model = model.to_str().unwrap();
    let name = rel.rsplit('/').next().unwrap();
    let what = format!("{rel} {extra:?}");
    let single = tokens(&format!("{what}, one process"), mlxrun().args(generate_args(model, extra)).output().unwrap());
    let mut launch = vec!["launch", "-n", "2", "--"];
    launch.extend(generate_args(model, extra));
    let sharded = tokens(&format!("{what}, 2 ranks"), mlxrun().args(&launch).output().unwrap());
    assert_eq!(sharded, single, "{what}: 2 ranks vs one process");
    let reference = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(".deps/refs/distributed/{name}.json"));
    if reference.exists() {
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
        assert_eq!(r["prompt"], PROMPT);
        assert_eq!(sharded.1, ids(&r["prompt_ids"]), "{what}: prompt ids vs mlx-lm's");
        assert_eq!(sharded.0, ids(&r["sharded_ids"]), "{what}: 2 ranks vs mlx-lm's own 2-rank sharded generation");
    }
}

/// Every family's fixture, dense (float32), and 8-bit packed ones (qwen2's has the same
/// layers as qwen3's but biases, which the dense qwen2 case covers).
#[test]
fn two_ranks_generate_what_one_process_and_mlx_lm_sharded_generate() {
    for name in ["llama3", "qwen2", "qwen3", "gemma3"] {
        check(&format!("fixtures/{name}"), &[]);
    }
    for name in ["llama3-q8g32", "qwen3-q8g32", "gemma3-q8g32"] {
        check(&format!("fixtures-quant/{name}"), &["--keep-quantized"]);
    }
}

/// Both mlx-lm references exist where mlx-lm shards the family: a missing one would make
/// the comparison above silently skip it.
#[test]
fn mlx_lm_sharded_references_are_there() {
    for name in ["llama3", "qwen3", "llama3-q8g32", "qwen3-q8g32"] {
        common::deps_file(&format!("refs/distributed/{name}.json"));
    }
}

/// A layer that cannot be split evenly is refused on every rank with the reason.
#[test]
fn an_unsplittable_model_is_refused_with_the_reason() {
    let model = common::deps_file("fixtures-quant/qwen3-q4g64");
    let mut a = vec!["launch", "-n", "2", "--"];
    a.extend(generate_args(model.to_str().unwrap(), &["--keep-quantized"]));
    let out = mlxrun().args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("quantization groups of 64") && err.contains("[rank 1]"), "{err}");
}

/// Killing rank 1 while rank 0 streams makes rank 0's generation fail within seconds.
#[test]
fn killing_a_rank_mid_generation_ends_the_other_with_an_error() {
    let dir = common::Scratch::new("dist-kill");
    let hosts = dir.join("hosts.json");
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    std::fs::write(&hosts, format!(r#"[["127.0.0.1:{}"], ["127.0.0.1:{}"]]"#, ports[0], ports[1])).unwrap();
    let model = common::deps_file("fixtures/llama3");
    let spawn = |rank: usize| {
        mlxrun()
            .args(["generate", "--distributed", "--model", model.to_str().unwrap(), "--prompt", PROMPT])
            .args(["--max-tokens", "100000", "--ignore-eos", "--dist-timeout", "3"])
            .env("MLX_RANK", rank.to_string())
            .env("MLX_HOSTFILE", &hosts)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut r0 = spawn(0);
    let mut r1 = spawn(1);
    // Read as they come: a full pipe would stall a rank in its next write.
    let mut err0 = r0.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err0.read_to_string(&mut s);
        s
    });
    let mut err1 = r1.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut err1, &mut std::io::sink()));
    // Rank 0 streams: once text has come, both are generating.
    let mut out0 = r0.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    let n = out0.read(&mut buf).unwrap();
    assert!(n > 0, "rank 0 printed nothing");
    r1.kill().unwrap();
    r1.wait().unwrap();
    let killed = Instant::now();
    let drain = std::thread::spawn(move || std::io::copy(&mut out0, &mut std::io::sink()));
    let status = loop {
        if let Some(s) = r0.try_wait().unwrap() {
            break s;
        }
        if killed.elapsed() > Duration::from_secs(20) {
            let _ = r0.kill();
            let _ = r0.wait();
            panic!("rank 0 still ran 20 s after its peer was killed:\n{}", err_reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = drain.join();
    let err = err_reader.join().unwrap();
    assert!(!status.success(), "rank 0 succeeded without its peer:\n{err}");
    assert!(err.contains("peer"), "rank 0's error does not name the lost peer:\n{err}");
    eprintln!("rank 0 ended {:.2} s after its peer was killed: {}", killed.elapsed().as_secs_f64(), err.trim());
}

/// Rank 0 stops early (its output is closed): every rank stops at that same token, and all
/// end cleanly, instead of rank 1 waiting in an all-sum for a rank that stopped computing.
#[test]
fn a_stop_on_rank_0_stops_every_rank_at_the_same_token() {
    let model = common::deps_file("fixtures/llama3");
    let mut a = vec!["launch", "-n", "2", "--"];
    a.extend(["generate", "--model", model.to_str().unwrap(), "--prompt", PROMPT, "--max-tokens", "100000", "--ignore-eos"]);
    let mut child = mlxrun().args(&a).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 16];
    assert!(out.read(&mut buf).unwrap() > 0, "rank 0 printed nothing");
    drop(out);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the ranks still ran 60 s after rank 0's output closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    // Rank 1 ended its generation early too, at the token rank 0 stopped at.
    let line = err.lines().find(|l| l.starts_with("[rank 1] prompt:")).unwrap_or_else(|| panic!("{err}"));
    let generated: usize = line.split("generation: ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(generated < 100000, "{line}");
}

/// `launch --backend nccl` gives each rank its place in the group, the rendezvous on
/// 127.0.0.1 and a GPU of its own, and refuses fewer GPUs than ranks naming both counts.
#[test]
fn nccl_launch_gives_each_rank_a_gpu_and_the_rendezvous() {
    use mlxrun::cli::launch::{gpus_for_ranks, nccl_env};
    let env: std::collections::HashMap<String, String> = nccl_env(1, 2, "3", 4242).into_iter().collect();
    for (k, v) in [("MLX_RANK", "1"), ("MLX_WORLD_SIZE", "2"), ("NCCL_HOST_IP", "127.0.0.1"), ("NCCL_PORT", "4242"), ("CUDA_VISIBLE_DEVICES", "3")] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
    }
    if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
        assert_eq!(env.get("NCCL_NVLS_ENABLE").map(String::as_str), Some("0"), "NVLink multicast off: {env:?}");
    }
    assert_eq!(gpus_for_ranks(2, Some("4, 6,7"), 0).unwrap(), ["4", "6"]);
    assert_eq!(gpus_for_ranks(2, None, 8).unwrap(), ["0", "1"]);
    let err = gpus_for_ranks(2, Some("5"), 8).unwrap_err().to_string();
    assert!(err.contains("one GPU per rank") && err.contains("2 ranks") && err.contains("CUDA_VISIBLE_DEVICES=\"5\" names 1 GPU"), "{err}");
    let err = gpus_for_ranks(4, None, 2).unwrap_err().to_string();
    assert!(err.contains("4 ranks") && err.contains("this machine has 2 GPUs"), "{err}");
}

/// Where MLX has no NCCL (the CPU build), `launch --backend nccl` says so before starting
/// any rank.
#[test]
fn nccl_launch_without_nccl_names_the_missing_backend() {
    if mlxrun::mlx::distributed::is_available("nccl").unwrap() {
        return;
    }
    let model = common::deps_file("fixtures/qwen3");
    let out = mlxrun()
        .args(["launch", "--backend", "nccl", "-n", "2", "--"])
        .args(generate_args(model.to_str().unwrap(), &[]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no NCCL backend"), "{stderr}");
    assert!(!stderr.contains("[rank 1]"), "no rank was started: {stderr}");
}
