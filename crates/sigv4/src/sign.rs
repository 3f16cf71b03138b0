//! Client side: signing a request.

use std::sync::Mutex;

use time::OffsetDateTime;

use crate::canonical::{estimate, sha256_hex, string_to_sign, write_canonical_request};
use crate::key::{hmac_sha256, signing_key};
use crate::timefmt::format_amz_date;
use crate::{ALGORITHM, RequestParts, TERMINATOR};

/// AWS credentials for signing.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id, e.g. `AKIDEXAMPLE`.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials; sent (and signed) as
    /// `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .finish()
    }
}

/// Signs `req` at `now` and returns the headers to add to it:
/// `("x-amz-date", ..)`, then `("x-amz-security-token", ..)` when `creds`
/// has a session token, then `("authorization", ..)`.
///
/// The signature covers every header in `req.headers` (names lowercased,
/// repeated names merged), plus `x-amz-date` and the session token.
/// `req.headers` must therefore hold exactly the headers that will be sent,
/// including `Host` (`host:port` when the port is not the scheme default);
/// any `Authorization` or `X-Amz-Date` in it is ignored (the returned ones
/// replace them), and so is `X-Amz-Security-Token` when `creds` has a token.
/// The payload hash is `x-amz-content-sha256` from `req.headers` if given,
/// else the SHA-256 of `req.body`.
///
/// This derives the signing key on every call; [`Signer`] caches it.
pub fn sign(
    req: &RequestParts,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Vec<(String, String)> {
    let amz_date = format_amz_date(now);
    let key = signing_key(&creds.secret_access_key, &amz_date[..8], region, service);
    sign_with_key(req, creds, region, service, amz_date, &key)
}

/// A reusable signer for one set of credentials, region and service.
///
/// Caches the signing key and re-derives it only when the UTC date changes,
/// so a signature costs two SHA-256 and two HMAC-SHA256 computations. `sign`
/// takes `&self`; the cache sits behind a mutex held only to copy 40 bytes.
/// Clone it per worker thread to avoid even that contention.
pub struct Signer {
    creds: Credentials,
    region: String,
    service: String,
    cached: Mutex<Option<([u8; 8], [u8; 32])>>,
}

impl Clone for Signer {
    fn clone(&self) -> Self {
        Signer {
            creds: self.creds.clone(),
            region: self.region.clone(),
            service: self.service.clone(),
            cached: Mutex::new(*self.cached.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("creds", &self.creds)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `creds` in `region` for `service` (e.g. `ecs`).
    pub fn new(creds: Credentials, region: impl Into<String>, service: impl Into<String>) -> Self {
        Signer { creds, region: region.into(), service: service.into(), cached: Mutex::new(None) }
    }

    /// The credentials this signer uses.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The region this signer scopes signatures to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The service this signer scopes signatures to.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The signing key for the UTC date `date` (`yyyymmdd`), cached.
    pub fn signing_key_for(&self, date: &str) -> [u8; 32] {
        let mut day = [0u8; 8];
        let cacheable = date.len() == 8;
        if cacheable {
            day.copy_from_slice(date.as_bytes());
            let cached = *self.cached.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((d, key)) = cached
                && d == day
            {
                return key;
            }
        }
        let key = signing_key(&self.creds.secret_access_key, date, &self.region, &self.service);
        if cacheable {
            *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((day, key));
        }
        key
    }

    /// As [`sign`], with the cached signing key.
    pub fn sign(&self, req: &RequestParts, now: OffsetDateTime) -> Vec<(String, String)> {
        let amz_date = format_amz_date(now);
        let key = self.signing_key_for(&amz_date[..8]);
        sign_with_key(req, &self.creds, &self.region, &self.service, amz_date, &key)
    }
}

fn sign_with_key(
    req: &RequestParts,
    creds: &Credentials,
    region: &str,
    service: &str,
    amz_date: String,
    key: &[u8; 32],
) -> Vec<(String, String)> {
    let token = creds.session_token.as_deref();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(req.headers.len() + 2);
    headers.extend(req.headers.iter().copied().filter(|(k, _)| {
        !(k.eq_ignore_ascii_case("authorization")
            || k.eq_ignore_ascii_case("x-amz-date")
            || (token.is_some() && k.eq_ignore_ascii_case("x-amz-security-token")))
    }));
    debug_assert!(
        headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")),
        "berth_sigv4::sign: req.headers must contain the Host header that will be sent"
    );
    headers.push(("x-amz-date", &amz_date));
    if let Some(t) = token {
        headers.push(("x-amz-security-token", t));
    }

    // Signed header names: sorted by lowercase name, repeated names merged.
    let mut names: Vec<&str> = headers.iter().map(|&(k, _)| k).collect();
    names.sort_unstable_by(|a, b| {
        a.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    });
    names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let signed_len = names.iter().map(|n| n.len() + 1).sum();
    let mut signed = String::with_capacity(signed_len);
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            signed.push(';');
        }
        signed.extend(n.chars().map(|c| c.to_ascii_lowercase()));
    }

    let body_hash;
    let payload_hash =
        match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256")) {
            Some(&(_, v)) => v.trim(),
            None => {
                body_hash = sha256_hex(req.body);
                body_hash.as_str()
            }
        };

    let mut creq = String::with_capacity(estimate(req, payload_hash) + 64);
    write_canonical_request(&mut creq, req, &headers, signed.split(';'), payload_hash);
    let scope = format!("{}/{region}/{service}/{TERMINATOR}", &amz_date[..8]);
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let mut signature = [0u8; 64];
    hex::encode_to_slice(hmac_sha256(key, sts.as_bytes()), &mut signature)
        .expect("64 hex digits fit 64 bytes");
    let signature = std::str::from_utf8(&signature).expect("hex is ASCII");

    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        creds.access_key_id
    );
    let mut out = Vec::with_capacity(3);
    out.push(("x-amz-date".to_owned(), amz_date));
    if let Some(t) = token {
        out.push(("x-amz-security-token".to_owned(), t.to_owned()));
    }
    out.push(("authorization".to_owned(), authorization));
    out
}
