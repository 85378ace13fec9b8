//! Finds MLX, compiles the C++ shim against it and links everything so that binaries,
//! tests and the shared library run with no environment variables.
//!
//! Linux: MLX comes from the official wheels (`mlx` + `mlx-cpu`, or `mlx-cuda-13`), found
//! through `MLX_DIR` (a folder holding `include/` and `lib/libmlx.so`) or the project's
//! virtualenv under `.deps/venv` that `scripts/setup.sh` makes. OpenBLAS is linked ahead
//! of libmlx so that the `cblas_*` calls of MLX's CPU backend resolve to it instead of the
//! reference BLAS the wheel carries (f32 matmul ≈30× faster). `OPENBLAS_DIR` names the
//! folder holding `libopenblas.so.0`; `MLXRUN_NO_OPENBLAS=1` leaves it out (GPU builds).
//!
//! macOS: MLX comes from the `mlx-sys` crate, which builds it with Metal and exports its
//! include folders as `DEP_MLX_INCLUDE`.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src/shim/shim.cpp");
    println!("cargo:rerun-if-changed=src/shim/shim.h");
    println!("cargo:rerun-if-changed=src/shim/exit_guard.cpp");
    println!("cargo:rerun-if-changed=src/shim/distributed.cpp");
    println!("cargo:rerun-if-changed=src/shim/distributed.h");
    println!("cargo:rerun-if-changed=src/shim/dist_wait.h");
    println!("cargo:rerun-if-changed=src/shim/exit_guard.h");
    println!("cargo:rerun-if-changed=src/shim/cpu_fast.cpp");
    println!("cargo:rerun-if-changed=src/shim/cpu_fast.h");
    println!("cargo:rerun-if-changed=src/shim/cpu_gemv.cpp");
    println!("cargo:rerun-if-changed=src/shim/cpu_gemv.h");
    for f in ["cpu_qmm.cpp", "cpu_qmm.h", "qmm_kernels.cpp", "qmm_kernels.h", "work_pool.cpp", "work_pool.h"] {
        println!("cargo:rerun-if-changed=src/shim/{f}");
    }
    for var in ["MLX_DIR", "OPENBLAS_DIR", "MLXRUN_NO_OPENBLAS", "DEP_MLX_INCLUDE"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let (include_dirs, defines) = if target_os == "macos" { macos_mlx() } else { (linux_mlx(), vec![]) };

    let mut build = cc::Build::new();
    for d in &defines {
        build.define(d, None);
    }
    build
        .cpp(true)
        .std("c++20")
        .file("src/shim/shim.cpp")
        .file("src/shim/exit_guard.cpp")
        .file("src/shim/distributed.cpp")
        .file("src/shim/cpu_fast.cpp")
        .file("src/shim/cpu_gemv.cpp")
        .file("src/shim/cpu_qmm.cpp")
        .file("src/shim/qmm_kernels.cpp")
        .file("src/shim/work_pool.cpp")
        .include("src/shim")
        .warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-fno-strict-aliasing")
        .opt_level(2);
    for dir in &include_dirs {
        build.include(dir);
    }
    build.compile("mlxrun_shim");
}

/// Locates the wheel's MLX, links libmlx (and OpenBLAS ahead of it) and returns the
/// include folders.
fn linux_mlx() -> Vec<PathBuf> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mlx_dir = match env::var_os("MLX_DIR") {
        Some(d) => PathBuf::from(d),
        None => find_venv_mlx(&manifest.join(".deps/venv")).unwrap_or_else(|| {
            panic!(
                "MLX not found: set MLX_DIR to a folder with include/mlx and lib/libmlx.so, \
                 or run scripts/setup.sh to install the pinned wheels into .deps/venv"
            )
        }),
    };
    let lib_dir = mlx_dir.join("lib");
    if !lib_dir.join("libmlx.so").exists() {
        panic!("{} has no libmlx.so (MLX_DIR or the venv is incomplete)", lib_dir.display());
    }

    // An installed libmlxrun finds its MLX and BLAS beside it (scripts/install.sh puts
    // them under lib/mlxrun/); in the build tree the absolute paths below serve.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/mlxrun/mlx/lib:$ORIGIN/mlxrun/blas");

    // OpenBLAS first and never dropped by --as-needed: nothing of ours calls it directly,
    // it is there so that the dynamic linker finds its cblas_* before the wheel's BLAS.
    if env::var("MLXRUN_NO_OPENBLAS").map(|v| v != "1").unwrap_or(true) {
        let ob_dir = match env::var_os("OPENBLAS_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                let local =
                    manifest.join(".deps/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread");
                let system = PathBuf::from("/usr/lib/x86_64-linux-gnu");
                if local.join("libopenblas.so.0").exists() {
                    local
                } else if system.join("libopenblas.so.0").exists() {
                    system
                } else {
                    panic!(
                        "OpenBLAS not found: run scripts/setup.sh, set OPENBLAS_DIR, or set \
                         MLXRUN_NO_OPENBLAS=1 to build without it (CPU matmul will be slow)"
                    )
                }
            }
        };
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg={}", ob_dir.join("libopenblas.so.0").display());
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", ob_dir.display());
        // OpenBLAS's own libgfortran, unpacked one folder up by the setup script. DT_RPATH
        // (not RUNPATH) so that the search path also applies to OpenBLAS's dependencies.
        if let Some(parent) = ob_dir.parent().filter(|p| p.join("libgfortran.so.5").exists()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", parent.display());
        }
        println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags");
        println!("cargo:rustc-env=MLXRUN_OPENBLAS_LIB={}", ob_dir.join("libopenblas.so.0").display());
    }

    // libmlx goes on the command line as a link argument too, after OpenBLAS, so that
    // OpenBLAS comes first among the libraries the result needs. (Link arguments follow
    // every `rustc-link-lib`, so naming libmlx there would put it first.) The shim's
    // static library precedes both, so its MLX references resolve.
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-arg=-lmlx");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:mlx_lib_dir={}", lib_dir.display());
    println!("cargo:rustc-env=MLXRUN_MLX_LIB_DIR={}", lib_dir.display());
    vec![mlx_dir.join("include")]
}

/// `site-packages/mlx` inside the venv, whatever the Python version.
fn find_venv_mlx(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/mlx"))
        .filter(|p| p.join("include/mlx/mlx.h").exists())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// mlx-sys builds MLX (Metal) as a static library and links it; the shim only needs the
/// headers and defines it exports (`DEP_MLX_INCLUDE`, `DEP_MLX_DEFINES`).
fn macos_mlx() -> (Vec<PathBuf>, Vec<String>) {
    println!("cargo:rerun-if-env-changed=DEP_MLX_DEFINES");
    let includes = env::var("DEP_MLX_INCLUDE").unwrap_or_else(|_| {
        panic!("DEP_MLX_INCLUDE is unset: the mlx-sys dependency should export it on macOS")
    });
    let defines = env::var("DEP_MLX_DEFINES").unwrap_or_default();
    (
        env::split_paths(&includes).collect(),
        defines.split([';', ' ', ',']).filter(|d| !d.is_empty()).map(str::to_owned).collect(),
    )
}
