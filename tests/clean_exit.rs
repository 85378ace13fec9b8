//! A program that uses the library exits promptly, run after run: tests/c/exit_after_generate.c,
//! compiled against the installed library, loads the qwen3 fixture, generates and leaves
//! again and again, each run under a timeout, with two OpenBLAS threads (OpenBLAS's exit
//! handler joins its worker threads; with work still in flight it used to wait forever in
//! about one exit in twelve, see src/shim/exit_guard.cpp). `scripts/exit_loop.sh 500` is the
//! long version of the same loop.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::c_programs::Installed;
use mlxrun::mlx::{eval, Array, Dtype};

/// Far above a run's few seconds on a busy two-core machine; a hung exit never ends.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn program() -> &'static PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let work = root.join("target/clean-exit-test");
        std::fs::create_dir_all(&work).unwrap();
        let exe = work.join("exit_after_generate");
        Installed::new(root, &work).compile("tests/c/exit_after_generate.c", &exe);
        exe
    })
}

/// Runs the program in `mode` once; panics naming the run when it hangs, fails or prints
/// something else than `expect`.
fn run_once(run: usize, mode: &str, expect: &str) {
    let fixture = common::deps_file("fixtures/qwen3");
    let mut cmd = Command::new(program());
    cmd.arg(&fixture)
        .arg(mode)
        // The race needs an OpenBLAS worker thread; scripts/test.sh sets one thread for
        // bit-exact references, so the count is set here.
        .env("OPENBLAS_NUM_THREADS", "2");
    exits_cleanly(cmd, &format!("run {run} ({mode})"), expect);
}

/// Starts `cmd` and waits for it under the timeout; panics naming `what` when it hangs,
/// fails or prints something else than `expect`.
fn exits_cleanly(mut cmd: Command, what: &str, expect: &str) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting the program");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} had not exited after {RUN_TIMEOUT:?}: a hang at exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success() && stdout.contains(expect),
        "{what} exited with {status}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Load, generate, return from main: 10 runs, freeing the model first, never, or in an
/// exit handler that runs after the library's own.
#[test]
fn returning_from_main_after_generating_exits() {
    for run in 0..10 {
        match run % 3 {
            0 => run_once(run, "free", "8 tokens"),
            1 => run_once(run, "keep", "8 tokens"),
            _ => run_once(run, "atexit", "freed at exit"),
        }
    }
}

/// Return from main while a second thread is still generating, so that MLX's stream
/// thread is inside OpenBLAS when the exit handlers start: 40 runs. Before the exit guard
/// this hung in 5 of 60 runs and crashed in 2.
#[test]
fn exiting_while_another_thread_generates_exits() {
    for run in 0..40 {
        run_once(run, "busy", "leaving while generating");
    }
}

/// The same race from the inside: a thread builds, evaluates and frees arrays without end
/// (most of its time between evaluations, in op building and frees) while the main thread
/// calls `exit`. The exit handler then stops that thread wherever it next calls into MLX,
/// before MLX's static objects (its scheduler, its allocator) are destroyed under it: 20
/// runs of this test's own executable, each in its child mode.
#[test]
fn exiting_while_another_thread_frees_arrays_exits() {
    if std::env::var_os(CHILD).is_some() {
        return free_arrays_until_exit();
    }
    let exe = std::env::current_exe().unwrap();
    for run in 0..20 {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", "exiting_while_another_thread_frees_arrays_exits", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1");
        exits_cleanly(cmd, &format!("run {run}"), "leaving while freeing");
    }
}

const CHILD: &str = "MLXRUN_CLEAN_EXIT_CHILD";

fn free_arrays_until_exit() {
    let (started, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = true;
        loop {
            // 256 small arrays evaluated at once, then built on and freed one by one: the
            // frees return buffers to MLX's allocator while the process may be exiting.
            let arrays: Vec<Array> =
                (0..256).map(|i| Array::full(&[256], f64::from(i), Dtype::F32).unwrap()).collect();
            eval(&arrays.iter().collect::<Vec<_>>()).unwrap();
            if first {
                started.send(()).unwrap();
                first = false;
            }
            for a in arrays {
                let _ = a.add_scalar(1.0).unwrap().mul(&a).unwrap();
            }
        }
    });
    ready.recv().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    println!("leaving while freeing");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::exit(0);
}
