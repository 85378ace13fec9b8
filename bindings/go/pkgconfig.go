//go:build !mlxrun_no_pkgconfig

package mlx

// The compiler and linker flags come from the mlxrun.pc that scripts/install.sh writes
// (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig). Build with -tags mlxrun_no_pkgconfig to give
// them through CGO_CFLAGS and CGO_LDFLAGS instead (see the package documentation).

/*
#cgo pkg-config: mlxrun
*/
import "C"
