//! The exporter's TLS settings: the certificates it trusts for the
//! collector (`OTEL_EXPORTER_OTLP_CERTIFICATE`) and its own certificate and
//! key when the collector asks for one (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`,
//! `OTEL_EXPORTER_OTLP_CLIENT_KEY`), read from PEM files once, at start.
//!
//! Without a certificate file the Web PKI roots built in are trusted (a
//! collector behind a public certificate). With one, only its certificates
//! are: a collector inside a cluster, signed by the cluster's own CA, and
//! nothing else can stand in for it.

use std::fmt;
use std::io::Read;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TelemetryError;

/// A PEM file larger than this is not a certificate or a key.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Certificates and key, loaded.
#[derive(Clone, Default)]
pub(crate) struct ExportTls {
    /// Trusted instead of the Web PKI roots.
    pub(crate) roots: Option<Vec<CertificateDer<'static>>>,
    /// Shown to a collector that asks for a client certificate.
    pub(crate) identity: Option<Arc<Identity>>,
}

pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ExportTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("ExportTls")
            .field("roots", &self.roots.as_ref().map(Vec::len))
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ExportTls {
    /// Whether any certificate or key is set.
    pub(crate) fn is_set(&self) -> bool {
        self.roots.is_some() || self.identity.is_some()
    }

    /// Loads the files named by the settings (paths, each `None` when not
    /// set). A client certificate needs its key, and the other way round.
    pub(crate) fn load(
        certificate: Option<&str>,
        client_certificate: Option<&str>,
        client_key: Option<&str>,
    ) -> Result<ExportTls, TelemetryError> {
        const CA: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE or OTEL_EXPORTER_OTLP_CERTIFICATE";
        const CERT: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE or \
                            OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
        const KEY: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY or OTEL_EXPORTER_OTLP_CLIENT_KEY";
        let roots = certificate.map(|path| certificates(CA, path)).transpose()?;
        let identity = match (client_certificate, client_key) {
            (None, None) => None,
            (Some(chain), Some(key)) => Some(Arc::new(Identity {
                chain: certificates(CERT, chain)?,
                key: private_key(KEY, key)?,
            })),
            (Some(_), None) => {
                return Err(TelemetryError::setting(
                    KEY,
                    "(not set)",
                    "a client certificate needs its private key: set both, or neither",
                ));
            }
            (None, Some(_)) => {
                return Err(TelemetryError::setting(
                    CERT,
                    "(not set)",
                    "a client key needs its certificate: set both, or neither",
                ));
            }
        };
        Ok(ExportTls { roots, identity })
    }
}

/// The file at `path`, bounded.
fn read(setting: &'static str, path: &str) -> Result<Vec<u8>, TelemetryError> {
    let problem = |problem: String| TelemetryError::File {
        setting,
        path: path.to_string(),
        problem,
    };
    // Not a pipe or a device, which could block the start for good.
    let metadata = std::fs::metadata(path).map_err(|e| problem(e.to_string()))?;
    if !metadata.is_file() {
        return Err(problem("it is not a regular file".to_string()));
    }
    let file = std::fs::File::open(path).map_err(|e| problem(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(problem(format!(
            "it is larger than {} KiB, too large for PEM certificates or a key",
            MAX_PEM_BYTES / 1024
        )));
    }
    Ok(bytes)
}

/// Every certificate of a PEM file; at least one.
fn certificates(
    setting: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TelemetryError> {
    let pem = read(setting, path)?;
    let problem = |problem: &str| TelemetryError::File {
        setting,
        path: path.to_string(),
        problem: problem.to_string(),
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| problem("it is not valid PEM"))?;
    if certificates.is_empty() {
        return Err(problem(
            "it holds no certificate (a PEM file with -----BEGIN CERTIFICATE----- is expected)",
        ));
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1). Errors never
/// quote the file: it holds a secret.
fn private_key(
    setting: &'static str,
    path: &str,
) -> Result<PrivateKeyDer<'static>, TelemetryError> {
    let pem = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TelemetryError::File {
        setting,
        path: path.to_string(),
        problem: "it holds no private key in PEM (PKCS#8, PKCS#1 or SEC1)".to_string(),
    })
}
