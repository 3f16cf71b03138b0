//! The stored EC2 instance and its lifecycle.
//!
//! Contract:
//! * An instance is one record, `ec2/instances/<id>` ([`key`]) in its region's view of the
//!   store, serialised as JSON like every other record.
//! * Its private address is taken in its subnet exactly as an ENI's is: the key
//!   `ec2/eni-ips/<subnet>/<ip>` ([`berth_model::network::keys::eni_ip`]) holds the instance
//!   id, written in the same transaction as the record with compare-and-set on absence
//!   ([`create_txn`]) and deleted in the transaction that records the termination
//!   ([`terminated_txn`]). Instance and task addresses therefore never collide.
//! * [`InstanceState`] is ordered (`Pending < Running < Stopping < Stopped < ShuttingDown <
//!   Terminated`, which is also the order in which they may last), with EC2's codes. Which
//!   moves are legal is [`InstanceState::can_transition`]; what an API request or the agent's
//!   coming and going does is one function each ([`InstanceState::on_stop`], [`on_start`],
//!   [`on_terminate`], [`on_agent_up`], [`on_agent_gone`]), and every result they return is
//!   a legal transition (tested over every state). Nothing leaves `Terminated`.
//! * The agent of an instance runs exactly while its state is `Pending` or `Running`
//!   ([`InstanceState::agent_should_run`]); the launcher's reconcile reads only that.
//!
//! [`on_start`]: InstanceState::on_start
//! [`on_terminate`]: InstanceState::on_terminate
//! [`on_agent_up`]: InstanceState::on_agent_up
//! [`on_agent_gone`]: InstanceState::on_agent_gone

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use berth_model::network::{Ipv4Net, Tag, allocate_ip, keys as net_keys};
use berth_store::{Revision, Txn};
use serde::{Deserialize, Serialize};

use crate::InstanceError;

/// Prefix of every instance record.
pub const INSTANCES: &str = "ec2/instances/";

/// `ec2/instances/<id>`.
pub fn key(instance_id: &str) -> String {
    format!("{INSTANCES}{instance_id}")
}

/// A new instance id: `i-` and 17 lowercase hex digits.
pub fn new_instance_id() -> String {
    berth_model::network::new_id("i")
}

/// Whether `id` is EC2-shaped (`i-` and 8 or 17 lowercase hex digits).
pub fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 17 || h.len() == 8)
            && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// An EC2 instance's state, with EC2's names and codes, in lifecycle order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::ShuttingDown,
        Self::Terminated,
    ];

    /// EC2's name (`shutting-down`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
        }
    }

    /// EC2's code (the low byte of `InstanceState.Code`).
    pub fn code(self) -> i32 {
        match self {
            Self::Pending => 0,
            Self::Running => 16,
            Self::ShuttingDown => 32,
            Self::Terminated => 48,
            Self::Stopping => 64,
            Self::Stopped => 80,
        }
    }

    /// Parses EC2's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the state may move from `self` to `to` (the same state is no move: `false`).
    pub fn can_transition(self, to: Self) -> bool {
        use InstanceState::*;
        matches!(
            (self, to),
            (Pending, Running)
                | (Pending, ShuttingDown)
                | (Running, Stopping)
                | (Running, ShuttingDown)
                | (Stopping, Stopped)
                | (Stopping, ShuttingDown)
                | (Stopped, Pending)
                | (Stopped, ShuttingDown)
                | (ShuttingDown, Terminated)
        )
    }

    /// Whether the instance's agent should be running.
    pub fn agent_should_run(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }

    /// StopInstances: `Some(next)` to move, `None` when already stopping or stopped (EC2
    /// answers with the state unchanged), an error where EC2 refuses.
    pub fn on_stop(self, id: &str) -> Result<Option<Self>, InstanceError> {
        match self {
            Self::Running => Ok(Some(Self::Stopping)),
            Self::Stopping | Self::Stopped => Ok(None),
            _ => Err(incorrect(id, self, "stopped")),
        }
    }

    /// StartInstances: stopped instances start again (pending); pending and running ones are
    /// left as they are.
    pub fn on_start(self, id: &str) -> Result<Option<Self>, InstanceError> {
        match self {
            Self::Stopped => Ok(Some(Self::Pending)),
            Self::Pending | Self::Running => Ok(None),
            _ => Err(incorrect(id, self, "started")),
        }
    }

    /// TerminateInstances: anything not yet shutting down starts to; terminating twice is
    /// harmless.
    pub fn on_terminate(self) -> Option<Self> {
        match self {
            Self::ShuttingDown | Self::Terminated => None,
            _ => Some(Self::ShuttingDown),
        }
    }

    /// The agent registered: a pending instance is running.
    pub fn on_agent_up(self) -> Option<Self> {
        (self == Self::Pending).then_some(Self::Running)
    }

    /// The agent is gone (its process exited): a stopping instance is stopped, a shutting
    /// down one terminated. A pending or running instance's agent that died is restarted by
    /// the launcher instead: no change.
    pub fn on_agent_gone(self) -> Option<Self> {
        match self {
            Self::Stopping => Some(Self::Stopped),
            Self::ShuttingDown => Some(Self::Terminated),
            _ => None,
        }
    }
}

