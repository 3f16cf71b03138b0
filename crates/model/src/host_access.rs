//! Host access: the settings of a task definition that reach past a container's isolation
//! into the host, which an agent refuses unless its operator allowed them.
//!
//! [`dangerous_settings`] lists what a task definition asks for, each named by its task
//! definition field; [`HostAccess`] is what an agent allows (its `--allow-*` flags, all off by
//! default). Both sides meet in container instance attributes: the agent advertises
//! [`HostAccess::attributes`], placement requires [`required_attributes`] and matches them
//! with [`satisfied`], so a task only goes where its agent would start it; the agent checks
//! again before it starts a task ([`HostAccess::refusal`]).
//!
//! | Setting (field) | Dangerous when | Required attribute | Agent flag |
//! |---|---|---|---|
//! | `containerDefinitions[i].privileged` | `true` | `com.amazonaws.ecs.capability.privileged-container` (ECS's own) | `--allow-privileged` |
//! | `containerDefinitions[i].linuxParameters.capabilities.add` | a capability outside Docker's default set ([`DOCKER_DEFAULT_CAPABILITIES`]) | `berth.capability.cap-add.CAP` (`…cap-add.ALL` satisfies every one) | `--allow-capabilities CAP,...` or `all` |
//! | `pidMode`, `ipcMode`, `networkMode` | `host` | `berth.capability.host-namespaces` | `--allow-host-namespaces` |
//! | `containerDefinitions[i].dockerSecurityOptions` | any option but `no-new-privileges` | `berth.capability.security-options` | `--allow-security-options` |
//! | `volumes[i].host.sourcePath` | set | `berth.capability.host-path` + the path (`…host-path/srv/data`), satisfied by the attribute of the path or of any parent (`…host-path/srv`, `…host-path/`) | `--allow-host-paths PATH,...` |
//! | the same, when the path is the Docker socket or a directory holding it | | `berth.capability.docker-socket`, in addition | the socket listed in `--allow-host-paths` |
//! | `volumes[i].dockerVolumeConfiguration.driverOpts` | `device`, or `o` with `bind`/`rbind` | `berth.capability.volume-driver-opts` | `--allow-volume-driver-opts` |
//!
//! Paths are compared lexically after normalisation (`.`, `..`, repeated and trailing
//! slashes); a relative `sourcePath` needs `/` itself. RunTask overrides carry none of these
//! settings (ECS's `containerOverrides` are command, environment, sizes), so the task
//! definition alone decides.

use std::collections::BTreeSet;

use berth_wire::ecs::TaskDefinition;

/// ECS's attribute for privileged containers.
pub const ATTR_PRIVILEGED: &str = "com.amazonaws.ecs.capability.privileged-container";
/// Prefix of the attribute for one added capability: `berth.capability.cap-add.NET_ADMIN`.
pub const ATTR_CAP_ADD: &str = "berth.capability.cap-add.";
/// Host pid, ipc and network namespaces.
pub const ATTR_HOST_NAMESPACES: &str = "berth.capability.host-namespaces";
/// `dockerSecurityOptions` other than `no-new-privileges`.
pub const ATTR_SECURITY_OPTIONS: &str = "berth.capability.security-options";
/// Prefix of a host path attribute, followed by the absolute path: `berth.capability.host-path/srv`.
pub const ATTR_HOST_PATH: &str = "berth.capability.host-path";
/// Binding the Docker socket (or a directory holding it).
pub const ATTR_DOCKER_SOCKET: &str = "berth.capability.docker-socket";
/// Docker volume `driverOpts` that mount host paths or devices.
pub const ATTR_VOLUME_DRIVER_OPTS: &str = "berth.capability.volume-driver-opts";

/// Where the Docker Engine's socket usually is.
pub const DOCKER_SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/docker.sock"];

/// The capabilities Docker grants every container: adding one changes nothing.
pub const DOCKER_DEFAULT_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What kind of host access a setting asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    Privileged,
    /// A capability, normalised (upper case, without `CAP_`).
    Capability(String),
    /// `pid`, `ipc` or `network`.
    HostNamespace(&'static str),
    SecurityOption(String),
    /// A normalised absolute path (`/` for a relative one).
    HostPath(String),
    /// The Docker socket is reachable through this host path.
    DockerSocket,
    VolumeDriverOpts,
}

/// One dangerous setting a task definition asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Danger {
    /// The task definition field, with the value where it helps:
    /// `containerDefinitions[0].privileged`, `volumes[1].host.sourcePath=/etc`.
    pub field: String,
    pub setting: Setting,
}

