//! SSM Parameter Store (issues #12 and #16; JSON 1.1, `AmazonSSM.` target prefix, wire types
//! generated from botocore's `ssm` model for the operations below): PutParameter,
//! GetParameter, GetParameters, GetParametersByPath, DeleteParameter, DeleteParameters,
//! DescribeParameters, GetParameterHistory, LabelParameterVersion, UnlabelParameterVersion,
//! AddTagsToResource, ListTagsForResource, RemoveTagsFromResource. Other operations of the
//! model answer the protocol's not-implemented error naming them.
//!
//! Contract:
//! * the public parameters that name Berth's instance image answer as before, the same in
//!   every region and read-only: `/aws/service/ecs/optimized-ami/amazon-linux-2/recommended`
//!   is the JSON document ECS publishes there
//!   ([`berth_instances::image::recommended_parameter`]) and `.../image_id` is
//!   [`berth_instances::image::BERTH_IMAGE_ID`], `String` parameters of version 1; any other
//!   `/aws/...` name is `ParameterNotFound`;
//! * every other parameter is one record, `ssm/parameters/<name>` in the region's view, with
//!   every version (at most [`MAX_VERSIONS`]: the oldest is dropped, unless it has labels:
//!   `ParameterMaxVersionLimitExceeded`, as SSM) and its tags; every change is one
//!   compare-and-set on it;
//! * **SecureString values are never stored in plain text**: sealed with AES-256-GCM under a
//!   key derived from the master key ([`crate::secretsmanager::Vault`]), bound to the region,
//!   the name and the version. Without `WithDecryption` a SecureString answers its sealed
//!   form, never the value;
//! * names: `a-zA-Z0-9_.-/`, a hierarchy (a name with `/`) starts with `/` and has at most 15
//!   levels, nothing starts with `aws` or `ssm` (any case); a parameter is named by its name
//!   or its ARN, with `name:VERSION` or `name:LABEL` selectors on GetParameter(s);
//! * tiers: Standard values up to 4 KiB, Advanced up to 8 KiB, Intelligent-Tiering picks;
//!   parameter policies (expiration, notification) are refused, not silently ignored;
//! * errors are SSM's codes (`ParameterNotFound`, `ParameterAlreadyExists`,
//!   `ParameterVersionNotFound`, `ParameterPatternMismatchException`,
//!   `InvalidAllowedPatternException`, `ParameterVersionLabelLimitExceeded`,
//!   `InvalidResourceId`, `InvalidResourceType`, `TooManyTagsError`, `InvalidFilterKey`,
//!   `InvalidFilterOption`, `InvalidNextToken`, `ValidationException` naming the member).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_instances::image;
use berth_model::regions::Region;
use berth_store::{Range, Store, Txn};
use berth_wire::AwsError;
use berth_wire::ssm as wire;
use serde::{Deserialize, Serialize};
use wire::{ErrorCode, ParameterTier, ParameterType};

use crate::App;
use crate::ecs::RequestContext;
use crate::records;
use crate::secretsmanager::Vault;

mod api;
mod tags;

/// Versions kept per parameter (SSM: 100).
pub const MAX_VERSIONS: usize = 100;
/// Labels per version (SSM: 10).
const MAX_LABELS: usize = 10;
/// Tags per parameter (SSM: 50).
const MAX_TAGS: usize = 50;
const STANDARD_MAX: usize = 4096;
const ADVANCED_MAX: usize = 8192;
const KEY_PREFIX: &str = "ssm/parameters/";
/// The KMS key SSM uses for SecureString when none is named.
const DEFAULT_KEY_ID: &str = "alias/aws/ssm";

fn key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// The public parameters this server answers, by name: `(value, region)` -> parameter.
fn lookup(name: &str, region: &str, partition: &str) -> Option<wire::Parameter> {
    let value = match name {
        image::RECOMMENDED_PARAMETER => image::recommended_parameter(env!("CARGO_PKG_VERSION")),
        image::RECOMMENDED_IMAGE_ID_PARAMETER => image::BERTH_IMAGE_ID.to_string(),
        _ => return None,
    };
    Some(wire::Parameter {
        name: Some(name.to_string()),
        r#type: Some(ParameterType::String),
        value: Some(value),
        version: Some(1),
        last_modified_date: Some(0.0),
        arn: Some(format!("arn:{partition}:ssm:{region}::parameter{name}")),
        data_type: Some("text".into()),
        ..Default::default()
    })
}

