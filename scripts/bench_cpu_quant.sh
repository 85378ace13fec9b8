#!/usr/bin/env bash
# Quantized GGUF models on the CPU: our engine (`mlxrun bench`) beside llama.cpp's
# `llama-bench` (-t = the number of CPUs), and with --mlx-lm beside mlx-lm, in one run,
# the engines interleaved round by round (scripts/bench_cpu_quant.py). Prints a markdown
# table: per model and engine the median and range of prefill and decode tok/s, the median
# of the per-round ratios ours / other, and the 1-minute load average over the rounds.
# A benchmark, not a test: it asserts nothing.
#
#   scripts/bench_cpu_quant.sh [--pairs N] [--f32] [--mlx-lm]
#     --pairs N   rounds per model (default 3)
#     --f32       also SmolLM2 written as F32 (llama-bench on float32 weights)
#     --mlx-lm    also mlx-lm on SmolLM2's f32 folder (`mlxrun convert`; mlx-lm cannot read
#                 GGUF), in the SmolLM2 Q4_1 rounds; slow
#   MLXRUN_BIN    our binary (default target/release/mlxrun; build it with
#                 `cargo build --release --bin mlxrun`)
#   PROMPT=128 GEN=64   tokens prefilled and generated per run
#
# Models: SmolLM2-135M-Instruct Q4_1 (scripts/fetch_models.sh), its Q8_0 and F32
# requantizations (scripts/build_llama_bench.sh, which also builds llama-bench) and
# Gemma 3 270M Q4_K_M (scripts/fetch_models.sh --gemma3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PAIRS=3 F32=0 MLXLM=0
while [ $# -gt 0 ]; do
    case "$1" in
        --pairs) PAIRS="$2"; shift ;;
        --f32) F32=1 ;;
        --mlx-lm) MLXLM=1 ;;
        *) echo "bench_cpu_quant: unknown argument $1 (known: --pairs N, --f32, --mlx-lm)" >&2; exit 2 ;;
    esac
    shift
done
BIN="${MLXRUN_BIN:-$ROOT/target/release/mlxrun}"
LLAMA_BENCH="$ROOT/.deps/llama.cpp/bin/llama-bench"
PY="$ROOT/.deps/venv/bin/python"
M="$ROOT/.deps/models"
[ -x "$BIN" ] || { echo "bench_cpu_quant: no $BIN (cargo build --release --bin mlxrun, or set MLXRUN_BIN)" >&2; exit 1; }
[ -x "$LLAMA_BENCH" ] || { echo "bench_cpu_quant: no $LLAMA_BENCH (run scripts/build_llama_bench.sh)" >&2; exit 1; }
[ -f "$M/gemma-3-270m-q4_k_m.gguf" ] || { echo "bench_cpu_quant: no Gemma 3 file (run scripts/fetch_models.sh --gemma3)" >&2; exit 1; }

# As the project's other CPU benchmarks: one OpenBLAS thread (our f32 matmuls and
# mlx-lm's), the quantized kernels and llama.cpp threading on their own.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

MODELS=("SmolLM2-135M Q4_1=$M/SmolLM2-135M-Instruct.Q4_1.gguf"
        "SmolLM2-135M Q8_0 (from Q4_1)=$M/SmolLM2-135M-Instruct.Q8_0.gguf"
        "Gemma3-270M Q4_K_M=$M/gemma-3-270m-q4_k_m.gguf")
[ "$F32" = 1 ] && MODELS+=("SmolLM2-135M F32 (from Q4_1)=$M/SmolLM2-135M-Instruct.F32.gguf")

EXTRA=()
if [ "$MLXLM" = 1 ]; then
    # The folder scripts/bench_serve.sh uses too; the driver preloads the OpenBLAS our build
    # links into mlx-lm's process only (as benches/common's reference_command does).
    TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
    DIR="$TARGET/bench-models/smollm2-135m-f32"
    [ -f "$DIR/config.json" ] || "$BIN" convert --gguf "$M/SmolLM2-135M-Instruct.Q4_1.gguf" --out "$DIR" --dtype float32 >&2
    EXTRA=(--mlx-lm-dir "$DIR" --openblas "$(find -L "$ROOT/.deps/openblas" -name libopenblas.so.0 | head -n 1)")
fi

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, $("$BIN" --version)"
exec "$PY" scripts/bench_cpu_quant.py --mlxrun "$BIN" --llama-bench "$LLAMA_BENCH" --pairs "$PAIRS" \
    --prompt "${PROMPT:-128}" --gen "${GEN:-64}" "${EXTRA[@]}" "${MODELS[@]}"
