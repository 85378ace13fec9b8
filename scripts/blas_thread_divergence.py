"""How much OpenBLAS's thread count moves a fixture's float32 results under mlx-lm.

    .deps/venv/bin/python scripts/blas_thread_divergence.py .deps/fixtures [gemma3 qwen3 ...]

For each fixture and prompt (reference_outputs.py's long and English prompts) it runs, once
with OPENBLAS_NUM_THREADS=1 and once with 2 (each in its own process, OpenBLAS preloaded the
way the references are), the prompt's full forward pass and a 64-token greedy generation,
and prints: the largest |logit difference| over the prompt's positions, the largest
|log-probability difference| over the generated steps up to the first differing token,
where the greedy tokens first differ (or "same"), the smallest top-1/top-2 margin of the
one-thread run, and the logits' spread. Nothing is written. docs/reliability.md ("Clean
exit") records what it found.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def dump(fixtures_dir, names, out):
    """Child side: runs the cases under this process's thread count into an .npz."""
    sys.path.insert(0, str(HERE))
    import reference_outputs as ro  # noqa: E402  (re-executes this process with OpenBLAS preloaded)
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import greedy_sampler

    arrays = {"blas": np.array(ro.blas_in_use())}
    for name in names:
        model, tokenizer = load(str(Path(fixtures_dir) / name))
        model.set_dtype(mx.float32)
        for pname, text in [("long", ro.LONG_PROMPT), ("english", dict(ro.prompts(tokenizer))["english"])]:
            ids, _ = ro.encode_like_generate(tokenizer, text)
            logits = model(mx.array(ids)[None])[0].astype(mx.float32)
            arrays[f"{name}/{pname}/prompt_logits"] = np.array(logits)
            toks, lps = [], []
            for (tok, lp), _ in zip(generate_step(mx.array(ids), model, sampler=greedy_sampler), range(64)):
                toks.append(int(tok))
                lps.append(np.array(lp.astype(mx.float32)))
            arrays[f"{name}/{pname}/tokens"] = np.array(toks)
            arrays[f"{name}/{pname}/logprobs"] = np.stack(lps)
    np.savez(out, **arrays)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--dump":
        return dump(sys.argv[2], sys.argv[4:], sys.argv[3])
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    fixtures_dir = sys.argv[1]
    names = sys.argv[2:] or ["gemma3", "qwen3"]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            out = Path(tmp) / f"t{threads}.npz"
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
            subprocess.run([sys.executable, __file__, "--dump", fixtures_dir, str(out), *names], env=env, check=True)
            runs[threads] = dict(np.load(out))
    a, b = runs[1], runs[2]
    print(f"BLAS: {a['blas']} vs {b['blas']}")
    for name in names:
        for pname in ("long", "english"):
            k = f"{name}/{pname}"
            pl1, pl2 = a[f"{k}/prompt_logits"], b[f"{k}/prompt_logits"]
            t1, t2 = a[f"{k}/tokens"], b[f"{k}/tokens"]
            lp1, lp2 = a[f"{k}/logprobs"], b[f"{k}/logprobs"]
            differ = np.nonzero(t1 != t2)[0]
            first = int(differ[0]) if len(differ) else None
            upto = first if first is not None else len(t1)
            step_diff = float(np.abs(lp1[: upto + 1] - lp2[: upto + 1]).max()) if upto < len(t1) else float(np.abs(lp1 - lp2).max())
            top2 = np.sort(lp1, axis=-1)[:, -2:]
            print(json.dumps({
                "fixture": name, "prompt": pname, "prompt_tokens": int(pl1.shape[0]),
                "prompt_logits_max_abs_diff": float(np.abs(pl1 - pl2).max()),
                "prompt_logits_bit_identical": bool(np.array_equal(pl1, pl2)),
                "step_logprob_max_abs_diff": step_diff,
                "first_differing_token": first if first is not None else "same",
                "min_top2_margin": float((top2[:, 1] - top2[:, 0]).min()),
                "logit_std": float(pl1.std()),
            }))


if __name__ == "__main__":
    main()
