//! Rule matching as ALB documents it, pure: a request's facts ([`RequestFacts`]) against a
//! listener's rules, and the redirect action's URL.
//!
//! Semantics (ALB's "Listener rules" documentation):
//! * Rules are evaluated by ascending priority; the first whose conditions all match wins, else
//!   the listener's default actions apply.
//! * Within a condition the values are ORed; the conditions of a rule are ANDed.
//! * `path-pattern`: case-sensitive, against the path only (no query string).
//! * `host-header`: case-insensitive, the port stripped from the Host header.
//! * `http-header`: the header name case-insensitive, values case-insensitive; any of the
//!   request's headers of that name may match.
//! * `query-string`: case-insensitive on key and value, after percent-decoding; a pair without
//!   a key matches any parameter's value.
//! * `source-ip`: the connection's peer address (not X-Forwarded-For) within a CIDR.
//! * Wildcards everywhere a value is a pattern: `*` matches zero or more characters, `?`
//!   exactly one.

use std::net::IpAddr;

use crate::config::{Condition, Redirect};

/// What rules look at, borrowed from one request.
pub struct RequestFacts<'a> {
    pub path: &'a str,
    /// The raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    /// The Host header (or HTTP/2 `:authority`), port included as sent.
    pub host: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub source_ip: IpAddr,
}

/// `*`/`?` wildcard match. `fold` compares ASCII case-insensitively.
pub fn wildcard_match(pattern: &str, text: &str, fold: bool) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let eq = |a: u8, b: u8| if fold { a.eq_ignore_ascii_case(&b) } else { a == b };
    // Greedy with backtracking to the last star: linear in practice, no allocation.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map(|(h, _)| &host[..h.len() + 1]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode(&plus)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Whether one condition matches the request.
pub fn condition_matches(c: &Condition, r: &RequestFacts<'_>) -> bool {
    match c {
        Condition::PathPattern { values } => {
            values.iter().any(|v| wildcard_match(v, r.path, false))
        }
        Condition::HostHeader { values } => {
            let Some(host) = r.host else { return false };
            let host = strip_port(host);
            values.iter().any(|v| wildcard_match(v, host, true))
        }
        Condition::HttpHeader { header_name, values } => r
            .headers
            .get_all(header_name.as_str())
            .iter()
            .filter_map(|h| h.to_str().ok())
            .any(|h| values.iter().any(|v| wildcard_match(v, h, true))),
        Condition::QueryString { values } => {
            let Some(q) = r.query else { return false };
            let params: Vec<(String, String)> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect();
            values.iter().any(|pair| {
                params.iter().any(|(k, v)| {
                    pair.key.as_deref().is_none_or(|pk| wildcard_match(pk, k, true))
                        && wildcard_match(&pair.value, v, true)
                })
            })
        }
        Condition::SourceIp { values } => {
            let ip = match r.source_ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(r.source_ip),
                v4 => v4,
            };
            values.iter().any(|net| net.contains(&ip))
        }
    }
}

/// Whether all of a rule's conditions match.
pub fn rule_matches(conditions: &[Condition], r: &RequestFacts<'_>) -> bool {
    conditions.iter().all(|c| condition_matches(c, r))
}

/// The request as a redirect sees it.
pub struct RedirectSource<'a> {
    /// `http` or `https` (lowercase, as the listener speaks).
    pub protocol: &'a str,
    /// Host without port.
    pub host: &'a str,
    pub port: u16,
    /// The path without its leading `/`, as ELB's `#{path}` is.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

fn expand(template: &str, s: &RedirectSource<'_>) -> String {
    template
        .replace("#{protocol}", s.protocol)
        .replace("#{host}", s.host)
        .replace("#{port}", &s.port.to_string())
        .replace("#{path}", s.path)
        .replace("#{query}", s.query.unwrap_or(""))
}

