#!/usr/bin/env bash
# The Go binding's tests (bindings/go): builds the library and the mlxrun program (debug,
# the profile scripts/test.sh builds anyway), installs the library under the git-ignored
# target/go-prefix, then runs `go vet` and `go test -race` against it. The tests compare
# greedy output with the Rust engine's through target/debug/mlxrun.
#
# Usage: scripts/test_go.sh [go test flags]    e.g. scripts/test_go.sh -run TestChat -v
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v go >/dev/null || { echo "test_go.sh: go is not installed (Go 1.23 or newer is needed)" >&2; exit 1; }

bash scripts/setup.sh
cargo build --locked --lib --bin mlxrun
PREFIX="$ROOT/target/go-prefix"
bash scripts/install.sh "$PREFIX" --profile debug --no-build

export CGO_ENABLED=1
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# Go's build cache does not notice a changed C header outside the package; naming the
# header's hash in the C flags makes a changed mlxrun.h rebuild the binding.
HEADER_SUM="$(sha256sum "$PREFIX/include/mlxrun.h" | cut -c1-16)"
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -DMLXRUN_HEADER_SUM=$HEADER_SUM"
export MLXRUN_CLI="$ROOT/target/debug/mlxrun"
export MLXRUN_FIXTURES="$ROOT/.deps/fixtures"

cd bindings/go
go vet ./...
# -count=1: the results depend on libmlxrun.so, which Go's test cache does not track.
go test -race -count=1 "$@" ./...
