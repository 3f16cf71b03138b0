//! Berth's Docker Engine runtime: [`DockerRuntime`] implements [`berth_runtime::Runtime`]
//! with bollard; [`demo`] builds the `berth-demo` image through the same API. This is the
//! only crate in Berth that knows Docker.
//!
//! Contract:
//! * Talks to the engine at `DOCKER_HOST` or the local socket `/var/run/docker.sock`. bollard
//!   sends unversioned API paths, so the engine answers at its own API level (1.41 on Docker
//!   20.10); only fields that exist at 1.41 are relied on.
//! * Every request is bounded by the request timeout (default 120 s), except where the
//!   operation itself waits: [`Runtime::stop`] allows its stop timeout plus 30 s,
//!   [`Runtime::pull`] the pull timeout (default 10 min), and [`Runtime::wait_exit`] no limit
//!   (the engine answers its headers at once and the body when the container exits).
//! * Engine answers map to [`RuntimeError`] by status: 404 -> `NotFound` (the message tells
//!   container from image), 409 -> `Conflict`, 400 -> `Invalid`, anything else -> `Engine`;
//!   a pull failure of any kind -> `Pull`.
//! * A non-zero exit reported by the wait endpoint (bollard's `DockerContainerWaitError`) is
//!   an exit code, not an error.
//! * [`Runtime::events`] follows the engine's `/events` with its `since` set from the
//!   engine's own clock, so nothing after `Subscribed` is missed ([`events`] tells how).
//! * awsvpc and task sizes: [`network`] (bridge networks, a fixed MAC through a raw create
//!   request, shared cgroups under `/sys/fs/cgroup`) and [`pause`] (the locally built
//!   `berth-pause` image that holds a task's network namespace).
#![forbid(unsafe_code)]

pub mod convert;
pub mod demo;
pub mod events;
pub mod network;
pub mod pause;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::{
    CgroupSpec, ContainerSpec, ContainerStatus, ContainerSummary, EventStream, ImageInfo,
    NetworkAttachment, NetworkInfo, NetworkSpec, ObjectKind, Runtime, RuntimeError, RuntimeInfo,
    VolumeSpec,
};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
    StatsOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

pub use demo::{BuildContext, DEMO_DOCKERFILE, DEMO_IMAGE};
pub use pause::PAUSE_IMAGE;

/// Default bound on one engine request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Default bound on one image pull.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// The Docker Engine, through bollard. Cheap to clone (clones share one connection pool).
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    request_timeout: Duration,
    pull_timeout: Duration,
    cgroups: network::Cgroups,
}

