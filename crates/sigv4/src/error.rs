//! The error type, with the AWS error code and wording for each failure.

/// Every way SigV4 authentication can fail.
///
/// `Display` is the user-facing message in AWS's wording. [`SigV4Error::aws_code`]
/// gives the error code an AWS JSON service puts in `__type`, and
/// [`SigV4Error::http_status`] the status AWS answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// The request has no `Authorization` header (and no presigned query).
    /// The server decides this case itself; this crate never returns it.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,

    /// The access key id is not known to the server. The server decides this
    /// case itself (this crate has no credential store); it is here so every
    /// authentication failure has one type.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,

    /// One or more of `Credential`, `Signature`, `SignedHeaders` is missing
    /// (also returned when the header is not SigV4 at all, e.g. `Bearer ...`).
    #[error("{}Authorization={authorization}", requires_list(.missing))]
    MissingAuthorizationParameters {
        /// Parameter names, in AWS's order: Credential, Signature, SignedHeaders.
        missing: Vec<&'static str>,
        /// The Authorization header as received.
        authorization: String,
    },

    /// A component of the Authorization header is not `key=value`.
    #[error(
        "'{pair}' not a valid key=value pair (missing equal-sign) in Authorization header: '{authorization}'."
    )]
    MalformedAuthorizationPair {
        /// The offending component.
        pair: String,
        /// The Authorization header as received.
        authorization: String,
    },

    /// The same parameter appears twice in the Authorization header.
    #[error(
        "Authorization header contains more than one '{name}' parameter. Authorization={authorization}"
    )]
    DuplicateAuthorizationParameter {
        /// `Credential`, `SignedHeaders` or `Signature`.
        name: &'static str,
        /// The Authorization header as received.
        authorization: String,
    },

    /// An `AWS4-*` algorithm other than `AWS4-HMAC-SHA256` (e.g. SigV4a).
    #[error(
        "Unsupported AWS 'algorithm': '{algorithm}'; only 'AWS4-HMAC-SHA256' is supported. Authorization={authorization}"
    )]
    UnsupportedAlgorithm {
        /// The algorithm the client named.
        algorithm: String,
        /// The Authorization header as received.
        authorization: String,
    },

    /// `Credential=` is not `AKID/yyyymmdd/region/service/aws4_request`.
    #[error(
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
    )]
    MalformedCredential {
        /// The Credential value as received.
        credential: String,
    },

    /// The credential scope does not end in `aws4_request`.
    #[error(
        "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
    )]
    InvalidTerminator {
        /// The terminator the client used.
        terminator: String,
    },

    /// Neither `X-Amz-Date` nor `Date` is present.
    #[error(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={authorization}"
    )]
    MissingDate {
        /// The Authorization header, re-serialised.
        authorization: String,
    },

    /// `X-Amz-Date` (or `Date`) is not a valid timestamp.
    #[error(
        "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
    )]
    InvalidDate {
        /// The header value as received.
        value: String,
    },

    /// `host` is not among the signed headers.
    #[error("'Host' must be a 'SignedHeader' in the AWS Authorization.")]
    HostNotSigned,

    /// A header named in `SignedHeaders` is absent from the request.
    #[error("Header '{header}' is listed in SignedHeaders but is not present in the request.")]
    SignedHeaderMissing {
        /// The signed header name.
        header: String,
    },

    /// The credential scope date is not the date of `X-Amz-Date`.
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{request_date}', from '{amz_date}'."
    )]
    ScopeDateMismatch {
        /// The `yyyymmdd` of the credential scope.
        scope_date: String,
        /// The `yyyymmdd` of the request timestamp.
        request_date: String,
        /// The request timestamp, `yyyymmddThhmmssZ`.
        amz_date: String,
    },

    /// The credential scope names a region this server does not serve
    /// (only checked when [`crate::Verifier::expect_region`] was set).
    #[error("Credential should be scoped to a valid region, not '{region}'.")]
    InvalidRegion {
        /// The region in the credential scope.
        region: String,
    },

    /// The credential scope names another service
    /// (only checked when [`crate::Verifier::expect_service`] was set).
    #[error("Credential should be scoped to correct service: '{expected}'.")]
    WrongService {
        /// The service this server is.
        expected: String,
        /// The service in the credential scope.
        got: String,
    },

    /// The request timestamp is older than `now - max_skew`.
    #[error("Signature expired: {request_time} is now earlier than {earliest} ({now} - {skew}.)")]
    SignatureExpired {
        /// The request timestamp, `yyyymmddThhmmssZ`.
        request_time: String,
        /// `now - max_skew`.
        earliest: String,
        /// The server's clock.
        now: String,
        /// The allowed skew, e.g. `5 min`.
        skew: String,
    },

    /// The request timestamp is later than `now + max_skew`.
    #[error(
        "Signature not yet current: {request_time} is still later than {latest} ({now} + {skew}.)"
    )]
    SignatureNotYetCurrent {
        /// The request timestamp, `yyyymmddThhmmssZ`.
        request_time: String,
        /// `now + max_skew`.
        latest: String,
        /// The server's clock.
        now: String,
        /// The allowed skew, e.g. `5 min`.
        skew: String,
    },

    /// `x-amz-content-sha256` does not match the body received.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentHashMismatch {
        /// The header value.
        provided: String,
        /// Hex SHA-256 of the body received.
        computed: String,
    },

    /// The `Authorization` header is longer than [`crate::MAX_AUTHORIZATION_BYTES`].
    /// The message does not echo it.
    #[error(
        "The Authorization header is {length} bytes long; at most {} bytes are accepted.",
        crate::MAX_AUTHORIZATION_BYTES
    )]
    AuthorizationTooLong {
        /// The header's length in bytes.
        length: usize,
    },

    /// `SignedHeaders` names more than [`crate::MAX_SIGNED_HEADERS`] headers.
    #[error(
        "SignedHeaders lists {count} header names; at most {} may be signed.",
        crate::MAX_SIGNED_HEADERS
    )]
    TooManySignedHeaders {
        /// How many names were listed.
        count: usize,
    },

    /// `SignedHeaders` is not a list of non-empty header names in strictly increasing
    /// (lowercase) order: a name is empty, repeated or out of order.
    #[error(
        "SignedHeaders must list non-empty header names, lowercase, sorted and each once: '{}' follows '{}'.",
        echo(.name, 64),
        echo(.previous, 64)
    )]
    SignedHeadersNotCanonical {
        /// The offending name (may be empty).
        name: String,
        /// The name before it (empty when it is the first).
        previous: String,
    },

    /// The canonical request of this request would be longer than
    /// [`crate::MAX_CANONICAL_REQUEST_BYTES`] (a very long path, query or signed header).
    #[error(
        "The request is too large to verify: its canonical request would be up to {bytes} bytes, at most {} are accepted. Shorten the path, the query or the signed headers.",
        crate::MAX_CANONICAL_REQUEST_BYTES
    )]
    CanonicalRequestTooLarge {
        /// The bound computed for this request.
        bytes: usize,
    },

    /// The signature does not match. The message carries the canonical request
    /// and string to sign the server computed, as AWS JSON services do, each cut
    /// to its first [`MAX_ECHO_BYTES`] bytes.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{}'\n\nThe String-to-Sign should have been\n'{}'\n",
        echo(.canonical_request, MAX_ECHO_BYTES),
        echo(.string_to_sign, MAX_ECHO_BYTES)
    )]
    SignatureMismatch {
        /// The canonical request the server computed.
        canonical_request: String,
        /// The string to sign the server computed.
        string_to_sign: String,
    },
}

