//! Canonical request and string to sign (non-S3 rules).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};

use crate::{ALGORITHM, RequestParts};

/// Everything but the RFC 3986 unreserved characters `A-Za-z0-9-_.~`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// As [`COMPONENT`], but `/` is kept (it separates path segments).
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Builds the canonical request for `req`, covering exactly `signed_headers`
/// in the order given (a conforming client sends them sorted and lowercase).
///
/// * Path: `.` and `..` segments are removed, empty segments (`//`) collapsed,
///   then every byte outside `A-Za-z0-9-_.~/` is percent-encoded. `path` is the
///   raw wire path, which the client already encoded once, so an escape such
///   as `%3A` becomes `%253A`: each segment ends up encoded twice, as AWS
///   does for every service but S3.
/// * Query: split on `&`, each name and value percent-decoded and re-encoded
///   with the same unreserved set (a value without `=` gets an empty value),
///   pairs sorted by encoded name, then encoded value.
/// * Headers: one line per signed header, name lowercased, values trimmed,
///   runs of whitespace collapsed to one space, repeated headers joined with
///   `,` in the order received. A signed header absent from the request gives
///   an empty value (the verifier rejects that case before getting here).
/// * The `SignedHeaders` line is the given names joined with `;`, verbatim.
pub fn canonical_request(
    req: &RequestParts,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut out = String::with_capacity(estimate(req, payload_hash));
    write_canonical_request(
        &mut out,
        req,
        req.headers,
        signed_headers.iter().map(String::as_str),
        payload_hash,
    );
    out
}

pub(crate) fn estimate(req: &RequestParts, payload_hash: &str) -> usize {
    let headers: usize = req.headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    req.method.len()
        + req.path.len() * 2
        + req.query.len() * 2
        + headers * 2
        + payload_hash.len()
        + 64
}

/// An upper bound of the canonical request's length for `signed_headers`,
/// which must be free of repeats (case-insensitively), so that each request
/// header is written at most once. Percent-encoding at most triples a path
/// byte; a query byte can become `%XX=` (4 bytes).
pub(crate) fn canonical_len_bound(
    req: &RequestParts,
    signed_headers: &[String],
    payload_hash: &str,
) -> usize {
    let names: usize = signed_headers.iter().map(|n| 2 * n.len() + 3).sum();
    let values: usize = req
        .headers
        .iter()
        .filter(|(k, _)| signed_headers.iter().any(|n| n.eq_ignore_ascii_case(k)))
        .map(|(_, v)| v.len() + 1)
        .sum();
    req.method.len()
        + 3 * req.path.len()
        + 4 * req.query.len()
        + names
        + values
        + payload_hash.len()
        + 16
}

/// Writes the canonical request; `headers` may differ from `req.headers`
/// (the signer adds `x-amz-date` and the session token).
pub(crate) fn write_canonical_request<'s>(
    out: &mut String,
    req: &RequestParts,
    headers: &[(&str, &str)],
    signed_headers: impl Iterator<Item = &'s str> + Clone,
    payload_hash: &str,
) {
    out.push_str(req.method);
    out.push('\n');
    write_canonical_path(out, req.path);
    out.push('\n');
    write_canonical_query(out, req.query);
    out.push('\n');
    for name in signed_headers.clone() {
        for c in name.chars() {
            out.push(c.to_ascii_lowercase());
        }
        out.push(':');
        let mut first = true;
        for (k, v) in headers {
            if k.eq_ignore_ascii_case(name) {
                if !first {
                    out.push(',');
                }
                first = false;
                write_header_value(out, v);
            }
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in signed_headers.enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    out.push_str(payload_hash);
}

fn is_header_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Trim, and collapse inner runs of whitespace to one space.
fn write_header_value(out: &mut String, value: &str) {
    for (i, word) in value.split(is_header_space).filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

fn push_encoded(out: &mut String, bytes: &[u8], set: &'static AsciiSet) {
    for piece in percent_encode(bytes, set) {
        out.push_str(piece);
    }
}

/// True when removing dot segments and empty segments would change `path`.
fn needs_normalization(path: &str) -> bool {
    let last = path.split('/').count() - 1;
    path.split('/').enumerate().any(|(i, seg)| match seg {
        "." | ".." => true,
        "" => !((i == 0 && path.starts_with('/')) || (i == last && path.ends_with('/'))),
        _ => false,
    })
}

pub(crate) fn write_canonical_path(out: &mut String, path: &str) {
    let start = out.len();
    if !needs_normalization(path) {
        push_encoded(out, path.as_bytes(), PATH);
    } else {
        let mut segments: Vec<&str> = Vec::new();
        for seg in path.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                s => segments.push(s),
            }
        }
        if path.starts_with('/') {
            out.push('/');
        }
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            push_encoded(out, seg.as_bytes(), COMPONENT);
        }
        if path.ends_with('/') && !segments.is_empty() {
            out.push('/');
        }
    }
    if out.len() == start {
        out.push('/');
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// One query name or value in canonical form: borrowed when the wire form is
/// already canonical (the common case), re-encoded otherwise.
fn canonical_component(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut canonical = true;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let upper_hex = |x: u8| x.is_ascii_digit() || (b'A'..=b'F').contains(&x);
            if i + 2 < b.len() && upper_hex(b[i + 1]) && upper_hex(b[i + 2]) {
                let hi = (b[i + 1] as char).to_digit(16).unwrap_or(0) as u8;
                let lo = (b[i + 2] as char).to_digit(16).unwrap_or(0) as u8;
                let decoded = hi << 4 | lo;
                if is_unreserved(decoded) {
                    // An escape of an unreserved character is not canonical.
                    canonical = false;
                    break;
                }
                i += 3;
                continue;
            }
            canonical = false;
            break;
        }
        if !is_unreserved(c) {
            canonical = false;
            break;
        }
        i += 1;
    }
    if canonical {
        Cow::Borrowed(s)
    } else {
        let decoded: Cow<[u8]> = percent_decode_str(s).into();
        let mut out = String::with_capacity(s.len() + 8);
        push_encoded(&mut out, &decoded, COMPONENT);
        Cow::Owned(out)
    }
}

pub(crate) fn write_canonical_query(out: &mut String, query: &str) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(Cow<str>, Cow<str>)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (canonical_component(k), canonical_component(v))
        })
        .collect();
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

/// `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical_request)>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let mut out = String::with_capacity(ALGORITHM.len() + amz_date.len() + scope.len() + 67);
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(amz_date);
    out.push('\n');
    out.push_str(scope);
    out.push('\n');
    let mut hex_buf = [0u8; 64];
    let digest = Sha256::digest(canonical_request.as_bytes());
    hex::encode_to_slice(digest, &mut hex_buf).expect("64 hex digits fit 64 bytes");
    out.push_str(std::str::from_utf8(&hex_buf).expect("hex is ASCII"));
    out
}
