"""Records what the reference (mlx-lm) generates on every test fixture.

Usage: reference_outputs.py FIXTURES_DIR OUT_DIR

For every fixture folder FIXTURES_DIR/<name>/ (as written by make_fixtures.py) this loads the
checkpoint with mlx_lm.load, runs greedy generation through mlx_lm.generate.generate_step on a
fixed set of prompts, and writes

  OUT_DIR/<name>.safetensors   the tensors below + metadata: "cases" (JSON list) and
                               "fixture", "eos_token_ids", "mlx", "mlx_lm", "blas" (strings)
  OUT_DIR/<name>.json          the same case list, human-readable

Each case is one (compute dtype, prompt, prefill step size). Compute dtypes:
  "float32"  every floating parameter cast to float32 after loading (model.set_dtype); this
             is what the engine computes in by default on CPU
  "native"   the parameters as stored (only for fixtures stored in bfloat16 / float16), so
             the whole forward pass, logits and log-probabilities are in that dtype

Tensors, all prefixed with the case id "<dtype mode>/<prompt name>" (e.g. "float32/emoji"):
  <id>/prompt_ids      int32 [P]       the prompt exactly as generate_step received it
  <id>/generated_ids   int32 [64]      greedy tokens; generation does NOT stop at EOS
  <id>/margins         float32 [64]    per step: top-1 minus top-2 of the log-probabilities
                                       the sampler saw (0 means an exact tie, which argmax
                                       breaks towards the lower id)
  <id>/step_logprobs   float32 [S, V]  LOG-PROBABILITIES (logits - logsumexp(logits), computed
                                       in the compute dtype, as generate_step yields them) at
                                       the generation steps in the case's "logprob_steps"
  <id>/forward_logits  float32 [F, V]  raw LOGITS of one full forward pass model(prompt[None])
                                       without a cache, at the prompt positions in the case's
                                       "forward_positions"
Values from a bfloat16/float16 run are converted to float32 exactly (the source dtype is
named in the case as "compute_dtype").

How generate_step (mlx-lm 0.32.2) splits the prompt -- the engine must do the same to get
bit-identical results, since chunk boundaries change the shapes of every matmul:
  * The prompt is a 1-D array of P ids. While MORE THAN ONE prompt token is left, it runs a
    prefill chunk of n = min(prefill_step_size, remaining - 1) tokens through the model with
    the KV cache (logits discarded), evaluates the cache, and drops those tokens. So all but
    the last prompt token go through chunks of prefill_step_size (default 2048), the last
    chunk possibly shorter; a 1-token prompt has no prefill at all.
  * The LAST prompt token alone then goes through the first step: model(last[None], cache),
    logits[:, -1, :] -> logprobs = logits - logsumexp(logits, keepdims=True) -> sampler
    (argmax over the log-probabilities). That is generated token 0 and "step 0" here.
  * Each later step feeds the previously sampled token (1 token) with the cache.
  * Masks: a chunk of N > 1 tokens at cache offset o uses the "causal" mask aligned to the
    end (query i sees keys 0..o+i); a 1-token step uses no mask.
  Example: P = 300 with prefill_step_size 8 -> 37 chunks of 8, one of 3, then 1 token.
  The chunk sizes are recorded per case in "prefill_chunks".

Prompts and step sizes: every prompt with the default step, and the long prompt again with a
step of 8. Fixtures with sliding-window layers (Gemma 3, whose sliding layers keep a
RotatingKVCache) get more chunkings, because the rotating cache takes a different path for
each: a chunk of N > 1 tokens puts the cache in temporal order, trims it to window - 1 and
appends (with a windowed mask once offset + N exceeds the window), while single tokens are
written in place into a ring buffer. So the long prompt also runs with a step of 20 (chunks
longer than the window, following cached positions) and the English prompt with a step of 1
(all of its prefill through the ring buffer).

Final-logit soft-capping: mlx-lm 0.32.2's gemma3_text does not read the config's
final_logit_softcapping (null in the released Gemma 3 models; transformers applies it when
set). For a fixture that sets it, the reference is mlx-lm's model followed by the soft cap
computed as mlx-lm computes it for Gemma 2: tanh(logits / cap) * cap, in the compute dtype.

Prompt encoding is that of mlx-lm's stream_generate for a string prompt:
add_special_tokens = (tokenizer.bos_token is None) or not prompt.startswith(bos_token), then
tokenizer.encode(prompt, add_special_tokens=...). The EOS set is the tokenizer wrapper's
eos_token_ids: generation_config.json's eos_token_id when that file sets one (it replaces
config.json's), else config.json's, plus the tokenizer's own eos_token (int or list).

Case JSON fields: id, fixture, dtype_mode, compute_dtype, prompt_name, prompt,
add_special_tokens, prompt_ids, prefill_step_size, prefill_chunks, max_tokens, generated_ids,
generated_text (tokenizer.decode of all 64 ids, special tokens kept), stream_text (what
mlx_lm.generate would print: the streaming detokenizer's text up to, excluding, the first
EOS), eos_token_ids, first_eos_index (index of the first EOS-set id in generated_ids, or
null), margins, min_margin, logprob_steps, forward_positions,
forward_vs_step0_max_abs_diff (|log_softmax(forward logits at the last position) - step-0
log-probabilities|, a measure of how much chunking alone moves the numbers),
logit_std_last_position (spread of the forward logits at the last position).

BLAS: the engine links OpenBLAS ahead of libmlx (see build.rs), so MLX's float32 matmuls
go to OpenBLAS's sgemm instead of the BLAS the wheel carries. Different BLAS libraries sum in
different orders, so for bit-identical references this script runs MLX with the same
OpenBLAS: unless it is already loaded, it re-executes itself with LD_PRELOAD set to
libopenblas.so.0 (and LD_LIBRARY_PATH to the folder with its libgfortran), found the way
build.rs finds it: $OPENBLAS_DIR, else .deps/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread.
MLXRUN_NO_OPENBLAS=1 skips this, for builds that leave OpenBLAS out. Which BLAS was used, and
with how many threads (OPENBLAS_NUM_THREADS, default: one per core), is recorded in the
metadata key "blas": both move the last bits of float32 results, so the engine matches the
recorded values bit for bit only under the same BLAS and thread count; the tokens are the
same across them. (OpenBLAS is also ~10x faster for the float32 forward passes.)

Everything is deterministic: running twice gives the same ids and the same bits.
"""

