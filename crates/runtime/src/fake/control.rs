//! What tests drive the fake with: images, scripts, injected failures, exits, OOM kills,
//! health, events, and reads of what the fake holds.

use super::*;

impl FakeRuntime {
    /// Every network (the default `bridge` included), by name.
    pub fn networks(&self) -> Vec<NetworkInfo> {
        self.lock().networks.values().cloned().collect()
    }

    /// Every shared cgroup, by name.
    pub fn cgroups(&self) -> Vec<CgroupSpec> {
        self.lock().cgroups.values().cloned().collect()
    }

    /// What [`Runtime::info`] reports.
    pub fn set_info(&self, info: RuntimeInfo) {
        self.lock().info = info;
    }

    /// Makes `reference` present locally; returns its info (a fresh deterministic id).
    pub fn add_image(&self, reference: &str) -> ImageInfo {
        let mut st = self.lock();
        add_image_locked(&mut st, reference)
    }

    /// Makes every later pull of `reference` fail with `message`.
    pub fn fail_pull(&self, reference: &str, message: &str) {
        self.lock().pull_failures.insert(normalize_reference(reference), message.to_string());
    }

    /// Scripts the behaviour of containers created (later) from `image`.
    pub fn script(&self, image: &str, script: Script) {
        self.lock().scripts.insert(normalize_reference(image), script);
    }

    /// Makes the next call of `op` fail with `error`; several queue up in order.
    pub fn fail_next(&self, op: Op, error: RuntimeError) {
        self.lock().failures.entry(op).or_default().push_back(error);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls of one operation so far.
    pub fn calls_of(&self, op: Op) -> Vec<Call> {
        self.lock().calls.iter().filter(|c| c.op() == op).cloned().collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The spec a container (by id or name) was created with.
    pub fn spec(&self, id: &str) -> Option<ContainerSpec> {
        let st = self.lock();
        find(&st, id).map(|k| st.containers[&k].spec.clone())
    }

    /// Ids of all existing containers, in creation order.
    pub fn container_ids(&self) -> Vec<String> {
        self.lock().containers.keys().cloned().collect()
    }

    /// The volumes that exist.
    pub fn volumes(&self) -> Vec<VolumeSpec> {
        self.lock().volumes.values().cloned().collect()
    }

    /// Container `id` writes `text` as one line (to stderr when `stderr`), stamped one
    /// microsecond after its previous line on the fake clock. Returns false if it does not
    /// exist.
    pub fn push_log(&self, id: &str, text: &str, stderr: bool) -> bool {
        {
            let mut st = self.lock();
            let Some(key) = find(&st, id) else { return false };
            let base = (BASE_TIME + st.clock) * 1_000_000_000;
            let lines = st.logs.entry(key).or_default();
            let timestamp_ns = lines.last().map_or(base, |l| (l.timestamp_ns + 1000).max(base));
            lines.push(crate::LogLine { timestamp_ns, stderr, text: text.to_string() });
        }
        self.notify();
        true
    }

    /// The follow streams ([`Runtime::follow_logs`]) of container `id` opened so far stop
    /// delivering lines and stay open, as Docker 20.10's json-file follower sometimes does
    /// under a fast writer; follows opened later work.
    pub fn stall_follows(&self, id: &str) {
        let mut st = self.lock();
        if let Some(key) = find(&st, id) {
            *st.follow_stalls.entry(key).or_default() += 1;
        }
    }

    /// Makes a running container exit with `code` (as if its process ended). Returns false if
    /// it does not exist or is not running.
    pub fn exit(&self, id: &str, code: i64) -> bool {
        let done = {
            let mut st = self.lock();
            match find(&st, id) {
                Some(key) => exit_locked(&mut st, &key, code, false),
                None => false,
            }
        };
        self.notify();
        done
    }

    /// Makes a running container be OOM-killed (exit 137, `oom_killed`).
    pub fn oom_kill(&self, id: &str) -> bool {
        let done = {
            let mut st = self.lock();
            match find(&st, id) {
                Some(key) => exit_locked(&mut st, &key, 137, true),
                None => false,
            }
        };
        self.notify();
        done
    }

    /// Sets a running container's health. Returns false if it does not exist or is not
    /// running.
    pub fn set_health(&self, id: &str, health: HealthStatus) -> bool {
        let mut st = self.lock();
        let Some(key) = find(&st, id) else { return false };
        let c = st.containers.get_mut(&key).expect("found");
        if !c.status.state.is_running() {
            return false;
        }
        if c.status.health != Some(health) {
            c.status.health = Some(health);
            emit(&mut st, &key, ContainerEventKind::Health(health));
        }
        true
    }

    /// Delivers an event about container `id` to every live [`Runtime::events`] stream whose
    /// labels the container carries (to every stream if no such container exists), unless
    /// events are muted. Nothing about the container changes.
    pub fn push_event(&self, id: &str, kind: ContainerEventKind) {
        let mut st = self.lock();
        match find(&st, id) {
            Some(key) => emit(&mut st, &key, kind),
            None if !st.muted => {
                let event = ContainerEvent { id: id.to_string(), kind };
                st.subscribers
                    .retain(|s| s.tx.send(Ok(RuntimeEvent::Container(event.clone()))).is_ok());
            }
            None => {}
        }
    }

    /// Ends every live [`Runtime::events`] stream with an error, as a lost connection to the
    /// engine does. Events until the next subscription are lost.
    pub fn drop_event_streams(&self) {
        let mut st = self.lock();
        for s in std::mem::take(&mut st.subscribers) {
            let _ = s.tx.send(Err(RuntimeError::Engine {
                op: "events",
                message: "connection to the engine lost".into(),
            }));
        }
    }

    /// While `muted`, events are lost instead of delivered (streams stay open), as if the
    /// engine dropped them.
    pub fn mute_events(&self, muted: bool) {
        self.lock().muted = muted;
    }

    /// How many [`Runtime::events`] streams are subscribed and still open.
    pub fn event_subscribers(&self) -> usize {
        let mut st = self.lock();
        st.subscribers.retain(|s| !s.tx.is_closed());
        st.subscribers.len()
    }
}

/// How many times the follows of container `id` were stalled (0 for an unknown container).
pub(super) fn follow_generation(st: &State, id: &str) -> u64 {
    find(st, id).and_then(|k| st.follow_stalls.get(&k).copied()).unwrap_or(0)
}
