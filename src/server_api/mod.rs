//! Client of the VPN Key Management API: tolerant wire models, typed errors,
//! capability detection. It must not decide anything: jobs decide, this module reads
//! and acts exactly as told.

mod client;
mod error;
mod http;
pub mod lenient;
mod model;
mod pool;
pub mod typed;
pub mod vless;
pub mod wire;
pub mod xray;

pub use client::{
    ClientSettings, DEFAULT_KEY_LIST_TTL, DEFAULT_MAX_BODY_BYTES, NO_SUCH_KEY, ServerApi,
};
pub use error::{ApiError, ApiErrorKind, ApiResult};
pub use http::RetryPolicy;
pub use model::*;
pub use pool::{CONNECT_TIMEOUT, HttpClients};
pub use vless::VlessLink;
pub use xray::{Health, KeyConfig, RealityFix, ServiceState, XrayInbound, XrayLayout};
