//! The client of scripts/bench_worker.py: one mlx-lm process kept up for the whole suite,
//! asked for one timed run at a time over JSON lines (the protocol is in the script's
//! docstring). Started by `reference_command`, so it gets our BLAS as `run_reference` does.
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use serde_json::{json, Value};

pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts the worker; its stderr (mlx-lm's messages, tracebacks) goes to ours.
    pub fn spawn() -> Result<Worker, String> {
        let mut child = super::reference_command("bench_worker.py")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("the mlx-lm worker could not start: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Worker { child, stdin, stdout })
    }

    /// Whether the process is still running (a dead one is replaced by the caller).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends one request and returns its reply; a reply `{"error": ...}`, a reply that is
    /// not JSON, or a worker that exited is an `Err` with the reason.
    pub fn request(&mut self, req: &Value) -> Result<Value, String> {
        let died = |e: String| format!("the mlx-lm worker died ({e})");
        writeln!(self.stdin, "{req}").and_then(|_| self.stdin.flush()).map_err(|e| died(e.to_string()))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => return Err(died("no reply".into())),
            Err(e) => return Err(died(e.to_string())),
            Ok(_) => {}
        }
        let reply: Value = serde_json::from_str(&line).map_err(|e| format!("the mlx-lm worker replied {line:?}: {e}"))?;
        match reply.get("error") {
            Some(e) => Err(format!("mlx-lm: {}", e.as_str().unwrap_or_default())),
            None => Ok(reply),
        }
    }
}

impl Drop for Worker {
    /// Asks the worker to quit (it exits without a reply) and waits for it; kills it when
    /// it cannot be asked.
    fn drop(&mut self) {
        let quit = json!({"op": "quit"});
        if writeln!(self.stdin, "{quit}").and_then(|_| self.stdin.flush()).is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
