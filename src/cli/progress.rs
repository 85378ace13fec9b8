//! A one-line progress bar on stderr (indicatif's), drawn only when stderr is a terminal (so
//! logs and pipes never see it), for loading and converting models.
use std::cell::Cell;
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use crate::engine::Model;
use crate::error::Result;
use crate::models::progress::with_progress;
use crate::models::LoadOptions;

/// A progress bar: a label, the bar, `done/total` and the unit counted. Clones share the
/// bar; it leaves the line when cleared or when the last clone is dropped.
#[derive(Clone)]
pub struct Bar {
    bar: ProgressBar,
    unit: Cell<&'static str>,
    terminal: bool,
}

impl Bar {
    pub fn new(label: impl Into<String>) -> Bar {
        let style = ProgressStyle::with_template("{prefix} [{wide_bar}] {pos}/{len} {msg}")
            .expect("a valid progress template")
            .progress_chars("#> ");
        // Hidden until the first update has set the length and the unit.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
            .with_style(style)
            .with_prefix(label.into())
            .with_finish(ProgressFinish::AndClear);
        Bar { bar, unit: Cell::new(""), terminal: std::io::stderr().is_terminal() }
    }

    /// Shows `done` of `total` `unit` ("tensors", "files", "steps").
    pub fn update(&self, done: usize, total: usize, unit: &'static str) {
        if self.unit.get() != unit {
            self.unit.set(unit);
            self.bar.set_message(unit);
        }
        self.bar.update(|s| {
            s.set_len(total as u64);
            s.set_pos(done.min(total) as u64);
        });
        if self.terminal && self.bar.is_hidden() && !self.bar.is_finished() {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.tick();
        }
    }

    /// Runs `f` (which prints) with the bar off the screen, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Takes the bar off the line, so that what follows starts on a clean one.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// Loads a model, with a progress bar while its weights are read.
pub fn load_model(path: &str, opts: &LoadOptions) -> Result<Model> {
    let name = Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bar = Bar::new(format!("loading {name}"));
    let hook = bar.clone();
    let model = with_progress(move |p| hook.update(p.done, p.total, p.unit), || Model::load(path, opts));
    bar.clear();
    model
}
