//! Managed policies and their versions (`wire::PoliciesApi`), and the entities they are attached to: the account's, and AWS's read-only built-in catalog ([`super::aws_managed`]).

use super::*;

impl wire::PoliciesApi<RequestContext> for IamApi<'_> {
    async fn create_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::CreatePolicyRequest,
    ) -> Result<wire::CreatePolicyResponse, AwsError> {
        let name = input.policy_name.unwrap_or_default();
        let path = check_path(input.path)?;
        let doc = input.policy_document.unwrap_or_default();
        parse_document(&doc, policy::PolicyKind::Identity)?;
        let now = self.now();
        let rec = IamManagedPolicy {
            arn: self.arn("policy", &path, &name),
            id: random_id("ANPA"),
            name: name.clone(),
            path,
            description: input.description,
            created_at: now,
            updated_at: now,
            default_version: "v1".into(),
            versions: vec![IamPolicyVersion { id: "v1".into(), document: doc, created_at: now }],
            next_version: 2,
            tags: tags_in(input.tags)?,
        };
        if !self.create(&model::policy_key(&name), &rec).await? {
            return Err(err(
                "EntityAlreadyExists",
                409,
                format!("A policy called {name} already exists. Duplicate names are not allowed."),
            ));
        }
        Ok(wire::CreatePolicyResponse { policy: Some(policy_out(&rec, 0)) })
    }

    async fn get_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::GetPolicyRequest,
    ) -> Result<wire::GetPolicyResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let p = self.policy(&arn).await?;
        let (u, g, r) = self.attachments(&arn).await?;
        Ok(wire::GetPolicyResponse {
            policy: Some(policy_out(&p, (u.len() + g.len() + r.len()) as i32)),
        })
    }

    async fn list_policies(
        &self,
        _ctx: &RequestContext,
        input: wire::ListPoliciesRequest,
    ) -> Result<wire::ListPoliciesResponse, AwsError> {
        let scope = input.scope.unwrap_or(wire::PolicyScopeType::All);
        let local: Vec<IamManagedPolicy> = match scope {
            wire::PolicyScopeType::Aws => vec![],
            _ => self.list(model::POLICIES).await?,
        };
        let users: Vec<IamUser> = self.list(model::USERS).await?;
        let groups: Vec<IamGroup> = self.list(model::GROUPS).await?;
        let roles: Vec<IamRole> = self.list(model::ROLES).await?;
        let mut counts: BTreeMap<&str, i32> = BTreeMap::new();
        for a in users
            .iter()
            .map(|u| &u.policies)
            .chain(groups.iter().map(|g| &g.policies))
            .chain(roles.iter().map(|r| &r.policies))
        {
            for m in &a.managed {
                *counts.entry(m.as_str()).or_default() += 1;
            }
        }
        let (listed, truncated, marker) = policies_page(
            scope,
            local,
            &counts,
            &input.path_prefix.unwrap_or_else(|| "/".into()),
            input.only_attached.unwrap_or(false),
            input.marker,
            input.max_items,
        );
        Ok(wire::ListPoliciesResponse {
            policies: Some(listed),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn delete_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DeletePolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let p = self.own_policy(&arn, "DeletePolicy").await?;
        let (u, g, r) = self.attachments(&arn).await?;
        if !(u.is_empty() && g.is_empty() && r.is_empty()) {
            return Err(conflict("Cannot delete a policy attached to entities."));
        }
        if p.versions.len() > 1 {
            return Err(conflict(
                "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.",
            ));
        }
        self.delete(&model::policy_key(&p.name)).await?;
        Ok(wire::Empty {})
    }

    async fn create_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::CreatePolicyVersionRequest,
    ) -> Result<wire::CreatePolicyVersionResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let doc = input.policy_document.unwrap_or_default();
        parse_document(&doc, policy::PolicyKind::Identity)?;
        let p = self.own_policy(&arn, "CreatePolicyVersion").await?;
        let now = self.now();
        let default = input.set_as_default.unwrap_or(false);
        let mut made = None;
        let after = self
            .update::<IamManagedPolicy, _>(&model::policy_key(&p.name), "policy", &arn, |p| {
                if p.versions.len() >= 5 {
                    return Err(err(
                        "LimitExceeded",
                        409,
                        "A managed policy can have up to 5 versions. Before you create a new version, you must delete an existing version.",
                    ));
                }
                let id = format!("v{}", p.next_version);
                p.next_version += 1;
                p.versions.push(IamPolicyVersion { id: id.clone(), document: doc.clone(), created_at: now });
                p.updated_at = now;
                if default {
                    p.default_version = id.clone();
                }
                made = Some(id);
                Ok(())
            })
            .await?;
        let id = made.unwrap_or_default();
        let v = after.versions.iter().find(|v| v.id == id).expect("the version just made");
        Ok(wire::CreatePolicyVersionResponse {
            policy_version: Some(version_out(&after, v, false)),
        })
    }

    async fn get_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::GetPolicyVersionRequest,
    ) -> Result<wire::GetPolicyVersionResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let id = input.version_id.unwrap_or_default();
        let p = self.policy(&arn).await?;
        let v = p.versions.iter().find(|v| v.id == id).ok_or_else(|| {
            err(
                "NoSuchEntity",
                404,
                format!("Policy {arn} version {id} does not exist or is not attachable."),
            )
        })?;
        Ok(wire::GetPolicyVersionResponse { policy_version: Some(version_out(&p, v, true)) })
    }

    async fn list_policy_versions(
        &self,
        _ctx: &RequestContext,
        input: wire::ListPolicyVersionsRequest,
    ) -> Result<wire::ListPolicyVersionsResponse, AwsError> {
        let p = self.policy(&input.policy_arn.unwrap_or_default()).await?;
        let mut versions: Vec<wire::PolicyVersion> =
            p.versions.iter().map(|v| version_out(&p, v, false)).collect();
        versions.reverse();
        let (versions, truncated, marker) = page(
            versions,
            |v| format!("{:>10}", v.version_id.clone().unwrap_or_default().trim_start_matches('v')),
            input.marker,
            input.max_items,
        );
        Ok(wire::ListPolicyVersionsResponse {
            versions: Some(versions),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn set_default_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::SetDefaultPolicyVersionRequest,
    ) -> Result<wire::Empty, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let id = input.version_id.unwrap_or_default();
        let p = self.own_policy(&arn, "SetDefaultPolicyVersion").await?;
        let now = self.now();
        self.update::<IamManagedPolicy, _>(&model::policy_key(&p.name), "policy", &arn, |p| {
            if !p.versions.iter().any(|v| v.id == id) {
                return Err(err(
                    "NoSuchEntity",
                    404,
                    format!("Policy {arn} version {id} does not exist or is not attachable."),
                ));
            }
            p.default_version = id.clone();
            p.updated_at = now;
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn delete_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::DeletePolicyVersionRequest,
    ) -> Result<wire::Empty, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let id = input.version_id.unwrap_or_default();
        let p = self.own_policy(&arn, "DeletePolicyVersion").await?;
        self.update::<IamManagedPolicy, _>(&model::policy_key(&p.name), "policy", &arn, |p| {
            if p.default_version == id {
                return Err(conflict("Cannot delete the default version of a policy."));
            }
            let before = p.versions.len();
            p.versions.retain(|v| v.id != id);
            if p.versions.len() == before {
                return Err(err(
                    "NoSuchEntity",
                    404,
                    format!("Policy {arn} version {id} does not exist or is not attachable."),
                ));
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn list_entities_for_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::ListEntitiesForPolicyRequest,
    ) -> Result<wire::ListEntitiesForPolicyResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        self.policy(&arn).await?;
        let (u, g, r) = self.attachments(&arn).await?;
        Ok(wire::ListEntitiesForPolicyResponse {
            policy_users: Some(
                u.iter()
                    .map(|u| wire::PolicyUser {
                        user_name: Some(u.name.clone()),
                        user_id: Some(u.id.clone()),
                    })
                    .collect(),
            ),
            policy_groups: Some(
                g.iter()
                    .map(|g| wire::PolicyGroup {
                        group_name: Some(g.name.clone()),
                        group_id: Some(g.id.clone()),
                    })
                    .collect(),
            ),
            policy_roles: Some(
                r.iter()
                    .map(|r| wire::PolicyRole {
                        role_name: Some(r.name.clone()),
                        role_id: Some(r.id.clone()),
                    })
                    .collect(),
            ),
            is_truncated: Some(false),
            marker: None,
        })
    }
}

/// One page of ListPolicies: the account's policies `local` (scope Local or All) and AWS's
/// built-in catalog (scope AWS or All) under `prefix`, with their attachment counts (only the
/// attached ones with `only_attached`), ordered by name then ARN: an account's policy may
/// share its name with an AWS managed one, and the marker must still resume exactly.
fn policies_page(
    scope: wire::PolicyScopeType,
    local: Vec<IamManagedPolicy>,
    counts: &BTreeMap<&str, i32>,
    prefix: &str,
    only_attached: bool,
    marker: Option<String>,
    max_items: Option<i32>,
) -> (Vec<wire::Policy>, bool, Option<String>) {
    let aws = aws_managed::all().iter().map(|p| &p.record);
    let aws = aws.filter(|_| scope != wire::PolicyScopeType::Local);
    let local = local.iter().filter(|_| scope != wire::PolicyScopeType::Aws);
    let mut listed = Vec::new();
    for p in local.chain(aws) {
        let n = counts.get(p.arn.as_str()).copied().unwrap_or(0);
        if p.path.starts_with(prefix) && (!only_attached || n > 0) {
            // ListPolicies answers no tags.
            listed.push(wire::Policy { tags: None, ..policy_out(p, n) });
        }
    }
    page(
        listed,
        |p| {
            format!(
                "{} {}",
                p.policy_name.as_deref().unwrap_or_default().to_lowercase(),
                p.arn.as_deref().unwrap_or_default()
            )
        },
        marker,
        max_items,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(name: &str, path: &str) -> IamManagedPolicy {
        IamManagedPolicy {
            name: name.into(),
            id: format!("ANPA{name}"),
            path: path.into(),
            arn: format!("arn:aws:iam::123456789012:policy{path}{name}"),
            description: None,
            created_at: 0.0,
            updated_at: 0.0,
            default_version: "v1".into(),
            versions: vec![],
            next_version: 2,
            tags: vec![("k".into(), "v".into())],
        }
    }

    fn arns(page: &[wire::Policy]) -> Vec<String> {
        page.iter().map(|p| p.arn.clone().unwrap()).collect()
    }

    #[test]
    fn list_policies_scopes_paging_and_attachment_counts() {
        use wire::PolicyScopeType::{All, Aws, Local};
        let mine = || vec![local("deploy", "/"), local("AdministratorAccess", "/team/")];
        let aws_n = aws_managed::all().len();
        let none = BTreeMap::new();
        let everything = |scope| policies_page(scope, mine(), &none, "/", false, None, Some(1000));

        let (l, t, m) = everything(Local);
        assert_eq!((l.len(), t, m), (2, false, None));
        assert!(l.iter().all(|p| !aws_managed::is_aws_arn(p.arn.as_deref().unwrap())));
        assert!(l.iter().all(|p| p.tags.is_none()), "ListPolicies answers no tags");
        let (a, _, _) = everything(Aws);
        assert_eq!(a.len(), aws_n);
        assert!(a.iter().all(|p| aws_managed::is_aws_arn(p.arn.as_deref().unwrap())));
        let (all, _, _) = everything(All);
        assert_eq!(all.len(), aws_n + 2);

        // Paging by 3 walks All exactly once, the same-named policies included.
        let mut seen = vec![];
        let mut marker = None;
        loop {
            let (p, truncated, next) =
                policies_page(All, mine(), &none, "/", false, marker, Some(3));
            assert!(p.len() <= 3);
            seen.extend(arns(&p));
            if !truncated {
                assert!(next.is_none());
                break;
            }
            marker = next;
        }
        let mut want = arns(&all);
        assert_eq!(seen, want, "paging keeps the order");
        want.sort();
        want.dedup();
        assert_eq!(seen.len(), want.len(), "no policy twice");
        let admins = seen.iter().filter(|a| a.ends_with("/AdministratorAccess")).count();
        assert_eq!(admins, 2);

        // Paths and OnlyAttached, with attachment counts.
        let (sr, _, _) = policies_page(Aws, vec![], &none, "/service-role/", false, None, None);
        assert_eq!(sr.len(), 3, "{:?}", arns(&sr));
        let exec = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
        let counts: BTreeMap<&str, i32> =
            [(exec, 2), ("arn:aws:iam::123456789012:policy/deploy", 1)].into_iter().collect();
        let (att, _, _) = policies_page(All, mine(), &counts, "/", true, None, None);
        assert_eq!(
            arns(&att),
            vec![
                "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
                "arn:aws:iam::123456789012:policy/deploy"
            ]
        );
        assert_eq!(att[0].attachment_count, Some(2));
        assert_eq!(att[0].default_version_id.as_deref(), Some("v1"));
        assert_eq!(att[0].policy_id.as_deref(), Some("ANPAJG4T4G4PV56DE72PY"));
        let (att, _, _) = policies_page(Local, mine(), &counts, "/", true, None, None);
        assert_eq!(arns(&att), vec!["arn:aws:iam::123456789012:policy/deploy"]);
    }
}
