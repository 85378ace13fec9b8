//! The worker process, never trusted to behave: every read has a deadline and a size
//! bound, a line that is not a protocol message is a protocol error, and the process is
//! killed and reaped when it misbehaves or its owner drops it.
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};

/// Lines of the worker's stderr kept for error messages.
const STDERR_LINES: usize = 20;

/// What the stdout reader hands over.
enum Line {
    Message(Value),
    /// A line that is not a JSON object (its start).
    Garbage(String),
    /// A line longer than the bound (its length so far).
    TooLong(usize),
    /// stdout closed.
    Closed,
    Failed(String),
}

/// What waiting for the next message gave.
pub(crate) enum Next {
    Message(Value),
    /// Nothing arrived within the poll interval; the caller may check for a cancel.
    Idle,
}

pub(crate) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Set once the process is known dead or broken: every later call fails with it.
    broken: Option<String>,
}

impl Worker {
    /// Starts `python -u -c SCRIPT ARGS…` with piped stdio.
    pub(crate) fn spawn(python: &Path, script: &str, args: &[&str], max_line: usize) -> Result<Worker> {
        // Looked up here rather than left to the spawn: where exec's failure cannot reach
        // the parent (posix_spawn's vfork emulated by a plain fork, as under valgrind), a
        // missing interpreter "starts" and its child writes the host's unflushed stdio
        // buffers into the protocol pipe.
        if !is_executable(python) {
            return Err(Error::Backend(format!(
                "mlx_lm: cannot start {}: no such executable file{}",
                python.display(),
                if python.components().count() > 1 { "" } else { " on PATH" }
            )));
        }
        let mut cmd = Command::new(python);
        cmd.arg("-u").arg("-c").arg(script).arg("mlxrun-mlx-lm-worker").args(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Python's own buffering and warnings must not reach the protocol stream.
        cmd.env("PYTHONUNBUFFERED", "1").env("TOKENIZERS_PARALLELISM", "false");
        // No PR_SET_PDEATHSIG: it fires when the *thread* that spawned the worker exits,
        // and bindings load models on threads that may end before the model does. The
        // worker instead exits when its stdin closes, which the OS does when this process
        // ends, however it ends.
        let mut child = cmd.spawn().map_err(|e| {
            Error::Backend(format!("mlx_lm: cannot start {}: {e}", python.display()))
        })?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("mlx_lm-stdout".into())
            .spawn(move || read_lines(stdout, max_line, tx))
            .map_err(|e| Error::Backend(format!("mlx_lm: cannot start a reader thread: {e}")))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = tail.clone();
        std::thread::Builder::new()
            .name("mlx_lm-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    let mut t = keep.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
            .map_err(|e| Error::Backend(format!("mlx_lm: cannot start a reader thread: {e}")))?;
        let stdin = child.stdin.take();
        Ok(Worker { child, stdin, lines, stderr: tail, broken: None })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the worker is already known broken.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(Error::Backend(format!("{why}; load the model again"))),
            None => Ok(()),
        }
    }

    /// Sends one request line.
    pub(crate) fn send(&mut self, msg: &Value) -> Result<()> {
        self.check()?;
        let mut line = msg.to_string();
        line.push('\n');
        let res = match self.stdin.as_mut() {
            Some(stdin) => without_sigpipe(|| stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush())),
            None => Err(std::io::Error::other("stdin closed")),
        };
        if let Err(e) = res {
            let why = self.exit_report(&format!("could not be written to ({e})"));
            return Err(self.fail(why));
        }
        Ok(())
    }

    /// Waits up to `poll` for the next message. `since` is when the current wait began and
    /// `timeout` how long the worker may stay silent: past it the worker is killed and
    /// the call fails saying so. `doing` names the request for messages.
    pub(crate) fn next(&mut self, poll: Duration, since: Instant, timeout: Duration, doing: &str) -> Result<Next> {
        self.check()?;
        let left = timeout.saturating_sub(since.elapsed());
        match self.lines.recv_timeout(poll.min(left)) {
            Ok(Line::Message(v)) => Ok(Next::Message(v)),
            Ok(Line::Garbage(start)) => {
                let why = format!("mlx_lm: the worker printed a line that is not a protocol message during {doing}: {start:?}");
                self.kill();
                Err(self.fail(why))
            }
            Ok(Line::TooLong(n)) => {
                let why = format!("mlx_lm: the worker sent a message over {n} bytes during {doing} (the bound)");
                self.kill();
                Err(self.fail(why))
            }
            Ok(Line::Failed(e)) => {
                self.kill();
                Err(self.fail(format!("mlx_lm: reading the worker's output failed during {doing}: {e}")))
            }
            Ok(Line::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let why = self.exit_report(&format!("exited during {doing}"));
                Err(self.fail(why))
            }
            Err(RecvTimeoutError::Timeout) if since.elapsed() >= timeout => {
                self.kill();
                let why = format!(
                    "mlx_lm: the worker sent nothing for {:.1} s during {doing} and was stopped{}",
                    timeout.as_secs_f64(),
                    self.stderr_tail()
                );
                Err(self.fail(why))
            }
            Err(RecvTimeoutError::Timeout) => Ok(Next::Idle),
        }
    }

