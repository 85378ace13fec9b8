"""The reference's side of benches/micro.rs: each case's µs per call in MLX's Python
package, mlx-lm (a decode step) or Hugging Face's `tokenizers` (encode/decode), timed as
the Rust bench times ours (`per_call`: two warm-up calls, then the median of 5 samples of
k calls, k chosen so that a sample takes at least 20 ms).

Usage: bench_micro_reference.py CASES_JSON   (a JSON list of requests; see micro.rs)
Prints a JSON list: µs per call for each case, or null where it failed (reason on stderr).
"""
import json
import math
import statistics
import sys
import time

import mlx.core as mx

from bench_reference import prompt_ids, set_compute_dtype, vocab_size

SAMPLES = 5
SAMPLE_SECS = 0.02


def per_call(f):
    f()
    t = time.perf_counter()
    f()
    k = min(100_000, max(1, math.ceil(SAMPLE_SECS / max(time.perf_counter() - t, 1e-9))))
    samples = []
    for _ in range(SAMPLES):
        t = time.perf_counter()
        for _ in range(k):
            f()
        samples.append((time.perf_counter() - t) / k * 1e6)
    return statistics.median(samples)


def normal(shape, seed):
    a = mx.random.normal(shape, key=mx.random.key(seed))
    mx.eval(a)
    return a


def matmul(req):
    a, b = normal((req["m"], req["k"]), 1), normal((req["k"], req["n"]), 2)
    return per_call(lambda: mx.eval(a @ b))


def softmax(req):
    a = normal(tuple(req["shape"]), 3)
    return per_call(lambda: mx.eval(mx.softmax(a, axis=-1)))


def forward(req):
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache

    model, _ = load(req["model"])
    set_compute_dtype(model, "float32")
    cache = make_prompt_cache(model)
    mx.eval(model(prompt_ids(req["context"], vocab_size(model))[None], cache=cache)[:, -1])
    tok = mx.array([[13]], dtype=mx.uint32)
    return per_call(lambda: mx.eval(model(tok, cache=cache)[:, -1]))


def tokenizer(req):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(req["tokenizer"])
    with open(req["text"], encoding="utf-8") as f:
        text = f.read()
    if req["op"] == "encode":
        return per_call(lambda: tok.encode(text, add_special_tokens=False))
    ids = tok.encode(text, add_special_tokens=False).ids
    return per_call(lambda: tok.decode(ids, skip_special_tokens=False))


def main():
    ops = {"matmul": matmul, "softmax": softmax, "forward": forward, "encode": tokenizer, "decode": tokenizer}
    out = []
    for req in json.loads(sys.argv[1]):
        try:
            out.append(ops[req["op"]](req))
        except Exception as e:  # one failed case leaves the others' figures
            print(f"{req}: {type(e).__name__}: {e}", file=sys.stderr)
            out.append(None)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
