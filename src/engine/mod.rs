//! The engine: the generate loop, sampling, metrics.
pub mod sampler;
