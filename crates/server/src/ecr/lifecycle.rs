//! ECR lifecycle policies: the rule grammar ([`parse`]), the pure decision of which images a
//! policy expires ([`evaluate`]), the API (Put/Get/DeleteLifecyclePolicy, the preview) and
//! the scheduled application ([`apply_all`]).
//!
//! Semantics, as ECR documents them: rules are applied in ascending `rulePriority`; an image
//! selected by a rule is claimed by it and no rule of lower priority can expire it;
//! `tagStatus` `tagged` selects images having, for every prefix of `tagPrefixList`, a tag
//! starting with it (for every pattern of `tagPatternList`, a tag matching it, `*` matching
//! any run of characters); `untagged` images without tags; `any` every image, and such a rule
//! must have the highest `rulePriority` of all. `imageCountMoreThan` N expires the selected
//! images beyond the N most recently pushed; `sinceImagePushed` N `days` expires those pushed
//! more than N days ago. The only action is `expire`.

use std::collections::HashSet;

use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ecr as wire;
use serde::Deserialize;
use wire::ErrorCode;

use super::records::{self, RepoRecord};
use super::{Ecr, EcrService, invalid};
use crate::clock::epoch_seconds;
use crate::ecs::RequestContext;
use crate::records::{self as recs, encode};

/// A parsed policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub priority: i64,
    pub selection: Selection,
    pub count: Count,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    Tagged { prefixes: Vec<String>, patterns: Vec<String> },
    Untagged,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Count {
    MoreThan(u64),
    SincePushedDays(u64),
}

/// An image as the rules see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFacts {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPolicy {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    rule_priority: i64,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    selection: RawSelection,
    action: RawAction,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSelection {
    tag_status: String,
    #[serde(default)]
    tag_prefix_list: Option<Vec<String>>,
    #[serde(default)]
    tag_pattern_list: Option<Vec<String>>,
    count_type: String,
    #[serde(default)]
    count_unit: Option<String>,
    count_number: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    r#type: String,
}

fn policy_error(message: impl std::fmt::Display) -> AwsError {
    ErrorCode::InvalidParameterException
        .with(format!("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {message}'"))
}

/// Parses and validates a policy text.
pub fn parse(text: &str) -> Result<Policy, AwsError> {
    let raw: RawPolicy = serde_json::from_str(text).map_err(policy_error)?;
    if raw.rules.is_empty() {
        return Err(policy_error("a policy needs at least one rule"));
    }
    let mut seen = HashSet::new();
    let mut rules = vec![];
    for r in raw.rules {
        let p = r.rule_priority;
        if p < 1 || !seen.insert(p) {
            return Err(policy_error(format!(
                "rulePriority {p} must be a positive integer unique within the policy"
            )));
        }
        if r.action.r#type != "expire" {
            return Err(policy_error(format!(
                "rule {p}: action type '{}' is not 'expire'",
                r.action.r#type
            )));
        }
        let s = r.selection;
        let selection = match s.tag_status.as_str() {
            "tagged" => {
                let prefixes = s.tag_prefix_list.unwrap_or_default();
                let patterns = s.tag_pattern_list.unwrap_or_default();
                if prefixes.is_empty() == patterns.is_empty() {
                    return Err(policy_error(format!(
                        "rule {p}: tagStatus 'tagged' needs exactly one of a non-empty tagPrefixList or tagPatternList"
                    )));
                }
                Selection::Tagged { prefixes, patterns }
            }
            "untagged" | "any" => {
                if s.tag_prefix_list.is_some() || s.tag_pattern_list.is_some() {
                    return Err(policy_error(format!(
                        "rule {p}: tagPrefixList and tagPatternList apply to tagStatus 'tagged' only"
                    )));
                }
                if s.tag_status == "any" { Selection::Any } else { Selection::Untagged }
            }
            other => {
                return Err(policy_error(format!(
                    "rule {p}: tagStatus '{other}' is not tagged, untagged or any"
                )));
            }
        };
        let n = u64::try_from(s.count_number)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| policy_error(format!("rule {p}: countNumber must be at least 1")))?;
        let count = match (s.count_type.as_str(), s.count_unit.as_deref()) {
            ("imageCountMoreThan", None) => Count::MoreThan(n),
            ("sinceImagePushed", Some("days")) => Count::SincePushedDays(n),
            ("imageCountMoreThan", Some(_)) => {
                return Err(policy_error(format!(
                    "rule {p}: imageCountMoreThan takes no countUnit"
                )));
            }
            ("sinceImagePushed", _) => {
                return Err(policy_error(format!(
                    "rule {p}: sinceImagePushed needs countUnit 'days'"
                )));
            }
            (other, _) => {
                return Err(policy_error(format!(
                    "rule {p}: countType '{other}' is not imageCountMoreThan or sinceImagePushed"
                )));
            }
        };
        rules.push(Rule { priority: p, selection, count });
    }
    rules.sort_by_key(|r| r.priority);
    if let Some(i) = rules.iter().position(|r| r.selection == Selection::Any)
        && i + 1 != rules.len()
    {
        return Err(policy_error("a rule with tagStatus 'any' must have the highest rulePriority"));
    }
    Ok(Policy { rules })
}

