//! TLS to managed PostgreSQL and Redis: rustls on the `ring` provider, the
//! root certificates (a CA file, or the Mozilla roots compiled in), the
//! certificate checks libpq's `sslmode`s ask for, and telling a TLS failure
//! from any other failed connection (`StoreErrorKind::Tls`,
//! `RedisErrorKind::Tls`). Why rustls, ring and webpki-roots:
//! ARCHITECTURE.md, "TLS to PostgreSQL and Redis".
//!
//! A CA file is read at every connect, as libpq reads `sslrootcert`: a
//! provider's rotated CA is picked up by the next connection, no restart.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::pg_url::{Roots, Verify};
use crate::secret::CappedReadError;

/// A CA file larger than this is not a CA bundle (Mozilla's whole root
/// program is about 220 KB of PEM).
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The one crypto provider: ring (see the module doc).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default provider, for the code that builds its
/// own rustls configuration (the redis crate); idempotent. Without it, a
/// build that also had aws-lc-rs enabled (by some other crate's feature)
/// would panic there instead of choosing.
pub fn install_default_provider() {
    // Err only means a provider is installed already: ours, by an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The PEM certificates in `path`: at least one, every one parsable.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_bounded(path)?;
    ca_certificates(&pem).map_err(|e| format!("CA file {}: {e}", path.display()))
}

/// The text of the CA file at `path`, checked as [`read_ca_file`] checks it
/// (the redis crate takes the PEM itself).
pub fn read_ca_pem(path: &Path) -> Result<Vec<u8>, String> {
    let pem = read_bounded(path)?;
    ca_certificates(&pem).map_err(|e| format!("CA file {}: {e}", path.display()))?;
    Ok(pem)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    crate::secret::read_capped(path, MAX_CA_FILE_BYTES).map_err(|e| match e {
        CappedReadError::Io(e) => format!("cannot read CA file {}: {e}", path.display()),
        CappedReadError::TooLarge => format!("CA file {} is more than {MAX_CA_FILE_BYTES} bytes", path.display()),
    })
}

/// The certificates of a PEM bundle (other PEM sections, such as a key,
/// are skipped); none is an error.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    // What a RootCertStore would refuse, refused here with its position.
    for (index, certificate) in certificates.iter().enumerate() {
        RootCertStore::empty()
            .add(certificate.clone())
            .map_err(|e| format!("certificate {} of {} is not a usable CA: {e}", index + 1, certificates.len()))?;
    }
    Ok(certificates)
}

fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    match roots {
        Roots::Builtin => Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
        Roots::File(path) => {
            let mut store = RootCertStore::empty();
            for certificate in read_ca_file(path)? {
                store.add(certificate).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
            Ok(store)
        }
    }
}

/// The rustls configuration for one PostgreSQL connection: TLS 1.2 or 1.3,
/// no client certificate, the server's certificate checked as `verify`
/// says. Reads a CA file when `verify` names one.
pub fn postgres_client_config(verify: &Verify) -> Result<ClientConfig, String> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let builder = match verify {
        Verify::Full(roots) => builder.with_root_certificates(root_store(roots)?),
        Verify::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly { roots: root_store(roots)?, algorithms })),
        Verify::Nothing => builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified { algorithms })),
    };
    Ok(builder.with_no_client_auth())
}

/// Whether a failed connection failed in TLS: anywhere in its chain of
/// causes is a rustls error (a certificate refused, a handshake that went
/// wrong, a plaintext server's answer to a ClientHello). The crates wrap it
/// in an `io::Error` (whose `source()` skips the error it wraps) and the
/// redis crate that in an `Arc`, so each layer is looked into.
pub fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let mut current = Some(error);
    // A chain of causes is a handful of links; the bound keeps a cyclic one finite.
    for _ in 0..16 {
        let Some(error) = current else { return false };
        if error.is::<rustls::Error>() {
            return true;
        }
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static))
            .or_else(|| {
                error.downcast_ref::<Shared>().map(|shared| shared.as_ref() as &(dyn std::error::Error + 'static))
            });
        current = inner.or_else(|| error.source());
    }
    false
}