impl Danger {
    /// The container instance attribute an agent advertises when it allows this.
    pub fn required_attribute(&self) -> String {
        match &self.setting {
            Setting::Privileged => ATTR_PRIVILEGED.into(),
            Setting::Capability(c) => format!("{ATTR_CAP_ADD}{c}"),
            Setting::HostNamespace(_) => ATTR_HOST_NAMESPACES.into(),
            Setting::SecurityOption(_) => ATTR_SECURITY_OPTIONS.into(),
            Setting::HostPath(p) => format!("{ATTR_HOST_PATH}{p}"),
            Setting::DockerSocket => ATTR_DOCKER_SOCKET.into(),
            Setting::VolumeDriverOpts => ATTR_VOLUME_DRIVER_OPTS.into(),
        }
    }

    /// The `berth agent` flag that allows it.
    pub fn flag(&self) -> String {
        match &self.setting {
            Setting::Privileged => "--allow-privileged".into(),
            Setting::Capability(c) => format!("--allow-capabilities {c}"),
            Setting::HostNamespace(_) => "--allow-host-namespaces".into(),
            Setting::SecurityOption(_) => "--allow-security-options".into(),
            Setting::HostPath(p) => format!("--allow-host-paths {p}"),
            Setting::DockerSocket => format!("--allow-host-paths {}", DOCKER_SOCKETS[0]),
            Setting::VolumeDriverOpts => "--allow-volume-driver-opts".into(),
        }
    }

    /// `FIELD (needs berth agent FLAG)`.
    pub fn explain(&self) -> String {
        format!("{} (needs berth agent {})", self.field, self.flag())
    }
}

/// A capability as Docker and ECS name it: upper case, without `CAP_`.
pub fn normalize_capability(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
}

/// `path` with `.`, `..`, repeated and trailing slashes resolved lexically; `None` when it is
/// not absolute.
pub fn normalize_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether `ancestor` is `path` or one of its parent directories (both normalised).
fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || path.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether a security option only tightens the container.
fn harmless_security_option(o: &str) -> bool {
    matches!(
        o.trim().to_ascii_lowercase().as_str(),
        "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
    )
}

/// The dangerous settings `td` asks for (see the module docs), containers first in order,
/// then task-level modes, then volumes.
pub fn dangerous_settings(td: &TaskDefinition) -> Vec<Danger> {
    let mut out = Vec::new();
    let mut push = |field: String, setting: Setting| out.push(Danger { field, setting });
    for (i, c) in td.container_definitions.iter().flatten().enumerate() {
        let cd = format!("containerDefinitions[{i}]");
        if c.privileged == Some(true) {
            push(format!("{cd}.privileged"), Setting::Privileged);
        }
        let adds = c
            .linux_parameters
            .as_ref()
            .and_then(|l| l.capabilities.as_ref())
            .and_then(|k| k.add.as_ref());
        for cap in adds.into_iter().flatten() {
            let cap = normalize_capability(cap);
            if !DOCKER_DEFAULT_CAPABILITIES.contains(&cap.as_str()) {
                push(
                    format!("{cd}.linuxParameters.capabilities.add={cap}"),
                    Setting::Capability(cap),
                );
            }
        }
        for (j, o) in c.docker_security_options.iter().flatten().enumerate() {
            if !harmless_security_option(o) {
                push(
                    format!("{cd}.dockerSecurityOptions[{j}]={o}"),
                    Setting::SecurityOption(o.clone()),
                );
            }
        }
    }
    let host = |m: Option<&str>| m == Some("host");
    if host(td.pid_mode.map(|m| m.as_str())) {
        push("pidMode=host".into(), Setting::HostNamespace("pid"));
    }
    if host(td.ipc_mode.map(|m| m.as_str())) {
        push("ipcMode=host".into(), Setting::HostNamespace("ipc"));
    }
    if host(td.network_mode.map(|m| m.as_str())) {
        push("networkMode=host".into(), Setting::HostNamespace("network"));
    }
    for (i, v) in td.volumes.iter().flatten().enumerate() {
        if let Some(src) = v.host.as_ref().and_then(|h| h.source_path.as_deref()) {
            let field = format!("volumes[{i}].host.sourcePath={src}");
            let path = normalize_path(src).unwrap_or_else(|| "/".into());
            if DOCKER_SOCKETS.iter().any(|s| is_within(s, &path)) {
                push(format!("{field} (the Docker socket)"), Setting::DockerSocket);
            }
            push(field, Setting::HostPath(path));
        }
        let opts = v.docker_volume_configuration.as_ref().and_then(|d| d.driver_opts.as_ref());
        for (k, val) in opts.into_iter().flatten() {
            let binds = k == "o" && val.split(',').any(|o| matches!(o.trim(), "bind" | "rbind"));
            if k == "device" || binds {
                push(
                    format!("volumes[{i}].dockerVolumeConfiguration.driverOpts.{k}={val}"),
                    Setting::VolumeDriverOpts,
                );
            }
        }
    }
    out
}

