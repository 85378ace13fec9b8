"""SmolLM2's Q4_1 GGUF kept quantized, as MLX's own GGUF reader keeps it, and what mlx-lm
generates from it.

Usage: gguf_quant_refs.py MODELS_DIR GGUF_REFS_DIR OUT_DIR

  OUT_DIR/smollm2-q/     an mlx-lm quantized folder made without the engine's code:
                         mx.load() of the GGUF file (MLX's reader maps Q4_0/Q4_1/Q8_0 onto
                         affine quantization with group size 32: weight, float16 scales and
                         biases), renamed to HF names and q/k rows un-permuted as
                         gguf_refs.py does for the dense folder (whole rows of the packed
                         weight, scales and biases move), config.json and the tokenizer of
                         GGUF_REFS_DIR/smollm2-hf plus a "quantization" entry (the most
                         common bits as default, per-layer entries for the others)
  OUT_DIR/smollm2-q.safetensors / .json
                         mlx-lm's greedy generation on it in reference_outputs.py's format,
                         float32 only (model.set_dtype(float32) casts scales and biases, as
                         the engine computes by default), prompts "hello" and "english",
                         16 tokens each (MLX's CPU quantized matmul is slow)
"""

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_outputs as ro  # noqa: E402  (re-executes with OpenBLAS preloaded)

import mlx.core as mx  # noqa: E402

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def hf_name(name):
    """llama.cpp tensor name (with .weight/.scales/.biases) → HF name."""
    base, kind = name.rsplit(".", 1)
    top = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    if base in top:
        return f"{top[base]}.{kind}", None
    _, layer, part = base.split(".")
    return f"model.layers.{layer}.{NAMES[part]}.{kind}", part


def quantized_folder(gguf_path, dense_dir, out):
    weights, meta = mx.load(str(gguf_path), return_metadata=True)
    n_head = int(meta["llama.attention.head_count"].item())
    n_kv = int(meta["llama.attention.head_count_kv"].item())
    tensors, bits = {}, {}
    for name, x in weights.items():
        hf, part = hf_name(name)
        if part in ("attn_q", "attn_k"):
            heads = n_head if part == "attn_q" else n_kv
            dim = x.shape[0] // heads // 2
            x = x.reshape(heads, dim, 2, *x.shape[1:]).swapaxes(2, 1).reshape(x.shape)
        tensors[hf] = x
    for hf, x in tensors.items():
        if hf.endswith(".scales"):
            prefix = hf[: -len(".scales")]
            cols = x.shape[-1] * 32
            bits[prefix] = tensors[f"{prefix}.weight"].shape[-1] * 32 // cols
    default = Counter(bits.values()).most_common(1)[0][0]
    quant = {"group_size": 32, "bits": default, "mode": "affine"}
    for prefix, b in sorted(bits.items()):
        if b != default:
            quant[prefix] = {"group_size": 32, "bits": b, "mode": "affine"}

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in dense_dir.iterdir():
        if f.name != "model.safetensors" and f.is_file():
            shutil.copy(f, out / f.name)
    with open(dense_dir / "config.json") as f:
        config = json.load(f)
    config["quantization"] = quant
    config["quantization_config"] = quant
    with open(out / "config.json", "w") as f:
        json.dump(config, f, indent=1)
    mx.save_safetensors(str(out / "model.safetensors"), tensors, metadata={"format": "mlx"})
    return quant


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    models, gguf_refs, out = (Path(a) for a in sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    quant = quantized_folder(models / SMOLLM2, gguf_refs / "smollm2-hf", out / "smollm2-q")
    print("quantization:", quant)

    original_prompts = ro.prompts
    ro.prompts = lambda tok: [(n, t) for n, t in original_prompts(tok) if n in ("hello", "english")]
    ro.stored_dtype = lambda model: "float32"  # float32 only (see the docstring)
    ro.MAX_TOKENS = 16
    ro.LOGPROB_STEPS = [0, 1, 15]
    ro.run_fixture(out / "smollm2-q", out)


if __name__ == "__main__":
    main()
