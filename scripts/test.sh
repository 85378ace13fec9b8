#!/usr/bin/env bash
# The project's test command: installs what is missing (scripts/setup.sh, idempotent),
# then builds and runs every test suite that needs no GPU: Rust, C (through tests/c_api.rs),
# Go and Swift (in a Debian-trixie chroot; needs root, see scripts/test_swift.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --all-targets --locked
cargo test --locked -- --test-threads=2
# The Go binding over the installed C library (go vet + go test -race).
bash scripts/test_go.sh
# The Swift binding, in the Swift chroot (swift build + swift test).
bash scripts/test_swift.sh
