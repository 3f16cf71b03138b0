//! CreateSecurityGroup, DescribeSecurityGroups, DeleteSecurityGroup, Authorize/Revoke
//! SecurityGroupIngress/Egress and DescribeSecurityGroupRules.
//!
//! Contract: group names are unique per VPC (`InvalidGroup.Duplicate`), 1-255 characters,
//! not starting with `sg-`; a group made without a VpcId goes to the default VPC, and a name
//! alone (`GroupName`, `--source-group NAME`) names a group of the default VPC (or, in a rule,
//! of the rule's own VPC). A new group allows all egress. A rule change commits with a
//! compare on the group and on every group its new rules reference (which must exist, in the
//! same VPC). The `default` group cannot be deleted (`CannotDelete`); a group cannot be
//! deleted while network interfaces are in it or another group's rule references it
//! (`DependencyViolation`). Every change rewrites the group's record, which wakes the polls of
//! the agents enforcing it (the agent channel watches `ec2/security-groups/`).

use berth_model::network::{
    self, DEFAULT_SECURITY_GROUP, IpProtocol, Peer, SecurityGroupRecord, SecurityGroupRule, keys,
};
use berth_store::{Range, Revision, Txn};
use berth_wire::AwsError;
use berth_wire::ec2::{self as wire, ResourceType};

use super::rules::{self, PeerRef};
use super::{Ec2, codes, filters, list, spec_tags, wire_tags};
use crate::ecs::RequestContext;
use crate::records::{self, Cas};

fn check_name(name: &str) -> Result<(), AwsError> {
    let n = name.chars().count();
    if n == 0 || n > 255 {
        return Err(codes::invalid("GroupName: must be 1 to 255 characters long."));
    }
    if name.to_ascii_lowercase().starts_with("sg-") {
        return Err(codes::invalid(format!(
            "Value ({name}) for parameter GroupName is invalid. Group names may not be in the format sg-*."
        )));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<(), AwsError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c);
    if d.chars().count() > 255 || !d.chars().all(ok) {
        return Err(codes::invalid(format!(
            "Value ({d}) for parameter GroupDescription is invalid: up to 255 characters of a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{{}}!$*."
        )));
    }
    Ok(())
}

impl Ec2 {
    /// The default VPC's id (an error naming `what` when there is none).
    async fn default_vpc_id(&self) -> Result<String, AwsError> {
        Ok(super::ensure_default_vpc(self.store(), self.region.name, &self.account_id).await?.id)
    }

    /// The id of group `name` in `vpc_id`.
    async fn group_id_by_name(&self, vpc_id: &str, name: &str) -> Result<Option<String>, AwsError> {
        let rec = self
            .store()
            .get(&keys::security_group_name(vpc_id, name))
            .await
            .map_err(crate::error::store)?;
        Ok(rec.map(|r| String::from_utf8_lossy(&r.value).to_string()))
    }

    /// The group a request names by id, or by name in the default VPC.
    async fn resolve_group(
        &self,
        id: Option<String>,
        name: Option<String>,
    ) -> Result<String, AwsError> {
        match (id, name) {
            (Some(id), _) => Ok(id),
            (None, Some(name)) => {
                let vpc = self.default_vpc_id().await?;
                self.group_id_by_name(&vpc, &name).await?.ok_or_else(|| {
                    codes::err(
                        "InvalidGroup.NotFound",
                        format!(
                            "The security group '{name}' does not exist in default VPC '{vpc}'"
                        ),
                    )
                })
            }
            (None, None) => Err(codes::missing("GroupId")),
        }
    }

    fn wire_group(&self, g: &SecurityGroupRecord) -> wire::SecurityGroup {
        wire::SecurityGroup {
            group_id: Some(g.id.clone()),
            group_name: Some(g.name.clone()),
            description: Some(g.description.clone()),
            owner_id: Some(g.owner_id.clone()),
            vpc_id: Some(g.vpc_id.clone()),
            ip_permissions: Some(rules::permissions(&g.ingress, &g.owner_id)),
            ip_permissions_egress: Some(rules::permissions(&g.egress, &g.owner_id)),
            tags: wire_tags(&g.tags),
            security_group_arn: Some(self.arn("security-group", &g.id)),
        }
    }