/// `*` matches any run of characters.
fn wildcard(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

fn selects(sel: &Selection, img: &ImageFacts) -> bool {
    match sel {
        Selection::Any => true,
        Selection::Untagged => img.tags.is_empty(),
        Selection::Tagged { prefixes, patterns } => {
            !img.tags.is_empty()
                && prefixes.iter().all(|p| img.tags.iter().any(|t| t.starts_with(p.as_str())))
                && patterns.iter().all(|p| img.tags.iter().any(|t| wildcard(p, t)))
        }
    }
}

/// The images `policy` expires at `now` (epoch seconds), each with the priority of the rule
/// that expires it, in rule order.
pub fn evaluate(policy: &Policy, images: &[ImageFacts], now: f64) -> Vec<(String, i64)> {
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut out = vec![];
    for rule in &policy.rules {
        let mut selected: Vec<&ImageFacts> = images
            .iter()
            .filter(|i| !claimed.contains(i.digest.as_str()) && selects(&rule.selection, i))
            .collect();
        claimed.extend(selected.iter().map(|i| i.digest.as_str()));
        // Newest first; equal times by digest, for a stable answer.
        selected.sort_by(|a, b| b.pushed_at.total_cmp(&a.pushed_at).then(a.digest.cmp(&b.digest)));
        let expired: Vec<&ImageFacts> = match rule.count {
            Count::MoreThan(n) => selected.into_iter().skip(n as usize).collect(),
            Count::SincePushedDays(days) => selected
                .into_iter()
                .filter(|i| now - i.pushed_at > days as f64 * 86_400.0)
                .collect(),
        };
        out.extend(expired.into_iter().map(|i| (i.digest.clone(), rule.priority)));
    }
    out
}

impl EcrService {
    async fn facts(&self, repo: &str) -> Result<Vec<ImageFacts>, AwsError> {
        let tags = self.meta.tag_list(repo).await?;
        Ok(self
            .meta
            .images(repo)
            .await?
            .into_iter()
            .map(|i| ImageFacts {
                tags: tags.iter().filter(|(_, d)| *d == i.digest).map(|(t, _)| t.clone()).collect(),
                digest: i.digest,
                pushed_at: i.pushed_at,
            })
            .collect())
    }

    /// Applies every repository's lifecycle policy now; the number of images expired.
    pub async fn apply_lifecycle_policies(&self) -> Result<usize, AwsError> {
        let all = self
            .meta
            .store
            .range(Range::prefix(records::REPOS))
            .await
            .map_err(crate::error::store)?;
        let mut total = 0;
        let now = epoch_seconds(self.clock.now());
        for (repo, _) in recs::decode_all::<RepoRecord>(all)? {
            let Some(text) = &repo.lifecycle_policy else { continue };
            let Ok(policy) = parse(text) else { continue };
            let doomed: Vec<String> = evaluate(&policy, &self.facts(&repo.name).await?, now)
                .into_iter()
                .map(|(d, _)| d)
                .collect();
            if !doomed.is_empty() {
                let deleted = self.meta.delete_images(&repo.name, &doomed).await?;
                tracing::info!(repository = %repo.name, expired = deleted.len(), "lifecycle policy expired images");
                total += deleted.len();
            }
            let _ = self
                .update_repo(Some(&repo.name), |r| r.lifecycle_policy_updated_at = Some(now))
                .await;
        }
        Ok(total)
    }
}

fn not_found(repo: &str, account: &str) -> AwsError {
    ErrorCode::LifecyclePolicyNotFoundException.with(format!(
        "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{account}'"
    ))
}

/// The preview kept on the repository record (`lifecycle_preview`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub policy: String,
    pub results: Vec<(String, Vec<String>, f64, i64)>,
}

