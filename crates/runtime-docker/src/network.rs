//! Networks, shared cgroups and the one create request bollard cannot express, for awsvpc
//! tasks and task-level limits.
//!
//! Contract:
//! * [`create_network`] makes a `bridge` network with one IPv4 pool (subnet, gateway) and
//!   labels; an existing network of that name with the same subnet is `Ok`, another subnet
//!   `Conflict`; the engine's "Pool overlaps" refusal is `Conflict`.
//! * A container with a fixed MAC is created with a raw `POST /containers/create` over the
//!   engine's unix socket carrying `MacAddress` in its config, the field API 1.41 reads
//!   (bollard's models follow API 1.44+, where it moved to the endpoint, which 1.41 ignores).
//! * `move_to_network` takes a running container off all its networks (`none` included) and
//!   connects it to one with a fixed address; the MAC is then set inside the container's
//!   namespace (`nsenter --net ip link set dev eth0 address`, root), because API 1.41 ignores
//!   an endpoint's MAC on connect. The engine keeps reporting the MAC it chose.
//! * Shared cgroups ([`Cgroups`]): cgroup v1 with Docker's `cgroupfs` driver, verified here:
//!   `memory/<name>/memory.limit_in_bytes` and `cpu/<name>/cpu.cfs_quota_us` (period 100 ms);
//!   cgroup v2 (`memory.max`, `cpu.max`) is written the same way but has not been tested.
//!   A container created with `CgroupParent=/<name>` lands in `<name>/<container id>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_runtime::{
    CgroupSpec, NetworkAttachment, NetworkInfo, NetworkSpec, ObjectKind, RuntimeError,
};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::ListNetworksOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{DockerRuntime, label_filters};

