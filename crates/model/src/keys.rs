//! The store's key layout: every record Berth persists and every index over them.
//!
//! Invariants:
//! * Every listing an API or controller needs is a prefix or range scan of one of these
//!   layouts; a secondary index is a key written in the same transaction as its record.
//! * Family names never contain `!`, which sorts before every character a family may hold, so
//!   `ecs/taskdefs/<family>!<revision>` lists in (family, revision) order exactly as ECS sorts.
//! * Revisions are zero-padded to 10 digits so key order is numeric order.

use crate::lifecycle::{DesiredTaskStatus, TaskStatus};

/// `ecs/clusters/<name>`: an ACTIVE (or PROVISIONING) cluster.
pub fn cluster(name: &str) -> String {
    format!("{CLUSTERS}{name}")
}
/// Prefix of every live cluster.
pub const CLUSTERS: &str = "ecs/clusters/";
/// `ecs/clusters-inactive/<name>`: a deleted cluster, still describable as INACTIVE.
pub fn inactive_cluster(name: &str) -> String {
    format!("ecs/clusters-inactive/{name}")
}

/// Prefix of a cluster's container instances (written by the agent issue's registration).
pub fn cluster_instances_prefix(cluster: &str) -> String {
    format!("ecs/instances/{cluster}/")
}
/// Prefix of a cluster's tasks (any status) that are not yet STOPPED.
pub fn cluster_live_tasks_prefix(cluster: &str) -> String {
    format!("ecs/tasks-live/{cluster}/")
}
/// Prefix of a cluster's tasks whose last status is `status` (RUNNING, PENDING...).
pub fn cluster_tasks_by_status_prefix(cluster: &str, status: TaskStatus) -> String {
    format!("ecs/tasks-by-status/{cluster}/{status}/")
}
/// Prefix of a cluster's ACTIVE or DRAINING services.
pub fn cluster_services_prefix(cluster: &str) -> String {
    format!("ecs/services/{cluster}/")
}
/// `ecs/services/<cluster>/<name>`: an ACTIVE or DRAINING service.
pub fn service(cluster: &str, name: &str) -> String {
    format!("ecs/services/{cluster}/{name}")
}
/// `ecs/services-short-arn/<cluster>/<name>`: the live service was created with the
/// `serviceLongArnFormat` account setting disabled, so its ARN is `service/<name>`. Written and
/// deleted with the service's live record; ListServices reads it to show each ARN as minted.
pub fn service_short_arn(cluster: &str, name: &str) -> String {
    format!("ecs/services-short-arn/{cluster}/{name}")
}
/// Prefix of [`service_short_arn`] for one cluster.
pub fn services_short_arn_prefix(cluster: &str) -> String {
    format!("ecs/services-short-arn/{cluster}/")
}
/// `ecs/services-inactive/<cluster>/<name>`: a deleted service, still describable as INACTIVE
/// until a new service takes its name.
pub fn inactive_service(cluster: &str, name: &str) -> String {
    format!("ecs/services-inactive/{cluster}/{name}")
}
/// `ecs/service-tasks/<cluster>/<service>/<task id>`: a task of the service, from placement
/// until the service controller has accounted for its STOPPED state; the value is the id of
/// its deployment.
pub fn service_task(cluster: &str, service: &str, task_id: &str) -> String {
    format!("ecs/service-tasks/{cluster}/{service}/{task_id}")
}
/// Prefix of [`service_task`] for one service.
pub fn service_tasks_prefix(cluster: &str, service: &str) -> String {
    format!("ecs/service-tasks/{cluster}/{service}/")
}

