//! The soak workload: one process doing thousands of generate / chat / classify /
//! chat-session calls and load/free cycles on the fixture models, measuring MLX's
//! allocator and the process's resident memory as it goes, and judging the figures
//! against the stated bounds. `benches/soak.rs` runs it at length and prints the figures;
//! `tests/soak.rs` runs a few hundred calls and asserts the same verdict.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlxrun::chat::{ChatOptions, ChatSession, Message};
use mlxrun::engine::{BatchParams, GenerateParams, Model};
use mlxrun::mlx::memory;
use mlxrun::LoadOptions;

/// After every model is freed (and MLX's cache cleared), active memory must be back at its
/// baseline within this many bytes. MLX frees every buffer of a dropped array at once, so
/// the measured difference is 0; a few KiB of slack would still catch a leaked KV cache or
/// weight (the smallest fixture tensor is a 64-float norm, 256 bytes, but a leaked call
/// leaks at least its cache: tens of KiB).
pub const ACTIVE_SLACK_BYTES: usize = 4096;

/// Bound on the resident-set growth over the last 80% of the run, in bytes per 1000 calls
/// (the slope of a least-squares line through the RSS samples, so one late allocation
/// burst does not decide it). Measured on the 2-core x86-64 machine (release, 2000
/// calls): once past its one-off steps the resident set moved 0.07 MB per 1000 calls
/// (calls 600 to 2000); the first 20% of the calls are warm-up.
/// A leak of one 1 KiB array per call is 1 MB per 1000 calls, so 2 MB catches any leak
/// of a call's activations, KV cache or logits (each several KiB to MiB on the fixtures).
pub const RSS_SLOPE_BOUND_BYTES_PER_1000: f64 = 2.0e6;

/// One-off growth allowed over the last 80% besides the slope: even with the C heap
/// trimmed, the resident set rises in one to three steps (32, 13 and 7 MB seen) at calls
/// that vary from run to run — the latest seen at call 240 — and then stays flat to 0.1
/// MB; the thread count stays at 9. A leak is linear instead: keeping one call's logits
/// (600 KB on the Qwen3 fixture) per call adds 170 MB over the CI test's 288 calls.
pub const RSS_STEP_ALLOWANCE_BYTES: f64 = 48.0e6;

/// The fixtures the workload uses: two kept loaded throughout, one loaded and freed again
/// and again.
pub const RESIDENT: [&str; 2] = ["qwen3", "gemma3"];
pub const CYCLED: &str = "llama-linear";

#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Generate / chat / classify / session calls, in rotation.
    pub calls: usize,
    /// A load/free cycle of `CYCLED` after every this many calls.
    pub load_every: usize,
    /// A resident-memory sample after every this many calls.
    pub sample_every: usize,
    /// Tokens per generation.
    pub max_tokens: usize,
    /// Print progress lines.
    pub verbose: bool,
}

/// Calls after which the workload is back in the same state: 4 kinds of call × 2 models,
/// and a session restarted every third turn. Resident memory is sampled at multiples of
/// it, so that a session's growing KV cache does not read as growth.
pub const PERIOD: usize = 24;

impl SoakConfig {
    pub fn with_calls(calls: usize) -> SoakConfig {
        SoakConfig { calls, load_every: 50, sample_every: PERIOD * (calls / (50 * PERIOD)).max(1), max_tokens: 8, verbose: false }
    }
}

/// MLX's allocator at one moment, after clearing its cache.
#[derive(Clone, Copy, Debug)]
pub struct MlxMemory {
    pub active: usize,
    pub cache: usize,
    pub peak: usize,
}

impl MlxMemory {
    /// Clears MLX's buffer cache first, so that `active` counts live arrays only.
    pub fn now() -> MlxMemory {
        memory::clear_cache();
        MlxMemory { active: memory::active_memory(), cache: memory::cache_memory(), peak: memory::peak_memory() }
    }
}

#[derive(Clone, Debug)]
pub struct Phase {
    pub name: String,
    pub memory: MlxMemory,
}

#[derive(Clone, Debug)]
pub struct SoakReport {
    pub calls: usize,
    pub load_cycles: usize,
    pub elapsed: Duration,
    /// MLX memory before any model was loaded, and after each phase.
    pub baseline: MlxMemory,
    pub phases: Vec<Phase>,
    /// (calls done, resident bytes).
    pub rss: Vec<(usize, usize)>,
    /// Least-squares slope of RSS over the last 80% of the samples, bytes per 1000 calls.
    pub rss_slope_per_1000: f64,
    /// RSS at the end less RSS at the start of the last 80%, bytes.
    pub rss_growth: f64,
    /// Calls in the last 80%.
    pub measured_calls: usize,
}

