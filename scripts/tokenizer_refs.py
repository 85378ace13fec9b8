"""Computes reference values for the tokenizer tests with Hugging Face's own libraries.

For every tokenizer under .deps/tokenizers/ (qwen3, gemma3, llama3_1) and every text of a
corpus (CJK, Japanese, Korean, emoji with ZWJ sequences and skin tones, combining marks,
whitespace runs, code, numbers, special tokens written in the text, the empty string, ...)
it records what the `tokenizers` library (`Tokenizer.from_file(tokenizer.json)`, the
library the Rust crate wraps) gives:

  ids_special / ids_plain      encode(text, add_special_tokens=True / False)
  tokens_special               the token strings of ids_special
  decode_keep / decode_skip    decode(ids_special, skip_special_tokens=False / True)
  prompt_ids                   mlx-lm's rule for a string prompt: add special tokens unless
                               the text already starts with the BOS token string

and, beside it, what transformers' `AutoTokenizer.from_pretrained(folder)` gives for the same
calls, under "transformers", only where it differs. Each tokenizer also gets random id
sequences (any id, and ones rich in byte tokens and special tokens) with their decodes, to
drive the streaming detokenizer through split and invalid UTF-8.

Decoders that treat the first token specially (Llama 2 / Mistral's `Strip` of one leading
space, `Metaspace` with prepend_scheme "first") appear in none of the three tokenizers, so
two variants of Gemma's tokenizer with those decoders are written beside OUT.json, under
tokenizer_variants/<name>/tokenizer.json, with the decodes of the same id sequences.

A tokenizer.json may also carry truncation and padding settings, which the `tokenizers`
library applies on every encode and transformers drops (it truncates or pads only when a
call asks). A copy of Qwen's tokenizer with both set (tokenizer_variants/qwen3_truncation)
records the ids each library gives; prompts must follow transformers and never be cut.

Usage: tokenizer_refs.py OUT.json
"""

import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parent.parent
TOKENIZERS = ["qwen3", "gemma3", "llama3_1"]

CORPUS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    " one leading space",
    "trailing newline\n",
    "   ",
    "\n",
    "\t",
    "tabs\tand\t\ttabs\n\nnewlines\r\n\r\nwindows\r\n",
    "multiple     spaces   between\n\n\n\nwords \t \n mixed",
    "中文测试：你好，世界！这是一个测试。",
    "日本語のテキスト、カタカナとひらがな。漢字も。ｶﾀｶﾅ",
    "한국어 텍스트입니다. 안녕하세요!",
    "Ελληνικά, русский, עברית, العربية, हिन्दी, ไทย",
    "Emoji: 😀😃🎉 👍🏽 👋🏿 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️‍🔥 🇺🇳🇯🇵 1️⃣ ☺️ ☺︎",
    "👨🏻‍💻👩🏾‍🔬🧑🏽‍🤝‍🧑🏿",
    "Combining: e\u0301 a\u0300 n\u0303 \u00e9\u0301 Z\u0351\u034ba\u0308\u0324l\u0367g\u0310o\u0357",
    "A\u030a vs \u00c5, \ufb01 \ufb02, ｆｕｌｌｗｉｄｔｈ １２３",
    "Rare CJK: 𠀀𠀁𪚥𩸽 and 𓀀 hieroglyph",
    "def f(x):\n    return x**2  # square\n\nfor i in range(10):\n\tprint(f\"{i}: {f(i)}\")\n",
    "fn main() { let v: Vec<u32> = (0..10).collect(); println!(\"{:?}\", v); }",
    "Numbers: 3.14159 2,718,281 1234567890 -42 1e-9 0x1F 007 ½ ²",
    "Math: ∑∫√∞ ≤≥ ≠ ∂x/∂y; arrows → ⇒ ↔",
    "URLs: https://example.com/path?q=1&r=2#frag and emails a.b@c.d",
    "'S 'LL 'ſ \u212a don't I'm we've they're it'd Y'ALL",
    "nbsp\u00a0ideographic\u3000space\u2028line\u0085nel\u200bzwsp\u2009thin",
    "ctrl\x01\x7f bell\x07 esc\x1b[0m",
    "literal replacement char \ufffd here",
    "Hello , world ! don 't  . ? ! ,",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    " <|im_end|> <|im_start|><|im_start|>",
    "<think>\nreasoning\n</think>\n\nanswer",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text starting with Gemma's bos",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|begin_of_text|>text starting with Llama's bos",
    "<mask> and <unk> and <pad> and <eos>",
    "<0xE4><0xB8><0xAD> written as text",
    "ha" * 40,
    "a" * 100,
    "🎉" * 12,
]