/// The Location of a redirect action: each component defaults to the request's own and may use
/// the `#{protocol}`, `#{host}`, `#{port}`, `#{path}` and `#{query}` placeholders. The port is
/// left out when it is the protocol's default, as ALB does.
pub fn redirect_location(r: &Redirect, s: &RedirectSource<'_>) -> String {
    let protocol = expand(r.protocol.as_deref().unwrap_or("#{protocol}"), s).to_ascii_lowercase();
    let host = expand(r.host.as_deref().unwrap_or("#{host}"), s);
    let port = expand(r.port.as_deref().unwrap_or("#{port}"), s);
    let path = expand(r.path.as_deref().unwrap_or("/#{path}"), s);
    let query = expand(r.query.as_deref().unwrap_or("#{query}"), s);
    let default_port =
        matches!((protocol.as_str(), port.as_str()), ("http", "80") | ("https", "443"));
    let mut out = format!("{protocol}://{host}");
    if !default_port && !port.is_empty() {
        out.push(':');
        out.push_str(&port);
    }
    if !path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&path);
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{QueryPair, RedirectCode};

    fn facts<'a>(
        path: &'a str,
        query: Option<&'a str>,
        host: Option<&'a str>,
        headers: &'a http::HeaderMap,
    ) -> RequestFacts<'a> {
        RequestFacts { path, query, host, headers, source_ip: "192.168.1.20".parse().unwrap() }
    }

    #[test]
    fn wildcards_as_elb_matches_them() {
        let table = [
            ("/api/*", "/api/users", false, true),
            ("/api/*", "/api/", false, true),
            ("/api/*", "/api", false, false),
            ("/img/*.png", "/img/a/b.png", false, true),
            ("/img/*.png", "/img/a/b.PNG", false, false),
            ("/img/*.png", "/img/a/b.PNG", true, true),
            ("/v?/x", "/v1/x", false, true),
            ("/v?/x", "/v12/x", false, false),
            ("*", "", false, true),
            ("?", "", false, false),
            ("/a*b*c", "/aXbYbZc", false, true),
            ("/a*b*c", "/aXbYbZ", false, false),
            ("*.example.com", "www.EXAMPLE.com", true, true),
            ("*.example.com", "example.com", true, false),
            ("/exact", "/exact", false, true),
            ("/exact", "/exact/", false, false),
        ];
        for (p, t, fold, want) in table {
            assert_eq!(wildcard_match(p, t, fold), want, "{p} vs {t} fold={fold}");
        }
    }

    #[test]
    fn conditions_or_values_and_conditions() {
        let mut h = http::HeaderMap::new();
        h.insert("x-env", "Blue".parse().unwrap());
        h.append("user-agent", "curl/8".parse().unwrap());
        let r =
            facts("/api/v1", Some("version=2&Debug=On&q=a%20b"), Some("API.example.com:8080"), &h);
        let path = Condition::PathPattern { values: vec!["/web/*".into(), "/api/*".into()] };
        let host = Condition::HostHeader { values: vec!["api.example.com".into()] };
        let hdr = Condition::HttpHeader {
            header_name: "X-Env".into(),
            values: vec!["blue".into(), "green".into()],
        };
        let hdr_no =
            Condition::HttpHeader { header_name: "X-Other".into(), values: vec!["*".into()] };
        let q_key = Condition::QueryString {
            values: vec![QueryPair { key: Some("debug".into()), value: "on".into() }],
        };
        let q_any =
            Condition::QueryString { values: vec![QueryPair { key: None, value: "a b".into() }] };
        let q_no = Condition::QueryString {
            values: vec![QueryPair { key: Some("version".into()), value: "1".into() }],
        };
        let src = Condition::SourceIp {
            values: vec!["10.0.0.0/8".parse().unwrap(), "192.168.0.0/16".parse().unwrap()],
        };
        let src_no = Condition::SourceIp { values: vec!["10.0.0.0/8".parse().unwrap()] };
        for (c, want) in [
            (&path, true),
            (&host, true),
            (&hdr, true),
            (&hdr_no, false),
            (&q_key, true),
            (&q_any, true),
            (&q_no, false),
            (&src, true),
            (&src_no, false),
        ] {
            assert_eq!(condition_matches(c, &r), want, "{c:?}");
        }
        assert!(rule_matches(&[path.clone(), host.clone(), hdr.clone(), src.clone()], &r));
        assert!(!rule_matches(&[path, host, src_no], &r));
        assert!(rule_matches(&[], &r), "a rule without conditions matches everything");
        let none = facts("/", None, None, &h);
        assert!(!condition_matches(&Condition::HostHeader { values: vec!["*".into()] }, &none));
        assert!(!condition_matches(&q_any, &none));
    }

    #[test]
    fn source_ip_accepts_v4_mapped_peers() {
        let h = http::HeaderMap::new();
        let mut r = facts("/", None, None, &h);
        r.source_ip = "::ffff:10.1.2.3".parse().unwrap();
        assert!(condition_matches(
            &Condition::SourceIp { values: vec!["10.0.0.0/8".parse().unwrap()] },
            &r
        ));
    }

    #[test]
    fn redirect_placeholders_and_defaults() {
        let s = RedirectSource {
            protocol: "http",
            host: "example.com",
            port: 8080,
            path: "a/b",
            query: Some("x=1"),
        };
        let r = |protocol: Option<&str>,
                 host: Option<&str>,
                 port: Option<&str>,
                 path: Option<&str>,
                 query: Option<&str>| Redirect {
            protocol: protocol.map(Into::into),
            host: host.map(Into::into),
            port: port.map(Into::into),
            path: path.map(Into::into),
            query: query.map(Into::into),
            status_code: RedirectCode::Http301,
        };
        let table = [
            (r(None, None, None, None, None), "http://example.com:8080/a/b?x=1"),
            (r(Some("HTTPS"), None, Some("443"), None, None), "https://example.com/a/b?x=1"),
            (
                r(
                    None,
                    Some("new.#{host}"),
                    Some("80"),
                    Some("/v2/#{path}"),
                    Some("#{query}&moved=1"),
                ),
                "http://new.example.com/v2/a/b?x=1&moved=1",
            ),
            (r(None, None, None, Some("/"), Some("")), "http://example.com:8080/"),
            (
                r(
                    Some("#{protocol}"),
                    Some("#{host}"),
                    Some("#{port}"),
                    Some("/#{path}"),
                    Some("#{query}"),
                ),
                "http://example.com:8080/a/b?x=1",
            ),
        ];
        for (red, want) in table {
            assert_eq!(redirect_location(&red, &s), want);
        }
    }
}
