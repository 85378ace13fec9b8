#!/usr/bin/env bash
# Runs the benchmarks on a Linux NVIDIA machine from a bundle made by scripts/gpu_bundle.sh
# (no network or cargo needed there): installs MLX's CUDA wheel and mlx-lm into the bundle,
# makes the random benchmark models of Qwen3-0.6B's and Gemma 3 1B's shapes, and runs
# bench generate (single-sequence prefill/decode, also 4-bit) and bench batch (Classify and
# BatchGenerate at batch 64, 256 and 1024) and bench train (LoRA training: bf16, 4-bit
# base, float32; with and without gradient checkpointing), ours beside mlx-lm in each run.
# SUITES (default "generate batch train") picks which run; "fixtures" writes the project's
# fixtures there (byte-identical to this machine's) and prints their greedy float32 tokens
# into RESULTS_DIR/fixture_tokens.txt, which must equal `scripts/fixture_tokens.sh
# target/release/mlxrun .deps/fixtures` on the CPU; "suite" runs bench suite (ours
# and mlx-lm interleaved run by run, medians and spreads, plots) on Qwen3-0.6B, Gemma 3 1B
# and Llama-3.2-1B shapes, bf16, and the Qwen3 and Llama 4-bit conversions, prompts of
# 128..16384 tokens, into RESULTS_DIR/suite.
# The CUDA libraries MLX needs are looked up in the nvidia/*/lib folders of PYTHON's
# site-packages (a PyTorch install has them). Run from the repository root.
# Usage: [SUITES="train"] scripts/gpu_bench.sh BUNDLE [RESULTS_DIR]     (PYTHON: default python3)
set -euo pipefail
B="$(cd "${1:?usage: gpu_bench.sh BUNDLE [RESULTS_DIR]}" && pwd)"
RES="${2:-$B/results}"
mkdir -p "$RES"
. "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
SUITES="${SUITES:-generate batch train}"
# The Gemma 3 model serves generate, batch and suite; the Llama 3.2 one suite only.
has() { [[ " $SUITES " == *" $1 "* ]]; }
MODELS="qwen3-0.6b"
if has generate || has batch || has suite; then MODELS="$MODELS gemma3-1b"; fi
if has suite; then MODELS="$MODELS llama3.2-1b"; fi
for m in $MODELS; do
    [ -f "$M/$m-shape/model.safetensors" ] || TOKENIZERS_DIR="$B/tokenizers" "$PY" scripts/make_fixtures.py --bench-model $m "$M"
done
# The same Qwen3 weights (and for the suite the Llama ones) 4-bit (group 64) by mlx-lm's
# converter: packed weights stay packed on a GPU, and both sides run quantized matmuls.
Q4="qwen3-0.6b"; if has suite; then Q4="$Q4 llama3.2-1b"; fi
for m in $Q4; do
    [ -f "$M/$m-shape-q4/config.json" ] || "$PY" -m mlx_lm convert --hf-path "$M/$m-shape" \
        --mlx-path "$M/$m-shape-q4" -q --q-bits 4 --q-group-size 64 >/dev/null
done
if [[ " $SUITES " == *" generate "* ]]; then
"$B/bin/bench-generate" "$M/qwen3-0.6b-shape" "$M/qwen3-0.6b-shape-q4" "$M/gemma3-1b-shape" --prompt 257 --gen 128 2>&1 \
    | tee "$RES/generate.txt"
fi
if [[ " $SUITES " == *" batch "* ]]; then
for batch in 64 256 1024; do
    MLXRUN_BENCH_MODEL="$M/gemma3-1b-shape" MLXRUN_BENCH_PROMPTS=2048 MLXRUN_BENCH_GEN_PROMPTS=64 \
    MLXRUN_BENCH_PROMPT_LEN=16 MLXRUN_BENCH_BATCH=$batch MLXRUN_BENCH_MAX_TOKENS=64 MLXRUN_BENCH_REPEAT=2 \
        "$B/bin/bench-batch" 2>&1 | tee -a "$RES/batch.txt"
done
fi
if [[ " $SUITES " == *" train "* ]]; then
# LoRA on mlx-lm's default 16 layers, 512-token texts, batch 4: the bf16 checkpoint and its
# 4-bit conversion (QLoRA) as they are, then the bf16 weights computed in float32 (what
# mixed precision saves).
T="--seq 512 --batch 4 --iters 14 --report 2 --layers 16 --repeat 2"
"$B/bin/bench-train" "$M/qwen3-0.6b-shape" "$M/qwen3-0.6b-shape-q4" $T 2>&1 | tee "$RES/train.txt"
"$B/bin/bench-train" "$M/qwen3-0.6b-shape" $T --dtype float32 --variants plain 2>&1 | tee -a "$RES/train.txt"
fi
if has suite; then
"$B/bin/bench-suite" "$M/qwen3-0.6b-shape" "$M/qwen3-0.6b-shape-q4" "$M/gemma3-1b-shape" \
    "$M/llama3.2-1b-shape" "$M/llama3.2-1b-shape-q4" --lengths 128,512,1024,2048,4096,8192,16384 \
    --out "$RES/suite" 2>&1 | tee "$RES/suite.txt"
fi
if has fixtures; then
[ -f "$B/fixtures/qwen3/config.json" ] || TOKENIZERS_DIR="$B/tokenizers" "$PY" scripts/make_fixtures.py "$B/fixtures" >/dev/null
PATH="$(dirname "$PY"):$PATH" bash scripts/fixture_tokens.sh "$B/bin/mlxrun" "$B/fixtures" | tee "$RES/fixture_tokens.txt"
fi