/// The attributes a container instance needs to run `td` safely: those of
/// [`dangerous_settings`], without duplicates, in order.
pub fn required_attributes(td: &TaskDefinition) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in dangerous_settings(td) {
        let a = d.required_attribute();
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Whether an instance whose attributes `has` satisfies the required attribute `required`:
/// it has it, or, for a capability, `…cap-add.ALL`, or, for a host path, the attribute of a
/// parent directory of it.
pub fn satisfied(required: &str, has: impl Fn(&str) -> bool) -> bool {
    if has(required) {
        return true;
    }
    if let Some(cap) = required.strip_prefix(ATTR_CAP_ADD) {
        return cap != "ALL" && has(&format!("{ATTR_CAP_ADD}ALL"));
    }
    if let Some(path) = required.strip_prefix(ATTR_HOST_PATH).filter(|p| p.starts_with('/')) {
        let mut p = path;
        while let Some(cut) = p.rfind('/') {
            p = &p[..cut];
            let parent = if p.is_empty() { "/" } else { p };
            if has(&format!("{ATTR_HOST_PATH}{parent}")) {
                return true;
            }
        }
    }
    false
}

/// Which capabilities an agent lets containers add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Capabilities {
    /// Only Docker's defaults (adding those is harmless).
    #[default]
    None,
    /// These, normalised.
    Some(BTreeSet<String>),
    All,
}

/// What an agent allows (its `--allow-*` flags). The default allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAccess {
    pub privileged: bool,
    pub capabilities: Capabilities,
    pub host_namespaces: bool,
    pub security_options: bool,
    /// Normalised absolute path prefixes that bind volumes may use.
    pub host_paths: Vec<String>,
    pub volume_driver_opts: bool,
}

impl HostAccess {
    /// Parses `--allow-capabilities`: `all`, or capability names (`NET_ADMIN`, `CAP_SYS_TIME`).
    pub fn parse_capabilities(list: &[String]) -> Capabilities {
        if list.iter().any(|c| c.trim().eq_ignore_ascii_case("all")) {
            return Capabilities::All;
        }
        let set: BTreeSet<String> =
            list.iter().map(|c| normalize_capability(c)).filter(|c| !c.is_empty()).collect();
        if set.is_empty() { Capabilities::None } else { Capabilities::Some(set) }
    }

    /// Normalises `--allow-host-paths` entries; an entry that is not an absolute path is an
    /// error naming it.
    pub fn parse_host_paths(list: &[String]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for p in list {
            let n = normalize_path(p.trim())
                .ok_or_else(|| format!("--allow-host-paths: '{p}' is not an absolute path"))?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// The attributes an agent with this policy advertises (names only, no values).
    pub fn attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.privileged {
            out.push(ATTR_PRIVILEGED.to_string());
        }
        match &self.capabilities {
            Capabilities::None => {}
            Capabilities::Some(caps) => {
                out.extend(caps.iter().map(|c| format!("{ATTR_CAP_ADD}{c}")));
            }
            Capabilities::All => out.push(format!("{ATTR_CAP_ADD}ALL")),
        }
        if self.host_namespaces {
            out.push(ATTR_HOST_NAMESPACES.into());
        }
        if self.security_options {
            out.push(ATTR_SECURITY_OPTIONS.into());
        }
        for p in &self.host_paths {
            out.push(format!("{ATTR_HOST_PATH}{p}"));
        }
        if self.host_paths.iter().any(|p| DOCKER_SOCKETS.contains(&p.as_str())) {
            out.push(ATTR_DOCKER_SOCKET.into());
        }
        if self.volume_driver_opts {
            out.push(ATTR_VOLUME_DRIVER_OPTS.into());
        }
        out
    }

    /// Whether this policy allows `d` (by the same attributes placement matches).
    pub fn allows(&self, d: &Danger) -> bool {
        let have = self.attributes();
        satisfied(&d.required_attribute(), |a| have.iter().any(|h| h == a))
    }

    /// What of `td` this policy refuses, as a task's `stoppedReason`; `None` when it may run.
    pub fn refusal(&self, td: &TaskDefinition) -> Option<String> {
        let refused: Vec<String> = dangerous_settings(td)
            .iter()
            .filter(|d| !self.allows(d))
            .map(Danger::explain)
            .collect();
        (!refused.is_empty()).then(|| {
            format!(
                "CannotStartContainerError: not allowed on this instance: {}",
                refused.join("; ")
            )
        })
    }
}

/// An ATTRIBUTE failure's detail: each missing attribute, with the settings of `td` that need
/// it.
pub fn explain_missing(td: &TaskDefinition, missing: &[String]) -> String {
    let dangers = dangerous_settings(td);
    let parts: Vec<String> = missing
        .iter()
        .map(|m| {
            let why: Vec<String> = dangers
                .iter()
                .filter(|d| &d.required_attribute() == m)
                .map(Danger::explain)
                .collect();
            if why.is_empty() { m.clone() } else { format!("{m}: {}", why.join(", ")) }
        })
        .collect();
    format!("Missing attributes: {}", parts.join("; "))
}

#[cfg(test)]
mod tests;
