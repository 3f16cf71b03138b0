//! The agent's host access flags (`berth agent` and `berth up`): every dangerous container
//! setting is refused unless a flag allows it (`berth_model::host_access` has the table of
//! settings, the attributes the agent then advertises and how placement matches them).

use berth_agent::host_access::{Capabilities, HostAccess};

/// What tasks on this host may do to it. All off by default.
#[derive(clap::Args, Clone, Debug, Default)]
#[group(id = "host-access-flags")]
pub struct Args {
    /// Allow privileged containers (advertises
    /// com.amazonaws.ecs.capability.privileged-container).
    #[arg(long)]
    pub allow_privileged: bool,
    /// Allow adding these Linux capabilities beyond Docker's defaults, CAP,... or `all`
    /// (advertises berth.capability.cap-add.CAP).
    #[arg(long, value_delimiter = ',', value_name = "CAP,...|all")]
    pub allow_capabilities: Vec<String>,
    /// Allow the host's pid, ipc and network namespaces (pidMode, ipcMode, networkMode
    /// `host`; advertises berth.capability.host-namespaces).
    #[arg(long)]
    pub allow_host_namespaces: bool,
    /// Allow dockerSecurityOptions other than no-new-privileges, such as
    /// seccomp=unconfined (advertises berth.capability.security-options).
    #[arg(long)]
    pub allow_security_options: bool,
    /// Allow bind volumes (host.sourcePath) under these absolute paths; the Docker socket
    /// (and a directory holding it) only when the socket itself is listed (advertises
    /// berth.capability.host-path<PATH>, and berth.capability.docker-socket).
    #[arg(long, value_delimiter = ',', value_name = "PATH,...")]
    pub allow_host_paths: Vec<String>,
    /// Allow Docker volume driverOpts that mount host paths or devices (`device`, `o=bind`;
    /// advertises berth.capability.volume-driver-opts).
    #[arg(long)]
    pub allow_volume_driver_opts: bool,
}

impl Args {
    /// The policy these flags describe.
    pub fn policy(&self) -> anyhow::Result<HostAccess> {
        let capabilities = HostAccess::parse_capabilities(&self.allow_capabilities);
        let host_paths =
            HostAccess::parse_host_paths(&self.allow_host_paths).map_err(anyhow::Error::msg)?;
        Ok(HostAccess {
            privileged: self.allow_privileged,
            capabilities,
            host_namespaces: self.allow_host_namespaces,
            security_options: self.allow_security_options,
            host_paths,
            volume_driver_opts: self.allow_volume_driver_opts,
        })
    }

    /// A line for the operator when anything is allowed, `None` otherwise.
    pub fn summary(&self) -> anyhow::Result<Option<String>> {
        let p = self.policy()?;
        let mut parts = Vec::new();
        if p.privileged {
            parts.push("privileged containers".to_string());
        }
        match &p.capabilities {
            Capabilities::None => {}
            Capabilities::Some(c) => parts
                .push(format!("capabilities {}", c.iter().cloned().collect::<Vec<_>>().join(","))),
            Capabilities::All => parts.push("all capabilities".into()),
        }
        if p.host_namespaces {
            parts.push("host namespaces".into());
        }
        if p.security_options {
            parts.push("security options".into());
        }
        if !p.host_paths.is_empty() {
            parts.push(format!("host paths {}", p.host_paths.join(",")));
        }
        if p.volume_driver_opts {
            parts.push("volume driver options".into());
        }
        Ok((!parts.is_empty()).then(|| format!("tasks here may use: {}", parts.join("; "))))
    }
}
