"""GGUF files of two llama-architecture features, for tests/gguf.rs.

Usage: gguf_llama_refs.py FIXTURES_DIR OUT_DIR

1. Per-frequency rotary factors (`rope_freqs.weight`), as llama.cpp's converter writes
Llama 3.1 and later models. Writes OUT_DIR/fixture-llama3-rope-freqs.gguf: the llama3 fixture (scripts/make_fixtures.py,
`rope_scaling` of type llama3) written by scripts/gguf_refs.py's fixture_as_gguf, plus the
tensor `rope_freqs.weight` computed from the fixture's config exactly as
convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors does (float32 frequencies, the
original context length read from the top level of the config, 8192 when absent there).
The llama3 `rope_scaling` itself is not written as metadata, as llama.cpp does not.

mlx-lm's outputs on the fixture folder (.deps/refs/generate/llama3) are the reference: the
test checks that `mlxrun convert` gives that folder's weights and scaling back.

2. A SentencePiece vocabulary (`tokenizer.ggml.model` = "llama", as Llama 2 and Mistral
files carry): tokens spelled with U+2581 for spaces, scores, token types (unknown, control,
user-defined, the 256 byte tokens `<0xNN>`), no merges, `add_space_prefix`. Writes
OUT_DIR/spm_tokenizer.gguf (metadata only, written by gguf's GGUFWriter) and
OUT_DIR/spm_tokenizer.json: transformers' tokenizer built from that metadata
(convert_gguf_tokenizer, merges recovered from the scores) on the tokenizer corpus of
scripts/tokenizer_refs.py -- encodings with and without BOS and decodings.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gguf_refs  # noqa: E402  (re-executes with OpenBLAS preloaded first)

import gguf  # noqa: E402

FIXTURE = "llama3"
OUT_NAME = "fixture-llama3-rope-freqs.gguf"
SPM_NAME = "spm_tokenizer"

# Pieces of a small English vocabulary, best first (scores fall with the position), plus
# whitespace runs; every other byte falls back to <0xNN>.
SPM_PIECES = [
    "\u2581t", "he", "\u2581the", "\u2581a", "in", "\u2581in", "er", "\u2581o", "\u2581of", "on", "an",
    "re", "\u2581and", "is", "\u2581is", "at", "en", "\u2581T", "\u2581The", "\u2581qu", "ick", "\u2581quick",
    "ow", "\u2581br", "\u2581brown", "\u2581f", "ox", "\u2581fox", "\u2581\u2581", "\u2581\u2581\u2581\u2581",
    "ll", "\u2581he", "llo", "\u2581hello", "\u2581w", "or", "ld", "\u2581world", "\u2581wor", "es", "ing",
    "\u2581s", "\u2581c", "it", "\u2581d", "ed", "\u25811", "00", "\u2581100", "\u00e9", "\u4eba",
]
SPM_SINGLES = list("\u2581etaoinshrdlcumwfgypbvkjxqzTIAHSWBE0123456789.,!?'-()")


def spm_tokenizer(out):
    import tokenizer_refs as tr
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)

    T = gguf.TokenType
    tokens, types = ["<unk>", "<s>", "</s>"], [T.UNKNOWN, T.CONTROL, T.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [T.BYTE] * 256
    tokens += ["<|im_start|>", "<think>"]
    types += [T.CONTROL, T.USER_DEFINED]
    for piece in SPM_PIECES + SPM_SINGLES:
        if piece not in tokens:
            tokens.append(piece)
            types.append(T.NORMAL)
    scores = [0.0] * 3 + [0.0] * 256 + [0.0, 0.0] + [-float(i) for i in range(len(tokens) - 261)]
    path = out / f"{SPM_NAME}.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types([int(t) for t in types])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # transformers' get_gguf_tokenizer over gguf's reader (as scripts/gguf_refs.py does).
    meta = gguf_refs.metadata(gguf.GGUFReader(str(path)))
    grouped = {g: {name: meta[f"tokenizer.{key}"] for key, name in ren.items() if f"tokenizer.{key}" in meta}
               for g, ren in GGUF_TOKENIZER_MAPPING.items()}
    tok_dict, tok_config = grouped["tokenizer"], grouped["tokenizer_config"]
    for name, key in {"bos_token": "bos_token_id", "eos_token": "eos_token_id",
                      "unk_token": "unknown_token_id"}.items():
        tok_config[name] = tok_dict["tokens"][meta[f"tokenizer.ggml.{key}"]]
    backend, _ = convert_gguf_tokenizer("llama", tok_dict)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **tok_config)
    corpus = tr.CORPUS + ["  two leading spaces", "The quick brown fox", "<think>the</think> <|im_start|>is"]
    cases = []
    for text in corpus:
        ids = tokenizer.encode(text, add_special_tokens=True)
        cases.append({
            "text": text,
            "ids_special": ids,
            "ids_plain": tokenizer.encode(text, add_special_tokens=False),
            "decode_keep": tokenizer.decode(ids, skip_special_tokens=False),
            "decode_skip": tokenizer.decode(ids, skip_special_tokens=True),
        })
    with open(out / f"{SPM_NAME}.json", "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False, indent=1)


def rope_factors(cfg):
    """llama.cpp's LlamaModel.generate_extra_tensors, in numpy float32 for torch's."""
    scaling = cfg["rope_scaling"]
    assert scaling.get("rope_type", "").lower() == "llama3", scaling
    base = cfg.get("rope_theta", 10000.0)
    dim = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    freqs = (1.0 / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))).astype(np.float32)
    factor = scaling.get("factor", 8.0)
    low = scaling.get("low_freq_factor", 1.0)
    high = scaling.get("high_freq_factor", 4.0)
    old = cfg.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = np.float32(2 * math.pi) / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fixtures, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    fixture = fixtures / FIXTURE
    factors = rope_factors(json.loads((fixture / "config.json").read_text()))

    class WithRopeFactors(gguf.GGUFWriter):
        """The converter adds rope_freqs.weight beside the other tensors."""

        def write_header_to_file(self, *args, **kwargs):
            self.add_tensor("rope_freqs.weight", factors)
            return super().write_header_to_file(*args, **kwargs)

    gguf_refs.gguf.GGUFWriter = WithRopeFactors
    gguf_refs.fixture_as_gguf(fixture, out / OUT_NAME)
    print(f"{OUT_NAME}: rope_freqs.weight = {factors.tolist()}")
    spm_tokenizer(out)


if __name__ == "__main__":
    main()
