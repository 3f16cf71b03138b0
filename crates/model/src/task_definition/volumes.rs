//! Volumes (rule 5 of the module's list) and what containers do with them (`volumesFrom`,
//! `mountPoints`, in rule 6): volume names are unique, each volume has at most one kind, and
//! every reference from a container names something the task defines. Paths are absolute in
//! the Linux (`/x`) or Windows (`C:\x`) sense.

use std::collections::HashSet;

use berth_wire::ecs::{EFSAuthorizationConfigIAM, EFSTransitEncryption, Scope};

use super::facts::{Facts, cfield, client, name_re};
use crate::ModelError;

/// Rule 5: each volume has a unique valid name, at most one kind, and a consistent
/// configuration for that kind.
pub(super) fn check_volumes(f: &Facts) -> Result<(), ModelError> {
    let mut seen = HashSet::new();
    for (i, v) in f.volumes().iter().enumerate() {
        let field = |rest: &str| format!("volumes[{i}].{rest}");
        let name = match v.name.as_deref() {
            None | Some("") => return Err(client(field("name"), "Volume name must be specified.")),
            Some(n) => n,
        };
        if !name_re().is_match(name) {
            return Err(client(
                field("name"),
                format!(
                    "Invalid volume name '{name}'. Up to 255 letters (uppercase and lowercase), \
                     numbers, hyphens, and underscores are allowed."
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(client(field("name"), format!("Duplicate volume name '{name}'.")));
        }
        let kinds = [
            v.host.is_some(),
            v.docker_volume_configuration.is_some(),
            v.efs_volume_configuration.is_some(),
            v.fsx_windows_file_server_volume_configuration.is_some(),
            v.s3files_volume_configuration.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(client(
                format!("volumes[{i}]"),
                format!(
                    "Invalid setting for volume '{name}'. Specify only one of 'host', \
                     'dockerVolumeConfiguration', 'efsVolumeConfiguration', \
                     'fsxWindowsFileServerVolumeConfiguration' and 's3filesVolumeConfiguration'."
                ),
            ));
        }
        if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.as_deref())
            && !path.is_empty()
            && !absolute_path(path)
        {
            return Err(client(
                field("host.sourcePath"),
                format!(
                    "Invalid setting for volume '{name}'. 'sourcePath' must be an absolute path."
                ),
            ));
        }
        if let Some(d) = &v.docker_volume_configuration
            && d.autoprovision == Some(true)
            && d.scope.unwrap_or(Scope::Task) != Scope::Shared
        {
            return Err(client(
                field("dockerVolumeConfiguration.autoprovision"),
                format!(
                    "Invalid setting for volume '{name}'. 'autoprovision' is only supported \
                         when 'scope' is 'shared'."
                ),
            ));
        }
        if let Some(e) = &v.efs_volume_configuration {
            let auth = e.authorization_config.as_ref();
            let iam = auth.is_some_and(|a| a.iam == Some(EFSAuthorizationConfigIAM::Enabled));
            let access_point =
                auth.is_some_and(|a| a.access_point_id.as_deref().is_some_and(|s| !s.is_empty()));
            let encrypted = e.transit_encryption == Some(EFSTransitEncryption::Enabled);
            if (iam || access_point) && !encrypted {
                return Err(client(
                    field("efsVolumeConfiguration.transitEncryption"),
                    format!(
                        "Invalid setting for volume '{name}'. Transit encryption must be enabled \
                         when IAM authorization or an access point is used."
                    ),
                ));
            }
            if access_point
                && e.root_directory.as_deref().is_some_and(|r| !r.is_empty() && r != "/")
            {
                return Err(client(
                    field("efsVolumeConfiguration.rootDirectory"),
                    format!(
                        "Invalid setting for volume '{name}'. When an access point is used, \
                         'rootDirectory' must be omitted or set to '/'."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `volumesFrom` of container `i`: each `sourceContainer` names another container.
pub(super) fn check_volumes_from(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    for (j, v) in c.volumes_from.iter().flatten().enumerate() {
        let source = v.source_container.as_deref().unwrap_or("");
        if f.index.get(source).is_none_or(|&s| s == i) {
            return Err(client(
                cfield(i, &format!("volumesFrom[{j}].sourceContainer")),
                format!(
                    "Invalid 'volumesFrom' setting for container '{name}': sourceContainer '{source}' \
                     must name another container of the task definition."
                ),
            ));
        }
    }
    Ok(())
}

/// `mountPoints` of container `i`: each names a volume of the task and an absolute path.
pub(super) fn check_mount_points(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    let volume_names: HashSet<&str> =
        f.volumes().iter().filter_map(|v| v.name.as_deref()).collect();
    for (j, m) in c.mount_points.iter().flatten().enumerate() {
        let source = m.source_volume.as_deref().unwrap_or("");
        if !volume_names.contains(source) {
            return Err(client(
                cfield(i, &format!("mountPoints[{j}].sourceVolume")),
                format!(
                    "Invalid 'mountPoints' setting for container '{name}': volume '{source}' is not defined."
                ),
            ));
        }
        let path = m.container_path.as_deref().unwrap_or("");
        if !absolute_path(path) {
            return Err(client(
                cfield(i, &format!("mountPoints[{j}].containerPath")),
                format!(
                    "Invalid 'mountPoints' setting for container '{name}': containerPath must be an \
                     absolute path."
                ),
            ));
        }
    }
    Ok(())
}

/// An absolute Linux (`/x`) or Windows (`C:\x`, `C:/x`) path.
fn absolute_path(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'\\' || b[2] == b'/'))
}
