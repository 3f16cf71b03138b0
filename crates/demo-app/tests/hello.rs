//! Runs the real `hello` binary on loopback: HTTP routes, the `-check` client, exit codes and
//! signal handling. Every child is killed when its guard drops.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// A running `hello`, killed on drop.
struct Hello {
    child: Child,
    addr: String,
}

impl Drop for Hello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(extra: &[&str]) -> Hello {
    let mut child = Command::new(HELLO)
        .args(["-listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hello");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    let addr =
        line.trim().strip_prefix("hello: listening on ").expect("listening line").to_string();
    Hello { child, addr }
}

/// One request over a fresh connection; returns (status, body).
fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn run(args: &[&str]) -> ExitStatus {
    Command::new(HELLO).args(args).stderr(Stdio::null()).status().expect("run hello")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn serves_hello_health_and_404() {
    let h = spawn_server(&[]);
    assert_eq!(request(&h.addr, "GET", "/"), (200, "Hello, World!\n".into()));
    assert_eq!(request(&h.addr, "GET", "/health"), (200, "ok\n".into()));
    assert_eq!(request(&h.addr, "GET", "/missing").0, 404);

    // Keep-alive: two requests on one connection.
    let mut s = TcpStream::connect(&h.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");

    // The health-check client.
    let url = |p: &str| format!("http://{}{p}", h.addr);
    assert!(run(&["-check", &url("/health")]).success());
    assert_eq!(run(&["-check", &url("/missing")]).code(), Some(1));
    assert_eq!(request(&h.addr, "POST", "/health/fail").0, 200);
    assert_eq!(request(&h.addr, "GET", "/health").0, 503);
    assert_eq!(run(&["-check", &url("/health")]).code(), Some(1));
    assert_eq!(request(&h.addr, "POST", "/health/ok").0, 200);
    assert!(run(&["-check", &url("/health")]).success());

    // /fetch goes through the app's own client.
    let (status, body) = request(&h.addr, "GET", &format!("/fetch?url=http%3A%2F%2F{}%2F", h.addr));
    assert_eq!((status, body.as_str()), (200, "200\nHello, World!\n"));
}

#[test]
fn health_fails_after_the_given_time() {
    let h = spawn_server(&["-fail-health-after", "0.5"]);
    assert_eq!(request(&h.addr, "GET", "/health").0, 200);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(request(&h.addr, "GET", "/health").0, 503);
    assert_eq!(request(&h.addr, "GET", "/").0, 200);
}

#[test]
fn check_of_a_closed_port_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = Instant::now();
    assert_eq!(run(&["-check", &format!("http://127.0.0.1:{port}/health")]).code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(run(&["-bogus"]).code(), Some(2));
}

#[test]
fn exit_codes_and_sleep() {
    assert_eq!(run(&["-exit", "7", "-after", "0.2"]).code(), Some(7));
    assert_eq!(run(&["-exit", "0"]).code(), Some(0));
    assert!(run(&["-sleep", "0.1"]).success());
}

#[test]
fn sigterm_exits_zero_and_print_env_prints() {
    let mut child = Command::new(HELLO)
        .arg("-print-env")
        .env("BERTH_DEMO_TEST", "yes")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = false;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if line.trim() == "BERTH_DEMO_TEST=yes" {
            seen = true;
            break;
        }
        line.clear();
    }
    assert!(seen, "env line printed");
    signal(&child, "-TERM");
    let status = wait_timeout(&mut child, Duration::from_secs(5)).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ignore_sigterm_needs_sigkill() {
    let mut h = spawn_server(&["-ignore-sigterm"]);
    signal(&h.child, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(h.child.try_wait().unwrap().is_none(), "still running after SIGTERM");
    assert_eq!(request(&h.addr, "GET", "/").0, 200);
    signal(&h.child, "-KILL");
    let status = wait_timeout(&mut h.child, Duration::from_secs(5)).expect("killed");
    assert_eq!(status.code(), None);
}
