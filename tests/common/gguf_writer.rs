//! A minimal GGUF writer for crafting valid and deliberately broken files in tests.
//! (The valid reference file comes from llama.cpp's own writer, see scripts/gguf_refs.py.)

/// A metadata value as written.
pub enum Kv {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

pub struct Tensor {
    pub name: String,
    /// Dimensions innermost first, as GGUF lists them.
    pub dims: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// The bytes of a version-3 GGUF file with 32-byte alignment.
pub fn write(kvs: &[(&str, Kv)], tensors: &[Tensor]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        string(&mut out, k);
        match v {
            Kv::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Kv::F32(x) => {
                out.extend(6u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Kv::Bool(x) => {
                out.extend(7u32.to_le_bytes());
                out.push(*x as u8);
            }
            Kv::Str(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            Kv::StrArray(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                a.iter().for_each(|s| string(&mut out, s));
            }
            Kv::I32Array(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                a.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
        }
    }
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for t in tensors {
        string(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        t.dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
        out.extend(t.ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset += (t.data.len() as u64).div_ceil(32) * 32;
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    let start = out.len();
    for (t, off) in tensors.iter().zip(offsets) {
        out.resize(start + off as usize, 0);
        out.extend(&t.data);
    }
    out
}

/// An f32 tensor with `rows` x `cols` values (dims innermost first: [cols, rows]).
pub fn f32_tensor(name: &str, rows: u64, cols: u64, value: f32) -> Tensor {
    let dims = if rows == 1 { vec![cols] } else { vec![cols, rows] };
    let data = (0..rows * cols).flat_map(|i| (value + i as f32 * 1e-3).to_le_bytes()).collect();
    Tensor { name: name.into(), dims, ty: 0, data }
}

/// A tiny llama-architecture model (2 layers, hidden 8, 2 heads, vocabulary 4) with f32
/// weights and a byte-level BPE vocabulary, for load and error tests.
pub fn tiny_llama(arch: &str) -> (Vec<(&'static str, Kv)>, Vec<Tensor>) {
    let a = |k: &str| -> &'static str { Box::leak(format!("{arch}.{k}").into_boxed_str()) };
    let kvs = vec![
        ("general.architecture", Kv::Str(arch.into())),
        (a("block_count"), Kv::U32(1)),
        (a("embedding_length"), Kv::U32(8)),
        (a("feed_forward_length"), Kv::U32(16)),
        (a("attention.head_count"), Kv::U32(2)),
        (a("attention.head_count_kv"), Kv::U32(1)),
        (a("attention.layer_norm_rms_epsilon"), Kv::F32(1e-5)),
        (a("rope.freq_base"), Kv::F32(10000.0)),
        ("tokenizer.ggml.model", Kv::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Kv::Str("smollm".into())),
        ("tokenizer.ggml.tokens", Kv::StrArray(["<|endoftext|>", "a", "b", "ab"].map(String::from).to_vec())),
        ("tokenizer.ggml.token_type", Kv::I32Array(vec![3, 1, 1, 1])),
        ("tokenizer.ggml.merges", Kv::StrArray(vec!["a b".into()])),
        ("tokenizer.ggml.eos_token_id", Kv::U32(0)),
        ("tokenizer.ggml.add_bos_token", Kv::Bool(false)),
    ];
    let tensors = vec![
        f32_tensor("token_embd.weight", 4, 8, 0.01),
        f32_tensor("output_norm.weight", 1, 8, 1.0),
        f32_tensor("blk.0.attn_norm.weight", 1, 8, 1.0),
        f32_tensor("blk.0.attn_q.weight", 8, 8, 0.02),
        f32_tensor("blk.0.attn_k.weight", 4, 8, 0.03),
        f32_tensor("blk.0.attn_v.weight", 4, 8, 0.04),
        f32_tensor("blk.0.attn_output.weight", 8, 8, 0.05),
        f32_tensor("blk.0.ffn_norm.weight", 1, 8, 1.0),
        f32_tensor("blk.0.ffn_gate.weight", 16, 8, 0.06),
        f32_tensor("blk.0.ffn_up.weight", 16, 8, 0.07),
        f32_tensor("blk.0.ffn_down.weight", 8, 16, 0.08),
    ];
    (kvs, tensors)
}

/// Pseudo-random bytes (a 64-bit LCG's high bytes), the same for the same seed.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// A float16 in [1e-4, 1e-3) with pseudo-random mantissa bits (so products with it use
/// them all), little-endian.
fn small_f16(b: &[u8]) -> [u8; 2] {
    let x = 1e-4 + 9e-4 * (u16::from_le_bytes([b[0], b[1]]) as f32 / 65536.0);
    half::f16::from_f32(x).to_le_bytes()
}

/// A `rows` x `cols` tensor of pseudo-random GGML blocks of type `ty` (F32: 0, Q5_0: 6,
/// Q5_1: 7, Q8_0: 8, Q4_K: 12, Q5_K: 13), with block scales small enough for a stable
/// model: `d`, `dmin` in [1e-4, 1e-3), Q5_1's `m` in (−1e-3, −1e-4] (its quants are
/// unsigned), every other byte (6-bit scales and mins, fifth bits, quants) arbitrary.
pub fn random_tensor(name: &str, ty: u32, rows: u64, cols: u64, seed: u64) -> Tensor {
    let (per_block, size) = match ty {
        0 => (1, 4),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        12 => (256, 144),
        13 => (256, 176),
        _ => panic!("random_tensor: type {ty} not written"),
    };
    let mut data = bytes(seed, (rows * cols / per_block * size) as usize);
    for b in data.chunks_exact_mut(size as usize) {
        match ty {
            0 => b.copy_from_slice(&((b[0] as f32 - 128.0) / 2560.0).to_le_bytes()),
            6 | 8 => {
                let d = small_f16(&b[0..2]);
                b[0..2].copy_from_slice(&d);
            }
            _ => {
                let (d, mut second) = (small_f16(&b[0..2]), small_f16(&b[2..4]));
                if ty == 7 {
                    second[1] |= 0x80;
                }
                b[0..2].copy_from_slice(&d);
                b[2..4].copy_from_slice(&second);
            }
        }
    }
    let dims = if rows == 1 { vec![cols] } else { vec![cols, rows] };
    Tensor { name: name.into(), dims, ty, data }
}
