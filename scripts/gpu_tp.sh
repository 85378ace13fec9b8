#!/usr/bin/env bash
# Tensor parallelism on two NVIDIA GPUs of one machine, over NCCL: the check and the
# benchmark. Run from a copy of this repository on a machine with 2 or more GPUs, Python
# 3.12 and the CUDA libraries (e.g. a PyTorch install), with a bundle made here by
# scripts/gpu_bundle.sh (no network or cargo needed there), as scripts/gpu_bench.sh is.
#
# 1. Equality: each fixture (scripts/make_fixtures.py; float32) generates 32 greedy tokens
#    on one GPU and on two (`mlxrun launch -n 2 --backend nccl`); the token ids must be the
#    same. The Llama-3.2-1B-shaped bf16 model is compared too, and reported, not failed: in
#    bf16 the two sums of each row-split product round differently, so a near tie between
#    the top two logits may go the other way.
# 2. Benchmark: `mlxrun bench` (bf16, PROMPT-token prompt, GEN tokens, RUNS runs) on a
#    Llama-3.2-1B- and a Llama-3.1-8B-shaped random model, one GPU against two, and mlx-lm
#    beside it in the same run: scripts/bench_reference.py on one GPU and its --sharded mode
#    (mlx-lm's own `sharded_load`, tensor-parallel) on two, started by `mlx.launch --backend
#    nccl`. Prefill and decode tok/s and peak memory (per GPU: each rank's own) go to
#    RESULTS_DIR/tp.json and a table on stdout.
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0) on both sides.
# Usage: scripts/gpu_tp.sh BUNDLE [RESULTS_DIR]   (PROMPT, GEN, RUNS: default 512, 128, 3)
set -euo pipefail
B="$(cd "${1:?usage: gpu_tp.sh BUNDLE [RESULTS_DIR]}" && pwd)"
RES="${2:-$B/results}"
mkdir -p "$RES"
. "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export NCCL_NVLS_ENABLE=0
PROMPT="${PROMPT:-512}" GEN="${GEN:-128}" RUNS="${RUNS:-3}"
MLXRUN="$B/bin/mlxrun"
GPUS=$(nvidia-smi -L | wc -l)
[ "$GPUS" -ge 2 ] || { echo "gpu_tp.sh: needs 2 GPUs, nvidia-smi lists $GPUS" >&2; exit 1; }
nvidia-smi -L

# 1. Equality.
[ -f "$B/fixtures/qwen3/config.json" ] || TOKENIZERS_DIR="$B/tokenizers" "$PY" scripts/make_fixtures.py "$B/fixtures" >/dev/null
for m in llama3.2-1b llama3.1-8b; do
    [ -f "$M/$m-shape/config.json" ] || TOKENIZERS_DIR="$B/tokenizers" "$PY" scripts/make_fixtures.py --bench-model $m "$M"
done
ids() { "$PY" -c 'import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["tokens"])'; }
GEN_ARGS=(--prompt "The capital of France is" --max-tokens 32 --ignore-eos --json)
differ=0
for model in "$B"/fixtures/llama3 "$B"/fixtures/qwen2 "$B"/fixtures/qwen3 "$B"/fixtures/gemma3 "$M/llama3.2-1b-shape"; do
    one=$(CUDA_VISIBLE_DEVICES=0 "$MLXRUN" generate --model "$model" "${GEN_ARGS[@]}" | ids)
    two=$("$MLXRUN" launch -n 2 --backend nccl -- generate --model "$model" "${GEN_ARGS[@]}" | ids)
    name=$(basename "$model")
    if [ "$one" = "$two" ]; then
        echo "equal    $name: 2 GPUs give 1 GPU's 32 greedy tokens"
    else
        echo "DIFFER   $name:"; echo "  1 GPU:  $one"; echo "  2 GPUs: $two"
    fi
done | tee "$RES/tp_equality.txt"
# A fixture (float32) that differs fails the run; the bf16 shape is only reported.
grep -q '^DIFFER   [a-z0-9]*:$' "$RES/tp_equality.txt" && differ=1

# 2. Benchmark, each side alternating with the other model by model.
mlx_launch() { "$PY" -c 'import sys; from mlx._distributed_utils.launch import main; sys.argv[0] = "mlx.launch"; sys.exit(main())' "$@"; }
BENCH=(--prompt-tokens "$PROMPT" --gen-tokens "$GEN" --runs "$RUNS" --json)
: > "$RES/tp.jsonl"
for m in llama3.2-1b llama3.1-8b; do
    d="$M/$m-shape"
    row() { "$PY" -c 'import json, sys; print(json.dumps({**json.loads(sys.stdin.read().strip().splitlines()[-1]), "model": sys.argv[1], "side": sys.argv[2]}))' "$m" "$1" >> "$RES/tp.jsonl"; }
    CUDA_VISIBLE_DEVICES=0 "$MLXRUN" bench --model "$d" "${BENCH[@]}" | row "ours, 1 GPU"
    "$MLXRUN" launch -n 2 --backend nccl -- bench --model "$d" "${BENCH[@]}" | row "ours, 2 GPUs"
    CUDA_VISIBLE_DEVICES=0 "$PY" scripts/bench_reference.py "$d" "$PROMPT" "$GEN" "$RUNS" --dtype bfloat16 | row "mlx-lm, 1 GPU"
    mlx_launch --backend nccl -n 2 --env NCCL_NVLS_ENABLE=0 -- scripts/bench_reference.py "$d" "$PROMPT" "$GEN" "$RUNS" \
        --dtype bfloat16 --sharded nccl | row "mlx-lm, 2 GPUs"
done
"$PY" - "$RES/tp.jsonl" <<'PYEOF' | tee "$RES/tp.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def fig(r, k):
    v = r[k]
    return v["max"] if isinstance(v, dict) else v
print("| model | side | prefill tok/s | decode tok/s | peak MiB (rank 0's GPU) |")
print("| --- | --- | ---: | ---: | ---: |")
for r in rows:
    peak = r.get("peak_memory_bytes", r.get("peak_memory", 0)) / 2**20
    print(f"| {r['model']} | {r['side']} | {fig(r, 'prefill_tok_s'):,.0f} | {fig(r, 'decode_tok_s'):,.1f} | {peak:,.0f} |")
PYEOF
exit $differ
