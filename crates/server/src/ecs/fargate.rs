//! Fargate on Berth: tasks of launch type FARGATE (or of a FARGATE / FARGATE_SPOT capacity
//! provider share) run on Berth-managed capacity, the hosts of the Fargate pool.
//!
//! The pool's design: every pool host's agent (`berth agent --fargate`, and `berth up`'s
//! second local agent) registers in one hidden cluster, [`POOL_CLUSTER`], like any instance.
//! That cluster is never listed or described, cannot be created by a user, and so its
//! instances are never any user cluster's container instances (ListContainerInstances,
//! DescribeContainerInstances and `registeredContainerInstancesCount` only ever read the
//! user's cluster). A Fargate task of any cluster `C` is stored in `C` (its ARN, indexes and
//! service index are `C`'s, as for any task) but placed on a pool instance: the placement
//! executor decides it on the pool's cached state and reserves it on the pool instance's
//! record with the same compare-and-set as any placement. The one bridge between the two
//! clusters is the pool index, `ecs/fargate-tasks/<task id>` -> `C`, written with the task and
//! removed with its record, through which the pool agent's poll finds its tasks and its
//! reports (which name the pool cluster) reach them. Any cluster name works, with no
//! registration per cluster.
//!
//! Fargate tasks show `launchType FARGATE`, `capacityProviderName` (FARGATE or
//! FARGATE_SPOT), `platformVersion` (`1.4.0` for LATEST or unset), `platformFamily`
//! (`Linux`), the subnet's `availabilityZone`, and no `containerInstanceArn`, as ECS shows
//! them. A Fargate task that finds no pool capacity waits in PROVISIONING (desired RUNNING)
//! and is placed by the provisioning pass ([`crate::ecs::placement`]'s `provision_pending`)
//! once capacity appears, or stops after [`PROVISIONING_TIMEOUT_SECS`] with ECS's capacity
//! message ([`CAPACITY_UNAVAILABLE`]).

use berth_wire::AwsError;
use berth_wire::ecs::*;

use crate::error;

// FARGATE_SPOT capacity and the Spot-to-Fargate fallback (beyond ECS).
//
// * Spot capacity, per region: `ecs/fargate/spot-capacity` (absent: available). `berth spot
//   capacity --unavailable` (the admin API's `/berth/admin/v1/spot/capacity`) takes it away,
//   as AWS does when it has no Spot capacity: FARGATE_SPOT tasks are then not placed, they
//   wait in PROVISIONING (and stop after PROVISIONING_TIMEOUT_SECS with ECS's capacity
//   reason) like any Fargate task without capacity; `--available` gives it back.
// * The fallback, a cluster tag (ECS's UpdateClusterSettings only knows containerInsights):
//   `berth:fargate-spot-fallback=enabled` on the cluster. While Spot capacity is unavailable,
//   a service's FARGATE_SPOT share is then placed on FARGATE instead, each such task tagged
//   `berth:fargate-spot-fallback=FARGATE_SPOT`, with a service event saying so. Once Spot
//   capacity returns, a steady service replaces those tasks one at a time (one per pass:
//   the fallback task is stopped, and the strategy's split starts its replacement on
//   FARGATE_SPOT), again with an event.

/// The store key of the region's Spot capacity ([`SpotCapacity`]).
pub const SPOT_CAPACITY: &str = "ecs/fargate/spot-capacity";
/// The cluster tag (value `enabled`) and the fallback tasks' tag (value `FARGATE_SPOT`).
pub const FALLBACK_TAG: &str = "berth:fargate-spot-fallback";
/// The Spot capacity provider.
pub const SPOT: &str = "FARGATE_SPOT";

/// Whether FARGATE_SPOT has capacity in the region.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpotCapacity {
    pub available: bool,
    pub changed_at: f64,
}

/// Whether FARGATE_SPOT tasks can be placed now (no record: yes).
pub async fn spot_available(store: &dyn berth_store::Store) -> Result<bool, AwsError> {
    Ok(crate::records::get::<SpotCapacity>(store, SPOT_CAPACITY)
        .await?
        .is_none_or(|(c, _)| c.available))
}

/// Sets the region's Spot capacity (fault injection).
pub async fn set_spot_available(
    store: &dyn berth_store::Store,
    available: bool,
    now: f64,
) -> Result<(), AwsError> {
    let rec = SpotCapacity { available, changed_at: now };
    crate::records::commit(
        store,
        berth_store::Txn::new().put(SPOT_CAPACITY, crate::records::encode(&rec)),
    )
    .await?;
    Ok(())
}

