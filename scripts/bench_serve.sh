#!/usr/bin/env bash
# The server load test: the same bounded load (scripts/serve_load.py: CLIENTS concurrent
# streaming chat clients, greedy, MAX_TOKENS each) against `mlxrun serve` and against
# mlx-lm's `mlx_lm.server` on the same model, one after the other in one run, on
# localhost only. Prints one line per server: aggregate tok/s, p50/p95 time to first token,
# and the CPU time the server process spent on the load (user + system, all its threads):
# on a shared, noisy machine the wall-clock figures move with other jobs, the CPU time
# much less.
# A benchmark, not a test: it asserts nothing.
#
#   scripts/bench_serve.sh [MODEL_DIR]      (default: SmolLM2-135M-Instruct, its GGUF
#                                            converted once to an f32 HF folder)
#   CLIENTS=32 MAX_TOKENS=32 TIMEOUT=600    the load; each phase is cut off after TIMEOUT s
#
# Both compute in f32 on the CPU; mlx-lm gets the same OpenBLAS preloaded (see
# ARCHITECTURE.md), and its batching (--decode-concurrency) is given the same width as
# ours (--max-concurrent); both prefill up to 8 arriving prompts together (their defaults).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLIENTS="${CLIENTS:-32}"
MAX_TOKENS="${MAX_TOKENS:-32}"
TIMEOUT="${TIMEOUT:-600}"
PY="$ROOT/.deps/venv/bin/python"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release --bin mlxrun >&2
BIN="$TARGET/release/mlxrun"

MODEL="${1:-}"
if [ -z "$MODEL" ]; then
    MODEL="$TARGET/bench-models/smollm2-135m-f32"
    [ -f "$MODEL/config.json" ] || "$BIN" convert --gguf .deps/models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$MODEL" --dtype float32 >&2
fi
OPENBLAS="$(find -L "$ROOT/.deps/openblas" -name libopenblas.so.0 | head -n 1)"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_up() { # PORT PID
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$1/v1/models" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}
# CPU seconds (user + system) that process PID has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# NAME then the server's command line (it is given --port PORT).
run_one() {
    local name="$1" port pid out cpu0
    shift
    port="$(free_port)"
    "$@" --port "$port" >"$TARGET/bench-serve-$name.log" 2>&1 &
    pid=$!
    if wait_up "$port" "$pid"; then
        # A warm-up request, so that neither side's first-call costs count.
        curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
            -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}' >/dev/null || true
        cpu0="$(cpu_s "$pid")"
        # Both servers take the path they were started with as the model's name.
        out="$(timeout "$TIMEOUT" "$PY" scripts/serve_load.py "http://127.0.0.1:$port/v1" "$MODEL" --clients "$CLIENTS" --max-tokens "$MAX_TOKENS" --timeout "$TIMEOUT" || echo '{"error": "timed out"}')"
        out="${out%\}}, \"server_cpu_s\": $(awk -v a="$cpu0" -v b="$(cpu_s "$pid")" 'BEGIN { printf "%.1f", b - a }')}"
    else
        out='{"error": "the server did not start; see '"$TARGET/bench-serve-$name.log"'"}'
    fi
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '%-14s %s\n' "$name" "$out"
}

echo "model $MODEL, $CLIENTS streaming clients x $MAX_TOKENS tokens, $(nproc) CPU cores"
run_one mlxrun "$BIN" serve --model "$MODEL" --max-concurrent "$CLIENTS" --quiet
run_one mlx_lm.server env LD_PRELOAD="$OPENBLAS" LD_LIBRARY_PATH="$(dirname "$(dirname "$OPENBLAS")")" \
    "$PY" -m mlx_lm server --model "$MODEL" --decode-concurrency "$CLIENTS" --log-level WARNING
