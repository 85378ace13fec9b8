//! include/mlxrun.h is generated from src/capi by cbindgen and committed; this test fails
//! when it is stale. `MLXRUN_UPDATE_HEADER=1 cargo test --test c_header` rewrites it.
use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    // Only the C API module: the crate's other extern declarations (the C++ shim's) are
    // internal and must not appear in the public header.
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut out);
    let path = root.join("include/mlxrun.h");
    if std::env::var("MLXRUN_UPDATE_HEADER").as_deref() == Ok("1") {
        std::fs::write(&path, &out).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == out,
        "include/mlxrun.h is stale: run scripts/gen_header.sh (MLXRUN_UPDATE_HEADER=1 cargo test --test c_header) and commit it"
    );
}
