//! Behaviour tests of the public API: verification failures and their AWS
//! codes and messages, signing round trips, the key cache.

use berth_sigv4::{
    AuthorizationHeader, Credentials, EMPTY_PAYLOAD_SHA256, RequestParts, SigV4Error, Signer,
    Verifier, canonical_request, format_amz_date, parse_amz_date, parse_authorization, sha256_hex,
    sign, signature, signing_key, string_to_sign,
};
use time::{Duration, OffsetDateTime};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn t(s: &str) -> OffsetDateTime {
    parse_amz_date(s).expect("valid timestamp")
}

fn creds(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: SECRET.into(),
        session_token: token.map(Into::into),
    }
}

/// An ECS-like request, owned, so tests can modify it.
#[derive(Clone)]
struct Req {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn ecs(body: &str) -> Req {
        Req {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![
                ("Host".into(), "127.0.0.1:8080".into()),
                ("Content-Type".into(), "application/x-amz-json-1.1".into()),
                ("X-Amz-Target".into(), "AmazonEC2ContainerServiceV20141113.ListClusters".into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    fn with(
        &self,
        f: impl FnOnce(&RequestParts) -> Result<(), SigV4Error>,
    ) -> Result<(), SigV4Error> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        f(&RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            body: &self.body,
        })
    }

    /// Signs with `sign()` at `at`, adds the returned headers, returns the parsed Authorization.
    fn sign(&mut self, c: &Credentials, at: OffsetDateTime) -> AuthorizationHeader {
        let mut added = Vec::new();
        self.with(|p| {
            added = sign(p, c, "us-east-1", "ecs", at);
            Ok(())
        })
        .unwrap();
        let auth = added.iter().find(|(k, _)| k == "authorization").unwrap().1.clone();
        self.headers.extend(added);
        parse_authorization(&auth).unwrap()
    }

    fn verify(
        &self,
        v: &Verifier,
        auth: &AuthorizationHeader,
        now: OffsetDateTime,
    ) -> Result<(), SigV4Error> {
        self.with(|p| v.verify(p, auth, SECRET, now))
    }

    fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

const T0: &str = "20150830T123600Z";

fn signed() -> (Req, AuthorizationHeader) {
    let mut r = Req::ecs("{}");
    let auth = r.sign(&creds(None), t(T0));
    (r, auth)
}

// ---- clock skew -------------------------------------------------------------

#[test]
fn skew_within_five_minutes_is_accepted_both_directions() {
    let (r, auth) = signed();
    let v = Verifier::new(Duration::minutes(5));
    let at = t(T0);
    for d in [
        Duration::ZERO,
        Duration::seconds(4 * 60 + 59),
        -Duration::seconds(4 * 60 + 59),
        Duration::minutes(5),
        -Duration::minutes(5),
    ] {
        r.verify(&v, &auth, at + d).unwrap_or_else(|e| panic!("now = request {d:+}: {e}"));
    }
}

#[test]
fn request_older_than_skew_is_expired() {
    let (r, auth) = signed();
    let v = Verifier::default();
    let err = r.verify(&v, &auth, t(T0) + Duration::seconds(5 * 60 + 1)).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureExpired { .. }), "{err:?}");
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(
        err.to_string(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T124101Z - 5 min.)"
    );
    // AWS's own example.
    let err = r.verify(&v, &auth, t("20150830T124600Z")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z (20150830T124600Z - 5 min.)"
    );
}

#[test]
fn request_later_than_skew_is_not_yet_current() {
    let (r, auth) = signed();
    let v = Verifier::default();
    let err = r.verify(&v, &auth, t(T0) - Duration::seconds(5 * 60 + 1)).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureNotYetCurrent { .. }), "{err:?}");
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(
        err.to_string(),
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123559Z (20150830T123059Z + 5 min.)"
    );
}

#[test]
fn custom_skew_is_honoured_and_described() {
    let (r, auth) = signed();
    let v = Verifier::new(Duration::seconds(90));
    assert_eq!(v.max_skew(), Duration::seconds(90));
    r.verify(&v, &auth, t(T0) + Duration::seconds(90)).unwrap();
    let err = r.verify(&v, &auth, t(T0) + Duration::seconds(91)).unwrap_err();
    assert!(err.to_string().ends_with("(20150830T123731Z - 90 sec.)"), "{err}");
}

// ---- dates and scope ----------------------------------------------------------

