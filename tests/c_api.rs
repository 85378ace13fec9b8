//! The C API from C: installs the library and header under target/, compiles the C tests
//! and examples with -Wall -Wextra -Werror through pkg-config, runs them, and checks that
//! greedy output through the C API equals the Rust API's and that SmolLM2, asked "What is
//! the capital of France?" by examples/c/chat.c, answers Paris. With valgrind on the machine, the C tests
//! also run under memcheck (no invalid access, no leak attributable to the library).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::c_programs::{run, Installed};

const PROMPT: &str = "The capital of France is";

/// Installs the library and header under target/ and compiles the C test and examples.
fn build_c_test(root: &Path, work: &Path) -> (Installed, PathBuf) {
    let installed = Installed::new(root, work);
    // The examples must keep compiling cleanly too.
    installed.compile("examples/c/generate.c", &work.join("generate_example"));
    installed.compile("examples/c/chat.c", &work.join("chat_example"));
    installed.compile("examples/c/train.c", &work.join("train_example"));
    installed.compile("tests/c/bad_inputs_test.c", &work.join("bad_inputs_test"));
    let exe = work.join("capi_test");
    installed.compile("tests/c/capi_test.c", &exe);
    (installed, exe)
}

/// A copy of the fixture whose weights are truncated.
fn corrupt_copy(src: &Path, dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    let w = dst.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() * 2 / 3]).unwrap();
}

/// The installed library, the compiled C programs, the fixture and its corrupt copy: made
/// once for both tests of this file (which cargo runs side by side).
struct Setup {
    installed: Installed,
    root: PathBuf,
    work: PathBuf,
    exe: PathBuf,
    fixture: PathBuf,
    corrupt: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: std::sync::OnceLock<Setup> = std::sync::OnceLock::new();
    SETUP.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
        let work = root.join("target/c-api-test");
        std::fs::create_dir_all(&work).unwrap();
        let (installed, exe) = build_c_test(&root, &work);
        let fixture = common::deps_file("fixtures/qwen3");
        let corrupt = work.join("corrupt-model");
        corrupt_copy(&fixture, &corrupt);
        Setup { installed, root, work, exe, fixture, corrupt }
    })
}

#[test]
fn c_programs_use_the_installed_library() {
    let Setup { root, work, exe, fixture, corrupt, .. } = setup();
    let (root, work, exe, fixture, corrupt) = (root.as_path(), work.as_path(), exe.as_path(), fixture.as_path(), corrupt.as_path());

    let example = run(Command::new(work.join("generate_example")).arg(&fixture).arg(PROMPT).arg("8"), "the C example");
    assert!(!example.is_empty(), "the example streamed no text");

    // A real model through the C API in C: SmolLM2's GGUF file, its chat template, and
    // the example exits 0 only when the answer contains "Paris".
    let smollm2 = common::deps_file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let answer = run(
        Command::new(work.join("chat_example")).arg(&smollm2).arg("What is the capital of France?").arg("Paris"),
        "the C chat example",
    );
    assert!(answer.contains("Paris"), "{answer}");

    // A LoRA run from C on the masked prompt/completion data: each report printed, the
    // adapter written, then loaded with the model and used.
    let data = root.join("tests/data/lora/completions");
    let adapter_dir = work.join("train-example-adapter");
    let _ = std::fs::remove_dir_all(&adapter_dir);
    let trained = run(
        Command::new(work.join("train_example")).arg(&fixture).arg(&data).arg(&adapter_dir).arg("6").arg("What colour is the sky on Zorbia?"),
        "the C training example",
    );
    assert!(trained.contains("step 6: train loss") && trained.contains("6 reports"), "{trained}");
    assert!(adapter_dir.join("adapters.safetensors").is_file() && adapter_dir.join("adapter_config.json").is_file());

    let capi_adapter = work.join("capi-test-adapter");
    let _ = std::fs::remove_dir_all(&capi_adapter);
    let out = run(
        Command::new(&exe).arg(&fixture).arg(&corrupt).arg(&data).arg(&capi_adapter).env("MLXRUN_TEST_VENV", common::deps_file("venv")),
        "capi_test",
    );
    // scripts/test.sh counts the C checks from this copy ("PASSED <n>").
    std::fs::write(work.join("capi_test.out"), &out).unwrap();
    assert!(out.lines().any(|l| l.starts_with("PASSED")), "{out}");
    let c_ids: Vec<u32> = out
        .lines()
        .find_map(|l| l.strip_prefix("GREEDY"))
        .expect("GREEDY line")
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();

    let mut model = mlxrun::Model::load(&fixture, &mlxrun::LoadOptions::default()).unwrap();
    let rust = model.generate(PROMPT, &mlxrun::GenerateParams { max_tokens: 24, ..Default::default() }, |_| true).unwrap();
    assert_eq!(c_ids, rust.tokens, "greedy tokens through the C API equal the Rust API's");
}

