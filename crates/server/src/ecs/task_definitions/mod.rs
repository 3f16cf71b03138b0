//! Task definitions: RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.
//!
//! Invariants (all kept by compare-and-set on the family record `ecs/taskdef-families/<f>`,
//! which every write to a family's revisions also writes):
//! * revisions of a family are 1, 2, 3... and never reused, whatever is deregistered/deleted;
//! * a revision's content is immutable; only its status (ACTIVE → INACTIVE →
//!   DELETE_IN_PROGRESS), those timestamps and its tags change;
//! * the status index `ecs/taskdefs-by-status/<S>/...` holds exactly one key per revision,
//!   under its current status, and the family status index holds the family under ACTIVE iff
//!   it has an ACTIVE revision.
//!
//! Reads of revisions go through [`cache::RevisionCache`], kept in step with the store's
//! change feed and invalidated synchronously by this module's own writes.

use berth_model::arn::TaskDefinitionRef;
use berth_model::records::{FamilyRecord, TaskDefinitionRecord};
use berth_model::task_definition::{self as td_rules, RegisterContext};
use berth_model::{keys, tags};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use std::sync::Arc;

use super::RequestContext;
use super::core::Core;
use crate::error;
use crate::pagination::Page;
use crate::records;

mod cache;

use cache::RevisionCache;

/// Owns task definition revisions (`ecs/taskdefs/`), families and their status indexes.
pub struct TaskDefinitions {
    core: Arc<Core>,
    cache: Arc<RevisionCache>,
}

fn unable_to_describe() -> AwsError {
    error::client("Unable to describe task definition.")
}

/// ECS's answer when RunTask, StartTask, CreateService or UpdateService name a task definition
/// that does not exist (or a family without an ACTIVE revision).
fn task_definition_not_found() -> AwsError {
    error::client("TaskDefinition not found.")
}

fn status_str(s: Option<TaskDefinitionStatus>) -> &'static str {
    s.unwrap_or(TaskDefinitionStatus::Active).as_str()
}

impl TaskDefinitions {
    pub fn new(core: Arc<Core>) -> Self {
        let cache = RevisionCache::follow(core.store.clone());
        Self { core, cache }
    }

    /// The revision a reference names (a family alone names its latest ACTIVE revision), from
    /// the cache or the store.
    async fn resolve(
        &self,
        r: &TaskDefinitionRef,
    ) -> Result<Option<Arc<TaskDefinitionRecord>>, AwsError> {
        let (family, revision) = match r {
            TaskDefinitionRef::Revision { family, revision } => (family.as_str(), *revision),
            TaskDefinitionRef::Latest { family } => match self.latest_active(family).await? {
                Some(rev) => (family.as_str(), rev),
                None => return Ok(None),
            },
        };
        self.revision(family, revision).await
    }

    /// One revision by family and number, from the cache or the store.
    async fn revision(
        &self,
        family: &str,
        revision: i32,
    ) -> Result<Option<Arc<TaskDefinitionRecord>>, AwsError> {
        if let Some(hit) = self.cache.revision(family, revision) {
            return Ok(Some(hit));
        }
        let generation = self.cache.generation();
        let key = keys::task_definition(family, revision);
        let Some((rec, _)) = records::get::<TaskDefinitionRecord>(&*self.core.store, &key).await?
        else {
            return Ok(None);
        };
        Ok(Some(self.cache.insert_revision(generation, family, revision, rec)))
    }

    /// The newest ACTIVE revision of a family.
    async fn latest_active(&self, family: &str) -> Result<Option<i32>, AwsError> {
        if let Some(hit) = self.cache.latest(family) {
            return Ok(Some(hit));
        }
        let generation = self.cache.generation();
        let prefix = format!(
            "{}{family}!",
            keys::task_definitions_by_status_prefix(TaskDefinitionStatus::Active.as_str())
        );
        let latest = self
            .core
            .store
            .range(Range::prefix(&prefix).reversed().limit(1))
            .await
            .map_err(error::store)?;
        let found = latest.first().and_then(|r| keys::parse_task_definition_key(&r.key));
        Ok(found.map(|(_, rev)| {
            self.cache.insert_latest(generation, family, rev);
            rev
        }))
    }

