# Shared by the setup scripts (sourced, not run): logging, content keys, and the per-user
# cache that setup products live in.
#
# Every product the setup makes (the virtualenv, OpenBLAS, tokenizers, models, fixtures,
# reference outputs) is built once into
#
#     $MLXRUN_CACHE/<name>-<key>/        MLXRUN_CACHE: $MLXRUN_CACHE_DIR, else
#                                        ${XDG_CACHE_HOME:-$HOME/.cache}/mlxrun
#
# where <key> hashes everything that decides its content: the scripts that make it, the
# pinned versions, and the keys of the products it is made from. A changed script or pin
# makes a new key, so nothing stale is ever reused; a second clone on the same machine
# finds its products already there. The checkout's .deps/ holds symlinks into the cache,
# at the paths the build and the tests read. A product folder counts only once it holds
# .mlxrun-complete (written last), and it is built under a lock, so an interrupted or a
# concurrent setup never leaves or uses a half-made one. Old keys are never read again;
# `scripts/setup.sh --prune-cache` removes the ones no product of this checkout uses.

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
DEPS="$ROOT/.deps"
MLXRUN_CACHE="${MLXRUN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlxrun}"
mkdir -p "$DEPS" "$MLXRUN_CACHE"
LOG_NAME="${LOG_NAME:-setup}"

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }

# key PART...: 16 hex digits over the parts (strings: versions, other keys, file hashes).
key() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
# files_key FILE...: a key over the files' names and contents.
files_key() {
    local f
    for f in "$@"; do printf '== %s\n' "$(basename "$f")"; cat "$f"; done | sha256sum | cut -c1-16
}

# cached NAME KEY FN [ARG...]: the folder of product NAME for KEY, in $REPLY. When the cache
# does not hold it yet, runs `FN DIR ARG...` with DIR an empty folder at its final place
# (a virtualenv cannot be moved), under a lock, and marks it complete when FN succeeds.
cached() {
    local name="$1" k="$2" fn="$3"; shift 3
    local dir="$MLXRUN_CACHE/$name-$k"
    REPLY="$dir"
    [ -f "$dir/.mlxrun-complete" ] && return 0
    local fd
    exec {fd}>"$dir.lock"
    flock "$fd"
    if [ ! -f "$dir/.mlxrun-complete" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        local t0=$SECONDS
        "$fn" "$dir" "$@"
        touch "$dir/.mlxrun-complete"
        log "$name ready ($((SECONDS - t0)) s, cached as $(basename "$dir"))"
    fi
    exec {fd}>&-
    REPLY="$dir"
}

# link REL TARGET: .deps/REL becomes a symlink to TARGET (a real folder or file left there
# by an older setup is removed first).
link() {
    local dst="$DEPS/$1" target="$2"
    mkdir -p "$(dirname "$dst")"
    if [ -e "$dst" ] && [ ! -L "$dst" ]; then rm -rf --one-file-system "$dst"; fi
    ln -sfn "$target" "$dst"
}

# link_entries REL DIR: every top-level entry of product folder DIR appears in the real
# folder .deps/REL as a symlink (several products share refs/gguf, say). The links made for
# an earlier key of the same product are removed first.
link_entries() {
    local rel="$1" dir="$2" record
    record="$DEPS/.links-$(printf '%s' "$rel:$(basename "$dir" | sed 's/-[0-9a-f]\{16\}$//')" | tr '/:' '__')"
    mkdir -p "$DEPS/$rel"
    if [ -L "$DEPS/$rel" ]; then rm -f "$DEPS/$rel"; mkdir -p "$DEPS/$rel"; fi
    if [ -f "$record" ]; then
        while IFS= read -r old; do [ -L "$DEPS/$rel/$old" ] && rm -f "$DEPS/$rel/$old"; done <"$record"
    fi
    : >"$record"
    local e name
    for e in "$dir"/*; do
        [ -e "$e" ] || continue
        name="$(basename "$e")"
        if [ -e "$DEPS/$rel/$name" ] && [ ! -L "$DEPS/$rel/$name" ]; then rm -rf "${DEPS:?}/$rel/$name"; fi
        ln -sfn "$e" "$DEPS/$rel/$name"
        printf '%s\n' "$name" >>"$record"
    done
}

# run_logged LOGFILE CMD...: runs CMD with its output in LOGFILE; on failure shows the end
# of the log and fails.
run_logged() {
    local logfile="$1"; shift
    if ! "$@" >"$logfile" 2>&1; then
        tail -n 30 "$logfile" >&2
        log "failed: $* (log: $logfile)"
        return 1
    fi
}

# --- The pins, and the keys of the products everything else is made from ------------------
# One virtualenv serves the build and the references. Its key covers every pin, the test
# ones too (scripts/setup.sh installs those into it after scripts/setup_run.sh made it), so
# a changed pin anywhere makes a new virtualenv rather than changing a folder another
# checkout may be using.
PYTHON="${PYTHON:-python3}"
RUN_PKGS="mlx==0.32.4 mlx-cpu==0.32.4"
# transformers and jinja2 compute the tokenizer and chat-template references; gguf is
# llama.cpp's own Python library, which the GGUF references are computed with.
TEST_PKGS="mlx-lm==0.32.2 numpy==2.2.6 transformers==5.24.0 jinja2==3.1.6 gguf==0.19.0"
# The official OpenAI client drives `mlxrun serve` in tests/serve.rs. Added to an existing
# virtualenv rather than keyed into it: a package only added changes nothing the others use,
# and its own marker (scripts/setup.sh) installs it where it is missing.
SERVE_TEST_PKGS="openai==3.51.0"
PY_VERSION="$("$PYTHON" -c 'import sys, platform; print(sys.version.split()[0], platform.machine())')"
VENV_KEY="$(key venv "$PY_VERSION" "$RUN_PKGS" "$TEST_PKGS")"
# libgfortran5 and libquadmath0 are OpenBLAS's own dependencies.
OB_PKGS="libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0"
OB_KEY="$(key openblas "$OB_PKGS" "$(. /etc/os-release 2>/dev/null && echo "${ID:-}-${VERSION_CODENAME:-}")" "$(uname -m)")"
