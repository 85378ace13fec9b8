"""Writes the fuzz targets' seed corpora, fuzz/corpus/<target>/: small real inputs.

Run once with the project's virtualenv (it has numpy and llama.cpp's `gguf` library),
after scripts/setup.sh made the fixtures:

    .deps/venv/bin/python fuzz/make_seeds.py

The seeds are committed; libFuzzer's -merge=1 (scripts/fuzz.sh --merge) later folds in what
the runs found. Every seed is kept small (the corpus stays well under 2 MB).
"""
import json
import struct
from pathlib import Path

import numpy as np
import gguf

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / ".deps/fixtures"
QUANT = ROOT / ".deps/fixtures-quant"
OUT = ROOT / "fuzz/corpus"


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """The bytes of a safetensors file holding `tensors` (name -> (dtype, shape, bytes))."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    f32 = lambda n: np.arange(n, dtype=np.float32).tobytes()
    put("safetensors_header", "tiny_f32", safetensors({"model.embed_tokens.weight": ("F32", [4, 8], f32(32)),
                                                       "model.norm.weight": ("F32", [8], f32(8))}, {"format": "pt"}))
    put("safetensors_header", "bf16_u32_scales", safetensors({
        "model.layers.0.mlp.up_proj.weight": ("U32", [2, 2], b"\x01" * 16),
        "model.layers.0.mlp.up_proj.scales": ("BF16", [2, 1], b"\x80\x3f" * 2),
        "model.layers.0.mlp.up_proj.biases": ("BF16", [2, 1], b"\x00\x00" * 2),
        "lm_head.weight": ("F16", [1, 2], b"\x00\x3c" * 2),
    }))
    put("safetensors_header", "empty", safetensors({}))
    put("safetensors_header", "scalar_and_bool", safetensors({"a": ("BOOL", [], b"\x01"), "b": ("I64", [0], b"")}))
    # A real header (the qwen3 fixture's) with its data cut off: checked, then refused.
    raw = (FIX / "qwen3/model.safetensors").open("rb").read(8)
    n = struct.unpack("<Q", raw)[0]
    put("safetensors_header", "qwen3_header_only", (FIX / "qwen3/model.safetensors").open("rb").read(8 + n))


def config_seeds():
    for d in sorted(p for p in FIX.iterdir() if (p / "config.json").is_file()):
        put("config_json", d.name, (d / "config.json").read_bytes())
    for d in sorted(p for p in QUANT.iterdir() if (p / "config.json").is_file()):
        if "mixed" in d.name or "q4" in d.name:
            put("config_json", d.name, (d / "config.json").read_bytes())


def gguf_seeds():
    tmp = OUT / "gguf_reader"
    tmp.mkdir(parents=True, exist_ok=True)

    def write(name, arch, tensors, tokens=True, extra=None):
        path = tmp / name
        w = gguf.GGUFWriter(str(path), arch)
        w.add_block_count(1)
        w.add_embedding_length(32)
        w.add_feed_forward_length(64)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_context_length(128)
        if tokens:
            w.add_tokenizer_model("gpt2")
            w.add_tokenizer_pre("smollm")
            w.add_token_list(["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġa"])
            w.add_token_types([3, 1, 1, 1, 1, 1])
            w.add_token_merges(["a b", "Ġ a"])
            w.add_eos_token_id(0)
            w.add_bos_token_id(0)
            w.add_add_bos_token(False)
            w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
        for k, v in (extra or {}).items():
            w.add_string(k, v)
        for tname, (arr, qtype) in tensors.items():
            if qtype is None:
                w.add_tensor(tname, arr)
            else:
                q = gguf.quants.quantize(arr, qtype)
                w.add_tensor(tname, q, raw_shape=q.shape, raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    rng = np.random.default_rng(0)
    m = lambda r, c: rng.standard_normal((r, c)).astype(np.float32)
    T = gguf.GGMLQuantizationType
    write("llama_f32_q8_q4", "llama", {
        "token_embd.weight": (m(6, 32), T.Q8_0),
        "output_norm.weight": (np.ones(32, np.float32), None),
        "blk.0.attn_q.weight": (m(32, 32), T.Q4_0),
        "blk.0.attn_k.weight": (m(16, 32), T.Q4_1),
        "blk.0.ffn_down.weight": (m(32, 64), T.F16),
    })
    write("qwen3_no_tokenizer", "qwen3", {"token_embd.weight": (m(6, 32), None)}, tokens=False)
    write("gemma3_meta_only", "gemma3", {}, extra={"general.name": "fuzz seed"})


def tokenizer_seeds():
    texts = {
        "ascii": "Hello, world! The quick brown fox jumps over the lazy dog. 12345",
        "unicode": "Grüße, 世界! Привет 👋🏽 مرحبا \t\n  spaces   and\ttabs",
        "special": "<|im_start|>user\nhi<|im_end|>\n<start_of_turn>model\n<|begin_of_text|><|eot_id|><think></think>",
        "code": "def f(x):\n    return x ** 2  # comment\n\n\n",
    }
    for t in range(3):
        for name, text in texts.items():
            put("tokenizer", f"{name}_{t}", bytes([t]) + text.encode())
        put("tokenizer", f"bad_utf8_{t}", bytes([t]) + b"abc\xff\xfe\xe4\xb8def\xf0\x9f")
        # Ids (high bit: ids mode; 0x40: skip special tokens).
        ids = [0, 1, 2, 100, 1000, 151643, 151644, 128000, 128009, 2, 106, 107, 256, 300]
        put("tokenizer", f"ids_{t}", bytes([0x80 | t]) + b"".join(struct.pack("<I", i) for i in ids))
        put("tokenizer", f"ids_skip_{t}", bytes([0xC0 | t]) + b"".join(struct.pack("<I", i) for i in ids))


def chat_seeds():
    conv = [("system", "You are terse."), ("user", "Hi there! 世界"), ("assistant", "<think>hm</think>Hello."),
            ("user", "Again?")]
    body = b"".join(b"\0" + r.encode() + b"\0" + c.encode() for r, c in conv)
    for i, name in enumerate(["qwen3", "llama3", "gemma3"], start=1):
        put("chat_template", f"{name}_conv", bytes([0x80 | i]) + body)
        put("chat_template", f"{name}_kwargs", bytes([0x80 | i]) + body + b'\0{"enable_thinking": false, "tools": [{"type": "function", "function": {"name": "f"}}]}')
    for name in ["qwen3", "llama3", "gemma3"]:
        src = json.loads((FIX / name / "tokenizer_config.json").read_text())["chat_template"]
        put("chat_template", f"{name}_source", b"\0" + src.encode() + body)
    snippets = {
        "loop": "{% for m in messages %}{{ m.role | upper }}: {{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}",
        "methods": "{{ messages[0].content.split(' ') | join('|') }}{{ messages[0].content.startswith('Hi') }}{{ bos_token }}",
        "raise": "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}",
        "macro": "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(5) }}{{ messages | tojson }}",
        "generation": "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}{{ strftime_now('%Y') }}",
        "dict": "{% set d = {'a': 1} %}{% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %}{{ messages[-1]['content'][::-1] }}",
    }
    for name, src in snippets.items():
        put("chat_template", f"own_{name}", b"\0" + src.encode() + body)


def capi_seeds():
    # Selector byte (0 load, 1 generate, 2 chat, 3 discover, 4 outputs), then field bytes.
    for sel in range(5):
        put("capi_params", f"defaults_{sel}", bytes([sel]) + bytes(48))
        put("capi_params", f"ones_{sel}", bytes([sel]) + bytes([1]) * 48)
        put("capi_params", f"mixed_{sel}", bytes([sel]) + bytes(range(3, 200, 3)))


if __name__ == "__main__":
    safetensors_seeds()
    config_seeds()
    gguf_seeds()
    tokenizer_seeds()
    chat_seeds()
    capi_seeds()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"seeds: {sum(1 for p in OUT.rglob('*') if p.is_file())} files, {total} bytes")
