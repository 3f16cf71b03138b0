//! `hello`: Berth's demo web app, the only program in the `berth-demo:latest` image
//! (`FROM scratch`, so it has no shell, no curl and no libc beside it: build it statically,
//! see `scripts/build-demo-image.sh`). std only, plus `signal-hook` to catch SIGTERM (std
//! cannot install a signal handler without `unsafe`, which the workspace forbids).
//!
//! Modes (Go-style flags; `--flag` works too):
//! * (default) serve HTTP on `-listen ADDR` (default `:8080`, or `:$PORT` when `PORT` is set):
//!   * `GET /` -> 200 `Hello, World!\n` (text/plain)
//!   * `GET /health` -> 200 `ok\n`, or 503 `unhealthy\n` once `-fail-health-after SECS` has
//!     passed since start, while the file `/tmp/unhealthy` exists, or after `POST
//!     /health/fail` (undone by `POST /health/ok`)
//!   * `GET /env` -> the environment, one `KEY=value` a line, sorted
//!   * `GET /fetch?url=URL[&timeout_ms=MS]` -> GETs `URL` (plain HTTP, within MS
//!     milliseconds, default 10 s) from inside the container and answers
//!     with its status and body (for tests that must reach an address only the container
//!     sees, such as the task metadata endpoint)
//!   * anything else -> 404
//! * `-check URL`: one HTTP/1.0 GET of URL; exit 0 on a 2xx status, else 1 (the image's
//!   health-check command).
//! * `-get URL`: the program's first action, one HTTP/1.0 GET of URL (`$NAME` and `${NAME}`
//!   expanded from the environment, as the image has no shell), printed to stdout as
//!   `get: STATUS MILLISms` and the body on the next line, or `get: error MESSAGE`; then the
//!   other modes run, or, with none, it exits 0 on a 2xx status, else 1 (for tests of what a
//!   container sees the moment it starts, such as the task metadata endpoint).
//! * `-exit CODE [-after SECS]`: exit with CODE after SECS (default 0).
//! * `-sleep SECS`: sleep, then exit 0.
//! * `-print-env`: print the environment to stdout, then sleep until stopped.
//! * `-alloc`: allocate and touch memory, 1 MiB at a time, until the OOM killer ends it.
//! * `-lines N`: print N numbered lines of about 100 bytes to stdout as fast as it can, then
//!   `lines: done N`, then sleep until stopped (for log ingestion benchmarks and tests).
//! * `-burn SECS`: keep one CPU busy for SECS (0: until stopped), then sleep until stopped
//!   (for CPU metrics and auto scaling tests).
//!
//! The non-serving modes serve HTTP too when `-listen` is given explicitly.
//! SIGTERM and SIGINT end the program at once with exit 0, unless `-ignore-sigterm` (then
//! only SIGKILL ends it; for stop-timeout tests).
#![forbid(unsafe_code)]

mod http;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    pub listen: Option<String>,
    pub check: Option<String>,
    pub get: Option<String>,
    pub exit: Option<i32>,
    pub after: Option<f64>,
    pub sleep: Option<f64>,
    pub print_env: bool,
    pub alloc: bool,
    pub lines: Option<u64>,
    pub burn: Option<f64>,
    pub fail_health_after: Option<f64>,
    pub ignore_sigterm: bool,
}

const USAGE: &str =
    "usage: hello [-get URL] [-listen ADDR] [-fail-health-after SECS] [-ignore-sigterm]
       hello -check URL
       hello -exit CODE [-after SECS]
       hello -sleep SECS | -print-env | -alloc | -lines N | -burn SECS";

