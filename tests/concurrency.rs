//! Many threads on one model and on several models at once, with cancels and frees racing
//! them: no crash, no deadlock (every scenario runs under a timeout), and greedy output
//! identical to a serial run's. A model is `Send` (its arrays may be used and freed on any
//! thread; MLX gives each thread its own default stream) but not `Sync`: callers share it
//! behind a lock, as the C API does with a mutex per model handle. Its canceller is `Sync`
//! and works from any thread without the lock.
mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mlxrun::engine::{BatchParams, FinishReason, GenerateParams, Model};
use mlxrun::LoadOptions;

const FIXTURES: [&str; 3] = ["qwen3", "gemma3", "llama3"];
const PROMPTS: [&str; 4] = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "Ünïcödé 🙂"];

fn load(fixture: &str) -> Model {
    Model::load(common::deps_file(&format!("fixtures/{fixture}")), &LoadOptions::default()).unwrap()
}

fn params(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, ignore_eos: true, ..GenerateParams::default() }
}

/// Runs `f` on its own thread and fails the test if it has not finished within `limit`
/// (a deadlock), re-raising its panic otherwise.
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish within {limit:?}: a deadlock"),
    }
}

/// Greedy tokens of every prompt on every fixture, computed serially on this thread.
fn serial_reference(max_tokens: usize) -> HashMap<(&'static str, &'static str), Vec<u32>> {
    let mut out = HashMap::new();
    for f in FIXTURES {
        let mut m = load(f);
        for p in PROMPTS {
            out.insert((f, p), m.generate(p, &params(max_tokens), |_| true).unwrap().tokens);
        }
    }
    out
}

#[test]
fn threads_on_one_model_and_on_several_models_match_serial_runs() {
    let reference = Arc::new(serial_reference(12));
    within(Duration::from_secs(240), "threads generating", move || {
        // Models are loaded concurrently too.
        let loaders: Vec<_> = FIXTURES.iter().map(|&f| thread::spawn(move || (f, Arc::new(Mutex::new(load(f)))))).collect();
        let models: Vec<(&str, Arc<Mutex<Model>>)> = loaders.into_iter().map(|h| h.join().unwrap()).collect();
        let models = Arc::new(models);
        // Eight threads: the first four all on one model, the others across all three.
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let (models, reference) = (models.clone(), reference.clone());
                thread::spawn(move || {
                    for i in 0..4 {
                        let (fixture, model) = &models[if t < 4 { 0 } else { (t + i) % models.len() }];
                        let prompt = PROMPTS[(t * 7 + i) % PROMPTS.len()];
                        let mut m = model.lock().unwrap();
                        if i % 4 == 3 {
                            // A batch call between generations: its first token is the
                            // generation's first token.
                            let r = m.classify(&PROMPTS, &params(1), &BatchParams::default()).unwrap();
                            for (p, c) in PROMPTS.iter().zip(r) {
                                assert_eq!(c.unwrap().token, reference[&(*fixture, *p)][0], "{fixture} classify {p:?} on thread {t}");
                            }
                        } else {
                            let g = m.generate(prompt, &params(12), |_| true).unwrap();
                            assert_eq!(g.tokens, reference[&(*fixture, prompt)], "{fixture} {prompt:?} on thread {t}");
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
}

#[test]
fn cancels_and_frees_racing_generations_leave_prefixes_of_the_serial_output() {
    let reference = Arc::new(serial_reference(32));
    within(Duration::from_secs(240), "generations with cancels and frees racing", move || {
        let models: Vec<(&str, Arc<Mutex<Model>>)> = FIXTURES[..2].iter().map(|&f| (f, Arc::new(Mutex::new(load(f))))).collect();
        let canceller_of_second = models[1].1.lock().unwrap().canceller();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (mut cancelled, mut completed) = (0, 0);
        let mut threads = Vec::new();
        for t in 0..4 {
            let (fixture, model) = (models[t % 2].0, models[t % 2].1.clone());
            let reference = reference.clone();
            threads.push(thread::spawn(move || {
                let mut seen = (0, 0);
                for i in 0..5 {
                    let prompt = PROMPTS[(t + i) % PROMPTS.len()];
                    let g = model.lock().unwrap().generate(prompt, &params(32), |_| true).unwrap();
                    let want = &reference[&(fixture, prompt)];
                    assert_eq!(g.tokens[..], want[..g.tokens.len()], "{fixture} {prompt:?} on thread {t}: a prefix of the serial tokens");
                    match g.finish_reason {
                        FinishReason::Cancelled if t % 2 == 1 => seen.0 += 1,
                        FinishReason::Length => {
                            assert_eq!(&g.tokens, want);
                            seen.1 += 1
                        }
                        other => panic!("unexpected finish {other:?}"),
                    }
                }
                // This thread's handle goes; the last one frees the model, on whichever
                // thread that happens to be.
                drop(model);
                seen
            }));
        }
        // Cancels at staggered intervals, from a thread that never takes the lock.
        let canceller = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(5 + (n * 7) % 41));
                    // Only the second model: the first one's generations must all
                    // run to their length.
                    canceller_of_second.cancel();
                    n += 1;
                }
            })
        };
        // Loads and frees of a third model while the others generate.
        let cycler = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut cycles = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || cycles == 0 {
                    let mut m = load("llama-linear");
                    m.generate("Hello", &params(4), |_| true).unwrap();
                    drop(m);
                    cycles += 1;
                }
                cycles
            })
        };
        drop(models); // the workers now hold the only handles
        for t in threads {
            let (c, l) = t.join().unwrap();
            cancelled += c;
            completed += l;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        canceller.join().unwrap();
        let cycles = cycler.join().unwrap();
        println!("20 generations: {cancelled} cancelled, {completed} ran to length; {cycles} load/free cycles beside them");
        assert!(cancelled > 0, "some generations on the second model were cancelled");
        assert!(completed >= 10, "every generation on the first model ran to its length");
    });
}
