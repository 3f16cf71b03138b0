//! The placement rules both placers share, so that [`crate::ClusterState`] and
//! [`crate::reference`] cannot disagree on them: what a task needs ([`Needs`]), why an instance
//! refuses it (the eligibility checks, in ECS's order, each giving the first failure reason of
//! the crate docs' table), what a placed task takes from its instance, and the `random`
//! strategy's key (a pure hash, so plans are reproducible from the request's seed).

use std::collections::BTreeSet;

use crate::{BinpackField, Constraint, InstanceSnapshot, TaskRequirements, reason};

/// A task's needs, normalised once per request.
pub(crate) struct Needs<'r> {
    pub cpu: i64,
    pub memory_mib: i64,
    pub tcp: Vec<u16>,
    pub udp: Vec<u16>,
    pub attributes: &'r [String],
}

impl<'r> Needs<'r> {
    pub(crate) fn new(r: &'r TaskRequirements) -> Self {
        let set = |v: &[u16]| -> Vec<u16> {
            let s: BTreeSet<u16> = v.iter().copied().collect();
            s.into_iter().collect()
        };
        Self {
            cpu: r.cpu.max(0),
            memory_mib: r.memory_mib.max(0),
            tcp: set(&r.host_ports_tcp),
            udp: set(&r.host_ports_udp),
            attributes: &r.required_attributes,
        }
    }

    pub(crate) fn of(&self, f: BinpackField) -> i64 {
        match f {
            BinpackField::Cpu => self.cpu,
            BinpackField::Memory => self.memory_mib,
        }
    }
}

/// The first reason `s` refuses a task before constraints: agent, attributes, resources.
pub(crate) fn resource_refusal(s: &InstanceSnapshot, n: &Needs<'_>) -> Option<&'static str> {
    if !s.agent_connected {
        return Some(reason::AGENT);
    }
    if !n.attributes.iter().all(|a| has_attribute(s, a)) {
        return Some(reason::ATTRIBUTE);
    }
    if n.cpu > s.remaining.cpu {
        return Some(reason::RESOURCE_CPU);
    }
    if n.memory_mib > s.remaining.memory_mib {
        return Some(reason::RESOURCE_MEMORY);
    }
    if n.tcp.iter().any(|p| s.used_ports_tcp.contains(p)) {
        return Some(reason::RESOURCE_PORTS);
    }
    if n.udp.iter().any(|p| s.used_ports_udp.contains(p)) {
        return Some(reason::RESOURCE_PORTS_UDP);
    }
    None
}

/// Whether `s` carries the required attribute `name`: by name, or for host access attributes
/// by [`berth_model::host_access::satisfied`] (`…cap-add.ALL`, a host path's parent).
pub(crate) fn has_attribute(s: &InstanceSnapshot, name: &str) -> bool {
    berth_model::host_access::satisfied(name, |a| s.attributes.contains_key(a))
}

/// The reason constraint `c` refuses `s` for a task of `group`, if it does.
pub(crate) fn constraint_refusal(
    s: &InstanceSnapshot,
    c: &Constraint,
    group: &str,
) -> Option<&'static str> {
    match c {
        Constraint::MemberOf { expression } => (!expression.eval(s)).then_some(reason::MEMBER_OF),
        Constraint::DistinctInstance => (s.task_groups.get(group).copied().unwrap_or(0) > 0)
            .then_some(reason::DISTINCT_INSTANCE),
    }
}

/// Takes a task from `s`.
pub(crate) fn consume_snapshot(s: &mut InstanceSnapshot, n: &Needs<'_>, group: &str) {
    s.remaining.cpu -= n.cpu;
    s.remaining.memory_mib -= n.memory_mib;
    s.used_ports_tcp.extend(&n.tcp);
    s.used_ports_udp.extend(&n.udp);
    *s.task_groups.entry(group.to_string()).or_default() += 1;
}

/// The `random` strategy's key: a splitmix64 hash of (seed, task index, instance position).
pub(crate) fn random_key(seed: u64, task_index: u32, slot: u32) -> i64 {
    let mut z = seed
        ^ (u64::from(task_index)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (u64::from(slot)).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}
