//! `mlxrun completions SHELL`: a completion script for the shell, printed to stdout.
use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut super::Cli::command(), "mlxrun", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).and_then(|_| out.flush()).map_err(|e| Error::Io(format!("stdout: {e}")))
}