/// The `/fetch` client's timeout: `timeout_ms` when it is a positive number, else 10 s.
fn fetch_timeout(ms: Option<String>) -> Duration {
    ms.and_then(|m| m.parse::<u64>().ok())
        .filter(|m| *m > 0)
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Parses the arguments after the program name.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let flag = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
        // `-flag=value` or `-flag value`.
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline.clone().or_else(|| it.next()).ok_or_else(|| format!("-{name} needs {what}"))
        };
        let secs = |v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("-{name}: {v:?} is not a number of seconds"))
        };
        match name {
            "listen" => o.listen = Some(value("an address")?),
            "check" => o.check = Some(value("a URL")?),
            "get" => o.get = Some(value("a URL")?),
            "exit" => {
                let v = value("a code")?;
                o.exit = Some(v.parse().map_err(|_| format!("-exit: {v:?} is not an integer"))?);
            }
            "after" => o.after = Some(secs(value("seconds")?)?),
            "sleep" => o.sleep = Some(secs(value("seconds")?)?),
            "fail-health-after" => o.fail_health_after = Some(secs(value("seconds")?)?),
            "print-env" => o.print_env = true,
            "alloc" => o.alloc = true,
            "lines" => {
                let v = value("a count")?;
                o.lines = Some(v.parse().map_err(|_| format!("-lines: {v:?} is not a count"))?);
            }
            "burn" => o.burn = Some(secs(value("seconds")?)?),
            "ignore-sigterm" => o.ignore_sigterm = true,
            "h" | "help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown flag -{name}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// `:8080` -> `0.0.0.0:8080`; anything else is resolved as given.
pub fn listen_addr(listen: &str) -> Result<SocketAddr, String> {
    let full =
        if listen.starts_with(':') { format!("0.0.0.0{listen}") } else { listen.to_string() };
    full.to_socket_addrs()
        .map_err(|e| format!("bad listen address {listen:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad listen address {listen:?}"))
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hello: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(url) = &opts.check {
        return match http::get(url, Duration::from_secs(10)) {
            Ok(resp) if (200..300).contains(&resp.status) => ExitCode::SUCCESS,
            Ok(resp) => {
                eprintln!("hello: {url}: status {}", resp.status);
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("hello: {url}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let got =
        opts.get.as_ref().map(|url| get_and_print(&expand_env(url, |k| std::env::var(k).ok())));
    if let Err(e) = handle_signals(opts.ignore_sigterm) {
        eprintln!("hello: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }

    let mode_given = opts.exit.is_some()
        || opts.sleep.is_some()
        || opts.print_env
        || opts.alloc
        || opts.lines.is_some()
        || opts.burn.is_some();
    if let Some(ok) = got
        && !mode_given
        && opts.listen.is_none()
    {
        return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let listen = match (&opts.listen, mode_given) {
        (Some(l), _) => Some(l.clone()),
        (None, false) => {
            Some(std::env::var("PORT").map(|p| format!(":{p}")).unwrap_or_else(|_| ":8080".into()))
        }
        (None, true) => None,
    };
    if let Some(listen) = listen {
        let addr = match listen_addr(&listen) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("hello: {e}");
                return ExitCode::from(2);
            }
        };
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hello: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
        // The line tests wait for; flushed at once.
        println!("hello: listening on {local}");
        let _ = std::io::stdout().flush();
        let state = Arc::new(Server {
            started: Instant::now(),
            fail_health_after: opts.fail_health_after.map(Duration::from_secs_f64),
            forced_unhealthy: AtomicBool::new(false),
        });
        if !mode_given {
            serve(listener, state);
            return ExitCode::SUCCESS;
        }
        std::thread::spawn(move || serve(listener, state));
    }

    if let Some(code) = opts.exit {
        std::thread::sleep(Duration::from_secs_f64(opts.after.unwrap_or(0.0)));
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    if let Some(secs) = opts.sleep {
        std::thread::sleep(Duration::from_secs_f64(secs));
        return ExitCode::SUCCESS;
    }
    if opts.print_env {
        for (k, v) in sorted_env() {
            println!("{k}={v}");
        }
        let _ = std::io::stdout().flush();
        loop {
            std::thread::park();
        }
    }
    if opts.alloc {
        alloc_forever();
    }
    if let Some(n) = opts.lines {
        print_lines(n);
        park_forever();
    }
    if let Some(secs) = opts.burn {
        burn(secs);
        park_forever();
    }
    ExitCode::SUCCESS
}

/// `-lines N`: N numbered lines of about 100 bytes, written through one buffered, locked
/// stdout, then the `lines: done N` marker, flushed.
fn print_lines(n: u64) {
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out.lock());
    for i in 1..=n {
        // A broken pipe ends the run quietly.
        if writeln!(out, "line {i:010} the quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstu").is_err() {
            return;
        }
    }
    let _ = writeln!(out, "lines: done {n}");
    let _ = out.flush();
}

/// `-burn SECS`: a busy loop on one CPU for SECS (0: for ever).
fn burn(secs: f64) {
    let until = (secs > 0.0).then(|| Instant::now() + Duration::from_secs_f64(secs));
    let mut x: u64 = 1;
    loop {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return;
        }
    }
}

fn park_forever() -> ! {
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

/// `-get`: one GET of `url`, printed (flushed at once); whether it answered 2xx.
fn get_and_print(url: &str) -> bool {
    let t0 = Instant::now();
    let ok = match http::get(url, Duration::from_secs(10)) {
        Ok(resp) => {
            println!("get: {} {}ms", resp.status, t0.elapsed().as_millis());
            println!("{}", String::from_utf8_lossy(&resp.body));
            (200..300).contains(&resp.status)
        }
        Err(e) => {
            println!("get: error {e} (after {}ms)", t0.elapsed().as_millis());
            false
        }
    };
    let _ = std::io::stdout().flush();
    ok
}

/// `$NAME` and `${NAME}` in `s`, replaced by `var(NAME)` (empty when unset).
pub fn expand_env(s: &str, var: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.split_once('}') {
                Some((n, t)) => (n, t),
                None => ("", after),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&var(name).unwrap_or_default());
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// SIGTERM/SIGINT: exit 0 at once, or be ignored.
fn handle_signals(ignore: bool) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if ignore {
                eprintln!("hello: ignoring signal {sig}");
                continue;
            }
            eprintln!("hello: signal {sig}, exiting");
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
    });
    Ok(())
}

fn alloc_forever() -> ! {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really resident.
        let chunk = vec![0xa5u8; 1 << 20];
        held.push(std::hint::black_box(chunk));
        if held.len().is_multiple_of(64) {
            eprintln!("hello: holding {} MiB", held.len());
        }
    }
}

fn sorted_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect()
}

struct Server {
    started: Instant,
    fail_health_after: Option<Duration>,
    forced_unhealthy: AtomicBool,
}

impl Server {
    fn healthy(&self) -> bool {
        if self.forced_unhealthy.load(Ordering::Relaxed) {
            return false;
        }
        if self.fail_health_after.is_some_and(|after| self.started.elapsed() >= after) {
            return false;
        }
        !Path::new("/tmp/unhealthy").exists()
    }

    fn respond(&self, req: &http::Request) -> http::Response {
        let text = |status: u16, body: &str| http::Response::text(status, body);
        match (req.method.as_str(), req.path.as_str()) {
            ("GET" | "HEAD", "/") => text(200, "Hello, World!\n"),
            ("GET" | "HEAD", "/health") => {
                if self.healthy() {
                    text(200, "ok\n")
                } else {
                    text(503, "unhealthy\n")
                }
            }
            ("POST", "/health/fail") => {
                self.forced_unhealthy.store(true, Ordering::Relaxed);
                text(200, "health now fails\n")
            }
            ("POST", "/health/ok") => {
                self.forced_unhealthy.store(false, Ordering::Relaxed);
                text(200, "health now passes\n")
            }
            ("GET", "/env") => {
                let body: String = sorted_env().iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                text(200, &body)
            }
            ("GET", "/fetch") => match req.query_param("url") {
                None => text(400, "missing url parameter\n"),
                Some(url) => match http::get(&url, fetch_timeout(req.query_param("timeout_ms"))) {
                    Ok(resp) => {
                        let mut body = format!("{}\n", resp.status).into_bytes();
                        body.extend_from_slice(&resp.body);
                        http::Response { status: 200, content_type: "text/plain", body }
                    }
                    Err(e) => text(502, &format!("{e}\n")),
                },
            },
            (_, "/" | "/health" | "/health/fail" | "/health/ok" | "/env" | "/fetch") => {
                text(405, "method not allowed\n")
            }
            _ => text(404, "not found\n"),
        }
    }
}

fn serve(listener: TcpListener, state: Arc<Server>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let state = Arc::clone(&state);
                std::thread::spawn(move || handle(stream, &state));
            }
            Err(e) => {
                eprintln!("hello: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Serves requests on one connection (keep-alive) until the client closes it, asks to
/// close, or is idle for 30 s.
fn handle(stream: TcpStream, state: &Server) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = std::io::BufReader::new(stream);
    loop {
        let req = match http::read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ =
                    http::Response::text(400, &format!("{e}\n")).write(&mut writer, false, false);
                return;
            }
        };
        let resp = state.respond(&req);
        let head_only = req.method == "HEAD";
        if resp.write(&mut writer, req.keep_alive, head_only).is_err() || !req.keep_alive {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_parse_go_style() {
        let o = parse_args(args("-listen :9000 -fail-health-after 2.5 --ignore-sigterm")).unwrap();
        assert_eq!(o.listen.as_deref(), Some(":9000"));
        assert_eq!(o.fail_health_after, Some(2.5));
        assert!(o.ignore_sigterm);
        let o = parse_args(args("-exit=3 -after 1")).unwrap();
        assert_eq!((o.exit, o.after), (Some(3), Some(1.0)));
        assert!(parse_args(args("-exit x")).is_err());
        assert!(parse_args(args("-sleep")).is_err());
        assert!(parse_args(args("-sleep -1")).is_err());
        assert!(parse_args(args("-bogus")).is_err());
        assert!(parse_args(args("stray")).is_err());
        assert_eq!(parse_args(Vec::new()).unwrap(), Options::default());
        let o = parse_args(args("-lines 1000")).unwrap();
        assert_eq!(o.lines, Some(1000));
        assert!(parse_args(args("-lines -3")).is_err());
        assert_eq!(parse_args(args("-burn 0")).unwrap().burn, Some(0.0));
        assert!(parse_args(args("-burn x")).is_err());
    }

    #[test]
    fn get_urls_expand_the_environment() {
        let var = |k: &str| (k == "URI").then(|| "http://h:1/v4/t".to_string());
        assert_eq!(expand_env("${URI}/task", var), "http://h:1/v4/t/task");
        assert_eq!(expand_env("$URI/task", var), "http://h:1/v4/t/task");
        assert_eq!(expand_env("a$NOPE-b", var), "a-b");
        assert_eq!(expand_env("cost $ 5 ${", var), "cost $ 5 ${");
        let o = parse_args(args("-get $URI -listen :1")).unwrap();
        assert_eq!(o.get.as_deref(), Some("$URI"));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_addr(":8080").unwrap(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(listen_addr("127.0.0.1:0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert!(listen_addr("nonsense").is_err());
    }

    #[test]
    fn routes() {
        let s = Server {
            started: Instant::now(),
            fail_health_after: None,
            forced_unhealthy: AtomicBool::new(false),
        };
        let req = |m: &str, p: &str| http::Request {
            method: m.into(),
            path: p.into(),
            query: String::new(),
            keep_alive: false,
        };
        let r = s.respond(&req("GET", "/"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, World!\n"[..]));
        assert_eq!(s.respond(&req("GET", "/health")).status, 200);
        assert_eq!(s.respond(&req("POST", "/health/fail")).status, 200);
        assert_eq!(s.respond(&req("GET", "/health")).status, 503);
        assert_eq!(s.respond(&req("POST", "/health/ok")).status, 200);
        assert_eq!(s.respond(&req("GET", "/health")).status, 200);
        assert_eq!(s.respond(&req("GET", "/nope")).status, 404);
        assert_eq!(s.respond(&req("DELETE", "/")).status, 405);
        assert_eq!(s.respond(&req("GET", "/fetch")).status, 400);
        assert_eq!(fetch_timeout(Some("250".into())), Duration::from_millis(250));
        assert_eq!(fetch_timeout(Some("x".into())), Duration::from_secs(10));
        assert_eq!(fetch_timeout(None), Duration::from_secs(10));
        let late = Server { fail_health_after: Some(Duration::ZERO), ..s };
        assert_eq!(late.respond(&req("GET", "/health")).status, 503);
    }
}
