//! TLS as libpq does it, on rustls: what each `sslmode` checks, where the
//! certificates come from, and the rustls configuration that does it.
//!
//! No certificate logic of our own: `verify-full` is rustls' WebPKI
//! verifier; `verify-ca` is the same verifier with only its "not valid for
//! this name" verdict overruled (the chain is checked before the name, so
//! that verdict means the chain was good); a mode that encrypts without a
//! root certificate accepts any certificate but still checks the
//! handshake's signatures with rustls' own functions, so the peer must hold
//! the certificate's key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{self, CryptoProvider};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// libpq's `sslmode`: whether to encrypt, and what to check of the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS if the server refuses the plain connection.
    Allow,
    /// TLS if the server offers it, else plain (libpq's default). With a
    /// root certificate the chain is checked, as for `VerifyCa`, and a
    /// failed handshake falls back to plain.
    #[default]
    Prefer,
    /// TLS or nothing. With a root certificate (`sslrootcert`, or
    /// `~/.postgresql/root.crt` when it exists) the chain is checked, as for
    /// `VerifyCa`; without one, anything is accepted.
    Require,
    /// TLS, and the server's certificate must chain to a root certificate.
    VerifyCa,
    /// `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    pub const NAMES: [&'static str; 6] = [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(format!("not one of {}", SslMode::NAMES.join(", "))),
        })
    }
}

/// Where the trusted root certificates come from (libpq's `sslrootcert`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RootCertificates {
    /// `~/.postgresql/root.crt` if it exists; none otherwise.
    #[default]
    Default,
    /// A PEM file of CA certificates; it must exist.
    File(PathBuf),
    /// The system's trusted roots (`sslrootcert=system`); needs `VerifyFull`.
    System,
}

/// The TLS half of the connection settings, as libpq's parameters give it.
/// `Default`: `prefer`, libpq's default files, SNI on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode` (default `prefer`).
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_certificates: RootCertificates,
    /// `sslcert`: a PEM client certificate (chain); `None`:
    /// `~/.postgresql/postgresql.crt`, sent only when it exists.
    pub client_certificate: Option<PathBuf>,
    /// `sslkey`: the client certificate's PEM private key; `None`:
    /// `~/.postgresql/postgresql.key`.
    pub client_key: Option<PathBuf>,
    /// `sslsni`: send the host name in the handshake (default on).
    pub sni: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_certificates: RootCertificates::Default,
            client_certificate: None,
            client_key: None,
            sni: true,
        }
    }
}

/// libpq's words for a weak mode with the system's roots.
pub(crate) fn weak_mode_with_system_roots(mode: SslMode) -> String {
    format!("weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")")
}

/// How a connection is attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No TLS.
    Plain,
    /// Plain; TLS if the server refuses it (`allow`).
    PlainThenTls,
    /// TLS if the server offers it; plain if it does not, or if the
    /// handshake fails (`prefer`).
    TlsThenPlain,
    /// TLS or nothing.
    Tls,
}

/// What is checked of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checks {
    /// Nothing (no root certificate): the connection is encrypted only.
    Nothing,
    /// That it chains to a root certificate.
    Chain,
    /// That it chains to a root certificate and names the host.
    ChainAndName,
}

/// A rustls configuration and how to use it.
pub(crate) struct Prepared {
    pub config: ClientConfig,
    pub plan: Plan,
    pub checks: Checks,
}

/// libpq's files under `~/.postgresql`.
fn default_file(home: Option<&Path>, name: &str) -> Option<PathBuf> {
    Some(home?.join(".postgresql").join(name))
}

/// Whether `path` exists; an error other than "not there" is reported.
fn present(path: &Path, what: &str) -> Result<bool, String> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(format!("{what} {:?}: {error}", path.display().to_string())),
    }
}

