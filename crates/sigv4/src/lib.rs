//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), both directions, written on
//! `hmac` + `sha2`.
//!
//! # Contract
//!
//! * **Server side** — [`parse_authorization`] turns the `Authorization` header
//!   into an [`AuthorizationHeader`]; [`Verifier::verify`] checks a request
//!   against it. Verification signs *exactly* the client's `SignedHeaders`
//!   list, so whatever a conforming client (botocore / the AWS CLI, the AWS
//!   SDKs) signed is accepted; the list must be as those clients send it:
//!   non-empty names, strictly increasing once lowercased (sorted, no repeats),
//!   at most [`MAX_SIGNED_HEADERS`] of them. It also checks the
//!   `X-Amz-Date` (or `Date`) header, that the credential scope date matches
//!   it, the clock skew (default ±5 minutes, boundary inclusive), that `host`
//!   is signed, that every signed header is present, and
//!   `x-amz-content-sha256` against the body. The signature is compared in
//!   constant time. Derived signing keys are cached per (access key, date,
//!   region, service) in a bounded, thread-safe cache.
//! * **Client side** — [`sign`] (or a [`Signer`], which caches the signing key
//!   until the date changes) returns the `x-amz-date`, optional
//!   `x-amz-security-token` and `authorization` headers to add to a request.
//! * **Limits** — work and memory stay linear in the request: the header is
//!   at most [`MAX_AUTHORIZATION_BYTES`], the canonical request at most
//!   [`MAX_CANONICAL_REQUEST_BYTES`] (checked before it is built), and an error
//!   repeats at most [`MAX_ECHO_BYTES`] of it.
//! * **Errors** — every failure is a [`SigV4Error`] whose
//!   [`aws_code`](SigV4Error::aws_code) is the code AWS answers with
//!   (`IncompleteSignatureException`, `InvalidSignatureException`,
//!   `MissingAuthenticationTokenException`, ...) and whose `Display` is AWS's
//!   message text.
//!
//! Canonicalisation follows the rules for every service but S3: the path is
//! normalised (`.`/`..` removed, `//` collapsed) and the raw wire path is
//! percent-encoded once more (so each segment ends up encoded twice); query
//! parameters are re-encoded and sorted by encoded name, then value; header
//! names are lowercased and values trimmed with inner whitespace collapsed,
//! repeated headers joined with `,`. S3 rules, presigned URLs (query-string
//! auth), chunked/streaming payloads and SigV4a are out of scope.
//!
//! No I/O and no clock: callers pass `now`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod canonical;
pub mod credentials;
mod error;
mod key;
mod sign;
mod timefmt;
mod verify;

pub use auth::{AuthorizationHeader, parse_authorization};
pub use canonical::{canonical_request, sha256_hex, string_to_sign};
pub use error::{MAX_ECHO_BYTES, SigV4Error};
pub use key::{CacheStats, signature, signing_key};
pub use sign::{Credentials, Signer, sign};
pub use timefmt::{format_amz_date, parse_amz_date};
pub use verify::Verifier;

/// The only algorithm supported.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The credential scope terminator.
pub const TERMINATOR: &str = "aws4_request";
/// Hex SHA-256 of the empty string (the payload hash of a body-less request).
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Longest `Authorization` header accepted, in bytes. A well-formed header
/// signing [`MAX_SIGNED_HEADERS`] ordinary names is well under it.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;
/// Most header names `SignedHeaders` may list.
pub const MAX_SIGNED_HEADERS: usize = 64;
/// Longest canonical request the verifier builds, in bytes: a request whose
/// path, query and signed headers would make a longer one is refused first.
pub const MAX_CANONICAL_REQUEST_BYTES: usize = 64 * 1024;

/// A request as seen on the wire.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The raw (still percent-encoded) path, e.g. `/` or `/a%20b`.
    pub path: &'a str,
    /// The raw query string without `?` (empty when there is none).
    pub query: &'a str,
    /// Headers as received: names in any case, possibly repeated, in order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}
