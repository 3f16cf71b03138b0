//! Host safety in IAM (issue #16): a task definition that reaches into the host needs, beyond
//! the agent-side switches ([`berth_model::host_access`]), Berth-specific IAM actions in the
//! caller's policies, on every operation that registers or runs it.
//!
//! Contract:
//! * **Operations**: RegisterTaskDefinition (the request's task definition), RunTask,
//!   StartTask, CreateService, UpdateService and CreateTaskSet (the task definition they name,
//!   resolved as the operation resolves it; UpdateService only when it names one). A task
//!   definition that does not resolve is left to the operation, which answers ECS's error.
//! * **Actions**, one per dangerous setting [`berth_model::host_access::dangerous_settings`]
//!   finds (each evaluated on its own, after the operation's own `ecs:` action is allowed):
//!
//!   | Task definition asks for | Action | Extra condition key |
//!   |---|---|---|
//!   | `containerDefinitions[i].privileged: true` | `berth:RunPrivileged` | |
//!   | `linuxParameters.capabilities.add` outside Docker's default set | `berth:AddCapabilities` | `berth:Capability` (`NET_ADMIN`) |
//!   | `networkMode: host` | `berth:UseHostNetwork` | |
//!   | `pidMode: host` | `berth:UseHostPid` | |
//!   | `ipcMode: host` | `berth:UseHostIpc` | |
//!   | `dockerSecurityOptions` other than `no-new-privileges` | `berth:SetSecurityOptions` | `berth:SecurityOption` |
//!   | `volumes[i].host.sourcePath` | `berth:MountHostPath` | `berth:HostPath` (normalised: `/srv/data`) |
//!   | a host path that is (or holds) the Docker socket | `berth:MountDockerSocket` (and `berth:MountHostPath`) | |
//!   | `dockerVolumeConfiguration.driverOpts` `device` / `o=bind` | `berth:MountHostPath` (no `berth:HostPath`) | |
//!
//! * **Resource**: the task definition: `task-definition/FAMILY:REV` as resolved for the run
//!   operations, `task-definition/FAMILY:*` for RegisterTaskDefinition (its revision is not
//!   known yet). `ecs:cluster` is set for the run operations, as for their `ecs:` action.
//! * **Explicit grants only**: every `berth:` action is allowed only by an `Allow` statement
//!   whose `Action` names the `berth:` service prefix literally (`berth:*`,
//!   `berth:RunPrivileged`, `berth:Mount*`); `"Action": "*"` (AdministratorAccess), `*:*`,
//!   `ber*:*` and `NotAction` do not grant them, in identity policies, permissions boundaries
//!   and session policies alike. `Deny` statements match as usual (`"Deny" "*"` denies them).
//!   So they are denied by default to every IAM user and role session; the administrator (the
//!   bootstrap key, the account root) is allowed everything, instance keys never register or
//!   run task definitions.
//! * **Denial**: `AccessDeniedException`, AWS's message naming the `berth:` action and the
//!   task definition resource, followed by the field that asked for it:
//!   `... berth:RunPrivileged on resource: arn:...:task-definition/web:3 because no
//!   identity-based policy allows the berth:RunPrivileged action (the task definition asks for
//!   containerDefinitions[0].privileged)`.
//! * Not covered: a service created by a permitted caller keeps running its task definition
//!   when another caller only scales it (UpdateService without `taskDefinition`).

use berth_model::host_access::{Setting, dangerous_settings};
use berth_wire::AwsError;
use berth_wire::ecs::{RegisterTaskDefinitionRequest, TaskDefinition};
use serde_json::Value;

use super::Authz;
use crate::App;
use crate::auth::Authenticated;

/// The service prefix of Berth's own IAM actions.
pub(crate) const SERVICE: &str = "berth";

/// Whether `action` (`service:Operation`) must be granted by name (see the module header).
pub(crate) fn explicit_only(action: &str) -> bool {
    action.split_once(':').is_some_and(|(s, _)| s.eq_ignore_ascii_case(SERVICE))
}