impl SoakReport {
    /// Active memory once every model is freed, minus the baseline (signed).
    pub fn active_after_free(&self) -> i64 {
        let last = self.phases.last().map(|p| p.memory.active).unwrap_or(self.baseline.active);
        last as i64 - self.baseline.active as i64
    }

    /// The bounds' verdict: every failed bound, described; empty when all hold.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let d = self.active_after_free();
        if d.unsigned_abs() as usize > ACTIVE_SLACK_BYTES {
            out.push(format!(
                "MLX active memory after freeing every model is {} bytes, baseline {} ({d:+} bytes; bound ±{ACTIVE_SLACK_BYTES})",
                self.phases.last().map(|p| p.memory.active).unwrap_or(0),
                self.baseline.active
            ));
        }
        if self.rss_growth > self.rss_bound() {
            out.push(format!(
                "resident memory grew {:.0} bytes over the last {} calls ({:.0} per 1000; bound {:.0}: {:.0} per 1000 calls plus {:.0} once)",
                self.rss_growth, self.measured_calls, self.rss_slope_per_1000, self.rss_bound(), RSS_SLOPE_BOUND_BYTES_PER_1000, RSS_STEP_ALLOWANCE_BYTES
            ));
        }
        out
    }

    /// The most the resident set may grow over the last 80% of the calls.
    pub fn rss_bound(&self) -> f64 {
        RSS_SLOPE_BOUND_BYTES_PER_1000 * self.measured_calls as f64 / 1000.0 + RSS_STEP_ALLOWANCE_BYTES
    }

    pub fn print(&self) {
        let mb = |b: usize| b as f64 / 1e6;
        println!(
            "soak: {} calls, {} load/free cycles in {:.1} s ({:.1} ms/call)",
            self.calls,
            self.load_cycles,
            self.elapsed.as_secs_f64(),
            self.elapsed.as_secs_f64() * 1e3 / self.calls.max(1) as f64
        );
        println!("MLX memory (cache cleared before each reading), bytes:");
        println!("  {:<28} active {:>12} cache {:>10} peak {:>12}", "baseline", self.baseline.active, self.baseline.cache, self.baseline.peak);
        for p in &self.phases {
            println!("  {:<28} active {:>12} cache {:>10} peak {:>12}", p.name, p.memory.active, p.memory.cache, p.memory.peak);
        }
        println!("process RSS (MB) by calls done:");
        for chunk in self.rss.chunks(10) {
            let line: Vec<String> = chunk.iter().map(|(c, r)| format!("{c}:{:.1}", mb(*r))).collect();
            println!("  {}", line.join("  "));
        }
        println!(
            "RSS over the last 80% ({} calls): {:+.1} MB, slope {:+.3} MB per 1000 calls (bound {:.1} MB); active memory after free: {:+} bytes (bound ±{})",
            self.measured_calls,
            self.rss_growth / 1e6,
            self.rss_slope_per_1000 / 1e6,
            self.rss_bound() / 1e6,
            self.active_after_free(),
            ACTIVE_SLACK_BYTES
        );
        let v = self.violations();
        if v.is_empty() {
            println!("verdict: PASS");
        } else {
            println!("verdict: FAIL");
            for line in v {
                println!("  {line}");
            }
        }
    }
}

/// The process's resident set in bytes after handing the C heap's free pages back to the
/// system (glibc's `malloc_trim`). Untrimmed, the resident set grows in steps of 10–20 MB
/// during the first few hundred calls and then stays flat (measured: 479 → 512 MB by call
/// 240 in a debug run, 409 → 437 MB by call 400 in a release run, flat to call 900): freed
/// chunks of loads' tokenizers and of threads' arenas that the heap keeps, not live memory.
/// Trimmed, what remains is what the process holds, so a leak shows from the first calls.
pub fn rss_bytes() -> usize {
    // MLX's buffer cache (up to its cache limit) is freed memory too.
    memory::clear_cache();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    untrimmed_rss_bytes()
}

