//! GGUF's Q4_0, Q4_1 and Q8_0 tensors kept quantized, as MLX affine quantization with
//! groups of 32 — the mapping MLX's own GGUF reader makes:
//!
//! | GGML  | bits | value            | MLX scale | MLX bias |
//! |-------|------|------------------|-----------|----------|
//! | Q4_0  | 4    | (q − 8)·d        | d         | −8d      |
//! | Q4_1  | 4    | q·d + m          | d         | m        |
//! | Q8_0  | 8    | q·d, q signed    | d         | −128d    |
//!
//! (Q8_0's signed q becomes q + 128, unsigned.) Scales and biases stay float16, the
//! precision of the file's `d` and `m`, and −8d, −128d are exact there; the unpacked values
//! are bit-identical to llama.cpp's dequantization. A GGML block stores element j in the
//! low nibble and j + 16 in the high nibble of byte j; MLX packs consecutive elements into
//! each uint32 from its lowest bits up, so the nibbles are reordered here.
use half::f16;

use super::quants::GgmlType;

/// The bits MLX keeps a GGML type in, for the types kept quantized.
pub fn packed_bits(ty: GgmlType) -> Option<i32> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => Some(4),
        GgmlType::Q8_0 => Some(8),
        _ => None,
    }
}

pub const GROUP_SIZE: usize = 32;

/// A matrix in MLX's affine layout: `weight` (uint32, `cols * bits / 32` per row), and one
/// scale and bias per group of 32 (`cols / 32` per row).
pub struct Packed {
    pub weight: Vec<u32>,
    pub scales: Vec<f16>,
    pub biases: Vec<f16>,
    pub bits: i32,
}

/// Repacks the whole blocks in `data` (of type `ty`, which `packed_bits` accepts).
pub fn repack(ty: GgmlType, data: &[u8]) -> Option<Packed> {
    let bits = packed_bits(ty)?;
    let (_, size) = ty.block()?;
    let blocks = data.chunks_exact(size as usize);
    let n = blocks.len();
    let mut p = Packed {
        weight: Vec::with_capacity(n * GROUP_SIZE * bits as usize / 32),
        scales: Vec::with_capacity(n),
        biases: Vec::with_capacity(n),
        bits,
    };
    let mut q = [0u8; GROUP_SIZE];
    for b in blocks {
        let d = f16::from_le_bytes([b[0], b[1]]);
        let (scale, bias) = match ty {
            GgmlType::Q4_0 => {
                nibbles(&b[2..18], &mut q);
                (d, f16::from_f32(-8.0 * d.to_f32()))
            }
            GgmlType::Q4_1 => {
                nibbles(&b[4..20], &mut q);
                (d, f16::from_le_bytes([b[2], b[3]]))
            }
            _ => {
                for (dst, &s) in q.iter_mut().zip(&b[2..34]) {
                    *dst = (s as i8 as i16 + 128) as u8;
                }
                (d, f16::from_f32(-128.0 * d.to_f32()))
            }
        };
        p.scales.push(scale);
        p.biases.push(bias);
        let per_word = 32 / bits as usize;
        for word in q.chunks_exact(per_word) {
            p.weight.push(word.iter().enumerate().fold(0u32, |w, (i, &v)| w | (v as u32) << (i as i32 * bits)));
        }
    }
    Some(p)
}

/// The 32 four-bit values of a block's 16 bytes, in element order.
fn nibbles(qs: &[u8], out: &mut [u8; GROUP_SIZE]) {
    for j in 0..16 {
        out[j] = qs[j] & 0x0F;
        out[j + 16] = qs[j] >> 4;
    }
}
