//! TLS for the API (`[api] tls_*`): the daemon's server configuration and the CLI's client
//! configuration, both from PEM files, with errors that name the key and the file.
//!
//! The daemon presents `tls_cert_file` / `tls_key_file`. With `tls_client_ca_file` it also asks
//! every client for a certificate signed by that CA and refuses the handshake without one, as
//! Patroni's REST API does with `verify_client: required`. The CLI verifies the daemon's
//! certificate against `tls_ca_file` for the node's IP address, and presents the same node
//! certificate when the daemons require client certificates.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ApiTls;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file; at least one.
pub fn load_certs(key: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("api.{key} = {path:?}: cannot read it"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("api.{key} = {path:?}: not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        bail!(
            "api.{key} = {path:?} holds no certificate: it needs PEM blocks \
             \"-----BEGIN CERTIFICATE-----\""
        );
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(key: &str, path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("api.{key} = {path:?}: cannot read it"))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        anyhow!(
            "api.{key} = {path:?} holds no usable private key ({e}): it needs a PEM block \
             \"-----BEGIN PRIVATE KEY-----\" (or RSA / EC PRIVATE KEY)"
        )
    })
}

fn roots(key: &str, path: &Path) -> anyhow::Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        store
            .add(cert)
            .map_err(|e| anyhow!("api.{key} = {path:?}: a certificate cannot be a CA: {e}"))?;
    }
    Ok(Arc::new(store))
}

/// The daemon's TLS configuration.
pub fn server_config(tls: &ApiTls) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = load_certs("tls_cert_file", &tls.cert_file)?;
    let key = load_key("tls_key_file", &tls.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                roots("tls_client_ca_file", ca)?,
                provider(),
            )
            .build()
            .map_err(|e| anyhow!("api.tls_client_ca_file = {ca:?}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        anyhow!(
            "api.tls_cert_file = {:?} and api.tls_key_file = {:?} do not make a usable pair: {e}",
            tls.cert_file,
            tls.key_file
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CLI's TLS configuration: daemons verified against `tls_ca_file`; the node certificate
/// presented when the daemons ask for one (`tls_client_ca_file` set).
pub fn client_config(tls: &ApiTls) -> anyhow::Result<Arc<ClientConfig>> {
    let verifier = WebPkiServerVerifier::builder_with_provider(
        roots("tls_ca_file", &tls.ca_file)?,
        provider(),
    )
    .build()
    .map_err(|e| anyhow!("api.tls_ca_file = {:?}: {e}", tls.ca_file))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_webpki_verifier(verifier);
    let mut config = if tls.client_ca_file.is_some() {
        let chain = load_certs("tls_cert_file", &tls.cert_file)?;
        let key = load_key("tls_key_file", &tls.key_file)?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| anyhow!("api.tls_cert_file / tls_key_file as a client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Dir(PathBuf);
    impl Dir {
        fn new() -> Dir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "whpg-ha-tls-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A self-signed certificate for 127.0.0.1 and its key, as PEM.
    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn tls(dir: &Dir, cert: &str, key: &str) -> ApiTls {
        ApiTls {
            cert_file: dir.write("cert.pem", cert),
            key_file: dir.write("key.pem", key),
            ca_file: dir.write("ca.pem", cert),
            client_ca_file: None,
        }
    }

    #[test]
    fn a_certificate_and_its_key_load_for_both_sides() {
        let dir = Dir::new();
        let (cert, key) = self_signed();
        let mut tls = tls(&dir, &cert, &key);
        server_config(&tls).expect("server");
        client_config(&tls).expect("client");
        tls.client_ca_file = Some(tls.ca_file.clone());
        let server = server_config(&tls).expect("server with client verification");
        assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);
        client_config(&tls).expect("client presenting the node certificate");
    }

    #[test]
    fn a_missing_or_wrong_file_names_the_key_and_the_file() {
        let dir = Dir::new();
        let (cert, key) = self_signed();
        let mut bad = tls(&dir, &cert, &key);
        bad.cert_file = dir.0.join("missing.pem");
        let e = format!("{:#}", server_config(&bad).unwrap_err());
        assert!(
            e.contains("api.tls_cert_file") && e.contains("missing.pem"),
            "{e}"
        );

        let mut bad = tls(&dir, &cert, &key);
        bad.cert_file = dir.write("not-pem.pem", "hello\n");
        let e = format!("{:#}", server_config(&bad).unwrap_err());
        assert!(
            e.contains("holds no certificate") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );

        let mut bad = tls(&dir, &cert, &key);
        bad.key_file = dir.write("cert-as-key.pem", &cert);
        let e = format!("{:#}", server_config(&bad).unwrap_err());
        assert!(
            e.contains("api.tls_key_file") && e.contains("no usable private key"),
            "{e}"
        );

        // A key that is not the certificate's.
        let (_, other_key) = self_signed();
        let mut bad = tls(&dir, &cert, &key);
        bad.key_file = dir.write("other-key.pem", &other_key);
        let e = format!("{:#}", server_config(&bad).unwrap_err());
        assert!(e.contains("do not make a usable pair"), "{e}");

        let mut bad = tls(&dir, &cert, &key);
        bad.ca_file = dir.write("empty-ca.pem", "");
        let e = format!("{:#}", client_config(&bad).unwrap_err());
        assert!(
            e.contains("api.tls_ca_file") && e.contains("holds no certificate"),
            "{e}"
        );
    }
}
