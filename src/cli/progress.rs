//! A one-line progress bar on stderr, drawn only when stderr is a terminal (so logs and
//! pipes never see it), for loading and converting models.
use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::engine::Model;
use crate::error::Result;
use crate::models::progress::with_progress;
use crate::models::LoadOptions;

pub struct Bar {
    label: String,
    enabled: bool,
    drawn: bool,
}

impl Bar {
    pub fn new(label: impl Into<String>) -> Bar {
        Bar { label: label.into(), enabled: std::io::stderr().is_terminal(), drawn: false }
    }

    /// Redraws the bar at `done` of `total` `unit`.
    pub fn update(&mut self, done: usize, total: usize, unit: &str) {
        if !self.enabled {
            return;
        }
        const WIDTH: usize = 30;
        let filled = done.min(total) * WIDTH / total.max(1);
        eprint!("\r{} [{}{}] {done}/{total} {unit}", self.label, "#".repeat(filled), " ".repeat(WIDTH - filled));
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    /// Takes the bar off the line, so that what follows starts on a clean one.
    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.drawn = false;
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Loads a model, with a progress bar while its weights are read.
pub fn load_model(path: &str, opts: &LoadOptions) -> Result<Model> {
    let name = Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bar = std::rc::Rc::new(std::cell::RefCell::new(Bar::new(format!("loading {name}"))));
    let hook_bar = bar.clone();
    let model = with_progress(move |p| hook_bar.borrow_mut().update(p.done, p.total, p.unit), || Model::load(path, opts));
    bar.borrow_mut().clear();
    model
}
