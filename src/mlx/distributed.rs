//! MLX's distributed layer: a group of processes (ranks) and its collectives, over MLX's own
//! backends — `ring` (TCP; in every build, the CPU wheel's included), `jaccl` (Thunderbolt
//! on Macs), `mpi`, `nccl` (NVIDIA). Tensor-parallel models sum their partial products
//! with [`Group::all_sum`]; the communication happens when the graph is evaluated, and a
//! peer that is gone makes that evaluation fail (the ring backend reports a closed socket
//! as "connection to a peer was lost") instead of waiting for it.
use std::ffi::CString;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use super::array::{check, new_array};
use super::{ffi, Array};
use crate::error::{Error, Result};

/// How long [`Group::init`] waits for every peer by default.
/// How long [`Group::init`] waits for every rank by default, and afterwards the longest a
/// wait on the group's work may go without this process computing anything (see
/// [`Group::init`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The backends MLX knows by name (`any`: the first available).
pub const BACKENDS: &[&str] = &["any", "ring", "jaccl", "mpi", "nccl"];

struct Handle(NonNull<ffi::shim_group>);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from shim_dist_init and is freed once, here.
        unsafe { ffi::shim_group_free(self.0.as_ptr()) }
    }
}

/// A group of ranks. Cheap to clone (clones share MLX's group). `Send + Sync`: MLX's
/// group is an immutable handle to its backend; collectives from several threads are
/// ordered by the graphs that hold them, as for any other op.
#[derive(Clone)]
pub struct Group {
    handle: Arc<Handle>,
    rank: i32,
    size: i32,
}

unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Group(rank {} of {})", self.rank, self.size)
    }
}

/// Whether work of this process's group has failed or stalled. MLX may then keep a stream
/// thread waiting for good on a peer that is gone, and a normal exit, which waits for MLX's
/// streams to drain, would hang: a program should then end with `_exit` (the CLI does).
pub fn group_failed() -> bool {
    unsafe { ffi::shim_dist_failed() == 1 }
}

/// Ends the process at once with `code`, without exit handlers, when [`group_failed`]:
/// the ordinary exit would wait for a stream that may never drain. Flush output first.
pub fn exit_if_group_failed(code: i32) {
    if group_failed() {
        // SAFETY: _exit ends the process; nothing runs after it.
        unsafe { libc::_exit(code) }
    }
}

/// Whether this MLX build has `backend` (one of [`BACKENDS`]).
pub fn is_available(backend: &str) -> Result<bool> {
    let c = backend_name(backend)?;
    Ok(unsafe { ffi::shim_dist_is_available(c.as_ptr()) } == 1)
}

fn backend_name(backend: &str) -> Result<CString> {
    if !BACKENDS.contains(&backend) {
        return Err(Error::invalid(format!(
            "unknown distributed backend {backend:?} (known: {})",
            BACKENDS.join(", ")
        )));
    }
    CString::new(backend).map_err(|_| Error::invalid("backend name contains a NUL byte"))
}

impl Group {
    /// Joins the group MLX's environment describes, through `backend`. For `ring`:
    /// `MLX_RANK` (this process's rank) and `MLX_HOSTFILE` (a JSON file listing, per rank,
    /// the `"ip:port"` addresses it listens on: `[["127.0.0.1:5000"], ["127.0.0.1:5001"]]`).
    /// Fails after `timeout` when a peer does not connect: MLX itself would wait forever.
    /// From then on, every wait on MLX's work in this process is bounded by `timeout` too:
    /// a wait during which this process computes nothing for that long (it is waiting on
    /// peers that do not answer) fails with "no progress … a peer is gone or stuck". A peer
    /// that dies usually closes its connections, and the ring backend fails at once; this
    /// covers the collectives it leaves waiting.
    pub fn init(backend: &str, timeout: Duration) -> Result<Group> {
        let c = backend_name(backend)?;
        if backend == "ring" {
            check_ring_env()?;
        }
        let mut out: *mut ffi::shim_group = std::ptr::null_mut();
        check(unsafe { ffi::shim_dist_init(c.as_ptr(), timeout.as_secs_f64(), &mut out) })
            .map_err(|e| distributed_error(&format!("joining the {backend} group"), e))?;
        let ptr = NonNull::new(out).ok_or_else(|| Error::Mlx("MLX returned no distributed group".into()))?;
        let handle = Arc::new(Handle(ptr));
        let (rank, size) = unsafe { (ffi::shim_group_rank(ptr.as_ptr()), ffi::shim_group_size(ptr.as_ptr())) };
        Ok(Group { handle, rank, size })
    }

