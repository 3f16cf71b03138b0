//! CreateTags, DeleteTags and DescribeTags for VPCs, subnets, security groups and network
//! interfaces.
//!
//! Contract: a resource is named by its id, whose prefix says its kind (`vpc-`, `subnet-`,
//! `sg-`, `eni-`); every named resource must exist before any is changed (the kind's
//! `...NotFound` code otherwise); each resource's tags change with compare-and-set on its
//! record. Keys are 1-128 characters and may not start with `aws:`, values at most 256; a
//! resource holds at most 50 tags (`TagLimitExceeded`).

use berth_model::network::{
    NetworkInterfaceRecord, SecurityGroupRecord, SubnetRecord, Tag, VpcRecord, keys,
};
use berth_wire::AwsError;
use berth_wire::ec2::{self as wire, ResourceType};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Ec2, codes, filters, list};
use crate::ecs::RequestContext;
use crate::records;

/// The most tags one resource holds.
const MAX_TAGS: usize = 50;

/// A record that carries tags.
pub(super) trait Tagged: Serialize + DeserializeOwned + PartialEq + Clone {
    fn tags_mut(&mut self) -> &mut Vec<Tag>;
}
impl Tagged for VpcRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}
impl Tagged for SubnetRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}
impl Tagged for SecurityGroupRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}
impl Tagged for NetworkInterfaceRecord {
    fn tags_mut(&mut self) -> &mut Vec<Tag> {
        &mut self.tags
    }
}

