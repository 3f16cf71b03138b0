//! One container's own settings (rule 6 of the module's list) and the essential-container rule
//! (rule 9). [`check_container`] fixes the order of the per-container checks, delegating each
//! rule group to its module; the settings no other group owns (`healthCheck`, `ulimits`,
//! `environment`, `environmentFiles`, timeouts) are checked here.

use std::sync::OnceLock;

use regex::Regex;

use super::dependencies::{check_depends_on, check_links};
use super::facts::{Facts, cfield, client, is_essential, regex};
use super::network::{check_hostname, check_port_mappings};
use super::resources::check_container_resources;
use super::volumes::{check_mount_points, check_volumes_from};
use crate::ModelError;

/// Rule 6 for container `i`, its checks in the module's order; the first broken one is returned.
pub(super) fn check_container(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    check_container_resources(f, i)?;
    check_port_mappings(f, i)?;
    check_links(f, i)?;
    check_hostname(f, i)?;
    check_depends_on(f, i)?;
    check_volumes_from(f, i)?;
    check_mount_points(f, i)?;

    if let Some(hc) = &c.health_check {
        check_health_check(i, name, hc)?;
    }

    for (j, u) in c.ulimits.iter().flatten().enumerate() {
        if let (Some(soft), Some(hard)) = (u.soft_limit, u.hard_limit)
            && soft > hard
        {
            return Err(client(
                cfield(i, &format!("ulimits[{j}].softLimit")),
                format!(
                    "Invalid 'ulimits' setting for container '{name}': softLimit ({soft}) must be \
                         less than or equal to hardLimit ({hard})."
                ),
            ));
        }
    }

    for (j, e) in c.environment.iter().flatten().enumerate() {
        if e.name.as_deref().is_none_or(str::is_empty) {
            return Err(client(
                cfield(i, &format!("environment[{j}].name")),
                format!(
                    "Invalid 'environment' setting for container '{name}': variable names cannot be empty."
                ),
            ));
        }
    }

    for (j, e) in c.environment_files.iter().flatten().enumerate() {
        if e.r#type.is_none() {
            return Err(client(
                cfield(i, &format!("environmentFiles[{j}].type")),
                format!(
                    "Invalid 'environmentFiles' setting for container '{name}': type must be 's3'."
                ),
            ));
        }
        if !e.value.as_deref().is_some_and(|v| s3_arn_re().is_match(v)) {
            return Err(client(
                cfield(i, &format!("environmentFiles[{j}].value")),
                format!(
                    "Invalid 'environmentFiles' setting for container '{name}': value must be the ARN \
                     of an Amazon S3 object."
                ),
            ));
        }
    }

    if let Some(t) = c.stop_timeout
        && !(0..=120).contains(&t)
    {
        return Err(client(
            cfield(i, "stopTimeout"),
            format!(
                "Invalid 'stopTimeout' setting for container '{name}': must be between 0 and 120 seconds."
            ),
        ));
    }
    if let Some(t) = c.start_timeout
        && t < 0
    {
        return Err(client(
            cfield(i, "startTimeout"),
            format!("Invalid 'startTimeout' setting for container '{name}': must be 0 or greater."),
        ));
    }
    Ok(())
}

/// Rule 6 for a container's `healthCheck`: a runnable command and every timing in its range.
fn check_health_check(
    i: usize,
    name: &str,
    hc: &berth_wire::ecs::HealthCheck,
) -> Result<(), ModelError> {
    let field = |rest: &str| cfield(i, &format!("healthCheck.{rest}"));
    let command = hc.command.as_deref().unwrap_or(&[]);
    let ok = match command.first().map(String::as_str) {
        Some("NONE") => true,
        Some("CMD" | "CMD-SHELL") => command.len() >= 2,
        _ => false,
    };
    if !ok {
        return Err(client(
            field("command"),
            format!(
                "Invalid 'healthCheck' setting for container '{name}': command must start with 'CMD' \
                 or 'CMD-SHELL' followed by the command to run, or be 'NONE'."
            ),
        ));
    }
    let ranges: [(&str, Option<i32>, i32, i32); 4] = [
        ("interval", hc.interval, 5, 300),
        ("timeout", hc.timeout, 2, 120),
        ("retries", hc.retries, 1, 10),
        ("startPeriod", hc.start_period, 0, 300),
    ];
    for (member, value, lo, hi) in ranges {
        if let Some(v) = value
            && !(lo..=hi).contains(&v)
        {
            return Err(client(
                field(member),
                format!(
                    "Invalid 'healthCheck' setting for container '{name}': {member} must be between \
                         {lo} and {hi}, got {v}."
                ),
            ));
        }
    }
    Ok(())
}

/// Rule 9: at least one container is essential (`essential` defaults to true).
pub(super) fn check_essential(f: &Facts) -> Result<(), ModelError> {
    if !f.containers.iter().any(is_essential) {
        return Err(client(
            "containerDefinitions",
            "Task definition must have at least one essential container.",
        ));
    }
    Ok(())
}

/// An Amazon S3 object ARN (`arn:aws:s3:::bucket/key`).
fn s3_arn_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^arn:aws[a-z-]*:s3:::[^/]+/.+$")
}
