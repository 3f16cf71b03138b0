//! TLS for the API port (issue #10).
//!
//! * **When.** [`TlsMode::Auto`] (the default) serves TLS on every listen address that is not
//!   loopback and plain HTTP on loopback; `On` and `Off` force it. `berth up` on loopback
//!   therefore stays plain HTTP.
//! * **Which certificate.** The operator's (`--tls-cert` / `--tls-key`, PEM: the chain, then
//!   any PKCS#8, PKCS#1 or SEC1 key), or Berth's own: at first start a CA (ECDSA P-256, ten
//!   years) is generated into `DATA_DIR/tls/` (`ca.pem` public, `ca.key` 0600, the directory
//!   0700) and kept across restarts, so pinned agents keep trusting the server. The server
//!   certificate is issued by that CA afresh at every start (`server.pem`, `server.key`
//!   0600), for the names in force: the listen address (or, on a wildcard address, this
//!   host's primary address), `localhost`, `127.0.0.1`, `::1`, the host name and every
//!   `--tls-san`; a change of address or of names therefore needs only a restart.
//! * **Pinning.** Clients trust `ca.pem` alone: `berth agent --ca-file`, `aws --ca-bundle`,
//!   `AWS_CA_BUNDLE` for boto3.
//!
//! The CA's subject is derived from its key (`Berth CA <12 hex of SHA-256(public key)>`), so
//! the issuer can be rebuilt from `ca.key` alone without parsing `ca.pem`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

/// Whether the API port speaks TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS unless the listen address is loopback.
    #[default]
    Auto,
    On,
    Off,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err(format!("'{s}' is not a TLS mode: use auto, on or off")),
        }
    }
}

/// How the API port's TLS is set up.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// The operator's certificate chain (PEM); with `key`. `None`: Berth's own CA.
    pub cert: Option<PathBuf>,
    /// The operator's private key (PEM).
    pub key: Option<PathBuf>,
    /// Extra subject alternative names (DNS names or IP addresses) for the generated
    /// certificate.
    pub extra_sans: Vec<String>,
}

impl TlsSettings {
    /// Whether TLS is served on `listen`.
    pub fn enabled_for(&self, listen: SocketAddr) -> bool {
        match self.mode {
            TlsMode::On => true,
            TlsMode::Off => false,
            TlsMode::Auto => !listen.ip().is_loopback(),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("--tls-cert and --tls-key go together: give both, or neither to use Berth's own CA")]
    HalfGiven,
    #[error("{path} holds no {what} in PEM form")]
    Pem { path: PathBuf, what: &'static str },
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key are not usable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// TLS in force on the API port.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The CA clients should trust, when Berth generated the certificate (`DATA_DIR/tls/ca.pem`).
    pub ca_file: Option<PathBuf>,
    /// The certificate served.
    pub cert_file: PathBuf,
    /// True when this start created the CA.
    pub ca_created: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

/// `DATA_DIR/tls`.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// Sets up TLS for `listen` as `settings` say; `None` when the port stays plain HTTP.
pub fn setup(
    data_dir: &Path,
    listen: SocketAddr,
    settings: &TlsSettings,
) -> Result<Option<Tls>, TlsError> {
    if !settings.enabled_for(listen) {
        return Ok(None);
    }
    let (chain_pem, key_pem, cert_file, ca_file, ca_created) = match (&settings.cert, &settings.key)
    {
        (Some(c), Some(k)) => (read(c)?, read(k)?, c.clone(), None, false),
        (None, None) => {
            let dir = tls_dir(data_dir);
            let (ca_key, ca_created) = load_or_create_ca(&dir)?;
            let names = subject_names(listen, &settings.extra_sans);
            let (cert, key) = issue_server_cert(&ca_key, &names)?;
            let cert_file = dir.join("server.pem");
            write_file(&cert_file, cert.as_bytes(), 0o644)?;
            write_file(&dir.join("server.key"), key.as_bytes(), 0o600)?;
            (cert.into_bytes(), key.into_bytes(), cert_file, Some(dir.join("ca.pem")), ca_created)
        }
        _ => return Err(TlsError::HalfGiven),
    };
    let key_path = settings.key.clone().unwrap_or_else(|| tls_dir(data_dir).join("server.key"));
    let config = server_config(&chain_pem, &key_pem, &cert_file, &key_path)?;
    Ok(Some(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_file,
        cert_file,
        ca_created,
    }))
}

/// The rustls server configuration for a PEM chain and key (HTTP/1.1 only).
pub fn server_config(
    chain_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::Pem { path: cert_path.to_path_buf(), what: "certificate" });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| TlsError::Pem { path: key_path.to_path_buf(), what: "private key" })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
}

