//! The library's build script links libmlx into its own binaries with link arguments,
//! which cargo does not pass on to dependents; it publishes libmlx's folder instead
//! (`cargo:mlx_lib_dir`, seen here as DEP_MLXRUN_SHIM_MLX_LIB_DIR). The fuzz binaries
//! link it the same way and find it beside themselves ($ORIGIN: a copied bundle) or where
//! the build found it.
fn main() {
    let dir = std::env::var("DEP_MLXRUN_SHIM_MLX_LIB_DIR")
        .expect("the mlxrun build script did not say where libmlx.so is (DEP_MLXRUN_SHIM_MLX_LIB_DIR)");
    println!("cargo:rustc-link-arg=-lmlx");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN:{dir}");
}