    /// Authorize: adds `perms` to group `id`'s rules in one direction.
    async fn authorize(
        &self,
        id: String,
        perms: Vec<wire::IpPermission>,
        egress: bool,
    ) -> Result<Vec<wire::SecurityGroupRule>, AwsError> {
        let wanted = rules::wanted(&perms)?;
        let store = self.store();
        let key = keys::security_group(&id);
        let mut cas = Cas::new(store, format!("security group {id}"));
        loop {
            cas.attempt().await?;
            let Some((mut g, rev)) = records::get::<SecurityGroupRecord>(store, &key).await? else {
                return Err(codes::group_not_found(&id));
            };
            let mut txn = Txn::new().when(key.clone(), rev);
            let mut added: Vec<SecurityGroupRule> = Vec::new();
            for w in &wanted {
                let peer = match &w.peer {
                    PeerRef::Cidr(c) => Peer::Cidr(c.clone()),
                    PeerRef::GroupId(other) if *other == g.id => Peer::Group(other.clone()),
                    PeerRef::GroupId(other) => {
                        let Some((o, orev)) = records::get::<SecurityGroupRecord>(
                            store,
                            &keys::security_group(other),
                        )
                        .await?
                        else {
                            return Err(codes::group_not_found(other));
                        };
                        if o.vpc_id != g.vpc_id {
                            return Err(codes::invalid(format!(
                                "The security group '{other}' is in VPC {}, not in {}: a rule references groups of its own VPC.",
                                o.vpc_id, g.vpc_id
                            )));
                        }
                        txn = txn.when(keys::security_group(other), orev);
                        Peer::Group(other.clone())
                    }
                    PeerRef::GroupName(name) => {
                        let other =
                            self.group_id_by_name(&g.vpc_id, name).await?.ok_or_else(|| {
                                codes::err(
                                    "InvalidGroup.NotFound",
                                    format!(
                                        "The security group '{name}' does not exist in VPC '{}'",
                                        g.vpc_id
                                    ),
                                )
                            })?;
                        if other != g.id {
                            let Some((_, orev)) = records::get::<SecurityGroupRecord>(
                                store,
                                &keys::security_group(&other),
                            )
                            .await?
                            else {
                                return Err(codes::group_not_found(&other));
                            };
                            txn = txn.when(keys::security_group(&other), orev);
                        }
                        Peer::Group(other)
                    }
                };
                let rule = SecurityGroupRule {
                    id: network::new_id("sgr"),
                    protocol: w.protocol,
                    from_port: w.from_port,
                    to_port: w.to_port,
                    peer,
                    description: w.description.clone(),
                };
                let existing = if egress { &g.egress } else { &g.ingress };
                if existing.iter().chain(added.iter()).any(|r| rules::same(r, &rule)) {
                    return Err(codes::err(
                        "InvalidPermission.Duplicate",
                        format!("the specified rule \"{}\" already exists", rules::describe(&rule)),
                    ));
                }
                added.push(rule);
            }
            if egress {
                g.egress.extend(added.iter().cloned());
            } else {
                g.ingress.extend(added.iter().cloned());
            }
            txn = txn.put(key.clone(), records::encode(&g));
            if cas.commit(txn).await? {
                return Ok(added
                    .iter()
                    .map(|r| {
                        rules::wire_rule(&g, r, egress, self.arn("security-group-rule", &r.id))
                    })
                    .collect());
            }
        }
    }

