#!/usr/bin/env bash
# Regenerates include/mlxrun.h from src/capi with cbindgen (through the header test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MLXRUN_UPDATE_HEADER=1 cargo test --quiet --test c_header
echo "include/mlxrun.h regenerated"
