# Shared by scripts/setup_swift.sh and scripts/test_swift.sh (sourced, not run): the
# Debian-trixie chroot that holds the Swift toolchain, and the mounts it needs while a
# command runs in it. Debian 12 has no Swift, and swiftlang needs glibc >= 2.38, so Swift
# runs in a trixie chroot; libmlxrun.so, built on the host (glibc 2.36), loads fine in it.
#
# Every mount made here is recorded and undone by swift_chroot_unmount_all, which the
# caller installs as an EXIT trap (swift_chroot_trap); nothing is left mounted, even when
# a command fails or the script is interrupted.

# .deps/swift-root is a link into the per-user cache (scripts/setup_swift.sh makes both).
SWIFT_ROOT="${MLXRUN_SWIFT_ROOT:-$ROOT/.deps/swift-root}"
SWIFT_MOUNTS=()

swift_log() { printf 'swift: %s\n' "$*" >&2; }

swift_require_root() {
    [ "$(id -u)" = 0 ] || { swift_log "needs root (debootstrap, chroot and mount do)"; exit 1; }
}

# Whether anything is mounted at or under $1 (a path inside the chroot).
swift_mounted_under() {
    local p
    p="$(realpath -m "$1")"
    awk -v p="$p" '$2 == p || index($2, p "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts
}

# swift_mount KIND SRC DST: mounts and records it. KIND is proc or ro-bind (read-only bind
# mount of a host folder). A mount point that is already in use is refused rather than
# stacked, so that unmounting never takes away someone else's mount.
swift_mount() {
    local kind="$1" src="$2" dst="$3"
    mkdir -p "$dst"
    if swift_mounted_under "$dst"; then
        swift_log "$dst is already mounted (another run in progress, or a stale mount: umount it)"
        exit 1
    fi
    case "$kind" in
        proc) mount -t proc proc "$dst" ;;
        ro-bind) mount --bind "$src" "$dst" && SWIFT_MOUNTS+=("$dst") && mount -o remount,bind,ro "$dst" ;;
        *) swift_log "unknown mount kind $kind"; exit 1 ;;
    esac
    # ro-bind was recorded right after the bind, so a failing remount is still undone.
    [ "$kind" = ro-bind ] || SWIFT_MOUNTS+=("$dst")
}

# Undoes the recorded mounts, newest first.
swift_chroot_unmount_all() {
    local i
    for ((i = ${#SWIFT_MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${SWIFT_MOUNTS[$i]}" 2>/dev/null || umount -l "${SWIFT_MOUNTS[$i]}" || true
    done
    SWIFT_MOUNTS=()
}

swift_chroot_trap() {
    trap 'swift_chroot_unmount_all' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Runs a command in the chroot with a clean environment plus the given VAR=value pairs:
#   swift_in_chroot [VAR=value ...] -- command args...
swift_in_chroot() {
    local env=(HOME=/root PATH=/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8)
    while [ $# -gt 0 ] && [ "$1" != -- ]; do env+=("$1"); shift; done
    shift
    chroot "$SWIFT_ROOT" /usr/bin/env -i "${env[@]}" "$@"
}