    /// Revoke: removes rules by id, or the rules `perms` name, from one direction.
    async fn revoke(
        &self,
        id: String,
        perms: Vec<wire::IpPermission>,
        rule_ids: Vec<String>,
        egress: bool,
    ) -> Result<Vec<wire::RevokedSecurityGroupRule>, AwsError> {
        if perms.is_empty() && rule_ids.is_empty() {
            return Err(codes::missing("IpPermissions"));
        }
        let wanted = rules::wanted(&perms)?;
        let store = self.store();
        let key = keys::security_group(&id);
        let mut cas = Cas::new(store, format!("security group {id}"));
        loop {
            cas.attempt().await?;
            let Some((mut g, rev)) = records::get::<SecurityGroupRecord>(store, &key).await? else {
                return Err(codes::group_not_found(&id));
            };
            let list = if egress { &g.egress } else { &g.ingress };
            let mut gone: Vec<SecurityGroupRule> = Vec::new();
            for rid in &rule_ids {
                let Some(r) = list.iter().find(|r| &r.id == rid) else {
                    return Err(codes::err(
                        "InvalidSecurityGroupRuleId.NotFound",
                        format!(
                            "The security group rule ID '{rid}' does not exist in {} rules of {id}",
                            if egress { "egress" } else { "ingress" }
                        ),
                    ));
                };
                gone.push(r.clone());
            }
            for w in &wanted {
                let peer = match &w.peer {
                    PeerRef::Cidr(c) => Peer::Cidr(c.clone()),
                    PeerRef::GroupId(other) => Peer::Group(other.clone()),
                    PeerRef::GroupName(name) => Peer::Group(
                        self.group_id_by_name(&g.vpc_id, name)
                            .await?
                            .unwrap_or_else(|| name.clone()),
                    ),
                };
                let probe = SecurityGroupRule {
                    id: String::new(),
                    protocol: w.protocol,
                    from_port: w.from_port,
                    to_port: w.to_port,
                    peer,
                    description: None,
                };
                let Some(r) = list.iter().find(|r| rules::same(r, &probe)) else {
                    return Err(codes::err(
                        "InvalidPermission.NotFound",
                        format!(
                            "The specified rule does not exist in this security group: \"{}\"",
                            rules::describe(&probe)
                        ),
                    ));
                };
                gone.push(r.clone());
            }
            let keep = |r: &SecurityGroupRule| !gone.iter().any(|x| x.id == r.id);
            if egress {
                g.egress.retain(keep);
            } else {
                g.ingress.retain(keep);
            }
            let txn = Txn::new().when(key.clone(), rev).put(key.clone(), records::encode(&g));
            if cas.commit(txn).await? {
                return Ok(gone
                    .iter()
                    .map(|r| {
                        let w = rules::wire_rule(&g, r, egress, String::new());
                        wire::RevokedSecurityGroupRule {
                            security_group_rule_id: w.security_group_rule_id,
                            group_id: w.group_id,
                            is_egress: w.is_egress,
                            ip_protocol: w.ip_protocol,
                            from_port: w.from_port,
                            to_port: w.to_port,
                            cidr_ipv4: w.cidr_ipv4,
                            referenced_group_id: w.referenced_group_info.and_then(|i| i.group_id),
                            description: w.description,
                            ..Default::default()
                        }
                    })
                    .collect());
            }
        }
    }
}

/// The permissions of an authorize or revoke call: `IpPermissions`, else the flat form.
fn permissions_of(
    perms: Option<Vec<wire::IpPermission>>,
    flat: Option<wire::IpPermission>,
) -> Vec<wire::IpPermission> {
    let mut out = perms.unwrap_or_default();
    out.extend(flat);
    out
}

