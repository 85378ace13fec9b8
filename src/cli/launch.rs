//! `mlxrun launch`: starts the ranks of a distributed run on this machine, each a copy of
//! this program running the given command with `--distributed`, joined by MLX's ring
//! backend over 127.0.0.1. Across machines MLX's own launcher (`mlx.launch`) does the same
//! over ssh; docs/distributed.md shows both.
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// How many ranks to start
    #[arg(short = 'n', long, value_name = "N", default_value_t = 2)]
    pub ranks: usize,

    /// After a rank fails, how many seconds the others get to end on their own (they see the
    /// lost peer and fail too) before they are killed
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub grace: f64,

    /// The mlxrun command each rank runs (generate, chat, bench ...), after `--`
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A ring hostfile for `n` ranks on 127.0.0.1, each on a port free when this runs.
pub fn local_hostfile(n: usize) -> Result<String> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::Io(format!("finding free ports on 127.0.0.1: {e}")))?;
    let hosts: Vec<Vec<String>> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| vec![format!("127.0.0.1:{}", a.port())]))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::Io(format!("finding free ports on 127.0.0.1: {e}")))?;
    Ok(serde_json::to_string(&hosts).expect("a list of strings serializes"))
}

pub fn run(args: LaunchArgs) -> Result<()> {
    if args.ranks < 1 {
        return Err(Error::invalid("launch needs -n of at least 1"));
    }
    if !(args.grace.is_finite() && args.grace >= 0.0) {
        return Err(Error::invalid(format!("--grace must be a number of seconds >= 0, got {}", args.grace)));
    }
    let exe = std::env::current_exe().map_err(|e| Error::Io(format!("finding this program: {e}")))?;
    let hostfile = std::env::temp_dir().join(format!("mlxrun-hosts-{}.json", std::process::id()));
    std::fs::write(&hostfile, local_hostfile(args.ranks)?).map_err(|e| Error::Io(format!("{}: {e}", hostfile.display())))?;
    // The ranks share this machine's cores: left to itself each one's OpenBLAS would start a
    // thread per core, and together they would oversubscribe them.
    let blas_threads = std::env::var_os("OPENBLAS_NUM_THREADS").is_none().then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / args.ranks).max(1).to_string()
    });
    let mut children: Vec<Child> = Vec::new();
    let mut printers = Vec::new();
    for rank in 0..args.ranks {
        let mut cmd = Command::new(&exe);
        cmd.args(&args.command).arg("--distributed").env("MLX_RANK", rank.to_string()).env("MLX_HOSTFILE", &hostfile);
        if let Some(n) = &blas_threads {
            cmd.env("OPENBLAS_NUM_THREADS", n);
        }
        if rank == 0 {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        } else {
            // Rank 0 alone reads stdin (a chat shares each line with the others).
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                kill_all(&mut children);
                return Err(Error::Io(format!("starting rank {rank} ({}): {e}", exe.display())));
            }
        };
        if let Some(err) = child.stderr.take() {
            printers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    let _ = writeln!(std::io::stderr().lock(), "[rank {rank}] {line}");
                }
            }));
        }
        children.push(child);
    }
    let result = wait_all(&mut children, Duration::from_secs_f64(args.grace));
    for p in printers {
        let _ = p.join();
    }
    let _ = std::fs::remove_file(&hostfile);
    result
}

/// Waits for every rank; once one has failed the others get `grace` to end, then are killed.
fn wait_all(children: &mut [Child], grace: Duration) -> Result<()> {
    let mut status: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
    let mut failed_at: Option<(usize, Instant)> = None;
    loop {
        for (r, c) in children.iter_mut().enumerate() {
            if status[r].is_none() {
                if let Ok(Some(s)) = c.try_wait() {
                    status[r] = Some(s);
                    if !s.success() && failed_at.is_none() {
                        failed_at = Some((r, Instant::now()));
                    }
                }
            }
        }
        if status.iter().all(Option::is_some) {
            break;
        }
        if let Some((_, at)) = failed_at {
            if at.elapsed() > grace {
                kill_all(children);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failed_at {
        Some((r, _)) => Err(Error::Backend(format!(
            "rank {r} of {} failed ({})",
            children.len(),
            status[r].map_or("no status".to_string(), |s| s.to_string())
        ))),
        None => Ok(()),
    }
}

fn kill_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
    }
}
