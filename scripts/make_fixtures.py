"""Builds small random-weight checkpoints in the real Hugging Face layout, one per family.

The engine's end-to-end tests load these exactly as they would load a downloaded model:
config.json (+ generation_config.json), the family's real tokenizer.json and
tokenizer_config.json, and safetensors weights under the HF tensor names. The weights are
random but seeded, so every run writes byte-identical files.

Usage: make_fixtures.py OUT_DIR
       make_fixtures.py --bench-model NAME OUT_DIR   (one benchmark model of a real model's
                         shape: gemma3-1b, qwen3-0.6b or llama3.2-1b, see BENCH_MODELS)

Each fixture goes to OUT_DIR/<name>/, replacing whatever was there. The tokenizers are read
from .deps/tokenizers/<family>/ (the real ones, from scripts/setup.sh); set TOKENIZERS_DIR to
use another folder.

Fixtures (hidden 64, GQA with 4 query heads over 2 KV heads, full real vocabularies so that
every token id the tokenizer can produce is valid):

  llama3        llama, float32, untied lm_head, rope_theta 5e5 with "llama3" rope scaling,
                eos list [128001, 128008, 128009] (Llama 3.1 Instruct)
  llama-linear  llama, bfloat16, tied embeddings, "linear" rope scaling (factor 2),
                sharded over 3 files with model.safetensors.index.json (base-model eos)
  qwen3         qwen3, float32, tied, per-head q_norm/k_norm, head_dim 32 != hidden/heads
  qwen2         qwen2 (Qwen2.5 layout), float16, untied, q/k/v biases (no o_proj bias)
  gemma3        gemma3_text (Gemma 3 1B layout), bfloat16, tied (no lm_head), 6 layers of
                which every third is global (sliding_window_pattern 3, with the matching
                layer_types list): 4 sliding-window layers with a window of only 16 so that
                every prompt and generation wraps the rotating cache many times, and 2 global
                layers; rope_local_base_freq 1e4 for the sliding layers, rope_theta 1e6 with
                linear scaling (factor 8) for the global ones; query_pre_attn_scalar 48
                (not head_dim 32, so the attention scale is visibly its own field)
  gemma3-mm     gemma3 (Gemma 3 4B multimodal layout), bfloat16: a sparse text_config that
                leaves heads, query_pre_attn_scalar, rope bases, the layer pattern (6) and
                the vocabulary (262208) to their defaults as the released checkpoints do;
                7 layers (sliding, global at index 5, and a sliding layer after it), window
                12, final_logit_softcapping 30; weights under language_model.* plus small
                vision_tower.* / multi_modal_projector.* tensors a text model must skip

Gemma's RMSNorm scales by (1 + weight), so its checkpoints store the offset from 1: the
Gemma fixtures store small noise where the other families store 1 + small noise, and the
final norm stores (its scale - 1). Gemma also multiplies its input embeddings by
sqrt(hidden), so its (tied) embeddings are drawn that much smaller, which keeps the
self-score argument below intact.

Initialisation is chosen so greedy decoding is decided by clear margins, not by rounding:
every linear weight is N(0, 1/fan_in) (activations keep unit scale through the blocks),
norm weights are 1 + small noise (so a missing norm weight shows up but nothing blows up),
and the output projection is scaled so the final logits have a standard deviation of about
LOGIT_STD. With logits that spread, the gap between the top two logits over a vocabulary of
~150k is typically a sizeable fraction of a unit (median ~0.5-1), far above float32 rounding
(~1e-6); over hundreds of steps the smallest gaps still reach ~1e-4, so tests should report
the recorded margin when a token differs.

Tied embeddings need one more choice. With E both the input embedding and the output
projection, the current token's own embedding sits in the residual stream and scores
e_t . e_t against itself, so a random tied model just repeats its input token. Keeping the
embeddings small (TIED_EMBED_STD; the first input_layernorm rescales them anyway) makes that
self-score negligible next to what the blocks add, and the final norm weight makes up the
scale of the logits (~LOGIT_STD / (TIED_EMBED_STD * sqrt(hidden)) = 10 here).
"""

import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOKENIZERS_DIR = Path(os.environ.get("TOKENIZERS_DIR", ROOT / ".deps" / "tokenizers"))