#[test]
fn wrong_scope_date_is_rejected() {
    let (r, mut auth) = signed();
    auth.date = "20150831".into();
    let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert!(matches!(err, SigV4Error::ScopeDateMismatch { .. }), "{err:?}");
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(
        err.to_string(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
         '20150831' != '20150830', from '20150830T123600Z'."
    );
}

#[test]
fn missing_date_header_is_incomplete() {
    let (mut r, auth) = signed();
    r.remove("x-amz-date");
    let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert!(matches!(err, SigV4Error::MissingDate { .. }), "{err:?}");
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
    assert!(
        err.to_string().starts_with(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
             Authorization=AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, "
        ),
        "{err}"
    );
}

#[test]
fn malformed_date_header_is_incomplete() {
    for bad in [
        "2015-08-30T12:36:00Z",
        "20150830T123600",
        "20150830 123600Z",
        "20151330T123600Z",
        "20150830T256000Z",
        "",
    ] {
        let (mut r, auth) = signed();
        r.remove("x-amz-date");
        r.headers.push(("X-Amz-Date".into(), bad.into()));
        let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
        assert!(matches!(err, SigV4Error::InvalidDate { .. }), "{bad:?}: {err:?}");
        assert_eq!(err.aws_code(), "IncompleteSignatureException");
        assert_eq!(
            err.to_string(),
            format!(
                "Date must be in ISO-8601 'basic format'. Got '{bad}'. See http://en.wikipedia.org/wiki/ISO_8601"
            )
        );
    }
}

#[test]
fn http_date_header_is_accepted_when_there_is_no_x_amz_date() {
    // Signed by hand with the Date header: the string to sign carries the
    // ISO-8601 basic form of that date.
    let mut r = Req::ecs("{}");
    r.headers.push(("Date".into(), "Sun, 30 Aug 2015 12:36:00 GMT".into()));
    let signed_headers: Vec<String> =
        ["content-type", "date", "host", "x-amz-target"].map(String::from).into();
    let mut creq = String::new();
    r.with(|p| {
        creq = canonical_request(p, &signed_headers, &sha256_hex(p.body));
        Ok(())
    })
    .unwrap();
    let sts = string_to_sign(T0, "20150830/us-east-1/ecs/aws4_request", &creq);
    let auth = AuthorizationHeader {
        access_key_id: "AKIDEXAMPLE".into(),
        date: "20150830".into(),
        region: "us-east-1".into(),
        service: "ecs".into(),
        signed_headers,
        signature: signature(&signing_key(SECRET, "20150830", "us-east-1", "ecs"), &sts),
    };
    r.verify(&Verifier::default(), &auth, t(T0) + Duration::minutes(1)).unwrap();
    let err = r.verify(&Verifier::default(), &auth, t(T0) + Duration::minutes(6)).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureExpired { .. }), "{err:?}");
}

#[test]
fn expected_region_and_service_are_enforced() {
    let (r, auth) = signed();
    let v = Verifier::default().expect_region("us-east-1").expect_service("ecs");
    r.verify(&v, &auth, t(T0)).unwrap();

    let v = Verifier::default().expect_service("sqs");
    let err = r.verify(&v, &auth, t(T0)).unwrap_err();
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(err.to_string(), "Credential should be scoped to correct service: 'sqs'.");

    let v = Verifier::default().expect_region("eu-west-1");
    let err = r.verify(&v, &auth, t(T0)).unwrap_err();
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(err.to_string(), "Credential should be scoped to a valid region, not 'us-east-1'.");
}

// ---- signed headers -------------------------------------------------------------

#[test]
fn host_must_be_signed() {
    let (r, mut auth) = signed();
    auth.signed_headers.retain(|h| h != "host");
    let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert_eq!(err, SigV4Error::HostNotSigned);
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
    assert_eq!(err.to_string(), "'Host' must be a 'SignedHeader' in the AWS Authorization.");

    auth.signed_headers.clear();
    let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert_eq!(err, SigV4Error::HostNotSigned);
}

#[test]
fn signed_header_absent_from_request_is_rejected() {
    let (mut r, auth) = signed();
    r.remove("x-amz-target");
    let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert_eq!(err, SigV4Error::SignedHeaderMissing { header: "x-amz-target".into() });
    assert_eq!(err.aws_code(), "InvalidSignatureException");
}

