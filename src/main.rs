//! The `mlxrun` command-line program; see `mlxrun --help`.
use std::io::Write;

fn main() {
    let code = match mlxrun::cli::run(std::env::args().skip(1).collect()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mlxrun: {e}");
            1
        }
    };
    // Flush what was written, then leave without the C exit handlers (see exit_now).
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    mlxrun::mlx::exit_now(code)
}
