//! Replays, through each fuzz target's own code (fuzz/entries/), every input kept in
//! fuzz/regressions/<target>/ — inputs that once crashed the target, each fixed in the
//! library — and the committed seed corpus fuzz/corpus/<target>/. So `cargo test` keeps
//! every fixed crash fixed without the fuzz build (scripts/fuzz.sh), and a change that
//! breaks a target's harness shows here too.
#[path = "../fuzz/entries/mod.rs"]
mod entries;

use std::path::Path;

fn replay(target: &str) {
    let (_, run) = entries::TARGETS.iter().find(|(name, _)| *name == target).expect("unknown fuzz target");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for folder in ["regressions", "corpus"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            // Named first: a crash's report then says which input it was.
            eprintln!("replaying {}", file.display());
            run(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for fuzz target {target}");
}

#[test]
fn safetensors_header_inputs_replay() {
    replay("safetensors_header");
}

#[test]
fn config_json_inputs_replay() {
    replay("config_json");
}

#[test]
fn gguf_reader_inputs_replay() {
    replay("gguf_reader");
}

#[test]
fn tokenizer_inputs_replay() {
    replay("tokenizer");
}

#[test]
fn chat_template_inputs_replay() {
    replay("chat_template");
}

#[test]
fn capi_params_inputs_replay() {
    replay("capi_params");
}
