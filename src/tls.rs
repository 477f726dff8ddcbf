//! TLS for the gateway's listener, with rustls and the ring provider.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

pub fn server_config(tls: &TlsConfig) -> anyhow::Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|error| anyhow::anyhow!("tls.cert_file {}: {error}", tls.cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| anyhow::anyhow!("tls.cert_file {}: {error}", tls.cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "tls.cert_file {}: no certificate found",
            tls.cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|error| anyhow::anyhow!("tls.key_file {}: {error}", tls.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
