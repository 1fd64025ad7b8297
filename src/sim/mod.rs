//! The simulated VPN Key Management API (axum), for tests, `keywarden sim` and the demo.