#[test]
fn unsigned_extra_headers_are_ignored_and_signed_ones_are_bound() {
    let (mut r, auth) = signed();
    r.headers.push(("User-Agent".into(), "aws-cli/2.15.0".into()));
    r.headers.push(("Content-Length".into(), "2".into()));
    r.verify(&Verifier::default(), &auth, t(T0)).unwrap();

    // Changing a signed header's value breaks the signature.
    for (k, v) in r.headers.iter_mut() {
        if k == "X-Amz-Target" {
            *v = "AmazonEC2ContainerServiceV20141113.DeleteCluster".into();
        }
    }
    let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureMismatch { .. }), "{err:?}");
}

#[test]
fn signature_mismatch_message_has_aws_text_canonical_request_and_string_to_sign() {
    let (r, mut auth) = signed();
    auth.signature = "0".repeat(64);
    let err = r.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(err.http_status(), 400);
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "The request signature we calculated does not match the signature you provided. Check your AWS \
             Secret Access Key and signing method. Consult the service documentation for details."
        ),
        "{msg}"
    );
    let SigV4Error::SignatureMismatch { canonical_request, string_to_sign: sts } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        canonical_request,
        &format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:127.0.0.1:8080\nx-amz-date:{T0}\n\
             x-amz-target:AmazonEC2ContainerServiceV20141113.ListClusters\n\n\
             content-type;host;x-amz-date;x-amz-target\n{}",
            sha256_hex(b"{}")
        )
    );
    assert!(
        sts.starts_with(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/ecs/aws4_request\n"
        )
    );
    assert!(msg.contains(&format!(
        "The Canonical String for this request should have been\n'{canonical_request}'"
    )));
    assert!(msg.contains(&format!("The String-to-Sign should have been\n'{sts}'")));
}

#[test]
fn wrong_secret_is_a_signature_mismatch() {
    let (r, auth) = signed();
    let err =
        r.with(|p| Verifier::default().verify(p, &auth, "not-the-secret", t(T0))).unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureMismatch { .. }), "{err:?}");
}

#[test]
fn truncated_or_uppercase_signature_is_rejected() {
    let (r, auth) = signed();
    let v = Verifier::default();
    for sig in [&auth.signature[..63], "", &auth.signature.to_uppercase()] {
        let mut a = auth.clone();
        a.signature = sig.into();
        assert!(matches!(r.verify(&v, &a, t(T0)), Err(SigV4Error::SignatureMismatch { .. })));
    }
}

// ---- payload hash -----------------------------------------------------------------

#[test]
fn x_amz_content_sha256_is_checked_against_the_body() {
    let mut r = Req::ecs("{}");
    r.headers.push(("X-Amz-Content-Sha256".into(), sha256_hex(b"{}")));
    let auth = r.sign(&creds(None), t(T0));
    assert!(auth.signed_headers.contains(&"x-amz-content-sha256".to_string()));
    r.verify(&Verifier::default(), &auth, t(T0)).unwrap();

    let mut other = r.clone();
    other.body = b"{\"x\":1}".to_vec();
    let err = other.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert!(matches!(err, SigV4Error::ContentHashMismatch { .. }), "{err:?}");
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(
        err.to_string(),
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    );

    let mut unsigned = Req::ecs("{}");
    unsigned.headers.push(("X-Amz-Content-Sha256".into(), "UNSIGNED-PAYLOAD".into()));
    let auth = unsigned.sign(&creds(None), t(T0));
    let err = unsigned.verify(&Verifier::default(), &auth, t(T0)).unwrap_err();
    assert!(matches!(err, SigV4Error::ContentHashMismatch { .. }), "{err:?}");
}

#[test]
fn empty_body_hash_constant() {
    assert_eq!(sha256_hex(b""), EMPTY_PAYLOAD_SHA256);
}

// ---- Authorization header parsing ---------------------------------------------------

fn parse_err(value: &str) -> SigV4Error {
    parse_authorization(value).expect_err(value)
}

#[test]
fn authorization_missing_parts_are_incomplete() {
    let v = "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=abc";
    let err = parse_err(v);
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
    assert_eq!(
        err.to_string(),
        format!("Authorization header requires 'Credential' parameter. Authorization={v}")
    );

    let v = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request";
    assert_eq!(
        parse_err(v).to_string(),
        format!(
            "Authorization header requires 'Signature' parameter. Authorization header requires \
             'SignedHeaders' parameter. Authorization={v}"
        )
    );

    for v in ["", "AWS4-HMAC-SHA256", "Bearer eyJhbGciOi.x.y", "AWS AKIDEXAMPLE:c2lnbmF0dXJl"] {
        let err = parse_err(v);
        assert_eq!(err.aws_code(), "IncompleteSignatureException", "{v}");
        assert_eq!(
            err.to_string(),
            format!(
                "Authorization header requires 'Credential' parameter. Authorization header requires \
                 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. \
                 Authorization={v}"
            )
        );
    }
}

