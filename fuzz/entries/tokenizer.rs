//! Tokenizers: encoding arbitrary text and decoding arbitrary ids with the fixture
//! models' real tokenizers (loaded once), and the streaming detokenizer, whose chunks must
//! concatenate to exactly what `decode` gives (its documented contract). The first byte
//! picks the tokenizer and the mode; the rest is text (invalid UTF-8 replaced) or ids
//! (little-endian u32s).
use std::sync::OnceLock;

use mlxrun::tokenizer::Tokenizer;

fn tokenizers() -> &'static [Tokenizer] {
    static TOKENIZERS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        super::FIXTURES
            .iter()
            .map(|name| {
                let dir = super::fixture(name);
                Tokenizer::load(&dir).unwrap_or_else(|e| panic!("fixture tokenizer {}: {e} (run scripts/setup.sh)", dir.display()))
            })
            .collect()
    })
}

/// Loads the fixture tokenizers (seconds) before the first input.
pub fn init() {
    tokenizers();
}

pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else { return };
    let toks = tokenizers();
    let tok = &toks[head as usize % toks.len()];
    if head & 0x80 == 0 {
        exercise(tok, rest);
    } else {
        // Ids: mostly inside the vocabulary (where decoding does real work), some past it.
        let n = tok.vocab_size() as u32 + 8;
        let ids: Vec<u32> = rest.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) % n).collect();
        check_ids(tok, &ids, head & 0x40 != 0);
    }
}

/// Encodes the input as text both ways, decodes the ids back, and streams them.
pub fn exercise(tok: &Tokenizer, data: &[u8]) {
    let text = super::text(data);
    for special in [false, true] {
        if let Ok(ids) = tok.encode(&text, special) {
            check_ids(tok, &ids, !special);
        }
    }
    let _ = tok.encode_prompt(&text);
    let _ = tok.prompt_needs_special_tokens(&text);
}

/// Decodes `ids` whole and streamed; both must agree.
fn check_ids(tok: &Tokenizer, ids: &[u32], skip_special: bool) {
    let Ok(whole) = tok.decode(ids, skip_special) else { return };
    let mut detok = tok.detokenizer(skip_special);
    let mut streamed = String::new();
    for &id in ids {
        match detok.push(id) {
            Ok(chunk) => streamed.push_str(&chunk),
            Err(_) => return,
        }
    }
    let Ok(rest) = detok.flush() else { return };
    streamed.push_str(&rest);
    assert_eq!(streamed, whole, "streamed text differs from decode() for ids {ids:?} (skip_special_tokens {skip_special})");
    for &id in ids.iter().take(64) {
        let _ = (tok.id_to_token(id), tok.is_special(id), tok.is_eos(id));
    }
}
