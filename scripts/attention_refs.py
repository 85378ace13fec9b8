"""mlx-lm's post-RoPE queries and keys per attention layer after a prompt's prefill.

Usage: attention_refs.py FIXTURES_DIR OUT_DIR

For the gemma3 fixture (sliding-window layers with a RotatingKVCache of `sliding_window`
positions, and global layers) and the qwen3 fixture, each loaded with mlx_lm.load and cast
to float32 as reference_outputs.py does, runs the prompt through the model in chunks of
`prefill_step_size` tokens (model(chunk[None], cache=cache), the whole prompt, nothing
generated) and records, per layer, what its attention received:

  queries  [n_heads, P, head_dim]     after q_norm and RoPE
  keys     [n_kv_heads, P, head_dim]  after k_norm and RoPE: the new positions' keys as
                                      the cache returned them to attention

through a wrapper around the models' `scaled_dot_product_attention` (each call's queries,
and the last L columns of its keys, L being the number of queries: the positions the chunk
added). So every prompt position is recorded for every layer, also where the rotating cache
keeps only the window. The recorded keys are checked against the caches' own state after
the prefill: equal for every position a cache still holds (all of them for the global
layers, the last `sliding_window`-or-so for the sliding ones).

The gemma3 fixture's window is 16 positions and the English prompt is about 30 tokens, so
the window matters: in one chunk (attention over the whole prompt with a windowed mask) and
in chunks of 8 (the rotating cache trimmed and appended as chunks arrive).

Writes OUT_DIR/<fixture>.safetensors: per case "<case>/prompt_ids" int32 [P],
"<case>/layer<i>/queries" and "<case>/layer<i>/keys" float32; metadata "cases" (JSON list
of {id, prompt_name, prompt, prefill_step_size, seq_len, sliding_layers, sliding_window}),
"mlx", "mlx_lm", "blas". The OpenBLAS re-exec of reference_outputs.py applies.
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_outputs as ro  # noqa: E402  (re-executes with OpenBLAS preloaded)

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx_lm import load  # noqa: E402
from mlx_lm.models import gemma3_text, qwen3  # noqa: E402
from mlx_lm.models.cache import RotatingKVCache, make_prompt_cache  # noqa: E402

CASES = {
    # fixture: [(prompt name, prefill step)]
    "gemma3": [("english", 2048), ("english", 8)],
    "qwen3": [("english", 2048)],
}

RECORDED = []


def recording(sdpa):
    def wrapper(queries, keys, values, *args, **kwargs):
        n = queries.shape[2]
        RECORDED.append((queries, keys[:, :, keys.shape[2] - n:, :]))
        return sdpa(queries, keys, values, *args, **kwargs)
    return wrapper


for module in (gemma3_text, qwen3):
    module.scaled_dot_product_attention = recording(module.scaled_dot_product_attention)


def cache_keys(c):
    """The keys a cache holds, oldest first."""
    if isinstance(c, RotatingKVCache):
        return c._temporal_order(c.keys)
    return c.keys[:, :, :c.offset, :]


def run_case(model, ids, step, layers):
    cache = make_prompt_cache(model)
    per_layer = [[] for _ in range(layers)]
    for i in range(0, len(ids), step):
        RECORDED.clear()
        model(mx.array(ids[i:i + step])[None], cache=cache)
        assert len(RECORDED) == layers, f"{len(RECORDED)} attention calls for {layers} layers"
        mx.eval([a for pair in RECORDED for a in pair] + [c.state for c in cache])
        for slot, pair in zip(per_layer, RECORDED):
            slot.append(pair)
    out = []
    for li, chunks in enumerate(per_layer):
        q = np.concatenate([np.array(qc.astype(mx.float32)) for qc, _ in chunks], axis=2)[0]
        k = np.concatenate([np.array(kc.astype(mx.float32)) for _, kc in chunks], axis=2)[0]
        held = np.array(cache_keys(cache[li]).astype(mx.float32))[0]
        n = held.shape[1]
        assert n <= k.shape[1], (li, held.shape, k.shape)
        assert np.array_equal(held, k[:, k.shape[1] - n:, :]), f"layer {li}: cache keys differ"
        out.append((q, k, n))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out_dir = Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for fixture, cases in CASES.items():
        model, tokenizer = load(str(Path(sys.argv[1]) / fixture))
        model.set_dtype(mx.float32)
        args = model.args
        layers = len(model.layers)
        sliding = [i for i, l in enumerate(model.layers) if getattr(l.self_attn, "is_sliding", False)]
        window = getattr(args, "sliding_window", None) if sliding else None
        prompts = dict(ro.prompts(tokenizer))
        tensors, meta = {}, []
        for name, step in cases:
            ids, _ = ro.encode_like_generate(tokenizer, prompts[name])
            if window is not None:
                assert len(ids) > window, f"{fixture}: {len(ids)} tokens do not exceed the window {window}"
            cid = f"{name}/step{step}"
            tensors[f"{cid}/prompt_ids"] = mx.array(ids, dtype=mx.int32)
            for li, (q, k, held) in enumerate(run_case(model, ids, step, layers)):
                tensors[f"{cid}/layer{li}/queries"] = mx.array(q)
                tensors[f"{cid}/layer{li}/keys"] = mx.array(k)
                print(f"{fixture} {cid} layer {li}{' (sliding)' if li in sliding else ''}: "
                      f"q {q.shape} k {k.shape}, cache holds {held}")
            meta.append({"id": cid, "prompt_name": name, "prompt": prompts[name],
                         "prefill_step_size": step, "seq_len": len(ids),
                         "sliding_layers": sliding, "sliding_window": window})
        mx.save_safetensors(str(out_dir / f"{fixture}.safetensors"), tensors,
                            metadata={"cases": json.dumps(meta), "mlx": version("mlx"),
                                      "mlx_lm": version("mlx-lm"), "blas": ro.blas_in_use()})


if __name__ == "__main__":
    main()
