//! MLX's distributed group through the shim: real processes on localhost joined by the
//! `ring` backend (free ports chosen at run time). The test binary runs itself as each
//! rank: a parent test starts `n` copies of this binary filtered to `rank_main`, with
//! MLX_RANK, MLX_HOSTFILE and the scenario in the environment, and checks what they print.
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mlxrun::engine::{BatchParams, GenerateParams, Model, SamplerParams};
use mlxrun::mlx::distributed::{self, Group};
use mlxrun::models::LoadOptions;
use mlxrun::mlx::{eval, Array, Dtype};

/// A hostfile for `n` ranks on localhost, each on a port free now.
fn hostfile(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let ports: Vec<u16> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let hosts: Vec<Vec<String>> = ports.iter().map(|p| vec![format!("127.0.0.1:{p}")]).collect();
    let path = dir.join("hosts.json");
    std::fs::write(&path, serde_json::to_string(&hosts).unwrap()).unwrap();
    path
}

/// Starts ranks `ranks` of an `n`-rank group running `scenario`; returns their outputs.
fn run_ranks(tag: &str, n: usize, ranks: &[usize], scenario: &str, limit: Duration) -> Vec<(bool, String)> {
    let dir = common::Scratch::new(tag);
    let hosts = hostfile(&dir, n);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ranks
        .iter()
        .map(|r| {
            Command::new(&exe)
                .args(["rank_main", "--exact", "--nocapture", "--test-threads=1"])
                .env("MLX_RANK", r.to_string())
                .env("MLX_HOSTFILE", &hosts)
                .env("MLXRUN_DIST_SCENARIO", scenario)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let mut out = Vec::new();
    for mut c in children {
        // Bounded: a hang is a failure of its own, not a stuck test run.
        loop {
            if c.try_wait().unwrap().is_some() {
                break;
            }
            if start.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                panic!("a rank of {scenario:?} still ran after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = c.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        out.push((o.status.success(), text));
    }
    out
}

/// One rank's side of each scenario; does nothing unless started by `run_ranks`.
#[test]
fn rank_main() {
    let Ok(scenario) = std::env::var("MLXRUN_DIST_SCENARIO") else { return };
    let timeout = Duration::from_secs(if scenario == "missing_peer" { 2 } else { 20 });
    let g = match Group::init("ring", timeout) {
        Ok(g) => g,
        Err(e) => {
            println!("INIT ERROR: {e}");
            return;
        }
    };
    let (r, n) = (g.rank(), g.size());
    match scenario.as_str() {
        "collectives" => {
            let x = Array::from_slice(&[r as f32 + 1.0, 10.0 * (r as f32 + 1.0)], &[1, 2]).unwrap();
            let sum = g.all_sum(&x).unwrap().to_vec::<f32>().unwrap();
            let max = g.all_max(&x).unwrap().to_vec::<f32>().unwrap();
            let gathered = g.all_gather(&x).unwrap();
            println!("RANK {r} OF {n}");
            println!("SUM {sum:?}");
            println!("MAX {max:?}");
            println!("GATHER {:?} {:?}", gathered.shape(), gathered.to_vec::<f32>().unwrap());
            // A ring of point-to-point messages: each rank sends its rank to the next.
            let next = (r + 1) % n;
            let prev = (r + n - 1) % n;
            let msg = Array::from_slice(&[r * 100], &[1]).unwrap();
            let like = Array::zeros(&[1], Dtype::I32).unwrap();
            if r == 0 {
                eval(&[&g.send(&msg, next).unwrap()]).unwrap();
                println!("RECV {:?}", g.recv_like(&like, prev).unwrap().to_vec::<i32>().unwrap());
            } else {
                let got = g.recv_like(&like, prev).unwrap();
                println!("RECV {:?}", got.to_vec::<i32>().unwrap());
                eval(&[&g.send(&msg, next).unwrap()]).unwrap();
            }
            println!("SELF SEND {}", g.send(&msg, r).map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()));
        }
        "peer_dies" => {
            let x = Array::from_slice(&[1.0f32], &[1]).unwrap();
            eval(&[&g.all_sum(&x).unwrap()]).unwrap();
            if r == 1 {
                // Dies abruptly, as a killed process does: no goodbye to the peer.
                std::process::exit(3);
            }
            let t = Instant::now();
            let mut result = Ok(());
            for _ in 0..100 {
                result = g.all_sum(&x).and_then(|s| eval(&[&s]));
                if result.is_err() {
                    break;
                }
            }
            println!("SURVIVOR {:?} after {:.1}s", result.map_err(|e| e.to_string()), t.elapsed().as_secs_f64());
        }
        "engine" => {
            // The library's calls on a model sharded over the group: what every rank gets.
            let opts = LoadOptions { group: Some(g.clone()), ..LoadOptions::default() };
            let mut model = Model::load(common::deps_file("fixtures/qwen2"), &opts).unwrap();
            let (classes, greedy, sampled) = engine_calls(&mut model);
            println!("CLASSIFY {classes:?}");
            println!("GREEDY {greedy:?}");
            println!("SAMPLED {sampled:?}");
            let e = model.batch_generate(&["a"], &GenerateParams::default(), &BatchParams::default(), |_, _| true);
            println!("BATCH {}", e.err().map(|e| e.to_string()).unwrap_or_default());
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn two_ranks_sum_gather_send_and_receive() {
    let out = run_ranks("dist-coll", 2, &[0, 1], "collectives", Duration::from_secs(60));
    for (r, (ok, text)) in out.iter().enumerate() {
        assert!(ok, "rank {r} failed:\n{text}");
        assert!(text.contains(&format!("RANK {r} OF 2")), "rank {r}:\n{text}");
        assert!(text.contains("SUM [3.0, 30.0]"), "rank {r}:\n{text}");
        assert!(text.contains("MAX [2.0, 20.0]"), "rank {r}:\n{text}");
        assert!(text.contains("GATHER [2, 2] [1.0, 10.0, 2.0, 20.0]"), "rank {r}:\n{text}");
        // Rank 0 hears from rank 1 and rank 1 from rank 0.
        assert!(text.contains(&format!("RECV [{}]", (1 - r) * 100)), "rank {r}:\n{text}");
        assert!(text.contains("SELF SEND invalid argument: rank"), "rank {r}:\n{text}");
    }
}

#[test]
fn a_missing_peer_fails_init_within_its_timeout() {
    let t = Instant::now();
    let out = run_ranks("dist-missing", 2, &[0], "missing_peer", Duration::from_secs(30));
    let (ok, text) = &out[0];
    assert!(ok, "{text}");
    assert!(text.contains("INIT ERROR") && text.contains("timed out after"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
}

#[test]
fn a_dead_peer_ends_the_survivors_collective_with_an_error() {
    let out = run_ranks("dist-dies", 2, &[0, 1], "peer_dies", Duration::from_secs(30));
    let (_, text) = &out[0];
    assert!(text.contains("SURVIVOR Err(") && text.contains("peer"), "{text}");
}

#[test]
fn bad_environments_are_named() {
    // Run in this process only when no scenario is set (the ranks have MLX_RANK).
    if std::env::var("MLXRUN_DIST_SCENARIO").is_ok() {
        return;
    }
    let dir = common::Scratch::new("dist-env");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[["127.0.0.1"]]"#).unwrap();
    let e = distributed::read_hostfile(&bad).unwrap_err().to_string();
    assert!(e.contains("is not \"ip:port\""), "{e}");
    std::fs::write(&bad, "[]").unwrap();
    assert!(distributed::read_hostfile(&bad).unwrap_err().to_string().contains("lists no ranks"));
    let e = Group::init("carrier-pigeon", Duration::from_secs(1)).unwrap_err().to_string();
    assert!(e.contains("unknown distributed backend"), "{e}");
    assert!(distributed::is_available("ring").unwrap());
}

/// Classify three prompts, then generate greedily and with unseeded sampling.
fn engine_calls(model: &mut Model) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let greedy = GenerateParams { max_tokens: 12, ignore_eos: true, ..GenerateParams::default() };
    let classes = model.classify(&["one", "two words", "and three words"], &greedy, &BatchParams::default()).unwrap();
    let classes = classes.into_iter().map(|c| c.unwrap().token).collect();
    let g = model.generate("Hello world", &greedy, |_| true).unwrap().tokens;
    let sampling = GenerateParams { sampler: SamplerParams { temperature: 0.9, ..SamplerParams::default() }, ..greedy };
    let s = model.generate("Hello world", &sampling, |_| true).unwrap().tokens;
    (classes, g, s)
}

/// Classify and generation on a model sharded over 2 ranks give what one process gives
/// (greedy), and the same tokens on both ranks when sampling without a seed.
#[test]
fn two_ranks_classify_and_generate_like_one_process() {
    if std::env::var("MLXRUN_DIST_SCENARIO").is_ok() {
        return;
    }
    let out = run_ranks("dist-engine", 2, &[0, 1], "engine", Duration::from_secs(120));
    let mut single = Model::load(common::deps_file("fixtures/qwen2"), &LoadOptions::default()).unwrap();
    let (classes, greedy, _) = engine_calls(&mut single);
    // From the key on (libtest prints "test rank_main ... " ahead of the first line).
    let line = |text: &str, key: &str| {
        let l = text.lines().find_map(|l| l.find(key).map(|i| &l[i..])).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
        l.to_string()
    };
    for (r, (ok, text)) in out.iter().enumerate() {
        assert!(ok, "rank {r}:\n{text}");
        assert_eq!(line(text, "CLASSIFY"), format!("CLASSIFY {classes:?}"), "rank {r}");
        assert_eq!(line(text, "GREEDY"), format!("GREEDY {greedy:?}"), "rank {r}");
        assert!(line(text, "BATCH").contains("sharded"), "rank {r}:\n{text}");
    }
    assert_eq!(line(&out[0].1, "SAMPLED"), line(&out[1].1, "SAMPLED"), "the ranks sampled apart");
}
