"""The reference's side of benches/generate.rs: mlx-lm's prefill and decode speed on a
model folder, timed exactly as the Rust benchmark times ours (prefill = start of the call
until the first generated token is available; decode = the remaining tokens over the
remaining time). Prints one JSON object.

Usage: bench_reference.py MODEL_DIR PROMPT_TOKENS GEN_TOKENS REPEAT [--dtype DTYPE] [--sharded BACKEND]
DTYPE: float32 (the default), bfloat16, float16, or native (the checkpoint's own); the Rust
bench passes the dtype its side computes in, so both run the same arithmetic.
--sharded BACKEND: mlx-lm's own tensor-parallel model (`sharded_load`, `model.shard()`) over
the ranks of MLX's distributed group on BACKEND (e.g. nccl), started by `mlx.launch`; rank 0
prints the JSON object (its peak memory is its own GPU's).
Each figure is the best of REPEAT timed runs after one warm-up run.

scripts/bench_worker.py (the interleaved suite's reference side) times its runs with this
script's `timed_generate`, so both benches measure mlx-lm the same way.
"""
import json
import sys
import time

import mlx.core as mx
from mlx_lm import load
from mlx_lm.utils import sharded_load
from mlx_lm.generate import generate_step


def set_compute_dtype(model, dtype):
    """Casts the model to `dtype` ("float32", "bfloat16", "float16"), or leaves it as the
    checkpoint has it ("native"). mlx's Module.set_dtype casts floating-point parameters
    only, so a quantized model's packed weights stay packed (its scales and biases cast)."""
    if dtype != "native":
        model.set_dtype(getattr(mx, dtype))


def vocab_size(model):
    """The vocabulary size, also for multimodal configs that keep it in text_config."""
    args = model.args
    return args.vocab_size if hasattr(args, "vocab_size") else args.text_config["vocab_size"]


def prompt_ids(n_prompt, vocab):
    """A fixed, deterministic prompt of token ids (the same one the Rust side uses)."""
    return mx.array([(i * 7919 + 13) % vocab for i in range(n_prompt)], dtype=mx.uint32)


def timed_generate(model, prompt, n_gen):
    """One greedy run: (prefill seconds = start until the first token is available,
    decode seconds = the rest, tokens generated)."""
    start = time.perf_counter()
    first = None
    n = 0
    for _tok, _ in generate_step(prompt, model, max_tokens=n_gen, sampler=lambda x: mx.argmax(x, axis=-1)):
        n += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return first - start, end - first, n


def main():
    model_dir, n_prompt, n_gen, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "float32"
    rank = 0
    if "--sharded" in sys.argv:
        group = mx.distributed.init(strict=True, backend=sys.argv[sys.argv.index("--sharded") + 1])
        rank = group.rank()
        model, _ = sharded_load(model_dir, tensor_group=group)
    else:
        model, _ = load(model_dir)
    set_compute_dtype(model, dtype)
    prompt = prompt_ids(n_prompt, vocab_size(model))

    def run():
        return timed_generate(model, prompt, n_gen)

    run()  # warm-up: kernels, allocator
    mx.reset_peak_memory()
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(repeat):
        mx.clear_cache()
        prefill, decode, n = run()
        best_prefill = max(best_prefill, n_prompt / prefill)
        best_decode = max(best_decode, (n - 1) / decode if decode > 0 else 0.0)
    if rank != 0:
        return
    print(json.dumps({
        "prefill_tok_s": best_prefill,
        "decode_tok_s": best_decode,
        "peak_memory": mx.get_peak_memory(),
        "generated": n,
    }))


if __name__ == "__main__":
    main()
