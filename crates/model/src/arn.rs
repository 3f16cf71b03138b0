//! ARNs in AWS's formats, and the name-or-ARN references ECS operations accept.
//!
//! Every operation that takes a name also takes the ARN; the functions here turn either into
//! the name the store keys on. An ARN of another partition, region or account names nothing
//! here, so it resolves to `None` and the caller answers "not found" as ECS does. A
//! [`Scope`] is one region's: its partition is the region's ([`crate::regions`]).

use crate::ModelError;

/// Where this server lives: every ARN it mints carries these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub partition: String,
    pub region: String,
    pub account_id: String,
}

impl Scope {
    /// A scope in `region`'s partition ([`crate::regions`]: `aws-cn` for `cn-north-1`...;
    /// `aws` for a region botocore does not list).
    pub fn new(region: impl Into<String>, account_id: impl Into<String>) -> Self {
        let region = region.into();
        let partition = crate::regions::partition_of(&region).unwrap_or("aws").to_string();
        Self { partition, region, account_id: account_id.into() }
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:<resource>`.
    pub fn ecs_arn(&self, resource: &str) -> String {
        format!("arn:{}:ecs:{}:{}:{}", self.partition, self.region, self.account_id, resource)
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`.
    pub fn cluster_arn(&self, name: &str) -> String {
        self.ecs_arn(&format!("cluster/{name}"))
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION`.
    pub fn task_definition_arn(&self, family: &str, revision: i32) -> String {
        self.ecs_arn(&format!("task-definition/{family}:{revision}"))
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:container-instance/CLUSTER/ID`, or the short format
    /// `container-instance/ID` for an id minted short ([`is_short_format_id`]).
    pub fn container_instance_arn(&self, cluster: &str, id: &str) -> String {
        self.child_arn("container-instance", cluster, id)
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`, or the short format `task/ID` for an id
    /// minted short ([`is_short_format_id`]).
    pub fn task_arn(&self, cluster: &str, id: &str) -> String {
        self.child_arn("task", cluster, id)
    }

    /// The ARN of a cluster's child resource in the format its id was minted for.
    fn child_arn(&self, kind: &str, cluster: &str, id: &str) -> String {
        if is_short_format_id(id) {
            self.ecs_arn(&format!("{kind}/{id}"))
        } else {
            self.ecs_arn(&format!("{kind}/{cluster}/{id}"))
        }
    }

    /// A resource of `kind` (`task`, `container-instance`, `service`) named by id or ARN: its
    /// id, or `None` when the ARN is not of this scope, of another kind, or of another
    /// cluster. The short ARN format (`task/ID`, from before the long format or with the
    /// `taskLongArnFormat` account setting disabled) carries no cluster: its id is looked up
    /// in the cluster the request names.
    pub fn child_id<'a>(&self, kind: &str, cluster: &str, id_or_arn: &'a str) -> Option<&'a str> {
        if !id_or_arn.starts_with("arn:") {
            return (!id_or_arn.is_empty() && !id_or_arn.contains('/')).then_some(id_or_arn);
        }
        let res = self.ecs_resource(id_or_arn)?.strip_prefix(kind)?.strip_prefix('/')?;
        match res.split_once('/') {
            Some((c, id)) if c == cluster && !id.is_empty() && !id.contains('/') => Some(id),
            None if !res.is_empty() => Some(res),
            _ => None,
        }
    }

    /// `arn:aws:iam::ACCOUNT:root`, the principal of the account's root user.
    pub fn account_root_arn(&self) -> String {
        format!("arn:{}:iam::{}:root", self.partition, self.account_id)
    }

    /// The resource part of an ECS ARN of this scope (`cluster/x`), or `None` when `arn` is not
    /// an ECS ARN or belongs to another partition, region or account.
    pub fn ecs_resource<'a>(&self, arn: &'a str) -> Option<&'a str> {
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("ecs"), Some(region), Some(account), Some(res)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        (partition == self.partition && region == self.region && account == self.account_id)
            .then_some(res)
    }

    /// A cluster given by name or ARN. `None` for an ARN that names no cluster of this scope.
    pub fn cluster_name<'a>(&self, name_or_arn: &'a str) -> Option<&'a str> {
        if name_or_arn.starts_with("arn:") {
            self.ecs_resource(name_or_arn)?.strip_prefix("cluster/").filter(|n| !n.is_empty())
        } else {
            Some(name_or_arn)
        }
    }

    /// What an ECS ARN of this scope names.
    pub fn resource(&self, arn: &str) -> Option<ResourceRef> {
        let res = self.ecs_resource(arn)?;
        let (kind, rest) = res.split_once('/')?;
        match kind {
            "cluster" if !rest.is_empty() && !rest.contains('/') => {
                Some(ResourceRef::Cluster(rest.to_string()))
            }
            "task-definition" => {
                let (family, rev) = rest.rsplit_once(':')?;
                let revision = rev.parse().ok().filter(|r| *r > 0)?;
                Some(ResourceRef::TaskDefinition { family: family.to_string(), revision })
            }
            "service" => {
                let (cluster, name) = rest.split_once('/')?;
                (!cluster.is_empty() && !name.is_empty() && !name.contains('/')).then(|| {
                    ResourceRef::Service { cluster: cluster.to_string(), name: name.to_string() }
                })
            }
            _ => None,
        }
    }
}

/// A new id for a task or container instance: 32 hex digits for the long ARN format (as ECS
/// mints them today), a hyphenated UUID for the short format (as ECS minted them before the
/// long format). The id alone thus says which ARN format its resource has.
pub fn new_resource_id(long_arn_format: bool) -> String {
    let id = uuid::Uuid::new_v4();
    if long_arn_format { id.simple().to_string() } else { id.hyphenated().to_string() }
}

/// Whether `id` was minted for the short ARN format (see [`new_resource_id`]).
pub fn is_short_format_id(id: &str) -> bool {
    id.contains('-')
}

/// A taggable resource named by its ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceRef {
    Cluster(String),
    TaskDefinition {
        family: String,
        revision: i32,
    },
    /// `service/CLUSTER/NAME`.
    Service {
        cluster: String,
        name: String,
    },
}

/// A task definition named as ECS allows: `family` (its latest ACTIVE revision),
/// `family:revision`, or the full ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskDefinitionRef {
    Latest { family: String },
    Revision { family: String, revision: i32 },
}

impl TaskDefinitionRef {
    /// Parses a reference; `field` names the request member in errors.
    pub fn parse(scope: &Scope, s: &str, field: &str) -> Result<Self, ModelError> {
        let bad = || {
            ModelError::client(
                field,
                format!("Invalid revision number. Number: {}", s.rsplit(':').next().unwrap_or(s)),
            )
        };
        let body = if s.starts_with("arn:") {
            let res = scope.ecs_resource(s).ok_or_else(|| {
                ModelError::client(field, format!("Unable to describe task definition: {s}"))
            })?;
            res.strip_prefix("task-definition/").ok_or_else(|| {
                ModelError::invalid(field, format!("{s} is not a task definition ARN."))
            })?
        } else {
            s
        };
        if body.is_empty() {
            return Err(ModelError::client(field, "Task definition cannot be empty."));
        }
        match body.rsplit_once(':') {
            None => Ok(Self::Latest { family: body.to_string() }),
            Some((family, rev)) => {
                let revision: i32 = rev.parse().map_err(|_| bad())?;
                if revision < 1 || family.is_empty() {
                    return Err(bad());
                }
                Ok(Self::Revision { family: family.to_string(), revision })
            }
        }
    }

    /// The family named.
    pub fn family(&self) -> &str {
        match self {
            Self::Latest { family } | Self::Revision { family, .. } => family,
        }
    }
}

/// Checks a cluster name: 1-255 letters, numbers, hyphens and underscores.
pub fn validate_cluster_name(name: &str, field: &str) -> Result<(), ModelError> {
    if name.is_empty()
        || name.len() > 255
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ModelError::invalid(
            field,
            "Cluster name must be 1-255 characters: letters (uppercase and lowercase), numbers, hyphens and underscores.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("us-east-1", "123456789012")
    }

    #[test]
    fn arns_have_aws_format() {
        let s = scope();
        assert_eq!(s.cluster_arn("web"), "arn:aws:ecs:us-east-1:123456789012:cluster/web");
        assert_eq!(
            s.task_definition_arn("app", 3),
            "arn:aws:ecs:us-east-1:123456789012:task-definition/app:3"
        );
    }

    #[test]
    fn arns_carry_the_partition_of_their_region() {
        let cases = [
            ("us-east-1", "arn:aws:ecs:us-east-1:123456789012:cluster/web"),
            ("cn-north-1", "arn:aws-cn:ecs:cn-north-1:123456789012:cluster/web"),
            ("us-gov-west-1", "arn:aws-us-gov:ecs:us-gov-west-1:123456789012:cluster/web"),
            ("us-iso-east-1", "arn:aws-iso:ecs:us-iso-east-1:123456789012:cluster/web"),
        ];
        for (region, arn) in cases {
            let s = Scope::new(region, "123456789012");
            assert_eq!(s.cluster_arn("web"), arn);
            assert_eq!(s.cluster_name(arn), Some("web"), "{region}");
            // The same resource in the `aws` partition is another resource.
            let elsewhere = arn.replacen(&format!("arn:{}:", s.partition), "arn:aws-x:", 1);
            assert_eq!(s.cluster_name(&elsewhere), None, "{region}");
        }
        let cn = Scope::new("cn-north-1", "123456789012");
        assert_eq!(cn.account_root_arn(), "arn:aws-cn:iam::123456789012:root");
    }

    #[test]
    fn cluster_names_and_arns() {
        let s = scope();
        let cases: &[(&str, Option<&str>)] = &[
            ("web", Some("web")),
            ("arn:aws:ecs:us-east-1:123456789012:cluster/web", Some("web")),
            ("arn:aws:ecs:eu-west-1:123456789012:cluster/web", None),
            ("arn:aws:ecs:us-east-1:999999999999:cluster/web", None),
            ("arn:aws:ecs:us-east-1:123456789012:service/web/x", None),
            ("arn:aws:ecs:us-east-1:123456789012:cluster/", None),
            ("arn:aws:s3:::bucket", None),
        ];
        for (input, want) in cases {
            assert_eq!(s.cluster_name(input), *want, "{input}");
        }
    }

    #[test]
    fn task_definition_refs() {
        let s = scope();
        let ok: &[(&str, TaskDefinitionRef)] = &[
            ("web", TaskDefinitionRef::Latest { family: "web".into() }),
            ("web:7", TaskDefinitionRef::Revision { family: "web".into(), revision: 7 }),
            (
                "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
                TaskDefinitionRef::Revision { family: "web".into(), revision: 2 },
            ),
        ];
        for (input, want) in ok {
            assert_eq!(&TaskDefinitionRef::parse(&s, input, "taskDefinition").unwrap(), want);
        }
        for bad in ["web:0", "web:x", "web:-1", "", ":3"] {
            let err = TaskDefinitionRef::parse(&s, bad, "taskDefinition").unwrap_err();
            assert_eq!(err.field(), "taskDefinition", "{bad}");
        }
    }

    #[test]
    fn resources_by_arn() {
        let s = scope();
        assert_eq!(
            s.resource("arn:aws:ecs:us-east-1:123456789012:cluster/a"),
            Some(ResourceRef::Cluster("a".into()))
        );
        assert_eq!(
            s.resource("arn:aws:ecs:us-east-1:123456789012:task-definition/f:12"),
            Some(ResourceRef::TaskDefinition { family: "f".into(), revision: 12 })
        );
        assert_eq!(s.resource("arn:aws:ecs:us-east-1:123456789012:task-definition/f"), None);
    }

    #[test]
    fn child_ids() {
        let s = scope();
        let arn = s.task_arn("c", "abc");
        assert_eq!(arn, "arn:aws:ecs:us-east-1:123456789012:task/c/abc");
        assert_eq!(s.child_id("task", "c", &arn), Some("abc"));
        assert_eq!(s.child_id("task", "other", &arn), None);
        assert_eq!(s.child_id("container-instance", "c", &arn), None);
        assert_eq!(s.child_id("task", "c", "abc"), Some("abc"));
        assert_eq!(s.child_id("task", "c", "a/b"), None);
        let ci = s.container_instance_arn("c", "i1");
        assert_eq!(s.child_id("container-instance", "c", &ci), Some("i1"));
    }

    #[test]
    fn short_and_long_arn_formats() {
        let s = scope();
        let long = new_resource_id(true);
        let short = new_resource_id(false);
        assert_eq!(long.len(), 32);
        assert!(!is_short_format_id(&long));
        assert_eq!(short.len(), 36);
        assert!(is_short_format_id(&short));
        let p = "arn:aws:ecs:us-east-1:123456789012:";
        let cases: &[(&str, String, String)] = &[
            ("task", s.task_arn("c", &long), format!("{p}task/c/{long}")),
            ("task", s.task_arn("c", &short), format!("{p}task/{short}")),
            (
                "container-instance",
                s.container_instance_arn("c", &long),
                format!("{p}container-instance/c/{long}"),
            ),
            (
                "container-instance",
                s.container_instance_arn("c", &short),
                format!("{p}container-instance/{short}"),
            ),
        ];
        for (kind, got, want) in cases {
            assert_eq!(got, want);
            let id = want.rsplit('/').next().unwrap();
            assert_eq!(s.child_id(kind, "c", got), Some(id), "{got}");
        }
        // A short ARN names no cluster: it resolves in the cluster the request names; a long
        // one only in its own.
        assert_eq!(s.child_id("task", "other", &s.task_arn("c", &short)), Some(short.as_str()));
        assert_eq!(s.child_id("task", "other", &s.task_arn("c", &long)), None);
        // Hand-written short ARNs of any id, and malformed ones.
        assert_eq!(s.child_id("task", "c", &format!("{p}task/abc")), Some("abc"));
        assert_eq!(s.child_id("service", "c", &format!("{p}service/web")), Some("web"));
        assert_eq!(s.child_id("task", "c", &format!("{p}task/")), None);
        assert_eq!(s.child_id("task", "c", &format!("{p}task/c/")), None);
        assert_eq!(s.child_id("task", "c", &format!("{p}task/c/a/b")), None);
    }

    /// Every parser here, given ARNs and names with a multi-byte character inserted at every
    /// char boundary, answers without panicking.
    #[test]
    fn multi_byte_characters_at_every_offset() {
        let s = scope();
        let bases = [
            "arn:aws:ecs:us-east-1:123456789012:cluster/web".to_string(),
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2".to_string(),
            "arn:aws:ecs:us-east-1:123456789012:service/c/web".to_string(),
            s.task_arn("c", "abc"),
            s.container_instance_arn("c", "i1"),
            "web:7".to_string(),
        ];
        for base in &bases {
            for c in ['é', '日', '𐐷', ':', '/'] {
                for at in (0..=base.len()).filter(|&i| base.is_char_boundary(i)) {
                    let mut input = base.clone();
                    input.insert(at, c);
                    let _ = s.cluster_name(&input);
                    let _ = s.resource(&input);
                    let _ = s.ecs_resource(&input);
                    let _ = s.child_id("task", "c", &input);
                    let _ = s.child_id("container-instance", "c", &input);
                    let _ = TaskDefinitionRef::parse(&s, &input, "taskDefinition");
                    if c.len_utf8() > 1 {
                        assert!(validate_cluster_name(&input, "cluster").is_err(), "{input}");
                    }
                }
            }
        }
        assert_eq!(
            TaskDefinitionRef::parse(&s, "wéb:3", "taskDefinition").unwrap(),
            TaskDefinitionRef::Revision { family: "wéb".into(), revision: 3 }
        );
    }

    #[test]
    fn cluster_name_rules() {
        assert!(validate_cluster_name("a-b_C9", "clusterName").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(256)] {
            assert!(validate_cluster_name(bad, "clusterName").is_err(), "{bad}");
        }
    }
}
