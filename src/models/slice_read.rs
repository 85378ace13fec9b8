//! Reading part of a tensor from a safetensors file: the rows or columns of a matrix one
//! rank of a sharded model keeps, so that a rank reads only its share from disk (MLX's
//! loader reads whole tensors). The files were validated when they were opened
//! (`mlx::io::read_header`), so each tensor's offsets lie inside its file.
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mlx::{Array, Dtype};

/// Where a tensor's bytes are: its file, the offset of its first byte, its dtype, shape.
#[derive(Clone, Debug)]
pub struct TensorSource {
    pub path: PathBuf,
    pub offset: u64,
    pub dtype: Dtype,
    pub shape: Vec<i32>,
}

/// The sources of every tensor of `path` whose dtype this reader handles.
pub fn sources(path: &Path) -> Result<Vec<(String, TensorSource)>> {
    let h = crate::mlx::io::read_header(path)?;
    let data_start = 8 + h.header_len;
    let mut out = Vec::new();
    for t in h.tensors {
        let dtype = match t.dtype.as_str() {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::Bf16,
            "U32" => Dtype::U32,
            _ => continue,
        };
        let Ok(shape) = t.shape.iter().map(|&d| i32::try_from(d)).collect::<std::result::Result<Vec<_>, _>>() else { continue };
        out.push((t.name, TensorSource { path: path.to_path_buf(), offset: data_start + t.data_offsets.0, dtype, shape }));
    }
    Ok(out)
}

impl TensorSource {
    /// Rows `start..start + n` (axis 0) or columns (axis 1) of a 2-D tensor, read from disk.
    pub fn read_slice(&self, axis: usize, start: i32, n: i32) -> Result<Array> {
        let [rows, cols] = self.shape[..] else {
            return Err(Error::Weights(format!("{}: a slice read of a {}-D tensor", self.path.display(), self.shape.len())));
        };
        let limit = if axis == 0 { rows } else { cols };
        if start < 0 || n < 0 || start + n > limit {
            return Err(Error::Weights(format!("{}: slice {start}..{} of {limit}", self.path.display(), start + n)));
        }
        let el = self.dtype.size() as u64;
        let row_bytes = cols as u64 * el;
        let file = std::fs::File::open(&self.path).map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))?;
        let read = |buf: &mut [u8], at: u64| {
            file.read_exact_at(buf, at).map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))
        };
        let (shape, bytes) = if axis == 0 {
            // Whole rows: one contiguous run.
            let mut b = vec![0u8; (n as u64 * row_bytes) as usize];
            read(&mut b, self.offset + start as u64 * row_bytes)?;
            ([n, cols], b)
        } else {
            // A run of each row.
            let run = (n as u64 * el) as usize;
            let mut b = vec![0u8; rows as usize * run];
            for (r, chunk) in b.chunks_mut(run.max(1)).enumerate().take(rows as usize) {
                read(chunk, self.offset + r as u64 * row_bytes + start as u64 * el)?;
            }
            ([rows, n], b)
        };
        array_from_le(&bytes, &shape, self.dtype)
    }
}

fn array_from_le(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
    match dtype {
        Dtype::F32 => Array::from_slice(&bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>(), shape),
        Dtype::U32 => Array::from_slice(&bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>(), shape),
        Dtype::F16 => Array::from_slice(
            &bytes.chunks_exact(2).map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect::<Vec<_>>(),
            shape,
        ),
        Dtype::Bf16 => Array::from_slice(
            &bytes.chunks_exact(2).map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect::<Vec<_>>(),
            shape,
        ),
        other => Err(Error::Weights(format!("slice reads of {other} tensors are not supported"))),
    }
}