/// Reads the settings' files and builds the rustls configuration; `home` is
/// where libpq's default files are looked for. Every problem is one line
/// naming the parameter and file.
pub(crate) fn prepare(settings: &TlsSettings, home: Option<&Path>) -> Result<Prepared, String> {
    // ring, not aws-lc-rs (which needs cmake to build). rustls 0.23.48
    // deprecates it for lacking post-quantum key exchange; it is the
    // provider the TLS stack is built with here, and still supported.
    #[allow(deprecated)]
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .dangerous();
    let plan = match settings.mode {
        SslMode::Disable => Plan::Plain,
        SslMode::Allow => Plan::PlainThenTls,
        SslMode::Prefer => Plan::TlsThenPlain,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Plan::Tls,
    };
    if plan == Plan::Plain {
        // Never used for a handshake: no files to read.
        let config = builder
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth();
        return Ok(Prepared {
            config,
            plan,
            checks: Checks::Nothing,
        });
    }
    if settings.root_certificates == RootCertificates::System
        && settings.mode != SslMode::VerifyFull
    {
        return Err(weak_mode_with_system_roots(settings.mode));
    }
    // libpq checks a certificate revocation list when ~/.postgresql/root.crl
    // exists; this client cannot, and must not quietly accept a certificate
    // that libpq would refuse as revoked.
    if let Some(crl) = default_file(home, "root.crl") {
        if present(&crl, "certificate revocation list")? {
            return Err(format!(
                "certificate revocation list {:?} exists, but pdoflow's client does not check \
                 revocation lists; remove it (or move it) to connect without one",
                crl.display().to_string()
            ));
        }
    }
    let roots = root_certificates(&settings.root_certificates, home)?;
    let (verifier, checks): (Arc<dyn ServerCertVerifier>, Checks) = match (settings.mode, roots) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            let path = default_file(home, "root.crt").map_or_else(
                || "~/.postgresql/root.crt".to_owned(),
                |path| path.display().to_string(),
            );
            return Err(format!(
                "sslmode={}: root certificate file {path:?} does not exist; give the CA's \
                 certificate with sslrootcert, use the system's trusted roots with \
                 sslrootcert=system, or use sslmode=require to encrypt without checking \
                 the server's certificate",
                settings.mode
            ));
        }
        (mode, Some(roots)) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|error| {
                        format!("TLS: the root certificates cannot be used: {error}")
                    })?;
            match mode {
                SslMode::VerifyFull => (webpki, Checks::ChainAndName),
                // libpq checks the chain whenever it has a root certificate,
                // in every mode that encrypts.
                _ => (Arc::new(ChainOnly(webpki)), Checks::Chain),
            }
        }
        (_, None) => (Arc::new(EncryptOnly(provider)), Checks::Nothing),
    };
    let builder = builder.with_custom_certificate_verifier(verifier);
    let mut config = match client_identity(settings, home)? {
        Some((chain, key, files)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| format!("{files}: {error}"))?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = settings.sni;
    // What libpq 17 sends: the server may insist on it (direct TLS).
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Prepared {
        config,
        plan,
        checks,
    })
}

/// The trusted roots, or `None` when there are none (no default file).
fn root_certificates(
    source: &RootCertificates,
    home: Option<&Path>,
) -> Result<Option<RootCertStore>, String> {
    let (path, what) = match source {
        RootCertificates::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "sslrootcert=system: no trusted root certificates found on this system{}",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
            return Ok(Some(roots));
        }
        RootCertificates::File(path) => (path.clone(), "sslrootcert"),
        RootCertificates::Default => match default_file(home, "root.crt") {
            Some(path) if present(&path, "root certificate file")? => {
                (path, "root certificate file")
            }
            _ => return Ok(None),
        },
    };
    let name = path.display().to_string();
    let certificates =
        read_certificates(&path).map_err(|error| format!("{what} {name:?}: {error}"))?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| format!("{what} {name:?}: not a usable CA certificate: {error}"))?;
    }
    Ok(Some(roots))
}

/// Every certificate of a PEM file; an error when there is none.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(describe_pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(describe_pem_error)?;
    if certificates.is_empty() {
        return Err("no PEM certificate (BEGIN CERTIFICATE) in it".into());
    }
    Ok(certificates)
}

fn describe_pem_error(error: rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(error) => error.to_string(),
        other => format!("not a PEM file: {other:?}"),
    }
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