/// Prefix of every task definition revision.
pub const TASK_DEFINITIONS: &str = "ecs/taskdefs/";
/// `ecs/taskdefs/<family>!<revision:010>`: one revision (see the module header for `!`).
pub fn task_definition(family: &str, revision: i32) -> String {
    format!("{TASK_DEFINITIONS}{family}!{revision:010}")
}
/// Prefix of every revision of exactly `family`.
pub fn task_definition_family_revisions(family: &str) -> String {
    format!("{TASK_DEFINITIONS}{family}!")
}
/// `ecs/taskdefs-by-status/<STATUS>/<family>!<revision:010>`: index by status.
pub fn task_definition_by_status(status: &str, family: &str, revision: i32) -> String {
    format!("ecs/taskdefs-by-status/{status}/{family}!{revision:010}")
}
/// Prefix of the status index for `status`.
pub fn task_definitions_by_status_prefix(status: &str) -> String {
    format!("ecs/taskdefs-by-status/{status}/")
}
/// `ecs/taskdef-families/<family>`: the family's revision counter and its ACTIVE count.
pub fn task_definition_family(family: &str) -> String {
    format!("{TASK_DEFINITION_FAMILIES}{family}")
}
/// Prefix of every family record.
pub const TASK_DEFINITION_FAMILIES: &str = "ecs/taskdef-families/";
/// `ecs/taskdef-families-by-status/<ACTIVE|INACTIVE>/<family>`: families with / without an
/// ACTIVE revision.
pub fn task_definition_family_by_status(status: &str, family: &str) -> String {
    format!("ecs/taskdef-families-by-status/{status}/{family}")
}
/// Prefix of the family status index for `status`.
pub fn task_definition_families_by_status_prefix(status: &str) -> String {
    format!("ecs/taskdef-families-by-status/{status}/")
}

/// Parses the `(family, revision)` out of any task definition key or index key.
pub fn parse_task_definition_key(key: &str) -> Option<(&str, i32)> {
    let tail = key.rsplit('/').next()?;
    let (family, rev) = tail.rsplit_once('!')?;
    Some((family, rev.parse().ok()?))
}

/// The family of a revision key or a revision status-index key; `None` for any other key.
pub fn task_definition_family_of(key: &str) -> Option<&str> {
    let tail = key
        .strip_prefix(TASK_DEFINITIONS)
        .or_else(|| key.strip_prefix("ecs/taskdefs-by-status/")?.split_once('/').map(|x| x.1))?;
    Some(tail.rsplit_once('!')?.0)
}

/// Prefix of the records of every region but the server's default one: region `r`'s ECS
/// keys are `regions/<r>/ecs/...`, laid out as the default region's `ecs/...` are (the
/// server reaches them through a prefixing view of the store, `berth_store::View`).
pub const REGIONS: &str = "regions/";
/// `regions/<region>/`: where a non-default region's records live.
pub fn region_prefix(region: &str) -> String {
    format!("{REGIONS}{region}/")
}

/// `iam/access-keys/<AKID>`: an access key and the principal it authenticates.
pub fn access_key(access_key_id: &str) -> String {
    format!("{ACCESS_KEYS}{access_key_id}")
}
/// Prefix of every access key.
pub const ACCESS_KEYS: &str = "iam/access-keys/";
/// The id of the administrator key created on first start.
pub const BOOTSTRAP_ADMIN_KEY: &str = "iam/bootstrap-admin-key";

/// `iam/join-tokens/<id>`: a join token (its secret only as a SHA-256 hash).
pub fn join_token(id: &str) -> String {
    format!("{JOIN_TOKENS}{id}")
}
/// Prefix of every join token.
pub const JOIN_TOKENS: &str = "iam/join-tokens/";

/// `ecs/instances/<cluster>/<id>`: a registered container instance (ACTIVE or DRAINING).
/// (Its prefix, [`cluster_instances_prefix`], is what cluster counts and DeleteCluster read.)
pub fn container_instance(cluster: &str, id: &str) -> String {
    format!("{INSTANCES}{cluster}/{id}")
}
/// `ecs/instances-by-ec2/<cluster>/<ec2 instance id>`: the id of the live instance registered
/// for that EC2 instance id (re-registration finds it with one read). Exists exactly while the
/// instance record does.
pub fn instance_by_ec2(cluster: &str, ec2_instance_id: &str) -> String {
    format!("{INSTANCES_BY_EC2}{cluster}/{ec2_instance_id}")
}
/// Prefix of every [`instance_by_ec2`] key.
pub const INSTANCES_BY_EC2: &str = "ecs/instances-by-ec2/";
/// `ecs/instances-inactive/<cluster>/<id>`: a deregistered instance, still describable.
pub fn inactive_container_instance(cluster: &str, id: &str) -> String {
    format!("ecs/instances-inactive/{cluster}/{id}")
}
/// `ecs/instance-heartbeat/<id>`: when the instance's agent last polled (written by polls
/// only, so heartbeats never contend with placements on the instance record).
pub fn instance_heartbeat(id: &str) -> String {
    format!("{INSTANCE_HEARTBEATS}{id}")
}
/// Prefix of every heartbeat key.
pub const INSTANCE_HEARTBEATS: &str = "ecs/instance-heartbeat/";
/// Prefix of every instance's task index.
pub const INSTANCE_TASKS: &str = "ecs/instance-tasks/";
/// Prefix of every live instance record.
pub const INSTANCES: &str = "ecs/instances/";

