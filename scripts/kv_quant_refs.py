"""mlx-lm's greedy generation with a quantized KV cache.

Usage: kv_quant_refs.py FIXTURES_DIR OUT_JSON

On the qwen3 fixture (head_dim 32, so group sizes up to 32 fit), loaded and cast to float32
as reference_outputs.py does, runs

  generate_step(prompt, model, max_tokens=32, sampler=greedy, prefill_step_size=STEP,
                kv_bits=BITS, kv_group_size=GROUP, quantized_kv_start=START)

for each setting below and writes OUT_JSON: {"fixture", "mlx", "mlx_lm", "blas", "cases":
[{"kv_bits", "kv_group_size", "quantized_kv_start", "prefill_step_size", "prompt_name",
"prompt_ids", "generated_ids", "margins", "step_logprobs_top"}]}, where margins are the
top-1 minus top-2 log-probabilities per step and step_logprobs_top the top-1 log-probability.

Settings: 8 bits from the first step (start 0, so the prefill's keys are converted after it,
then every decode step is quantized), 4 bits converting inside a chunked prefill (start 20,
step 8: the cache is converted after the chunk that reaches 24 positions and the later chunks
go through quantized attention with a causal mask), and 4 bits with group 32 converting at
the end of a single-chunk prefill. The OpenBLAS re-exec of reference_outputs.py applies.
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
from mlx_lm.generate import generate_step  # noqa: E402
from mlx_lm.sample_utils import greedy_sampler  # noqa: E402

MAX_TOKENS = 32
SETTINGS = [
    # (kv_bits, kv_group_size, quantized_kv_start, prompt name, prefill step)
    (8, 32, 0, "english", 2048),
    (8, 32, 0, "long", 8),
    (4, 32, 20, "long", 8),
    (4, 32, 20, "english", 2048),
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fixture = Path(sys.argv[1]) / "qwen3"
    model, tokenizer = load(str(fixture))
    model.set_dtype(mx.float32)
    prompts = dict(ro.prompts(tokenizer))
    cases = []
    for bits, group, start, name, step in SETTINGS:
        ids, _ = ro.encode_like_generate(tokenizer, prompts[name])
        gen, margins, tops = [], [], []
        for tok, logprobs in generate_step(mx.array(ids), model, max_tokens=MAX_TOKENS,
                                           sampler=greedy_sampler, prefill_step_size=step,
                                           kv_bits=bits, kv_group_size=group,
                                           quantized_kv_start=start):
            lp = np.array(logprobs.astype(mx.float32))
            gen.append(int(tok))
            margins.append(ro.top2_margin(lp))
            tops.append(float(lp.max()))
        cases.append({"kv_bits": bits, "kv_group_size": group, "quantized_kv_start": start,
                      "prefill_step_size": step, "prompt_name": name, "prompt_ids": ids,
                      "generated_ids": gen, "margins": margins, "step_logprobs_top": tops})
        print(f"kv {bits} bits g{group} start {start} {name} step {step}: "
              f"min margin {min(margins):.3g}")
    out = {"fixture": "qwen3", "mlx": version("mlx"), "mlx_lm": version("mlx-lm"),
           "blas": ro.blas_in_use(), "cases": cases}
    Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
