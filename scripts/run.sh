#!/usr/bin/env bash
# The main job: installs what is missing, builds the release binary and runs it.
# Arguments go to `mlxrun` (default: the engine's smoke run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --release --locked --bin mlxrun
if [ $# -eq 0 ]; then set -- smoke; fi
exec target/release/mlxrun "$@"