/// One permission a task definition needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Need {
    /// `berth:RunPrivileged`...
    pub action: &'static str,
    /// Condition keys specific to it (`berth:HostPath`).
    pub keys: Vec<(String, String)>,
    /// The task definition field that asks for it (the first, when several do).
    pub field: String,
}

/// The Berth actions `td` needs, in the order of its dangerous settings, without duplicates
/// (one per action and key values).
pub(crate) fn needs(td: &TaskDefinition) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    for d in dangerous_settings(td) {
        let key = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let (action, keys) = match &d.setting {
            Setting::Privileged => ("berth:RunPrivileged", vec![]),
            Setting::Capability(c) => ("berth:AddCapabilities", key("berth:Capability", c)),
            Setting::HostNamespace("network") => ("berth:UseHostNetwork", vec![]),
            Setting::HostNamespace("pid") => ("berth:UseHostPid", vec![]),
            Setting::HostNamespace(_) => ("berth:UseHostIpc", vec![]),
            Setting::SecurityOption(o) => {
                ("berth:SetSecurityOptions", key("berth:SecurityOption", o))
            }
            Setting::HostPath(p) => ("berth:MountHostPath", key("berth:HostPath", p)),
            Setting::DockerSocket => ("berth:MountDockerSocket", vec![]),
            Setting::VolumeDriverOpts => ("berth:MountHostPath", vec![]),
        };
        if !out.iter().any(|n| n.action == action && n.keys == keys) {
            out.push(Need { action, keys, field: d.field });
        }
    }
    out
}

/// The host-relevant part of a RegisterTaskDefinition request, as a task definition.
fn requested(req: RegisterTaskDefinitionRequest) -> TaskDefinition {
    TaskDefinition {
        family: req.family,
        container_definitions: req.container_definitions,
        network_mode: req.network_mode,
        pid_mode: req.pid_mode,
        ipc_mode: req.ipc_mode,
        volumes: req.volumes,
        ..TaskDefinition::default()
    }
}

/// The operations this module governs.
pub(crate) fn governs(operation: &str) -> bool {
    matches!(
        operation,
        "RegisterTaskDefinition"
            | "RunTask"
            | "StartTask"
            | "CreateService"
            | "UpdateService"
            | "CreateTaskSet"
    )
}

/// Authorizes the Berth actions of an ECS request (see the module header); `base` is the
/// request's own authorization (its source address, transport, region and `ecs:cluster`).
pub(crate) async fn authorize(
    app: &App,
    signed: &Authenticated,
    operation: &str,
    body: &[u8],
    base: &Authz,
) -> Result<(), AwsError> {
    if !governs(operation) {
        return Ok(());
    }
    let (td, resource) = if operation == "RegisterTaskDefinition" {
        // What the operation itself parses; a body it refuses registers nothing.
        let Ok(req) = serde_json::from_slice::<RegisterTaskDefinitionRequest>(body) else {
            return Ok(());
        };
        let Some(family) = req.family.clone().filter(|f| !f.is_empty()) else { return Ok(()) };
        let r = signed.region;
        let arn = format!(
            "arn:{}:ecs:{}:{}:task-definition/{family}:*",
            r.partition, r.name, signed.principal.account_id
        );
        (requested(req), arn)
    } else {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let Some(given) = v.get("taskDefinition").and_then(Value::as_str).filter(|s| !s.is_empty())
        else {
            return Ok(());
        };
        let ecs = app.regions.ecs(signed.region);
        let Some(rec) = ecs.named_task_definition(given).await? else { return Ok(()) };
        let td = rec.task_definition.clone();
        let arn = td.task_definition_arn.clone().unwrap_or_else(|| given.to_string());
        (td, arn)
    };
    for need in needs(&td) {
        let mut keys = base.keys.clone();
        keys.extend(need.keys.iter().cloned());
        let req = Authz {
            action: need.action.to_string(),
            resources: vec![resource.clone()],
            keys,
            ..base.clone()
        };
        app.iam.authorize(&signed.principal, &req).await.map_err(|mut e| {
            e.message = format!("{} (the task definition asks for {})", e.message, need.field);
            e
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
