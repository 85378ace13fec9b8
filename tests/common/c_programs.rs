//! Building C programs against the installed library: what tests/c_api.rs and
//! tests/clean_exit.rs share.
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd` to completion and returns its standard output; panics with both outputs when
/// it fails.
pub fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The library installed with its header under `work/prefix` (`cargo test` builds only the
/// rlib, so the shared and static libraries are built first), ready to compile against.
pub struct Installed {
    root: PathBuf,
    flags: String,
}

impl Installed {
    pub fn new(root: &Path, work: &Path) -> Installed {
        run(Command::new(env!("CARGO")).current_dir(root).args(["build", "--lib", "--quiet"]), "cargo build --lib");
        let prefix = work.join("prefix");
        run(
            Command::new("bash").arg(root.join("scripts/install.sh")).arg(&prefix).args(["--profile", "debug", "--no-build"]),
            "install.sh",
        );
        let flags = run(
            Command::new("pkg-config").env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")).args(["--cflags", "--libs", "mlxrun"]),
            "pkg-config",
        );
        Installed { root: root.to_path_buf(), flags }
    }

    /// Compiles `src` (relative to the repository) into `exe`, warnings as errors.
    pub fn compile(&self, src: &str, exe: &Path) {
        run(
            Command::new("cc")
                .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_POSIX_C_SOURCE=200809L", "-g"])
                .arg(self.root.join(src))
                .args(self.flags.split_whitespace())
                .args(["-lpthread", "-lm", "-o"])
                .arg(exe),
            &format!("compiling {src}"),
        );
    }
}
