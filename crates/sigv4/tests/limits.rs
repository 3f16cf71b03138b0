//! Hostile input: repeated, unsorted or too many `SignedHeaders` names, an oversized
//! `Authorization` header or canonical request are refused quickly with short messages, and no
//! header (multi-byte characters at any offset included) makes parsing panic.

use std::time::{Duration as StdDuration, Instant};

use berth_sigv4::{
    AuthorizationHeader, Credentials, MAX_AUTHORIZATION_BYTES, MAX_CANONICAL_REQUEST_BYTES,
    MAX_SIGNED_HEADERS, RequestParts, SigV4Error, Verifier, parse_amz_date, parse_authorization,
    sign,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const T0: &str = "20150830T123600Z";
/// Longest message any refusal here may carry.
const SHORT: usize = 3 * 1024;

fn header_value(signed: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, \
         SignedHeaders={signed}, Signature={}",
        "0".repeat(64)
    )
}

fn auth(signed_headers: Vec<String>) -> AuthorizationHeader {
    AuthorizationHeader {
        access_key_id: "AKIDEXAMPLE".into(),
        date: "20150830".into(),
        region: "us-east-1".into(),
        service: "ecs".into(),
        signed_headers,
        signature: "0".repeat(64),
    }
}

/// The error of a call that must fail (without printing a possibly huge accepted value).
fn refused<T>(r: Result<T, SigV4Error>) -> SigV4Error {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

fn verify(headers: &[(&str, &str)], path: &str, a: &AuthorizationHeader) -> SigV4Error {
    let req = RequestParts { method: "POST", path, query: "", headers, body: b"{}" };
    let now = parse_amz_date(T0).unwrap();
    Verifier::default().verify(&req, a, SECRET, now).unwrap_err()
}

#[test]
fn four_thousand_repeated_names_are_refused_quickly_with_a_short_message() {
    let mut names = vec!["authorization"; 4000];
    names.extend(["host", "x-amz-date"]);
    let value = header_value(&names.join(";"));
    assert!(value.len() > 56_000);

    // As the server sees it: the header is parsed first.
    let start = Instant::now();
    let err = refused(parse_authorization(&value));
    assert!(matches!(err, SigV4Error::AuthorizationTooLong { .. }), "{err}");
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
    assert!(err.to_string().len() < SHORT, "{} bytes", err.to_string().len());

    // A header built by hand reaches the verifier: it refuses before building anything.
    let a = auth(names.iter().map(|s| s.to_string()).collect());
    let headers = [("host", "localhost"), ("x-amz-date", T0), ("authorization", value.as_str())];
    let err = verify(&headers, "/", &a);
    assert!(matches!(err, SigV4Error::SignedHeadersNotCanonical { .. }), "{}", err.aws_code());
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
    assert!(err.to_string().len() < SHORT);
    assert!(start.elapsed() < StdDuration::from_secs(2), "{:?}", start.elapsed());
}

#[test]
fn signed_header_names_must_be_sorted_and_unique() {
    for bad in [
        "host;host;x-amz-date",
        "x-amz-date;host",
        "host;Host;x-amz-date",
        "host;x-amz-date;x-amz-date",
        ";host;x-amz-date",
        "host;;x-amz-date",
        "host;x-amz-date;",
    ] {
        let err = refused(parse_authorization(&header_value(bad)));
        assert!(matches!(err, SigV4Error::SignedHeadersNotCanonical { .. }), "{bad}: {err:?}");
        assert_eq!(err.aws_code(), "IncompleteSignatureException", "{bad}");
        assert!(err.to_string().contains("sorted"), "{err}");
        // Built by hand, the verifier refuses it too.
        let a = auth(bad.split(';').map(String::from).collect());
        let headers = [("host", "localhost"), ("x-amz-date", T0)];
        let err = verify(&headers, "/", &a);
        assert!(matches!(err, SigV4Error::SignedHeadersNotCanonical { .. }), "{bad}: {err:?}");
    }
    for good in ["host", "content-type;host;x-amz-date", "Content-Type;host;X-Amz-Date"] {
        let a = parse_authorization(&header_value(good)).expect(good);
        assert_eq!(a.signed_headers.join(";"), good);
    }
}

#[test]
fn at_most_max_signed_headers_names() {
    let names = |n: usize| (0..n).map(|i| format!("h{i:03}")).collect::<Vec<_>>().join(";");
    let a = parse_authorization(&header_value(&names(MAX_SIGNED_HEADERS))).unwrap();
    assert_eq!(a.signed_headers.len(), MAX_SIGNED_HEADERS);
    let err = refused(parse_authorization(&header_value(&names(MAX_SIGNED_HEADERS + 1))));
    assert!(matches!(err, SigV4Error::TooManySignedHeaders { .. }), "{err:?}");
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
}

#[test]
fn authorization_header_length_is_capped() {
    let pad = |n: usize| {
        let v = header_value("host;x-amz-date");
        format!("{v}, X={}", "a".repeat(n - v.len() - 4))
    };
    let ok = pad(MAX_AUTHORIZATION_BYTES);
    assert_eq!(ok.len(), MAX_AUTHORIZATION_BYTES);
    parse_authorization(&ok).unwrap();
    let long = pad(MAX_AUTHORIZATION_BYTES + 1);
    let err = refused(parse_authorization(&long));
    assert!(matches!(err, SigV4Error::AuthorizationTooLong { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&MAX_AUTHORIZATION_BYTES.to_string()), "{msg}");
    assert!(!msg.contains("aaaa"), "the header is not echoed: {msg}");
}

#[test]
fn canonical_request_size_is_capped_and_never_echoed_in_full() {
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: SECRET.into(),
        session_token: None,
    };
    let now = parse_amz_date(T0).unwrap();
    for (size, refused) in [(40_000, false), (MAX_CANONICAL_REQUEST_BYTES, true)] {
        let big = "b".repeat(size);
        let mut headers = vec![("host", "localhost"), ("x-big", big.as_str())];
        let req =
            RequestParts { method: "POST", path: "/", query: "", headers: &headers, body: b"" };
        let added = sign(&req, &creds, "us-east-1", "ecs", now);
        let mut a = parse_authorization(&added.last().unwrap().1).unwrap();
        a.signature = "0".repeat(64);
        headers.push(("x-amz-date", T0));
        let err = verify(&headers, "/", &a);
        if refused {
            assert!(matches!(err, SigV4Error::CanonicalRequestTooLarge { .. }), "{size}");
        } else {
            let SigV4Error::SignatureMismatch { canonical_request, .. } = &err else {
                panic!("{}", err.aws_code())
            };
            assert!(canonical_request.len() > size);
        }
        let msg = err.to_string();
        assert!(msg.len() < SHORT, "{size}: a message of {} bytes", msg.len());
    }
    // A path far over the cap is refused without building the canonical request.
    let path = format!("/{}", "%41".repeat(MAX_CANONICAL_REQUEST_BYTES));
    let err = verify(
        &[("host", "localhost"), ("x-amz-date", T0)],
        &path,
        &auth(vec!["host".into(), "x-amz-date".into()]),
    );
    assert!(matches!(err, SigV4Error::CanonicalRequestTooLarge { .. }), "{}", err.aws_code());
}

#[test]
fn multi_byte_characters_at_every_offset_never_panic() {
    let base = header_value("host;x-amz-date");
    for c in ['é', '日', '𐐷', '\u{3000}', '\u{a0}', '=', ',', ';', '/', ' '] {
        for at in (0..=base.len()).filter(|&i| base.is_char_boundary(i)) {
            let mut v = base.clone();
            v.insert(at, c);
            if let Err(e) = parse_authorization(&v) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // Every prefix and suffix, cut at char boundaries, of a header holding multi-byte text.
    let odd = header_value("hé;日本;𐐷");
    for at in (0..=odd.len()).filter(|&i| odd.is_char_boundary(i)) {
        let _ = parse_authorization(&odd[..at]);
        let _ = parse_authorization(&odd[at..]);
    }
}

#[test]
fn huge_clock_skew_never_panics() {
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: SECRET.into(),
        session_token: None,
    };
    let signed_at = parse_amz_date(T0).unwrap();
    let mut headers = vec![("host", "localhost")];
    let req = RequestParts { method: "POST", path: "/", query: "", headers: &headers, body: b"" };
    let added = sign(&req, &creds, "us-east-1", "ecs", signed_at);
    let a = parse_authorization(&added.last().unwrap().1).unwrap();
    headers.push(("x-amz-date", T0));
    let req = RequestParts { method: "POST", path: "/", query: "", headers: &headers, body: b"" };
    for skew in [
        time::Duration::MAX,
        time::Duration::MIN,
        time::Duration::seconds(i64::MAX),
        time::Duration::seconds(i64::MIN),
        time::Duration::days(365 * 20_000),
    ] {
        let v = Verifier::new(skew);
        for now in [
            signed_at,
            signed_at + time::Duration::days(3650),
            signed_at - time::Duration::days(3650),
        ] {
            v.verify(&req, &a, SECRET, now).unwrap_or_else(|e| panic!("{skew}: {e}"));
        }
    }
}