/// One parameter and its versions (oldest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ParameterRecord {
    name: String,
    #[serde(default)]
    tags: Vec<(String, String)>,
    versions: Vec<VersionRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct VersionRecord {
    version: i64,
    /// `String`, `StringList` or `SecureString`.
    kind: String,
    /// Plain for String and StringList; sealed ([`crate::secretsmanager::Cipher`]) for
    /// SecureString.
    value: String,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    allowed_pattern: Option<String>,
    tier: String,
    data_type: String,
    #[serde(default)]
    labels: Vec<String>,
    modified: f64,
    user: String,
}

impl ParameterRecord {
    fn latest(&self) -> &VersionRecord {
        self.versions.last().expect("a parameter has at least one version")
    }
}

/// One region's Parameter Store, for one request.
struct Parameters {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    region: Region,
    account_id: String,
}

fn validation(m: impl Into<String>) -> AwsError {
    ErrorCode::ValidationException.with(m)
}

fn not_found(name: &str) -> AwsError {
    ErrorCode::ParameterNotFound.with(format!("Parameter {name} not found."))
}

fn now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

fn parse_type(s: &str) -> ParameterType {
    match s {
        "StringList" => ParameterType::StringList,
        "SecureString" => ParameterType::SecureString,
        _ => ParameterType::String,
    }
}

fn parse_tier(s: &str) -> ParameterTier {
    if s == "Advanced" { ParameterTier::Advanced } else { ParameterTier::Standard }
}

/// Checks a parameter name as SSM does (for a parameter to create).
fn check_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 1011 {
        return Err(validation("Name: must be 1 to 1011 characters."));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b)) {
        return Err(validation(format!(
            "Name: parameter name '{name}' can contain only a-zA-Z0-9_.-/ characters."
        )));
    }
    let bare = name.trim_start_matches('/').to_ascii_lowercase();
    if bare.starts_with("aws") || bare.starts_with("ssm") {
        return Err(validation(
            "Name: parameter name can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).",
        ));
    }
    if name.contains('/') {
        if !name.starts_with('/') {
            return Err(validation(
                "Name: parameter name must be a fully qualified name: a name with a hierarchy begins with a forward slash (/).",
            ));
        }
        if name.ends_with('/') || name.contains("//") {
            return Err(validation(format!("Name: '{name}' has an empty level of its hierarchy.")));
        }
        if name.matches('/').count() > 15 {
            return Err(ErrorCode::HierarchyLevelLimitExceededException
                .with("A hierarchy can have a maximum of 15 levels."));
        }
    }
    Ok(())
}