/// The client certificate chain and key to send, when there is a
/// certificate: libpq sends `~/.postgresql/postgresql.crt` when it exists;
/// a certificate named with `sslcert` must exist.
fn client_identity(
    settings: &TlsSettings,
    home: Option<&Path>,
) -> Result<Option<Identity>, String> {
    let (certificate, what) = match &settings.client_certificate {
        Some(path) => (path.clone(), "sslcert"),
        None => match default_file(home, "postgresql.crt") {
            Some(path) if present(&path, "client certificate file")? => {
                (path, "client certificate file")
            }
            _ => return Ok(None),
        },
    };
    let certificate_name = certificate.display().to_string();
    let chain = read_certificates(&certificate)
        .map_err(|error| format!("{what} {certificate_name:?}: {error}"))?;
    let (key, key_what) = match &settings.client_key {
        Some(path) => (path.clone(), "sslkey"),
        None => match default_file(home, "postgresql.key") {
            Some(path) => (path, "private key file"),
            None => {
                return Err(format!(
                    "{what} {certificate_name:?} is given but no private key: set sslkey"
                ))
            }
        },
    };
    let key_name = key.display().to_string();
    if !present(&key, key_what)? {
        return Err(format!(
            "certificate present, but not private key file {key_name:?} ({key_what})"
        ));
    }
    check_key_permissions(&key).map_err(|error| format!("{key_what} {key_name:?}: {error}"))?;
    let private_key = PrivateKeyDer::from_pem_file(&key).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no unencrypted PEM private key in it (encrypted keys are not supported)".to_owned()
        }
        other => describe_pem_error(other),
    });
    let private_key = private_key.map_err(|error| format!("{key_what} {key_name:?}: {error}"))?;
    Ok(Some((
        chain,
        private_key,
        format!("{what} {certificate_name:?} with {key_what} {key_name:?}"),
    )))
}

/// libpq's rule for a private key file: no access for group or others when
/// the current user owns it, group read at most when root does.
fn check_key_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).map_err(|error| error.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    let forbidden = if metadata.uid() == euid {
        0o077
    } else if metadata.uid() == 0 {
        0o037
    } else {
        0
    };
    if metadata.mode() & forbidden != 0 {
        return Err(format!(
            "has group or world access (mode {:o}); it must be u=rw (0600) or less if owned by \
             the current user, or u=rw,g=r (0640) or less if owned by root",
            metadata.mode() & 0o777
        ));
    }
    Ok(())
}