# Target standard deviation of the final logits (see the module docstring).
LOGIT_STD = 4.0
# Standard deviation of tied embedding matrices (see the module docstring).
TIED_EMBED_STD = 0.05

MX_DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}

# The vocabulary sizes of the real models' embedding matrices. They are larger than the
# tokenizers' id ranges (padding rows), as in the released checkpoints.
LLAMA3_VOCAB = 128256
QWEN_VOCAB = 151936
# Gemma 3: 262144 in the text-only (1B) checkpoints, 262208 (rows for the image tokens) in
# the multimodal ones.
GEMMA3_VOCAB = 262144
GEMMA3_MM_VOCAB = 262208

GEMMA3_GENERATION_CONFIG = {
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "do_sample": True,
    "eos_token_id": [1, 106],
    "pad_token_id": 0,
    "top_k": 64,
    "top_p": 0.95,
    "transformers_version": "4.50.0.dev0",
}

FIXTURES = [
    {
        "name": "llama3",
        "tokenizer": "llama3_1",
        "seed": 1001,
        "dtype": "float32",
        "shards": 1,
        "bias_qkv": False,
        "qk_norm": False,
        "config": {
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009],
            "head_dim": 16,
            "hidden_act": "silu",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 128,
            "max_position_embeddings": 131072,
            "mlp_bias": False,
            "model_type": "llama",
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {
                "factor": 8.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
            "rope_theta": 500000.0,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "transformers_version": "4.43.0",
            "use_cache": True,
            "vocab_size": LLAMA3_VOCAB,
        },
        "generation_config": {
            "bos_token_id": 128000,
            "do_sample": True,
            "eos_token_id": [128001, 128008, 128009],
            "temperature": 0.6,
            "top_p": 0.9,
            "transformers_version": "4.43.0",
        },
    },
    {
        "name": "llama-linear",
        "tokenizer": "llama3_1",
        "seed": 1002,
        "dtype": "bfloat16",
        "shards": 3,
        "bias_qkv": False,
        "qk_norm": False,
        "config": {
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": 128000,
            # A base model: only <|end_of_text|>. mlx-lm adds the tokenizer's own
            # eos_token (<|eot_id|>, 128009) to this set.
            "eos_token_id": 128001,
            "head_dim": 16,
            "hidden_act": "silu",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 128,
            "max_position_embeddings": 8192,
            "mlp_bias": False,
            "model_type": "llama",
            "num_attention_heads": 4,
            "num_hidden_layers": 3,
            "num_key_value_heads": 2,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"type": "linear", "factor": 2.0},
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.43.0",
            "use_cache": True,
            "vocab_size": LLAMA3_VOCAB,
        },
        "generation_config": {
            "bos_token_id": 128000,
            "do_sample": True,
            "eos_token_id": 128001,
            "temperature": 0.6,
            "top_p": 0.9,
            "transformers_version": "4.43.0",
        },
    },
    {
        "name": "qwen3",
        "tokenizer": "qwen3",
        "seed": 1003,
        "dtype": "float32",
        "shards": 1,
        "bias_qkv": False,
        "qk_norm": True,
        "config": {
            "architectures": ["Qwen3ForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            # head_dim is deliberately not hidden_size / num_attention_heads (= 16), as in
            # the real Qwen3 models, so q_proj is [heads * head_dim, hidden] = [128, 64].
            "head_dim": 32,
            "hidden_act": "silu",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 192,
            "max_position_embeddings": 40960,
            "max_window_layers": 3,
            "model_type": "qwen3",
            "num_attention_heads": 4,
            "num_hidden_layers": 3,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06,
            "rope_scaling": None,
            "rope_theta": 1000000,
            "sliding_window": None,
            "tie_word_embeddings": True,
            "torch_dtype": "float32",
            "transformers_version": "4.51.0",
            "use_cache": True,
            "use_sliding_window": False,
            "vocab_size": QWEN_VOCAB,
        },
        # As in the real Qwen3 release: config.json names only <|im_end|>, while
        # generation_config.json stops on both ids. Loaders that honour the generation
        # config (mlx-lm does: its eos_token_id replaces config.json's) stop on both.
        "generation_config": {
            "bos_token_id": 151643,
            "do_sample": True,
            "eos_token_id": [151645, 151643],
            "pad_token_id": 151643,
            "temperature": 0.6,
            "top_k": 20,
            "top_p": 0.95,
            "transformers_version": "4.51.0",
        },
    },
    {
        "name": "qwen2",
        "tokenizer": "qwen3",
        "seed": 1004,
        "dtype": "float16",
        "shards": 1,
        "bias_qkv": True,
        "qk_norm": False,
        "config": {
            "architectures": ["Qwen2ForCausalLM"],
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            # A Qwen2.5 base model: <|endoftext|>. mlx-lm adds the tokenizer's eos_token
            # (<|im_end|>, 151645) to this set.
            "eos_token_id": 151643,
            "hidden_act": "silu",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 160,
            "max_position_embeddings": 32768,
            "max_window_layers": 2,
            "model_type": "qwen2",
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06,
            "rope_scaling": None,
            "rope_theta": 1000000.0,
            "sliding_window": 131072,
            "tie_word_embeddings": False,
            "torch_dtype": "float16",
            "transformers_version": "4.43.1",
            "use_cache": True,
            "use_sliding_window": False,
            "vocab_size": QWEN_VOCAB,
        },
        "generation_config": {
            "bos_token_id": 151643,
            "do_sample": False,
            "eos_token_id": 151643,
            "max_new_tokens": 2048,
            "transformers_version": "4.43.1",
        },
    },
    {
        "name": "gemma3",
        "tokenizer": "gemma3",
        "seed": 1005,
        "dtype": "bfloat16",
        "shards": 1,
        "bias_qkv": False,
        "qk_norm": True,
        "arch": "gemma3",
        # Gemma 3 1B's config.json, shrunk. Its layer pattern is given both ways newer
        # transformers write it (sliding_window_pattern and layer_types), consistently.
        "config": {
            "architectures": ["Gemma3ForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": None,
            "bos_token_id": 2,
            "cache_implementation": "hybrid",
            "eos_token_id": [1, 106],
            "final_logit_softcapping": None,
            "head_dim": 32,
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 192,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"] * 2,
            "max_position_embeddings": 32768,
            "model_type": "gemma3_text",
            "num_attention_heads": 4,
            "num_hidden_layers": 6,
            "num_key_value_heads": 1,
            "pad_token_id": 0,
            "query_pre_attn_scalar": 48,
            "rms_norm_eps": 1e-06,
            "rope_local_base_freq": 10000.0,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "rope_theta": 1000000.0,
            "sliding_window": 16,
            "sliding_window_pattern": 3,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.50.0.dev0",
            "use_cache": True,
            "vocab_size": GEMMA3_VOCAB,
        },
        "generation_config": GEMMA3_GENERATION_CONFIG,
    },
    {
        "name": "gemma3-mm",
        "tokenizer": "gemma3",
        "seed": 1006,
        "dtype": "bfloat16",
        "shards": 1,
        "bias_qkv": False,
        "qk_norm": True,
        "arch": "gemma3",
        # Gemma 3 4B's config.json, shrunk: the text_config lists only what differs from
        # the defaults. final_logit_softcapping is null in the released models; it is set
        # here so that the soft-capping path is tested too.
        "config": {
            "architectures": ["Gemma3ForConditionalGeneration"],
            "boi_token_index": 255999,
            "eoi_token_index": 256000,
            "eos_token_id": [1, 106],
            "image_token_index": 262144,
            "initializer_range": 0.02,
            "mm_tokens_per_image": 256,
            "model_type": "gemma3",
            "text_config": {
                "final_logit_softcapping": 30.0,
                "head_dim": 32,
                "hidden_size": 64,
                "intermediate_size": 128,
                "model_type": "gemma3_text",
                "num_hidden_layers": 7,
                "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                "sliding_window": 12,
            },
            "torch_dtype": "bfloat16",
            "transformers_version": "4.50.0.dev0",
            "vision_config": {
                "hidden_size": 16,
                "image_size": 28,
                "intermediate_size": 32,
                "model_type": "siglip_vision_model",
                "num_attention_heads": 2,
                "num_hidden_layers": 1,
                "patch_size": 14,
                "vision_use_head": False,
            },
        },
        "generation_config": GEMMA3_GENERATION_CONFIG,
    },
]


def text_config(cfg):
    """The language model's settings: config.json itself, or a multimodal config's
    text_config with the defaults it relies on filled in (those of mlx-lm and transformers;
    the vocabulary, with the image tokens' rows, is a top-level field there)."""
    if "text_config" not in cfg:
        return cfg
    defaults = {"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256}
    return dict(defaults, **cfg["text_config"], vocab_size=cfg.get("vocab_size", GEMMA3_MM_VOCAB))


def make_weights(spec):
    """Returns the checkpoint's tensors as float32 numpy arrays, in HF names and shapes.

    Gemma 3 ("arch": "gemma3") differs in names and storage: two more norms per layer
    (before and after the MLP), norms stored as offsets from 1, always tied, and in the
    multimodal layout the text model under "language_model." with vision tensors beside it
    (small stand-ins here, which a text model must skip).
    """
    cfg = spec["config"]
    text = text_config(cfg)
    gemma = spec.get("arch") == "gemma3"
    rng = np.random.default_rng(spec["seed"])
    hidden = text["hidden_size"]
    inter = text["intermediate_size"]
    n_heads = text["num_attention_heads"]
    n_kv = text["num_key_value_heads"]
    head_dim = text.get("head_dim") or hidden // n_heads
    vocab = text["vocab_size"]
    tied = text.get("tie_word_embeddings", True)
    root = "language_model." if "text_config" in cfg else ""

    def normal(shape, std):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def linear(out_dim, in_dim):
        # Var 1/fan_in keeps the output on the scale of the input.
        return normal((out_dim, in_dim), 1.0 / math.sqrt(in_dim))

    def norm(dim, scale=1.0):
        g = scale * (1.0 + normal((dim,), 0.05))
        # Gemma's norms scale by (1 + weight).
        return (g - 1.0 if gemma else g).astype(np.float32)

    w = {}
    # The final RMSNorm leaves rows with RMS ~ its weight g, so logits = W_out @ h have a
    # standard deviation of about g * std(W_out) * sqrt(hidden). Untied: the embeddings
    # keep unit scale, g ~ 1 and lm_head carries the scale. Tied: W_out is the (small)
    # embedding matrix and g carries the scale.
    if tied:
        # Gemma multiplies its input embeddings by sqrt(hidden): smaller by that factor,
        # they enter the residual stream at TIED_EMBED_STD as in the other tied fixtures.
        embed_std = TIED_EMBED_STD / math.sqrt(hidden) if gemma else TIED_EMBED_STD
        w[f"{root}model.embed_tokens.weight"] = normal((vocab, hidden), embed_std)
        final_norm_scale = LOGIT_STD / (embed_std * math.sqrt(hidden))
    else:
        w[f"{root}model.embed_tokens.weight"] = normal((vocab, hidden), 1.0)
        final_norm_scale = 1.0
    for i in range(text["num_hidden_layers"]):
        p = f"{root}model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = norm(hidden)
        w[f"{p}.self_attn.q_proj.weight"] = linear(n_heads * head_dim, hidden)
        w[f"{p}.self_attn.k_proj.weight"] = linear(n_kv * head_dim, hidden)
        w[f"{p}.self_attn.v_proj.weight"] = linear(n_kv * head_dim, hidden)
        if spec["bias_qkv"]:
            # Large enough that dropping a bias changes the tokens, small next to the
            # unit-scale projections.
            w[f"{p}.self_attn.q_proj.bias"] = normal((n_heads * head_dim,), 0.5)
            w[f"{p}.self_attn.k_proj.bias"] = normal((n_kv * head_dim,), 0.5)
            w[f"{p}.self_attn.v_proj.bias"] = normal((n_kv * head_dim,), 0.5)
        w[f"{p}.self_attn.o_proj.weight"] = linear(hidden, n_heads * head_dim)
        if spec["qk_norm"]:
            w[f"{p}.self_attn.q_norm.weight"] = norm(head_dim)
            w[f"{p}.self_attn.k_norm.weight"] = norm(head_dim)
        w[f"{p}.post_attention_layernorm.weight"] = norm(hidden)
        if gemma:
            w[f"{p}.pre_feedforward_layernorm.weight"] = norm(hidden)
            w[f"{p}.post_feedforward_layernorm.weight"] = norm(hidden)
        w[f"{p}.mlp.gate_proj.weight"] = linear(inter, hidden)
        w[f"{p}.mlp.up_proj.weight"] = linear(inter, hidden)
        w[f"{p}.mlp.down_proj.weight"] = linear(hidden, inter)
    w[f"{root}model.norm.weight"] = norm(hidden, final_norm_scale)
    if not tied:
        w[f"{root}lm_head.weight"] = normal((vocab, hidden), LOGIT_STD / math.sqrt(hidden))
    if "vision_config" in cfg:
        v = cfg["vision_config"]
        vh, patch = v["hidden_size"], v["patch_size"]
        w["vision_tower.vision_model.embeddings.patch_embedding.weight"] = normal((vh, 3, patch, patch), 0.02)
        w["vision_tower.vision_model.embeddings.patch_embedding.bias"] = normal((vh,), 0.02)
        w["vision_tower.vision_model.post_layernorm.weight"] = norm(vh)
        w["multi_modal_projector.mm_input_projection_weight"] = normal((vh, hidden), 0.02)
        w["multi_modal_projector.mm_soft_emb_norm.weight"] = norm(vh)
    return w


def split_shards(names, n):
    """Splits the tensor names, in checkpoint order, into n contiguous shards.

    Real checkpoints are cut by a byte budget, so a layer's tensors can straddle two files;
    cutting by count (not at layer boundaries) reproduces that.
    """
    if n == 1:
        return [names]
    # The embedding alone dominates the byte count, so give it the first shard together
    # with a share of the layers, then cut the rest evenly.
    rest = names[1:]
    per = math.ceil(len(rest) / n)
    chunks = [rest[i * per:(i + 1) * per] for i in range(n)]
    chunks[0] = [names[0]] + chunks[0]
    return chunks


def write_fixture(spec, out_dir):
    name = spec["name"]
    dest = out_dir / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)

    tok_src = TOKENIZERS_DIR / spec["tokenizer"]
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tok_src / f, dest / f)

    with open(dest / "config.json", "w") as f:
        json.dump(spec["config"], f, indent=2)
        f.write("\n")
    if spec.get("generation_config") is not None:
        with open(dest / "generation_config.json", "w") as f:
            json.dump(spec["generation_config"], f, indent=2)
            f.write("\n")

    dtype = MX_DTYPES[spec["dtype"]]
    weights = make_weights(spec)
    names = list(weights)
    arrays = {k: mx.array(v).astype(dtype) for k, v in weights.items()}
    n_params = sum(v.size for v in weights.values())

    shards = split_shards(names, spec["shards"])
    files = []
    if len(shards) == 1:
        fname = "model.safetensors"
        mx.save_safetensors(str(dest / fname), arrays, metadata={"format": "pt"})
        files.append(fname)
    else:
        weight_map = {}
        total = 0
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            mx.save_safetensors(str(dest / fname), {k: arrays[k] for k in shard},
                                metadata={"format": "pt"})
            for k in shard:
                weight_map[k] = fname
                total += arrays[k].nbytes
            files.append(fname)
        index = {"metadata": {"total_size": total},
                 "weight_map": dict(sorted(weight_map.items()))}
        with open(dest / "model.safetensors.index.json", "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")

    digest = hashlib.sha256()
    for fname in files:
        digest.update((dest / fname).read_bytes())
    sizes = ", ".join(f"{fn} {os.path.getsize(dest / fn) / 2**20:.1f} MiB" for fn in files)
    cfg = spec["config"]
    text = text_config(cfg)
    tied = text.get("tie_word_embeddings", True)
    print(f"{name:13s} {cfg['model_type']:6s} {spec['dtype']:8s} "
          f"tied={str(tied).lower():5s} layers={text['num_hidden_layers']} "
          f"params={n_params / 1e6:.2f}M  {sizes}  sha256[:12]={digest.hexdigest()[:12]}")


