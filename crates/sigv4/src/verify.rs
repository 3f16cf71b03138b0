//! Server side: verifying a signed request.

use std::borrow::Cow;

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::auth::check_signed_headers;
use crate::canonical::{canonical_len_bound, sha256_hex, string_to_sign, write_canonical_request};
use crate::key::{CacheStats, KeyCache, hmac_sha256};
use crate::timefmt::{describe_skew, format_amz_date, parse_amz_date, parse_http_date};
use crate::{AuthorizationHeader, MAX_CANONICAL_REQUEST_BYTES, RequestParts, SigV4Error};

/// Verifies SigV4 `Authorization`-header signatures.
///
/// Holds the allowed clock skew and a bounded, thread-safe cache of derived
/// signing keys keyed by (access key, date, region, service, secret), so the
/// four-HMAC derivation runs once a day per key and scope. Share one
/// `Verifier` (e.g. in an `Arc`) across the server.
pub struct Verifier {
    max_skew: time::Duration,
    region: Option<String>,
    service: Option<String>,
    cache: KeyCache,
}

impl Default for Verifier {
    /// Five minutes of skew, as AWS allows.
    fn default() -> Self {
        Self::new(time::Duration::minutes(5))
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("max_skew", &self.max_skew)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("cache", &self.cache.stats())
            .finish()
    }
}

fn header<'a>(headers: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|&(_, v)| v)
}

impl Verifier {
    /// A verifier accepting request timestamps within `max_skew` of the
    /// server's clock, in both directions (the boundary itself is accepted).
    pub fn new(max_skew: time::Duration) -> Self {
        Verifier {
            max_skew: max_skew.abs(),
            region: None,
            service: None,
            cache: KeyCache::default(),
        }
    }

    /// Also require the credential scope's region to be `region`.
    pub fn expect_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Also require the credential scope's service to be `service`.
    pub fn expect_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The allowed clock skew.
    pub fn max_skew(&self) -> time::Duration {
        self.max_skew
    }

