//! The `Authorization` header.

use std::fmt;

use crate::{ALGORITHM, MAX_AUTHORIZATION_BYTES, MAX_SIGNED_HEADERS, SigV4Error, TERMINATOR};

/// Parsed `Authorization: AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=a;b, Signature=hex`.
///
/// `Display` writes it back in the canonical form
/// `AWS4-HMAC-SHA256 Credential=.../aws4_request, SignedHeaders=a;b, Signature=hex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    /// The access key id (first element of the credential).
    pub access_key_id: String,
    /// The scope date, `yyyymmdd`.
    pub date: String,
    /// The scope region.
    pub region: String,
    /// The scope service.
    pub service: String,
    /// The signed header names exactly as the client listed them.
    pub signed_headers: Vec<String>,
    /// The hex signature exactly as the client sent it.
    pub signature: String,
}

impl AuthorizationHeader {
    /// The credential scope, `yyyymmdd/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/{TERMINATOR}", self.date, self.region, self.service)
    }
}

impl fmt::Display for AuthorizationHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ALGORITHM} Credential={}/{}/{}/{}/{TERMINATOR}, SignedHeaders={}, Signature={}",
            self.access_key_id,
            self.date,
            self.region,
            self.service,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// Parses an `Authorization` header value.
///
/// Components may be separated by commas and/or whitespace, in any order.
/// Unknown `key=value` components are ignored. Errors, in AWS's wording:
/// a non-SigV4 scheme (e.g. `Bearer`) or missing parts give
/// [`SigV4Error::MissingAuthorizationParameters`]; a component without `=`
/// [`SigV4Error::MalformedAuthorizationPair`]; another `AWS4-*` algorithm
/// [`SigV4Error::UnsupportedAlgorithm`]; a credential that is not five
/// non-empty `/`-separated elements [`SigV4Error::MalformedCredential`];
/// a terminator other than `aws4_request` [`SigV4Error::InvalidTerminator`].
///
/// Hostile input is refused before any work proportional to it beyond one pass:
/// a header over [`MAX_AUTHORIZATION_BYTES`] gives
/// [`SigV4Error::AuthorizationTooLong`] (not echoed), more than
/// [`MAX_SIGNED_HEADERS`] names [`SigV4Error::TooManySignedHeaders`], and
/// names that are empty, repeated or not in increasing lowercase order
/// [`SigV4Error::SignedHeadersNotCanonical`].
pub fn parse_authorization(value: &str) -> Result<AuthorizationHeader, SigV4Error> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(SigV4Error::AuthorizationTooLong { length: value.len() });
    }
    let trimmed = value.trim();
    let (algorithm, rest) = match trimmed.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    if algorithm != ALGORITHM {
        if algorithm.starts_with("AWS4-") {
            return Err(SigV4Error::UnsupportedAlgorithm {
                algorithm: algorithm.to_owned(),
                authorization: value.to_owned(),
            });
        }
        return Err(SigV4Error::MissingAuthorizationParameters {
            missing: vec!["Credential", "Signature", "SignedHeaders"],
            authorization: value.to_owned(),
        });
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    let components =
        rest.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|t| !t.is_empty());
    for component in components {
        let Some((key, val)) = component.split_once('=') else {
            return Err(SigV4Error::MalformedAuthorizationPair {
                pair: component.to_owned(),
                authorization: value.to_owned(),
            });
        };
        let (name, slot) = match key {
            "Credential" => ("Credential", &mut credential),
            "SignedHeaders" => ("SignedHeaders", &mut signed_headers),
            "Signature" => ("Signature", &mut signature),
            _ => continue,
        };
        if slot.is_some() {
            return Err(SigV4Error::DuplicateAuthorizationParameter {
                name,
                authorization: value.to_owned(),
            });
        }
        *slot = Some(val);
    }

    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        let mut missing = Vec::new();
        if credential.is_none() {
            missing.push("Credential");
        }
        if signature.is_none() {
            missing.push("Signature");
        }
        if signed_headers.is_none() {
            missing.push("SignedHeaders");
        }
        return Err(SigV4Error::MissingAuthorizationParameters {
            missing,
            authorization: value.to_owned(),
        });
    };

    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(SigV4Error::MalformedCredential { credential: credential.to_owned() });
    };
    if [access_key_id, date, region, service].iter().any(|p| p.is_empty()) {
        return Err(SigV4Error::MalformedCredential { credential: credential.to_owned() });
    }
    if terminator != TERMINATOR {
        return Err(SigV4Error::InvalidTerminator { terminator: terminator.to_owned() });
    }

    let signed_headers: Vec<String> = if signed_headers.is_empty() {
        Vec::new()
    } else {
        check_signed_headers(signed_headers.split(';'))?;
        signed_headers.split(';').map(str::to_owned).collect()
    };
    Ok(AuthorizationHeader {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

/// Checks, in one pass, that `names` are at most [`MAX_SIGNED_HEADERS`]
/// non-empty names in strictly increasing order once lowercased (so no name
/// repeats, whatever its case). A canonical request over such a list names each
/// request header at most once, which keeps its size linear in the request's.
pub(crate) fn check_signed_headers<'a>(
    mut names: impl Iterator<Item = &'a str>,
) -> Result<(), SigV4Error> {
    let lower = |s: &'a str| s.bytes().map(|b| b.to_ascii_lowercase());
    let mut previous: Option<&str> = None;
    let mut count = 0;
    while let Some(name) = names.next() {
        count += 1;
        if count > MAX_SIGNED_HEADERS {
            return Err(SigV4Error::TooManySignedHeaders { count: count + names.count() });
        }
        let in_order = match previous {
            None => !name.is_empty(),
            Some(p) => !name.is_empty() && lower(p).lt(lower(name)),
        };
        if !in_order {
            return Err(SigV4Error::SignedHeadersNotCanonical {
                name: name.to_owned(),
                previous: previous.unwrap_or("").to_owned(),
            });
        }
        previous = Some(name);
    }
    Ok(())
}