    /// The task definition a RunTask, StartTask, CreateService or UpdateService names,
    /// refusing what Berth cannot run (an inactive revision).
    pub(super) async fn runnable(
        &self,
        given: &str,
    ) -> Result<Arc<TaskDefinitionRecord>, AwsError> {
        let r = TaskDefinitionRef::parse(&self.core.scope, given, "taskDefinition")
            .map_err(error::model)?;
        if let TaskDefinitionRef::Latest { family } = &r
            && self.latest_active(family).await?.is_none()
        {
            return Err(task_definition_not_found());
        }
        let Some(rec) = self.resolve(&r).await? else {
            return Err(task_definition_not_found());
        };
        if rec.task_definition.status != Some(TaskDefinitionStatus::Active) {
            return Err(error::client(format!(
                "TaskDefinition is inactive: {given}. Register a new revision or run an ACTIVE one."
            )));
        }
        Ok(rec)
    }

    /// A revision by ARN whatever its status (a service keeps running the revision it was
    /// given even after it is deregistered, as ECS does); a family alone is resolved as
    /// [`Self::runnable`] does.
    pub(super) async fn by_arn(&self, arn: &str) -> Result<Arc<TaskDefinitionRecord>, AwsError> {
        let r = TaskDefinitionRef::parse(&self.core.scope, arn, "taskDefinition")
            .map_err(error::model)?;
        let TaskDefinitionRef::Revision { family, revision } = r else {
            return self.runnable(arn).await;
        };
        self.revision(&family, revision).await?.ok_or_else(task_definition_not_found)
    }

    /// Moves one revision from its current status to `to`, keeping the indexes and the family
    /// record in step. Returns the updated record, or `None` if the revision does not exist.
    async fn set_task_definition_status(
        &self,
        family: &str,
        revision: i32,
        to: TaskDefinitionStatus,
    ) -> Result<Option<TaskDefinitionRecord>, AwsError> {
        let key = keys::task_definition(family, revision);
        let family_key = keys::task_definition_family(family);
        let _serial = self.core.serialise(&family_key).await;
        let what = format!("task definition {family}:{revision}");
        let done = {
            let mut cas = records::Cas::new(&*self.core.store, &what);
            'cas: loop {
                cas.attempt().await?;
                let Some((mut rec, rev)) =
                    records::get::<TaskDefinitionRecord>(&*self.core.store, &key).await?
                else {
                    break 'cas None;
                };
                let (mut fam, fam_rev) =
                    records::get::<FamilyRecord>(&*self.core.store, &family_key)
                        .await?
                        .unwrap_or_default();
                let from = rec.task_definition.status.unwrap_or(TaskDefinitionStatus::Active);
                if from == to {
                    break 'cas Some(rec);
                }
                let now = self.core.now();
                rec.task_definition.status = Some(to);
                match to {
                    TaskDefinitionStatus::Inactive => {
                        rec.task_definition.deregistered_at = Some(now)
                    }
                    TaskDefinitionStatus::DeleteInProgress => {
                        rec.task_definition.delete_requested_at = Some(now)
                    }
                    TaskDefinitionStatus::Active => {}
                }
                let mut txn = Txn::new()
                    .when(key.clone(), rev)
                    .when(family_key.clone(), fam_rev)
                    .put(key.clone(), records::encode(&rec))
                    .delete(keys::task_definition_by_status(
                        status_str(Some(from)),
                        family,
                        revision,
                    ))
                    .put(
                        keys::task_definition_by_status(to.as_str(), family, revision),
                        Vec::new(),
                    );
                if from == TaskDefinitionStatus::Active {
                    fam.active_revisions = fam.active_revisions.saturating_sub(1);
                    if fam.active_revisions == 0 {
                        txn = txn
                            .delete(keys::task_definition_family_by_status(
                                TaskDefinitionFamilyStatus::Active.as_str(),
                                family,
                            ))
                            .put(
                                keys::task_definition_family_by_status(
                                    TaskDefinitionFamilyStatus::Inactive.as_str(),
                                    family,
                                ),
                                Vec::new(),
                            );
                    }
                    txn = txn.put(family_key.clone(), records::encode(&fam));
                }
                if cas.commit(txn).await? {
                    break 'cas Some(rec);
                }
            }
        };
        self.cache.invalidate_family(family);
        Ok(done)
    }

    /// Removes a DELETE_IN_PROGRESS revision for good (retention, once no task uses it);
    /// `false` when it is not (or no longer) DELETE_IN_PROGRESS.
    pub(super) async fn remove_deleted(
        &self,
        family: &str,
        revision: i32,
    ) -> Result<bool, AwsError> {
        let key = keys::task_definition(family, revision);
        let Some((rec, rev)) =
            records::get::<TaskDefinitionRecord>(&*self.core.store, &key).await?
        else {
            return Ok(false);
        };
        if rec.task_definition.status != Some(TaskDefinitionStatus::DeleteInProgress) {
            return Ok(false);
        }
        let status = TaskDefinitionStatus::DeleteInProgress.as_str();
        let txn = Txn::new()
            .when(key.clone(), rev)
            .delete(key)
            .delete(keys::task_definition_by_status(status, family, revision));
        let removed = records::commit(&*self.core.store, txn).await?;
        self.cache.invalidate_family(family);
        Ok(removed)
    }

    /// Tags of a task definition revision, by family and revision.
    pub(super) async fn tags(
        &self,
        family: &str,
        revision: i32,
    ) -> Result<Option<Vec<Tag>>, AwsError> {
        Ok(self.revision(family, revision).await?.map(|r| r.tags.clone()))
    }

    /// Read-modify-write of a revision's tags; `false` when the revision does not exist.
    pub(super) async fn update_tags(
        &self,
        family: &str,
        revision: i32,
        f: impl Fn(&[Tag]) -> Result<Vec<Tag>, AwsError>,
    ) -> Result<bool, AwsError> {
        let key = keys::task_definition(family, revision);
        let what = format!("task definition {family}:{revision}");
        let updated =
            records::update::<TaskDefinitionRecord, _>(&*self.core.store, &key, &what, |rec| {
                rec.tags = f(&rec.tags)?;
                Ok(())
            })
            .await;
        self.cache.invalidate_family(family);
        Ok(updated?.is_some())
    }
}