/// Checks a label as SSM does; the reason it is invalid otherwise.
fn label_ok(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    !label.is_empty()
        && label.len() <= 100
        && !label.as_bytes()[0].is_ascii_digit()
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `(name, selector)` of a request's name: an ARN becomes its name; `name:3` and `name:label`
/// split off the selector.
fn split_selector(raw: &str) -> (String, Option<String>) {
    let name = match raw.strip_prefix("arn:") {
        Some(_) => {
            let parts: Vec<&str> = raw.splitn(6, ':').collect();
            match parts.get(5).and_then(|r| r.strip_prefix("parameter")) {
                Some(rest) => rest.to_string(),
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    };
    // ARN form `parameter/a/b` is the name `/a/b`; `parameter/x` is `x`.
    let name = match name.strip_prefix('/') {
        Some(rest) if !rest.contains('/') && raw.starts_with("arn:") => rest.to_string(),
        _ => name,
    };
    match name.rsplit_once(':') {
        Some((n, sel)) if !sel.is_empty() => (n.to_string(), Some(sel.to_string())),
        _ => (name, None),
    }
}

/// `(offset, limit)` of a page request (`max`: the operation's cap and default).
fn page(
    next_token: Option<&str>,
    asked: Option<i32>,
    max: i32,
) -> Result<(usize, usize), AwsError> {
    let limit = match asked {
        None => max as usize,
        Some(n) if (1..=max).contains(&n) => n as usize,
        Some(n) => return Err(validation(format!("MaxResults: must be 1 to {max}, got {n}."))),
    };
    let offset = match next_token {
        None => 0,
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| ErrorCode::InvalidNextToken.with("The specified token is not valid."))?,
    };
    Ok((offset, limit))
}

fn next_token(offset: usize, limit: usize, total: usize) -> Option<String> {
    (offset + limit < total).then(|| URL_SAFE_NO_PAD.encode(format!("o:{}", offset + limit)))
}

impl Parameters {
    fn arn(&self, name: &str) -> String {
        let sep = if name.starts_with('/') { "" } else { "/" };
        format!(
            "arn:{}:ssm:{}:{}:parameter{sep}{name}",
            self.region.partition, self.region.name, self.account_id
        )
    }

    fn aad(&self, name: &str, version: i64) -> String {
        format!("ssm\n{}\n{name}\n{version}", self.region.name)
    }

    async fn get(
        &self,
        name: &str,
    ) -> Result<Option<(ParameterRecord, berth_store::Revision)>, AwsError> {
        records::get::<ParameterRecord>(&*self.store, &key(name)).await
    }

    async fn all(&self, prefix: &str) -> Result<Vec<ParameterRecord>, AwsError> {
        let recs = self
            .store
            .range(Range::prefix(&format!("{KEY_PREFIX}{prefix}")))
            .await
            .map_err(crate::error::store)?;
        Ok(records::decode_all::<ParameterRecord>(recs)?.into_iter().map(|(r, _)| r).collect())
    }

    /// The value of `v` to answer: a SecureString opened only when `decrypt`.
    fn value(&self, name: &str, v: &VersionRecord, decrypt: bool) -> Result<String, AwsError> {
        if v.kind != "SecureString" || !decrypt {
            return Ok(v.value.clone());
        }
        let plain =
            self.vault.parameters.open(&self.aad(name, v.version), &v.value).ok_or_else(|| {
                ErrorCode::InternalServerError
                    .with("The SecureString value does not open with the server's master key.")
            })?;
        String::from_utf8(plain)
            .map_err(|_| ErrorCode::InternalServerError.with("The stored value is not text."))
    }

    fn parameter(
        &self,
        rec: &ParameterRecord,
        v: &VersionRecord,
        selector: Option<String>,
        decrypt: bool,
    ) -> Result<wire::Parameter, AwsError> {
        Ok(wire::Parameter {
            name: Some(rec.name.clone()),
            r#type: Some(parse_type(&v.kind)),
            value: Some(self.value(&rec.name, v, decrypt)?),
            version: Some(v.version),
            selector: selector.map(|s| format!(":{s}")),
            source_result: None,
            last_modified_date: Some(v.modified),
            arn: Some(self.arn(&rec.name)),
            data_type: Some(v.data_type.clone()),
        })
    }

    /// The parameter a GetParameter(s) name selects: `Ok(None)` when it does not exist.
    async fn select(&self, raw: &str, decrypt: bool) -> Result<Option<wire::Parameter>, AwsError> {
        if let Some(p) = lookup(raw, self.region.name, self.region.partition) {
            return Ok(Some(p));
        }
        let (name, selector) = split_selector(raw);
        let Some((rec, _)) = self.get(&name).await? else { return Ok(None) };
        let v = match &selector {
            None => rec.latest(),
            Some(sel) => match sel.parse::<i64>() {
                Ok(n) => match rec.versions.iter().find(|v| v.version == n) {
                    Some(v) => v,
                    None => {
                        return Err(ErrorCode::ParameterVersionNotFound.with(format!(
                            "Systems Manager could not find version {n} of {name}. Verify the version and try again."
                        )));
                    }
                },
                Err(_) => match rec.versions.iter().find(|v| v.labels.contains(sel)) {
                    Some(v) => v,
                    None => return Ok(None),
                },
            },
        };
        Ok(Some(self.parameter(&rec, v, selector.clone(), decrypt)?))
    }

    fn metadata(&self, rec: &ParameterRecord) -> wire::ParameterMetadata {
        let v = rec.latest();
        wire::ParameterMetadata {
            name: Some(rec.name.clone()),
            arn: Some(self.arn(&rec.name)),
            r#type: Some(parse_type(&v.kind)),
            key_id: v.key_id.clone(),
            last_modified_date: Some(v.modified),
            last_modified_user: Some(v.user.clone()),
            description: v.description.clone(),
            allowed_pattern: v.allowed_pattern.clone(),
            version: Some(v.version),
            tier: Some(parse_tier(&v.tier)),
            policies: Some(vec![]),
            data_type: Some(v.data_type.clone()),
        }
    }

    /// Read-modify-write of parameter `name`; `ParameterNotFound` when it does not exist.
    async fn update<T>(
        &self,
        name: &str,
        mut f: impl FnMut(&mut ParameterRecord) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let mut cas = records::Cas::new(&*self.store, format!("parameter {name}"));
        loop {
            cas.attempt().await?;
            let Some((before, rev)) = self.get(name).await? else { return Err(not_found(name)) };
            let mut after = before.clone();
            let out = f(&mut after)?;
            if after == before {
                return Ok(out);
            }
            let k = key(name);
            if cas.commit(Txn::new().when(&k, rev).put(&k, records::encode(&after))).await? {
                return Ok(out);
            }
        }
    }

    /// The plain value of a parameter named by name or ARN (SecureString decrypted), for task
    /// secrets ([`crate::secretsmanager::inject`]); `ParameterNotFound` otherwise.
    async fn read_plain(&self, raw: &str) -> Result<String, AwsError> {
        match self.select(raw, true).await? {
            Some(p) => Ok(p.value.unwrap_or_default()),
            None => Err(not_found(raw)),
        }
    }
}

/// Whether `rec` passes ParameterStringFilters (`by_path`: only the keys GetParametersByPath
/// takes).
fn filter_matches(
    rec: &ParameterRecord,
    filters: &[wire::ParameterStringFilter],
    by_path: bool,
) -> Result<bool, AwsError> {
    let v = rec.latest();
    for f in filters {
        let k = f.key.clone().unwrap_or_default();
        let option = f.option.clone().unwrap_or_else(|| "Equals".into());
        let values = f.values.clone().unwrap_or_default();
        let allowed: &[&str] = if by_path {
            &["Type", "KeyId", "Label"]
        } else {
            &["Name", "Type", "KeyId", "Path", "Tier", "DataType", "Label"]
        };
        let is_tag = k.starts_with("tag:");
        if !(allowed.contains(&k.as_str()) || (is_tag && !by_path)) {
            return Err(ErrorCode::InvalidFilterKey
                .with(format!("ParameterFilters: the filter key {k} is not valid here.")));
        }
        let options: &[&str] = match k.as_str() {
            "Name" => &["Equals", "BeginsWith", "Contains"],
            "Path" => &["Recursive", "OneLevel"],
            "Label" | "Type" | "KeyId" | "Tier" | "DataType" => &["Equals"],
            _ => &["Equals"],
        };
        if !options.contains(&option.as_str()) {
            return Err(ErrorCode::InvalidFilterOption.with(format!(
                "ParameterFilters: the option {option} is not valid for the key {k}; use one of {}.",
                options.join(", ")
            )));
        }
        let any = |pred: &dyn Fn(&str) -> bool| values.iter().any(|x| pred(x));
        let ok = match k.as_str() {
            "Name" => any(&|x: &str| {
                let (n, x) = (rec.name.as_str(), x);
                match option.as_str() {
                    "BeginsWith" => n.starts_with(x),
                    "Contains" => n.contains(x),
                    _ => n == x || n.trim_start_matches('/') == x.trim_start_matches('/'),
                }
            }),
            "Type" => any(&|x: &str| x == v.kind),
            "KeyId" => any(&|x: &str| v.key_id.as_deref() == Some(x)),
            "Tier" => any(&|x: &str| x == v.tier),
            "DataType" => any(&|x: &str| x == v.data_type),
            "Label" => {
                any(&|x: &str| rec.versions.iter().any(|ver| ver.labels.iter().any(|l| l == x)))
            }
            "Path" => any(&|x: &str| {
                let p = x.trim_end_matches('/');
                let Some(rest) = rec.name.strip_prefix(&format!("{p}/")) else { return false };
                option == "Recursive" || !rest.contains('/')
            }),
            _ => {
                let tag = &k[4..];
                rec.tags
                    .iter()
                    .any(|(tk, tv)| tk == tag && (values.is_empty() || values.contains(tv)))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check_tags(tags: &[wire::Tag]) -> Result<Vec<(String, String)>, AwsError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let k = t.key.clone().unwrap_or_default();
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(validation(format!("Tags[{i}].Key: the aws: prefix is reserved.")));
        }
        out.retain(|(x, _)| *x != k);
        out.push((k, t.value.clone().unwrap_or_default()));
    }
    Ok(out)
}

impl wire::Api for Parameters {
    type Context = RequestContext;
    type Parameters = Parameters;
    type Tags = Parameters;
    fn parameters(&self) -> &Parameters {
        self
    }
    fn tags(&self) -> &Parameters {
        self
    }
}

/// The plain value of the parameter `name_or_arn` in `region` (SecureString decrypted), for
/// task secrets; `ParameterNotFound` when there is none.
pub(crate) async fn read_parameter(
    app: &App,
    region: Region,
    name_or_arn: &str,
) -> Result<String, AwsError> {
    let p = Parameters {
        store: app.regions.services(region).view.clone(),
        vault: app.vault.clone(),
        region,
        account_id: app.account_id.clone(),
    };
    p.read_plain(name_or_arn).await
}

/// The tags of the parameter whose ARN ends `parameter/REST` in `region`, for
/// `aws:ResourceTag` (`None`: no such parameter). `REST` is the name without its leading `/`:
/// `a/b` is `/a/b`, `a` is `a` or else `/a`.
pub(crate) async fn parameter_tags(
    app: &App,
    region: Region,
    rest: &str,
) -> Result<Option<Vec<(String, String)>>, AwsError> {
    let view = app.regions.services(region).view.clone();
    let slashed = format!("/{rest}");
    let names: &[&str] = if rest.contains('/') { &[&slashed] } else { &[rest, &slashed] };
    for name in names {
        if let Some((rec, _)) = records::get::<ParameterRecord>(&*view, &key(name)).await? {
            return Ok(Some(rec.tags));
        }
    }
    Ok(None)
}

/// Serves one SSM request (already routed here by its `ssm` credential scope).
pub(crate) async fn serve(
    app: &App,
    req: axum::extract::Request,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let call = crate::protocol::json_call(
        app,
        req,
        request_id,
        &crate::protocol::JsonService {
            signing_name: wire::SIGNING_NAME,
            target_prefix: wire::TARGET_PREFIX,
            title: "AWS SSM",
            from_name: wire::Operation::from_name,
            name: wire::Operation::name,
        },
    )
    .await?;
    let api = Parameters {
        store: app.regions.services(call.region).view.clone(),
        vault: app.vault.clone(),
        region: call.region,
        account_id: app.account_id.clone(),
    };
    wire::dispatch(&api, &call.ctx, call.op, &call.body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recommended_parameters_name_berths_image() {
        let p = lookup(image::RECOMMENDED_PARAMETER, "eu-west-1", "aws").unwrap();
        let doc: serde_json::Value = serde_json::from_str(p.value.as_deref().unwrap()).unwrap();
        assert_eq!(doc["image_id"], image::BERTH_IMAGE_ID);
        assert_eq!(
            p.arn.as_deref(),
            Some(
                "arn:aws:ssm:eu-west-1::parameter/aws/service/ecs/optimized-ami/amazon-linux-2/recommended"
            )
        );
        let id = lookup(image::RECOMMENDED_IMAGE_ID_PARAMETER, "us-east-1", "aws").unwrap();
        assert_eq!(id.value.as_deref(), Some(image::BERTH_IMAGE_ID));
        assert!(
            lookup("/aws/service/ecs/optimized-ami/amazon-linux-2/nope", "us-east-1", "aws")
                .is_none()
        );
    }

    #[test]
    fn names_selectors_and_labels() {
        assert_eq!(split_selector("/a/b"), ("/a/b".into(), None));
        assert_eq!(split_selector("/a/b:3"), ("/a/b".into(), Some("3".into())));
        assert_eq!(split_selector("x:prod"), ("x".into(), Some("prod".into())));
        assert_eq!(
            split_selector("arn:aws:ssm:us-east-1:000000000000:parameter/a/b"),
            ("/a/b".into(), None)
        );
        assert_eq!(
            split_selector("arn:aws:ssm:us-east-1:000000000000:parameter/x"),
            ("x".into(), None)
        );
        assert!(check_name("/app/db/password").is_ok());
        assert!(check_name("plain").is_ok());
        for bad in ["a/b", "/AWS/x", "ssm-x", "/a//b", "/a/", "sp ace", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(label_ok("prod"));
        for bad in ["1x", "awsx", "Ssm", "a b", ""] {
            assert!(!label_ok(bad), "{bad}");
        }
    }
}
