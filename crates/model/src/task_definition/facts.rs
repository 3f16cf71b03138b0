//! What several rule groups share. [`Facts`] is computed once per request and leniently (an
//! unparseable task size is `None`, a missing name is ""), so it is safe on requests
//! [`validate`](super::validate) would refuse: [`build`](super::build) and
//! [`compatibilities`](super::compatibilities) rely on that. The helpers here refuse nothing
//! themselves; every error is made by [`client`], so every rule answers `ClientException` with
//! a field path rooted at the request (`containerDefinitions[i].…` via [`cfield`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use berth_wire::ecs::{ContainerDefinition, NetworkMode, RegisterTaskDefinitionRequest};
use regex::Regex;

use super::resources::{parse_task_cpu, parse_task_memory_mib};
use crate::ModelError;

/// The facts about a request that several rules need, computed leniently (an unparseable value
/// is `None`) so that [`build`](super::build) can use them too.
pub(super) struct Facts<'a> {
    pub(super) req: &'a RegisterTaskDefinitionRequest,
    pub(super) containers: &'a [ContainerDefinition],
    /// The effective network mode (`bridge` when absent).
    pub(super) mode: NetworkMode,
    pub(super) task_cpu: Option<u32>,
    pub(super) task_memory: Option<u32>,
    /// Container name → index (first occurrence).
    pub(super) index: HashMap<&'a str, usize>,
}

impl<'a> Facts<'a> {
    pub(super) fn new(req: &'a RegisterTaskDefinitionRequest) -> Self {
        let containers = req.container_definitions.as_deref().unwrap_or(&[]);
        let mut index = HashMap::new();
        for (i, c) in containers.iter().enumerate() {
            if let Some(n) = c.name.as_deref() {
                index.entry(n).or_insert(i);
            }
        }
        Facts {
            req,
            containers,
            mode: req.network_mode.unwrap_or(NetworkMode::Bridge),
            task_cpu: req.cpu.as_deref().and_then(parse_task_cpu),
            task_memory: req.memory.as_deref().and_then(parse_task_memory_mib),
            index,
        }
    }

    /// The name of container `i` for messages.
    pub(super) fn name(&self, i: usize) -> &'a str {
        self.containers[i].name.as_deref().unwrap_or("")
    }

    pub(super) fn volumes(&self) -> &'a [berth_wire::ecs::Volume] {
        self.req.volumes.as_deref().unwrap_or(&[])
    }
}

/// The path of member `rest` of container `i` (the container itself when `rest` is empty).
pub(super) fn cfield(i: usize, rest: &str) -> String {
    if rest.is_empty() {
        format!("containerDefinitions[{i}]")
    } else {
        format!("containerDefinitions[{i}].{rest}")
    }
}

/// A `ClientException`-class refusal of `field`.
pub(super) fn client(field: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::client(field, message)
}

/// The regex in `cell`, compiled from `pattern` on first use.
pub(super) fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// A family, container or volume name: 1-255 letters, numbers, hyphens, underscores.
pub(super) fn name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^[A-Za-z0-9_-]{1,255}$")
}

/// An image in a private Amazon ECR registry.
fn ecr_image_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex(&RE, r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
}

/// A private Amazon ECR image (pulled with ECR credentials).
pub(super) fn is_private_ecr(image: &str) -> bool {
    ecr_image_re().is_match(image)
}

/// A list that is present and not empty (ECS treats `[]` like absent).
pub(super) fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

/// `essential`, which defaults to true.
pub(super) fn is_essential(c: &ContainerDefinition) -> bool {
    c.essential.unwrap_or(true)
}
