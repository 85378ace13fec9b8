#!/usr/bin/env bash
# Installs the Swift toolchain the Swift binding's tests use (scripts/test_swift.sh): a
# Debian-trixie chroot (debootstrap from this machine's own Debian mirror), with swiftlang
# and libc6-dev inside. It is made once per machine in the per-user cache (scripts/lib.sh),
# under a key of the suite and packages, and .deps/swift-root links to it; the file
# .mlxrun-packages in it names what was installed, and the step is skipped when it
# matches. Needs root; reads no stdin. About 1.5 minutes and 575 MB of downloads on a fresh
# machine; the chroot takes 2.6 GB.
#
# Usage: scripts/setup_swift.sh     (MLXRUN_SWIFT_ROOT names another folder for the chroot,
#                                    MLXRUN_DEBIAN_MIRROR the mirror)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_NAME=swift
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

SUITE=trixie
PKGS="swiftlang libc6-dev"
WANT="$SUITE minbase: $PKGS"
if [ -z "${MLXRUN_SWIFT_ROOT:-}" ]; then
    if [ -d "$DEPS/swift-root" ] && [ ! -L "$DEPS/swift-root" ]; then
        MLXRUN_SWIFT_ROOT="$DEPS/swift-root"  # an older setup's chroot: used where it is
    else
        MLXRUN_SWIFT_ROOT="$MLXRUN_CACHE/swift-root-$(key swift-root "$WANT" "$(uname -m)")"
        [ "$(readlink "$DEPS/swift-root" 2>/dev/null)" = "$MLXRUN_SWIFT_ROOT" ] || link swift-root "$MLXRUN_SWIFT_ROOT"
    fi
    export MLXRUN_SWIFT_ROOT
fi
# shellcheck source=scripts/swift_chroot.sh
. "$ROOT/scripts/swift_chroot.sh"
STAMP="$SWIFT_ROOT/.mlxrun-packages"
# (usr/bin/swift is an absolute link, into the chroot's own /usr/libexec/swift.)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$SWIFT_ROOT/usr/libexec/swift/bin/swift" ]; then
    exit 0
fi
swift_require_root
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$SWIFT_ROOT"
# One setup at a time per chroot (several checkouts share it).
exec {swift_lock}>"$SWIFT_ROOT.lock"
flock "$swift_lock"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$SWIFT_ROOT/usr/libexec/swift/bin/swift" ]; then
    exit 0
fi

# The mirror this machine already uses (deb822 sources, else the one-line format).
mirror() {
    if [ -n "${MLXRUN_DEBIAN_MIRROR:-}" ]; then echo "$MLXRUN_DEBIAN_MIRROR"; return; fi
    local m=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        m="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m="$(awk '/^deb / && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

if ! command -v debootstrap >/dev/null; then
    swift_log "installing debootstrap"
    apt-get install -y -qq debootstrap >/dev/null 2>&1 || { apt-get update -qq >/dev/null; apt-get install -y -qq debootstrap >/dev/null; }
fi

swift_chroot_trap
# A finished debootstrap leaves .mlxrun-debootstrap; a folder without it is an interrupted
# one and is made again (after checking that nothing is mounted in it).
if [ ! -f "$SWIFT_ROOT/.mlxrun-debootstrap" ]; then
    if [ -n "$(ls -A "$SWIFT_ROOT")" ]; then
        if swift_mounted_under "$SWIFT_ROOT"; then
            swift_log "$SWIFT_ROOT has mounts in it; unmount them first"; exit 1
        fi
        swift_log "removing the unfinished chroot $SWIFT_ROOT"
        rm -rf --one-file-system "$SWIFT_ROOT"
    fi
    MIRROR="$(mirror)"
    swift_log "debootstrap $SUITE into $SWIFT_ROOT from $MIRROR"
    mkdir -p "$SWIFT_ROOT"
    DLOG="$MLXRUN_CACHE/logs/swift-debootstrap.log"
    mkdir -p "$(dirname "$DLOG")"
    debootstrap --variant=minbase "$SUITE" "$SWIFT_ROOT" "$MIRROR" >"$DLOG" 2>&1 \
        || { tail -n 20 "$DLOG" >&2; swift_log "debootstrap failed (log: $DLOG)"; exit 1; }
    touch "$SWIFT_ROOT/.mlxrun-debootstrap"
fi

cp /etc/resolv.conf "$SWIFT_ROOT/etc/resolv.conf"
swift_mount proc - "$SWIFT_ROOT/proc"
swift_log "installing $PKGS in the chroot"
swift_in_chroot DEBIAN_FRONTEND=noninteractive -- apt-get update -qq
swift_in_chroot DEBIAN_FRONTEND=noninteractive -- apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
swift_in_chroot -- swift --version >&2
swift_in_chroot -- apt-get clean
printf '%s' "$WANT" >"$STAMP"
