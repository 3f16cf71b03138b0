//! Account settings: PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting,
//! ListAccountSettings, and the effective value other modules act on.
//!
//! A setting is stored only where a principal set it explicitly, at
//! `ecs/account-settings/<principal ARN>!<name>` in the region's store (settings are per
//! region, as in ECS). The root user's settings are the account's defaults
//! (PutAccountSettingDefault writes them). The effective value for a principal is, in order:
//! its own setting, the root user's, then AWS's default ([`spec`]).
//!
//! Effects, decided when a resource is created (existing resources keep their ARNs, and short
//! ARNs keep resolving wherever an ARN is accepted, see `berth_model::arn::Scope::child_id`):
//! * `taskLongArnFormat`, `containerInstanceLongArnFormat`: the creator's effective value
//!   picks the id format, and so the ARN format, of new tasks and container instances
//!   (`berth_model::arn::new_resource_id`). Service tasks follow the account default.
//! * `serviceLongArnFormat`: the creator's effective value picks a new service's ARN,
//!   `service/<cluster>/<name>` or the short `service/<name>` (kept in the service record and
//!   in `keys::service_short_arn` for ListServices). Short ARNs resolve in the cluster the
//!   request names; short-ARN resources cannot be tagged, as in ECS.
//! * `containerInsights`: the `containerInsights` cluster setting of a new cluster created
//!   without one.
//! * The others (`awsvpcTrunking`, `fargateFIPSMode`,
//!   `tagResourceAuthorization`, `fargateTaskRetirementWaitPeriod`, `fargateEventWindows`,
//!   `defaultLogDriverMode`) are validated, stored and reported; what they govern (IAM tag
//!   authorization, awsvpc, Fargate, CloudWatch Logs) is not in Berth yet.
//!   `guardDutyActivate` is read-only, as in ECS.

use std::sync::Arc;

use berth_model::keys;
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::*;

use super::RequestContext;
use super::core::Core;
use crate::error;
use crate::pagination::Page;
use crate::records;

/// ListAccountSettings' largest (and default) page.
const MAX_RESULTS: usize = 10;

/// What a setting accepts and what it is when nobody set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub values: &'static [&'static str],
    /// AWS's default today.
    pub default: &'static str,
    /// Only the root user may set it (`fargateTaskRetirementWaitPeriod`).
    pub root_only: bool,
    /// Nobody may set it (`guardDutyActivate`, controlled by GuardDuty).
    pub read_only: bool,
}

/// Every setting of the model's `SettingName`, with its documented values and default.
pub fn spec(name: SettingName) -> Spec {
    const ON_OFF: &[&str] = &["enabled", "disabled"];
    let s = |values, default| Spec { values, default, root_only: false, read_only: false };
    match name {
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat => s(ON_OFF, "enabled"),
        SettingName::AwsvpcTrunking
        | SettingName::FargateFIPSMode
        | SettingName::FargateEventWindows => s(ON_OFF, "disabled"),
        SettingName::ContainerInsights => s(&["enabled", "disabled", "enhanced"], "disabled"),
        SettingName::TagResourceAuthorization => s(&["on", "off"], "on"),
        SettingName::FargateTaskRetirementWaitPeriod => {
            Spec { root_only: true, ..s(&["0", "7", "14"], "7") }
        }
        SettingName::GuardDutyActivate => Spec { read_only: true, ..s(&["on", "off"], "off") },
        SettingName::DefaultLogDriverMode => s(&["blocking", "non-blocking"], "non-blocking"),
    }
}

/// Every setting name, in the model's order (ListAccountSettings' order).
fn all_names() -> impl Iterator<Item = SettingName> {
    SettingName::VALUES.iter().filter_map(|v| serde_json::from_value(serde_json::json!(v)).ok())
}

/// Checks a value for `name` as Put and PutDefault do.
fn validate_value(name: SettingName, value: &str) -> Result<(), AwsError> {
    let sp = spec(name);
    if sp.read_only {
        return Err(error::invalid(format!(
            "name: {} is read-only; Amazon GuardDuty controls it.",
            name.as_str()
        )));
    }
    if !sp.values.contains(&value) {
        return Err(error::invalid(format!(
            "value: '{value}' is not a valid value for {}. Valid values: {}.",
            name.as_str(),
            sp.values.join(", ")
        )));
    }
    Ok(())
}

/// What kind of principal an ARN names (only these may hold settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PrincipalKind {
    Root,
    UserOrRole,
}

