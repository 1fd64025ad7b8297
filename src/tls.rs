//! Process-wide TLS setup. reqwest is built with `rustls-no-provider`, so a crypto
//! provider must be installed before the first client is built, in every binary and
//! test binary; doing it twice is harmless.

/// Install ring as rustls' process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is exactly what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
