//! Findings -> alerts: dedup and lifecycle (engine), the durable outbox and its
//! dispatcher, pure rendering, and the sinks (email, webhook). Jobs never call this
//! directly: the runner hands each run's findings over through `jobs::FindingSink`
//! (`jobs::AlertSink`), which only writes to the store; the dispatcher does the sending.
//!
//! Wiring (see `agent` and `commands::check`):
//! `Pipeline::new(store, clock, &config.alerts)` -> `AlertSink(pipeline)` for the
//! runner; `Sink::build_all` -> `Dispatcher::start(pipeline, sinks, options)` for the
//! daemon (`shutdown(deadline)` at exit), or `flush(..)` once for `check --notify`.

mod batch;
mod dispatch;
pub(crate) mod engine;
pub mod flush_right;
pub(crate) mod model;
pub(crate) mod pipeline;
mod render;
pub(crate) mod sink;

pub use dispatch::{
    ALONE_MAX_IDLE, DispatchOptions, DispatchStats, Dispatcher, FlushReport, SHARED_MAX_IDLE,
    flush, left_queued, send_test,
};
pub use pipeline::{CHECK_NOTIFY_DEADLINE, Pipeline, observations};
pub use sink::{Sink, SinkError, SinkOptions};
