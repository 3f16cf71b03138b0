//! A minimal HTTP/1.x server side (request heads, fixed-length responses, keep-alive) and a
//! minimal HTTP/1.0 client (`GET http://...`, read to end of stream), enough for the demo
//! app and its health check. No TLS, no chunked request bodies (answered 400).
//!
//! Contract: request heads are capped at 64 KiB and request bodies (read and dropped) at
//! 1 MiB; client responses are capped at 16 MiB; every socket operation has a time-out.
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const MAX_HEAD: usize = 64 << 10;
const MAX_REQUEST_BODY: u64 = 1 << 20;
const MAX_RESPONSE: u64 = 16 << 20;

/// One parsed request head.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query, without `?`.
    pub query: String,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// The percent-decoded value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

/// `a%2Fb+c` -> `a/b c`; malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request head (and drops its body). `Ok(None)`: the client closed the
/// connection (or went idle) before sending anything.
pub fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = match r
            .by_ref()
            .take((MAX_HEAD - head.len()) as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(e)
                if head.is_empty()
                    && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(bad("connection closed inside the request head"));
        }
        if head.len() + line.len() > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        let blank = line == b"\r\n" || line == b"\n";
        if blank && head.is_empty() {
            continue; // tolerate stray CRLF between requests
        }
        head.extend_from_slice(&line);
        if blank {
            break;
        }
    }
    let head = String::from_utf8(head).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = head.lines();
    let request_line = lines.next().ok_or_else(|| bad("empty request"))?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(bad("unsupported HTTP version")),
    };
    let mut keep_alive = http11;
    let mut content_length: u64 = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            "content-length" => {
                content_length = value.parse().map_err(|_| bad("bad content-length"))?;
            }
            "transfer-encoding" => return Err(bad("chunked request bodies are not supported")),
            _ => {}
        }
    }
    if content_length > MAX_REQUEST_BODY {
        return Err(bad("request body too large"));
    }
    io::copy(&mut r.by_ref().take(content_length), &mut io::sink())?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        keep_alive,
    }))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A response with a fixed-length body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }

    /// Writes the response as HTTP/1.1 (the head only for HEAD requests).
    pub fn write<W: Write>(&self, w: &mut W, keep_alive: bool, head_only: bool) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        w.write_all(&out)?;
        w.flush()
    }
}

/// What [`get`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Splits `http://host[:port][/path]` into (`host:port` to connect to, `Host` header value,
/// path with query).
pub fn parse_url(url: &str) -> io::Result<(String, String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "only http:// URLs are supported")
    })?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "URL has no host"));
    }
    // A port is present when the last ':' comes after any IPv6 bracket.
    let has_port = match (authority.rfind(':'), authority.rfind(']')) {
        (Some(c), Some(b)) => c > b,
        (Some(_), None) => true,
        _ => false,
    };
    let connect = if has_port { authority.to_string() } else { format!("{authority}:80") };
    Ok((connect, authority.to_string(), path))
}

/// One `GET` over HTTP/1.0; reads the whole response. Each connect, read and write is
/// bounded by `timeout`.
pub fn get(url: &str, timeout: Duration) -> io::Result<ClientResponse> {
    let (connect, host, path) = parse_url(url)?;
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, format!("{connect}: no address"));
    let mut stream = None;
    for addr in connect.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = e,
        }
    }
    let mut stream = stream.ok_or(last_err)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: berth-hello\r\nAccept: */*\r\n\r\n"
    )?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)))
        .ok_or_else(|| bad("response has no complete head"))?;
    let head = String::from_utf8_lossy(&raw[..split.0]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => {
            code.parse::<u16>().map_err(|_| bad("bad status code"))?
        }
        _ => return Err(bad("malformed status line")),
    };
    Ok(ClientResponse { status, body: raw[split.1..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_requests_with_keep_alive_rules() {
        let raw = "GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcGET / HTTP/1.0\r\n\r\n";
        let mut r = Cursor::new(raw.as_bytes());
        let a = read_request(&mut r).unwrap().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path.as_str(), a.query.as_str(), a.keep_alive),
            ("GET", "/a", "x=1", true)
        );
        let b = read_request(&mut r).unwrap().unwrap();
        assert_eq!((b.method.as_str(), b.path.as_str(), b.keep_alive), ("POST", "/b", false));
        let c = read_request(&mut r).unwrap().unwrap();
        assert!(!c.keep_alive);
        assert!(read_request(&mut r).unwrap().is_none());
        assert!(read_request(&mut Cursor::new(&b"GARBAGE\r\n\r\n"[..])).is_err());
        assert!(read_request(&mut Cursor::new(&b"GET / HTTP/1.1\r\nHost"[..])).is_err());
    }

    #[test]
    fn query_params_are_decoded() {
        let req = Request {
            method: "GET".into(),
            path: "/fetch".into(),
            query: "a=1&url=http%3A%2F%2F169.254.170.2%2Fv4%2Fx+y&bad=%zz%".into(),
            keep_alive: false,
        };
        assert_eq!(req.query_param("url").as_deref(), Some("http://169.254.170.2/v4/x y"));
        assert_eq!(req.query_param("bad").as_deref(), Some("%zz%"));
        assert_eq!(req.query_param("none"), None);
    }

    #[test]
    fn urls_split() {
        let p = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            p("http://127.0.0.1:8080/health"),
            ("127.0.0.1:8080".into(), "127.0.0.1:8080".into(), "/health".into())
        );
        assert_eq!(p("http://example"), ("example:80".into(), "example".into(), "/".into()));
        assert_eq!(p("http://[::1]/x?y"), ("[::1]:80".into(), "[::1]".into(), "/x?y".into()));
        assert_eq!(p("http://h:1?q=1"), ("h:1".into(), "h:1".into(), "/?q=1".into()));
        assert!(parse_url("https://h/").is_err());
        assert!(parse_url("http:///x").is_err());
    }

    #[test]
    fn responses_are_well_formed() {
        let mut out = Vec::new();
        Response::text(200, "hi\n").write(&mut out, true, false).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.contains("Connection: keep-alive\r\n"));
        assert!(s.ends_with("\r\n\r\nhi\n"));
    }
}