impl wire::SecurityGroupsApi<RequestContext> for Ec2 {
    async fn create_security_group(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateSecurityGroupRequest,
    ) -> Result<wire::CreateSecurityGroupResult, AwsError> {
        let name = input.group_name.ok_or_else(|| codes::missing("GroupName"))?;
        let description = input.description.ok_or_else(|| codes::missing("GroupDescription"))?;
        check_name(&name)?;
        check_description(&description)?;
        let tags = spec_tags(input.tag_specifications, ResourceType::SecurityGroup)?;
        let vpc_id = match input.vpc_id {
            Some(v) => v,
            None => self.default_vpc_id().await?,
        };
        let store = self.store();
        let mut cas = Cas::new(store, format!("VPC {vpc_id}"));
        let group = loop {
            cas.attempt().await?;
            let (vpc, rev) = super::vpc(store, &vpc_id).await?;
            let name_key = keys::security_group_name(&vpc_id, &name);
            if store.get(&name_key).await.map_err(crate::error::store)?.is_some() {
                return Err(codes::err(
                    "InvalidGroup.Duplicate",
                    format!("The security group '{name}' already exists for VPC '{vpc_id}'"),
                ));
            }
            let id = network::new_id("sg");
            let group = SecurityGroupRecord {
                id: id.clone(),
                name: name.clone(),
                description: description.clone(),
                vpc_id: vpc_id.clone(),
                owner_id: self.account_id.clone(),
                ingress: vec![],
                egress: vec![SecurityGroupRule {
                    id: network::new_id("sgr"),
                    protocol: IpProtocol::All,
                    from_port: None,
                    to_port: None,
                    peer: Peer::Cidr("0.0.0.0/0".into()),
                    description: None,
                }],
                tags: tags.clone(),
            };
            let vkey = keys::vpc(&vpc_id);
            let txn = Txn::new()
                .when(vkey.clone(), rev)
                .put(vkey, records::encode(&vpc))
                .when(name_key.clone(), 0)
                .put(name_key, id.clone())
                .put(keys::security_group(&id), records::encode(&group));
            if cas.commit(txn).await? {
                break group;
            }
        };
        Ok(wire::CreateSecurityGroupResult {
            group_id: Some(group.id.clone()),
            tags: wire_tags(&group.tags),
            security_group_arn: Some(self.arn("security-group", &group.id)),
        })
    }

