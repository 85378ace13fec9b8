#!/usr/bin/env bash
# The Swift binding's tests (bindings/swift). Swift runs in the Debian-trixie chroot that
# scripts/setup_swift.sh makes under .deps/swift-root (see scripts/swift_chroot.sh for
# why). This script:
#   1. builds the library and the mlxrun program (debug, as scripts/test.sh does anyway);
#   2. writes the Rust engine's greedy outputs for the fixtures (mlxrun generate/chat
#      --json, and each batch prompt generated alone), which the Swift tests must
#      reproduce token for token;
#   3. installs the library (scripts/install.sh) and copies the package into the chroot,
#      under a folder named after this checkout, where SwiftPM's build folder is kept
#      between runs;
#   4. mounts proc, the fixtures and the LoRA datasets and references (read-only), runs
#      `swift build` and `swift test` there, and unmounts on exit, whatever happens.
#      Exits non-zero when a test fails.
# Needs root (chroot, mount).
#
# Usage: scripts/test_swift.sh [swift test flags]    e.g. scripts/test_swift.sh --filter Session
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/swift_chroot.sh
. "$ROOT/scripts/swift_chroot.sh"
swift_require_root

bash scripts/setup.sh
bash scripts/setup_swift.sh
cargo build --locked --lib --bin mlxrun

# Everything this checkout puts in the chroot lives under RUN (in-chroot path).
RUN="/mlxrun/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
HOST_RUN="$SWIFT_ROOT$RUN"
mkdir -p "$HOST_RUN"

# --- 2. The Rust engine's outputs ---------------------------------------------------------
CLI="$ROOT/target/debug/mlxrun"
FIX="$ROOT/.deps/fixtures"
REFS="$HOST_RUN/refs"
rm -rf "$REFS"; mkdir -p "$REFS"
PROMPT="The capital of France is"
GEN_TOKENS=12
for name in qwen3 llama3 gemma3; do
    "$CLI" generate --model "$FIX/$name" --prompt "$PROMPT" --max-tokens "$GEN_TOKENS" --json \
        | jq -c --arg f "$name" --arg p "$PROMPT" --argjson n "$GEN_TOKENS" \
            '{fixture: $f, prompt: $p, max_tokens: $n, result: .}' >"$REFS/generate-$name.json"
done
# The batch prompts, each generated alone: classify must give each one's first token,
# batchGenerate each one's tokens.
BATCH_PROMPTS=("The capital of France is" "Once upon a time" "1, 2, 3," "Hello")
BATCH_TOKENS=8
for p in "${BATCH_PROMPTS[@]}"; do
    "$CLI" generate --model "$FIX/qwen3" --prompt "$p" --max-tokens "$BATCH_TOKENS" --json \
        | jq -c --arg p "$p" '{prompt: $p, result: .}'
done | jq -s -c --argjson n "$BATCH_TOKENS" '{fixture: "qwen3", max_tokens: $n, rows: .}' >"$REFS/batch-qwen3.json"
# A two-turn conversation (the CLI keeps one session across --message turns).
"$CLI" chat --model "$FIX/qwen3" --message "Hello" --message "Tell me more" --max-tokens 8 --json \
    | jq -s -c '{fixture: "qwen3", max_tokens: 8, turns: .}' >"$REFS/chat-qwen3.json"

# --- 3. The library and the package in the chroot -------------------------------------------
PREFIX="$RUN/prefix"
bash scripts/install.sh "$SWIFT_ROOT$PREFIX" --profile debug --no-build >/dev/null
# install.sh records the host's path of the prefix; inside the chroot it is $PREFIX.
sed -i "s|^prefix=.*|prefix=$PREFIX|" "$SWIFT_ROOT$PREFIX/lib/pkgconfig/mlxrun.pc"
# A fresh copy of the sources (cp -p keeps their times, so SwiftPM rebuilds only what
# changed); the build folder beside it stays.
rm -rf "$HOST_RUN/package"
cp -rp bindings/swift "$HOST_RUN/package"
rm -rf "$HOST_RUN/package/.build"

# --- 4. Build and test ----------------------------------------------------------------------
swift_chroot_trap
swift_mount proc - "$SWIFT_ROOT/proc"
swift_mount ro-bind "$FIX" "$HOST_RUN/fixtures"
# The LoRA datasets and mlx-lm's training runs on them (scripts/lora_refs.py), for the
# training tests.
swift_mount ro-bind "$ROOT/tests/data/lora" "$HOST_RUN/lora-data"
swift_mount ro-bind "$(realpath "$ROOT/.deps/refs/lora")" "$HOST_RUN/lora-refs"
# The project's virtualenv (mlx-lm, for the mlx_lm backend's tests) and the Python it was
# made from, at the path its links name. A Python under /usr is the chroot's own system's
# place, so it is not mounted over, and those tests are skipped (they say so).
VENV="$(realpath "$ROOT/.deps/venv")"
PY_HOME="$(dirname "$(dirname "$(realpath "$VENV/bin/python3")")")"
SWIFT_VENV=""
case "$PY_HOME" in
    /usr | /usr/*) ;;
    *)
        swift_mount ro-bind "$PY_HOME" "$SWIFT_ROOT$PY_HOME"
        swift_mount ro-bind "$VENV" "$HOST_RUN/venv"
        SWIFT_VENV="$RUN/venv"
        ;;
esac
swift_in_chroot \
    PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" \
    MLXRUN_FIXTURES="$RUN/fixtures" \
    MLXRUN_SWIFT_REFS="$RUN/refs" \
    MLXRUN_LORA_DATA="$RUN/lora-data" \
    MLXRUN_LORA_REFS="$RUN/lora-refs" \
    MLXRUN_SWIFT_VENV="$SWIFT_VENV" \
    -- /bin/sh -c 'cd "$0/package" && b="--scratch-path $0/build -Xlinker -rpath -Xlinker $0/prefix/lib" && swift build $b && swift test $b "$@"' \
    "$RUN" "$@"