/// The process's resident set in bytes, from /proc/self/statm (its second field, in pages).
pub fn untrimmed_rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * page_size()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// The process's threads, from /proc/self/status.
pub fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Least-squares slope of `y` over `x`.
pub fn slope(points: &[(usize, usize)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(x, y) in points {
        num += (x as f64 - mx) * (y as f64 - my);
        den += (x as f64 - mx) * (x as f64 - mx);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/fixtures").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup.sh (or scripts/test.sh)", p.display());
    p
}

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "Once upon a time",
    "def fibonacci(n):",
    "Ünïcödé and emoji 🙂 in a prompt",
];

/// One call of the rotation on `m` (and its chat session); returns how many calls it made.
fn one_call(i: usize, m: &mut Model, session: &mut ChatSession, params: &GenerateParams) {
    let prompt = PROMPTS[i % PROMPTS.len()];
    match i % 4 {
        0 => {
            m.generate(prompt, params, |_| true).expect("generate");
        }
        1 => {
            m.chat(&[Message::user(prompt)], &ChatOptions::default(), params, |_| true).expect("chat");
        }
        2 => {
            let results = m.classify(&PROMPTS, params, &BatchParams::default()).expect("classify");
            assert!(results.iter().all(|r| r.is_ok()), "classify rows failed: {results:?}");
        }
        _ => {
            // A session turn; every fourth turn starts the conversation again, so its KV
            // cache grows and is dropped as a service's sessions are.
            if session.messages().len() >= 6 {
                session.reset();
            }
            session.send(m, Message::user(prompt), params, |_| true).expect("session turn");
        }
    }
}

/// Runs the workload and measures it.
pub fn run(cfg: &SoakConfig) -> SoakReport {
    let start = Instant::now();
    let baseline = MlxMemory::now();
    let mut phases = Vec::new();
    let phase = |name: &str, phases: &mut Vec<Phase>, verbose: bool| {
        let p = Phase { name: name.to_string(), memory: MlxMemory::now() };
        if verbose {
            println!("  {:<28} active {} bytes, RSS {:.1} MB", p.name, p.memory.active, rss_bytes() as f64 / 1e6);
        }
        phases.push(p);
    };

    let mut models: Vec<Model> = RESIDENT.iter().map(|f| Model::load(fixture(f), &LoadOptions::default()).expect("load")).collect();
    let mut sessions: Vec<ChatSession> =
        models.iter_mut().map(|m| ChatSession::new(m, ChatOptions::default()).expect("session")).collect();
    phase("resident models loaded", &mut phases, cfg.verbose);

    let params = GenerateParams { max_tokens: cfg.max_tokens, ..GenerateParams::default() };
    let mut rss = vec![(0, rss_bytes())];
    let mut load_cycles = 0;
    for i in 0..cfg.calls {
        let k = i % models.len();
        one_call(i / models.len(), &mut models[k], &mut sessions[k], &params);
        if cfg.load_every > 0 && (i + 1) % cfg.load_every == 0 {
            let mut m = Model::load(fixture(CYCLED), &LoadOptions::default()).expect("load cycled model");
            m.generate(PROMPTS[0], &params, |_| true).expect("generate on cycled model");
            drop(m);
            load_cycles += 1;
        }
        if (i + 1) % cfg.sample_every == 0 {
            rss.push((i + 1, rss_bytes()));
            if cfg.verbose {
                println!(
                    "  {:>6} calls: RSS {:.1} MB, MLX active {} bytes, {} threads",
                    i + 1,
                    rss_bytes() as f64 / 1e6,
                    memory::active_memory(),
                    thread_count()
                );
            }
        }
    }
    phase("after the calls", &mut phases, cfg.verbose);
    drop(sessions);
    phase("sessions dropped", &mut phases, cfg.verbose);
    drop(models);
    phase("every model freed", &mut phases, cfg.verbose);

    // The first 20% of the calls warm the process up (heap arenas, thread buffers, caches
    // filled once); growth after that is what a long-running service would keep seeing.
    let measured: Vec<(usize, usize)> = rss.iter().copied().filter(|&(c, _)| c >= cfg.calls / 5).collect();
    let rss_slope_per_1000 = slope(&measured) * 1000.0;
    let (first, last) = (measured.first().copied().unwrap_or_default(), measured.last().copied().unwrap_or_default());
    let rss_growth = last.1 as f64 - first.1 as f64;
    let measured_calls = last.0 - first.0;
    SoakReport { calls: cfg.calls, load_cycles, elapsed: start.elapsed(), baseline, phases, rss, rss_slope_per_1000, rss_growth, measured_calls }
}