    async fn describe_security_groups(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeSecurityGroupsRequest,
    ) -> Result<wire::DescribeSecurityGroupsResult, AwsError> {
        const PERM: [&str; 5] = ["protocol", "from-port", "to-port", "cidr", "group-id"];
        let mut known: Vec<String> =
            ["group-id", "group-name", "description", "vpc-id", "owner-id"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        for p in PERM {
            known.push(format!("ip-permission.{p}"));
            known.push(format!("egress.ip-permission.{p}"));
        }
        known.push("ip-permission.cidr".into());
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let filters = filters::parse(input.filters, &known)?;
        let mut groups = list::<SecurityGroupRecord>(self.store(), keys::SECURITY_GROUPS).await?;
        if let Some(ids) = input.group_ids.filter(|v| !v.is_empty()) {
            for id in &ids {
                if !groups.iter().any(|g| &g.id == id) {
                    return Err(codes::group_not_found(id));
                }
            }
            groups.retain(|g| ids.contains(&g.id));
        }
        if let Some(names) = input.group_names.filter(|v| !v.is_empty()) {
            let vpc = self.default_vpc_id().await?;
            for n in &names {
                if !groups.iter().any(|g| &g.name == n && g.vpc_id == vpc) {
                    return Err(codes::err(
                        "InvalidGroup.NotFound",
                        format!("The security group '{n}' does not exist in default VPC '{vpc}'"),
                    ));
                }
            }
            groups.retain(|g| g.vpc_id == vpc && names.contains(&g.name));
        }
        let rule_values = |rules: &[SecurityGroupRule], what: &str| -> Vec<String> {
            rules
                .iter()
                .filter_map(|r| match what {
                    "protocol" => Some(r.protocol.as_ec2().to_string()),
                    "from-port" => r.from_port.map(|p| p.to_string()),
                    "to-port" => r.to_port.map(|p| p.to_string()),
                    "cidr" => match &r.peer {
                        Peer::Cidr(c) => Some(c.clone()),
                        Peer::Group(_) => None,
                    },
                    "group-id" => match &r.peer {
                        Peer::Group(g) => Some(g.clone()),
                        Peer::Cidr(_) => None,
                    },
                    _ => None,
                })
                .collect()
        };
        groups.retain(|g| {
            filters::matches(&filters, &g.tags, |name| match name {
                "group-id" => filters::one(g.id.clone()),
                "group-name" => filters::one(g.name.clone()),
                "description" => filters::one(g.description.clone()),
                "vpc-id" => filters::one(g.vpc_id.clone()),
                "owner-id" => filters::one(g.owner_id.clone()),
                n => match n.strip_prefix("egress.ip-permission.") {
                    Some(what) => rule_values(&g.egress, what),
                    None => n
                        .strip_prefix("ip-permission.")
                        .map(|what| rule_values(&g.ingress, what))
                        .unwrap_or_default(),
                },
            })
        });
        let (groups, next_token) =
            filters::page(groups, |g| &g.id, input.max_results, 5, input.next_token.as_deref())?;
        Ok(wire::DescribeSecurityGroupsResult {
            security_groups: Some(groups.iter().map(|g| self.wire_group(g)).collect()),
            next_token,
        })
    }

    async fn delete_security_group(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteSecurityGroupRequest,
    ) -> Result<wire::DeleteSecurityGroupResult, AwsError> {
        let id = self.resolve_group(input.group_id, input.group_name).await?;
        let store = self.store();
        let key = keys::security_group(&id);
        let mut cas = Cas::new(store, format!("security group {id}"));
        loop {
            cas.attempt().await?;
            let Some((g, rev)) = records::get::<SecurityGroupRecord>(store, &key).await? else {
                return Err(codes::group_not_found(&id));
            };
            if g.name == DEFAULT_SECURITY_GROUP {
                return Err(codes::err(
                    "CannotDelete",
                    format!(
                        "the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"
                    ),
                ));
            }
            if super::count(store, &keys::security_group_members_prefix(&id)).await? > 0 {
                return Err(codes::dependency(format!(
                    "resource {id} has a dependent object: network interfaces are in it"
                )));
            }
            let all = store
                .range(Range::prefix(keys::SECURITY_GROUPS))
                .await
                .map_err(crate::error::store)?;
            let all: Vec<(SecurityGroupRecord, Revision)> = records::decode_all(all)?;
            let mut txn = Txn::new()
                .when(key.clone(), rev)
                .delete(key.clone())
                .delete(keys::security_group_name(&g.vpc_id, &g.name));
            for (o, orev) in all.iter().filter(|(o, _)| o.id != id && o.vpc_id == g.vpc_id) {
                if o.ingress.iter().chain(&o.egress).any(|r| r.peer == Peer::Group(id.clone())) {
                    return Err(codes::dependency(format!(
                        "resource {id} has a dependent object: a rule of security group {} references it",
                        o.id
                    )));
                }
                txn = txn.when(keys::security_group(&o.id), *orev);
            }
            if cas.commit(txn).await? {
                return Ok(wire::DeleteSecurityGroupResult {
                    r#return: Some(true),
                    group_id: Some(id),
                });
            }
        }
    }

    async fn authorize_security_group_ingress(
        &self,
        _ctx: &RequestContext,
        input: wire::AuthorizeSecurityGroupIngressRequest,
    ) -> Result<wire::AuthorizeSecurityGroupIngressResult, AwsError> {
        let id = self.resolve_group(input.group_id, input.group_name).await?;
        let flat = rules::flat(
            input.ip_protocol,
            input.from_port,
            input.to_port,
            input.cidr_ip,
            input.source_security_group_name,
        );
        let perms = permissions_of(input.ip_permissions, flat);
        if perms.is_empty() {
            return Err(codes::missing("IpPermissions"));
        }
        let added = self.authorize(id, perms, false).await?;
        Ok(wire::AuthorizeSecurityGroupIngressResult {
            r#return: Some(true),
            security_group_rules: Some(added),
        })
    }

    async fn authorize_security_group_egress(
        &self,
        _ctx: &RequestContext,
        input: wire::AuthorizeSecurityGroupEgressRequest,
    ) -> Result<wire::AuthorizeSecurityGroupEgressResult, AwsError> {
        let id = input.group_id.ok_or_else(|| codes::missing("GroupId"))?;
        let flat = rules::flat(
            input.ip_protocol,
            input.from_port,
            input.to_port,
            input.cidr_ip,
            input.source_security_group_name,
        );
        let perms = permissions_of(input.ip_permissions, flat);
        if perms.is_empty() {
            return Err(codes::missing("IpPermissions"));
        }
        let added = self.authorize(id, perms, true).await?;
        Ok(wire::AuthorizeSecurityGroupEgressResult {
            r#return: Some(true),
            security_group_rules: Some(added),
        })
    }

    async fn revoke_security_group_ingress(
        &self,
        _ctx: &RequestContext,
        input: wire::RevokeSecurityGroupIngressRequest,
    ) -> Result<wire::RevokeSecurityGroupIngressResult, AwsError> {
        let id = self.resolve_group(input.group_id, input.group_name).await?;
        let flat = rules::flat(
            input.ip_protocol,
            input.from_port,
            input.to_port,
            input.cidr_ip,
            input.source_security_group_name,
        );
        let perms = permissions_of(input.ip_permissions, flat);
        let gone = self
            .revoke(id, perms, input.security_group_rule_ids.unwrap_or_default(), false)
            .await?;
        Ok(wire::RevokeSecurityGroupIngressResult {
            r#return: Some(true),
            revoked_security_group_rules: Some(gone),
            unknown_ip_permissions: None,
        })
    }

    async fn revoke_security_group_egress(
        &self,
        _ctx: &RequestContext,
        input: wire::RevokeSecurityGroupEgressRequest,
    ) -> Result<wire::RevokeSecurityGroupEgressResult, AwsError> {
        let id = input.group_id.ok_or_else(|| codes::missing("GroupId"))?;
        let flat = rules::flat(
            input.ip_protocol,
            input.from_port,
            input.to_port,
            input.cidr_ip,
            input.source_security_group_name,
        );
        let perms = permissions_of(input.ip_permissions, flat);
        let gone =
            self.revoke(id, perms, input.security_group_rule_ids.unwrap_or_default(), true).await?;
        Ok(wire::RevokeSecurityGroupEgressResult {
            r#return: Some(true),
            revoked_security_group_rules: Some(gone),
            unknown_ip_permissions: None,
        })
    }

    async fn describe_security_group_rules(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeSecurityGroupRulesRequest,
    ) -> Result<wire::DescribeSecurityGroupRulesResult, AwsError> {
        let filters = filters::parse(input.filters, &["group-id", "security-group-rule-id"])?;
        let groups = list::<SecurityGroupRecord>(self.store(), keys::SECURITY_GROUPS).await?;
        let mut all: Vec<wire::SecurityGroupRule> = Vec::new();
        for g in &groups {
            for (rules, egress) in [(&g.ingress, false), (&g.egress, true)] {
                for r in rules {
                    let keep = filters::matches(&filters, &[], |name| match name {
                        "group-id" => filters::one(g.id.clone()),
                        "security-group-rule-id" => filters::one(r.id.clone()),
                        _ => vec![],
                    });
                    if keep {
                        all.push(rules::wire_rule(
                            g,
                            r,
                            egress,
                            self.arn("security-group-rule", &r.id),
                        ));
                    }
                }
            }
        }
        if let Some(ids) = input.security_group_rule_ids.filter(|v| !v.is_empty()) {
            for id in &ids {
                if !all.iter().any(|r| r.security_group_rule_id.as_deref() == Some(id)) {
                    return Err(codes::err(
                        "InvalidSecurityGroupRuleId.NotFound",
                        format!("The security group rule ID '{id}' does not exist"),
                    ));
                }
            }
            all.retain(|r| r.security_group_rule_id.as_ref().is_some_and(|id| ids.contains(id)));
        }
        let (rules, next_token) = filters::page(
            all,
            |r| r.security_group_rule_id.as_deref().unwrap_or(""),
            input.max_results,
            5,
            input.next_token.as_deref(),
        )?;
        Ok(wire::DescribeSecurityGroupRulesResult { security_group_rules: Some(rules), next_token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptions_follow_ec2s_rules() {
        assert!(check_name("web").is_ok());
        assert!(check_name("sg-web").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_description("Web servers: port 80 (HTTP) & 443").is_ok());
        assert!(check_description("naïve").is_err());
        assert!(check_description("<script>").is_err());
    }
}
