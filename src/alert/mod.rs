//! Findings -> alerts: dedup and lifecycle (engine), the durable outbox and its
//! dispatcher, pure rendering, and the sinks (email, webhook). Jobs never call this
//! directly: the runner hands each run's findings over through `jobs::FindingSink`
//! (`jobs::AlertSink`), which only writes to the store; the dispatcher does the sending.
//!
//! Wiring (see `agent` and `commands::check`):
//! `Pipeline::new(store, clock, &config.alerts)` -> `AlertSink(pipeline)` for the
//! runner; `Sink::build_all` -> `Dispatcher::start(pipeline, sinks, options)` for the
//! daemon (`shutdown(deadline)` at exit), or `flush(..)` once for `check --notify`.

pub mod batch;
pub mod dispatch;
pub mod engine;
pub mod model;
pub mod pipeline;
pub mod render;
pub mod sink;

pub use dispatch::{DispatchOptions, DispatchStats, Dispatcher, FlushReport, flush, send_test};
pub use pipeline::Pipeline;
pub use sink::{Sink, SinkError, SinkOptions};
