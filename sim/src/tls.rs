//! The simulator's test CA: one per simulated server, generated at start (rcgen, ring).
//! Each VLESS inbound listens with a certificate for its `dest` host and server names
//! signed by it, so a config that trusts the CA (`reality_ca_file`) sees what a client
//! sees on a healthy Reality port: a genuine certificate for the name it asked for.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA that signs the inbounds' certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<TestCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate in PEM form (what `reality_ca_file` points at).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` signed by this CA, as PEM (the certificate, then this CA)
    /// and its private key as PEM: for servers configured by files (a PostgreSQL with
    /// `ssl_cert_file`/`ssl_key_file` in keywarden's tests).
    pub fn server_pem(&self, names: &[String]) -> Result<(String, String), String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("sim"),
        );
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        Ok((
            format!("{}{}", cert.pem(), self.issuer.pem()),
            key.serialize_pem(),
        ))
    }

    /// A TLS server configuration with a certificate for `names`, signed by this CA.
    pub fn server_config(&self, names: &[String]) -> Result<Arc<ServerConfig>, String> {
        // ring as rustls' process-wide provider (idempotent; Err: one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("sim"),
        );
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), self.issuer.der().clone()], private)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_signs_server_certificates() {
        let ca = TestCa::new("keywarden sim CA").unwrap();
        assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let names = vec!["www.microsoft.com".to_string(), "www.apple.com".to_string()];
        assert!(ca.server_config(&names).is_ok());
    }
}