import inspect
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def openblas_dir():
    if os.environ.get("OPENBLAS_DIR"):
        return Path(os.environ["OPENBLAS_DIR"])
    return ROOT / ".deps/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread"


def blas_in_use():
    """Names the BLAS mapped into this process: "openblas (N threads)" or "mlx-bundled".

    OpenBLAS's thread count is part of the name because sgemm splits its work by it, which
    moves the last bits of float32 results (~1e-5 on these logits; the tokens stay the same).
    """
    try:
        with open("/proc/self/maps") as f:
            if "libopenblas" not in f.read():
                return "mlx-bundled"
    except OSError:
        return "unknown"
    import ctypes
    try:
        threads = ctypes.CDLL(str(openblas_dir() / "libopenblas.so.0")).openblas_get_num_threads()
        return f"openblas ({threads} threads)"
    except (OSError, AttributeError):
        return "openblas"


def reexec_with_openblas():
    """Restarts this script with OpenBLAS preloaded, to match the engine's BLAS."""
    if os.environ.get("MLXRUN_NO_OPENBLAS") == "1" or sys.platform != "linux":
        return
    lib = openblas_dir() / "libopenblas.so.0"
    if not lib.exists() or "libopenblas" in os.environ.get("LD_PRELOAD", ""):
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(lib), env.get("LD_PRELOAD")]))
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(lib.parent.parent),
                                                    env.get("LD_LIBRARY_PATH")]))
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


reexec_with_openblas()

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
import numpy as np  # noqa: E402
from mlx_lm import load  # noqa: E402
from mlx_lm.generate import generate_step  # noqa: E402
from mlx_lm.models import gemma3_text  # noqa: E402
from mlx_lm.sample_utils import greedy_sampler  # noqa: E402

MAX_TOKENS = 64
LOGPROB_STEPS = [0, 1, 16, 63]
CHUNKED_PREFILL_STEP = 8
# Extra step sizes per prompt for fixtures with sliding-window layers (see the docstring).
SLIDING_PREFILL_STEPS = {"long": [CHUNKED_PREFILL_STEP, 20], "english": [1]}
DEFAULT_PREFILL_STEP = inspect.signature(generate_step).parameters["prefill_step_size"].default

