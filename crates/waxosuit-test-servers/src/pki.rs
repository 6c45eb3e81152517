//! A throwaway PKI for TLS tests: a CA, a server certificate it signs for
//! `127.0.0.1` and `localhost`, a client certificate it signs, and a second
//! CA that signs nothing a test trusts, as PEM files in a private temporary
//! directory removed on drop.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A CA, a server certificate it signs for `127.0.0.1` and `localhost`, a
/// client certificate it signs, and a second CA that signs nothing, as PEM
/// files in a private temporary directory removed on drop.
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA's certificate: what a client that trusts this PKI is given.
    pub ca: PathBuf,
    /// The server's certificate, for `127.0.0.1` and `localhost`.
    pub server_certificate: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate the CA signed.
    pub client_certificate: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// Another CA's certificate, which signed none of the above.
    pub other_ca: PathBuf,
}

impl TestPki {
    /// Generates the keys and certificates (ECDSA P-256).
    pub fn new() -> io::Result<TestPki> {
        let bad = |e: rcgen::Error| io::Error::other(e.to_string());
        let dir = tempfile::Builder::new().prefix("waxosuit-pki").tempdir()?;
        let ca_key = KeyPair::generate().map_err(bad)?;
        let ca_params = ca("waxosuit test CA")?;
        let ca_certificate = ca_params.self_signed(&ca_key).map_err(bad)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).map_err(bad)?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().map_err(bad)?;
        let server_certificate = server.signed_by(&server_key, &issuer).map_err(bad)?;

        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
        client
            .distinguished_name
            .push(DnType::CommonName, "waxosuit host");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().map_err(bad)?;
        let client_certificate = client.signed_by(&client_key, &issuer).map_err(bad)?;

        let other_key = KeyPair::generate().map_err(bad)?;
        let other = ca("another CA")?.self_signed(&other_key).map_err(bad)?;

        let write = |name: &str, pem: String| -> io::Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        Ok(TestPki {
            ca: write("ca.pem", ca_certificate.pem())?,
            server_certificate: write("server.pem", server_certificate.pem())?,
            server_key: write("server.key", server_key.serialize_pem())?,
            client_certificate: write("client.pem", client_certificate.pem())?,
            client_key: write("client.key", client_key.serialize_pem())?,
            other_ca: write("other-ca.pem", other.pem())?,
            dir,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn ca(name: &str) -> io::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| io::Error::other(e.to_string()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(params)
}