fn incorrect(id: &str, state: InstanceState, verb: &str) -> InstanceError {
    InstanceError::IncorrectInstanceState {
        instance_id: id.to_string(),
        message: format!(
            "This instance '{id}' is not in a state from which it can be {verb} (it is {}).",
            state.as_str()
        ),
    }
}

/// `ec2/instances/<id>`: an agent-backed EC2 instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    /// `i-` + 17 hex digits.
    pub id: String,
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub private_ip: Ipv4Addr,
    pub state: InstanceState,
    /// Why it last changed state (`User initiated (2026-12-01 10:00:00 GMT)`), as EC2's
    /// `StateTransitionReason`.
    #[serde(default)]
    pub state_reason: String,
    /// Epoch seconds of the last (re)start: EC2's `LaunchTime`.
    pub launch_time: f64,
    /// Epoch seconds of the last state change (terminated instances are forgotten an hour
    /// after, as EC2 does).
    pub state_changed_at: f64,
    /// Base64, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub key_name: Option<String>,
    /// The cluster its UserData names (`default` when none).
    pub ecs_cluster: String,
    /// Set once its agent registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    /// The Auto Scaling group that launched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<String>,
    /// The launch template (id, version) it was launched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<(String, String)>,
    /// Auto Scaling's scale-in protection.
    #[serde(default)]
    pub protected_from_scale_in: bool,
    /// RunInstances' `ClientToken` (idempotency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The reservation (one RunInstances call) it belongs to: `r-` + 17 hex digits.
    #[serde(default)]
    pub reservation_id: String,
    /// Its security groups (ids, in the subnet's VPC).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Container instance attributes its agent registers beyond its UserData's (an Auto
    /// Scaling group's capacity provider: `ecs.capacity-provider`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecs_attributes: Vec<(String, String)>,
}

impl InstanceRecord {
    /// Moves to `to` at `now`, refusing an illegal move (a programming error in the caller:
    /// the `on_*` functions only return legal ones).
    pub fn transition(&mut self, to: InstanceState, now: f64, reason: &str) -> Result<(), String> {
        if !self.state.can_transition(to) {
            return Err(format!(
                "instance {}: {} -> {} is not a legal transition",
                self.id,
                self.state.as_str(),
                to.as_str()
            ));
        }
        if to == InstanceState::Pending {
            self.launch_time = now;
            self.container_instance_arn = None;
        }
        self.state = to;
        self.state_changed_at = now;
        self.state_reason = reason.to_string();
        Ok(())
    }

    /// `ip-172-31-1-5.ec2.internal`.
    pub fn private_dns_name(&self, region: &str) -> String {
        berth_model::network::private_dns_name(self.private_ip, region)
    }
}

/// What RunInstances (or an Auto Scaling launch) asks for one instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LaunchParams {
    pub image_id: String,
    pub instance_type: String,
    /// Base64, as the request carries it.
    pub user_data: Option<String>,
    pub tags: Vec<Tag>,
    pub key_name: Option<String>,
    pub client_token: Option<String>,
    pub auto_scaling_group: Option<String>,
    pub launch_template: Option<(String, String)>,
    pub protected_from_scale_in: bool,
    /// See [`InstanceRecord::ecs_attributes`].
    pub ecs_attributes: Vec<(String, String)>,
}

