//! Identity (rules 1 and 2 of the module's list): the `family`, the number of containers, and
//! each container's name (unique within the task) and image. Names of families, containers
//! and volumes share one alphabet ([`name_re`]); every later rule may assume each container
//! has a unique, non-empty name.

use std::collections::HashSet;

use berth_wire::ecs::RegisterTaskDefinitionRequest;

use super::MAX_CONTAINERS;
use super::facts::{Facts, cfield, client, name_re};
use crate::ModelError;

/// Rule 1: `family` is set and 1-255 letters, numbers, hyphens and underscores.
pub(super) fn check_family(req: &RegisterTaskDefinitionRequest) -> Result<(), ModelError> {
    let Some(family) = req.family.as_deref() else {
        return Err(client("family", "Family must be specified."));
    };
    let len = family.chars().count();
    if !(1..=255).contains(&len) {
        return Err(client(
            "family",
            format!("Family name must be between 1 and 255 characters long, got {len}."),
        ));
    }
    if !name_re().is_match(family) {
        return Err(client(
            "family",
            "Family contains invalid characters. Up to 255 letters (uppercase and lowercase), \
             numbers, hyphens, and underscores are allowed.",
        ));
    }
    Ok(())
}

/// Rule 2: 1 to [`MAX_CONTAINERS`] containers, each with a unique valid name and an image.
pub(super) fn check_container_identities(f: &Facts) -> Result<(), ModelError> {
    if f.containers.is_empty() {
        return Err(client("containerDefinitions", "Container list cannot be empty."));
    }
    if f.containers.len() > MAX_CONTAINERS {
        return Err(client(
            "containerDefinitions",
            format!(
                "Too many containers: a task definition can have at most {MAX_CONTAINERS} containers, got {}.",
                f.containers.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in f.containers.iter().enumerate() {
        let name = match c.name.as_deref() {
            None | Some("") => {
                return Err(client(cfield(i, "name"), "Container name must be specified."));
            }
            Some(n) => n,
        };
        if !name_re().is_match(name) {
            return Err(client(
                cfield(i, "name"),
                format!(
                    "Invalid container name '{name}'. Up to 255 letters (uppercase and lowercase), \
                     numbers, hyphens, and underscores are allowed."
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(client(cfield(i, "name"), format!("Duplicate container name '{name}'.")));
        }
        match c.image.as_deref() {
            None | Some("") => {
                return Err(client(
                    cfield(i, "image"),
                    format!("Invalid setting for container '{name}'. 'image' must be specified."),
                ));
            }
            Some(img) if img.chars().count() > 255 || img.chars().any(char::is_whitespace) => {
                return Err(client(
                    cfield(i, "image"),
                    format!(
                        "Invalid 'image' setting for container '{name}'. Up to 255 characters \
                         without whitespace are allowed."
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