#[test]
fn authorization_component_without_equals_is_incomplete() {
    // An access key id with a trailing space, a classic copy-paste error.
    let v = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE /20150830/us-east-1/ecs/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc";
    let err = parse_err(v);
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
    assert_eq!(
        err.to_string(),
        format!(
            "'/20150830/us-east-1/ecs/aws4_request' not a valid key=value pair (missing equal-sign) in \
             Authorization header: '{v}'."
        )
    );
}

#[test]
fn authorization_bad_credential_scope_is_incomplete() {
    for cred in [
        "AKIDEXAMPLE/20150830/us-east-1/aws4_request",
        "AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request/extra",
        "AKIDEXAMPLE//us-east-1/ecs/aws4_request",
        "/20150830/us-east-1/ecs/aws4_request",
        "",
    ] {
        let v = format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host, Signature=abc");
        let err = parse_err(&v);
        assert_eq!(err, SigV4Error::MalformedCredential { credential: cred.into() }, "{v}");
        assert_eq!(err.aws_code(), "IncompleteSignatureException");
        assert_eq!(
            err.to_string(),
            format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. \
                 keyid/date/region/service/term, got '{cred}'"
            )
        );
    }
}

#[test]
fn authorization_wrong_terminator_is_invalid() {
    let err = parse_err(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws5_request, SignedHeaders=host, Signature=a",
    );
    assert_eq!(err.aws_code(), "InvalidSignatureException");
    assert_eq!(
        err.to_string(),
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."
    );
}

#[test]
fn authorization_other_algorithm_is_incomplete() {
    let v = "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20150830/ecs/aws4_request, SignedHeaders=host, Signature=a";
    let err = parse_err(v);
    assert!(
        matches!(err, SigV4Error::UnsupportedAlgorithm { ref algorithm, .. } if algorithm == "AWS4-ECDSA-P256-SHA256")
    );
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
}

#[test]
fn authorization_duplicate_parameter_is_incomplete() {
    let err = parse_err(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, SignedHeaders=host, \
         Signature=a, Signature=b",
    );
    assert!(matches!(err, SigV4Error::DuplicateAuthorizationParameter { name: "Signature", .. }));
    assert_eq!(err.aws_code(), "IncompleteSignatureException");
}

#[test]
fn authorization_parses_loose_spacing_and_round_trips() {
    let a = parse_authorization(
        "  AWS4-HMAC-SHA256   Signature=abc,SignedHeaders=host;x-amz-date,Credential=AKID/20150830/us-east-1/iam/aws4_request ",
    )
    .unwrap();
    assert_eq!(
        a,
        AuthorizationHeader {
            access_key_id: "AKID".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "iam".into(),
            signed_headers: vec!["host".into(), "x-amz-date".into()],
            signature: "abc".into(),
        }
    );
    assert_eq!(a.scope(), "20150830/us-east-1/iam/aws4_request");
    assert_eq!(
        a.to_string(),
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
    );
    assert_eq!(parse_authorization(&a.to_string()).unwrap(), a);
}

#[test]
fn error_codes_and_statuses() {
    assert_eq!(
        SigV4Error::MissingAuthenticationToken.aws_code(),
        "MissingAuthenticationTokenException"
    );
    assert_eq!(SigV4Error::MissingAuthenticationToken.to_string(), "Missing Authentication Token");
    assert_eq!(SigV4Error::MissingAuthenticationToken.http_status(), 403);
    assert_eq!(SigV4Error::UnrecognizedClient.aws_code(), "UnrecognizedClientException");
    assert_eq!(
        SigV4Error::UnrecognizedClient.message(),
        "The security token included in the request is invalid."
    );
    assert_eq!(SigV4Error::HostNotSigned.http_status(), 400);
}

// ---- signing --------------------------------------------------------------------------