/// Whether a cluster's tags enable the fallback.
pub fn fallback_enabled(cluster_tags: &[Tag]) -> bool {
    cluster_tags.iter().any(|t| {
        t.key.as_deref() == Some(FALLBACK_TAG)
            && t.value.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("enabled"))
    })
}

/// Whether a task runs on FARGATE in place of FARGATE_SPOT.
pub fn is_fallback_task(t: &Task) -> bool {
    t.tags.iter().flatten().any(|g| g.key.as_deref() == Some(FALLBACK_TAG))
}

/// The tag a fallback task carries.
pub fn fallback_task_tag() -> Tag {
    Tag { key: Some(FALLBACK_TAG.into()), value: Some(SPOT.into()) }
}

/// The hidden cluster the Fargate pool's hosts register in (reserved: CreateCluster refuses
/// it, ListClusters and DescribeClusters never show it).
pub const POOL_CLUSTER: &str = "berth-fargate-pool";
/// The platform version Berth's Fargate tasks run (`LATEST` resolves to it).
pub const PLATFORM_VERSION: &str = "1.4.0";
/// The platform family of Berth's Fargate tasks.
pub const PLATFORM_FAMILY: &str = "Linux";
/// How long a Fargate task may wait in PROVISIONING for pool capacity, in seconds.
pub const PROVISIONING_TIMEOUT_SECS: f64 = 300.0;
/// ECS's stoppedReason for a Fargate task that never found capacity.
pub const CAPACITY_UNAVAILABLE: &str = "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// Prefix of the pool index.
pub const POOL_TASKS: &str = "ecs/fargate-tasks/";
/// `ecs/fargate-tasks/<task id>`: the cluster of a Fargate task (the value).
pub fn pool_task(task_id: &str) -> String {
    format!("{POOL_TASKS}{task_id}")
}
/// `ecs/fargate-provisioning/<cluster>/<task id>`: a Fargate task waiting in PROVISIONING.
pub fn provisioning(cluster: &str, task_id: &str) -> String {
    format!("{PROVISIONING}{cluster}/{task_id}")
}
/// Prefix of every waiting Fargate task.
pub const PROVISIONING: &str = "ecs/fargate-provisioning/";

/// Whether `cluster` is the pool's.
pub fn is_pool(cluster: &str) -> bool {
    cluster == POOL_CLUSTER
}

/// Whether a capacity provider is Fargate's.
pub fn is_fargate_provider(name: &str) -> bool {
    berth_scheduler::capacity::is_fargate(name)
}

/// Whether a stored task is a Fargate task.
pub fn is_fargate_task(t: &Task) -> bool {
    t.launch_type == Some(LaunchType::Fargate)
}

/// The platform version a Fargate RunTask / CreateService asks for, resolved: `LATEST` or
/// unset is [`PLATFORM_VERSION`]; any other version than Berth's is refused, as ECS refuses
/// an unknown one.
pub fn platform_version(given: Option<&str>) -> Result<String, AwsError> {
    match given {
        None | Some("LATEST") | Some(PLATFORM_VERSION) => Ok(PLATFORM_VERSION.to_string()),
        Some(other) => Err(error::invalid(format!(
            "platformVersion: '{other}' is not a valid platform version for launch type FARGATE; Berth runs {PLATFORM_VERSION} (LATEST)."
        ))),
    }
}

/// RunTask's and CreateService's check of a task definition for launch type FARGATE: its
/// `compatibilities` include FARGATE (registration derived them with ECS's Fargate rules:
/// awsvpc, a task size of Fargate's table, no host features), else ECS's
/// `InvalidParameterException`.
pub fn check_task_definition(td: &TaskDefinition) -> Result<(), AwsError> {
    let ok = td.compatibilities.iter().flatten().any(|c| *c == Compatibility::Fargate);
    if !ok {
        return Err(error::invalid("Task definition does not support launch_type FARGATE."));
    }
    if td.network_mode != Some(NetworkMode::Awsvpc) {
        return Err(error::invalid(
            "Fargate only supports network mode 'awsvpc'. The task definition's networkMode is not awsvpc.",
        ));
    }
    let cpu = td.cpu.as_deref().and_then(berth_model::task_definition::parse_task_cpu);
    let mem = td.memory.as_deref().and_then(berth_model::task_definition::parse_task_memory_mib);
    match (cpu, mem) {
        (Some(c), Some(m)) if berth_model::task_definition::fargate_memory_allowed(c, m) => Ok(()),
        _ => Err(error::client(format!(
            "No Fargate configuration exists for given values: {} CPU, {} memory. See the Amazon ECS documentation for the valid values.",
            td.cpu.as_deref().unwrap_or("(none)"),
            td.memory.as_deref().unwrap_or("(none)")
        ))),
    }
}