def gemma3_1b():
    """A random model of Gemma 3 1B's exact shape (hidden 1152, 26 layers, every 6th
    global, 4 query / 1 KV heads of 256, MLP 6912, window 512, the full 262144-token
    vocabulary, tied, bfloat16; ~2 GB), built on the gemma3 fixture's config."""
    base = next(f for f in FIXTURES if f["name"] == "gemma3")
    layers, pattern = 26, 6
    layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(layers)]
    config = dict(base["config"], head_dim=256, hidden_size=1152, intermediate_size=6912,
                  num_hidden_layers=layers, query_pre_attn_scalar=256, rope_scaling=None,
                  sliding_window=512, sliding_window_pattern=pattern, layer_types=layer_types)
    return dict(base, name="gemma3-1b-shape", seed=1101, config=config)


def qwen3_06b():
    """A random model of Qwen3-0.6B's exact shape (hidden 1024, 28 layers, 16 query / 8 KV
    heads of 128, MLP 3072, the full vocabulary, tied, bfloat16; ~1.2 GB), built on the
    qwen3 fixture's config: the shape the reference's GPU figures were taken on."""
    base = next(f for f in FIXTURES if f["name"] == "qwen3")
    config = dict(base["config"], head_dim=128, hidden_size=1024, intermediate_size=3072,
                  num_attention_heads=16, num_hidden_layers=28, num_key_value_heads=8,
                  max_window_layers=28, torch_dtype="bfloat16")
    return dict(base, name="qwen3-0.6b-shape", seed=1102, dtype="bfloat16", config=config)