/// NULL handles and out-pointers at every entry point, struct sizes 0, too small and
/// newer than the library, invalid UTF-8, out-of-range sampler values: an error status
/// naming the problem each time, and the model handle keeps working
/// (tests/c/bad_inputs_test.c; docs/reliability.md lists them).
#[test]
fn c_bad_inputs_are_errors_not_crashes() {
    let Setup { work, fixture, .. } = setup();
    let out = run(Command::new(work.join("bad_inputs_test")).arg(fixture), "bad_inputs_test");
    // scripts/test.sh counts these checks too.
    std::fs::write(work.join("bad_inputs_test.out"), &out).unwrap();
    assert!(out.lines().any(|l| l.starts_with("PASSED")), "{out}");
}

/// Memcheck on the C tests (without the training checks, minutes under it): invalid
/// reads/writes are errors; leaks "definitely lost" in frames of the
/// library are errors. MLX's own process-lifetime allocations (thread pools, the
/// allocator) are "still reachable" and not counted. Its own test, so that scripts/test.sh
/// can run it (single-threaded, minutes) beside the Go and Swift suites.
#[test]
fn c_tests_pass_memcheck() {
    let Setup { work, exe, fixture, corrupt, .. } = setup();
    if Command::new("valgrind").arg("--version").output().is_ok() && std::env::var("MLXRUN_SKIP_VALGRIND").is_err() {
        let log = work.join("valgrind.log");
        let status = Command::new("valgrind")
            .args(["--tool=memcheck", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite"])
            .arg(format!("--log-file={}", log.display()))
            // The mlx_lm backend's worker is a Python process, not checked (not the library).
            .env("MLXRUN_TEST_VENV", common::deps_file("venv"))
            .arg(&exe)
            .arg(&fixture)
            .arg(&corrupt)
            .output()
            .unwrap();
        let report = std::fs::read_to_string(&log).unwrap_or_default();
        // Exit status 1 is a failed check of the program (its own output says which),
        // 99 an error valgrind found.
        assert!(
            status.status.success(),
            "under valgrind ({}): the program's output:\n{}\n{}\nvalgrind's report:\n{}",
            status.status,
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr),
            report
        );
        println!("{}", report.lines().filter(|l| l.contains("ERROR SUMMARY") || l.contains("definitely lost")).collect::<Vec<_>>().join("\n"));
    } else {
        println!("memcheck skipped: valgrind is not installed, or MLXRUN_SKIP_VALGRIND is set");
    }
}

/// tests/c/concurrency_test.c: threads generating on one model and on two at once with
/// `mlxrun_cancel` racing them and a third model loaded and freed beside them (greedy
/// output equal to a serial run's, cancelled output a prefix of it, no deadlock within its
/// SIGALRM deadline), then a load refused by the memory limit. Run as built, then built
/// with AddressSanitizer: the program and its use of the library's memory are
/// instrumented, the library and MLX are not (ThreadSanitizer would need MLX and the Rust
/// library instrumented too; see docs/reliability.md). Leak detection is off under ASan:
/// MLX's process-lifetime allocations are not freed at exit (the memcheck test counts
/// leaks instead).
#[test]
fn c_threads_share_and_cancel_models_also_under_asan() {
    let Setup { installed, work, .. } = setup();
    let models: Vec<PathBuf> = ["qwen3", "gemma3", "llama-linear"].iter().map(|f| common::deps_file(&format!("fixtures/{f}"))).collect();
    let plain = work.join("concurrency_test");
    installed.compile("tests/c/concurrency_test.c", &plain);
    let t = std::time::Instant::now();
    let out = run(Command::new(&plain).args(&models), "concurrency_test");
    println!("{}plain build: {:.1} s", out, t.elapsed().as_secs_f64());
    assert!(out.lines().any(|l| l.starts_with("PASSED")), "{out}");

    let asan = work.join("concurrency_test_asan");
    installed.compile_with("tests/c/concurrency_test.c", &asan, &["-fsanitize=address", "-fno-omit-frame-pointer"]);
    let t = std::time::Instant::now();
    let out = run(Command::new(&asan).args(&models).env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0:halt_on_error=1"), "concurrency_test under ASan");
    println!("{}AddressSanitizer build: {:.1} s", out, t.elapsed().as_secs_f64());
    assert!(out.lines().any(|l| l.starts_with("PASSED")), "{out}");
}
