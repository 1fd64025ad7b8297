//! Client of the VPN Key Management API: tolerant wire models, typed errors, capabilities.