/// Checks `principalArn`: the root user, an IAM user or an IAM role of this account. A
/// federated (assumed-role) principal cannot hold settings, as ECS documents.
fn principal_kind(
    partition: &str,
    account: &str,
    arn: &str,
    field: &str,
) -> Result<PrincipalKind, AwsError> {
    let bad = |why: &str| error::invalid(format!("{field}: '{arn}' {why}"));
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(p), Some(svc), Some(""), Some(acct), Some(res)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("is not a valid principal ARN."));
    };
    if svc == "sts" {
        return Err(bad(
            "is a federated principal; federated users assume the account setting of the root user and can't have explicit account settings set for them.",
        ));
    }
    if svc != "iam" || p != partition {
        return Err(bad("is not a valid principal ARN."));
    }
    if acct != account {
        return Err(bad(&format!("does not belong to account {account}.")));
    }
    if res == "root" {
        return Ok(PrincipalKind::Root);
    }
    let named = |prefix: &str| {
        res.strip_prefix(prefix)
            .and_then(|r| r.rsplit('/').next())
            .is_some_and(|n| !n.is_empty() && n.len() <= 128)
    };
    if named("user/") || named("role/") {
        return Ok(PrincipalKind::UserOrRole);
    }
    Err(bad("is not a user, role or root user ARN."))
}

/// The effective setting of `name` for `principal` given what is stored for the principal
/// (`own`) and for the root user (`root`): the first that exists, else AWS's default.
fn effective(
    name: SettingName,
    root_arn: &str,
    own: Option<&Setting>,
    root: Option<&Setting>,
) -> Setting {
    own.or(root).cloned().unwrap_or_else(|| Setting {
        name: Some(name),
        value: Some(spec(name).default.to_string()),
        principal_arn: Some(root_arn.to_string()),
        r#type: Some(SettingType::AwsManaged),
    })
}

/// Owns the account settings (see the module header).
pub struct AccountSettings {
    core: Arc<Core>,
}

impl AccountSettings {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The principal a request acts for: `principalArn` (checked) or the caller.
    fn target(
        &self,
        ctx: &RequestContext,
        given: Option<&str>,
    ) -> Result<(String, PrincipalKind), AwsError> {
        let scope = &self.core.scope;
        let arn = given.unwrap_or(&ctx.principal.arn);
        let kind = match given {
            Some(a) => principal_kind(&scope.partition, &scope.account_id, a, "principalArn")?,
            None if arn == scope.account_root_arn() => PrincipalKind::Root,
            None => principal_kind(&scope.partition, &scope.account_id, arn, "principalArn")
                .unwrap_or(PrincipalKind::UserOrRole),
        };
        Ok((arn.to_string(), kind))
    }

    async fn put(
        &self,
        principal: &str,
        kind: PrincipalKind,
        name: Option<SettingName>,
        value: Option<&str>,
    ) -> Result<Setting, AwsError> {
        let name = name.ok_or_else(|| error::invalid("name: a setting name is required."))?;
        let value = value.ok_or_else(|| error::invalid("value: a value is required."))?;
        validate_value(name, value)?;
        if spec(name).root_only && kind != PrincipalKind::Root {
            return Err(error::invalid(format!(
                "principalArn: {} can only be set for the root user.",
                name.as_str()
            )));
        }
        let setting = Setting {
            name: Some(name),
            value: Some(value.to_string()),
            principal_arn: Some(principal.to_string()),
            r#type: Some(SettingType::User),
        };
        // Last writer wins, as in ECS: a put replaces whatever was set.
        let key = keys::account_setting(principal, name.as_str());
        records::commit(&*self.core.store, Txn::new().put(key, records::encode(&setting))).await?;
        Ok(setting)
    }
}

async fn stored(
    core: &Core,
    principal: &str,
    name: SettingName,
) -> Result<Option<Setting>, AwsError> {
    Ok(records::get::<Setting>(&*core.store, &keys::account_setting(principal, name.as_str()))
        .await?
        .map(|(s, _)| s))
}

/// The effective value of `name` for `principal` (`None`: the account default, for what ECS
/// creates on its own, such as service tasks).
pub(super) async fn effective_value(
    core: &Core,
    principal: Option<&str>,
    name: SettingName,
) -> Result<String, AwsError> {
    let root_arn = core.scope.account_root_arn();
    let own = match principal.filter(|p| *p != root_arn) {
        Some(p) => stored(core, p, name).await?,
        None => None,
    };
    let root = if own.is_none() { stored(core, &root_arn, name).await? } else { None };
    Ok(effective(name, &root_arn, own.as_ref(), root.as_ref()).value.unwrap_or_default())
}