/// `existing` with `new` set (a key already present takes the new value); `at` names the
/// request's list in errors.
pub(super) fn merge(
    mut existing: Vec<Tag>,
    new: Vec<wire::Tag>,
    at: &str,
) -> Result<Vec<Tag>, AwsError> {
    for (i, t) in new.into_iter().enumerate() {
        let Some(key) = t.key else {
            return Err(codes::missing(&format!("{at}.Tag.{}.Key", i + 1)));
        };
        let value = t.value.unwrap_or_default();
        check(&key, &value)?;
        match existing.iter_mut().find(|e| e.key == key) {
            Some(e) => e.value = value,
            None => existing.push(Tag { key, value }),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(codes::err(
            "TagLimitExceeded",
            format!("The maximum number of tags for a resource ({MAX_TAGS}) has been reached."),
        ));
    }
    Ok(existing)
}

fn check(key: &str, value: &str) -> Result<(), AwsError> {
    let n = key.chars().count();
    if n == 0 || n > 128 {
        return Err(codes::invalid(format!(
            "Tag key '{key}' must be between 1 and 128 characters long."
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(codes::invalid(format!(
            "Tag keys starting with 'aws:' are reserved for internal use: '{key}'."
        )));
    }
    if value.chars().count() > 256 {
        return Err(codes::invalid(format!(
            "The value of tag '{key}' must be at most 256 characters long."
        )));
    }
    Ok(())
}

/// What kind of resource an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Vpc,
    Subnet,
    SecurityGroup,
    NetworkInterface,
}

fn kind(id: &str) -> Result<Kind, AwsError> {
    let prefix = id.split('-').next().unwrap_or("");
    match prefix {
        "vpc" => Ok(Kind::Vpc),
        "subnet" => Ok(Kind::Subnet),
        "sg" => Ok(Kind::SecurityGroup),
        "eni" => Ok(Kind::NetworkInterface),
        _ => Err(codes::err(
            "InvalidID",
            format!(
                "The ID '{id}' is not valid: Berth tags VPCs (vpc-), subnets (subnet-), security groups (sg-) and network interfaces (eni-)."
            ),
        )),
    }
}

impl Kind {
    fn key(self, id: &str) -> String {
        match self {
            Kind::Vpc => keys::vpc(id),
            Kind::Subnet => keys::subnet(id),
            Kind::SecurityGroup => keys::security_group(id),
            Kind::NetworkInterface => keys::eni(id),
        }
    }
    fn not_found(self, id: &str) -> AwsError {
        match self {
            Kind::Vpc => codes::vpc_not_found(id),
            Kind::Subnet => codes::subnet_not_found(id),
            Kind::SecurityGroup => codes::group_not_found(id),
            Kind::NetworkInterface => codes::eni_not_found(id),
        }
    }
    fn resource_type(self) -> ResourceType {
        match self {
            Kind::Vpc => ResourceType::Vpc,
            Kind::Subnet => ResourceType::Subnet,
            Kind::SecurityGroup => ResourceType::SecurityGroup,
            Kind::NetworkInterface => ResourceType::NetworkInterface,
        }
    }
}

async fn edit<T: Tagged>(
    ec2: &Ec2,
    kind: Kind,
    id: &str,
    f: &(dyn Fn(Vec<Tag>) -> Result<Vec<Tag>, AwsError> + Sync),
) -> Result<(), AwsError> {
    let key = kind.key(id);
    let done = records::update::<T, _>(ec2.store(), &key, &format!("the tags of {id}"), |rec| {
        let tags = std::mem::take(rec.tags_mut());
        *rec.tags_mut() = f(tags)?;
        Ok(())
    })
    .await?;
    done.map(|_| ()).ok_or_else(|| kind.not_found(id))
}

async fn edit_any(
    ec2: &Ec2,
    id: &str,
    f: &(dyn Fn(Vec<Tag>) -> Result<Vec<Tag>, AwsError> + Sync),
) -> Result<(), AwsError> {
    match kind(id)? {
        k @ Kind::Vpc => edit::<VpcRecord>(ec2, k, id, f).await,
        k @ Kind::Subnet => edit::<SubnetRecord>(ec2, k, id, f).await,
        k @ Kind::SecurityGroup => edit::<SecurityGroupRecord>(ec2, k, id, f).await,
        k @ Kind::NetworkInterface => edit::<NetworkInterfaceRecord>(ec2, k, id, f).await,
    }
}

/// Fails with the kind's NotFound code unless every resource exists.
async fn require_all(ec2: &Ec2, ids: &[String]) -> Result<(), AwsError> {
    if ids.is_empty() {
        return Err(codes::missing("ResourceId"));
    }
    for id in ids {
        let k = kind(id)?;
        if ec2.store().get(&k.key(id)).await.map_err(crate::error::store)?.is_none() {
            return Err(k.not_found(id));
        }
    }
    Ok(())
}

impl wire::TagsApi<RequestContext> for Ec2 {
    async fn create_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateTagsRequest,
    ) -> Result<wire::Empty, AwsError> {
        let ids = input.resources.unwrap_or_default();
        let tags = input.tags.ok_or_else(|| codes::missing("Tag"))?;
        // Checked once up front, so a bad tag changes nothing.
        merge(Vec::new(), tags.clone(), "")?;
        require_all(self, &ids).await?;
        for id in &ids {
            let tags = tags.clone();
            edit_any(self, id, &move |existing| merge(existing, tags.clone(), "")).await?;
        }
        Ok(wire::Empty {})
    }

    async fn delete_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteTagsRequest,
    ) -> Result<wire::Empty, AwsError> {
        let ids = input.resources.unwrap_or_default();
        require_all(self, &ids).await?;
        // No Tag list: every tag goes; a tag with a value goes only while it has that value.
        let which: Option<Vec<(String, Option<String>)>> = match input.tags {
            None => None,
            Some(list) => Some(
                list.into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        t.key
                            .map(|k| (k, t.value))
                            .ok_or_else(|| codes::missing(&format!("Tag.{}.Key", i + 1)))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        for id in &ids {
            let which = which.clone();
            edit_any(self, id, &move |existing| {
                Ok(match &which {
                    None => Vec::new(),
                    Some(which) => existing
                        .into_iter()
                        .filter(|t| {
                            !which.iter().any(|(k, v)| {
                                *k == t.key && v.as_ref().is_none_or(|v| *v == t.value)
                            })
                        })
                        .collect(),
                })
            })
            .await?;
        }
        Ok(wire::Empty {})
    }

    async fn describe_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeTagsRequest,
    ) -> Result<wire::DescribeTagsResult, AwsError> {
        let filters =
            filters::parse(input.filters, &["resource-id", "resource-type", "key", "value"])?;
        let store = self.store();
        let mut all: Vec<(String, Kind, Tag)> = Vec::new();
        let mut add = |id: &str, k: Kind, tags: &[Tag]| {
            for t in tags {
                all.push((id.to_string(), k, t.clone()));
            }
        };
        for v in list::<VpcRecord>(store, keys::VPCS).await? {
            add(&v.id, Kind::Vpc, &v.tags);
        }
        for s in list::<SubnetRecord>(store, keys::SUBNETS).await? {
            add(&s.id, Kind::Subnet, &s.tags);
        }
        for g in list::<SecurityGroupRecord>(store, keys::SECURITY_GROUPS).await? {
            add(&g.id, Kind::SecurityGroup, &g.tags);
        }
        for e in list::<NetworkInterfaceRecord>(store, keys::ENIS).await? {
            add(&e.id, Kind::NetworkInterface, &e.tags);
        }
        let rows: Vec<(String, String, Kind, Tag)> = all
            .into_iter()
            .filter(|(id, k, t)| {
                filters::matches(&filters, std::slice::from_ref(t), |name| match name {
                    "resource-id" => filters::one(id.clone()),
                    "resource-type" => filters::one(k.resource_type().as_str()),
                    "key" => filters::one(t.key.clone()),
                    "value" => filters::one(t.value.clone()),
                    _ => vec![],
                })
            })
            .map(|(id, k, t)| (format!("{id}\u{0}{}", t.key), id, k, t))
            .collect();
        let (rows, next_token) =
            filters::page(rows, |r| &r.0, input.max_results, 5, input.next_token.as_deref())?;
        Ok(wire::DescribeTagsResult {
            tags: Some(
                rows.into_iter()
                    .map(|(_, id, k, t)| wire::TagDescription {
                        key: Some(t.key),
                        value: Some(t.value),
                        resource_id: Some(id),
                        resource_type: Some(k.resource_type()),
                    })
                    .collect(),
            ),
            next_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> wire::Tag {
        wire::Tag { key: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn merge_overwrites_and_checks() {
        let got = merge(
            vec![Tag { key: "a".into(), value: "1".into() }],
            vec![t("a", "2"), t("b", "")],
            "",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].value, "2");
        assert_eq!(
            merge(vec![], vec![t("aws:x", "1")], "").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(merge(vec![], vec![t("", "1")], "").unwrap_err().code, "InvalidParameterValue");
        let many: Vec<_> = (0..51).map(|i| t(&format!("k{i}"), "v")).collect();
        assert_eq!(merge(vec![], many, "").unwrap_err().code, "TagLimitExceeded");
        assert_eq!(kind("i-123").unwrap_err().code, "InvalidID");
        assert_eq!(kind("sg-1").unwrap(), Kind::SecurityGroup);
    }
}
