"""The reference's side of benches/batch.rs: mlx-lm's batch_generate on a model folder,
on the same prompts (token ids) the Rust benchmark uses. Prints one JSON object.

Usage: bench_batch_reference.py MODEL_DIR N_PROMPTS PROMPT_LEN BATCH MAX_TOKENS REPEAT
       [--dtype float32|native] [--gen-prompts N]

- classify: batch_generate with max_tokens=1 (one prefill per batch and the first token:
  mlx-lm has no prefill-only call), prompts/s;
- generate: batch_generate with max_tokens=MAX_TOKENS over the first N prompts (default: all),
  generated tokens/s over the call.
Each figure is the best of REPEAT timed runs after one warm-up run.

scripts/bench_worker.py (the interleaved suite's reference side) times its runs with this
script's `timed_batch`.
"""
import json
import sys
import time

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import batch_generate

from bench_reference import vocab_size


def prompts_for(n, length, vocab):
    """The benchmark's prompts: lengths between length/2 and length, fixed ids."""
    out = []
    for i in range(n):
        n_tok = max(1, length // 2 + (i * 7) % (length - length // 2 + 1))
        out.append([(i * 31 + j * 7919 + 13) % vocab for j in range(n_tok)])
    return out


def timed_batch(model, tokenizer, prompts, max_tokens, batch):
    """One batch_generate call over `prompts` (lists of ids), `batch` rows at a time for
    both prefill and completion: (seconds, tokens generated)."""
    start = time.perf_counter()
    r = batch_generate(model, tokenizer, prompts, max_tokens=max_tokens, completion_batch_size=batch,
                       prefill_batch_size=batch, return_token_ids=True)
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(t) for t in r.token_ids)


def main():
    model_dir = sys.argv[1]
    n, length, batch, max_tokens, repeat = (int(a) for a in sys.argv[2:7])
    native = "--dtype" in sys.argv and sys.argv[sys.argv.index("--dtype") + 1] == "native"
    model, tokenizer = load(model_dir)
    if not native:
        model.set_dtype(mx.float32)
    prompts = prompts_for(n, length, vocab_size(model))

    n_gen = int(sys.argv[sys.argv.index("--gen-prompts") + 1]) if "--gen-prompts" in sys.argv else n

    def run(tokens):
        return timed_batch(model, tokenizer, prompts if tokens == 1 else prompts[:n_gen], tokens, batch)

    out = {}
    run(1)  # warm-up
    best = min(run(1)[0] for _ in range(repeat))
    out["classify_prompts_s"] = n / best
    run(max_tokens)
    best_rate = 0.0
    for _ in range(repeat):
        t, toks = run(max_tokens)
        best_rate = max(best_rate, toks / t)
    out["generate_tok_s"] = best_rate
    out["peak_memory"] = mx.get_peak_memory()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
