//! Tokenizers: HF tokenizer.json, special tokens, incremental detokenizing.