impl TaskDefinitionsApi<RequestContext> for TaskDefinitions {
    fn cached_reply(&self, op: Operation, body: &[u8]) -> CachedReply {
        if op != Operation::DescribeTaskDefinition {
            return CachedReply::Uncacheable;
        }
        let generation = self.cache.generation();
        match self.cache.reply(body) {
            Some(reply) => CachedReply::Hit(reply),
            None => CachedReply::Miss(generation),
        }
    }

    fn offer_reply(&self, op: Operation, body: &[u8], ticket: u64, reply: &[u8]) {
        if op != Operation::DescribeTaskDefinition {
            return;
        }
        let Ok(req) = serde_json::from_slice::<DescribeTaskDefinitionRequest>(body) else { return };
        let given = req.task_definition.as_deref().unwrap_or("");
        let family = match TaskDefinitionRef::parse(&self.core.scope, given, "taskDefinition") {
            Ok(
                TaskDefinitionRef::Revision { family, .. } | TaskDefinitionRef::Latest { family },
            ) => family,
            Err(_) => return,
        };
        self.cache.insert_reply(ticket, body, &family, reply);
    }

    async fn register_task_definition(
        &self,
        ctx: &RequestContext,
        input: RegisterTaskDefinitionRequest,
    ) -> Result<RegisterTaskDefinitionResponse, AwsError> {
        td_rules::validate(&input).map_err(error::model)?;
        // The expressions are parsed now so that a malformed one fails here, pointing at the
        // error, rather than at every later RunTask.
        berth_scheduler::wire::task_definition_constraints(
            input.placement_constraints.as_deref().unwrap_or(&[]),
        )
        .map_err(|e| error::invalid(e.to_string()))?;
        let tags = input.tags.clone().unwrap_or_default();
        tags::validate(&tags, "tags").map_err(error::model)?;
        let family = input.family.clone().unwrap_or_default();
        let family_key = keys::task_definition_family(&family);
        let _serial = self.core.serialise(&family_key).await;
        let what = format!("task definition family {family}");
        let rec = {
            let mut cas = records::Cas::new(&*self.core.store, &what);
            'cas: loop {
                cas.attempt().await?;
                let (fam, fam_rev) = records::get::<FamilyRecord>(&*self.core.store, &family_key)
                    .await?
                    .unwrap_or_default();
                let revision = fam.latest_revision + 1;
                let task_definition = td_rules::build(
                    &input,
                    &RegisterContext {
                        region: &self.core.scope.region,
                        account_id: &self.core.scope.account_id,
                        revision,
                        registered_at: self.core.now(),
                        registered_by: &ctx.principal.arn,
                    },
                );
                let rec = TaskDefinitionRecord { task_definition, tags: tags.clone() };
                let new_fam = FamilyRecord {
                    latest_revision: revision,
                    active_revisions: fam.active_revisions + 1,
                };
                let mut txn = Txn::new()
                    .when(family_key.clone(), fam_rev)
                    .when(keys::task_definition(&family, revision), 0)
                    .put(family_key.clone(), records::encode(&new_fam))
                    .put(keys::task_definition(&family, revision), records::encode(&rec))
                    .put(
                        keys::task_definition_by_status(
                            TaskDefinitionStatus::Active.as_str(),
                            &family,
                            revision,
                        ),
                        Vec::new(),
                    );
                if fam.active_revisions == 0 {
                    txn = txn
                        .put(
                            keys::task_definition_family_by_status(
                                TaskDefinitionFamilyStatus::Active.as_str(),
                                &family,
                            ),
                            Vec::new(),
                        )
                        .delete(keys::task_definition_family_by_status(
                            TaskDefinitionFamilyStatus::Inactive.as_str(),
                            &family,
                        ));
                }
                if cas.commit(txn).await? {
                    break 'cas rec;
                }
            }
        };
        self.cache.invalidate_family(&family);
        tracing::debug!(request_id = %ctx.request_id, family, revision = rec.task_definition.revision, "registered task definition");
        Ok(RegisterTaskDefinitionResponse {
            task_definition: Some(rec.task_definition),
            tags: Some(rec.tags),
        })
    }

    async fn describe_task_definition(
        &self,
        _ctx: &RequestContext,
        input: DescribeTaskDefinitionRequest,
    ) -> Result<DescribeTaskDefinitionResponse, AwsError> {
        let given = input.task_definition.as_deref().unwrap_or("");
        let r = TaskDefinitionRef::parse(&self.core.scope, given, "taskDefinition")
            .map_err(error::model)?;
        let Some(rec) = self.resolve(&r).await? else {
            return Err(unable_to_describe());
        };
        let with_tags = input.include.unwrap_or_default().contains(&TaskDefinitionField::Tags);
        Ok(DescribeTaskDefinitionResponse {
            task_definition: Some(rec.task_definition.clone()),
            // As ECS answers: `tags` is always there, empty unless `include` asks for TAGS.
            tags: Some(if with_tags { rec.tags.clone() } else { vec![] }),
        })
    }

    async fn list_task_definitions(
        &self,
        _ctx: &RequestContext,
        input: ListTaskDefinitionsRequest,
    ) -> Result<ListTaskDefinitionsResponse, AwsError> {
        let status = input.status.unwrap_or(TaskDefinitionStatus::Active);
        let mut prefix = keys::task_definitions_by_status_prefix(status.as_str());
        if let Some(f) = input.family_prefix.as_deref().filter(|f| !f.is_empty()) {
            // ECS's `familyPrefix` here is the full family name.
            prefix.push_str(f);
            prefix.push('!');
        }
        let reverse = input.sort == Some(SortOrder::Desc);
        let page = Page::parse(input.max_results, input.next_token.as_deref(), 100, &prefix)?;
        let (keys, next) = page.keys(&*self.core.store, &prefix, reverse).await?;
        let arns = keys
            .iter()
            .filter_map(|k| keys::parse_task_definition_key(k))
            .map(|(f, rev)| self.core.scope.task_definition_arn(f, rev))
            .collect();
        Ok(ListTaskDefinitionsResponse { task_definition_arns: Some(arns), next_token: next })
    }

    async fn list_task_definition_families(
        &self,
        _ctx: &RequestContext,
        input: ListTaskDefinitionFamiliesRequest,
    ) -> Result<ListTaskDefinitionFamiliesResponse, AwsError> {
        let mut prefix = match input.status.unwrap_or(TaskDefinitionFamilyStatus::All) {
            TaskDefinitionFamilyStatus::All => keys::TASK_DEFINITION_FAMILIES.to_string(),
            s => keys::task_definition_families_by_status_prefix(s.as_str()),
        };
        let base = prefix.len();
        prefix.push_str(input.family_prefix.as_deref().unwrap_or(""));
        let page = Page::parse(input.max_results, input.next_token.as_deref(), 100, &prefix)?;
        let (keys, next) = page.keys(&*self.core.store, &prefix, false).await?;
        let families = keys.iter().map(|k| k[base..].to_string()).collect();
        Ok(ListTaskDefinitionFamiliesResponse { families: Some(families), next_token: next })
    }

    async fn deregister_task_definition(
        &self,
        _ctx: &RequestContext,
        input: DeregisterTaskDefinitionRequest,
    ) -> Result<DeregisterTaskDefinitionResponse, AwsError> {
        let given = input.task_definition.as_deref().unwrap_or("");
        let r = TaskDefinitionRef::parse(&self.core.scope, given, "taskDefinition")
            .map_err(error::model)?;
        let TaskDefinitionRef::Revision { family, revision } = r else {
            return Err(error::client(
                "taskDefinition must name a revision: use family:revision or the full ARN.",
            ));
        };
        let Some(rec) = self
            .set_task_definition_status(&family, revision, TaskDefinitionStatus::Inactive)
            .await?
        else {
            return Err(error::client(format!(
                "The specified task definition does not exist: {family}:{revision}."
            )));
        };
        if rec.task_definition.status == Some(TaskDefinitionStatus::DeleteInProgress) {
            return Err(error::client(format!(
                "The task definition {family}:{revision} is being deleted."
            )));
        }
        Ok(DeregisterTaskDefinitionResponse { task_definition: Some(rec.task_definition) })
    }

    async fn delete_task_definitions(
        &self,
        _ctx: &RequestContext,
        input: DeleteTaskDefinitionsRequest,
    ) -> Result<DeleteTaskDefinitionsResponse, AwsError> {
        let given = input.task_definitions.unwrap_or_default();
        if given.is_empty() || given.len() > 10 {
            return Err(error::invalid(
                "taskDefinitions must name between 1 and 10 task definitions.",
            ));
        }
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for g in &given {
            let fail = |reason: &str, detail: Option<String>| Failure {
                arn: Some(g.clone()),
                reason: Some(reason.to_string()),
                detail,
            };
            let r = match TaskDefinitionRef::parse(&self.core.scope, g, "taskDefinitions") {
                Ok(TaskDefinitionRef::Revision { family, revision }) => (family, revision),
                Ok(TaskDefinitionRef::Latest { .. }) => {
                    failures.push(fail(
                        "INVALID_PARAMETER",
                        Some("Name a revision: family:revision or the full ARN.".into()),
                    ));
                    continue;
                }
                Err(e) => {
                    failures.push(fail("INVALID_PARAMETER", Some(e.to_string())));
                    continue;
                }
            };
            let (family, revision) = r;
            let key = keys::task_definition(&family, revision);
            match records::get::<TaskDefinitionRecord>(&*self.core.store, &key).await? {
                None => failures
                    .push(fail("MISSING", Some("The task definition does not exist.".into()))),
                Some((rec, _))
                    if rec.task_definition.status == Some(TaskDefinitionStatus::Active)
                        || rec.task_definition.status.is_none() =>
                {
                    failures.push(fail(
                        "TASK_DEFINITION_ACTIVE",
                        Some(
                            "The task definition is ACTIVE: deregister it before deleting it."
                                .into(),
                        ),
                    ))
                }
                Some(_) => {
                    if let Some(rec) = self
                        .set_task_definition_status(
                            &family,
                            revision,
                            TaskDefinitionStatus::DeleteInProgress,
                        )
                        .await?
                    {
                        done.push(rec.task_definition);
                    }
                }
            }
        }
        Ok(DeleteTaskDefinitionsResponse { task_definitions: Some(done), failures: Some(failures) })
    }
}

