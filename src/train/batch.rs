//! Batches of examples as mlx-lm's trainer makes them: examples sorted by length and cut
//! into batches of neighbours (little padding), the batches visited in a seeded random
//! order each epoch, each padded with zeros to one more than the next multiple of 32 (at
//! most the maximum sequence length), longer examples truncated to it.
use super::dataset::Example;
use crate::error::{Error, Result};
use crate::mlx::Array;

/// Pad to one more than a multiple of this (mlx-lm's `pad_to`): the inputs and targets,
/// one shorter each, then have a multiple of 32 positions.
const PAD_TO: usize = 32;

/// One batch: `tokens: [batch, width]` (int32, zero-padded) and `lengths: [batch, 2]`
/// (int32): per row the first target step the loss counts (the prompt's length, or 0) and
/// the row's length.
pub struct Batch {
    pub tokens: Array,
    pub lengths: Array,
    /// How many rows were cut to the maximum sequence length, and the longest one's length.
    pub truncated: Option<(usize, usize)>,
}

/// The examples' indices, sorted by length, in consecutive groups of `batch_size` (a
/// remainder smaller than a batch is left out, as mlx-lm leaves it).
pub fn batch_indices(examples: &[Example], batch_size: usize) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(Error::invalid("batch size must be at least 1"));
    }
    if examples.len() < batch_size {
        return Err(Error::invalid(format!(
            "the dataset must have at least batch_size={batch_size} examples but has {}",
            examples.len()
        )));
    }
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    idx.sort_by_key(|&i| examples[i].tokens.len());
    Ok(idx.chunks_exact(batch_size).map(|c| c.to_vec()).collect())
}

/// The padded batch of `examples[rows]`.
pub fn make_batch(examples: &[Example], rows: &[usize], max_seq_length: usize) -> Result<Batch> {
    let longest = rows.iter().map(|&r| examples[r].tokens.len()).max().unwrap_or(0);
    let width = (1 + PAD_TO * longest.div_ceil(PAD_TO)).min(max_seq_length);
    let mut tokens = vec![0i32; rows.len() * width];
    let mut lengths = Vec::with_capacity(rows.len() * 2);
    let mut cut = 0;
    for (j, &r) in rows.iter().enumerate() {
        let ex = &examples[r];
        let n = ex.tokens.len().min(max_seq_length);
        cut += (ex.tokens.len() > n) as usize;
        for (dst, &t) in tokens[j * width..j * width + n].iter_mut().zip(&ex.tokens) {
            *dst = t as i32;
        }
        lengths.extend([ex.offset as i32, n as i32]);
    }
    Ok(Batch {
        tokens: Array::from_slice(&tokens, &[rows.len() as i32, width as i32])?,
        lengths: Array::from_slice(&lengths, &[rows.len() as i32, 2])?,
        truncated: if cut > 0 { Some((cut, longest)) } else { None },
    })
}

/// SplitMix64: a small, fast, seedable generator for the batch order. Reproducible from
/// the seed on every platform.
pub struct Shuffler(u64);

impl Shuffler {
    pub fn new(seed: u64) -> Shuffler {
        Shuffler(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
}
