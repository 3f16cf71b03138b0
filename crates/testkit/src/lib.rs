//! Test support for Berth's end-to-end tests.
//!
//! [`ServerProc`] starts the real `berth server` binary on an ephemeral port with a temporary
//! data directory and stops it on drop; [`ServerProc::aws`] runs the real AWS CLI against it
//! with the server's own administrator credentials, isolated from the caller's AWS
//! environment; [`ServerProc::python`] runs a boto3 script the same way.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anyhow::{Context, bail};

/// The account id the tests use.
pub const ACCOUNT_ID: &str = "123456789012";
/// The region the tests use.
pub const REGION: &str = "us-east-1";

/// Fails the test at once, saying what to do, when the image the end-to-end tests run
/// (`berth-demo:latest`) is missing.
#[track_caller]
pub fn require_demo_image() {
    let ok = Command::new("docker")
        .args(["image", "inspect", "berth-demo:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "the image berth-demo:latest is missing: run scripts/build-demo-image.sh first");
}

/// A running `berth server` child process.
pub struct ServerProc {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The DNS listener of Cloud Map's namespaces (the server's `dns ADDR` line), if any.
    pub dns: Option<std::net::SocketAddr>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    bin: PathBuf,
    /// The extra flags it was started with (kept for restarts).
    args: Vec<String>,
}

impl ServerProc {
    /// Starts a server with a fresh temporary data directory.
    pub fn start(bin: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin, &[])
    }

    /// Starts a server with a fresh temporary data directory and extra flags.
    pub fn start_with(bin: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("berth-test-").tempdir()?;
        let dir = tmp.path().join("data");
        let mut s = Self::spawn(bin, "server", &dir, extra, "127.0.0.1:0")?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// Starts a server on an existing (or new) data directory.
    pub fn start_in(bin: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        Self::spawn(bin, "server", data_dir, &[], "127.0.0.1:0")
    }

    /// Starts `berth up` (server and agent in one process) on a data directory.
    pub fn start_up(bin: &Path, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(bin, "up", data_dir, extra, "127.0.0.1:0")
    }

    fn spawn(
        bin: &Path,
        sub: &str,
        data_dir: &Path,
        extra: &[&str],
        listen: &str,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args([sub, "--listen", listen, "--account-id", ACCOUNT_ID, "--region", REGION])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .env("BERTH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(data_dir)?)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // Blocks until the server has bound its port (or exited).
        let mut endpoint = None;
        let mut dns = None;
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(d) = line.strip_prefix("dns ") {
                        dns = d.parse().ok();
                    }
                    if let Some(e) = line.strip_prefix("endpoint ") {
                        endpoint = Some(e.to_string());
                    }
                    if let Some(a) = line.strip_prefix("listening on ") {
                        break a.to_string();
                    }
                }
                _ => {
                    let status = child.wait()?;
                    bail!("berth server exited before listening: {status}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child: Some(child),
            endpoint: endpoint.unwrap_or_else(|| format!("http://{addr}")),
            dns,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            bin: bin.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit; returns whether it exited 0.
    pub fn interrupt(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
        c.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// SIGKILLs the server (no shutdown of any kind) and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server with SIGKILL and starts a new one on the same data directory.
    pub fn restart_after_kill9(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let next = Self::spawn(&self.bin, "server", &self.data_dir, &args, "127.0.0.1:0")?;
        let mut next = std::mem::ManuallyDrop::new(next);
        self.child = next.child.take();
        self.endpoint = std::mem::take(&mut next.endpoint);
        self.dns = next.dns;
        Ok(())
    }

    /// Kills the server with SIGKILL and starts a new one on the same data directory, port and
    /// flags, so that agents find it where it was.
    pub fn restart_same_port_after_kill9(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let listen =
            self.endpoint.trim_start_matches("http://").trim_start_matches("https://").to_string();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let next = Self::spawn(&self.bin, "server", &self.data_dir, &args, &listen)?;
        let mut next = std::mem::ManuallyDrop::new(next);
        self.child = next.child.take();
        self.dns = next.dns;
        Ok(())
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `DATA_DIR/tls/ca.pem`: the CA of a server that speaks TLS.
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("tls/ca.pem")
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.endpoint.starts_with("https://")
    }

    /// `DATA_DIR/credentials`, written by the server.
    pub fn credentials_file(&self) -> PathBuf {
        self.data_dir.join("credentials")
    }

    /// The administrator key from the credentials file: (access key id, secret).
    pub fn admin_key(&self) -> anyhow::Result<(String, String)> {
        let text = std::fs::read_to_string(self.credentials_file())?;
        let get = |k: &str| {
            text.lines()
                .find_map(|l| {
                    l.split_once('=')
                        .filter(|(a, _)| a.trim() == k)
                        .map(|(_, v)| v.trim().to_string())
                })
                .with_context(|| format!("{k} in credentials"))
        };
        Ok((get("aws_access_key_id")?, get("aws_secret_access_key")?))
    }

    /// The environment every client gets: this server's credentials, nothing of the caller's.
    pub fn client_env(&self, cmd: &mut Command) {
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_ECS",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", self.credentials_file())
            .env("AWS_CONFIG_FILE", self.data_dir.join("config"))
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("BERTH_ENDPOINT", &self.endpoint);
        if self.is_tls() {
            cmd.env("AWS_CA_BUNDLE", self.ca_file());
        } else {
            cmd.env_remove("AWS_CA_BUNDLE");
        }
    }

    /// Runs `aws --endpoint-url <server> --output json <args...>`.
    pub fn aws(&self, args: &[&str]) -> AwsResult {
        let mut cmd = Command::new("aws");
        cmd.arg("--endpoint-url").arg(&self.endpoint).args(["--output", "json"]);
        if self.is_tls() {
            cmd.arg("--ca-bundle").arg(self.ca_file());
        }
        cmd.args(args);
        self.client_env(&mut cmd);
        AwsResult::from(cmd.output().expect("the AWS CLI (aws) must be installed"))
    }

    /// Registers a task definition given as JSON (the CLI's `--cli-input-json`); returns the
    /// CLI's answer.
    pub fn register_task_definition(&self, td: &serde_json::Value) -> serde_json::Value {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("td.json");
        std::fs::write(&path, serde_json::to_vec(td).expect("json")).expect("write td");
        self.aws(&[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &format!("file://{}", path.display()),
        ])
        .json()
    }

    /// Runs `python3 <script> [args]` with the client environment (boto3 tests).
    pub fn python(&self, script: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new("python3");
        cmd.arg(script).args(args);
        self.client_env(&mut cmd);
        cmd.output().expect("python3 must be installed")
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What one AWS CLI call did.
#[derive(Debug)]
pub struct AwsResult {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for AwsResult {
    fn from(o: Output) -> Self {
        Self {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl AwsResult {
    /// The JSON output of a successful call; panics with the CLI's stderr otherwise.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        assert!(self.ok, "aws failed: {}", self.stderr);
        if self.stdout.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("bad JSON from aws ({e}): {}", self.stdout))
    }

    /// Asserts the call failed with this AWS error code; returns the CLI's message.
    #[track_caller]
    pub fn err(&self, code: &str) -> &str {
        assert!(!self.ok, "expected {code}, but aws succeeded: {}", self.stdout);
        assert!(
            self.stderr.contains(&format!("({code})")),
            "expected ({code}) in: {}",
            self.stderr
        );
        &self.stderr
    }
}

/// The server's stderr goes to `<data dir>.log` beside the data directory, so test output
/// stays readable and a failing test's server log can be read afterwards.
fn log_file(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.with_extension("log");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(std::fs::OpenOptions::new().create(true).append(true).open(&path)?)
}

/// A running `berth agent` child process, registered with a [`ServerProc`]. On drop it is
/// killed and every container and volume it created (found by its instance label) removed.
pub struct AgentProc {
    child: Option<Child>,
    /// The container instance ARN it registered as.
    pub instance_arn: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, std::ffi::OsString)>,
}

impl AgentProc {
    /// Starts an agent for `server`'s `default` cluster with extra flags.
    pub fn start(bin: &Path, server: &ServerProc, extra: &[&str]) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("berth-agent-test-").tempdir()?;
        let data_dir = tmp.path().join("agent");
        let mut a = Self {
            child: None,
            instance_arn: String::new(),
            data_dir,
            _tmp: Some(tmp),
            bin: bin.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("AWS_SHARED_CREDENTIALS_FILE".into(), server.credentials_file().into()),
                ("BERTH_SERVER".into(), server.endpoint.clone().into()),
            ],
        };
        a.spawn()?;
        Ok(a)
    }

    /// [`AgentProc::start`] with extra environment variables (e.g. `BERTH_STATS_INTERVAL_SECS`).
    pub fn start_with_env(
        bin: &Path,
        server: &ServerProc,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("berth-agent-test-").tempdir()?;
        let data_dir = tmp.path().join("agent");
        let mut vars: Vec<(String, std::ffi::OsString)> = vec![
            ("AWS_SHARED_CREDENTIALS_FILE".into(), server.credentials_file().into()),
            ("BERTH_SERVER".into(), server.endpoint.clone().into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), (*v).into())));
        let mut a = Self {
            child: None,
            instance_arn: String::new(),
            data_dir,
            _tmp: Some(tmp),
            bin: bin.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: vars,
        };
        a.spawn()?;
        Ok(a)
    }

    /// Starts an agent that joins `server`'s `default` cluster with a join token, over TLS
    /// pinned to the server's CA when it speaks TLS; it gets no administrator credentials.
    pub fn start_joining(
        bin: &Path,
        server: &ServerProc,
        token: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("berth-agent-test-").tempdir()?;
        let data_dir = tmp.path().join("agent");
        let mut args: Vec<String> = vec!["--join-token".into(), token.into()];
        if server.is_tls() {
            args.push("--ca-file".into());
            args.push(server.ca_file().display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut a = Self {
            child: None,
            instance_arn: String::new(),
            data_dir,
            _tmp: Some(tmp),
            bin: bin.to_path_buf(),
            args,
            env: vec![
                ("AWS_SHARED_CREDENTIALS_FILE".into(), "/nonexistent".into()),
                ("BERTH_SERVER".into(), server.endpoint.clone().into()),
            ],
        };
        a.spawn()?;
        Ok(a)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("agent").arg("--data-dir").arg(&self.data_dir).args(&self.args);
        for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]
        {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .env("BERTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&self.data_dir)?)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let arn = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("registered ") {
                        break a.to_string();
                    }
                }
                _ => {
                    let status = child.wait()?;
                    let log = std::fs::read_to_string(self.data_dir.with_extension("log"))
                        .unwrap_or_default();
                    bail!("berth agent exited before registering: {status}\n{log}");
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        self.instance_arn = arn;
        Ok(())
    }

    /// SIGKILLs the agent (its containers keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the agent again on the same data directory; returns the ARN it registered as.
    pub fn restart(&mut self) -> anyhow::Result<String> {
        self.kill9();
        self.spawn()?;
        Ok(self.instance_arn.clone())
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Ids of the Docker containers carrying this agent's instance label.
    pub fn containers(&self) -> Vec<String> {
        docker_ids(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.container-instance-arn={}", self.instance_arn),
        ])
    }
}

fn docker_ids(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect()
        })
        .unwrap_or_default()
}

/// Removes every container and volume carrying the instance label of `instance_arn` (what
/// an agent of that instance created).
pub fn remove_instance_objects(instance_arn: &str) {
    if instance_arn.is_empty() {
        return;
    }
    let label = format!("label=berth.container-instance-arn={instance_arn}");
    let ids = docker_ids(&["ps", "-aq", "--filter", &label]);
    if !ids.is_empty() {
        let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).output();
    }
    let vols = docker_ids(&["volume", "ls", "-q", "--filter", &label]);
    if !vols.is_empty() {
        let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&vols).output();
    }
    // The task cgroups the agent made for awsvpc / task-level limits (`berth/<instance id>/`
    // in every controller; Docker adds its containers' below them).
    if let Some(id) = instance_arn.rsplit('/').next().filter(|id| !id.is_empty()) {
        remove_cgroups(id);
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
        remove_instance_objects(&self.instance_arn);
    }
}

/// Builds binary `bin` of workspace package `package` with the cargo that runs the tests (the
/// same profile and target directory) and returns its path. A test can name only its own
/// package's binaries through `CARGO_BIN_EXE_*`; this reaches another's (e.g. the fleet
/// simulator `berth-loadgen` of `berth-bench`).
///
/// It builds the workspace's binaries *with its tests* (`--workspace --bins --tests`): that is
/// the feature resolution `cargo test --workspace` used (dev-dependencies' features unified
/// over every member), so under the README's test command every unit is already fresh and
/// only the few binaries no test harness needed are linked. A narrower `cargo build -p
/// package` resolves other features and compiles a second copy of the dependency tree (it
/// cost CI over 20 minutes).
pub fn cargo_bin(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--workspace", "--bins", "--tests"])
        .arg("--message-format=json-render-diagnostics");
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        cmd.current_dir(dir);
    }
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!(
            "cargo build --workspace --bins --tests (for {package}'s {bin}) failed: {}",
            out.status
        );
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let package_id = msg["package_id"].as_str().unwrap_or_default();
        // The binary itself, not its unit-test harness (also named `bin`).
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == bin
            && msg["profile"]["test"] == false
            && (package_id.contains(&format!("#{package}@"))
                || package_id.contains(&format!("/{package}#"))
                || package_id.contains(&format!("{package} ")))
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo build named no executable {bin} of {package}")
}

