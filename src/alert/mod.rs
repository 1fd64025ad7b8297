//! Findings -> alerts: dedup and lifecycle (engine), the durable outbox and its
//! dispatcher, pure rendering, and the sinks (email, webhook). Jobs never call this
//! directly: the runner hands each run's findings over through `FindingSink`.

pub mod engine;
pub mod model;
pub mod render;
