"""Reference values for the GGUF tests, computed with llama.cpp's own Python library (`gguf`),
transformers and mlx-lm -- never with the engine's code.

Usage: gguf_refs.py MODELS_DIR OUT_DIR [--no-generate]

MODELS_DIR is .deps/models (as scripts/fetch_models.sh fills it); the fixtures are read from
its sibling fixtures/ (scripts/make_fixtures.py).

Writes to OUT_DIR:
  synthetic.gguf             written by gguf's GGUFWriter: metadata of every value type
                             (arrays, nested arrays, a custom alignment of 64) and one tensor
                             of every supported type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
                             Q8_0 (quantized by gguf from random normals), Q2_K...Q6_K (random
                             blocks: gguf cannot quantize these; blocks whose values would not
                             be finite are drawn again), plus 1-D and 3-D F32 tensors
  synthetic.safetensors      each tensor dequantized by gguf.quants.dequantize (float32, in the
                             row-major shape)
  synthetic.json             the metadata as given to the writer: key -> [type name, value]
  fixture-NAME.gguf          the random-weight fixtures llama-linear, qwen2 and qwen3 (made by
                             make_fixtures.py) written as llama.cpp's converter writes them
  unsupported_type.gguf      a llama-shaped file whose one tensor is IQ4_NL (a type the engine
                             does not read)
  smollm2-hf/                SmolLM2-135M-Instruct as an HF folder made from the GGUF file by
                             this script alone: every tensor dequantized by gguf, the llama q/k
                             rows un-permuted as transformers does (reverse_permute_weights),
                             renamed to HF names, config.json from the metadata, and the
                             tokenizer transformers builds from the GGUF metadata
                             (convert_gguf_tokenizer; its GGUF reader needs PyTorch, so the
                             metadata is read with gguf's reader and handed over as
                             transformers' get_gguf_tokenizer would)
  smollm2-hf.safetensors/.json  mlx-lm's greedy tokens and logits on smollm2-hf, in the format
                             of scripts/reference_outputs.py (which runs them, with OpenBLAS)
  smollm2_tokenizer.json     that tokenizer's encodings and decodings of the tokenizer corpus
                             (see tokenizer_refs below for the one way it differs)

--no-generate skips the mlx-lm run (about a minute and a half).
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_outputs as ro  # noqa: E402  (re-executes with OpenBLAS preloaded first)

import gguf  # noqa: E402
import mlx.core as mx  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUANTIZABLE = [Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]
RANDOM_BLOCKS = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
ROWS, COLS = 3, 512


def random_blocks(qtype, rows, cols, rng):
    """Random bytes for `rows` x `cols` values of qtype, redrawn until every value is finite."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows, cols // block * size), dtype=np.uint8)
    for _ in range(100):
        values = gguf.quants.dequantize(data, qtype).reshape(rows, cols // block, block)
        bad = ~np.isfinite(values).all(axis=-1)
        if not bad.any():
            return data
        blocks = data.reshape(rows, cols // block, size)
        blocks[bad] = rng.integers(0, 256, size=(int(bad.sum()), size), dtype=np.uint8)
    raise RuntimeError(f"cannot draw finite {qtype.name} blocks")


def synthetic(out):
    rng = np.random.default_rng(7)
    path = out / "synthetic.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_custom_alignment(64)
    meta = {}

    def kv(key, value, vtype, sub=None):
        w.add_key_value(key, value, vtype, sub_type=sub)
        meta[key] = [vtype.name, value]

    V = gguf.GGUFValueType
    kv("test.u8", 200, V.UINT8)
    kv("test.i8", -100, V.INT8)
    kv("test.u16", 60000, V.UINT16)
    kv("test.i16", -30000, V.INT16)
    kv("test.u32", 4_000_000_000, V.UINT32)
    kv("test.i32", -2_000_000_000, V.INT32)
    kv("test.f32", 0.15625, V.FLOAT32)
    kv("test.bool", True, V.BOOL)
    kv("test.string", "héllo, wörld ✓", V.STRING)
    kv("test.u64", 2**63 + 5, V.UINT64)
    kv("test.i64", -(2**62), V.INT64)
    kv("test.f64", 1.0 / 3.0, V.FLOAT64)
    kv("test.array_i32", [1, -2, 3], V.ARRAY, V.INT32)
    kv("test.array_str", ["a", "", "ß c"], V.ARRAY, V.STRING)
    kv("test.array_f32", [0.5, -1.25], V.ARRAY, V.FLOAT32)
    kv("test.array_nested", [[1, 2], [3]], V.ARRAY, V.ARRAY)

    expected = {}
    for qt in QUANTIZABLE:
        x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
        data = gguf.quants.quantize(x, qt)
        name = f"t.{qt.name.lower()}"
        w.add_tensor(name, data, raw_dtype=qt)
        expected[name] = gguf.quants.dequantize(data, qt).reshape(ROWS, COLS)
    for qt in RANDOM_BLOCKS:
        data = random_blocks(qt, ROWS, COLS, rng)
        name = f"t.{qt.name.lower()}"
        w.add_tensor(name, data, raw_dtype=qt)
        expected[name] = gguf.quants.dequantize(data, qt).reshape(ROWS, COLS)
    for name, shape in [("t.f32", (ROWS, COLS)), ("t.vector", (7,)), ("t.cube", (2, 3, 4))]:
        x = rng.standard_normal(shape).astype(np.float32)
        w.add_tensor(name, x)
        expected[name] = x
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Read back with gguf's own reader: the shapes it reports must be the ones recorded.
    r = gguf.GGUFReader(str(path))
    for t in r.tensors:
        assert tuple(int(d) for d in reversed(t.shape)) == expected[t.name].shape, t.name
    mx.save_safetensors(str(out / "synthetic.safetensors"),
                        {k: mx.array(np.ascontiguousarray(v, dtype=np.float32)) for k, v in expected.items()})
    meta["general.architecture"] = ["STRING", "llama"]
    meta["general.alignment"] = ["UINT32", 64]
    with open(out / "synthetic.json", "w", encoding="utf-8") as f:
        json.dump({"metadata": meta, "tensors": {k: list(v.shape) for k, v in expected.items()}},
                  f, ensure_ascii=False, indent=1)

    w = gguf.GGUFWriter(str(out / "unsupported_type.gguf"), "llama")
    data = rng.integers(0, 256, size=(2, 32 // 32 * 18), dtype=np.uint8)
    w.add_tensor("blk.0.attn_q.weight", data, raw_dtype=Q.IQ4_NL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# HF names -> llama.cpp names (the inverse of what the engine maps), per layer part.
HF_TO_GGUF = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
FIXTURES_AS_GGUF = ["llama-linear", "qwen2", "qwen3"]


def fixture_as_gguf(fixture, path):
    """Writes an HF fixture as llama.cpp's converter would (convert_hf_to_gguf.py): its names,
    its metadata keys, and for llama its q/k row permutation (LlamaModel.permute); weights in
    float32 (the fixtures' bf16/f16 values convert exactly)."""
    cfg = json.loads((fixture / "config.json").read_text())
    arch = cfg["model_type"]
    w = gguf.GGUFWriter(str(path), arch)
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add_uint32(f"{arch}.block_count", cfg["num_hidden_layers"])
    w.add_uint32(f"{arch}.context_length", cfg["max_position_embeddings"])
    w.add_uint32(f"{arch}.embedding_length", cfg["hidden_size"])
    w.add_uint32(f"{arch}.feed_forward_length", cfg["intermediate_size"])
    w.add_uint32(f"{arch}.attention.head_count", n_head)
    w.add_uint32(f"{arch}.attention.head_count_kv", n_kv)
    w.add_float32(f"{arch}.rope.freq_base", float(cfg["rope_theta"]))
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"])
    if "head_dim" in cfg:
        w.add_uint32(f"{arch}.attention.key_length", cfg["head_dim"])
        w.add_uint32(f"{arch}.attention.value_length", cfg["head_dim"])
    scaling = cfg.get("rope_scaling") or {}
    if scaling.get("type", scaling.get("rope_type")) == "linear":
        w.add_string(f"{arch}.rope.scaling.type", "linear")
        w.add_float32(f"{arch}.rope.scaling.factor", float(scaling["factor"]))
    weights = {}
    for f in sorted(fixture.glob("*.safetensors")):
        weights.update(mx.load(str(f)))
    for name, a in sorted(weights.items()):
        x = np.array(a.astype(mx.float32))
        if name == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif name == "model.norm.weight":
            g = "output_norm.weight"
        elif name == "lm_head.weight":
            if cfg.get("tie_word_embeddings"):
                continue
            g = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            part, kind = rest.rsplit(".", 1)
            g = f"blk.{layer}.{HF_TO_GGUF[part]}.{kind}"
            if arch == "llama" and part in ("self_attn.q_proj", "self_attn.k_proj"):
                heads = n_head if part == "self_attn.q_proj" else n_kv
                x = x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)
        w.add_tensor(g, np.ascontiguousarray(x))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def metadata(reader):
    out = {}
    for k, f in reader.fields.items():
        if not k.startswith("GGUF."):
            out[k] = f.contents()
    return out


def hf_folder(gguf_path, out):
    """SmolLM2 as an HF folder, made with gguf and transformers only."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)

    r = gguf.GGUFReader(str(gguf_path))
    meta = metadata(r)
    arch = meta["general.architecture"]
    assert arch == "llama", arch
    m = lambda k: meta[f"{arch}.{k}"]  # noqa: E731
    n_head, n_kv = m("attention.head_count"), m("attention.head_count_kv")

    names = {
        "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    }
    tensors = {}
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        x = x.reshape([int(d) for d in reversed(t.shape)])
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif t.name == "output.weight":
            name = "lm_head.weight"
        else:
            _, layer, part, kind = t.name.split(".")
            name = f"model.layers.{layer}.{names[part]}.{kind}"
            if part in ("attn_q", "attn_k"):
                # transformers' reverse_permute_weights.
                heads = n_head if part == "attn_q" else n_kv
                dim = x.shape[0] // heads // 2
                x = x.reshape(heads, dim, 2, *x.shape[1:]).swapaxes(2, 1).reshape(x.shape)
        tensors[name] = mx.array(np.ascontiguousarray(x))
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), tensors, metadata={"format": "pt"})

    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": m("embedding_length"),
        "intermediate_size": m("feed_forward_length"),
        "num_hidden_layers": m("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": m("rope.dimension_count"),
        "rms_norm_eps": m("attention.layer_norm_rms_epsilon"),
        "rope_theta": m("rope.freq_base"),
        "max_position_embeddings": m("context_length"),
        "vocab_size": int(r.get_tensor(0).shape[1]) if r.tensors[0].name == "token_embd.weight"
        else m("vocab_size"),
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "torch_dtype": "float32",
    }
    with open(out / "config.json", "w") as f:
        json.dump(config, f, indent=1)

    # transformers' get_gguf_tokenizer, over gguf's reader instead of transformers' (which
    # imports PyTorch).
    grouped = {g: {name: meta[f"tokenizer.{key}"] for key, name in ren.items() if f"tokenizer.{key}" in meta}
               for g, ren in GGUF_TOKENIZER_MAPPING.items()}
    tok_dict, tok_config = grouped["tokenizer"], grouped["tokenizer_config"]
    for name, key in {"bos_token": "bos_token_id", "eos_token": "eos_token_id",
                      "unk_token": "unknown_token_id", "pad_token": "padding_token_id"}.items():
        i = meta.get(f"tokenizer.ggml.{key}")
        tok_config[name] = tok_dict["tokens"][i] if i is not None else None
    backend, _ = convert_gguf_tokenizer(arch, tok_dict)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **tok_config)
    tokenizer.save_pretrained(str(out))
    return tokenizer


def tokenizer_refs(tokenizer, out):
    """Encodings of the tokenizer corpus by transformers' GGUF tokenizer, as built and with
    SmolLM2's own pre-tokenizer.

    transformers builds every `gpt2` GGUF vocabulary with GPT-2's ByteLevel split and ignores
    `tokenizer.ggml.pre`; llama.cpp reads this file's `smollm` as: numerals one by one, then
    GPT-2's split -- which is what SmolLM2's tokenizer.json does (Digits with
    individual_digits, then ByteLevel). ASCII digits come out the same either way (the
    vocabulary has no multi-digit tokens); other numerals (½, ²) do not. "ids" are the
    encodings with SmolLM2's pre-tokenizer, "ids_transformers" those of the tokenizer as
    transformers builds it.
    """
    import copy

    import tokenizer_refs as tr
    from tokenizers import pre_tokenizers

    real = copy.deepcopy(tokenizer)
    real.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    cases = []
    for text in tr.CORPUS:
        ids = real.encode(text, add_special_tokens=False)
        cases.append({
            "text": text,
            "ids": ids,
            "ids_special": real.encode(text, add_special_tokens=True),
            "ids_transformers": tokenizer.encode(text, add_special_tokens=False),
            "decoded": tokenizer.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
        })
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False, indent=1)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    models, out = Path(args[0]), Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    synthetic(out)
    for name in FIXTURES_AS_GGUF:
        fixture_as_gguf(models.parent / "fixtures" / name, out / f"fixture-{name}.gguf")
    tokenizer = hf_folder(models / SMOLLM2, out / "smollm2-hf")
    tokenizer_refs(tokenizer, out / "smollm2_tokenizer.json")
    if "--no-generate" not in sys.argv:
        ro.run_fixture(out / "smollm2-hf", out)


if __name__ == "__main__":
    main()