/// On drop, removes what the local agents of a `berth up` on data directory `.0` created
/// (its own instance's and its Fargate pool host's): containers and volumes by instance
/// label, and the subnet bridges of awsvpc tasks (networks labelled with the instance).
pub struct UpCleanup(pub PathBuf);

impl UpCleanup {
    /// The container instance ARNs the agents of the `berth up` recorded in their state files.
    pub fn instance_arns(&self) -> Vec<String> {
        ["agent", "fargate-agent"]
            .iter()
            .filter_map(|d| std::fs::read(self.0.join(d).join("agent-state.json")).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter_map(|v| {
                v.as_object()?
                    .values()
                    .filter_map(|x| x.as_str())
                    .find(|s| s.contains(":container-instance/"))
                    .map(str::to_string)
            })
            .collect()
    }
}

impl Drop for UpCleanup {
    fn drop(&mut self) {
        for arn in self.instance_arns() {
            remove_instance_objects(&arn);
            let label = format!("label=berth.container-instance-arn={arn}");
            for id in docker_ids(&["network", "ls", "-q", "--filter", &label]) {
                let _ = Command::new("docker").args(["network", "rm", &id]).output();
            }
        }
    }
}

/// Removes `/sys/fs/cgroup/<controller>/berth/<instance_id>` and everything below it, in every
/// controller (a cgroup directory goes with `rmdir` once it holds no process: deepest first).
/// Best effort: what still holds a process stays.
pub fn remove_cgroups(instance_id: &str) {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for c in controllers.flatten() {
        let dir = c.path().join("berth").join(instance_id);
        if dir.is_dir() {
            rmdir_tree(&dir);
        }
    }
}
