"""The reference's side of benches/generate.rs: mlx-lm's prefill and decode speed on a
model folder, timed exactly as the Rust benchmark times ours (prefill = start of the call
until the first generated token is available; decode = the remaining tokens over the
remaining time). Prints one JSON object.

Usage: bench_reference.py MODEL_DIR PROMPT_TOKENS GEN_TOKENS REPEAT [--dtype DTYPE]
DTYPE: float32 (the default), bfloat16, float16, or native (the checkpoint's own); the Rust
bench passes the dtype its side computes in, so both run the same arithmetic.
Each figure is the best of REPEAT timed runs after one warm-up run.
"""
import json
import sys
import time

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import generate_step


def main():
    model_dir, n_prompt, n_gen, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "float32"
    model, _ = load(model_dir)
    if dtype != "native":
        model.set_dtype(getattr(mx, dtype))
    vocab = model.args.vocab_size
    # A fixed, deterministic prompt of token ids (the same one the Rust side uses).
    prompt = mx.array([(i * 7919 + 13) % vocab for i in range(n_prompt)], dtype=mx.uint32)

    def run():
        start = time.perf_counter()
        first = None
        n = 0
        for _tok, _ in generate_step(prompt, model, max_tokens=n_gen, sampler=lambda x: mx.argmax(x, axis=-1)):
            n += 1
            if first is None:
                first = time.perf_counter()
                peaks["prefill"] = max(peaks["prefill"], mx.get_peak_memory())
        end = time.perf_counter()
        return first - start, end - first, n

    # The peak up to the first token (prefill) apart from the whole run's.
    peaks = {"prefill": 0}

    run()  # warm-up: kernels, allocator
    mx.reset_peak_memory()
    peaks["prefill"] = 0
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(repeat):
        mx.clear_cache()
        prefill, decode, n = run()
        best_prefill = max(best_prefill, n_prompt / prefill)
        best_decode = max(best_decode, (n - 1) / decode if decode > 0 else 0.0)
    print(json.dumps({
        "prefill_tok_s": best_prefill,
        "decode_tok_s": best_decode,
        "peak_memory": mx.get_peak_memory(),
        "prefill_peak_memory": peaks["prefill"],
        "generated": n,
    }))


if __name__ == "__main__":
    main()
