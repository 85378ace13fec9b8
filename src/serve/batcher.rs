//! The thread that owns the model and runs every request through one continuously
//! batched decode (`Model::batch_stream`).
//!
//! Requests arrive on a channel. Between decode steps the batch takes in the ones that
//! have come (up to its row limit) and drops rows whose client has gone (their event
//! channel is closed, so `on_text` returns false). Each row samples with its own
//! request's settings, so every request joins the running batch, first come first served.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::batch::{RowFeed, RowRequest};
use crate::engine::{FinishReason, GenerateParams, Generation, Model, TokenEvent};
use crate::error::Result;

/// What a request hears from the batcher.
#[derive(Debug)]
pub enum Event {
    /// New text (possibly empty: held back while it may become a stop string), with the
    /// token that produced it, its log-probability and the most likely alternatives when
    /// asked for.
    Text { text: String, token: Option<u32>, logprob: Option<f32>, top: Vec<(u32, f32)> },
    Done { finish: FinishReason, prompt_tokens: usize, completion_tokens: usize },
    Failed(String),
}

/// One request for the batcher: an encoded prompt and its settings.
pub struct Job {
    pub prompt: Vec<u32>,
    pub end_of_turn: Vec<u32>,
    pub params: GenerateParams,
    pub events: UnboundedSender<Event>,
}

/// What `/health` reports of the batcher.
#[derive(Default)]
pub struct Stats {
    /// Rows in the running batch.
    pub running: AtomicUsize,
    /// The most rows a batch has held at once.
    pub peak: AtomicUsize,
    /// Rows stopped because their client went away.
    pub disconnected: AtomicUsize,
}

/// Runs batches until every sender of `jobs` is gone and nothing waits.
/// `max_join`: most requests prefilled together; the running rows take a decode step
/// between two such groups, so a burst of arrivals does not hold back every first token
/// until the whole burst is prefilled.
pub fn run(mut model: Model, jobs: Receiver<Job>, max_rows: usize, max_join: usize, prefill_step_size: usize, stats: Arc<Stats>) {
    let mut feed = Feed {
        max_join,
        jobs,
        waiting: VecDeque::new(),
        sinks: HashMap::new(),
        next_id: 0,
        closed: false,
        stats,
    };
    loop {
        if feed.waiting.is_empty() {
            match feed.jobs.recv() {
                Ok(job) => feed.waiting.push_back(job),
                Err(_) => break,
            }
        }
        if let Err(e) = model.batch_stream(prefill_step_size, max_rows, &mut feed) {
            // The batch failed as a whole (MLX ran out of memory, say): its rows end with it.
            for (_, sink) in feed.sinks.drain() {
                let _ = sink.send(Event::Failed(e.to_string()));
            }
        }
        if feed.closed && feed.waiting.is_empty() {
            break;
        }
    }
}

struct Feed {
    max_join: usize,
    jobs: Receiver<Job>,
    waiting: VecDeque<Job>,
    sinks: HashMap<usize, UnboundedSender<Event>>,
    next_id: usize,
    closed: bool,
    stats: Arc<Stats>,
}

impl Feed {
    fn take_arrived(&mut self, block: bool) {
        if block && self.waiting.is_empty() && !self.closed {
            match self.jobs.recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(_) => self.closed = true,
            }
        }
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        // A client that left while waiting needs no row.
        self.waiting.retain(|j| !j.events.is_closed());
    }

    fn row(&mut self, job: Job) -> RowRequest {
        let id = self.next_id;
        self.next_id += 1;
        self.sinks.insert(id, job.events);
        RowRequest { id, prompt: job.prompt, params: job.params, end_of_turn: job.end_of_turn }
    }
}

impl RowFeed for Feed {
    fn poll(&mut self, running: usize, room: usize) -> Option<Vec<RowRequest>> {
        self.take_arrived(running == 0);
        let mut rows = Vec::new();
        while rows.len() < room.min(self.max_join) {
            let Some(job) = self.waiting.pop_front() else { break };
            rows.push(self.row(job));
        }
        self.stats.running.store(running + rows.len(), Ordering::Relaxed);
        self.stats.peak.fetch_max(running + rows.len(), Ordering::Relaxed);
        if rows.is_empty() && running == 0 && self.closed {
            return None;
        }
        Some(rows)
    }

    fn drain(&mut self) -> Vec<RowRequest> {
        let jobs: Vec<Job> = self.waiting.drain(..).collect();
        jobs.into_iter().map(|j| self.row(j)).collect()
    }

    fn on_text(&mut self, id: usize, event: &TokenEvent<'_>) -> bool {
        let Some(sink) = self.sinks.get(&id) else { return false };
        let top = event.top_logprobs.to_vec();
        sink.send(Event::Text { text: event.text.to_string(), token: event.token, logprob: event.logprob, top }).is_ok()
    }

    fn on_done(&mut self, id: usize, result: Result<Generation>) {
        let Some(sink) = self.sinks.remove(&id) else { return };
        let event = match result {
            Ok(g) if g.finish_reason == FinishReason::Callback => {
                // Only a closed channel makes `on_text` return false: nobody to tell.
                self.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(g) => Event::Done { finish: g.finish_reason, prompt_tokens: g.prompt_tokens.len(), completion_tokens: g.metrics.generated_tokens },
            Err(e) => Event::Failed(e.to_string()),
        };
        let _ = sink.send(event);
    }
}
