//! TLS to etcd (issue #18): `etcds://HOST:2379[,...]` store URLs, the CA that issued the
//! members' certificates, and an optional client certificate for etcd's `--client-cert-auth`.
//!
//! Contract:
//! * `etcds://` means every member is reached over TLS (rustls on ring), its certificate
//!   checked against [`EtcdTls::ca`] (required: etcd clusters use private CAs, and no system
//!   roots are trusted) for the endpoint's host name or IP address;
//! * a client certificate and its key go together (both or neither), and only with
//!   `etcds://`; [`EtcdTls::check`] refuses anything else before a connection is tried;
//! * the files are read at connect ([`EtcdTls::options`]): a missing or non-PEM file fails the
//!   connect with [`StoreError::EtcdTlsFile`] naming it; nothing of a key is ever logged;
//! * a member that refuses the handshake (no client certificate where etcd requires one, a
//!   certificate its CA did not issue, a server certificate the CA does not vouch for) fails
//!   with [`StoreError::EtcdTlsRefused`], which says which side to look at
//!   ([`refusal_hint`]).

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::StoreError;

/// TLS settings of an `etcds://` store (see the module header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA certificate(s) that issued the members' certificates.
    pub ca: Option<PathBuf>,
    /// PEM file of this client's certificate (chain), for etcd's `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    /// PEM file of the private key of [`Self::cert`].
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// Whether the settings are complete: a CA, and a certificate with its key or neither.
    pub fn check(&self, url: &str) -> Result<(), StoreError> {
        let bad = |reason: &str| StoreError::BadUrl { url: url.to_string(), reason: reason.into() };
        if self.ca.is_none() {
            return Err(bad(
                "etcds:// needs the CA certificate that issued the etcd members' certificates (--etcd-ca FILE, PEM)",
            ));
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                Err(bad("the client certificate (--etcd-cert) needs its key (--etcd-key)"))
            }
            (None, Some(_)) => {
                Err(bad("the client key (--etcd-key) needs its certificate (--etcd-cert)"))
            }
            _ => Ok(()),
        }
    }

    /// The client's TLS options, the files read now.
    pub(crate) fn options(&self) -> Result<TlsOptions, StoreError> {
        let ca = self.ca.as_deref().ok_or_else(|| StoreError::EtcdTlsFile {
            path: PathBuf::new(),
            reason: "no CA certificate given for etcds:// (--etcd-ca FILE)".into(),
        })?;
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read_pem(
            ca,
            "CA certificate",
            CERT,
        )?));
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let cert = read_pem(cert, "client certificate", CERT)?;
            let key = read_pem(key, "client private key", KEY)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Ok(tls)
    }

    /// Whether a client certificate is configured.
    pub fn has_identity(&self) -> bool {
        self.cert.is_some()
    }
}

const CERT: &str = "-----BEGIN CERTIFICATE-----";
/// Every PEM private key label ends so (`PRIVATE KEY`, `EC PRIVATE KEY`, `RSA PRIVATE KEY`).
const KEY: &str = "PRIVATE KEY-----";

/// Reads a PEM file, which must hold `marker`.
fn read_pem(path: &Path, what: &str, marker: &str) -> Result<Vec<u8>, StoreError> {
    let err = |reason: String| StoreError::EtcdTlsFile { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read the {what}: {e}")))?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(err(format!("the {what} is not PEM (no {marker:?} in it)")));
    }
    Ok(bytes)
}

