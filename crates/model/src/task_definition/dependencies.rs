//! Relations between containers: `links` and `dependsOn` (rule 6) and their cycles (rule 7).
//! Every edge names another container of the task (never itself); a `dependsOn` condition
//! must be one its target can reach (`HEALTHY` needs a health check, `COMPLETE`/`SUCCESS` a
//! non-essential target); and neither graph has a cycle, which the error spells out
//! (`a -> b -> a`) on the first container of the cycle.

use berth_wire::ecs::{ContainerCondition, NetworkMode};

use super::facts::{Facts, cfield, client, is_essential, non_empty};
use crate::ModelError;

/// `links` of container `i`: only in `bridge` mode; each names another container.
pub(super) fn check_links(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    if non_empty(&c.links) && f.mode != NetworkMode::Bridge {
        return Err(client(
            cfield(i, "links"),
            format!(
                "Invalid setting for container '{name}'. Links are not supported when \
                 networkMode={}; they are only supported with the bridge network mode.",
                f.mode.as_str()
            ),
        ));
    }
    for (j, link) in c.links.iter().flatten().enumerate() {
        let (target, alias) =
            link.split_once(':').map_or((link.as_str(), None), |(t, a)| (t, Some(a)));
        let known = f.index.get(target).is_some_and(|&t| t != i);
        if target.is_empty() || alias == Some("") || !known {
            return Err(client(
                cfield(i, &format!("links[{j}]")),
                format!(
                    "Invalid link '{link}' for container '{name}': links must name another container \
                     of the task definition, as 'name' or 'name:alias'."
                ),
            ));
        }
    }
    Ok(())
}

/// `dependsOn` of container `i`: each names another container with a condition that
/// container can meet.
pub(super) fn check_depends_on(f: &Facts, i: usize) -> Result<(), ModelError> {
    let c = &f.containers[i];
    let name = f.name(i);
    for (j, d) in c.depends_on.iter().flatten().enumerate() {
        let field = |rest: &str| cfield(i, &format!("dependsOn[{j}].{rest}"));
        let target = d.container_name.as_deref().unwrap_or("");
        let Some(&t) = f.index.get(target) else {
            return Err(client(
                field("containerName"),
                format!(
                    "Invalid 'dependsOn' setting for container '{name}': container '{target}' is not \
                     defined in the task definition."
                ),
            ));
        };
        if t == i {
            return Err(client(
                field("containerName"),
                format!(
                    "Invalid 'dependsOn' setting for container '{name}': a container cannot depend on itself."
                ),
            ));
        }
        let Some(condition) = d.condition else {
            return Err(client(
                field("condition"),
                format!(
                    "Invalid 'dependsOn' setting for container '{name}': the dependency on container \
                     '{target}' must have a condition."
                ),
            ));
        };
        let tc = &f.containers[t];
        match condition {
            ContainerCondition::Healthy if tc.health_check.is_none() => {
                return Err(client(
                    field("condition"),
                    format!(
                        "Invalid 'dependsOn' setting for container '{name}': dependency on container \
                         '{target}' with condition HEALTHY requires a healthCheck on '{target}'."
                    ),
                ));
            }
            ContainerCondition::Complete | ContainerCondition::Success if is_essential(tc) => {
                return Err(client(
                    field("condition"),
                    format!(
                        "Invalid 'dependsOn' setting for container '{name}': condition {} cannot be \
                         set on essential container '{target}'.",
                        condition.as_str()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A cycle in the directed graph `edges` (node → targets), as the nodes along it with the first
/// repeated at the end.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        path.push(n);
        for &t in &edges[n] {
            match state[t] {
                0 => {
                    if let Some(c) = visit(t, edges, state, path) {
                        return Some(c);
                    }
                }
                1 => {
                    let start = path.iter().position(|&p| p == t).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(t);
                    return Some(cycle);
                }
                _ => {}
            }
        }
        path.pop();
        state[n] = 2;
        None
    }
    let mut state = vec![0u8; edges.len()];
    for n in 0..edges.len() {
        if state[n] == 0
            && let Some(c) = visit(n, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The error for `cycle` in the graph of `member`, on the cycle's first container.
fn cycle_error(f: &Facts, cycle: &[usize], member: &str, what: &str) -> ModelError {
    let names: Vec<&str> = cycle.iter().map(|&i| f.name(i)).collect();
    client(
        cfield(cycle[0], member),
        format!("Invalid '{member}' setting: {what} form a cycle: {}.", names.join(" -> ")),
    )
}

/// Rule 7: the `links` graph has no cycle.
pub(super) fn check_links_acyclic(f: &Facts) -> Result<(), ModelError> {
    let edges: Vec<Vec<usize>> = f
        .containers
        .iter()
        .map(|c| {
            c.links
                .iter()
                .flatten()
                .filter_map(|l| f.index.get(l.split(':').next().unwrap_or("")).copied())
                .collect()
        })
        .collect();
    match find_cycle(&edges) {
        Some(cycle) => Err(cycle_error(f, &cycle, "links", "container links")),
        None => Ok(()),
    }
}

/// Rule 7: the `dependsOn` graph has no cycle.
pub(super) fn check_depends_on_acyclic(f: &Facts) -> Result<(), ModelError> {
    let edges: Vec<Vec<usize>> = f
        .containers
        .iter()
        .map(|c| {
            c.depends_on
                .iter()
                .flatten()
                .filter_map(|d| f.index.get(d.container_name.as_deref().unwrap_or("")).copied())
                .collect()
        })
        .collect();
    match find_cycle(&edges) {
        Some(cycle) => Err(cycle_error(f, &cycle, "dependsOn", "container dependencies")),
        None => Ok(()),
    }
}
