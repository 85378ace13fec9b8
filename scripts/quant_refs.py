"""Quantized fixtures made by mlx-lm's own converter, and what mlx-lm generates on them.

Usage: quant_refs.py FIXTURES_DIR QUANT_FIXTURES_DIR OUT_DIR [--resume]

--resume keeps the outputs of (fixture, recipe) pairs already written by an interrupted run.

For every family fixture in FIXTURES (llama3, qwen2, qwen3, gemma3, as make_fixtures.py
writes them) and every recipe below, runs

  python -m mlx_lm convert --hf-path FIXTURES_DIR/<fixture> --mlx-path QUANT/<fixture>-<recipe> -q ...

and then records mlx-lm's greedy generation on the converted folder exactly as
reference_outputs.py does for the dense fixtures (same tensors, same case JSON, same
OpenBLAS re-exec), into OUT_DIR/<fixture>-<recipe>.safetensors / .json.

Recipes (mlx-lm's converter arguments):
  q4g64    --q-bits 4 --q-group-size 64      (qwen2's down_proj, 160 inputs, stays dense:
                                              the converter skips layers the group size
                                              does not divide)
  q8g32    --q-bits 8 --q-group-size 32
  mixed36  --quant-predicate mixed_3_6       (per-layer entries in config.json: 6-bit v_proj
                                              and down_proj in some layers, 3-bit elsewhere)

Differences from reference_outputs.py, to keep MLX's slow CPU quantized matmul (about a
hundred times slower than OpenBLAS's sgemm, and slower still in float16/bfloat16) within
a minute or two:
  * prompts: hello, english, chat, and "long" shortened to its first 400 characters
    (still chunked with a prefill step of 8; Gemma 3 gets its sliding-window chunkings);
  * "float32" (model.set_dtype(float32), which casts scales and biases too) runs every
    prompt for 24 tokens (FLOAT32_TOKENS below; the dense references run 64);
  * "native" (the checkpoint's scales dtype, when it is not float32) runs only where the
    tests read it: the "hello" prompt of the q4g64 recipe, 16 tokens (NATIVE below). The
    same kernels in float32 already cover every prompt; the half-precision cases prove
    that the dtype is carried through, which one short prompt does.
The stored dtype of a quantized checkpoint is that of its embedding's scales.

Also writes OUT_DIR/recipes.json: {"<fixture>-<recipe>": {"fixture", "recipe", "args"}}.
Deterministic: mlx.core.quantize and the generation are.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_outputs as ro  # noqa: E402  (re-executes with OpenBLAS preloaded)

from mlx.utils import tree_flatten  # noqa: E402

FIXTURES = ["llama3", "qwen2", "qwen3", "gemma3"]
RECIPES = {
    "q4g64": ["--q-bits", "4", "--q-group-size", "64"],
    "q8g32": ["--q-bits", "8", "--q-group-size", "32"],
    "mixed36": ["--quant-predicate", "mixed_3_6"],
}
SHORT_LONG_PROMPT = ro.LONG_PROMPT[:400]
# The half-precision cases each recipe records (see the docstring).
NATIVE = {"q4g64": {"prompts": {"hello"}, "max_tokens": 16}}
NO_NATIVE = {"prompts": set()}
# Greedy tokens per float32 case. The dense references run 64; here 24 already cross many
# packed matmuls per token through every layer, and the three tests that replay these
# cases (packed, unpacked, quantized at load) took most of the Rust suite's time at 64.
FLOAT32_TOKENS = 24


def prompts(tokenizer):
    keep = {"hello", "english", "chat"}
    out = [(n, t) for n, t in ro.ORIGINAL_PROMPTS(tokenizer) if n in keep]
    return out + [("long", SHORT_LONG_PROMPT)]


def stored_dtype(model):
    """The dtype of the checkpoint's floats: the embedding's scales when it is quantized."""
    params = dict(tree_flatten(model.parameters()))
    for k, v in params.items():
        if k.endswith("embed_tokens.scales"):
            return str(v.dtype).replace("mlx.core.", "")
    return ro.ORIGINAL_STORED_DTYPE(model)


def convert(src, dst, args):
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run([sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(src),
                    "--mlx-path", str(dst), "-q", *args], check=True, stdout=subprocess.DEVNULL)
    # The converter copies the tokenizer; generation_config.json (the EOS ids) too.
    for extra in ["generation_config.json"]:
        if (src / extra).exists() and not (dst / extra).exists():
            shutil.copy(src / extra, dst / extra)


def main():
    args = [a for a in sys.argv[1:] if a != "--resume"]
    if len(args) != 3:
        sys.exit(__doc__)
    resume = "--resume" in sys.argv
    fixtures, qdir, out = (Path(a) for a in args)
    qdir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    ro.ORIGINAL_PROMPTS, ro.prompts = ro.prompts, prompts
    ro.ORIGINAL_STORED_DTYPE, ro.stored_dtype = ro.stored_dtype, stored_dtype
    recipes = {}
    for fixture in FIXTURES:
        for recipe, args in RECIPES.items():
            name = f"{fixture}-{recipe}"
            recipes[name] = {"fixture": fixture, "recipe": recipe, "args": args}
            if resume and (out / f"{name}.json").exists() and (qdir / name / "config.json").exists():
                continue
            convert(fixtures / fixture, qdir / name, args)
            ro.run_fixture(qdir / name, out, native=NATIVE.get(recipe, NO_NATIVE), float32_tokens=FLOAT32_TOKENS)
    with open(out / "recipes.json", "w") as f:
        json.dump(recipes, f, indent=1)
        f.write("\n")
    print(f"BLAS: {ro.blas_in_use()}")


if __name__ == "__main__":
    main()
