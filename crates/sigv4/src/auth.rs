//! The `Authorization` header.

use std::fmt;

use crate::{ALGORITHM, SigV4Error, TERMINATOR};

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
pub fn parse_authorization(value: &str) -> Result<AuthorizationHeader, SigV4Error> {
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

    Ok(AuthorizationHeader {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: if signed_headers.is_empty() {
            Vec::new()
        } else {
            signed_headers.split(';').map(str::to_owned).collect()
        },
        signature: signature.to_owned(),
    })
}