#[test]
fn sign_then_verify_round_trip() {
    let now = OffsetDateTime::now_utc();
    let v = Verifier::default().expect_service("ecs").expect_region("us-east-1");
    for token in [None, Some("FQoGZXIvYXdzEJr//////////wEaDHVEXAMPLE+token")] {
        let mut r = Req::ecs(r#"{"cluster":"default","maxResults":10}"#);
        r.headers.push(("X-Custom".into(), "  a   b\tc  ".into()));
        r.headers.push(("x-custom".into(), "second".into()));
        let auth = r.sign(&creds(token), now);
        assert_eq!(
            auth.signed_headers.join(";"),
            match token {
                None => "content-type;host;x-amz-date;x-amz-target;x-custom",
                Some(_) =>
                    "content-type;host;x-amz-date;x-amz-security-token;x-amz-target;x-custom",
            }
        );
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        assert_eq!(auth.date, format_amz_date(now)[..8]);
        let tok =
            r.headers.iter().find(|(k, _)| k == "x-amz-security-token").map(|(_, v)| v.as_str());
        assert_eq!(tok, token);
        r.verify(&v, &auth, now).unwrap();
    }
}

#[test]
fn sign_with_path_and_query_round_trip() {
    let mut r = Req::ecs("");
    r.method = "GET".into();
    r.path = "/clusters/my%20cluster/./a%3Ab//c/../d".into();
    r.query = "b=2&a=%2F&a=1&empty=&flag&utf8=%E1%88%B4&raw=a b".into();
    let auth = r.sign(&creds(None), t(T0));
    r.verify(&Verifier::default(), &auth, t(T0)).unwrap();
    let mut creq = String::new();
    r.with(|p| {
        creq = canonical_request(p, &auth.signed_headers, EMPTY_PAYLOAD_SHA256);
        Ok(())
    })
    .unwrap();
    let mut lines = creq.lines();
    assert_eq!(lines.next(), Some("GET"));
    assert_eq!(lines.next(), Some("/clusters/my%2520cluster/a%253Ab/d"));
    assert_eq!(lines.next(), Some("a=%2F&a=1&b=2&empty=&flag=&raw=a%20b&utf8=%E1%88%B4"));
}

#[test]
fn sign_replaces_stale_date_and_authorization_headers() {
    let mut r = Req::ecs("{}");
    r.headers.push(("X-Amz-Date".into(), "20000101T000000Z".into()));
    r.headers.push(("Authorization".into(), "stale".into()));
    let mut added = Vec::new();
    r.with(|p| {
        added = sign(p, &creds(None), "us-east-1", "ecs", t(T0));
        Ok(())
    })
    .unwrap();
    let names: Vec<&str> = added.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["x-amz-date", "authorization"]);
    assert_eq!(added[0].1, T0);
    r.remove("x-amz-date");
    r.remove("authorization");
    r.headers.extend(added.iter().cloned());
    let auth = parse_authorization(&added[1].1).unwrap();
    r.verify(&Verifier::default(), &auth, t(T0)).unwrap();
}

