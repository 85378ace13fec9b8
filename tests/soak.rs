//! A CI-sized soak (`benches/soak.rs` is the long one): a few hundred generate / chat /
//! classify / chat-session calls and load/free cycles in one process must leave MLX's
//! active memory at its baseline once every model is freed, and the resident set must not
//! keep growing (bounds and their reasons in `benches/common/soak.rs`).
#[path = "../benches/common/soak.rs"]
mod soak;

#[test]
fn calls_and_load_cycles_leak_nothing() {
    // MLXRUN_SOAK_CALLS shortens the run, e.g. to run it under valgrind's memcheck.
    let calls = std::env::var("MLXRUN_SOAK_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(12 * soak::PERIOD);
    let mut cfg = soak::SoakConfig::with_calls(calls);
    cfg.load_every = soak::PERIOD.min(calls / 2).max(1);
    cfg.sample_every = soak::PERIOD;
    cfg.verbose = std::env::var_os("MLXRUN_SOAK_VERBOSE").is_some();
    let report = soak::run(&cfg);
    report.print();
    let v = report.violations();
    assert!(v.is_empty(), "soak bounds failed:\n{}", v.join("\n"));
}
