//! What one generation call measured.
use std::time::Duration;

use crate::mlx::memory;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens that were already in the KV cache and not computed again.
    pub cached_prompt_tokens: usize,
    /// Tokens produced (including a final stop token, which is not emitted as text).
    pub generated_tokens: usize,
    /// From the start of the call until the first generated token was available.
    pub prefill: Duration,
    /// From the first generated token to the end of the call.
    pub decode: Duration,
    /// Highest MLX memory in use during the call, bytes.
    pub peak_memory: usize,
    /// MLX memory in use at the end of the call, bytes.
    pub active_memory: usize,
    /// Mean GPU utilisation during the call, percent of time a kernel ran, sampled every
    /// 50 ms off the token loop (see `engine::utilization`). `None` where it cannot be
    /// read: the CPU, macOS (Metal has no public counter), Linux without NVIDIA's NVML.
    pub gpu_utilization_mean: Option<f32>,
    /// Highest sampled GPU utilisation during the call, percent; `None` as above.
    pub gpu_utilization_max: Option<f32>,
}

impl Metrics {
    /// Prompt tokens computed per second of prefill.
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prompt_tokens - self.cached_prompt_tokens, self.prefill)
    }

    /// Generated tokens per second after the first (the first one's cost is prefill's).
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.generated_tokens.saturating_sub(1), self.decode)
    }

    pub(crate) fn finish_memory(&mut self) {
        self.peak_memory = memory::peak_memory();
        self.active_memory = memory::active_memory();
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}