#[test]
fn signer_matches_sign_and_rederives_on_date_change() {
    let r = Req::ecs("{}");
    let signer = Signer::new(creds(Some("tok")), "us-east-1", "ecs");
    let day1 = t(T0);
    let day2 = t("20150831T000001Z");
    assert_eq!(
        signer.signing_key_for("20150830"),
        signing_key(SECRET, "20150830", "us-east-1", "ecs")
    );
    for at in [day1, day1 + Duration::hours(1), day2, day1] {
        r.with(|p| {
            assert_eq!(signer.sign(p, at), sign(p, &creds(Some("tok")), "us-east-1", "ecs", at));
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(
        signer.signing_key_for("20150831"),
        signing_key(SECRET, "20150831", "us-east-1", "ecs")
    );
    let cloned = signer.clone();
    assert_eq!(cloned.region(), "us-east-1");
    assert_eq!(cloned.service(), "ecs");
    assert!(!format!("{:?}", cloned.credentials()).contains(SECRET));
}

// ---- key cache ----------------------------------------------------------------------

#[test]
fn key_cache_hit_returns_the_same_key() {
    let v = Verifier::default();
    let expected = signing_key(SECRET, "20150830", "us-east-1", "ecs");
    let k1 = v.cached_signing_key("AKIDEXAMPLE", SECRET, "20150830", "us-east-1", "ecs");
    let s1 = v.cache_stats();
    assert_eq!((s1.hits, s1.misses, s1.entries), (0, 1, 1));
    let k2 = v.cached_signing_key("AKIDEXAMPLE", SECRET, "20150830", "us-east-1", "ecs");
    let s2 = v.cache_stats();
    assert_eq!((s2.hits, s2.misses, s2.entries), (1, 1, 1));
    assert_eq!(k1, expected);
    assert_eq!(k2, k1);

    // A rotated secret for the same scope is a miss and replaces the entry.
    let k3 = v.cached_signing_key("AKIDEXAMPLE", "rotated", "20150830", "us-east-1", "ecs");
    assert_eq!(k3, signing_key("rotated", "20150830", "us-east-1", "ecs"));
    let s3 = v.cache_stats();
    assert_eq!((s3.hits, s3.misses, s3.entries), (1, 2, 1));

    // verify() goes through the same cache.
    let (r, auth) = signed();
    r.verify(&v, &auth, t(T0)).unwrap();
    r.verify(&v, &auth, t(T0)).unwrap();
    let s4 = v.cache_stats();
    assert_eq!((s4.hits, s4.misses), (2, 3));
}

#[test]
fn key_cache_is_bounded() {
    let v = Verifier::default();
    for i in 0..10_000 {
        v.cached_signing_key(&format!("AKID{i}"), SECRET, "20150830", "us-east-1", "ecs");
    }
    for d in 1..=9 {
        v.cached_signing_key("AKIDEXAMPLE", SECRET, &format!("2015083{d}"), "us-east-1", "ecs");
    }
    let s = v.cache_stats();
    assert!(s.entries <= 4096 + 4, "{s:?}");
    assert_eq!(s.misses, 10_009);
}

#[test]
fn verifier_is_shareable_across_threads() {
    let v = std::sync::Arc::new(Verifier::default());
    let (r, auth) = signed();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (v, r, auth) = (v.clone(), r.clone(), auth.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    r.verify(&v, &auth, t(T0)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(v.cache_stats().hits + v.cache_stats().misses, 200);
}

// ---- canonicalisation details -------------------------------------------------------

fn creq_of(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    signed: &[&str],
) -> String {
    let signed: Vec<String> = signed.iter().map(|s| s.to_string()).collect();
    canonical_request(
        &RequestParts { method, path, query, headers, body: b"" },
        &signed,
        EMPTY_PAYLOAD_SHA256,
    )
}

#[test]
fn query_is_sorted_after_encoding() {
    // From the newer (aws-c-auth) suite's get-vanilla-query-order-encoded case.
    let c = creq_of(
        "GET",
        "/",
        "Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
        &[("Host", "example.amazonaws.com")],
        &["host"],
    );
    assert_eq!(c.lines().nth(2), Some("%E1%88%B4=Value1&Param=Value2&Param-3=Value3"));
}

#[test]
fn query_escapes_are_normalised() {
    let c = creq_of("GET", "/", "a=%41%2f%7E+x&&b", &[("Host", "h")], &["host"]);
    assert_eq!(c.lines().nth(2), Some("a=A%2F~%2Bx&b="));
    let c = creq_of("GET", "/", "bad=%zz%4", &[("Host", "h")], &["host"]);
    assert_eq!(c.lines().nth(2), Some("bad=%25zz%254"));
}

#[test]
fn path_normalisation() {
    for (path, want) in [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/a/b/", "/a/b/"),
        ("/a//b", "/a/b"),
        ("/a/./b/../c/", "/a/c/"),
        ("/../..", "/"),
        ("/a/..", "/"),
        ("/a b/c%2Fd", "/a%20b/c%252Fd"),
        ("/~user/-_.", "/~user/-_."),
        ("/ሴ", "/%E1%88%B4"),
    ] {
        let c = creq_of("GET", path, "", &[("Host", "h")], &["host"]);
        assert_eq!(c.lines().nth(1), Some(want), "path {path:?}");
    }
}

#[test]
fn header_values_are_trimmed_collapsed_and_joined() {
    let c = creq_of(
        "GET",
        "/",
        "",
        &[
            ("HOST", " h "),
            ("My-Header", "  a   \"b   c\"  "),
            ("my-header", "\td\t"),
            ("Other", "ignored"),
        ],
        &["host", "my-header"],
    );
    assert_eq!(
        c,
        format!(
            "GET\n/\n\nhost:h\nmy-header:a \"b c\",d\n\nhost;my-header\n{EMPTY_PAYLOAD_SHA256}"
        )
    );
}

#[test]
fn format_and_parse_amz_date() {
    let at = t(T0);
    assert_eq!(format_amz_date(at), T0);
    let offset = at.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
    assert_eq!(format_amz_date(offset), T0);
    assert_eq!(
        parse_amz_date("20160229T000000Z").map(format_amz_date).as_deref(),
        Some("20160229T000000Z")
    );
    assert_eq!(parse_amz_date("20150229T000000Z"), None);
    assert_eq!(parse_amz_date("2015083OT123600Z"), None);
}
