//! AWS managed policies (`arn:aws:iam::aws:policy/...`): a built-in, read-only catalog
//! compiled into the server from `aws_managed.json`.
//!
//! Contract:
//! * each entry carries what IAM reports for it: name, path, PolicyId, DefaultVersionId,
//!   CreateDate / UpdateDate and description, and the document of its default version
//!   (answered as written in the file). Documents match AWS's published ones, except where
//!   an entry's `approximation` says otherwise (ReadOnlyAccess: AWS's lists every service);
//! * only the default version exists here: ListPolicyVersions answers that one;
//! * nothing of the catalog is ever stored: the store holds only attachments (ARNs on users,
//!   groups and roles). Catalog policies cannot be deleted or versioned ([`read_only`]);
//! * every document parses as an identity policy (unit-tested); an entry that did not would be
//!   left out with an error logged, never a panic.

use std::sync::{Arc, LazyLock};

use berth_iam_policy as policy;
use berth_model::iam::{IamManagedPolicy, IamPolicyVersion};
use berth_wire::AwsError;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The catalog's source, one JSON array of entries.
const CATALOG_JSON: &str = include_str!("aws_managed.json");

#[derive(Deserialize)]
struct Entry<'a> {
    name: String,
    path: String,
    id: String,
    version: String,
    /// RFC 3339.
    created: String,
    updated: String,
    description: String,
    /// Why the document differs from AWS's, when it does.
    #[serde(default)]
    #[allow(dead_code)]
    approximation: Option<String>,
    #[serde(borrow)]
    document: &'a RawValue,
}

/// One AWS managed policy: its record as IAM answers it, and its parsed default version.
pub(crate) struct AwsManaged {
    pub record: IamManagedPolicy,
    pub parsed: Arc<policy::Policy>,
}

static CATALOG: LazyLock<Vec<AwsManaged>> = LazyLock::new(|| {
    let entries: Vec<Entry<'static>> = match serde_json::from_str(CATALOG_JSON) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "the AWS managed policy catalog does not parse");
            return vec![];
        }
    };
    entries
        .into_iter()
        .filter_map(|e| match load(e) {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::error!(%why, "an AWS managed policy of the catalog is left out");
                None
            }
        })
        .collect()
});

fn epoch(s: &str) -> Result<f64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp() as f64)
        .map_err(|e| format!("date {s}: {e}"))
}

fn load(e: Entry<'static>) -> Result<AwsManaged, String> {
    let arn = format!("{ARN_PREFIX}{}{}", e.path.trim_start_matches('/'), e.name);
    let document = e.document.get().to_string();
    let parsed = policy::Policy::parse(&document, policy::PolicyKind::Identity)
        .map_err(|err| format!("{arn}: {err}"))?
        .with_label(arn.clone());
    let created_at = epoch(&e.created)?;
    let updated_at = epoch(&e.updated)?;
    let number: u32 = e
        .version
        .strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{arn}: version {} is not vN", e.version))?;
    let record = IamManagedPolicy {
        name: e.name,
        id: e.id,
        path: e.path,
        arn,
        description: Some(e.description),
        created_at,
        updated_at,
        default_version: e.version.clone(),
        versions: vec![IamPolicyVersion { id: e.version, document, created_at: updated_at }],
        next_version: number + 1,
        tags: vec![],
    };
    Ok(AwsManaged { record, parsed: Arc::new(parsed) })
}

/// What every AWS managed policy's ARN starts with.
pub(crate) const ARN_PREFIX: &str = "arn:aws:iam::aws:policy/";

/// Whether `arn` is in AWS's policy namespace (`arn:PARTITION:iam::aws:policy/...`), whether
/// or not the catalog has it.
pub(crate) fn is_aws_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[4] == "aws"
        && parts[5].starts_with("policy/")
}

/// Every catalog policy.
pub(crate) fn all() -> &'static [AwsManaged] {
    &CATALOG
}

/// The catalog policy `arn` (exactly as AWS spells it).
pub(crate) fn get(arn: &str) -> Option<&'static AwsManaged> {
    CATALOG.iter().find(|p| p.record.arn == arn)
}