/// The handshake-signature half of a `ServerCertVerifier`, the same for
/// every verifier here (each has an `algorithms` field): whatever a
/// verifier decides about the certificate, the server must still prove it
/// holds the certificate's key.
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// `verify-ca`: the chain must end in a trusted root; the name is not
/// checked (libpq's meaning: the certificate is the CA's, for whichever
/// host). The handshake signatures are checked as always.
#[derive(Debug)]
struct ChainOnly {
    roots: RootCertStore,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &certificate,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signature_checks!();
}

/// `require` (and `prefer`) without a CA: any certificate, as libpq does:
/// the traffic is encrypted, the server not authenticated. The handshake
/// signature must still match the certificate the server sent.
#[derive(Debug)]
struct Unverified {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signature_checks!();
}

/// A self-signed CA certificate for unit tests elsewhere (config).
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::CA_PEM;
}

#[cfg(test)]
mod tests {
    use super::*;

    // A self-signed CA (openssl req -x509 -newkey ec -pkeyopt
    // ec_paramgen_curve:P-256 -subj /CN=clnode-unit-test-ca -days 36500).
    pub(crate) const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkjCCATmgAwIBAgIUTaJ8d9v+vuPVPwmjvWLEvTYJfQUwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTY2xub2RlLXVuaXQtdGVzdC1jYTAgFw0yNjEyMDIxMjAzMjJa
GA8yMTI2MTEwODEyMDMyMlowHjEcMBoGA1UEAwwTY2xub2RlLXVuaXQtdGVzdC1j
YTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABK78WorHpyqM8YzvlETnWT+cn4/j
Q90UMdC2OEJORQC2zKyBhOP1XmUnAMGYbwFLA4XgxvTA6msnYb747S8Mvv+jUzBR
MB0GA1UdDgQWBBT41W1T7UJhetTZiYsqifBuMx3jmDAfBgNVHSMEGDAWgBT41W1T
7UJhetTZiYsqifBuMx3jmDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA
MEQCIDgn0wKKt8Of81iAKWnz70gLrcKFhYshjR8XaDVnutM9AiBKY6YkjZs/Ka3f
iVHrkqgUw07Ko2ILRsWRe8kZSKSH/w==
-----END CERTIFICATE-----
";

    #[test]
    fn ca_bundles_need_a_certificate() {
        assert_eq!(
            ca_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err(),
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
        assert_eq!(ca_certificates(b"").unwrap_err(), "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        let missing = read_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(missing.starts_with("cannot read CA file /nonexistent/ca.pem: "), "{missing}");
        // A key beside the certificate is skipped; the certificate counts.
        let bundle = format!("{CA_PEM}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert_eq!(ca_certificates(bundle.as_bytes()).map(|c| c.len()), Ok(1));
        assert_eq!(ca_certificates(format!("{CA_PEM}{CA_PEM}").as_bytes()).map(|c| c.len()), Ok(2));
        let broken = CA_PEM.replace("MIIB", "MIIC");
        assert!(ca_certificates(broken.as_bytes()).unwrap_err().contains("certificate 1 of 1"));
    }

    #[test]
    fn every_verification_builds_a_configuration() {
        for verify in [Verify::Nothing, Verify::Chain(Roots::Builtin), Verify::Full(Roots::Builtin)] {
            assert!(postgres_client_config(&verify).is_ok(), "{verify:?}");
        }
        let path = std::env::temp_dir().join(format!("clnode-tls-test-{}.pem", std::process::id()));
        std::fs::write(&path, CA_PEM).unwrap();
        for verify in [Verify::Chain(Roots::File(path.clone())), Verify::Full(Roots::File(path.clone()))] {
            assert!(postgres_client_config(&verify).is_ok(), "{verify:?}");
        }
        std::fs::remove_file(&path).unwrap();
        let missing = Roots::File("/nonexistent/ca.pem".into());
        let error = postgres_client_config(&Verify::Full(missing)).unwrap_err();
        assert!(error.starts_with("cannot read CA file"), "{error}");
    }

    #[test]
    fn tls_failures_are_found_under_the_wrappers() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone());
        assert!(is_tls_failure(&tls));
        assert!(is_tls_failure(&io));
        let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(io);
        assert!(is_tls_failure(&shared));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_tls_failure(&plain));
    }
}
