//! Fuzz target: see fuzz/entries/gguf_reader.rs for what one input exercises.
#![no_main]

#[path = "../entries/mod.rs"]
mod entries;

// The fixtures a target reads are loaded before the first input, so that their loading
// is not counted against that input's time limit.
libfuzzer_sys::fuzz_target!(init: entries::gguf_reader::init(), |data: &[u8]| entries::gguf_reader::run(data));
