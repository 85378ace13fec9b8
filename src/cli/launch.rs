//! `mlxrun launch`: starts the ranks of a distributed run on this machine, each a copy of
//! this program running the given command with `--distributed`, joined by MLX's ring
//! backend over 127.0.0.1, or with `--backend nccl` by NCCL, one GPU per rank. Across
//! machines MLX's own launcher (`mlx.launch`) does the same over ssh; docs/distributed.md
//! shows both.
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

    /// How the ranks talk: ring (TCP on 127.0.0.1, any build) or nccl (NVIDIA GPUs, one per
    /// rank, MLX's CUDA build)
    #[arg(long, value_name = "NAME", default_value = "ring", value_parser = ["ring", "nccl"])]
    pub backend: String,

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

/// A port on 127.0.0.1 that was free when this ran.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Io(format!("finding a free port on 127.0.0.1: {e}")))
}

/// The GPUs the ranks of an NCCL run take, one each, in rank order: the entries of
/// `CUDA_VISIBLE_DEVICES` when the caller narrowed them (`visible`), else the first `ranks`
/// of the `count` the machine has. Fewer GPUs than ranks is an error: NCCL cannot put two
/// ranks of one group on one GPU.
pub fn gpus_for_ranks(ranks: usize, visible: Option<&str>, count: usize) -> Result<Vec<String>> {
    let gpus: Vec<String> = match visible {
        Some(v) => v.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect(),
        None => (0..count).map(|g| g.to_string()).collect(),
    };
    if gpus.len() < ranks {
        let from = match visible {
            Some(v) => format!("CUDA_VISIBLE_DEVICES={v:?} names {}", gpus.len()),
            None => format!("this machine has {count}"),
        };
        return Err(Error::invalid(format!(
            "launch --backend nccl needs one GPU per rank: {ranks} ranks, but {from} GPU{}",
            if gpus.len() == 1 { "" } else { "s" }
        )));
    }
    Ok(gpus[..ranks].to_vec())
}

/// What tells a rank its place in an NCCL group (MLX reads MLX_RANK, MLX_WORLD_SIZE and the
/// rendezvous address NCCL_HOST_IP:NCCL_PORT), its GPU, and NCCL's settings for one host:
/// loopback for the rendezvous and NVLink SHARP (multicast) off, since it needs fabric
/// support that not every multi-GPU host has; each stays as the caller set it, if set.
pub fn nccl_env(rank: usize, ranks: usize, gpu: &str, port: u16) -> Vec<(String, String)> {
    let mut env = vec![
        ("MLX_RANK".to_string(), rank.to_string()),
        ("MLX_WORLD_SIZE".to_string(), ranks.to_string()),
        ("NCCL_HOST_IP".to_string(), "127.0.0.1".to_string()),
        ("NCCL_PORT".to_string(), port.to_string()),
        ("CUDA_VISIBLE_DEVICES".to_string(), gpu.to_string()),
    ];
    for (k, v) in [("NCCL_SOCKET_IFNAME", "lo"), ("NCCL_NVLS_ENABLE", "0")] {
        if std::env::var_os(k).is_none() {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

/// Per rank, what the command gets on top of `--distributed`, and its environment.
fn rank_setup(args: &LaunchArgs) -> Result<(Vec<String>, Vec<Vec<(String, String)>>, Option<std::path::PathBuf>)> {
    if args.backend == "nccl" {
        if !crate::mlx::distributed::is_available("nccl")? {
            return Err(Error::invalid(
                "launch --backend nccl: this MLX build has no NCCL backend (it comes with MLX's CUDA build)",
            ));
        }
        let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        let count = if visible.is_some() { 0 } else { crate::mlx::Device::count(crate::mlx::DeviceType::Gpu)?.max(0) as usize };
        let gpus = gpus_for_ranks(args.ranks, visible.as_deref(), count)?;
        let port = free_port()?;
        let envs = gpus.iter().enumerate().map(|(r, g)| nccl_env(r, args.ranks, g, port)).collect();
        return Ok((vec!["--dist-backend".into(), "nccl".into()], envs, None));
    }
    let hostfile = std::env::temp_dir().join(format!("mlxrun-hosts-{}.json", std::process::id()));
    std::fs::write(&hostfile, local_hostfile(args.ranks)?).map_err(|e| Error::Io(format!("{}: {e}", hostfile.display())))?;
    let envs = (0..args.ranks)
        .map(|r| vec![("MLX_RANK".to_string(), r.to_string()), ("MLX_HOSTFILE".to_string(), hostfile.display().to_string())])
        .collect();
    Ok((vec![], envs, Some(hostfile)))
}

pub fn run(args: LaunchArgs) -> Result<()> {
    if args.ranks < 1 {
        return Err(Error::invalid("launch needs -n of at least 1"));
    }
    if !(args.grace.is_finite() && args.grace >= 0.0) {
        return Err(Error::invalid(format!("--grace must be a number of seconds >= 0, got {}", args.grace)));
    }
    let exe = std::env::current_exe().map_err(|e| Error::Io(format!("finding this program: {e}")))?;
    let (extra, envs, hostfile) = rank_setup(&args)?;
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
        cmd.args(&args.command).arg("--distributed").args(&extra).envs(envs[rank].iter().map(|(k, v)| (k, v)));
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
    if let Some(h) = hostfile {
        let _ = std::fs::remove_file(h);
    }
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