RANDOM_SEQUENCES = 24

# Gemma's tokenizer with the decoders of other SentencePiece models.
VARIANTS = {
    # Llama 2, Mistral: one leading space stripped from the whole text.
    "gemma3_strip": lambda: decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                               decoders.Fuse(), decoders.Strip(" ", 1, 0)]),
    # Metaspace: "\u2581" to space in every token, the first token's leading space dropped.
    "gemma3_metaspace": lambda: decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
}


def load(name):
    folder = ROOT / ".deps" / "tokenizers" / name
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(folder))
    return tok, hf


def byte_token_ids(tok):
    """Ids whose token is one raw byte: SentencePiece's <0xNN>, or a byte-level BPE token
    of a single byte character."""
    ids = []
    for b in range(256):
        i = tok.token_to_id(f"<0x{b:02X}>")
        if i is not None:
            ids.append(i)
    if not ids:
        # Byte-level BPE maps each byte to one printable character; single-character
        # tokens of that alphabet are the one-byte tokens.
        vocab = tok.get_vocab()
        ids = sorted(i for t, i in vocab.items() if len(t) == 1)
    return ids


def random_sequences(tok, rng):
    n = tok.get_vocab_size(with_added_tokens=True)
    special = sorted(i for i, t in tok.get_added_tokens_decoder().items() if t.special)
    added = sorted(tok.get_added_tokens_decoder())
    bytes_ = byte_token_ids(tok)
    out = []
    for k in range(RANDOM_SEQUENCES):
        length = rng.randint(1, 96)
        seq = []
        for _ in range(length):
            r = rng.random()
            if k % 3 == 0 or r < 0.45:
                seq.append(rng.randrange(n))
            elif r < 0.85:
                seq.append(rng.choice(bytes_))
            elif r < 0.93:
                seq.append(rng.choice(special))
            else:
                seq.append(rng.choice(added))
        out.append(seq)
    return out


def case(tok, hf, text):
    bos = hf.bos_token
    e_special = tok.encode(text, add_special_tokens=True)
    e_plain = tok.encode(text, add_special_tokens=False)
    ids_special = e_special.ids
    rec = {
        "text": text,
        "ids_special": ids_special,
        "ids_plain": e_plain.ids,
        "tokens_special": e_special.tokens,
        "decode_keep": tok.decode(ids_special, skip_special_tokens=False),
        "decode_skip": tok.decode(ids_special, skip_special_tokens=True),
    }
    add = bos is None or not text.startswith(bos)
    rec["prompt_ids"] = tok.encode(text, add_special_tokens=add).ids

    # transformers on the same calls; kept only where it differs.
    theirs = {
        "ids_special": hf.encode(text, add_special_tokens=True),
        "ids_plain": hf.encode(text, add_special_tokens=False),
        "decode_keep": hf.decode(ids_special, skip_special_tokens=False),
        "decode_skip": hf.decode(ids_special, skip_special_tokens=True),
        "prompt_ids": hf.encode(text, add_special_tokens=add),
    }
    diff = {k: v for k, v in theirs.items() if v != rec[k]}
    if diff:
        rec["transformers"] = diff
    return rec