# About 300 tokens with either tokenizer family; long enough that a small prefill step size
# needs many chunks, and that positions go well past the shortest rope wavelengths.
LONG_PROMPT = (
    "The history of computing is a story of layers. At the bottom sit transistors, billions "
    "of them, switching on and off in patterns that nobody designs by hand anymore. Above "
    "them are logic gates, then arithmetic units, caches, and cores. Each layer hides the "
    "details of the one below, which is why a programmer in 2024 can write a loop without "
    "knowing how a carry-lookahead adder works. Operating systems add another layer: they "
    "schedule processes, manage memory in 4096-byte pages, and pretend that every program "
    "has the machine to itself. Compilers translate languages such as C, Rust, and Fortran "
    "into instructions; interpreters run Python and JavaScript one step at a time. Networks "
    "connect machines, and protocols like TCP/IP, HTTP/1.1, and TLS 1.3 let them agree on "
    "what the bytes mean. Databases store records in B-trees and write-ahead logs, so that a "
    "crash at 3:17 a.m. loses nothing that was committed. Machine learning is the newest "
    "layer. A language model is, underneath, a long chain of matrix multiplications, "
    "normalizations, and attention operations; its weights are numbers in float16 or "
    "bfloat16, and its vocabulary maps about 150,000 tokens to vectors. When it generates "
    "text, it reads the prompt once, stores keys and values in a cache, and then produces one "
    "token per step, each time choosing from a probability distribution. Greedy decoding "
    "simply takes the most likely token; sampling with a temperature of 0.7 adds variety. "
    "Whether the result is useful depends on every layer below working exactly as specified, "
    "down to the last bit of every rounding step."
)

CHAT_MESSAGES = [{"role": "user", "content": "Write a haiku about the sea. 海について俳句を書いて。"}]


def prompts(tokenizer):
    """(name, text) pairs; the chat prompt is rendered with the fixture's own template."""
    chat = tokenizer.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True,
                                         tokenize=False)
    return [
        ("hello", "Hello"),
        ("english", "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 "
                    "landed on the Moon; its crew returned on July 24."),
        ("chinese", "人工智能正在改变我们的生活方式。请用三句话解释什么是机器学习？"),
        ("japanese", "東京は日本の首都です。今日はいい天気ですね！カタカナ、ひらがな、漢字。"),
        ("emoji", "Family 👨\u200d👩\u200d👧\u200d👦, rainbow flag 🏳️\u200d🌈, waving 👋🏽, "
                  "flags 🇫🇷🇯🇵, keycap 1️⃣ and technologist 🧑🏿\u200d💻!"),
        ("combining", "Cafe\u0301 vs Caf\u00e9, nai\u0308ve coöperation, \u212bngstr\u00f6m, "
                      "Zoë, Straße, \ufb01ne, n\u0303 vs ñ, Ελληνικά, русский, עברית."),
        ("whitespace", "def f(x):\n    return  x   *    2\n\n\n\t\tspaces:     end\n \n  \r\n"),
        ("chat", chat),
        ("long", LONG_PROMPT),
    ]


def encode_like_generate(tokenizer, text):
    """Encodes a string prompt exactly as mlx_lm.generate.stream_generate does."""
    add_special_tokens = tokenizer.bos_token is None or not text.startswith(tokenizer.bos_token)
    return tokenizer.encode(text, add_special_tokens=add_special_tokens), add_special_tokens


def prefill_chunks(n_prompt, step):
    """The chunk sizes generate_step's prefill loop uses (see the module docstring)."""
    chunks, left = [], n_prompt
    while left > 1:
        n = min(step, left - 1)
        chunks.append(n)
        left -= n
    return chunks


def stream_text(tokenizer, ids, eos):
    """The text mlx_lm.generate returns: streamed detokenization, stopping before EOS."""
    detok = tokenizer.detokenizer
    for t in ids:
        if t in eos:
            break
        detok.add_token(t)
    detok.finalize()
    return detok.text


def to_f32(a):
    return np.array(a.astype(mx.float32))


