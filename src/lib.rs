//! keywarden: a watchdog for fleets of Xray (VLESS + Reality) servers behind the
//! VPN Key Management API. The binary (`src/main.rs`) is a thin shell over this library.

pub mod agent;
pub mod alert;
pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod heartbeat;
pub mod http;
pub mod jobs;
pub mod lead;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod output;
pub mod process;
pub mod quota;
pub mod redact;
pub mod report;
pub mod runtime;
pub mod scheduler;
pub mod secret;
pub mod server_api;
pub mod store;
pub mod terminal;
pub mod tls;