    /// The signing key for this scope, from the cache when possible.
    pub fn cached_signing_key(
        &self,
        access_key_id: &str,
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> [u8; 32] {
        self.cache.get(access_key_id, secret, date, region, service)
    }

    /// Hit/miss counters and size of the signing-key cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Verifies `req`, signed as `auth` says, with `secret`, at wall-clock `now`.
    ///
    /// Checks, in order: `auth.signed_headers` is at most
    /// [`crate::MAX_SIGNED_HEADERS`] non-empty names, strictly increasing once
    /// lowercased (as [`crate::parse_authorization`] requires; the fields are
    /// public, so a hand-built header is checked again); an `X-Amz-Date` (else `Date`) header is present and
    /// well-formed; `host` is signed; every signed header is present; the
    /// scope date is the date of the request timestamp; the scope region and
    /// service if [`Verifier::expect_region`]/[`Verifier::expect_service`]
    /// were set; the timestamp is within `max_skew` of `now`;
    /// `x-amz-content-sha256`, if present, is the SHA-256 of `body`
    /// (`UNSIGNED-PAYLOAD` is refused); the canonical request would be at most
    /// [`crate::MAX_CANONICAL_REQUEST_BYTES`]; finally the signature, recomputed
    /// over exactly `auth.signed_headers` and compared in constant time.
    pub fn verify(
        &self,
        req: &RequestParts,
        auth: &AuthorizationHeader,
        secret: &str,
        now: OffsetDateTime,
    ) -> Result<(), SigV4Error> {
        check_signed_headers(auth.signed_headers.iter().map(String::as_str))?;

        // Request timestamp.
        let (amz_date, request_time): (Cow<str>, OffsetDateTime) =
            match header(req.headers, "x-amz-date") {
                Some(v) => {
                    let t = parse_amz_date(v.trim())
                        .ok_or_else(|| SigV4Error::InvalidDate { value: v.to_owned() })?;
                    (Cow::Borrowed(v.trim()), t)
                }
                None => match header(req.headers, "date") {
                    Some(v) => {
                        let t = parse_http_date(v)
                            .ok_or_else(|| SigV4Error::InvalidDate { value: v.to_owned() })?;
                        (Cow::Owned(format_amz_date(t)), t)
                    }
                    None => {
                        return Err(SigV4Error::MissingDate { authorization: auth.to_string() });
                    }
                },
            };

        // Signed headers.
        if !auth.signed_headers.iter().any(|h| h.eq_ignore_ascii_case("host")) {
            return Err(SigV4Error::HostNotSigned);
        }
        if let Some(missing) = auth
            .signed_headers
            .iter()
            .find(|h| !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(h)))
        {
            return Err(SigV4Error::SignedHeaderMissing { header: missing.clone() });
        }

        // Credential scope.
        if auth.date != amz_date[..8] {
            return Err(SigV4Error::ScopeDateMismatch {
                scope_date: auth.date.clone(),
                request_date: amz_date[..8].to_owned(),
                amz_date: amz_date.into_owned(),
            });
        }
        if let Some(region) = &self.region
            && auth.region != *region
        {
            return Err(SigV4Error::InvalidRegion { region: auth.region.clone() });
        }
        if let Some(service) = &self.service
            && auth.service != *service
        {
            return Err(SigV4Error::WrongService {
                expected: service.clone(),
                got: auth.service.clone(),
            });
        }

        // Clock skew. A bound beyond the representable dates is no bound: any skew, however
        // large, is checked without overflow.
        if let Some(earliest) = now.checked_sub(self.max_skew)
            && request_time < earliest
        {
            return Err(SigV4Error::SignatureExpired {
                request_time: amz_date.into_owned(),
                earliest: format_amz_date(earliest),
                now: format_amz_date(now),
                skew: describe_skew(self.max_skew),
            });
        }
        if let Some(latest) = now.checked_add(self.max_skew)
            && request_time > latest
        {
            return Err(SigV4Error::SignatureNotYetCurrent {
                request_time: amz_date.into_owned(),
                latest: format_amz_date(latest),
                now: format_amz_date(now),
                skew: describe_skew(self.max_skew),
            });
        }

        // Payload.
        let body_hash = sha256_hex(req.body);
        let payload_hash = match header(req.headers, "x-amz-content-sha256") {
            Some(provided) => {
                if !provided.trim().eq_ignore_ascii_case(&body_hash) {
                    return Err(SigV4Error::ContentHashMismatch {
                        provided: provided.to_owned(),
                        computed: body_hash,
                    });
                }
                provided.trim()
            }
            None => body_hash.as_str(),
        };

        // Signature.
        let bound = canonical_len_bound(req, &auth.signed_headers, payload_hash);
        if bound > MAX_CANONICAL_REQUEST_BYTES {
            return Err(SigV4Error::CanonicalRequestTooLarge { bytes: bound });
        }
        let mut creq = String::with_capacity(bound);
        write_canonical_request(
            &mut creq,
            req,
            req.headers,
            auth.signed_headers.iter().map(String::as_str),
            payload_hash,
        );
        debug_assert!(creq.len() <= bound, "{} > {bound}", creq.len());
        let scope = auth.scope();
        let sts = string_to_sign(&amz_date, &scope, &creq);
        let key =
            self.cache.get(&auth.access_key_id, secret, &auth.date, &auth.region, &auth.service);
        let mut expected = [0u8; 64];
        hex::encode_to_slice(hmac_sha256(&key, sts.as_bytes()), &mut expected)
            .expect("64 hex digits fit 64 bytes");
        if bool::from(expected[..].ct_eq(auth.signature.as_bytes())) {
            Ok(())
        } else {
            Err(SigV4Error::SignatureMismatch { canonical_request: creq, string_to_sign: sts })
        }
    }
}