impl wire::LifecycleApi<RequestContext> for Ecr<'_> {
    async fn put_lifecycle_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::PutLifecyclePolicyRequest,
    ) -> Result<wire::PutLifecyclePolicyResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let text = input.lifecycle_policy_text.unwrap_or_default();
        parse(&text)?;
        let rec = s
            .update_repo(input.repository_name.as_deref(), |r| {
                r.lifecycle_policy = Some(text.clone())
            })
            .await?;
        Ok(wire::PutLifecyclePolicyResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            lifecycle_policy_text: Some(text),
        })
    }

    async fn get_lifecycle_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::GetLifecyclePolicyRequest,
    ) -> Result<wire::GetLifecyclePolicyResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (rec, _) = s.repo(input.repository_name.as_deref()).await?;
        let text = rec.lifecycle_policy.ok_or_else(|| not_found(&rec.name, &s.account_id))?;
        Ok(wire::GetLifecyclePolicyResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            lifecycle_policy_text: Some(text),
            last_evaluated_at: rec.lifecycle_policy_updated_at,
        })
    }

    async fn delete_lifecycle_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteLifecyclePolicyRequest,
    ) -> Result<wire::DeleteLifecyclePolicyResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (rec, _) = s.repo(input.repository_name.as_deref()).await?;
        let text =
            rec.lifecycle_policy.clone().ok_or_else(|| not_found(&rec.name, &s.account_id))?;
        s.update_repo(Some(&rec.name), |r| r.lifecycle_policy = None).await?;
        Ok(wire::DeleteLifecyclePolicyResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            lifecycle_policy_text: Some(text),
            last_evaluated_at: rec.lifecycle_policy_updated_at,
        })
    }

    async fn start_lifecycle_policy_preview(
        &self,
        _ctx: &RequestContext,
        input: wire::StartLifecyclePolicyPreviewRequest,
    ) -> Result<wire::StartLifecyclePolicyPreviewResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (rec, _) = s.repo(input.repository_name.as_deref()).await?;
        let text = match input.lifecycle_policy_text.or(rec.lifecycle_policy.clone()) {
            Some(t) => t,
            None => return Err(not_found(&rec.name, &s.account_id)),
        };
        let policy = parse(&text)?;
        let facts = s.facts(&rec.name).await?;
        let now = epoch_seconds(s.clock.now());
        let results = evaluate(&policy, &facts, now)
            .into_iter()
            .filter_map(|(d, p)| {
                facts.iter().find(|f| f.digest == d).map(|f| (d, f.tags.clone(), f.pushed_at, p))
            })
            .collect();
        // The preview is computed at once, so it is COMPLETE when first asked for.
        let preview = Preview { policy: text.clone(), results };
        let key = records::preview_key(&rec.name);
        recs::commit(&*s.meta.store, Txn::new().put(&key, encode(&preview))).await?;
        Ok(wire::StartLifecyclePolicyPreviewResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            lifecycle_policy_text: Some(text),
            status: Some(wire::LifecyclePolicyPreviewStatus::InProgress),
        })
    }

    async fn get_lifecycle_policy_preview(
        &self,
        _ctx: &RequestContext,
        input: wire::GetLifecyclePolicyPreviewRequest,
    ) -> Result<wire::GetLifecyclePolicyPreviewResponse, AwsError> {
        let s = self.svc;
        s.check_registry_id(input.registry_id.as_deref())?;
        let (rec, _) = s.repo(input.repository_name.as_deref()).await?;
        let Some((preview, _)) =
            recs::get::<Preview>(&*s.meta.store, &records::preview_key(&rec.name)).await?
        else {
            return Err(ErrorCode::LifecyclePolicyPreviewNotFoundException.with(format!(
                "There is no dry run for the repository with name '{}' in the registry with id '{}'",
                rec.name, s.account_id
            )));
        };
        if input.max_results.is_some_and(|n| !(1..=100).contains(&n)) {
            return Err(invalid("maxResults must be between 1 and 100."));
        }
        let results: Vec<wire::LifecyclePolicyPreviewResult> = preview
            .results
            .iter()
            .map(|(d, tags, pushed, p)| wire::LifecyclePolicyPreviewResult {
                image_tags: (!tags.is_empty()).then(|| tags.clone()),
                image_digest: Some(d.clone()),
                image_pushed_at: Some(*pushed),
                action: Some(wire::LifecyclePolicyRuleAction {
                    r#type: Some(wire::ImageActionType::Expire),
                    ..Default::default()
                }),
                applied_rule_priority: Some(*p as i32),
                ..Default::default()
            })
            .collect();
        Ok(wire::GetLifecyclePolicyPreviewResponse {
            registry_id: Some(s.account_id.clone()),
            repository_name: Some(rec.name),
            lifecycle_policy_text: Some(preview.policy),
            status: Some(wire::LifecyclePolicyPreviewStatus::Complete),
            next_token: None,
            summary: Some(wire::LifecyclePolicyPreviewSummary {
                expiring_image_total_count: Some(results.len() as i32),
                ..Default::default()
            }),
            preview_results: Some(results),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(c: char, tags: &[&str], pushed_at: f64) -> ImageFacts {
        ImageFacts {
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at,
        }
    }

    fn expired(policy: &str, images: &[ImageFacts], now: f64) -> Vec<(char, i64)> {
        let p = parse(policy).unwrap();
        evaluate(&p, images, now)
            .into_iter()
            .map(|(d, pr)| (d.chars().nth(7).unwrap(), pr))
            .collect()
    }

    #[test]
    fn rules_expire_by_count_and_age_in_priority_order() {
        let day = 86_400.0;
        let images = vec![
            img('a', &[], 1.0 * day),
            img('b', &[], 2.0 * day),
            img('c', &[], 3.0 * day),
            img('d', &["prod-1"], 1.0 * day),
            img('e', &["prod-2"], 2.0 * day),
            img('f', &["dev-1"], 1.0 * day),
        ];
        let now = 10.0 * day;
        // Keep one untagged image.
        let p = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
        assert_eq!(expired(p, &images, now), vec![('b', 1), ('a', 1)]);
        // Prod images are claimed by rule 1 (keep 5), so rule 2 (any, older than 5 days)
        // expires only the others.
        let p = r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":5},"action":{"type":"expire"}}]}"#;
        let got = expired(p, &images, now);
        assert_eq!(got, vec![('c', 2), ('b', 2), ('a', 2), ('f', 2)]);
        // Patterns.
        let p = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["*-1"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
        assert_eq!(expired(p, &images, now), vec![('f', 1)]);
    }

    #[test]
    fn bad_policies_name_the_problem() {
        let rule = |sel: &str| {
            format!(
                r#"{{"rules":[{{"rulePriority":1,"selection":{sel},"action":{{"type":"expire"}}}}]}}"#
            )
        };
        let cases = [
            ("{}".to_string(), "rules"),
            (r#"{"rules":[]}"#.to_string(), "at least one rule"),
            (rule(r#"{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1}"#), "tagPrefixList"),
            (rule(r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":1}"#), "countUnit 'days'"),
            (rule(r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":0}"#), "at least 1"),
            (rule(r#"{"tagStatus":"some","countType":"imageCountMoreThan","countNumber":1}"#), "tagStatus 'some'"),
            (rule(r#"{"tagStatus":"untagged","countType":"bogus","countNumber":1}"#), "countType 'bogus'"),
            (
                r#"{"rules":[
                {"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
                {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#.to_string(),
                "highest rulePriority",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.code, "InvalidParameterException");
            assert!(e.message.contains(want), "{text}: {}", e.message);
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("prod*", "prod-1"));
        assert!(wildcard("*-1", "dev-1"));
        assert!(wildcard("a*b*c", "a-x-b-y-c"));
        assert!(!wildcard("a*b*c", "a-x-c"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
    }
}
