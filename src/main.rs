//! The `mlxrun` command-line program; see `mlxrun --help`.
use std::io::Write;

fn main() {
    // Usage and runtime errors are printed there, as `mlxrun: ...`, with status 1.
    let code = mlxrun::cli::main(std::env::args_os());
    // Flush what was written, then leave without the C exit handlers (see exit_now).
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    mlxrun::mlx::exit_now(code)
}
