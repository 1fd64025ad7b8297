//! Configuration: raw TOML structs, pure validation into a typed `Config`, secrets.

pub mod raw;
mod schedule;
pub mod units;

pub use schedule::Schedule;