/// Whether resources of a `*LongArnFormat` setting created for `principal` get long ARNs.
pub(super) async fn long_arn_format(
    core: &Core,
    principal: Option<&str>,
    name: SettingName,
) -> Result<bool, AwsError> {
    Ok(effective_value(core, principal, name).await? != "disabled")
}

impl AccountSettingsApi<RequestContext> for AccountSettings {
    async fn put_account_setting(
        &self,
        ctx: &RequestContext,
        input: PutAccountSettingRequest,
    ) -> Result<PutAccountSettingResponse, AwsError> {
        let (principal, kind) = self.target(ctx, input.principal_arn.as_deref())?;
        let setting = self.put(&principal, kind, input.name, input.value.as_deref()).await?;
        Ok(PutAccountSettingResponse { setting: Some(setting) })
    }

    async fn put_account_setting_default(
        &self,
        _ctx: &RequestContext,
        input: PutAccountSettingDefaultRequest,
    ) -> Result<PutAccountSettingDefaultResponse, AwsError> {
        let root = self.core.scope.account_root_arn();
        let setting =
            self.put(&root, PrincipalKind::Root, input.name, input.value.as_deref()).await?;
        Ok(PutAccountSettingDefaultResponse { setting: Some(setting) })
    }

    async fn delete_account_setting(
        &self,
        ctx: &RequestContext,
        input: DeleteAccountSettingRequest,
    ) -> Result<DeleteAccountSettingResponse, AwsError> {
        let name = input.name.ok_or_else(|| error::invalid("name: a setting name is required."))?;
        let (principal, _) = self.target(ctx, input.principal_arn.as_deref())?;
        let key = keys::account_setting(&principal, name.as_str());
        let mut cas = records::Cas::new(&*self.core.store, format!("account setting {key}"));
        loop {
            cas.attempt().await?;
            let Some((setting, rev)) = records::get::<Setting>(&*self.core.store, &key).await?
            else {
                return Err(error::invalid(format!(
                    "name: {} is not set for {principal}; there is nothing to delete.",
                    name.as_str()
                )));
            };
            if cas.commit(Txn::new().when(&key, rev).delete(&key)).await? {
                return Ok(DeleteAccountSettingResponse { setting: Some(setting) });
            }
        }
    }

    async fn list_account_settings(
        &self,
        ctx: &RequestContext,
        input: ListAccountSettingsRequest,
    ) -> Result<ListAccountSettingsResponse, AwsError> {
        if input.value.is_some() && input.name.is_none() {
            return Err(error::invalid(
                "value: you must also specify an account setting name to filter by value.",
            ));
        }
        const CURSOR: &str = "account-settings/";
        let page =
            Page::parse(input.max_results, input.next_token.as_deref(), MAX_RESULTS, CURSOR)?;
        let (principal, _) = self.target(ctx, input.principal_arn.as_deref())?;
        let root = self.core.scope.account_root_arn();
        let names: Vec<SettingName> = match input.name {
            Some(n) => vec![n],
            None => all_names().collect(),
        };
        // The principal's and the root user's stored settings, in one read.
        let all: Vec<Setting> = records::decode_all::<Setting>(
            self.core
                .store
                .range(Range::prefix(keys::ACCOUNT_SETTINGS))
                .await
                .map_err(error::store)?,
        )?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
        let find = |p: &str, n: SettingName| {
            all.iter().find(|s| s.principal_arn.as_deref() == Some(p) && s.name == Some(n))
        };
        let mut settings: Vec<Setting> = names
            .iter()
            .filter_map(|&n| {
                let own = find(&principal, n);
                if input.effective_settings == Some(true) {
                    Some(effective(n, &root, own, find(&root, n)))
                } else {
                    own.cloned()
                }
            })
            .filter(|s| input.value.as_ref().is_none_or(|v| s.value.as_ref() == Some(v)))
            .collect();
        if let Some(after) = page.after.as_deref().and_then(|a| a.strip_prefix(CURSOR)) {
            let at = settings.iter().position(|s| s.name.map(|n| n.as_str()) == Some(after));
            settings.drain(..at.map_or(settings.len(), |i| i + 1));
        }
        let next = (settings.len() > page.limit).then(|| {
            let last = settings[page.limit - 1].name.map(|n| n.as_str()).unwrap_or_default();
            crate::pagination::token(&format!("{CURSOR}{last}"))
        });
        settings.truncate(page.limit);
        Ok(ListAccountSettingsResponse { settings: Some(settings), next_token: next })
    }
}

#[cfg(test)]
mod tests;