/// A task's size overrides must stay a Fargate size too.
pub fn check_overrides(td: &TaskDefinition, o: Option<&TaskOverride>) -> Result<(), AwsError> {
    let Some(o) = o else { return Ok(()) };
    if o.cpu.is_none() && o.memory.is_none() {
        return Ok(());
    }
    let cpu = o.cpu.as_deref().or(td.cpu.as_deref());
    let mem = o.memory.as_deref().or(td.memory.as_deref());
    let ok = matches!(
        (
            cpu.and_then(berth_model::task_definition::parse_task_cpu),
            mem.and_then(berth_model::task_definition::parse_task_memory_mib)
        ),
        (Some(c), Some(m)) if berth_model::task_definition::fargate_memory_allowed(c, m)
    );
    if !ok {
        return Err(error::invalid(format!(
            "overrides: No Fargate configuration exists for given values: {} CPU, {} memory.",
            cpu.unwrap_or("(none)"),
            mem.unwrap_or("(none)")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(cpu: &str, memory: &str) -> TaskDefinition {
        TaskDefinition {
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
            network_mode: Some(NetworkMode::Awsvpc),
            compatibilities: Some(vec![Compatibility::Ec2, Compatibility::Fargate]),
            ..Default::default()
        }
    }

    /// ECS's Fargate size table, cell by cell at its edges and steps.
    #[test]
    fn fargate_sizes_follow_ecs_table() {
        let valid: &[(&str, &[u32])] = &[
            ("256", &[512, 1024, 2048]),
            ("512", &[1024, 2048, 3072, 4096]),
            ("1024", &[2048, 3072, 5120, 8192]),
            ("2048", &[4096, 5120, 16384]),
            ("4096", &[8192, 9216, 30720]),
            ("8192", &[16384, 20480, 61440]),
            ("16384", &[32768, 40960, 122880]),
        ];
        for (cpu, mems) in valid {
            for m in *mems {
                assert!(check_task_definition(&td(cpu, &m.to_string())).is_ok(), "{cpu}/{m}");
            }
        }
        let invalid: &[(&str, u32)] = &[
            ("256", 3072),
            ("256", 256),
            ("512", 512),
            ("512", 5120),
            ("1024", 1024),
            ("1024", 9216),
            ("2048", 17408),
            ("4096", 31744),
            ("8192", 18432),
            ("8192", 65536),
            ("16384", 36864),
            ("16384", 131072),
            ("128", 512),
            ("3072", 8192),
        ];
        for (cpu, m) in invalid {
            let e = check_task_definition(&td(cpu, &m.to_string())).unwrap_err();
            assert_eq!(e.code, "ClientException", "{cpu}/{m}");
            assert!(e.message.starts_with("No Fargate configuration exists"), "{}", e.message);
        }
        // vCPU / GB spellings parse as registration parses them.
        assert!(check_task_definition(&td("1 vCPU", "2 GB")).is_ok());
    }

    #[test]
    fn only_fargate_compatible_definitions_run_on_fargate() {
        let mut ec2_only = td("256", "512");
        ec2_only.compatibilities = Some(vec![Compatibility::Ec2]);
        let e = check_task_definition(&ec2_only).unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
        assert_eq!(e.message, "Task definition does not support launch_type FARGATE.");
        assert_eq!(platform_version(None).unwrap(), "1.4.0");
        assert_eq!(platform_version(Some("LATEST")).unwrap(), "1.4.0");
        assert!(platform_version(Some("1.3.0")).is_err());
        let o = TaskOverride { memory: Some("4096".into()), ..Default::default() };
        assert!(check_overrides(&td("256", "512"), Some(&o)).is_err());
        let o = TaskOverride {
            cpu: Some("1024".into()),
            memory: Some("4096".into()),
            ..Default::default()
        };
        assert!(check_overrides(&td("256", "512"), Some(&o)).is_ok());
    }
}
