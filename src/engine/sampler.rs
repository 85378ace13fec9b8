//! Sampling: turns a step's logits into the next token.
