#!/usr/bin/env bash
# The project's test command: installs what is missing (scripts/setup.sh, idempotent),
# then builds and runs every test suite that needs no GPU: Rust, C (through tests/c_api.rs)
# and Go.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --all-targets --locked
cargo test --locked -- --test-threads=2
# The Go binding over the installed C library (go vet + go test -race).
bash scripts/test_go.sh
