//! config.json: parsing and every check the loader makes on a model folder's config
//! before it reads a weight (the family, its architecture fields, the quantization
//! section), through `mlxrun::models::check_config`. The input is the file's text.
use mlxrun::models::config::ConfigFile;

/// Nothing to load.
pub fn init() {}

pub fn run(data: &[u8]) {
    let dir = super::scratch_dir("config");
    super::write(&dir, "config.json", data);
    let Ok(cfg) = ConfigFile::read(&dir, "config.json") else { return };
    let _ = mlxrun::models::check_config(&cfg);
}