impl DockerRuntime {
    /// A client for `DOCKER_HOST` (`unix://` or `tcp://`) or the local socket
    /// `/var/run/docker.sock`. Nothing is sent yet: [`DockerRuntime::ping`] checks that the
    /// engine answers. Call it within a tokio runtime.
    pub fn connect() -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| RuntimeError::Engine { op: "connect", message: e.to_string() })?;
        Ok(Self::from_client(docker))
    }

    /// Wraps an already configured bollard client (its timeout is replaced by ours).
    pub fn from_client(docker: Docker) -> Self {
        DockerRuntime {
            docker: docker.with_timeout(DEFAULT_REQUEST_TIMEOUT),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
            cgroups: network::Cgroups::default(),
        }
    }

    /// Bounds every ordinary request (not waits, stops or pulls, which have their own).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.docker = self.docker.with_timeout(timeout);
        self.request_timeout = timeout;
        self
    }

    /// Bounds each [`Runtime::pull`] as a whole.
    pub fn with_pull_timeout(mut self, timeout: Duration) -> Self {
        self.pull_timeout = timeout;
        self
    }

    /// The underlying bollard client, for what the [`Runtime`] trait does not cover.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Checks that the engine answers.
    pub async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.err("ping", ObjectKind::Container, "", e))
    }

    /// Removes an image tag, or an image by id, never by force: removing a tag deletes the
    /// image only once no other tag names it; an id still tagged several times, or an image a
    /// container uses, is `Conflict`. A missing image is `Ok`.
    pub async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let opts = RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        match self.docker.remove_image(reference, Some(opts), None).await {
            Ok(_) => Ok(()),
            Err(e) => match self.err("remove image", ObjectKind::Image, reference, e) {
                RuntimeError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// A client whose request bound is at least `t`.
    fn with_at_least(&self, t: Duration) -> Docker {
        self.docker.clone().with_timeout(t.max(self.request_timeout))
    }

    /// Maps a bollard error for an operation on `id` (of `kind`).
    fn err(&self, op: &'static str, kind: ObjectKind, id: &str, e: DockerError) -> RuntimeError {
        map_error(op, kind, id, self.request_timeout, e)
    }
}

/// Maps a bollard error; exposed for the [`demo`] module and tests.
pub(crate) fn map_error(
    op: &'static str,
    kind: ObjectKind,
    id: &str,
    timeout: Duration,
    e: DockerError,
) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError { status_code: 404, message } => {
            // Docker names what was missing: "No such image: x", "No such container: y",
            // "get v: no such volume".
            let lower = message.to_ascii_lowercase();
            let (kind, id) = if let Some(rest) =
                lower.find("no such image: ").map(|i| &message[i + 15..])
            {
                (ObjectKind::Image, rest.trim().to_string())
            } else if let Some(rest) = lower.find("no such container: ").map(|i| &message[i + 19..])
            {
                (ObjectKind::Container, rest.trim().to_string())
            } else if lower.contains("no such volume") {
                (ObjectKind::Volume, id.to_string())
            } else if lower.starts_with("network ") && lower.contains(" not found") {
                // "network berth-subnet-x not found"
                let name = message["network ".len()..].split(" not found").next().unwrap_or(id);
                (ObjectKind::Network, name.trim().to_string())
            } else {
                (kind, id.to_string())
            };
            RuntimeError::NotFound { kind, id }
        }
        DockerError::DockerResponseServerError { status_code: 409, message } => {
            RuntimeError::Conflict { id: id.to_string(), message }
        }
        DockerError::DockerResponseServerError { status_code: 400, message } => {
            RuntimeError::Invalid { id: id.to_string(), message }
        }
        DockerError::RequestTimeoutError => RuntimeError::Timeout { op, after: timeout },
        other => RuntimeError::Engine { op, message: other.to_string() },
    }
}

fn label_filters(labels: &[(String, String)]) -> Option<HashMap<String, Vec<String>>> {
    if labels.is_empty() {
        return None;
    }
    Some(HashMap::from([(
        "label".to_string(),
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    )]))
}