/// `(cluster, id)` of a live instance record's key.
pub fn parse_container_instance_key(key: &str) -> Option<(&str, &str)> {
    let (cluster, id) = key.strip_prefix(INSTANCES)?.split_once('/')?;
    (!id.contains('/')).then_some((cluster, id))
}
/// The instance id of a heartbeat key.
pub fn parse_instance_heartbeat_key(key: &str) -> Option<&str> {
    key.strip_prefix(INSTANCE_HEARTBEATS)
}
/// `(instance id, task id)` of an instance task index key.
pub fn parse_instance_task_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(INSTANCE_TASKS)?.split_once('/')
}

/// The instance id of a desired-state marker key.
pub fn parse_instance_desired_key(key: &str) -> Option<&str> {
    key.strip_prefix("ecs/instance-desired/")
}

/// `ecs/instance-desired/<id>`: written (empty) in every transaction that changes the desired
/// state of a task on the instance; its `mod_revision` is the agent channel's `version`.
pub fn instance_desired(id: &str) -> String {
    format!("ecs/instance-desired/{id}")
}
/// `ecs/instance-tasks/<instance id>/<task id>`: the tasks placed on an instance that are not
/// yet STOPPED; the value is the task's last status ([`instance_task_value`]).
pub fn instance_task(instance_id: &str, task_id: &str) -> String {
    format!("{INSTANCE_TASKS}{instance_id}/{task_id}")
}
/// The value of an [`instance_task`] key: the task's last status as ECS spells it (read back
/// with [`TaskStatus::from_bytes`]).
pub fn instance_task_value(last_status: TaskStatus) -> Vec<u8> {
    last_status.as_str().as_bytes().to_vec()
}
/// Prefix of [`instance_task`] for one instance.
pub fn instance_tasks_prefix(instance_id: &str) -> String {
    format!("ecs/instance-tasks/{instance_id}/")
}

/// `ecs/tasks/<cluster>/<id>`: a task, whatever its status (stopped tasks stay describable).
pub fn task(cluster: &str, id: &str) -> String {
    format!("ecs/tasks/{cluster}/{id}")
}
/// `ecs/tasks-live/<cluster>/<id>`: present while the task's known status is not STOPPED.
pub fn live_task(cluster: &str, id: &str) -> String {
    format!("{}{id}", cluster_live_tasks_prefix(cluster))
}
/// `ecs/tasks-by-status/<cluster>/<STATUS>/<id>`: index by last (known) status.
pub fn task_by_status(cluster: &str, status: TaskStatus, id: &str) -> String {
    format!("{}{id}", cluster_tasks_by_status_prefix(cluster, status))
}
/// `ecs/tasks-by-desired/<cluster>/<RUNNING|STOPPED>/<id>`: index by desired status, which
/// ListTasks filters on (default RUNNING).
pub fn task_by_desired(cluster: &str, desired: DesiredTaskStatus, id: &str) -> String {
    format!("{}{id}", tasks_by_desired_prefix(cluster, desired))
}
/// Prefix of [`task_by_desired`].
pub fn tasks_by_desired_prefix(cluster: &str, desired: DesiredTaskStatus) -> String {
    format!("ecs/tasks-by-desired/{cluster}/{desired}/")
}
/// `ecs/run-tokens/<cluster>/<clientToken>`: what a RunTask with this token asked and started
/// ([`crate::records::RunTokenRecord`]).
pub fn run_token(cluster: &str, token: &str) -> String {
    format!("ecs/run-tokens/{cluster}/{token}")
}
/// `ecs/attributes/<cluster>/<targetId>/<name>`: custom attributes set with PutAttributes on
/// targets other than container instances (instances keep theirs in their record).
pub fn attribute(cluster: &str, target_id: &str, name: &str) -> String {
    format!("ecs/attributes/{cluster}/{target_id}/{name}")
}

