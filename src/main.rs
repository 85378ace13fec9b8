//! The `mlxrun` command-line program; see `mlxrun --help`.
use std::io::Write;

fn main() {
    // Usage and runtime errors are printed there, as `mlxrun: ...`, with status 1.
    let code = mlxrun::cli::main(std::env::args_os());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // An ordinary exit, with the C exit handlers: the library's own handler waits for MLX
    // work still in flight before OpenBLAS joins its threads (src/shim/exit_guard.cpp).
    // A rank whose group failed may hold an MLX stream thread waiting for good on a peer
    // that is gone; the ordinary exit would wait for it.
    mlxrun::mlx::distributed::exit_if_group_failed(code);
    std::process::exit(code)
}
