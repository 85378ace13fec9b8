//! The engine: the generate loop, sampling, metrics.
pub mod backend;
pub mod batch;
pub mod convert;
pub mod discover;
pub mod generate;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod sampler;
pub mod utilization;

pub use batch::{BatchParams, Classification};
pub use generate::{CancelToken, GenerateParams};
pub use inspect::AttentionSnapshot;
pub use metrics::Metrics;
pub use model::{FinishReason, Generation, Model, TokenEvent};
pub use sampler::{SampledToken, Sampler, SamplerParams};
