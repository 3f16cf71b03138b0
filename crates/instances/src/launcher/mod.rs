//! Running one agent per instance, level-triggered.
//!
//! ```text
//!  instance records ──desired_specs──▶ [AgentSpec]  ┐
//!                                                    ├─ reconcile (pure) ─▶ [Action] ─apply─▶ HostLauncher
//!  HostLauncher::running() ─────────▶ [RunningAgent]┘
//! ```
//!
//! Contract:
//! * [`reconcile`] is a pure function of what should run and what runs: an instance whose
//!   agent should run ([`InstanceState::agent_should_run`]) and has none gets a start; a
//!   running agent whose instance should not run, or whose spec changed (a restarted instance
//!   of another type or cluster), gets a stop, and the start follows on a later pass once
//!   the old agent is gone; an agent already stopping is left alone. Actions come sorted by
//!   instance id, so equal inputs give equal outputs.
//! * [`HostLauncher::stop`] returns at once: the agent gets SIGTERM (or its equivalent) and,
//!   if still there after the launcher's grace period, SIGKILL; it is listed as
//!   [`Phase::Stopping`] until it has exited, then no more. An instance whose agent is not
//!   listed has none: the server moves `stopping` to `stopped` and `shutting-down` to
//!   `terminated` on that ([`InstanceState::on_agent_gone`]).
//! * An agent that exits on its own (a crash) is simply no longer listed; the next pass
//!   starts it again. The pass interval bounds how fast a crashing agent restarts.
//! * Terminating an instance is not the launcher's business beyond stopping the agent: the
//!   server first deregisters the container instance (force; its agent then stops every task
//!   and exits, as an ECS agent does when its instance is deregistered), then the stop here
//!   ends whatever is left after the grace period.
//!
//! [`InstanceState::agent_should_run`]: crate::record::InstanceState::agent_should_run
//! [`InstanceState::on_agent_gone`]: crate::record::InstanceState::on_agent_gone

pub mod fake;
pub mod process;

use std::collections::BTreeMap;

use crate::InstanceError;
use crate::record::InstanceRecord;
use crate::types::{Capacity, RESERVED_MEMORY_MIB};

/// The attribute naming the EC2 instance an agent stands for.
pub const INSTANCE_ID_ATTRIBUTE: &str = "ecs.instance-id";

/// What one instance's agent runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    pub instance_id: String,
    /// From the UserData (`default` when it names none).
    pub cluster: String,
    pub region: String,
    pub instance_type: String,
    pub availability_zone: String,
    /// The type's vCPU x 1024 and memory less the reserve.
    pub capacity: Capacity,
    /// `ecs.instance-id` first, then the UserData's `ECS_INSTANCE_ATTRIBUTES`.
    pub attributes: Vec<(String, String)>,
}

impl AgentSpec {
    /// The spec of `rec`'s agent in `region`: its type's capacity, its UserData's cluster and
    /// attributes, and the record's own attributes (which win over the UserData's). Fails only on a record the API would never have stored (an unknown type,
    /// unreadable UserData).
    pub fn for_instance(rec: &InstanceRecord, region: &str) -> Result<Self, InstanceError> {
        let ty = crate::types::lookup(&rec.instance_type)?;
        let ecs = crate::user_data::parse_base64(rec.user_data.as_deref())?;
        let capacity = ty.capacity(ecs.reserved_memory_mib.unwrap_or(RESERVED_MEMORY_MIB));
        let mut attributes = vec![(INSTANCE_ID_ATTRIBUTE.to_string(), rec.id.clone())];
        attributes.extend(ecs.attributes.into_iter().filter(|(k, _)| k != INSTANCE_ID_ATTRIBUTE));
        for (k, v) in &rec.ecs_attributes {
            attributes.retain(|(x, _)| x != k);
            attributes.push((k.clone(), v.clone()));
        }
        Ok(Self {
            instance_id: rec.id.clone(),
            cluster: ecs.cluster,
            region: region.to_string(),
            instance_type: rec.instance_type.clone(),
            availability_zone: rec.availability_zone.clone(),
            capacity,
            attributes,
        })
    }
}

/// Where a listed agent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Asked to stop; not exited yet.
    Stopping,
}