#[cfg(test)]
mod tests {
    use berth_wire::ecs::*;

    use crate::ecs::testing::*;

    #[tokio::test]
    async fn a_cached_describe_reply_follows_deregistration_and_new_revisions() {
        let h = Harness::new();
        let ctx = h.ctx();
        let ecs = &h.ecs;
        task_definition(ecs, &ctx, "web").await;
        let describe = async |body: &str| {
            let out = dispatch(ecs, &ctx, Operation::DescribeTaskDefinition, body.as_bytes()).await;
            serde_json::from_slice::<serde_json::Value>(&out.unwrap()).unwrap()
        };
        let latest = r#"{"taskDefinition":"web"}"#;
        let first = r#"{"taskDefinition":"web:1"}"#;
        assert_eq!(describe(latest).await["taskDefinition"]["revision"], 1);
        let cached = ecs
            .task_definitions()
            .cached_reply(Operation::DescribeTaskDefinition, latest.as_bytes());
        assert!(matches!(cached, CachedReply::Hit(_)), "the second read is served from the cache");
        assert_eq!(describe(first).await["taskDefinition"]["status"], "ACTIVE");

        task_definition(ecs, &ctx, "web").await;
        assert_eq!(describe(latest).await["taskDefinition"]["revision"], 2);
        let dereg = DeregisterTaskDefinitionRequest { task_definition: Some("web:1".into()) };
        ecs.task_definitions().deregister_task_definition(&ctx, dereg).await.unwrap();
        assert_eq!(describe(first).await["taskDefinition"]["status"], "INACTIVE");
        let other = ecs
            .task_definitions()
            .cached_reply(Operation::DescribeTaskDefinition, br#"{"taskDefinition":"web:1"}"#);
        assert!(matches!(other, CachedReply::Hit(_)));
        let none = ecs.task_definitions().cached_reply(Operation::ListTaskDefinitions, b"{}");
        assert_eq!(none, CachedReply::Uncacheable);
    }
}