impl LaunchParams {
    /// Checks what RunInstances validates before anything is written: the image id's
    /// shape, the instance type, the UserData. Returns the cluster the UserData names.
    pub fn validate(&self) -> Result<String, InstanceError> {
        crate::image::validate_image_id(&self.image_id)?;
        crate::types::lookup(&self.instance_type)?;
        Ok(crate::user_data::parse_base64(self.user_data.as_deref())?.cluster)
    }
}

/// A new `pending` instance of `params` in `subnet` at `ip` (chosen with [`choose_ip`]),
/// launched at `now`; commit it with [`create_txn`].
pub fn new_record(
    params: &LaunchParams,
    subnet: &berth_model::network::SubnetRecord,
    ip: Ipv4Addr,
    now: f64,
) -> Result<InstanceRecord, InstanceError> {
    let cluster = params.validate()?;
    Ok(InstanceRecord {
        id: new_instance_id(),
        image_id: params.image_id.clone(),
        instance_type: params.instance_type.clone(),
        subnet_id: subnet.id.clone(),
        vpc_id: subnet.vpc_id.clone(),
        availability_zone: subnet.availability_zone.clone(),
        private_ip: ip,
        state: InstanceState::Pending,
        state_reason: String::new(),
        launch_time: now,
        state_changed_at: now,
        user_data: params.user_data.clone(),
        tags: params.tags.clone(),
        key_name: params.key_name.clone(),
        ecs_cluster: cluster,
        container_instance_arn: None,
        auto_scaling_group: params.auto_scaling_group.clone(),
        launch_template: params.launch_template.clone(),
        protected_from_scale_in: params.protected_from_scale_in,
        client_token: params.client_token.clone(),
        reservation_id: String::new(),
        security_groups: vec![],
        ecs_attributes: params.ecs_attributes.clone(),
    })
}

