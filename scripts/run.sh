#!/usr/bin/env bash
# The main job: installs what is missing, builds the release binary and generates text.
# With no arguments it streams a continuation from the Qwen3 fixture model (random
# weights, the real Qwen3 tokenizer: the text is gibberish, the pipeline is real) and
# prints the metrics. Any arguments go to `mlxrun` instead, e.g.
#   scripts/run.sh generate --model DIR --prompt "..." --max-tokens 64
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --release --locked --bin mlxrun
if [ $# -eq 0 ]; then
    set -- generate --model "$ROOT/.deps/fixtures/qwen3" --prompt "The capital of France is" --max-tokens 64
fi
exec target/release/mlxrun "$@"