/// The refusal of a write (delete, versions) to an AWS managed policy.
pub(crate) fn read_only(arn: &str, operation: &str) -> AwsError {
    AwsError::new(
        "InvalidInput",
        400,
        format!(
            "Policy {arn} is an AWS managed policy: {operation} is not allowed on it; create a customer managed policy instead."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_loads_and_parses_as_an_identity_policy() {
        let entries: Vec<Entry<'static>> = serde_json::from_str(CATALOG_JSON).unwrap();
        let n = entries.len();
        for e in entries {
            let name = e.name.clone();
            let p = load(e).unwrap_or_else(|why| panic!("{name}: {why}"));
            // The document is answered as stored: it must parse again from the record.
            policy::Policy::parse(
                p.record.default_document().expect("a default version"),
                policy::PolicyKind::Identity,
            )
            .unwrap();
            assert!(p.record.id.starts_with("ANPA") && p.record.id.len() == 21, "{name}");
            assert!(p.record.created_at <= p.record.updated_at, "{name}");
        }
        assert_eq!(all().len(), n, "every entry is in the catalog");
        let mut arns: Vec<&str> = all().iter().map(|p| p.record.arn.as_str()).collect();
        arns.sort();
        arns.dedup();
        assert_eq!(arns.len(), n, "ARNs are unique");
    }

    #[test]
    fn the_catalog_holds_what_berth_users_attach() {
        for name in [
            "AdministratorAccess",
            "PowerUserAccess",
            "ReadOnlyAccess",
            "service-role/AmazonECSTaskExecutionRolePolicy",
            "AmazonECS_FullAccess",
            "AmazonEC2ContainerRegistryReadOnly",
            "AmazonEC2ContainerRegistryPowerUser",
            "AmazonEC2ContainerRegistryFullAccess",
            "CloudWatchLogsFullAccess",
            "CloudWatchLogsReadOnlyAccess",
            "SecretsManagerReadWrite",
            "AmazonSSMReadOnlyAccess",
            "IAMReadOnlyAccess",
            "IAMFullAccess",
            "service-role/AmazonEC2ContainerServiceforEC2Role",
            "service-role/AmazonEC2ContainerServiceRole",
        ] {
            let arn = format!("{ARN_PREFIX}{name}");
            assert!(get(&arn).is_some(), "{arn}");
            assert!(is_aws_arn(&arn));
        }
        let p =
            get("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy").unwrap();
        assert_eq!(
            (p.record.path.as_str(), p.record.id.as_str(), p.record.default_version.as_str()),
            ("/service-role/", "ANPAJG4T4G4PV56DE72PY", "v1")
        );
        assert!(get("arn:aws:iam::aws:policy/AmazonECSTaskExecutionRolePolicy").is_none());
        assert!(!is_aws_arn("arn:aws:iam::123456789012:policy/AdministratorAccess"));
    }

    #[test]
    fn documents_decide_as_aws_documents_them() {
        let decide = |arn: &str, action: &str, resource: &str| {
            let p = get(arn).unwrap();
            let ctx = policy::RequestContext::new(
                policy::Principal::from_arn("arn:aws:iam::123456789012:user/u"),
                action,
                resource,
            );
            policy::evaluate_identity(&[&*p.parsed], &ctx).is_allowed()
        };
        let ecr_ro = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
        let repo = "arn:aws:ecr:us-east-1:123456789012:repository/web";
        assert!(decide(ecr_ro, "ecr:DescribeRepositories", repo));
        assert!(decide(ecr_ro, "ecr:BatchGetImage", repo));
        assert!(!decide(ecr_ro, "ecr:CreateRepository", repo));
        assert!(!decide(ecr_ro, "ecr:PutImage", repo));
        let power = "arn:aws:iam::aws:policy/PowerUserAccess";
        assert!(decide(power, "ecs:RunTask", "*"));
        assert!(!decide(power, "iam:CreateUser", "*"));
        assert!(decide(power, "iam:ListRoles", "*"));
        let exec = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
        assert!(decide(exec, "logs:PutLogEvents", "arn:aws:logs:us-east-1:1:log-group:g"));
        assert!(!decide(exec, "secretsmanager:GetSecretValue", "*"));
        let ro = "arn:aws:iam::aws:policy/ReadOnlyAccess";
        assert!(decide(ro, "ecs:DescribeClusters", "*"));
        assert!(!decide(ro, "ecs:CreateCluster", "*"));
        assert!(!decide(ro, "secretsmanager:GetSecretValue", "*"));
    }
}
