//! Loading progress: a caller (the command line's progress bar) installs a hook around a
//! load, and the weight loaders report to it as they go. The hook lives in a thread-local
//! so that no loader signature changes: loads run on the calling thread, and a load with
//! no hook installed reports to nobody.
use std::cell::RefCell;

/// What a loader reports: `done` of `total` steps, counted in `unit` ("tensors", "files").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadProgress {
    pub done: usize,
    pub total: usize,
    pub unit: &'static str,
}

type Hook = Box<dyn FnMut(LoadProgress)>;

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Runs `load` with `hook` receiving the progress of every load it makes on this thread;
/// the previous hook (if any) is back in place afterwards, also when `load` panics.
pub fn with_progress<R>(hook: impl FnMut(LoadProgress) + 'static, load: impl FnOnce() -> R) -> R {
    struct Restore(Option<Hook>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            HOOK.with(|h| *h.borrow_mut() = previous);
        }
    }
    let _restore = Restore(HOOK.with(|h| h.borrow_mut().replace(Box::new(hook))));
    load()
}

/// Reports progress to the hook of this thread, if any.
pub(crate) fn report(done: usize, total: usize, unit: &'static str) {
    HOOK.with(|h| {
        if let Some(hook) = h.borrow_mut().as_mut() {
            hook(LoadProgress { done, total, unit });
        }
    });
}