def decode_case(tok, hf, ids):
    rec = {
        "ids": ids,
        "decode_keep": tok.decode(ids, skip_special_tokens=False),
        "decode_skip": tok.decode(ids, skip_special_tokens=True),
    }
    theirs = {
        "decode_keep": hf.decode(ids, skip_special_tokens=False),
        "decode_skip": hf.decode(ids, skip_special_tokens=True),
    }
    diff = {k: v for k, v in theirs.items() if v != rec[k]}
    if diff:
        rec["transformers"] = diff
    return rec


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tokenizer_refs.py OUT.json")
    # transformers warns once per tokenizer about settings it ignores; the differences
    # are recorded in the output instead.
    hf_logging.set_verbosity_error()
    rng = random.Random(20240607)
    out = {"tokenizers_version": __import__("tokenizers").__version__,
           "transformers_version": __import__("transformers").__version__,
           "tokenizers": {}}
    for name in TOKENIZERS:
        tok, hf = load(name)
        added = tok.get_added_tokens_decoder()
        meta = {
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "vocab_size_without_added": tok.get_vocab_size(with_added_tokens=False),
            "added_tokens": [{"id": i, "content": t.content, "special": t.special}
                             for i, t in sorted(added.items())],
            "bos_token": hf.bos_token,
            "bos_token_id": hf.bos_token_id,
            "eos_token": hf.eos_token,
            "eos_token_id": hf.eos_token_id,
            "adds_bos": bool(hf.bos_token_id is not None
                             and tok.encode("", add_special_tokens=True).ids[:1] == [hf.bos_token_id]),
            # transformers' view, for the differences it documents.
            "transformers_len": len(hf),
            "transformers_all_special_ids": sorted(hf.all_special_ids),
            "transformers_clean_up_tokenization_spaces": bool(getattr(hf, "clean_up_tokenization_spaces", False)),
            # A few ids and their tokens, for id_to_token / token_to_id.
            "id_tokens": [[i, tok.id_to_token(i)] for i in
                          sorted({0, 1, 2, 100, 1000, 12345, tok.get_vocab_size(False) - 1}
                                 | set(list(added)[:5]))],
        }
        cases = [case(tok, hf, t) for t in CORPUS]
        decodes = [decode_case(tok, hf, ids) for ids in random_sequences(tok, rng)]
        out["tokenizers"][name] = {"meta": meta, "cases": cases, "decodes": decodes}
        nd = sum("transformers" in c for c in cases) + sum("transformers" in d for d in decodes)
        print(f"{name}: {len(cases)} texts, {len(decodes)} id sequences, "
              f"{nd} where transformers differs", file=sys.stderr)

    out_dir = Path(sys.argv[1]).parent
    out["variants"] = {}
    base = out["tokenizers"]["gemma3"]
    seqs = [c["ids_special"] for c in base["cases"]] + [d["ids"] for d in base["decodes"]]
    for name, decoder in VARIANTS.items():
        tok = Tokenizer.from_file(str(ROOT / ".deps" / "tokenizers" / "gemma3" / "tokenizer.json"))
        tok.decoder = decoder()
        folder = out_dir / "tokenizer_variants" / name
        folder.mkdir(parents=True, exist_ok=True)
        tok.save(str(folder / "tokenizer.json"))
        out["variants"][name] = {"decodes": [
            {"ids": ids, "decode_keep": tok.decode(ids, skip_special_tokens=False),
             "decode_skip": tok.decode(ids, skip_special_tokens=True)} for ids in seqs]}
        print(f"{name}: {len(seqs)} id sequences", file=sys.stderr)

    folder = out_dir / "tokenizer_variants" / "qwen3_truncation"
    folder.mkdir(parents=True, exist_ok=True)
    src = ROOT / ".deps" / "tokenizers" / "qwen3"
    spec = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    spec["truncation"] = {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}
    spec["padding"] = {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": None,
                       "pad_id": 151643, "pad_type_id": 0, "pad_token": "<|endoftext|>"}
    (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text((src / "tokenizer_config.json").read_text(encoding="utf-8"),
                                                  encoding="utf-8")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(folder))
    out["truncation_variant"] = [
        {"text": t, "tokenizers_ids": tok.encode(t).ids, "transformers_ids": hf.encode(t)}
        for t in ["hi", "one two three four five six seven", CORPUS[20]]]

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