/// The first host address of an IPv4 subnet (`172.17.0.0/16` → `172.17.0.1`): Docker's
/// default bridge reports no `Gateway` on older engines, and its gateway is that address.
fn first_host(cidr: &str) -> Option<String> {
    let (net, _) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = net.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(ip).checked_add(1)?).to_string())
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn info(&self) -> Result<RuntimeInfo, RuntimeError> {
        let info =
            self.docker.info().await.map_err(|e| self.err("info", ObjectKind::Container, "", e))?;
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| self.err("version", ObjectKind::Container, "", e))?;
        Ok(RuntimeInfo {
            engine_version: version.version.or(info.server_version).unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            memory_bytes: info.mem_total.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
            os: info.os_type.unwrap_or_else(|| "linux".into()),
            arch: convert::normalize_arch(info.architecture.as_deref().unwrap_or_default()),
            bridge_gateway: self
                .docker
                .inspect_network("bridge", None::<bollard::query_parameters::InspectNetworkOptions>)
                .await
                .ok()
                .and_then(|n| {
                    n.ipam?.config?.into_iter().find_map(|c| {
                        c.gateway.or_else(|| c.subnet.as_deref().and_then(first_host))
                    })
                })
                .filter(|g| !g.contains(':')),
        })
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(convert::image_from(&i))),
            Err(e) => match self.err("inspect image", ObjectKind::Image, reference, e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn pull(
        &self,
        reference: &str,
        auth: Option<&berth_runtime::RegistryAuth>,
    ) -> Result<ImageInfo, RuntimeError> {
        let pull_err =
            |message: String| RuntimeError::Pull { image: reference.to_string(), message };
        let (name, tag, digest) = berth_runtime::parse_reference(reference);
        // Without a tag Docker would pull every tag of the repository.
        let tag = digest.or(tag).unwrap_or("latest");
        let opts = CreateImageOptions {
            from_image: Some(name.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let docker = self.with_at_least(self.pull_timeout);
        let pulled = async {
            // Sent as X-Registry-Auth.
            let credentials = auth.map(|a| bollard::auth::DockerCredentials {
                username: Some(a.username.clone()),
                password: Some(a.password.clone()),
                serveraddress: Some(a.server_address.clone()),
                ..Default::default()
            });
            let mut stream = docker.create_image(Some(opts), None, credentials);
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| match e {
                    DockerError::DockerResponseServerError { message, .. } => pull_err(message),
                    other => pull_err(other.to_string()),
                })?;
                if let Some(detail) = info.error_detail {
                    return Err(pull_err(detail.message.unwrap_or_else(|| "pull failed".into())));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.pull_timeout, pulled).await {
            Ok(r) => r?,
            Err(_) => return Err(pull_err(format!("timed out after {:?}", self.pull_timeout))),
        }
        let wanted = if digest.is_some() { reference.to_string() } else { format!("{name}:{tag}") };
        self.image(&wanted).await?.ok_or_else(|| pull_err("image missing after pull".into()))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let body = convert::create_body(spec)?;
        let opts = CreateContainerOptions {
            name: (!spec.name.is_empty()).then(|| spec.name.clone()),
            ..Default::default()
        };
        if let Some(mac) = &spec.mac_address {
            return self.create_with_mac(&spec.name, &body, mac).await;
        }
        let resp = self.docker.create_container(Some(opts), body).await.map_err(|e| {
            match self.err("create", ObjectKind::Image, &spec.image, e) {
                // A 409 on create is the name; a 404 names the image or a missing container.
                RuntimeError::Conflict { message, .. } => {
                    RuntimeError::Conflict { id: spec.name.clone(), message }
                }
                RuntimeError::Invalid { message, .. } => {
                    RuntimeError::Invalid { id: spec.name.clone(), message }
                }
                other => other,
            }
        })?;
        for w in resp.warnings.iter().filter(|w| !w.is_empty()) {
            tracing::warn!(container = %spec.name, warning = %w, "docker create warning");
        }
        Ok(resp.id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| self.err("start", ObjectKind::Container, id, e))
    }

    async fn stop(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let t = i32::try_from(convert::ceil_secs(timeout)).unwrap_or(i32::MAX);
        let opts = StopContainerOptions { t: Some(t), signal: None };
        // The engine answers only once the container has stopped: allow the grace period.
        let docker = self.with_at_least(timeout + Duration::from_secs(30));
        docker
            .stop_container(id, Some(opts))
            .await
            .map_err(|e| self.err("stop", ObjectKind::Container, id, e))
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptions { force: true, v: true, link: false };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err("remove", ObjectKind::Container, id, e) {
                RuntimeError::NotFound { .. } => Ok(()),
                // "removal of container ... is already in progress"
                RuntimeError::Conflict { message, .. }
                    if message.contains("already in progress") =>
                {
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        match self.docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(c) => Ok(Some(convert::status_from(&c))),
            Err(e) => match self.err("inspect", ObjectKind::Container, id, e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn wait_exit(&self, id: &str) -> Result<i64, RuntimeError> {
        let opts = WaitContainerOptions { condition: "not-running".into() };
        let mut stream = self.docker.wait_container(id, Some(opts));
        match stream.next().await {
            Some(Ok(resp)) => Ok(resp.status_code),
            // bollard reports a non-zero exit as an error: it is the exit code.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.err("wait", ObjectKind::Container, id, e)),
            None => {
                Err(RuntimeError::Engine { op: "wait", message: format!("{id}: no exit status") })
            }
        }
    }

    async fn list(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let opts = ListContainersOptions {
            all: true,
            filters: label_filters(labels),
            ..Default::default()
        };
        let rows = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.err("list", ObjectKind::Container, "", e))?;
        Ok(rows.iter().map(convert::summary_from).collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let to_map = |m: &BTreeMap<String, String>| {
            (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        };
        let req = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: to_map(&spec.driver_opts),
            labels: to_map(&spec.labels),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map(|_| ())
            .map_err(|e| self.err("create volume", ObjectKind::Volume, &spec.name, e))
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.remove_volume(name, Some(RemoveVolumeOptions { force: false })).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err("remove volume", ObjectKind::Volume, name, e) {
                RuntimeError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list_volumes(&self, labels: &[(String, String)]) -> Result<Vec<String>, RuntimeError> {
        let opts = ListVolumesOptions { filters: label_filters(labels) };
        let resp = self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| self.err("list volumes", ObjectKind::Volume, "", e))?;
        let mut names: Vec<String> =
            resp.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect();
        names.sort();
        Ok(names)
    }

    async fn stats(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        let opts = StatsOptions { stream: false, one_shot: true };
        let mut stream = self.docker.stats(id, Some(opts));
        match stream.next().await {
            Some(Ok(stats)) => serde_json::to_value(stats)
                .map(Some)
                .map_err(|e| RuntimeError::Engine { op: "stats", message: e.to_string() }),
            Some(Err(e)) => match self.err("stats", ObjectKind::Container, id, e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
            None => Ok(None),
        }
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError> {
        self.create_network_impl(spec).await
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.remove_network_impl(name).await
    }

    async fn list_networks(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<NetworkInfo>, RuntimeError> {
        self.list_networks_impl(labels).await
    }

    async fn create_cgroup(&self, spec: &CgroupSpec) -> Result<(), RuntimeError> {
        let info =
            self.docker.info().await.map_err(|e| self.err("info", ObjectKind::Container, "", e))?;
        if info.cgroup_driver.as_ref().map(|d| d.to_string()).as_deref() == Some("systemd") {
            return Err(RuntimeError::Invalid {
                id: spec.name.clone(),
                message: "task-level cpu and memory limits need Docker's cgroupfs cgroup driver (this engine uses systemd)".into(),
            });
        }
        let (cg, spec) = (self.cgroups.clone(), spec.clone());
        tokio::task::spawn_blocking(move || cg.create(&spec))
            .await
            .map_err(|e| RuntimeError::Engine { op: "create cgroup", message: e.to_string() })?
    }

    async fn remove_cgroup(&self, name: &str) -> Result<(), RuntimeError> {
        let (cg, name) = (self.cgroups.clone(), name.to_string());
        tokio::task::spawn_blocking(move || cg.remove(&name))
            .await
            .map_err(|e| RuntimeError::Engine { op: "remove cgroup", message: e.to_string() })?
    }

    async fn list_cgroups(&self, prefix: &str) -> Result<Vec<String>, RuntimeError> {
        let (cg, prefix) = (self.cgroups.clone(), prefix.to_string());
        tokio::task::spawn_blocking(move || cg.list(&prefix))
            .await
            .map_err(|e| RuntimeError::Engine { op: "list cgroups", message: e.to_string() })?
    }

    async fn pause_image(&self) -> Result<String, RuntimeError> {
        self.ensure_pause_image().await?;
        Ok(PAUSE_IMAGE.to_string())
    }

    async fn move_to_network(&self, id: &str, to: &NetworkAttachment) -> Result<(), RuntimeError> {
        self.move_to_network_impl(id, to).await
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let opts = bollard::query_parameters::RenameContainerOptions { name: name.to_string() };
        self.docker
            .rename_container(id, opts)
            .await
            .map_err(|e| self.err("rename", ObjectKind::Container, id, e))
    }

    fn events(&self, labels: &[(String, String)]) -> EventStream {
        events::stream(self, labels)
    }

    fn follow_logs(&self, id: &str, since_ns: i64) -> berth_runtime::LogStream {
        // `since` is whole seconds (inclusive): the lines of that second up to `since_ns`
        // come again and are skipped here by their nanosecond timestamps.
        let opts = bollard::query_parameters::LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: i32::try_from(since_ns.max(0) / 1_000_000_000).unwrap_or(i32::MAX),
            ..Default::default()
        };
        let rt = self.clone();
        let id = id.to_string();
        self.docker
            .logs(&id, Some(opts))
            .flat_map(move |item| {
                let lines: Vec<Result<berth_runtime::LogLine, RuntimeError>> = match item {
                    Ok(out) => {
                        let stderr = matches!(out, bollard::container::LogOutput::StdErr { .. });
                        convert::log_lines(out.as_ref(), stderr)
                            .into_iter()
                            .filter(|l| l.timestamp_ns > since_ns)
                            .map(Ok)
                            .collect()
                    }
                    Err(e) => vec![Err(rt.err("logs", ObjectKind::Container, &id, e))],
                };
                futures_util::stream::iter(lines)
            })
            .boxed()
    }

    async fn last_log_timestamp(&self, id: &str) -> Result<Option<i64>, RuntimeError> {
        // `tail=1` without follow: the engine reads the log from its end (cheap at any size).
        let opts = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: "1".to_string(),
            ..Default::default()
        };
        let mut frames = self.docker.logs(id, Some(opts));
        let mut last: Option<i64> = None;
        while let Some(item) = frames.next().await {
            let out = item.map_err(|e| self.err("logs", ObjectKind::Container, id, e))?;
            let stderr = matches!(out, bollard::container::LogOutput::StdErr { .. });
            for l in convert::log_lines(out.as_ref(), stderr) {
                last = Some(last.map_or(l.timestamp_ns, |t| t.max(l.timestamp_ns)));
            }
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError { status_code, message: message.into() }
    }

    #[test]
    fn engine_errors_map_by_status_and_message() {
        let t = Duration::from_secs(1);
        assert_eq!(
            map_error(
                "create",
                ObjectKind::Image,
                "x",
                t,
                server(404, "No such image: berth-demo:nope")
            ),
            RuntimeError::NotFound { kind: ObjectKind::Image, id: "berth-demo:nope".into() }
        );
        assert_eq!(
            map_error("create", ObjectKind::Image, "x", t, server(404, "No such container: abc")),
            RuntimeError::NotFound { kind: ObjectKind::Container, id: "abc".into() }
        );
        assert_eq!(
            map_error(
                "remove volume",
                ObjectKind::Volume,
                "v",
                t,
                server(404, "get v: no such volume")
            ),
            RuntimeError::NotFound { kind: ObjectKind::Volume, id: "v".into() }
        );
        assert_eq!(
            map_error("create", ObjectKind::Image, "x", t, server(404, "network nope not found")),
            RuntimeError::NotFound { kind: ObjectKind::Network, id: "nope".into() }
        );
        assert!(matches!(
            map_error("c", ObjectKind::Container, "n", t, server(409, "in use")),
            RuntimeError::Conflict { .. }
        ));
        assert!(matches!(
            map_error("c", ObjectKind::Container, "n", t, server(400, "bad")),
            RuntimeError::Invalid { .. }
        ));
        assert!(matches!(
            map_error("c", ObjectKind::Container, "n", t, server(500, "boom")),
            RuntimeError::Engine { .. }
        ));
        assert_eq!(
            map_error("info", ObjectKind::Container, "", t, DockerError::RequestTimeoutError),
            RuntimeError::Timeout { op: "info", after: t }
        );
    }
}