    /// This process's rank, `0..size`.
    pub fn rank(&self) -> i32 {
        self.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> i32 {
        self.size
    }

    fn ptr(&self) -> *const ffi::shim_group {
        self.handle.0.as_ptr()
    }

    /// The elementwise sum of `x` over every rank (each rank gets the same result).
    pub fn all_sum(&self, x: &Array) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_dist_all_sum(x.as_ptr(), self.ptr(), out) })
    }

    /// The elementwise maximum of `x` over every rank.
    pub fn all_max(&self, x: &Array) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_dist_all_max(x.as_ptr(), self.ptr(), out) })
    }

    /// Every rank's `x` concatenated along the first axis, rank 0 first.
    pub fn all_gather(&self, x: &Array) -> Result<Array> {
        new_array(|out| unsafe { ffi::shim_dist_all_gather(x.as_ptr(), self.ptr(), out) })
    }

    /// Sends `x` to rank `dst`; evaluating the returned array performs the send.
    pub fn send(&self, x: &Array, dst: i32) -> Result<Array> {
        self.check_peer(dst)?;
        new_array(|out| unsafe { ffi::shim_dist_send(x.as_ptr(), dst, self.ptr(), out) })
    }

    /// Receives from rank `src` an array of `like`'s shape and dtype.
    pub fn recv_like(&self, like: &Array, src: i32) -> Result<Array> {
        self.check_peer(src)?;
        new_array(|out| unsafe { ffi::shim_dist_recv_like(like.as_ptr(), src, self.ptr(), out) })
    }

    /// A random seed that every rank returns: rank 0's, sent to the others by a sum to
    /// which they add zeros.
    pub fn agree_seed(&self) -> Result<u64> {
        let mine: [i32; 2] = if self.rank == 0 {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let bits = t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
            // Two non-negative 31-bit halves, so that the int32 sum is exact.
            [(bits & 0x7fff_ffff) as i32, ((bits >> 31) & 0x7fff_ffff) as i32]
        } else {
            [0, 0]
        };
        let sum = self.all_sum(&Array::from_slice(&mine, &[2])?)?.to_vec::<i32>()
            .map_err(|e| distributed_error("agreeing on a sampling seed", e))?;
        Ok(sum[0] as u64 | ((sum[1] as u64) << 31))
    }

    /// Whether every rank says to go on (`go`): false as soon as one says stop.
    pub fn all_continue(&self, go: bool) -> Result<bool> {
        let stops = self.all_sum(&Array::from_slice(&[i32::from(!go)], &[1])?)?.item::<i32>()
            .map_err(|e| distributed_error("agreeing whether to go on", e))?;
        Ok(stops == 0)
    }

    /// Rank 0's `text` on every rank (the others pass `None`); `None` everywhere when rank 0
    /// passes `None` (its input ended). For input only rank 0 reads, such as a chat's lines.
    pub fn share_text(&self, text: Option<&str>) -> Result<Option<String>> {
        let text = if self.rank == 0 { text } else { None };
        let len = match text {
            Some(t) => i32::try_from(t.len()).map_err(|_| Error::invalid("a text of 2 GiB or more cannot be shared"))?,
            None if self.rank == 0 => -1,
            None => 0,
        };
        let doing = |e| distributed_error("sharing rank 0's input", e);
        let n = self.all_sum(&Array::from_slice(&[len], &[1])?)?.item::<i32>().map_err(doing)?;
        if n <= 0 {
            return Ok((n == 0).then(String::new));
        }
        let bytes = match text {
            Some(t) => t.as_bytes().to_vec(),
            None => vec![0u8; n as usize],
        };
        let got = self.all_sum(&Array::from_slice(&bytes, &[n])?)?.to_vec::<u8>().map_err(doing)?;
        String::from_utf8(got).map(Some).map_err(|_| Error::Mlx("distributed: rank 0's input arrived garbled".into()))
    }

    fn check_peer(&self, r: i32) -> Result<()> {
        if r < 0 || r >= self.size || r == self.rank {
            return Err(Error::invalid(format!(
                "rank {r} is not a peer of rank {} in a group of {}",
                self.rank, self.size
            )));
        }
        Ok(())
    }
}

/// MLX's ring backend reads its environment without saying which variable is missing or
/// malformed; these checks name it first.
fn check_ring_env() -> Result<()> {
    let rank = std::env::var("MLX_RANK").map_err(|_| {
        Error::invalid("the ring backend needs MLX_RANK (this process's rank) in the environment")
    })?;
    let rank: usize = rank
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("MLX_RANK is {rank:?}, not a rank number")))?;
    let path = std::env::var("MLX_HOSTFILE").map_err(|_| {
        Error::invalid("the ring backend needs MLX_HOSTFILE (a JSON file listing each rank's \"ip:port\" addresses) in the environment")
    })?;
    let hosts = read_hostfile(std::path::Path::new(&path))?;
    if rank >= hosts.len() {
        return Err(Error::invalid(format!(
            "MLX_RANK is {rank} but the hostfile {path} lists {} rank(s)",
            hosts.len()
        )));
    }
    Ok(())
}

/// Reads a ring hostfile: a JSON list with one entry per rank, each a non-empty list of
/// `"ip:port"` strings (several give a rank several connections).
pub fn read_hostfile(path: &std::path::Path) -> Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("hostfile {}: {e}", path.display())))?;
    let bad = |why: &str| Error::Config(format!("hostfile {}: {why}", path.display()));
    let hosts: Vec<Vec<String>> = serde_json::from_str(&text)
        .map_err(|e| bad(&format!("not a JSON list of lists of \"ip:port\" strings ({e})")))?;
    if hosts.is_empty() {
        return Err(bad("it lists no ranks"));
    }
    for (r, addrs) in hosts.iter().enumerate() {
        if addrs.is_empty() {
            return Err(bad(&format!("rank {r} has no address")));
        }
        for a in addrs {
            let ok = a.rsplit_once(':').is_some_and(|(ip, port)| !ip.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(bad(&format!("rank {r}'s address {a:?} is not \"ip:port\"")));
            }
        }
    }
    Ok(hosts)
}

/// An MLX failure inside a collective, said as one: what was being done, and MLX's words.
pub fn distributed_error(doing: &str, e: Error) -> Error {
    match e {
        Error::Mlx(m) => Error::Mlx(format!("distributed: {doing}: {m}")),
        other => other,
    }
}