/// The CA's parameters, rebuilt from its key.
fn ca_params(ca_key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let id = hex::encode(sha2::Sha256::digest(ca_key.public_key_raw()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Berth");
    dn.push(DnType::CommonName, format!("Berth CA {}", &id[..12]));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params
}

/// Reads `DIR/ca.key` (rewriting `DIR/ca.pem` if it is missing), or creates both.
fn load_or_create_ca(dir: &Path) -> Result<(KeyPair, bool), TlsError> {
    let ioerr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    if !dir.exists() {
        std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(ioerr(dir))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(ioerr(dir))?;
    let key_path = dir.join("ca.key");
    let ca_path = dir.join("ca.pem");
    match std::fs::read_to_string(&key_path) {
        Ok(pem) => {
            let key = KeyPair::from_pem(&pem)
                .map_err(|_| TlsError::Pem { path: key_path.clone(), what: "private key" })?;
            if !ca_path.exists() {
                let cert = ca_params(&key).self_signed(&key)?;
                write_file(&ca_path, cert.pem().as_bytes(), 0o644)?;
            }
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let cert = ca_params(&key).self_signed(&key)?;
            // The key first: a crash between the two leaves a key whose certificate is
            // rewritten at the next start, never a certificate without its key.
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&ca_path, cert.pem().as_bytes(), 0o644)?;
            Ok((key, true))
        }
        Err(e) => Err(TlsError::Io { path: key_path, source: e }),
    }
}

/// The names the generated server certificate carries for `listen`.
pub fn subject_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let ip = listen.ip();
    if ip.is_unspecified() {
        if let Some(primary) = primary_address() {
            names.push(primary.to_string());
        }
    } else {
        names.push(ip.to_string());
    }
    if let Some(host) = hostname() {
        names.push(host);
    }
    names.extend(extra.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The address this host would use to reach another network (no packet is sent).
fn primary_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    s.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified())
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.parse::<IpAddr>().is_err())
}

/// A server certificate for `names`, issued by the CA of `ca_key`: (chain PEM, key PEM).
fn issue_server_cert(ca_key: &KeyPair, names: &[String]) -> Result<(String, String), TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Berth");
    dn.push(DnType::CommonName, "berth server");
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::new(ca_params(ca_key), ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `contents` to `path` (mode `mode`) through a temporary file and a rename.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let werr = |source| TlsError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(contents).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;

    use super::*;

    fn listen(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn auto_is_tls_everywhere_but_loopback() {
        let auto = TlsSettings::default();
        assert!(!auto.enabled_for(listen("127.0.0.1:8080")));
        assert!(!auto.enabled_for(listen("[::1]:8080")));
        assert!(auto.enabled_for(listen("0.0.0.0:8080")));
        assert!(auto.enabled_for(listen("192.168.1.10:8080")));
        let on = TlsSettings { mode: TlsMode::On, ..Default::default() };
        assert!(on.enabled_for(listen("127.0.0.1:8080")));
        let off = TlsSettings { mode: TlsMode::Off, ..Default::default() };
        assert!(!off.enabled_for(listen("10.0.0.1:8080")));
        assert_eq!("auto".parse::<TlsMode>(), Ok(TlsMode::Auto));
        assert!("yes".parse::<TlsMode>().is_err());
    }

    #[test]
    fn the_generated_ca_is_kept_and_its_key_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            mode: TlsMode::On,
            extra_sans: vec!["berth.example".into(), "10.1.2.3".into()],
            ..Default::default()
        };
        let first = setup(tmp.path(), listen("127.0.0.1:0"), &settings).unwrap().unwrap();
        assert!(first.ca_created);
        let ca = first.ca_file.clone().unwrap();
        let ca_pem = std::fs::read(&ca).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tls_dir(tmp.path());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir.join("server.key")), 0o600);
        assert_eq!(mode(&ca), 0o644);
        let again = setup(tmp.path(), listen("127.0.0.1:0"), &settings).unwrap().unwrap();
        assert!(!again.ca_created);
        assert_eq!(std::fs::read(&ca).unwrap(), ca_pem, "the CA survives a restart");
        // The served certificate chains to the CA.
        let ca_der = CertificateDer::from_pem_slice(&ca_pem).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let leaf = CertificateDer::from_pem_file(&first.cert_file).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .expect("the server certificate verifies against the CA");
        let names = subject_names(listen("0.0.0.0:1"), &settings.extra_sans);
        assert!(names.contains(&"berth.example".to_string()));
        assert!(names.contains(&"localhost".to_string()));
    }

    #[test]
    fn half_an_operator_certificate_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            mode: TlsMode::On,
            cert: Some(tmp.path().join("c.pem")),
            ..Default::default()
        };
        assert!(matches!(
            setup(tmp.path(), listen("127.0.0.1:0"), &settings),
            Err(TlsError::HalfGiven)
        ));
    }
}
