//! A single-member etcd process on ephemeral loopback ports, for tests and benchmarks of the
//! etcd backend (and, later, end-to-end tests of several servers).
//!
//! Contract: [`EtcdProcess::start`] returns once the member answers `/health`; the process is
//! killed (SIGKILL) and reaped when the value is dropped; its data directory is the caller's
//! (a temp dir). [`EtcdProcess::kill9`] + [`EtcdProcess::restart`] keep the data and the ports,
//! as a crashed member coming back would. [`EtcdCluster`] starts several members forming one
//! cluster (each on its own ports and data directory) for tests of several servers.
//! [`EtcdProcess::start_tls`] serves the client port over TLS with client-certificate
//! authentication ([`MemberTls`]); its health is then read on a plain metrics port. Nothing
//! here is used by the server itself.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member gets to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd member (see the module header).
#[derive(Debug)]
pub struct EtcdProcess {
    child: Option<Child>,
    binary: PathBuf,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    extra: Vec<String>,
    /// The member's name and the cluster's `--initial-cluster`, for members of a cluster.
    member: Option<(String, String)>,
    /// TLS on the client port, and the plain port `/health` is then read on.
    tls: Option<(MemberTls, u16)>,
}

/// TLS of a member's client port: its certificate and key, and the CA whose client
/// certificates it requires (`--client-cert-auth`). PEM files.
#[derive(Clone, Debug)]
pub struct MemberTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The `etcd` binary: `$ETCD_BIN`, else `etcd` on `PATH`.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ETCD_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("etcd")).find(|p| p.is_file())
}

/// The etcd binary for a test, or `None` (after saying so on stderr) when it is absent and the
/// `CI` environment variable is not set. Under CI a missing etcd is a failure (panics).
pub fn etcd_for_test(test: &str) -> Option<PathBuf> {
    match etcd_binary() {
        Some(b) => Some(b),
        None if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") => {
            panic!("{test}: etcd is not installed (apt-get install etcd-server) and CI is set")
        }
        None => {
            eprintln!(
                "SKIPPED {test}: no etcd binary (apt-get install etcd-server, or set ETCD_BIN)"
            );
            None
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

impl EtcdProcess {
    /// Starts `binary` with its data in `data_dir` (created if absent) and `extra` flags.
    pub fn start(binary: &Path, data_dir: &Path, extra: &[&str]) -> std::io::Result<Self> {
        Self::start_with(binary, data_dir, extra, None)
    }

    /// Starts a member whose client port speaks TLS and requires client certificates.
    pub fn start_tls(
        binary: &Path,
        data_dir: &Path,
        tls: &MemberTls,
        extra: &[&str],
    ) -> std::io::Result<Self> {
        Self::start_with(binary, data_dir, extra, Some(tls))
    }

    fn start_with(
        binary: &Path,
        data_dir: &Path,
        extra: &[&str],
        tls: Option<&MemberTls>,
    ) -> std::io::Result<Self> {
        let mut last = None;
        // A port picked free may be taken before etcd binds it: try a few times.
        for _ in 0..5 {
            let mut p = Self {
                child: None,
                binary: binary.to_path_buf(),
                data_dir: data_dir.to_path_buf(),
                client_port: free_port()?,
                peer_port: free_port()?,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                member: None,
                tls: match tls {
                    Some(t) => Some((t.clone(), free_port()?)),
                    None => None,
                },
            };
            match p.spawn() {
                Ok(()) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("etcd did not start")))
    }

    /// The store URL of this member, with `prefix` (`etcd://127.0.0.1:PORT/PREFIX`;
    /// `etcds://` with TLS).
    pub fn url(&self, prefix: &str) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://127.0.0.1:{}/{prefix}", self.client_port)
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        let mut p = self.data_dir.as_os_str().to_owned();
        p.push(".log");
        PathBuf::from(p)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        self.launch()?;
        self.wait_healthy()
    }

    /// Starts the process without waiting for it.
    fn launch(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let client = self.client_url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let (name, cluster) = match &self.member {
            Some((name, cluster)) => (name.clone(), cluster.clone()),
            None => ("berth-test".to_string(), format!("berth-test={peer}")),
        };
        let mut command = Command::new(&self.binary);
        if let Some((tls, metrics_port)) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.client_ca.display()))
                .arg("--client-cert-auth")
                .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}"));
        }
        let child = command
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={cluster}"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the member answers `/health` (it has a leader), or fails.
    fn wait_healthy(&mut self) -> std::io::Result<()> {
        let client = self.client_url();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.healthy() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                let tail: String = log.lines().rev().take(8).collect::<Vec<_>>().join("\n");
                return Err(std::io::Error::other(format!("etcd exited ({status}): {tail}")));
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(std::io::Error::other(format!(
                    "etcd at {client} not healthy within {START_TIMEOUT:?}; see {}",
                    self.log_path().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True when the member answers `GET /health` with health true.
    pub fn healthy(&self) -> bool {
        let port = self.tls.as_ref().map_or(self.client_port, |(_, metrics)| *metrics);
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    /// SIGKILL, reaped; the data stays.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data (after [`Self::kill9`]).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill9();
        self.spawn()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Several etcd members forming one cluster on loopback (see the module header). Dropping it
/// kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdProcess>,
}

impl EtcdCluster {
    /// Starts `n` members with their data under `dir` (`dir/m0`, `dir/m1`...) and `extra`
    /// flags each; returns once every member is healthy.
    pub fn start(binary: &Path, dir: &Path, n: usize, extra: &[&str]) -> std::io::Result<Self> {
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            members.push(EtcdProcess {
                child: None,
                binary: binary.to_path_buf(),
                data_dir: dir.join(format!("m{i}")),
                client_port: free_port()?,
                peer_port: free_port()?,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                member: None,
                tls: None,
            });
        }
        let cluster = members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("m{i}=http://127.0.0.1:{}", m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for (i, m) in members.iter_mut().enumerate() {
            m.member = Some((format!("m{i}"), cluster.clone()));
            m.launch()?;
        }
        let mut me = Self { members };
        for m in &mut me.members {
            m.wait_healthy()?;
        }
        Ok(me)
    }

    /// The store URL naming every member (`etcd://127.0.0.1:P1,127.0.0.1:P2.../PREFIX`).
    pub fn url(&self, prefix: &str) -> String {
        let hosts: Vec<String> =
            self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
        format!("etcd://{}/{prefix}", hosts.join(","))
    }

    /// Member `i`, to kill or restart.
    pub fn member(&mut self, i: usize) -> &mut EtcdProcess {
        &mut self.members[i]
    }

    /// How many members it has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}
