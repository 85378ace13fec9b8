//! What an unevaluated graph would run, counted by operation.
//!
//! At decode sizes a graph node costs the host more than its arithmetic: on a GPU each
//! kernel is recorded into a CUDA graph by the host, and each view is still walked and
//! allocated for. So the nodes of one decode step, and which they are, say more about the
//! step's time there than its FLOPs do. `benches/decode_overhead.rs` prints them.
use std::os::raw::c_char;

use super::array::{check, ptrs, Array};
use super::ffi;
use crate::error::{Error, Result};

/// The operations evaluating `outputs` would run, by MLX's primitive names ("Matmul",
/// "Reshape", "RMSNorm", …), most frequent first. Already computed arrays count nothing;
/// an operation with several outputs counts once.
pub fn census(outputs: &[&Array]) -> Result<Vec<(String, usize)>> {
    let p = ptrs(outputs);
    // A step's census is a few hundred bytes: one walk of the graph fills this buffer, and a
    // second, into a buffer of the size the first reported, only when it did not fit.
    let mut buf = vec![0u8; 4096];
    let mut needed = 0usize;
    loop {
        check(unsafe {
            ffi::shim_graph_census(p.as_ptr(), p.len(), buf.as_mut_ptr() as *mut c_char, buf.len(), &mut needed)
        })?;
        if needed <= buf.len() {
            break;
        }
        buf.resize(needed, 0);
    }
    let text = std::str::from_utf8(&buf[..needed.saturating_sub(1)])
        .map_err(|e| Error::Mlx(format!("graph census: not UTF-8: {e}")))?;
    text.lines()
        .map(|line| {
            let (name, count) = line
                .rsplit_once(' ')
                .ok_or_else(|| Error::Mlx(format!("graph census: unreadable line {line:?}")))?;
            let count = count
                .parse()
                .map_err(|_| Error::Mlx(format!("graph census: unreadable count in {line:?}")))?;
            Ok((name.to_string(), count))
        })
        .collect()
}

/// The number of operations in a census.
pub fn total(census: &[(String, usize)]) -> usize {
    census.iter().map(|(_, n)| n).sum()
}