/// Most bytes of the canonical request (and of the string to sign) a
/// [`SigV4Error::SignatureMismatch`] message repeats.
pub const MAX_ECHO_BYTES: usize = 2048;

/// `s`, or its first `max` bytes (cut at a character boundary) and how long it was.
fn echo(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}... ({} bytes in all)", &s[..end], s.len()))
}

fn requires_list(missing: &[&'static str]) -> String {
    let mut out = String::new();
    for name in missing {
        out.push_str("Authorization header requires '");
        out.push_str(name);
        out.push_str("' parameter. ");
    }
    out
}

impl SigV4Error {
    /// The AWS error code (the `__type` of an AWS JSON error body).
    pub fn aws_code(&self) -> &'static str {
        use SigV4Error::*;
        match self {
            MissingAuthenticationToken => "MissingAuthenticationTokenException",
            UnrecognizedClient => "UnrecognizedClientException",
            MissingAuthorizationParameters { .. }
            | MalformedAuthorizationPair { .. }
            | DuplicateAuthorizationParameter { .. }
            | UnsupportedAlgorithm { .. }
            | MalformedCredential { .. }
            | MissingDate { .. }
            | InvalidDate { .. }
            | HostNotSigned
            | AuthorizationTooLong { .. }
            | TooManySignedHeaders { .. }
            | SignedHeadersNotCanonical { .. }
            | CanonicalRequestTooLarge { .. } => "IncompleteSignatureException",
            InvalidTerminator { .. }
            | SignedHeaderMissing { .. }
            | ScopeDateMismatch { .. }
            | InvalidRegion { .. }
            | WrongService { .. }
            | SignatureExpired { .. }
            | SignatureNotYetCurrent { .. }
            | ContentHashMismatch { .. }
            | SignatureMismatch { .. } => "InvalidSignatureException",
        }
    }

    /// The HTTP status AWS JSON services answer this error with:
    /// 403 for a missing token, 400 for everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            SigV4Error::MissingAuthenticationToken => 403,
            _ => 400,
        }
    }

    /// The user-facing message (same as `Display`).
    pub fn message(&self) -> String {
        self.to_string()
    }
}