def llama32_1b():
    """A random model of Llama-3.2-1B's exact shape (hidden 2048, 16 layers, 32 query / 8 KV
    heads of 64, MLP 8192, the full 128256-token vocabulary, rope_theta 5e5 with "llama3"
    rope scaling of factor 32, tied, bfloat16; ~2.5 GB), built on the llama3 fixture's
    config (and so its Llama 3.1 tokenizer, which Llama 3.2 shares)."""
    base = next(f for f in FIXTURES if f["name"] == "llama3")
    rope_scaling = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 8192, "rope_type": "llama3"}
    config = dict(base["config"], head_dim=64, hidden_size=2048, intermediate_size=8192,
                  num_attention_heads=32, num_hidden_layers=16, num_key_value_heads=8,
                  rope_theta=500000.0, rope_scaling=rope_scaling, tie_word_embeddings=True,
                  torch_dtype="bfloat16")
    return dict(base, name="llama3.2-1b-shape", seed=1103, dtype="bfloat16", config=config)


def llama31_8b():
    """A random model of Llama-3.1-8B's exact shape (hidden 4096, 32 layers, 32 query / 8 KV
    heads of 128, MLP 14336, the full 128256-token vocabulary, untied, rope_theta 5e5 with
    "llama3" rope scaling of factor 8, bfloat16; ~16 GB): the larger model of the two-GPU
    tensor-parallel benchmark (scripts/gpu_tp.sh)."""
    small = llama32_1b()
    rope_scaling = dict(small["config"]["rope_scaling"], factor=8.0)
    config = dict(small["config"], head_dim=128, hidden_size=4096, intermediate_size=14336,
                  num_attention_heads=32, num_hidden_layers=32, num_key_value_heads=8,
                  rope_scaling=rope_scaling, tie_word_embeddings=False)
    return dict(small, name="llama3.1-8b-shape", seed=1104, config=config)


# Benchmark models, written only on request (`--bench-model NAME OUT_DIR`), each to
# OUT_DIR/<name>-shape.
BENCH_MODELS = {"gemma3-1b": gemma3_1b, "qwen3-0.6b": qwen3_06b, "llama3.2-1b": llama32_1b,
                "llama3.1-8b": llama31_8b}


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--bench-model":
        if sys.argv[2] not in BENCH_MODELS:
            sys.exit(f"unknown bench model {sys.argv[2]!r}: one of {', '.join(BENCH_MODELS)}")
        out_dir = Path(sys.argv[3])
        out_dir.mkdir(parents=True, exist_ok=True)
        write_fixture(BENCH_MODELS[sys.argv[2]](), out_dir)
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for spec in FIXTURES:
        write_fixture(spec, out_dir)
    print(f"wrote {len(FIXTURES)} fixtures to {out_dir} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
