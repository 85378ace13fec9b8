// swift-tools-version:5.9
// The Swift binding of mlxrun's C library (include/mlxrun.h).
//
// The library is found with pkg-config (mlxrun.pc, written by scripts/install.sh PREFIX):
//   export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
//   swift build -Xlinker -rpath -Xlinker PREFIX/lib
// SwiftPM reads mlxrun.pc itself (no pkg-config program is needed) for the header's folder
// and -L/-l, but drops its -Wl,-rpath as a "prohibited flag": pass the rpath as above, or
// run with LD_LIBRARY_PATH (Linux) / DYLD_LIBRARY_PATH (macOS) set to PREFIX/lib.
import PackageDescription

let package = Package(
    name: "MLXRun",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "MLXRun", targets: ["MLXRun"]),
    ],
    targets: [
        // The C API, as a Clang module (Sources/CMLXRun/module.modulemap).
        .systemLibrary(
            name: "CMLXRun",
            pkgConfig: "mlxrun",
            providers: []
        ),
        .target(
            name: "MLXRun",
            dependencies: ["CMLXRun"]
        ),
        .testTarget(
            name: "MLXRunTests",
            dependencies: ["MLXRun"]
        ),
    ]
)