/// Encrypts without checking the server's certificate (libpq's `require`
/// without a root certificate), but checks that the server signed the
/// handshake with that certificate's key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the WebPKI verifier, except that a certificate for another
/// name is accepted. WebPKI checks the chain (to a root, in date, for
/// server use) before the name, so reaching the name check means the
/// chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let path = std::env::temp_dir().join(format!("pdoflow-tls-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(path.join(".postgresql")).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn with_mode(mode: SslMode) -> TlsSettings {
        TlsSettings {
            mode,
            ..TlsSettings::default()
        }
    }

    #[test]
    fn modes_map_to_plans() {
        let home = TempDir::new();
        let plan = |mode| prepare(&with_mode(mode), Some(&home.0)).map(|prepared| prepared.plan);
        assert_eq!(plan(SslMode::Disable), Ok(Plan::Plain));
        assert_eq!(plan(SslMode::Allow), Ok(Plan::PlainThenTls));
        assert_eq!(plan(SslMode::Prefer), Ok(Plan::TlsThenPlain));
        assert_eq!(plan(SslMode::Require), Ok(Plan::Tls));
        for mode in ["verify-ca", "verify-full"] {
            let error = plan(mode.parse().unwrap()).unwrap_err();
            assert!(
                error.starts_with(&format!(
                    "sslmode={mode}: root certificate file \"{}",
                    home.0.display()
                )),
                "{error}"
            );
        }
    }

    #[test]
    fn file_problems_name_the_parameter_and_file() {
        let home = TempDir::new();
        let missing = home.0.join("nope.pem");
        let settings = TlsSettings {
            mode: SslMode::VerifyFull,
            root_certificates: RootCertificates::File(missing.clone()),
            ..TlsSettings::default()
        };
        let error = prepare(&settings, Some(&home.0)).err().unwrap_or_default();
        assert!(
            error.starts_with(&format!(
                "sslrootcert {:?}: No such file",
                missing.display().to_string()
            )),
            "{error}"
        );
        let garbage = home.0.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let settings = TlsSettings {
            root_certificates: RootCertificates::File(garbage),
            ..settings
        };
        let error = prepare(&settings, Some(&home.0)).err().unwrap_or_default();
        assert!(error.contains("no PEM certificate"), "{error}");
        // A default root.crt that is not one is reported too: libpq would
        // use it, so ignoring it would silently weaken the checks.
        std::fs::write(home.0.join(".postgresql/root.crt"), "junk").unwrap();
        let error = prepare(&with_mode(SslMode::Require), Some(&home.0))
            .err()
            .unwrap_or_default();
        assert!(error.starts_with("root certificate file"), "{error}");
        // Disable reads nothing.
        assert!(prepare(&with_mode(SslMode::Disable), Some(&home.0)).is_ok());
    }

    /// A self-signed CA certificate, as PEM.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_root_certificate_makes_every_encrypting_mode_check_the_chain() {
        let home = TempDir::new();
        let checks = |settings: &TlsSettings| {
            prepare(settings, Some(&home.0)).map(|prepared| prepared.checks)
        };
        // Without a root certificate only verify-* check anything.
        assert_eq!(checks(&with_mode(SslMode::Require)), Ok(Checks::Nothing));
        assert_eq!(checks(&with_mode(SslMode::Prefer)), Ok(Checks::Nothing));
        // With ~/.postgresql/root.crt, require is verify-ca (libpq).
        std::fs::write(home.0.join(".postgresql/root.crt"), ca_pem()).unwrap();
        for mode in [
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
        ] {
            assert_eq!(checks(&with_mode(mode)), Ok(Checks::Chain), "{mode}");
        }
        assert_eq!(
            checks(&with_mode(SslMode::VerifyFull)),
            Ok(Checks::ChainAndName)
        );
        assert_eq!(checks(&with_mode(SslMode::Disable)), Ok(Checks::Nothing));
        // And so does an explicit sslrootcert.
        let ca = home.0.join("ca.pem");
        std::fs::write(&ca, ca_pem()).unwrap();
        let other_home = TempDir::new();
        let settings = TlsSettings {
            mode: SslMode::Require,
            root_certificates: RootCertificates::File(ca),
            ..TlsSettings::default()
        };
        assert_eq!(
            prepare(&settings, Some(&other_home.0)).map(|prepared| prepared.checks),
            Ok(Checks::Chain)
        );
    }

    #[test]
    fn an_explicit_client_certificate_must_exist() {
        let home = TempDir::new();
        let settings = TlsSettings {
            client_certificate: Some(home.0.join("client.crt")),
            ..TlsSettings::default()
        };
        let error = prepare(&settings, Some(&home.0)).err().unwrap_or_default();
        assert!(error.starts_with("sslcert"), "{error}");
    }

    #[test]
    fn a_client_certificate_needs_a_private_key_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = TempDir::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        // The default certificate is used when it exists, and then needs
        // its key.
        let dot = home.0.join(".postgresql");
        std::fs::write(dot.join("postgresql.crt"), certificate.pem()).unwrap();
        let error = prepare(&with_mode(SslMode::Require), Some(&home.0))
            .err()
            .unwrap_or_default();
        assert!(
            error.starts_with("certificate present, but not private key file"),
            "{error}"
        );
        let key_file = dot.join("postgresql.key");
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = prepare(&with_mode(SslMode::Require), Some(&home.0))
            .err()
            .unwrap_or_default();
        assert!(
            error.contains("has group or world access (mode 644)"),
            "{error}"
        );
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(prepare(&with_mode(SslMode::Require), Some(&home.0)).is_ok());
        // A key that is not one.
        std::fs::write(&key_file, "junk").unwrap();
        let error = prepare(&with_mode(SslMode::Require), Some(&home.0))
            .err()
            .unwrap_or_default();
        assert!(error.contains("no unencrypted PEM private key"), "{error}");
    }

    #[test]
    fn system_roots_are_refused_with_weak_modes() {
        let settings = TlsSettings {
            mode: SslMode::Require,
            root_certificates: RootCertificates::System,
            ..TlsSettings::default()
        };
        let error = prepare(&settings, None).err().unwrap_or_default();
        assert!(error.starts_with("weak sslmode \"require\""), "{error}");
    }
}
