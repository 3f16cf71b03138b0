//! A [`HostLauncher`] that runs nothing and records every call, for controller and server
//! tests. A stopped agent stays [`Phase::Stopping`] until [`FakeLauncher::exit`] (or at once
//! with [`FakeLauncher::stop_immediately`]); [`FakeLauncher::crash`] makes an agent vanish
//! as a crashed process would.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{AgentSpec, HostLauncher, Phase, RunningAgent};
use crate::InstanceError;

/// A call the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Start(AgentSpec),
    Stop(String),
}

#[derive(Default)]
struct Inner {
    agents: BTreeMap<String, RunningAgent>,
    calls: Vec<Call>,
    next_pid: u32,
}

/// The recording fake.
#[derive(Default)]
pub struct FakeLauncher {
    inner: Mutex<Inner>,
    stop_immediately: bool,
}

impl FakeLauncher {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake whose agents exit as soon as they are stopped.
    pub fn stop_immediately() -> Self {
        Self { stop_immediately: true, ..Self::default() }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("fake lock").calls.clone()
    }

    /// The stopping agent of `instance_id` exits.
    pub fn exit(&self, instance_id: &str) {
        let mut g = self.inner.lock().expect("fake lock");
        if g.agents.get(instance_id).is_some_and(|a| a.phase == Phase::Stopping) {
            g.agents.remove(instance_id);
        }
    }

    /// The agent of `instance_id` dies on its own, whatever its phase.
    pub fn crash(&self, instance_id: &str) {
        self.inner.lock().expect("fake lock").agents.remove(instance_id);
    }
}

impl HostLauncher for FakeLauncher {
    fn start(&self, spec: &AgentSpec) -> Result<(), InstanceError> {
        let mut g = self.inner.lock().expect("fake lock");
        g.calls.push(Call::Start(spec.clone()));
        if g.agents.contains_key(&spec.instance_id) {
            return Err(InstanceError::Launch(format!(
                "an agent of {} is already running",
                spec.instance_id
            )));
        }
        g.next_pid += 1;
        let pid = Some(g.next_pid);
        g.agents.insert(
            spec.instance_id.clone(),
            RunningAgent { spec: spec.clone(), phase: Phase::Running, pid },
        );
        Ok(())
    }

    fn stop(&self, instance_id: &str) -> Result<(), InstanceError> {
        let mut g = self.inner.lock().expect("fake lock");
        g.calls.push(Call::Stop(instance_id.to_string()));
        if self.stop_immediately {
            g.agents.remove(instance_id);
        } else if let Some(a) = g.agents.get_mut(instance_id) {
            a.phase = Phase::Stopping;
        }
        Ok(())
    }

    fn running(&self) -> Vec<RunningAgent> {
        self.inner.lock().expect("fake lock").agents.values().cloned().collect()
    }
}
