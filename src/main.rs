//! The `mlxrun` command-line program; see `mlxrun --help`.
use std::process::ExitCode;

fn main() -> ExitCode {
    match mlxrun::cli::run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlxrun: {e}");
            ExitCode::FAILURE
        }
    }
}