/// What a TLS failure's text says about its cause, for the error's hint; `None` when the text
/// is not a TLS failure. (With TLS 1.3 a member that refuses the client's certificate, or
/// its absence, does so after the client's side of the handshake is done: the client sees
/// the connection closed, which [`closed_at_connect_hint`] reads.)
pub fn refusal_hint(text: &str, has_identity: bool) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let tls = ["certificate", "handshake", "tls", "alert", "invalidcertificate", "unknownissuer"];
    if !tls.iter().any(|w| t.contains(w)) {
        return None;
    }
    Some(if t.contains("certificate required") || t.contains("certificaterequired") {
        "the member requires a client certificate: give --etcd-cert and --etcd-key"
    } else if t.contains("unknownissuer")
        || t.contains("unknown issuer")
        || t.contains("badsignature")
    {
        "the member's certificate is not issued by the --etcd-ca given"
    } else if t.contains("notvalidforname") || t.contains("not valid for name") {
        "the member's certificate does not name the host or address of the store URL"
    } else if t.contains("bad certificate")
        || t.contains("badcertificate")
        || t.contains("unknown ca")
    {
        if has_identity {
            "the member refused the client certificate: is it issued by the CA etcd trusts (--trusted-ca-file)?"
        } else {
            "the member requires a client certificate: give --etcd-cert and --etcd-key"
        }
    } else if has_identity {
        "the TLS handshake failed: check --etcd-ca, --etcd-cert and --etcd-key against etcd's certificates"
    } else {
        "the TLS handshake failed: check --etcd-ca (and whether etcd requires a client certificate: --etcd-cert, --etcd-key)"
    })
}

/// The hint for a TLS connection a member closed as the first request went out, at connect
/// (TLS 1.3's client-certificate refusal); `None` when the text is no such failure.
pub fn closed_at_connect_hint(text: &str, has_identity: bool) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let closed = [
        "broken pipe",
        "connection reset",
        "connection closed",
        "unexpected eof",
        "transport error",
    ];
    if !closed.iter().any(|w| t.contains(w)) || t.contains("connection refused") {
        return None;
    }
    Some(if has_identity {
        "the member closed the connection after the handshake: it refused the client certificate (is it issued by the CA etcd trusts, its --trusted-ca-file?)"
    } else {
        "the member closed the connection after the handshake: it requires a client certificate (give --etcd-cert and --etcd-key)"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_before_connecting() {
        let p = |s: &str| Some(PathBuf::from(s));
        // (ca, cert, key, accepted)
        let table = [
            (p("ca"), None, None, true),
            (p("ca"), p("c"), p("k"), true),
            (None, None, None, false),
            (None, p("c"), p("k"), false),
            (p("ca"), p("c"), None, false),
            (p("ca"), None, p("k"), false),
        ];
        for (ca, cert, key, ok) in table {
            let tls = EtcdTls { ca, cert, key };
            assert_eq!(tls.check("etcds://h:2379").is_ok(), ok, "{tls:?}");
        }
    }

    #[test]
    fn files_must_exist_and_be_pem() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let missing = dir.path().join("missing.pem");
        for ca in [junk.clone(), missing.clone()] {
            let tls = EtcdTls { ca: Some(ca.clone()), cert: None, key: None };
            match tls.options() {
                Err(StoreError::EtcdTlsFile { path, .. }) => assert_eq!(path, ca),
                other => panic!("{ca:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn refusals_get_a_hint_naming_the_side_to_fix() {
        // (error text, client certificate given, expected hint contains)
        let table = [
            (
                "transport error: tls handshake eof: received fatal alert: CertificateRequired",
                false,
                Some("requires a client certificate"),
            ),
            ("invalid peer certificate: UnknownIssuer", true, Some("not issued by the --etcd-ca")),
            ("invalid peer certificate: NotValidForName", false, Some("does not name the host")),
            ("received fatal alert: BadCertificate", true, Some("refused the client certificate")),
            ("received fatal alert: BadCertificate", false, Some("requires a client certificate")),
            ("connection refused", false, None),
        ];
        for (text, identity, want) in [
            (
                "transport error: stream closed because of a broken pipe",
                false,
                Some("requires a client certificate"),
            ),
            (
                "transport error: connection reset by peer",
                true,
                Some("refused the client certificate"),
            ),
            ("transport error: tcp connect error: Connection refused", false, None),
            ("no member answered within 5s", false, None),
        ] {
            let got = closed_at_connect_hint(text, identity);
            match want {
                Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{text}: {got:?}"),
                None => assert_eq!(got, None, "{text}"),
            }
        }
        for (text, identity, want) in table {
            let got = refusal_hint(text, identity);
            match want {
                Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{text}: {got:?}"),
                None => assert_eq!(got, None, "{text}"),
            }
        }
    }
}
