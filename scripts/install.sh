#!/usr/bin/env bash
# Installs the C library under a prefix:
#   PREFIX/include/mlxrun.h
#   PREFIX/lib/libmlxrun.so, libmlxrun.a
#   PREFIX/lib/mlxrun/mlx/...   MLX's libmlx.so with the libraries it needs, in the wheel's
#                               layout (its own rpath expects that layout)
#   PREFIX/lib/mlxrun/blas/     OpenBLAS and its runtime (Linux CPU builds)
#   PREFIX/lib/pkgconfig/mlxrun.pc
# libmlxrun.so looks for MLX and OpenBLAS in lib/mlxrun first, so the prefix can be moved.
#
# Usage: scripts/install.sh PREFIX [--profile release|debug] [--no-build]
#   (default: release; --no-build installs what target/PROFILE already holds)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${1:?usage: install.sh PREFIX [--profile release|debug]}"
PROFILE=release
BUILD=1
shift
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) PROFILE="${2:?--profile needs release or debug}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    bash scripts/setup_run.sh
    if [ "$PROFILE" = release ]; then cargo build --release --locked --lib; else cargo build --locked --lib; fi
fi
mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"
LIB="$PREFIX/lib"
mkdir -p "$LIB/pkgconfig" "$PREFIX/include" "$LIB/mlxrun/blas"
cp "target/$PROFILE/libmlxrun.so" "target/$PROFILE/libmlxrun.a" "$LIB/"
cp include/mlxrun.h "$PREFIX/include/"

# MLX, in the wheel's layout: mlx/lib/libmlx.so finds ../../mlx_cpu.libs (or the CUDA
# wheel's libraries) through its own rpath.
MLX_PKG="${MLX_DIR:-$(ls -d "$ROOT"/.deps/venv/lib/python3*/site-packages/mlx | tail -n 1)}"
rm -rf "$LIB/mlxrun/mlx" "$LIB/mlxrun/mlx_cpu.libs"
mkdir -p "$LIB/mlxrun/mlx/lib"
cp "$MLX_PKG/lib/libmlx.so" "$LIB/mlxrun/mlx/lib/"
if [ -d "$MLX_PKG/../mlx_cpu.libs" ]; then cp -r "$MLX_PKG/../mlx_cpu.libs" "$LIB/mlxrun/"; fi
OB="$ROOT/.deps/openblas/usr/lib/x86_64-linux-gnu"
if [ -e "$OB/openblas-pthread/libopenblas.so.0" ]; then
    cp -L "$OB/openblas-pthread/libopenblas.so.0" "$OB/libgfortran.so.5" "$OB/libquadmath.so.0" "$LIB/mlxrun/blas/"
fi

cat >"$LIB/pkgconfig/mlxrun.pc" <<PC
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: mlxrun
Description: LLM inference on Apple's MLX, as a C library
Version: $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
Libs: -L\${libdir} -lmlxrun -Wl,-rpath,\${libdir} -Wl,-rpath-link,\${libdir}/mlxrun/mlx/lib:\${libdir}/mlxrun/blas
Cflags: -I\${includedir}
PC
echo "installed mlxrun under $PREFIX"
