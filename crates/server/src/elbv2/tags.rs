//! AddTags, RemoveTags, DescribeTags on load balancers, target groups, listeners and rules.
//! Tags live in each resource's own record; a call on several ARNs checks them all first, then
//! writes each (ELB applies them one resource at a time too).

use berth_model::elbv2::{self as model, ParsedArn, keys};
use berth_wire::AwsError;
use berth_wire::elbv2 as wire;

use super::{Elbv2, codes, wire_tags};
use crate::ecs::RequestContext;
use crate::records;

/// ELB's limit of tags per resource.
const MAX_TAGS: usize = 50;

/// `tags` with `add` merged in (a key given again replaces its value).
pub(super) fn merge(
    mut tags: Vec<model::Tag>,
    add: Vec<wire::Tag>,
) -> Result<Vec<model::Tag>, AwsError> {
    let mut seen = std::collections::HashSet::new();
    for (i, t) in add.into_iter().enumerate() {
        let Some(key) = t.key.filter(|k| !k.is_empty()) else {
            return Err(codes::validation(format!("Tags.member.{}.Key: a tag needs a key", i + 1)));
        };
        if key.starts_with("aws:") {
            return Err(codes::validation(format!(
                "Tags.member.{}.Key: the 'aws:' prefix is reserved",
                i + 1
            )));
        }
        if !seen.insert(key.clone()) {
            return Err(codes::err("DuplicateTagKeys", format!("Tag key '{key}' is given twice")));
        }
        let value = t.value.unwrap_or_default();
        match tags.iter_mut().find(|x| x.key == key) {
            Some(x) => x.value = value,
            None => tags.push(model::Tag { key, value }),
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(codes::err(
            "TooManyTags",
            format!("A resource can have at most {MAX_TAGS} tags"),
        ));
    }
    Ok(tags)
}

impl Elbv2 {
    /// Reads the tags of `arn` (any ELBv2 resource), or its not-found error.
    async fn tags_of(&self, arn: &str) -> Result<Vec<model::Tag>, AwsError> {
        Ok(match self.parse(arn) {
            Some(ParsedArn::LoadBalancer { .. }) => self.load_balancer(arn).await?.0.tags,
            Some(ParsedArn::TargetGroup { .. }) => self.target_group(arn).await?.0.tags,
            Some(ParsedArn::Listener { .. }) => self.listener(arn).await?.0.tags,
            Some(ParsedArn::Rule { lb_id, listener_id, .. }) => {
                let key = keys::listener(&lb_id, &listener_id);
                let l = records::get::<model::ListenerRecord>(self.store(), &key).await?;
                match l.and_then(|(l, _)| l.rules.into_iter().find(|r| r.arn == arn)) {
                    Some(r) => r.tags,
                    None => return Err(codes::rule_not_found(arn)),
                }
            }
            None => {
                return Err(codes::validation(format!(
                    "ResourceArns: '{arn}' is not an Elastic Load Balancing ARN of this region"
                )));
            }
        })
    }

    /// Rewrites the tags of `arn` with `f`.
    async fn edit_tags(
        &self,
        arn: &str,
        f: impl Fn(Vec<model::Tag>) -> Result<Vec<model::Tag>, AwsError>,
    ) -> Result<(), AwsError> {
        let store = self.store();
        let found = match self.parse(arn) {
            Some(ParsedArn::LoadBalancer { id, .. }) => {
                records::update::<model::LoadBalancerRecord, _>(
                    store,
                    &keys::load_balancer(&id),
                    arn,
                    |r| {
                        r.tags = f(std::mem::take(&mut r.tags))?;
                        Ok(())
                    },
                )
                .await?
                .is_some_and(|r| r.arn == arn)
            }
            Some(ParsedArn::TargetGroup { id, .. }) => {
                records::update::<model::TargetGroupRecord, _>(
                    store,
                    &keys::target_group(&id),
                    arn,
                    |r| {
                        r.tags = f(std::mem::take(&mut r.tags))?;
                        Ok(())
                    },
                )
                .await?
                .is_some_and(|r| r.arn == arn)
            }
            Some(ParsedArn::Listener { lb_id, id }) => records::update::<model::ListenerRecord, _>(
                store,
                &keys::listener(&lb_id, &id),
                arn,
                |r| {
                    r.tags = f(std::mem::take(&mut r.tags))?;
                    Ok(())
                },
            )
            .await?
            .is_some_and(|r| r.arn == arn),
            Some(ParsedArn::Rule { lb_id, listener_id, .. }) => {
                let mut found = false;
                records::update::<model::ListenerRecord, _>(
                    store,
                    &keys::listener(&lb_id, &listener_id),
                    arn,
                    |l| {
                        if let Some(r) = l.rules.iter_mut().find(|r| r.arn == arn) {
                            r.tags = f(std::mem::take(&mut r.tags))?;
                            found = true;
                        }
                        Ok(())
                    },
                )
                .await?;
                if !found {
                    return Err(codes::rule_not_found(arn));
                }
                true
            }
            None => false,
        };
        if !found {
            self.tags_of(arn).await?; // the precise not-found error
        }
        Ok(())
    }
}

fn arns(v: Option<Vec<String>>) -> Result<Vec<String>, AwsError> {
    let v = v.unwrap_or_default();
    if v.is_empty() {
        return Err(codes::validation("ResourceArns: at least one ARN is required"));
    }
    if v.len() > 20 {
        return Err(codes::validation("ResourceArns: at most 20 ARNs per call"));
    }
    Ok(v)
}

impl wire::TagsApi<RequestContext> for Elbv2 {
    async fn add_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::AddTagsInput,
    ) -> Result<wire::AddTagsOutput, AwsError> {
        let arns = arns(input.resource_arns)?;
        let add = input.tags.unwrap_or_default();
        merge(Vec::new(), add.clone())?;
        for arn in &arns {
            self.tags_of(arn).await?;
        }
        for arn in &arns {
            self.edit_tags(arn, |t| merge(t, add.clone())).await?;
        }
        Ok(wire::AddTagsOutput {})
    }

    async fn remove_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::RemoveTagsInput,
    ) -> Result<wire::RemoveTagsOutput, AwsError> {
        let arns = arns(input.resource_arns)?;
        let keys = input.tag_keys.unwrap_or_default();
        for arn in &arns {
            self.tags_of(arn).await?;
        }
        for arn in &arns {
            self.edit_tags(arn, |mut t| {
                t.retain(|x| !keys.contains(&x.key));
                Ok(t)
            })
            .await?;
        }
        Ok(wire::RemoveTagsOutput {})
    }

    async fn describe_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeTagsInput,
    ) -> Result<wire::DescribeTagsOutput, AwsError> {
        let mut out = Vec::new();
        for arn in arns(input.resource_arns)? {
            let tags = self.tags_of(&arn).await?;
            out.push(wire::TagDescription {
                resource_arn: Some(arn),
                tags: Some(wire_tags(&tags)),
            });
        }
        Ok(wire::DescribeTagsOutput { tag_descriptions: Some(out) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> wire::Tag {
        wire::Tag { key: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn merge_replaces_and_refuses() {
        let tags = merge(Vec::new(), vec![t("a", "1"), t("b", "2")]).unwrap();
        let tags = merge(tags, vec![t("a", "3")]).unwrap();
        assert_eq!(tags[0], model::Tag { key: "a".into(), value: "3".into() });
        let cases = [
            (vec![t("a", "1"), t("a", "2")], "DuplicateTagKeys"),
            (vec![t("", "1")], "ValidationError"),
            (vec![t("aws:x", "1")], "ValidationError"),
            ((0..51).map(|i| t(&format!("k{i}"), "")).collect(), "TooManyTags"),
        ];
        for (add, code) in cases {
            assert_eq!(merge(Vec::new(), add).unwrap_err().code, code);
        }
    }
}
