#!/usr/bin/env bash
# Starts, generates with and exits a C program that uses the installed library N times in
# a row (tests/c/exit_after_generate.c on the qwen3 fixture), each run under a timeout, and
# fails when any run hangs at exit or does not exit with status 0. tests/clean_exit.rs runs
# a CI-sized version of this inside `cargo test`; this is the long run:
#
#   scripts/exit_loop.sh [N] [--profile debug|release] [--timeout S] [--model DIR] [--modes "busy free keep atexit"]
#
#   N          runs (default 500)
#   --modes    the program's modes, used in turn (default: busy free keep atexit; see the
#              C file)
#   --timeout  seconds one run may take before it counts as hung (default 60)
#
# OpenBLAS runs with 2 threads (OPENBLAS_NUM_THREADS=2 unless set): its exit race needs a
# worker thread. A hung run's threads are printed with gdb, where installed, before it is
# killed. Ends with "N passed, N failed".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N=500 PROFILE=debug TIMEOUT=60 MODEL="$ROOT/.deps/fixtures/qwen3" MODES="busy free keep atexit"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) PROFILE="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --model) MODEL="$2"; shift 2 ;;
        --modes) MODES="$2"; shift 2 ;;
        [0-9]*) N="$1"; shift ;;
        *) echo "exit_loop.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
WORK="$ROOT/target/exit-loop"
mkdir -p "$WORK"
cd "$ROOT"
if [ "$PROFILE" = release ]; then cargo build --lib --release --locked --quiet; else cargo build --lib --locked --quiet; fi || exit 1
bash scripts/install.sh "$WORK/prefix" --profile "$PROFILE" --no-build >/dev/null || exit 1
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -O1 tests/c/exit_after_generate.c \
    $(PKG_CONFIG_PATH="$WORK/prefix/lib/pkgconfig" pkg-config --cflags --libs mlxrun) -lpthread -lm \
    -o "$WORK/exit_after_generate" || exit 1

read -r -a modes <<<"$MODES"
passed=0 failed=0 t0=$SECONDS
for ((i = 1; i <= N; i++)); do
    mode="${modes[$(((i - 1) % ${#modes[@]}))]}"
    "$WORK/exit_after_generate" "$MODEL" "$mode" >"$WORK/run.out" 2>&1 &
    pid=$!
    deadline=$((SECONDS + TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run $i ($mode): still running after ${TIMEOUT} s" >&2
        command -v gdb >/dev/null && gdb -batch -ex "thread apply all bt 10" -p "$pid" 2>/dev/null | grep '^#\|^Thread' >&2
        kill -9 "$pid"; wait "$pid" 2>/dev/null
        failed=$((failed + 1))
    elif wait "$pid"; then
        passed=$((passed + 1))
    else
        echo "run $i ($mode): exited with status $?" >&2; cat "$WORK/run.out" >&2
        failed=$((failed + 1))
    fi
done
echo "exit_loop: $N runs (modes: $MODES, OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS) in $((SECONDS - t0)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