    fn fail(&mut self, why: String) -> Error {
        self.broken = Some(why.clone());
        Error::Backend(why)
    }

    /// "the worker (pid) exited with …: <stderr tail>", waiting briefly for the exit.
    fn exit_report(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_millis(500);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => break None,
            }
        };
        if status.is_none() {
            self.kill();
        }
        // The stderr reader may still be draining the last lines.
        std::thread::sleep(Duration::from_millis(20));
        let status = status.map_or("no exit status".to_string(), |s| s.to_string());
        format!("mlx_lm: the worker (pid {}) {what}: {status}{}", self.child.id(), self.stderr_tail())
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let text: Vec<&str> = t.iter().map(String::as_str).filter(|l| !l.trim().is_empty()).collect();
        match text.len() {
            0 => String::new(),
            n => format!("; its stderr ended: {}", text[n.saturating_sub(6)..].join(" | ")),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the worker to quit, then makes sure: closing stdin ends it too, and past a
    /// grace period it is killed. Always reaped.
    pub(crate) fn shutdown(&mut self, grace: Duration) {
        if self.broken.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.send(&serde_json::json!({"op": "quit"}));
        }
        self.stdin = None;
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
        self.kill();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

/// Reads newline-terminated lines of at most `max` bytes, parsing each as a JSON object.
fn read_lines(stdout: impl Read, max: usize, tx: mpsc::Sender<Line>) {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let (done, used) = match r.fill_buf() {
            Ok([]) => {
                let _ = tx.send(Line::Closed);
                return;
            }
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&buf[..i]);
                    (true, i + 1)
                }
                None => {
                    line.extend_from_slice(buf);
                    (false, buf.len())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Line::Failed(e.to_string()));
                return;
            }
        };
        r.consume(used);
        if line.len() > max {
            let _ = tx.send(Line::TooLong(max));
            return;
        }
        if !done {
            continue;
        }
        let msg = match serde_json::from_slice::<Value>(&line) {
            Ok(v @ Value::Object(_)) => Line::Message(v),
            _ => {
                let text = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
                Line::Garbage(text)
            }
        };
        line.clear();
        let garbage = matches!(msg, Line::Garbage(_));
        if tx.send(msg).is_err() || garbage {
            return;
        }
    }
}

/// Runs a write to the worker's stdin with SIGPIPE blocked on this thread. A worker that
/// has exited makes the write fail with EPIPE, and the kernel also raises SIGPIPE, whose
/// default action ends the process: Rust programs ignore it, but a C, Go or Swift host
/// embedding the library may not. The signal this write raised is taken off the pending
/// set before the mask is restored; one already pending is left for its owner.
#[cfg(unix)]
fn without_sigpipe<T>(write: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    // SAFETY: the sigset_t values are initialised by sigemptyset/sigpending before use,
    // and the mask is changed for the calling thread only, then restored.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let r = write();
        if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) && !was_pending {
            let now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            #[cfg(target_os = "linux")]
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &now);
            #[cfg(not(target_os = "linux"))]
            {
                // macOS has no sigtimedwait; sigwait takes the pending signal (it is
                // pending: the failed write raised it).
                let _ = now;
                let mut sig = 0;
                libc::sigwait(&pipe, &mut sig);
            }
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

#[cfg(not(unix))]
fn without_sigpipe<T>(write: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    write()
}

/// Whether `program` names an executable file: a path as given, a bare name through PATH
/// (as the spawn would search it).
fn is_executable(program: &Path) -> bool {
    #[cfg(unix)]
    fn runnable(p: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    fn runnable(p: &Path) -> bool {
        p.is_file()
    }
    if program.components().count() > 1 {
        return runnable(program);
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| runnable(&dir.join(program))))
}
