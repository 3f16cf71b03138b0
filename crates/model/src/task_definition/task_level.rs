//! Task-level members checked after the containers (rules 10 to 13 of the module's list):
//! `placementConstraints`, `proxyConfiguration`, `ephemeralStorage` and `tags`. Only the tag
//! rules answer `InvalidParameterException` (they are the tagging API's, shared with every
//! resource); the others are `ClientException`s like the rest of the module.

use berth_wire::ecs::{NetworkMode, RegisterTaskDefinitionRequest};

use super::MAX_PLACEMENT_CONSTRAINTS;
use super::facts::{Facts, client};
use crate::ModelError;

/// Rule 9b: container `secrets` and `repositoryCredentials` are read with the task's
/// execution role, so they need an `executionRoleArn` (ECS's wording).
pub(super) fn check_execution_role_needed(
    req: &RegisterTaskDefinitionRequest,
) -> Result<(), ModelError> {
    if req.execution_role_arn.as_deref().is_some_and(|r| !r.is_empty()) {
        return Ok(());
    }
    let defs = req.container_definitions.as_deref().unwrap_or(&[]);
    if defs.iter().any(|c| c.secrets.as_ref().is_some_and(|s| !s.is_empty())) {
        return Err(client(
            "executionRoleArn",
            "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'.",
        ));
    }
    if defs.iter().any(|c| c.repository_credentials.is_some()) {
        return Err(client(
            "executionRoleArn",
            "Private repository authentication requires that the task definition specify a value for executionRoleArn.",
        ));
    }
    Ok(())
}

/// Rule 10: at most [`MAX_PLACEMENT_CONSTRAINTS`], each `memberOf` with an expression.
pub(super) fn check_placement_constraints(
    req: &RegisterTaskDefinitionRequest,
) -> Result<(), ModelError> {
    let constraints = req.placement_constraints.as_deref().unwrap_or(&[]);
    if constraints.len() > MAX_PLACEMENT_CONSTRAINTS {
        return Err(client(
            "placementConstraints",
            format!(
                "Too many placement constraints: a task definition can have at most \
                 {MAX_PLACEMENT_CONSTRAINTS}, got {}.",
                constraints.len()
            ),
        ));
    }
    for (i, pc) in constraints.iter().enumerate() {
        if pc.r#type.is_none() {
            return Err(client(
                format!("placementConstraints[{i}].type"),
                "Placement constraint type must be specified; memberOf is the only task definition \
                 placement constraint type.",
            ));
        }
        if pc.expression.as_deref().is_none_or(|e| e.trim().is_empty()) {
            return Err(client(
                format!("placementConstraints[{i}].expression"),
                "A memberOf placement constraint requires an expression.",
            ));
        }
    }
    Ok(())
}

/// Rule 11: `proxyConfiguration` names a container and the task uses `awsvpc`.
pub(super) fn check_proxy_configuration(f: &Facts) -> Result<(), ModelError> {
    let Some(proxy) = &f.req.proxy_configuration else {
        return Ok(());
    };
    let target = proxy.container_name.as_deref().unwrap_or("");
    if !f.index.contains_key(target) {
        return Err(client(
            "proxyConfiguration.containerName",
            format!(
                "Invalid 'proxyConfiguration' setting: container '{target}' is not defined in the task definition."
            ),
        ));
    }
    if f.mode != NetworkMode::Awsvpc {
        return Err(client(
            "proxyConfiguration",
            "Invalid 'proxyConfiguration' setting: proxy configuration requires networkMode=awsvpc.",
        ));
    }
    Ok(())
}

/// Rule 12: `ephemeralStorage.sizeInGiB` is 21-200.
pub(super) fn check_ephemeral_storage(
    req: &RegisterTaskDefinitionRequest,
) -> Result<(), ModelError> {
    if let Some(es) = &req.ephemeral_storage {
        let size = es.size_in_gi_b.unwrap_or(0);
        if !(21..=200).contains(&size) {
            return Err(client(
                "ephemeralStorage.sizeInGiB",
                format!(
                    "Invalid 'ephemeralStorage' setting: sizeInGiB must be between 21 and 200, got {size}."
                ),
            ));
        }
    }
    Ok(())
}

/// Rule 13: the tagging API's rules (`InvalidParameterException`).
pub(super) fn check_tags(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    crate::tags::validate(req.tags.as_deref().unwrap_or(&[]), "tags")
}