/// Prefix of every account setting a principal set explicitly.
pub const ACCOUNT_SETTINGS: &str = "ecs/account-settings/";
/// `ecs/account-settings/<principal ARN>!<setting name>`: one principal's setting (the root
/// user's are the account's defaults). IAM ARNs never contain `!`.
pub fn account_setting(principal_arn: &str, name: &str) -> String {
    format!("{ACCOUNT_SETTINGS}{principal_arn}!{name}")
}

/// Prefix of every capacity provider record (ACTIVE, and INACTIVE after deletion).
pub const CAPACITY_PROVIDERS: &str = "ecs/capacity-providers/";
/// `ecs/capacity-providers/<name>`: a capacity provider the account created.
pub fn capacity_provider(name: &str) -> String {
    format!("{CAPACITY_PROVIDERS}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_definition_keys_sort_like_ecs() {
        // ECS lists by family name, then numeric revision.
        let mut keys = [
            task_definition("web-x", 1),
            task_definition("web", 10),
            task_definition("web", 9),
            task_definition("web_1", 1),
            task_definition("webapp", 2),
        ];
        keys.sort();
        let got: Vec<_> = keys.iter().map(|k| parse_task_definition_key(k).unwrap()).collect();
        assert_eq!(got, vec![("web", 9), ("web", 10), ("web-x", 1), ("web_1", 1), ("webapp", 2)]);
    }

    #[test]
    fn family_of_revision_and_status_keys() {
        assert_eq!(task_definition_family_of(&task_definition("web-1", 3)), Some("web-1"));
        let idx = task_definition_by_status("INACTIVE", "web_x", 12);
        assert_eq!(task_definition_family_of(&idx), Some("web_x"));
        assert_eq!(task_definition_family_of(&task_definition_family("web")), None);
        assert_eq!(task_definition_family_of(&cluster("web")), None);
    }

    #[test]
    fn instance_keys_parse_back() {
        assert_eq!(parse_container_instance_key(&container_instance("c", "i1")), Some(("c", "i1")));
        assert_eq!(parse_container_instance_key(&inactive_container_instance("c", "i1")), None);
        assert_eq!(parse_instance_heartbeat_key(&instance_heartbeat("i1")), Some("i1"));
        assert_eq!(parse_instance_task_key(&instance_task("i1", "t1")), Some(("i1", "t1")));
        assert_eq!(parse_instance_task_key(&instance_desired("i1")), None);
        assert_eq!(parse_instance_desired_key(&instance_desired("i1")), Some("i1"));
        assert_eq!(parse_instance_desired_key(&instance_heartbeat("i1")), None);
    }

    #[test]
    fn task_status_index_keys_spell_statuses_as_ecs() {
        // The key text existing stores hold: typed arguments must not change it.
        assert_eq!(
            task_by_status("c", TaskStatus::Running, "t1"),
            "ecs/tasks-by-status/c/RUNNING/t1"
        );
        assert_eq!(
            cluster_tasks_by_status_prefix("c", TaskStatus::Stopped),
            "ecs/tasks-by-status/c/STOPPED/"
        );
        assert_eq!(
            task_by_desired("c", DesiredTaskStatus::Stopped, "t1"),
            "ecs/tasks-by-desired/c/STOPPED/t1"
        );
        assert_eq!(
            tasks_by_desired_prefix("c", DesiredTaskStatus::Running),
            "ecs/tasks-by-desired/c/RUNNING/"
        );
        assert_eq!(instance_task_value(TaskStatus::Pending), b"PENDING");
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::from_bytes(&instance_task_value(s)), Some(s));
        }
    }
}
