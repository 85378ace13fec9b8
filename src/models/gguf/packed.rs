//! GGUF's Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q5_K tensors kept quantized, as MLX affine
//! quantization with groups of 32 — for Q4_0/Q4_1/Q8_0 the mapping MLX's own GGUF reader
//! makes:
//!
//! | GGML  | bits | value                  | MLX scale | MLX bias | scales in |
//! |-------|------|------------------------|-----------|----------|-----------|
//! | Q4_0  | 4    | (q − 8)·d              | d         | −8d      | float16   |
//! | Q4_1  | 4    | q·d + m                | d         | m        | float16   |
//! | Q5_0  | 8    | (q − 16)·d, q 5-bit    | d         | −16d     | float16   |
//! | Q5_1  | 8    | q·d + m, q 5-bit       | d         | m        | float16   |
//! | Q8_0  | 8    | q·d, q signed          | d         | −128d    | float16   |
//! | Q4_K  | 4    | d·sc·q − dmin·m        | d·sc      | −dmin·m  | float32   |
//! | Q5_K  | 8    | d·sc·q − dmin·m, 5-bit | d·sc      | −dmin·m  | float32   |
//!
//! (Q8_0's signed q becomes q + 128, unsigned.) The 5-bit types go to 8 bits: MLX's 5-bit
//! packing exists, but the project's CPU kernels take 4 and 8 bits only, and at 8 bits a
//! matrix still reads under a third of its float32 bytes. Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 scales
//! and biases stay float16, the precision of the file's `d` and `m`, and −8d, −16d, −128d
//! are exact there. A Q4_K/Q5_K super-block of 256 holds 8 sub-blocks of 32, each with
//! 6-bit `sc` and `m` that multiply the block's float16 `d` and `dmin`: the products need
//! up to 17 significant bits, exact in float32 but not in float16/bfloat16, so they are
//! float32 (a model computing in a half type casts them, as it casts every packed matrix's
//! scales). Either way the unpacked values are bit-identical to llama.cpp's dequantization
//! in float32 (q·scale needs at most 22 bits, so it is exact, and adding the bias rounds once
//! as llama.cpp's sum does).
//!
//! Not kept: Q6_K and Q2_K/Q3_K (sub-blocks of 16, finer than MLX's smallest group of 32);
//! they are dequantized.
//!
//! A GGML block stores element j in the low nibble and j + 16 (K-quants: j + 32, the next
//! sub-block) in the high nibble of byte j, and a 5-bit type its fifth bits apart; MLX packs
//! consecutive elements into each uint32 from its lowest bits up, so the quants are
//! reordered here.
use half::f16;

use super::quants::{q5_high, scale_min_k4, GgmlType};
use crate::mlx::Dtype;

/// The bits MLX keeps a GGML type in, for the types kept quantized.
pub fn packed_bits(ty: GgmlType) -> Option<i32> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => Some(4),
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K | GgmlType::Q8_0 => Some(8),
        _ => None,
    }
}

pub const GROUP_SIZE: usize = 32;

/// A matrix in MLX's affine layout: `weight` (uint32, `cols * bits / 32` per row), and one
/// scale and bias per group of 32 (`cols / 32` per row), exact in `scale_dtype`.
pub struct Packed {
    pub weight: Vec<u32>,
    pub scales: Vec<f32>,
    pub biases: Vec<f32>,
    pub bits: i32,
    pub scale_dtype: Dtype,
}

impl Packed {
    fn push(&mut self, scale: f32, bias: f32, q: &[u8; GROUP_SIZE]) {
        self.scales.push(scale);
        self.biases.push(bias);
        let per_word = 32 / self.bits as usize;
        for word in q.chunks_exact(per_word) {
            self.weight.push(word.iter().enumerate().fold(0u32, |w, (i, &v)| w | (v as u32) << (i as i32 * self.bits)));
        }
    }
}

/// Repacks the whole blocks in `data` (of type `ty`, which `packed_bits` accepts).
pub fn repack(ty: GgmlType, data: &[u8]) -> Option<Packed> {
    let bits = packed_bits(ty)?;
    let (per_block, size) = ty.block()?;
    let blocks = data.chunks_exact(size as usize);
    let groups = blocks.len() * per_block as usize / GROUP_SIZE;
    let scale_dtype = if matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K) { Dtype::F32 } else { Dtype::F16 };
    let mut p = Packed {
        weight: Vec::with_capacity(groups * GROUP_SIZE * bits as usize / 32),
        scales: Vec::with_capacity(groups),
        biases: Vec::with_capacity(groups),
        bits,
        scale_dtype,
    };
    let mut q = [0u8; GROUP_SIZE];
    let half = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
    for b in blocks {
        let d = half(b, 0);
        match ty {
            GgmlType::Q4_0 => {
                nibbles(&b[2..18], &mut q);
                p.push(d, -8.0 * d, &q);
            }
            GgmlType::Q4_1 => {
                nibbles(&b[4..20], &mut q);
                p.push(d, half(b, 2), &q);
            }
            GgmlType::Q5_0 => {
                fives(&b[2..6], &b[6..22], &mut q);
                p.push(d, -16.0 * d, &q);
            }
            GgmlType::Q5_1 => {
                fives(&b[4..8], &b[8..24], &mut q);
                p.push(d, half(b, 2), &q);
            }
            GgmlType::Q8_0 => {
                for (dst, &s) in q.iter_mut().zip(&b[2..34]) {
                    *dst = (s as i8 as i16 + 128) as u8;
                }
                p.push(d, -128.0 * d, &q);
            }
            _ => {
                // Q4_K/Q5_K: d, dmin, 12 bytes of 6-bit scales and mins, (Q5_K: 32 bytes whose
                // bit j is the fifth bit of sub-block j's element at that byte,) then 4 runs of
                // 32 bytes, each holding sub-block 2n in its low nibbles and 2n + 1 in its
                // high ones.
                let (dmin, scales) = (half(b, 2), &b[4..16]);
                let (qh, qs) = if ty == GgmlType::Q5_K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
                for (n, qs) in qs.chunks_exact(32).enumerate() {
                    for (j, shift) in [(2 * n, 0), (2 * n + 1, 4)] {
                        let (sc, m) = scale_min_k4(j, scales);
                        q.iter_mut().zip(qs).for_each(|(dst, &s)| *dst = (s >> shift) & 0x0F);
                        if let Some(qh) = qh {
                            q.iter_mut().zip(qh).for_each(|(dst, &h)| *dst |= ((h >> j) & 1) << 4);
                        }
                        p.push(d * sc as f32, -(dmin * m as f32), &q);
                    }
                }
            }
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

/// The 32 five-bit values of a Q5_0/Q5_1 block: its 16 bytes of low nibbles (as `nibbles`)
/// and the fifth bits of its little-endian `qh`.
fn fives(qh: &[u8], qs: &[u8], out: &mut [u8; GROUP_SIZE]) {
    nibbles(qs, out);
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for j in 0..16 {
        let (h0, h1) = q5_high(qh, j);
        out[j] |= h0;
        out[j + 16] |= h1;
    }
}
