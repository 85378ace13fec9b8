//! Soak run: thousands of generate / chat / classify / chat-session calls and load/free
//! cycles in one process, printing MLX's active, cache and peak memory after each phase,
//! the process's resident memory as it goes, and a verdict against the bounds stated in
//! `benches/common/soak.rs` (exit status 1 when a bound fails).
//!
//! `cargo bench --bench soak -- [--calls N] [--load-every N] [--max-tokens N] [--quiet]`
//! (default 5000 calls, a load/free cycle every 50; 2000 calls took 8 min on the
//! project's 2-core x86-64 machine, 240 ms a call, so 5000 take about 20 min).
#[path = "common/soak.rs"]
mod soak;

fn main() {
    let mut cfg = soak::SoakConfig::with_calls(5000);
    cfg.verbose = true;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> usize {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{what} needs a number");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--calls" => {
                cfg.calls = num("--calls");
                cfg.sample_every = soak::SoakConfig::with_calls(cfg.calls).sample_every;
            }
            "--load-every" => cfg.load_every = num("--load-every"),
            "--max-tokens" => cfg.max_tokens = num("--max-tokens"),
            "--quiet" => cfg.verbose = false,
            "--bench" => {} // cargo bench passes it
            other => {
                eprintln!("unknown argument {other}; see the comment at the top of benches/soak.rs");
                std::process::exit(2)
            }
        }
    }
    let report = soak::run(&cfg);
    report.print();
    if !report.violations().is_empty() {
        std::process::exit(1);
    }
}
