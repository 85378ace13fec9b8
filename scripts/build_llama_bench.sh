#!/usr/bin/env bash
# Builds llama.cpp's `llama-bench` and `llama-quantize` for scripts/bench_cpu_quant.sh, and
# the GGUF files that benchmark reads besides the fetched ones. A benchmark tool only:
# neither the engine nor scripts/test.sh uses anything this makes.
#
#   .deps/llama.cpp/bin/{llama-bench,llama-quantize}
#   .deps/models/SmolLM2-135M-Instruct.Q8_0.gguf   requantized from the Q4_1 file (its
#                                                  weights are Q4_1's, dequantized: a file
#                                                  for speed, not for quality)
#   .deps/models/SmolLM2-135M-Instruct.F32.gguf    the same, written as float32
#
# No git host is reachable, but llama-cpp-python's PyPI source package vendors llama.cpp
# (vendor/llama.cpp): it is downloaded with pip and only the two tools are built from it,
# statically, for this machine's CPU (GGML_NATIVE: AVX2/FMA where the CPU has them), with
# no HTTPS/download code. Both products live in the per-user cache (scripts/lib.sh); the
# tools' key covers the CPU's flags and the compiler, since a native build runs only on
# CPUs like the one it was made on. Logs: $MLXRUN_CACHE/logs/llama-*.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_NAME=build_llama_bench
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
PY="$DEPS/venv/bin/python"
[ -x "$PY" ] || { log "no virtualenv at $DEPS/venv (run scripts/setup_run.sh first)"; exit 1; }
SRC_MODEL="$DEPS/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$SRC_MODEL" ] || { log "no $SRC_MODEL (run scripts/fetch_models.sh first)"; exit 1; }

LLAMA_CPP_PY="llama-cpp-python==0.3.36"
LOGS="$MLXRUN_CACHE/logs"
mkdir -p "$LOGS"
JOBS="${JOBS:-2}"

# make_llama DIR: the two tools in DIR/bin (the sources and the build folder are removed).
make_llama() {
    local dir="$1" tmp="$1/.src"
    mkdir -p "$tmp"
    log "downloading the $LLAMA_CPP_PY source package"
    run_logged "$LOGS/llama-download.log" "$PY" -m pip download --disable-pip-version-check \
        --no-binary :all: --no-deps "$LLAMA_CPP_PY" -d "$tmp"
    tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp" --wildcards '*/vendor/llama.cpp/*'
    local src
    src="$(echo "$tmp"/llama_cpp_python-*/vendor/llama.cpp)"
    log "building llama-bench and llama-quantize (-j$JOBS; log: $LOGS/llama-build.log)"
    run_logged "$LOGS/llama-configure.log" cmake -S "$src" -B "$tmp/build" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON
    run_logged "$LOGS/llama-build.log" nice cmake --build "$tmp/build" -j "$JOBS" \
        --target llama-bench llama-quantize
    mkdir -p "$dir/bin"
    cp "$tmp/build/bin/llama-bench" "$tmp/build/bin/llama-quantize" "$dir/bin/"
    rm -rf "$tmp"
}

# make_models DIR: the Q8_0 and F32 files, requantized from the Q4_1 one.
make_models() {
    local dir="$1" q
    for q in Q8_0 F32; do
        run_logged "$LOGS/llama-quantize-$q.log" "$LLAMA/bin/llama-quantize" --allow-requantize \
            "$SRC_MODEL" "$dir/SmolLM2-135M-Instruct.$q.gguf" "$q" 2
    done
}

CPU_ID="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | sort | tr '\n' ' ')"
# The keys cover the functions that make the products, not this whole file, so that editing
# the rest does not rebuild llama.cpp.
LLAMA_KEY="$(key llama "$LLAMA_CPP_PY" "$(declare -f make_llama)" "$(uname -m)" \
    "$(c++ --version | head -1)" "$(cmake --version | head -1)" "$CPU_ID")"
cached llama.cpp "$LLAMA_KEY" make_llama
LLAMA="$REPLY"
link llama.cpp "$LLAMA"

MODEL_KEY="$(readlink -f "$SRC_MODEL" | xargs dirname | xargs basename)"
cached benchmodels "$(key benchmodels "$(declare -f make_models)" "$LLAMA_KEY" "$MODEL_KEY")" make_models
for f in "$REPLY"/*.gguf; do link "models/$(basename "$f")" "$f"; done

log "ready: $DEPS/llama.cpp/bin/llama-bench"