/// The first free address of subnet `subnet_id` (`cidr`) not in `taken` (the addresses under
/// [`net_keys::eni_ips_prefix`]).
pub fn choose_ip(
    subnet_id: &str,
    cidr: &str,
    taken: &BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Addr, InstanceError> {
    let net: Ipv4Net = cidr
        .parse()
        .map_err(|_| InstanceError::Launch(format!("subnet {subnet_id} has a bad CIDR {cidr}")))?;
    allocate_ip(net, taken)
        .ok_or_else(|| InstanceError::InsufficientFreeAddresses { subnet_id: subnet_id.into() })
}

/// Writes a new instance and takes its address: both only if absent (a conflict means another
/// launch or task took the address: pick again).
pub fn create_txn(rec: &InstanceRecord) -> Txn {
    let k = key(&rec.id);
    let ip = net_keys::eni_ip(&rec.subnet_id, rec.private_ip);
    Txn::new()
        .when(&k, 0)
        .when(&ip, 0)
        .put(&k, serde_json::to_vec(rec).expect("records serialise"))
        .put(ip, rec.id.clone().into_bytes())
}

/// Records an instance that reached `terminated` (read at `revision`) and releases its
/// address.
pub fn terminated_txn(rec: &InstanceRecord, revision: Revision) -> Txn {
    debug_assert_eq!(rec.state, InstanceState::Terminated);
    let k = key(&rec.id);
    Txn::new()
        .when(&k, revision)
        .put(&k, serde_json::to_vec(rec).expect("records serialise"))
        .delete(net_keys::eni_ip(&rec.subnet_id, rec.private_ip))
}

#[cfg(test)]
mod tests {
    use super::InstanceState::*;
    use super::*;

    #[test]
    fn names_codes_and_order() {
        let table = [
            (Pending, "pending", 0),
            (Running, "running", 16),
            (ShuttingDown, "shutting-down", 32),
            (Terminated, "terminated", 48),
            (Stopping, "stopping", 64),
            (Stopped, "stopped", 80),
        ];
        for (s, name, code) in table {
            assert_eq!((s.as_str(), s.code()), (name, code));
            assert_eq!(InstanceState::parse(name), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
        }
        assert!(Pending < Running && Running < Stopping && Stopped < ShuttingDown);
        assert_eq!(InstanceState::parse("Running"), None);
    }

    #[test]
    fn every_transition_pair() {
        // The legal moves, row by row (from -> the states it may move to).
        let legal: &[(InstanceState, &[InstanceState])] = &[
            (Pending, &[Running, ShuttingDown]),
            (Running, &[Stopping, ShuttingDown]),
            (Stopping, &[Stopped, ShuttingDown]),
            (Stopped, &[Pending, ShuttingDown]),
            (ShuttingDown, &[Terminated]),
            (Terminated, &[]),
        ];
        for (from, tos) in legal {
            for to in InstanceState::ALL {
                assert_eq!(from.can_transition(to), tos.contains(&to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn requests_and_agent_events_only_make_legal_moves() {
        // (state, stop, start, terminate, agent up, agent gone): the next state, None for no
        // change, "err" where EC2 refuses.
        type Row = (InstanceState, Option<Option<InstanceState>>, Option<Option<InstanceState>>);
        let requests: &[Row] = &[
            (Pending, None, Some(None)),
            (Running, Some(Some(Stopping)), Some(None)),
            (Stopping, Some(None), None),
            (Stopped, Some(None), Some(Some(Pending))),
            (ShuttingDown, None, None),
            (Terminated, None, None),
        ];
        for (s, stop, start) in requests {
            match (s.on_stop("i-1"), stop) {
                (Ok(got), Some(want)) => assert_eq!(got, *want, "stop {s:?}"),
                (Err(e), None) => assert_eq!(e.code(), "IncorrectInstanceState"),
                (got, want) => panic!("stop {s:?}: {got:?} vs {want:?}"),
            }
            match (s.on_start("i-1"), start) {
                (Ok(got), Some(want)) => assert_eq!(got, *want, "start {s:?}"),
                (Err(e), None) => assert!(e.to_string().contains("i-1")),
                (got, want) => panic!("start {s:?}: {got:?} vs {want:?}"),
            }
        }
        for s in InstanceState::ALL {
            let outcomes = [
                s.on_stop("i").ok().flatten(),
                s.on_start("i").ok().flatten(),
                s.on_terminate(),
                s.on_agent_up(),
                s.on_agent_gone(),
            ];
            for next in outcomes.into_iter().flatten() {
                assert!(s.can_transition(next), "{s:?} -> {next:?} is returned but illegal");
            }
        }
        assert_eq!(Running.on_terminate(), Some(ShuttingDown));
        assert_eq!(Terminated.on_terminate(), None);
        assert_eq!(Pending.on_agent_up(), Some(Running));
        assert_eq!(ShuttingDown.on_agent_gone(), Some(Terminated));
        assert_eq!(Running.on_agent_gone(), None, "a crashed agent is restarted, not stopped");
        let runs: Vec<_> =
            InstanceState::ALL.into_iter().filter(|s| s.agent_should_run()).collect();
        assert_eq!(runs, [Pending, Running]);
    }

    fn record() -> InstanceRecord {
        InstanceRecord {
            id: "i-0123456789abcdef0".into(),
            image_id: "ami-berth".into(),
            instance_type: "t3.micro".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "us-east-1a".into(),
            private_ip: Ipv4Addr::new(172, 31, 0, 4),
            state: Pending,
            state_reason: String::new(),
            launch_time: 1.0,
            state_changed_at: 1.0,
            user_data: None,
            tags: vec![],
            key_name: None,
            ecs_cluster: "default".into(),
            container_instance_arn: None,
            auto_scaling_group: None,
            launch_template: None,
            protected_from_scale_in: false,
            client_token: None,
            reservation_id: "r-1".into(),
            security_groups: vec![],
            ecs_attributes: vec![],
        }
    }

    #[test]
    fn record_transitions_and_keys() {
        let mut r = record();
        r.transition(Running, 2.0, "").unwrap();
        r.container_instance_arn = Some("arn".into());
        assert!(r.transition(Pending, 3.0, "").is_err(), "running -> pending is illegal");
        r.transition(Stopping, 3.0, "User initiated").unwrap();
        r.transition(Stopped, 4.0, "User initiated").unwrap();
        r.transition(Pending, 5.0, "").unwrap();
        assert_eq!((r.launch_time, r.container_instance_arn.as_deref()), (5.0, None));
        assert_eq!(key(&r.id), "ec2/instances/i-0123456789abcdef0");
        let back: InstanceRecord =
            serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.private_dns_name("us-east-1"), "ip-172-31-0-4.ec2.internal");
    }

    #[test]
    fn ids_and_addresses() {
        let id = new_instance_id();
        assert!(is_instance_id(&id), "{id}");
        assert!(is_instance_id("i-0123abcd"));
        assert!(!is_instance_id("i-0123ABCD") && !is_instance_id("sg-0123abcd"));
        let taken: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(10, 0, 0, 4)].into();
        assert_eq!(choose_ip("s", "10.0.0.0/28", &taken).unwrap(), Ipv4Addr::new(10, 0, 0, 5));
        let full: BTreeSet<Ipv4Addr> = (4..=14).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let e = choose_ip("subnet-9", "10.0.0.0/28", &full).unwrap_err();
        assert_eq!((e.code(), e.field()), ("InsufficientFreeAddressesInSubnet", "subnet-9"));
    }

    #[test]
    fn new_records_are_validated_and_pending() {
        use base64::Engine;
        // Built from JSON so a field the EC2 API adds to the record breaks only this test.
        let subnet: berth_model::network::SubnetRecord =
            serde_json::from_value(serde_json::json!({
                "id": "subnet-1", "vpc_id": "vpc-1", "cidr_block": "172.31.0.0/20",
                "availability_zone": "us-east-1a", "availability_zone_id": "use1-az1",
                "default_for_az": true, "map_public_ip_on_launch": true, "state": "available",
                "owner_id": "1", "tags": []
            }))
            .unwrap();
        let ud = base64::engine::general_purpose::STANDARD.encode("ECS_CLUSTER=web");
        let p = LaunchParams {
            image_id: crate::image::BERTH_IMAGE_ID.into(),
            instance_type: "t3.micro".into(),
            user_data: Some(ud),
            ..Default::default()
        };
        let ip = Ipv4Addr::new(172, 31, 0, 4);
        let r = new_record(&p, &subnet, ip, 7.0).unwrap();
        assert!(is_instance_id(&r.id));
        assert_eq!((r.state, r.ecs_cluster.as_str(), r.vpc_id.as_str()), (Pending, "web", "vpc-1"));
        assert_eq!(
            (r.availability_zone.as_str(), r.private_ip, r.launch_time),
            ("us-east-1a", ip, 7.0)
        );
        let bad = |f: fn(&mut LaunchParams)| {
            let mut q = p.clone();
            f(&mut q);
            new_record(&q, &subnet, ip, 0.0).unwrap_err().code()
        };
        assert_eq!(bad(|q| q.instance_type = "t3.mega".into()), "InvalidParameterValue");
        assert_eq!(bad(|q| q.image_id = "img-1".into()), "InvalidAMIID.Malformed");
        assert_eq!(bad(|q| q.user_data = Some("%%%".into())), "InvalidParameterValue");
    }

    #[tokio::test]
    async fn create_takes_the_address_once_and_termination_releases_it() {
        use berth_store::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = berth_store::SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let a = record();
        assert!(store.txn(create_txn(&a)).await.unwrap().committed());
        let mut b = record();
        b.id = "i-0000000000000000b".into();
        assert!(
            !store.txn(create_txn(&b)).await.unwrap().committed(),
            "a second instance cannot take the same address"
        );
        let ip_key = net_keys::eni_ip("subnet-1", a.private_ip);
        let got = store.get(&ip_key).await.unwrap().unwrap();
        assert_eq!(&got.value[..], a.id.as_bytes());
        let rev = store.get(&key(&a.id)).await.unwrap().unwrap().mod_revision;
        let mut t = a.clone();
        t.state = Terminated;
        assert!(store.txn(terminated_txn(&t, rev)).await.unwrap().committed());
        assert!(store.get(&ip_key).await.unwrap().is_none());
        assert!(store.txn(create_txn(&b)).await.unwrap().committed(), "the address is free again");
    }
}