/// An agent the launcher runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningAgent {
    pub spec: AgentSpec,
    pub phase: Phase,
    /// Its process id, for a launcher that runs processes.
    pub pid: Option<u32>,
}

/// What to do to converge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Start(AgentSpec),
    /// Stop the agent of this instance.
    Stop(String),
}

/// Runs agents for instances.
pub trait HostLauncher: Send + Sync {
    /// Starts `spec`'s agent (an instance already listed is an error).
    fn start(&self, spec: &AgentSpec) -> Result<(), InstanceError>;
    /// Begins stopping the agent of `instance_id` (unknown ids and agents already stopping:
    /// nothing to do).
    fn stop(&self, instance_id: &str) -> Result<(), InstanceError>;
    /// Every agent that has not exited yet.
    fn running(&self) -> Vec<RunningAgent>;
}

/// The specs of the agents `records` want running, and the records whose spec cannot be
/// built (with why).
pub fn desired_specs<'a>(
    records: impl IntoIterator<Item = &'a InstanceRecord>,
    region: &str,
) -> (Vec<AgentSpec>, Vec<(String, InstanceError)>) {
    let mut specs = vec![];
    let mut errors = vec![];
    for r in records.into_iter().filter(|r| r.state.agent_should_run()) {
        match AgentSpec::for_instance(r, region) {
            Ok(s) => specs.push(s),
            Err(e) => errors.push((r.id.clone(), e)),
        }
    }
    (specs, errors)
}

/// What to start and stop so that exactly `desired` run (see the module docs).
pub fn reconcile(desired: &[AgentSpec], running: &[RunningAgent]) -> Vec<Action> {
    let want: BTreeMap<&str, &AgentSpec> =
        desired.iter().map(|s| (s.instance_id.as_str(), s)).collect();
    let have: BTreeMap<&str, &RunningAgent> =
        running.iter().map(|r| (r.spec.instance_id.as_str(), r)).collect();
    let mut ids: Vec<&str> = want.keys().chain(have.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut actions = vec![];
    for id in ids {
        match (want.get(id), have.get(id)) {
            (Some(spec), None) => actions.push(Action::Start((*spec).clone())),
            (Some(spec), Some(r)) if r.phase == Phase::Running && r.spec != **spec => {
                actions.push(Action::Stop(id.to_string()))
            }
            (None, Some(r)) if r.phase == Phase::Running => {
                actions.push(Action::Stop(id.to_string()))
            }
            _ => {}
        }
    }
    actions
}

/// Carries `actions` out; the failures, by instance id (the rest were done).
pub fn apply(launcher: &dyn HostLauncher, actions: &[Action]) -> Vec<(String, InstanceError)> {
    let mut failed = vec![];
    for a in actions {
        let (id, r) = match a {
            Action::Start(spec) => (&spec.instance_id, launcher.start(spec)),
            Action::Stop(id) => (id, launcher.stop(id)),
        };
        if let Err(e) = r {
            tracing::warn!(instance = %id, error = %e, "instance agent action failed");
            failed.push((id.clone(), e));
        }
    }
    failed
}

/// The state changes the launcher's view implies: an instance that is `stopping` or
/// `shutting-down` and whose agent is no longer listed becomes `stopped` or `terminated`
/// ([`InstanceState::on_agent_gone`]). `pending` becomes `running` when the agent registers,
/// which the server sees at RegisterContainerInstance, not here.
///
/// [`InstanceState::on_agent_gone`]: crate::record::InstanceState::on_agent_gone
pub fn gone<'a>(
    records: impl IntoIterator<Item = &'a InstanceRecord>,
    running: &[RunningAgent],
) -> Vec<(String, crate::record::InstanceState)> {
    records
        .into_iter()
        .filter(|r| !running.iter().any(|a| a.spec.instance_id == r.id))
        .filter_map(|r| r.state.on_agent_gone().map(|next| (r.id.clone(), next)))
        .collect()
}

/// One pass: reconcile `desired` with what `launcher` runs and carry it out.
pub fn converge(
    launcher: &dyn HostLauncher,
    desired: &[AgentSpec],
) -> (Vec<Action>, Vec<(String, InstanceError)>) {
    let actions = reconcile(desired, &launcher.running());
    let failed = apply(launcher, &actions);
    (actions, failed)
}

#[cfg(test)]
mod tests;