impl DockerRuntime {
    pub(crate) async fn create_network_impl(&self, spec: &NetworkSpec) -> Result<(), RuntimeError> {
        if let Some(existing) =
            self.list_networks_impl(&[]).await?.into_iter().find(|n| n.name == spec.name)
        {
            if existing.subnets == [spec.subnet.clone()] {
                return Ok(());
            }
            return Err(RuntimeError::Conflict {
                id: spec.name.clone(),
                message: format!(
                    "network {} exists with subnets {:?}, not {}",
                    spec.name, existing.subnets, spec.subnet
                ),
            });
        }
        let req = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(spec.subnet.clone()),
                    gateway: spec.gateway.clone(),
                    ..Default::default()
                }]),
                options: None,
            }),
            labels: (!spec.labels.is_empty())
                .then(|| spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        };
        match self.client().create_network(req).await {
            Ok(_) => Ok(()),
            Err(e) => match self.err("create network", ObjectKind::Network, &spec.name, e) {
                // 403 "Pool overlaps with other one on this address space", 409 a name taken
                // meanwhile.
                RuntimeError::Engine { message, .. } if message.contains("overlaps") => {
                    Err(RuntimeError::Conflict { id: spec.name.clone(), message })
                }
                RuntimeError::Conflict { .. } => Box::pin(self.create_network_impl(spec)).await,
                other => Err(other),
            },
        }
    }

    pub(crate) async fn remove_network_impl(&self, name: &str) -> Result<(), RuntimeError> {
        match self.client().remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err("remove network", ObjectKind::Network, name, e) {
                RuntimeError::NotFound { .. } => Ok(()),
                // 403 "error while removing network: network x has active endpoints".
                RuntimeError::Engine { message, .. } if message.contains("active endpoints") => {
                    Err(RuntimeError::Conflict { id: name.to_string(), message })
                }
                other => Err(other),
            },
        }
    }

    pub(crate) async fn list_networks_impl(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<NetworkInfo>, RuntimeError> {
        let opts = ListNetworksOptions { filters: label_filters(labels) };
        let rows = self
            .client()
            .list_networks(Some(opts))
            .await
            .map_err(|e| self.err("list networks", ObjectKind::Network, "", e))?;
        let mut out: Vec<NetworkInfo> = rows
            .into_iter()
            .map(|n| NetworkInfo {
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                driver: n.driver.unwrap_or_default(),
                subnets: n
                    .ipam
                    .and_then(|i| i.config)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.subnet)
                    .filter(|s| !s.contains(':'))
                    .collect(),
                labels: n
                    .labels
                    .map(|l| l.into_iter().collect::<BTreeMap<_, _>>())
                    .unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// [`Runtime::move_to_network`](berth_runtime::Runtime::move_to_network): disconnect
    /// from every network (a pool container starts on `none`), connect to `to.name` with the
    /// fixed address, then set the MAC inside the namespace (API 1.41 ignores an endpoint's
    /// `MacAddress` on connect; `nsenter -n ip link set` changes a veth's address live).
    pub(crate) async fn move_to_network_impl(
        &self,
        id: &str,
        to: &NetworkAttachment,
    ) -> Result<(), RuntimeError> {
        let st = berth_runtime::Runtime::inspect(self, id)
            .await?
            .ok_or_else(|| RuntimeError::NotFound { kind: ObjectKind::Container, id: id.into() })?;
        let pid =
            st.pid.filter(|_| st.state.is_running()).ok_or_else(|| RuntimeError::Conflict {
                id: id.to_string(),
                message: "the container is not running".into(),
            })?;
        for n in st.networks.iter().filter(|n| n.name != to.name) {
            let req = NetworkDisconnectRequest { container: id.to_string(), force: Some(true) };
            match self.client().disconnect_network(&n.name, req).await {
                Ok(()) => {}
                Err(e) => match self.err("disconnect network", ObjectKind::Network, &n.name, e) {
                    RuntimeError::NotFound { .. } => {}
                    other => return Err(other),
                },
            }
        }
        if !st.networks.iter().any(|n| n.name == to.name) {
            let req = NetworkConnectRequest {
                container: id.to_string(),
                endpoint_config: Some(EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: to.ip_address.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            };
            self.client()
                .connect_network(&to.name, req)
                .await
                .map_err(|e| self.err("connect network", ObjectKind::Network, &to.name, e))?;
        }
        if let Some(mac) = &to.mac_address {
            set_mac(pid, mac).await?;
        }
        Ok(())
    }

    /// `POST /containers/create` with `MacAddress` added to `body`, over the unix socket.
    pub(crate) async fn create_with_mac(
        &self,
        name: &str,
        body: &ContainerCreateBody,
        mac: &str,
    ) -> Result<String, RuntimeError> {
        let engine = |message: String| RuntimeError::Engine { op: "create", message };
        let socket = match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => {
                h.strip_prefix("unix://").map(str::to_string).ok_or_else(|| {
                    RuntimeError::Invalid {
                        id: name.to_string(),
                        message: format!(
                            "a fixed MAC address needs the engine's unix socket, not {h}"
                        ),
                    }
                })?
            }
            _ => "/var/run/docker.sock".to_string(),
        };
        let mut json = serde_json::to_value(body).map_err(|e| engine(e.to_string()))?;
        json["MacAddress"] = serde_json::Value::from(mac);
        let payload = serde_json::to_vec(&json).map_err(|e| engine(e.to_string()))?;
        let path = if name.is_empty() {
            "/v1.41/containers/create".to_string()
        } else {
            format!("/v1.41/containers/create?name={name}")
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        );
        let exchange = async {
            let mut s = tokio::net::UnixStream::connect(&socket).await?;
            s.write_all(request.as_bytes()).await?;
            s.write_all(&payload).await?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let raw = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| RuntimeError::Timeout { op: "create", after: self.request_timeout })?
            .map_err(|e| engine(format!("{socket}: {e}")))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
        let message = v["message"].as_str().unwrap_or(body.trim()).to_string();
        match status {
            201 => v["Id"].as_str().map(str::to_string).ok_or_else(|| engine(body.clone())),
            404 => Err(RuntimeError::NotFound {
                kind: if message.contains("network") {
                    ObjectKind::Network
                } else {
                    ObjectKind::Image
                },
                id: body_image(body_field(&json, "Image"), &message),
            }),
            409 => Err(RuntimeError::Conflict { id: name.to_string(), message }),
            400 => Err(RuntimeError::Invalid { id: name.to_string(), message }),
            _ => Err(engine(format!("HTTP {status}: {message}"))),
        }
    }
}

/// Sets the MAC of the namespace's one interface besides `lo` (`eth0` after a move).
async fn set_mac(pid: u32, mac: &str) -> Result<(), RuntimeError> {
    let valid = mac.len() == 17
        && mac.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(RuntimeError::Invalid {
            id: mac.to_string(),
            message: "not a MAC address".into(),
        });
    }
    let mac = mac.to_string();
    let engine = move |m: String| RuntimeError::Engine {
        op: "set mac",
        message: format!("ip link in the network namespace of pid {pid}: {m}"),
    };
    let ip = move |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new("nsenter")
            .args(["--target", &pid.to_string(), "--net", "--", "ip"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("nsenter: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    let set = move || -> Result<(), String> {
        if ip(&["link", "set", "dev", "eth0", "address", &mac]).is_ok() {
            return Ok(());
        }
        // Not `eth0`: the one interface that is not loopback.
        let links = ip(&["-o", "link", "show"])?;
        let dev = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|d| d.split('@').next().unwrap_or(d))
            .find(|d| *d != "lo")
            .ok_or_else(|| "no interface besides lo".to_string())?
            .to_string();
        ip(&["link", "set", "dev", &dev, "address", &mac]).map(|_| ())
    };
    tokio::task::spawn_blocking(set).await.map_err(|e| engine(e.to_string()))?.map_err(engine)
}

fn body_field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

fn body_image(image: String, message: &str) -> String {
    message.strip_prefix("No such image: ").map(str::to_string).unwrap_or(image)
}

/// Joins an HTTP/1.1 chunked body.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Shared cgroups under the host's cgroup root.
#[derive(Clone, Debug)]
pub struct Cgroups {
    root: PathBuf,
}

impl Default for Cgroups {
    fn default() -> Self {
        Self { root: PathBuf::from("/sys/fs/cgroup") }
    }
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Engine { op, message: format!("{}: {e}", path.display()) }
}

impl Cgroups {
    fn v2(&self) -> bool {
        self.root.join("cgroup.controllers").exists()
    }

    /// The directories of cgroup `name`, one per controller (v1) or one (v2).
    fn dirs(&self, name: &str) -> Vec<PathBuf> {
        if self.v2() {
            vec![self.root.join(name)]
        } else {
            vec![self.root.join("memory").join(name), self.root.join("cpu").join(name)]
        }
    }

    fn check_name(name: &str) -> Result<(), RuntimeError> {
        let ok = !name.is_empty()
            && !name.starts_with('/')
            && name.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
        if ok {
            Ok(())
        } else {
            Err(RuntimeError::Invalid {
                id: name.to_string(),
                message: "a cgroup name is a relative path without . or ..".into(),
            })
        }
    }

    pub(crate) fn create(&self, spec: &CgroupSpec) -> Result<(), RuntimeError> {
        Self::check_name(&spec.name)?;
        let write = |p: PathBuf, v: String| -> Result<(), RuntimeError> {
            std::fs::write(&p, v).map_err(|e| io("create cgroup", &p, e))
        };
        if self.v2() {
            // Enable the controllers down the path, then set the limits.
            let mut dir = self.root.clone();
            for part in spec.name.split('/') {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu");
                dir = dir.join(part);
                std::fs::create_dir_all(&dir).map_err(|e| io("create cgroup", &dir, e))?;
            }
            if let Some(m) = spec.memory_limit_bytes {
                write(dir.join("memory.max"), m.to_string())?;
            }
            if let Some(c) = spec.cpu_millis {
                write(dir.join("cpu.max"), format!("{} 100000", c.max(1) * 100))?;
            }
            return Ok(());
        }
        for d in self.dirs(&spec.name) {
            std::fs::create_dir_all(&d).map_err(|e| io("create cgroup", &d, e))?;
        }
        let [mem, cpu] = <[PathBuf; 2]>::try_from(self.dirs(&spec.name)).expect("two dirs");
        if let Some(m) = spec.memory_limit_bytes {
            write(mem.join("memory.limit_in_bytes"), m.to_string())?;
        }
        write(cpu.join("cpu.cfs_period_us"), "100000".into())?;
        let quota = spec.cpu_millis.map_or(-1, |c| (c.max(1) * 100) as i64);
        write(cpu.join("cpu.cfs_quota_us"), quota.to_string())?;
        Ok(())
    }

    pub(crate) fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        Self::check_name(name)?;
        let mut dirs = self.dirs(name);
        if !self.v2() {
            // Docker (runc) makes a container's parent path under every v1 controller, not only
            // the two Berth writes limits to: remove it wherever it is.
            if let Ok(rd) = std::fs::read_dir(&self.root) {
                for c in rd.flatten() {
                    let d = c.path().join(name);
                    if d.is_dir() && !dirs.contains(&d) {
                        dirs.push(d);
                    }
                }
            }
        }
        for d in dirs {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(16) => {
                    return Err(RuntimeError::Conflict {
                        id: name.to_string(),
                        message: format!("{} is still in use", d.display()),
                    });
                }
                Err(e) => return Err(io("remove cgroup", &d, e)),
            }
        }
        Ok(())
    }

    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>, RuntimeError> {
        let (parent, start) = match prefix.rsplit_once('/') {
            Some((p, s)) => (p, s),
            None => ("", prefix),
        };
        let base = if self.v2() { self.root.clone() } else { self.root.join("memory") };
        let dir = base.join(parent);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io("list cgroups", &dir, e)),
        };
        let mut out: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(start))
            .map(|n| if parent.is_empty() { n } else { format!("{parent}/{n}") })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// The engine's `CgroupParent` for a shared cgroup (an absolute path under the root).
pub fn cgroup_parent(name: &str) -> String {
    format!("/{}", name.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_join() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
    }

    #[test]
    fn cgroups_are_written_under_the_root() {
        let tmp = std::env::temp_dir().join(format!("berth-cg-{}", std::process::id()));
        let cg = Cgroups { root: tmp.clone() };
        let spec = CgroupSpec {
            name: "berth/t1".into(),
            memory_limit_bytes: Some(512 << 20),
            cpu_millis: Some(250),
        };
        cg.create(&spec).unwrap();
        let read = |p: &str| std::fs::read_to_string(tmp.join(p)).unwrap();
        assert_eq!(read("memory/berth/t1/memory.limit_in_bytes"), (512u64 << 20).to_string());
        assert_eq!(read("cpu/berth/t1/cpu.cfs_quota_us"), "25000");
        assert_eq!(cg.list("berth/").unwrap(), vec!["berth/t1".to_string()]);
        assert!(Cgroups::check_name("../x").is_err());
        assert!(Cgroups::check_name("/x").is_err());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
