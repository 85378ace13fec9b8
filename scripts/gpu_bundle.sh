#!/usr/bin/env bash
# Packs what the benchmarks need on a Linux NVIDIA machine that has Python 3.12 and the
# CUDA libraries (e.g. a PyTorch install) but no network and no Rust toolchain:
#   OUT/wheels/     mlx, mlx-cuda-13 and mlx-lm, pinned to the versions the project uses
#   OUT/bin/        mlxrun, bench-generate, bench-batch, bench-train, bench-suite and
#                   bench-micro, release builds without OpenBLAS (the CUDA backend does not
#                   use it), debug info stripped
#   OUT/tokenizers/ the qwen3, gemma3 and llama3_1 tokenizers, for the benchmark models
# Then, on that machine, from a copy of this repository: scripts/gpu_bench.sh OUT (and on a
# machine with two GPUs, scripts/gpu_tp.sh OUT)
# Usage: scripts/gpu_bundle.sh OUT
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:?usage: gpu_bundle.sh OUT}" && cd "$1" && pwd)"
cd "$ROOT"
bash scripts/setup.sh >/dev/null
mkdir -p "$OUT/wheels" "$OUT/bin" "$OUT/tokenizers"
if ! ls "$OUT"/wheels/mlx_cuda_13-*.whl >/dev/null 2>&1; then
    .deps/venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_35_x86_64 -d "$OUT/wheels" \
        mlx==0.32.4 mlx-cuda-13==0.32.4 mlx-lm==0.32.2
fi
# The executables cargo built, by name, from its JSON messages.
MLXRUN_NO_OPENBLAS=1 CARGO_TARGET_DIR="$ROOT/target/gpu" cargo build --release --locked \
    --bin mlxrun --bench generate --bench batch --bench train --bench suite --bench micro --bench decode_overhead --message-format=json \
  | .deps/venv/bin/python -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])' \
  | while read -r name exe; do
        case "$name" in mlxrun) dest=mlxrun ;; *) dest="bench-$name" ;; esac
        objcopy --strip-debug "$exe" "$OUT/bin/$dest"
    done
for t in qwen3 gemma3 llama3_1; do
    mkdir -p "$OUT/tokenizers/$t"
    cp .deps/tokenizers/$t/tokenizer.json .deps/tokenizers/$t/tokenizer_config.json "$OUT/tokenizers/$t/"
done
ls -l "$OUT"/bin "$OUT"/wheels
