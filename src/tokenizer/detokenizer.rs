//! Streaming detokenization: ids in one at a time, text out as soon as it is final.
//!
//! A token's text can depend on its neighbours: byte-level BPE tokens and SentencePiece
//! byte-fallback tokens (`<0xE4>`) can each hold part of one UTF-8 character, and decoders
//! that strip a leading space do it to the first token only. So the text of token n is not
//! `decode([id_n])`. Re-decoding the whole sequence at every token would be exact but
//! quadratic; instead the detokenizer decodes a short window: the tokens not yet fully
//! emitted, after one context token that was. The context token gets the same treatment
//! (first-token space stripping, a broken character at its start) in every decode of the
//! window, so the text after it is what the whole sequence decodes to there.
//!
//! Text is held back while it may still change:
//! - a trailing run of U+FFFD: the decoder shows an incomplete UTF-8 sequence this way, and
//!   the next token may complete it;
//! - anything from a trailing run of byte-fallback tokens: ByteFallback decodes a run of
//!   them as one byte string, all of which becomes U+FFFD if any part is invalid, so the
//!   run's text is known only when a non-byte token ends it.
//!
//! Hence no chunk ever holds part of a character, or a U+FFFD that the full decode does not
//! have, and the chunks plus `flush()` concatenate to exactly `Tokenizer::decode` of all the
//! ids, for the decoders of byte-level BPE (GPT-2, Llama 3, Qwen) and SentencePiece models
//! (Replace / ByteFallback / Fuse / Strip, Metaspace).
//!
//! Cost: the window is normally two tokens, so a token costs two small decodes. Only held
//! text keeps it growing: a model that emits bytes which never form characters pays, per
//! token, in proportion to that run, until a clean character ends it.

use super::Tokenizer;
use crate::error::Result;

/// Turns a stream of ids into text chunks. Made by [`Tokenizer::detokenizer`].
#[derive(Debug, Clone)]
pub struct Detokenizer {
    tokenizer: Tokenizer,
    skip_special_tokens: bool,
    /// The context token (once there is one) followed by the tokens not yet fully emitted.
    window: Vec<u32>,
    /// How many bytes of `decode(window)` have been emitted (the context's text included).
    emitted: usize,
}

impl Detokenizer {
    pub fn new(tokenizer: &Tokenizer, skip_special_tokens: bool) -> Self {
        Detokenizer { tokenizer: tokenizer.clone(), skip_special_tokens, window: Vec::new(), emitted: 0 }
    }

    /// Adds one id and returns the text it completes: possibly empty, never part of a
    /// character.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.window.push(id);
        let text = self.decode_window()?;
        // Ids the decoder never sees (skipped special tokens, unknown ids) don't end a run
        // of byte tokens: look at the last one it does see.
        let last_seen = self.window.iter().rev().find(|&&i| self.reaches_decoder(i));
        let stable = if last_seen.is_some_and(|&i| self.tokenizer.is_byte_token(i)) {
            self.emitted
        } else {
            text.trim_end_matches('\u{FFFD}').len()
        };
        let chunk = match text.get(self.emitted..stable) {
            Some(s) if stable > self.emitted => s.to_string(),
            _ => String::new(),
        };
        self.emitted = self.emitted.max(stable);

        // All of the window's text is out: restart it from the last token as context, if
        // that token reaches the decoder (ids that name no token, and skipped special
        // tokens, don't, and would leave the next token looking like the first).
        if stable == text.len() && self.window.len() > 1 && self.reaches_decoder(id) {
            self.window.clear();
            self.window.push(id);
            self.emitted = self.decode_window()?.len();
        }
        Ok(chunk)
    }

    /// Returns whatever text is still held back (an incomplete character comes out as
    /// U+FFFD, as `decode` shows it) and starts over for a new sequence.
    pub fn flush(&mut self) -> Result<String> {
        let text = if self.window.is_empty() { String::new() } else { self.decode_window()? };
        let rest = text.get(self.emitted..).unwrap_or_default().to_string();
        self.reset();
        Ok(rest)
    }

    /// Forgets everything pushed, for a new sequence.
    pub fn reset(&mut self) {
        self.window.clear();
        self.emitted = 0;
    }

    fn decode_window(&self) -> Result<String> {
        self.tokenizer.decode(&self.window, self.skip_special_tokens)
    }

    fn reaches_decoder(&self, id: u32) -> bool {
        !(self.skip_special_tokens && self.tokenizer.is_special(id)) && self.tokenizer.id_to_token(id).is_some()
    }
}