def top2_margin(logprobs_f32):
    top = np.partition(logprobs_f32, -2)[-2:]
    return float(top[1] - top[0])


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def forward_logits(model, ids, positions, memo):
    """Logits of model(prompt[None]) at `positions`, once per prompt and compute dtype."""
    key = tuple(ids)
    if key not in memo:
        logits = model(mx.array(ids)[None])[0]
        memo[key] = to_f32(logits[mx.array(positions)])
    return memo[key]


def run_case(model, tokenizer, eos, fixture, mode, name, text, step, tensors, memo,
             max_tokens=None):
    max_tokens = max_tokens or MAX_TOKENS
    # Shorter runs (the quantized half-precision cases) record the first, second and last step.
    logprob_steps = LOGPROB_STEPS if max_tokens == MAX_TOKENS else sorted({0, 1, max_tokens - 1})
    ids, add_special = encode_like_generate(tokenizer, text)
    prompt = mx.array(ids)
    case_name = name if step == DEFAULT_PREFILL_STEP else f"{name}_prefill{step}"
    cid = f"{mode}/{case_name}"

    gen, margins, step_lp = [], [], []
    compute_dtype = None
    for n, (tok, logprobs) in enumerate(generate_step(
            prompt, model, max_tokens=max_tokens, sampler=greedy_sampler,
            prefill_step_size=step)):
        compute_dtype = str(logprobs.dtype).replace("mlx.core.", "")
        lp = to_f32(logprobs)
        gen.append(int(tok))
        margins.append(top2_margin(lp))
        if n in logprob_steps:
            step_lp.append(lp)
        # The sampler's choice must be the argmax (lowest id on ties) of what we record.
        assert int(np.argmax(lp)) == tok, (cid, n)
    assert len(gen) == max_tokens

    positions = sorted({0, len(ids) // 2, len(ids) - 1})
    fwd = forward_logits(model, ids, positions, memo)
    fwd_diff = float(np.abs(log_softmax(fwd[-1]) - step_lp[0]).max())

    first_eos = next((i for i, t in enumerate(gen) if t in eos), None)
    tensors[f"{cid}/prompt_ids"] = mx.array(ids, dtype=mx.int32)
    tensors[f"{cid}/generated_ids"] = mx.array(gen, dtype=mx.int32)
    tensors[f"{cid}/margins"] = mx.array(np.array(margins, dtype=np.float32))
    tensors[f"{cid}/step_logprobs"] = mx.array(np.stack(step_lp))
    tensors[f"{cid}/forward_logits"] = mx.array(fwd)
    return {
        "id": cid,
        "fixture": fixture,
        "dtype_mode": mode,
        "compute_dtype": compute_dtype,
        "prompt_name": case_name,
        "prompt": text,
        "add_special_tokens": add_special,
        "prompt_ids": ids,
        "prefill_step_size": step,
        "prefill_chunks": prefill_chunks(len(ids), step),
        "max_tokens": max_tokens,
        "generated_ids": gen,
        "generated_text": tokenizer.decode(gen),
        "stream_text": stream_text(tokenizer, gen, eos),
        "eos_token_ids": sorted(eos),
        "first_eos_index": first_eos,
        "margins": [float(np.float32(m)) for m in margins],
        "min_margin": float(np.float32(min(margins))),
        "logprob_steps": logprob_steps,
        "forward_positions": positions,
        "forward_vs_step0_max_abs_diff": fwd_diff,
        "logit_std_last_position": float(fwd[-1].std()),
    }


def stored_dtype(model):
    """The dtype the checkpoint's floating weights were loaded in."""
    embed = next(v for k, v in tree_flatten(model.parameters()) if k.endswith("embed_tokens.weight"))
    return str(embed.dtype).replace("mlx.core.", "")


def text_config(fixture_dir):
    """The text model's config: config.json, or its text_config for a multimodal model."""
    with open(fixture_dir / "config.json") as f:
        cfg = json.load(f)
    return cfg.get("text_config", cfg)


class FinalLogitSoftcap(nn.Module):
    """A model whose logits are soft-capped: tanh(logits / cap) * cap (see the docstring)."""

    def __init__(self, model, cap):
        super().__init__()
        self.inner = model
        self.cap = cap

    def __call__(self, inputs, cache=None, **kwargs):
        out = self.inner(inputs, cache=cache, **kwargs)
        out = mx.tanh(out / self.cap)
        return out * self.cap

    @property
    def layers(self):
        return self.inner.layers

    def make_cache(self):
        return self.inner.make_cache()


def run_fixture(fixture_dir, out_dir, native=None, float32_tokens=None):
    """Records every case of one fixture. `native`, when given, narrows the half-precision
    cases to {"prompts": names, "max_tokens": n} (no prompts: none at all), for models
    whose half-precision forward pass is slow on the CPU (MLX's quantized matmul);
    `float32_tokens` shortens the float32 cases' generations."""
    fixture = fixture_dir.name
    t0 = time.perf_counter()
    model, tokenizer = load(str(fixture_dir))
    stored = stored_dtype(model)
    text_cfg = text_config(fixture_dir)
    if text_cfg.get("final_logit_softcapping") is not None:
        # Should mlx-lm start reading the field, the cap must not be applied twice.
        assert "final_logit_softcapping" not in inspect.signature(gemma3_text.ModelArgs).parameters
        model = FinalLogitSoftcap(model, text_cfg["final_logit_softcapping"])
    sliding = text_cfg.get("sliding_window") is not None and "gemma3" in text_cfg.get("model_type", "")
    eos = set(tokenizer.eos_token_ids)
    # Native first (no cast needed), then the same loaded model cast to float32.
    modes = (["native"] if stored != "float32" and (native is None or native["prompts"]) else [])
    modes += ["float32"]
    cases, tensors = [], {}
    for mode in modes:
        if mode == "float32":
            model.set_dtype(mx.float32)
        memo = {}
        max_tokens = MAX_TOKENS
        if mode == "float32" and float32_tokens:
            max_tokens = float32_tokens
        if mode == "native" and native is not None:
            max_tokens = native.get("max_tokens", MAX_TOKENS)
        for name, text in prompts(tokenizer):
            if mode == "native" and native is not None and name not in native["prompts"]:
                continue
            steps = [DEFAULT_PREFILL_STEP]
            if sliding:
                steps += SLIDING_PREFILL_STEPS.get(name, [])
            elif name == "long":
                steps.append(CHUNKED_PREFILL_STEP)
            for step in steps:
                cases.append(run_case(model, tokenizer, eos, fixture, mode, name, text,
                                      step, tensors, memo, max_tokens))

    meta = {
        "cases": json.dumps(cases, ensure_ascii=False),
        "fixture": fixture,
        "eos_token_ids": json.dumps(sorted(eos)),
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "blas": blas_in_use(),
    }
    mx.save_safetensors(str(out_dir / f"{fixture}.safetensors"), tensors, metadata=meta)
    with open(out_dir / f"{fixture}.json", "w", encoding="utf-8") as f:
        json.dump({"fixture": fixture, "stored_dtype": stored, "eos_token_ids": sorted(eos),
                   "mlx": meta["mlx"], "mlx_lm": meta["mlx_lm"], "blas": meta["blas"],
                   "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")

    dt = time.perf_counter() - t0
    for mode in modes:
        mc = [c for c in cases if c["dtype_mode"] == mode]
        worst = min(mc, key=lambda c: c["min_margin"])
        n_eos = sum(c["first_eos_index"] is not None for c in mc)
        lens = sorted({len(c["prompt_ids"]) for c in mc})
        print(f"{fixture:13s} {mode:7s} ({mc[0]['compute_dtype']:8s}) cases={len(mc)} "
              f"prompt_lens={lens} min_margin={worst['min_margin']:.4g} ({worst['prompt_name']}) "
              f"logit_std~{np.mean([c['logit_std_last_position'] for c in mc]):.2f} "
              f"fwd_vs_step0<={max(c['forward_vs_step0_max_abs_diff'] for c in mc):.2g} "
              f"eos_hit={n_eos}")
    print(f"{fixture:13s} done in {dt:.1f}s")
    return cases


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fixtures_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fixtures = sorted(p for p in fixtures_dir.iterdir() if (p / "config.json").is_file())
    if not fixtures:
        sys.exit(f"no fixtures (folders with config.json) in {fixtures_dir}")
    total = 0
    for p in fixtures:
        total += len(run_fixture(p, out_dir))
    print(f"BLAS: {blas_in_use()}")
    print(f"{total} cases from {len(fixtures)} fixtures in {time.perf_counter() - t0:.1f}s "
          f"-> {out_dir}")


if __name__ == "__main__":
    main()
