"""The reference's side of benches/suite.rs: one persistent mlx-lm process, so that the
suite can alternate its runs with ours run by run (a noisy machine then disturbs both
sides alike) without paying Python's start-up and the model load for each run.

Protocol: JSON lines. One request per line on stdin, one reply per line on stdout; a
failed request answers {"error": "..."} and the worker goes on. Anything mlx-lm prints
goes to stderr, so stdout carries replies only.

  {"op": "load", "path": DIR, "dtype": "float32"|"bfloat16"|"float16"|"native"}
      -> {"vocab_size", "mlx_version", "mlx_lm_version", "device"}
  {"op": "generate", "prompt_len": N, "gen": N}
      -> {"prefill_tok_s", "decode_tok_s", "ttft_s", "generated", "peak_memory"}
  {"op": "classify", "prompts": [[id, ...], ...], "batch": N}
      -> {"prompts_s", "seconds", "peak_memory"}
  {"op": "batch_generate", "prompts": [[id, ...], ...], "batch": N, "max_tokens": N}
      -> {"tok_s", "tokens", "seconds", "peak_memory"}
  {"op": "quit"}

Each timed request is one run: the cache is cleared and the peak reset before it, and the
peak read after it. The timing is bench_reference.py's (`timed_generate`: prefill = start
until the first token, decode = the rest) and bench_batch_reference.py's (`timed_batch`:
classify is batch_generate with max_tokens=1, mlx-lm's closest call).
"""
import json
import sys
import traceback

import mlx.core as mx
import mlx_lm
from mlx_lm import load

from bench_batch_reference import timed_batch
from bench_reference import prompt_ids, set_compute_dtype, timed_generate, vocab_size


class Worker:
    def __init__(self):
        self.model = None
        self.tokenizer = None

    def loaded(self):
        if self.model is None:
            raise RuntimeError("no model loaded: send a load request first")
        return self.model

    def load(self, req):
        self.model = self.tokenizer = None
        mx.clear_cache()
        model, tokenizer = load(req["path"])
        set_compute_dtype(model, req.get("dtype", "float32"))
        self.model, self.tokenizer = model, tokenizer
        return {
            "vocab_size": vocab_size(model),
            "mlx_version": mx.__version__,
            "mlx_lm_version": getattr(mlx_lm, "__version__", "unknown"),
            "device": str(mx.default_device()),
        }

    def generate(self, req):
        model = self.loaded()
        n_prompt, n_gen = int(req["prompt_len"]), int(req["gen"])
        prompt = prompt_ids(n_prompt, vocab_size(model))
        mx.clear_cache()
        mx.reset_peak_memory()
        prefill, decode, n = timed_generate(model, prompt, n_gen)
        return {
            "prefill_tok_s": n_prompt / prefill,
            "decode_tok_s": (n - 1) / decode if decode > 0 else 0.0,
            "ttft_s": prefill,
            "generated": n,
            "peak_memory": mx.get_peak_memory(),
        }

    def batch(self, req, max_tokens):
        model = self.loaded()
        mx.clear_cache()
        mx.reset_peak_memory()
        seconds, tokens = timed_batch(model, self.tokenizer, req["prompts"], max_tokens, int(req["batch"]))
        return seconds, tokens, mx.get_peak_memory()

    def classify(self, req):
        seconds, _, peak = self.batch(req, 1)
        return {"prompts_s": len(req["prompts"]) / seconds, "seconds": seconds, "peak_memory": peak}

    def batch_generate(self, req):
        seconds, tokens, peak = self.batch(req, int(req["max_tokens"]))
        return {"tok_s": tokens / seconds, "tokens": tokens, "seconds": seconds, "peak_memory": peak}


def main():
    replies = sys.stdout
    sys.stdout = sys.stderr  # whatever else prints must not break the protocol
    worker = Worker()
    ops = {"load": worker.load, "generate": worker.generate, "classify": worker.classify,
           "batch_generate": worker.batch_generate}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                break
            if op not in ops:
                raise ValueError(f"unknown op {op!r}: one of {', '.join(ops)}, quit")
            reply = ops[op](req)
        except Exception as e:  # the request fails; the worker stays up for the next one
            traceback.print_exc(file=sys.stderr)
            reply = {"error": f"{type(e).__name__}: {e}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
