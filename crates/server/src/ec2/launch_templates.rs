//! Launch templates: CreateLaunchTemplate, DescribeLaunchTemplates,
//! CreateLaunchTemplateVersion, DescribeLaunchTemplateVersions, ModifyLaunchTemplate (the
//! default version) and DeleteLaunchTemplate, and how RunInstances and Auto Scaling resolve
//! a `LaunchTemplateSpecification` ([`Ec2::resolve_template`]).
//!
//! Contract and invariants:
//! * a template is one record, `ec2/launch-templates/<id>` ([`key`]), holding every version
//!   (versions are immutable, numbered from 1, never reused); its name is unique in the
//!   region through `ec2/launch-template-names/<name>` (the id), written with
//!   compare-and-set on absence in the same transaction as the record, so concurrent
//!   creates with one name make exactly one template
//!   (`InvalidLaunchTemplateName.AlreadyExistsException` for the others);
//! * every change is a compare-and-set on the record's revision; DeleteLaunchTemplate removes
//!   the record and its name together;
//! * a version is named by `$Latest`, `$Default` or its number (default: `$Default`); what
//!   Berth keeps of a version's data is what an agent-backed instance uses (image, type,
//!   key, UserData, security groups, instance tags); other members are accepted and not
//!   kept;
//! * errors are EC2's codes: `InvalidLaunchTemplateId.Malformed` / `.NotFound` /
//!   `.VersionNotFound`, `InvalidLaunchTemplateName.MalformedException` /
//!   `.NotFoundException` / `.AlreadyExistsException`, `InvalidParameterCombination`
//!   when both an id and a name are given.

use berth_model::network::{Tag, new_id};
use berth_store::{Revision, Txn};
use berth_wire::AwsError;
use berth_wire::ec2 as wire;
use serde::{Deserialize, Serialize};

use super::{Ec2, codes, filters, list, spec_tags, tags, wire_tags};
use crate::ecs::RequestContext;
use crate::records;

/// Prefix of every template record.
pub(crate) const TEMPLATES: &str = "ec2/launch-templates/";
const NAMES: &str = "ec2/launch-template-names/";

fn key(id: &str) -> String {
    format!("{TEMPLATES}{id}")
}

fn name_key(name: &str) -> String {
    format!("{NAMES}{name}")
}

/// What Berth keeps of a version's `LaunchTemplateData`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// Base64, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// `TagSpecifications` for `instance`.
    #[serde(default)]
    pub instance_tags: Vec<Tag>,
}

/// One immutable version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateVersion {
    pub number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub create_time: f64,
    pub data: TemplateData,
}

/// `ec2/launch-templates/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LaunchTemplateRecord {
    pub id: String,
    pub name: String,
    pub create_time: f64,
    pub created_by: String,
    pub default_version: u64,
    pub latest_version: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub versions: Vec<TemplateVersion>,
}

impl LaunchTemplateRecord {
    /// The version `spec` names (`$Latest`, `$Default`, a number; `None`: the default).
    pub fn version(&self, spec: Option<&str>) -> Result<&TemplateVersion, AwsError> {
        let n = match spec.map(str::trim).filter(|s| !s.is_empty()) {
            None | Some("$Default") => self.default_version,
            Some("$Latest") => self.latest_version,
            Some(v) => v.parse::<u64>().map_err(|_| {
                codes::err(
                    "InvalidLaunchTemplateId.VersionNotFound",
                    format!(
                        "Version: '{v}' is not a version number, $Latest or $Default (launch template {}).",
                        self.id
                    ),
                )
            })?,
        };
        self.versions.iter().find(|v| v.number == n).ok_or_else(|| {
            codes::err(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!(
                    "Could not find launch template version {n} for launch template {}.",
                    self.id
                ),
            )
        })
    }
}

fn now() -> f64 {
    crate::clock::epoch_seconds(time::OffsetDateTime::now_utc())
}

fn check_name(name: &str) -> Result<(), AwsError> {
    let ok = (3..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"().-/_".contains(&b));
    if !ok {
        return Err(codes::err(
            "InvalidLaunchTemplateName.MalformedException",
            format!(
                "LaunchTemplateName: '{name}' must be 3 to 128 characters of letters, digits and ( ) . - / _."
            ),
        ));
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), AwsError> {
    let ok = id.strip_prefix("lt-").is_some_and(|h| {
        (h.len() == 17 || h.len() == 8) && h.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !ok {
        return Err(codes::err(
            "InvalidLaunchTemplateId.Malformed",
            format!("LaunchTemplateId: '{id}' is not a launch template id (expecting \"lt-...\")."),
        ));
    }
    Ok(())
}

fn id_not_found(id: &str) -> AwsError {
    codes::err(
        "InvalidLaunchTemplateId.NotFound",
        format!("The specified launch template, with template ID {id}, does not exist."),
    )
}

fn name_not_found(name: &str) -> AwsError {
    codes::err(
        "InvalidLaunchTemplateName.NotFoundException",
        format!("The specified launch template, with template name {name}, does not exist."),
    )
}

fn wire_template(r: &LaunchTemplateRecord) -> wire::LaunchTemplate {
    wire::LaunchTemplate {
        launch_template_id: Some(r.id.clone()),
        launch_template_name: Some(r.name.clone()),
        create_time: Some(r.create_time),
        created_by: Some(r.created_by.clone()),
        default_version_number: Some(r.default_version as i64),
        latest_version_number: Some(r.latest_version as i64),
        tags: wire_tags(&r.tags),
        operator: None,
    }
}

fn wire_version(r: &LaunchTemplateRecord, v: &TemplateVersion) -> wire::LaunchTemplateVersion {
    let d = &v.data;
    wire::LaunchTemplateVersion {
        launch_template_id: Some(r.id.clone()),
        launch_template_name: Some(r.name.clone()),
        version_number: Some(v.number as i64),
        version_description: v.description.clone(),
        create_time: Some(v.create_time),
        created_by: Some(r.created_by.clone()),
        default_version: Some(v.number == r.default_version),
        launch_template_data: Some(wire::ResponseLaunchTemplateData {
            image_id: d.image_id.clone(),
            instance_type: d.instance_type.as_deref().and_then(wire::InstanceType::from_str),
            key_name: d.key_name.clone(),
            user_data: d.user_data.clone(),
            security_group_ids: (!d.security_group_ids.is_empty())
                .then(|| d.security_group_ids.clone()),
            tag_specifications: (!d.instance_tags.is_empty()).then(|| {
                vec![wire::LaunchTemplateTagSpecification {
                    resource_type: Some(wire::ResourceType::Instance),
                    tags: wire_tags(&d.instance_tags),
                }]
            }),
            ..Default::default()
        }),
        operator: None,
    }
}

/// `base` with what `req` sets (a new version from a source version keeps what it omits).
fn template_data(
    base: TemplateData,
    req: Option<wire::RequestLaunchTemplateData>,
) -> Result<TemplateData, AwsError> {
    let Some(req) = req else {
        return Err(codes::missing("LaunchTemplateData"));
    };
    let mut d = base;
    if let Some(image) = req.image_id {
        berth_instances::image::validate_image_id(&image)
            .map_err(|e| codes::err(e.code(), format!("LaunchTemplateData.ImageId: {e}")))?;
        d.image_id = Some(image);
    }
    if let Some(t) = req.instance_type {
        berth_instances::types::lookup(t.as_str())
            .map_err(|e| codes::err(e.code(), format!("LaunchTemplateData.InstanceType: {e}")))?;
        d.instance_type = Some(t.as_str().to_string());
    }
    if let Some(k) = req.key_name {
        d.key_name = Some(k);
    }
    if let Some(u) = req.user_data.filter(|u| !u.is_empty()) {
        berth_instances::user_data::parse_base64(Some(&u))
            .map_err(|e| codes::err(e.code(), format!("LaunchTemplateData.UserData: {e}")))?;
        d.user_data = Some(u);
    }
    if let Some(g) = req.security_group_ids {
        d.security_group_ids = g;
    }
    if let Some(specs) = req.tag_specifications {
        let mut instance_tags = vec![];
        for (i, s) in specs.into_iter().enumerate() {
            let at = format!("LaunchTemplateData.TagSpecification.{}", i + 1);
            match s.resource_type {
                Some(wire::ResourceType::Instance) => {
                    instance_tags = tags::merge(instance_tags, s.tags.unwrap_or_default(), &at)?;
                }
                // Volumes, network interfaces...: accepted, nothing in Berth carries them.
                Some(_) => {}
                None => return Err(codes::missing(&format!("{at}.ResourceType"))),
            }
        }
        d.instance_tags = instance_tags;
    }
    Ok(d)
}

impl Ec2 {
    /// The template an id or a name names (exactly one of them).
    pub(crate) async fn find_template(
        &self,
        id: Option<&str>,
        name: Option<&str>,
    ) -> Result<(LaunchTemplateRecord, Revision), AwsError> {
        let id = match (id.filter(|s| !s.is_empty()), name.filter(|s| !s.is_empty())) {
            (Some(_), Some(_)) => {
                return Err(codes::err(
                    "InvalidParameterCombination",
                    "LaunchTemplateId and LaunchTemplateName: specify one, not both.",
                ));
            }
            (None, None) => {
                return Err(codes::missing("LaunchTemplateId or LaunchTemplateName"));
            }
            (Some(id), None) => {
                check_id(id)?;
                id.to_string()
            }
            (None, Some(name)) => {
                let e = self.store().get(&name_key(name)).await.map_err(crate::error::store)?;
                let Some(e) = e else { return Err(name_not_found(name)) };
                String::from_utf8_lossy(&e.value).to_string()
            }
        };
        records::get::<LaunchTemplateRecord>(self.store(), &key(&id)).await?.ok_or_else(|| {
            match name {
                Some(n) if !n.is_empty() => name_not_found(n),
                _ => id_not_found(&id),
            }
        })
    }

    /// The template and version a `LaunchTemplateSpecification` names, as RunInstances and
    /// Auto Scaling resolve it: `(template id, version number, data)`.
    pub(crate) async fn resolve_template(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<(String, u64, TemplateData), AwsError> {
        let (r, _) = self.find_template(id, name).await?;
        let v = r.version(version)?;
        Ok((r.id.clone(), v.number, v.data.clone()))
    }

    /// Reads, changes and writes a template with compare-and-set.
    async fn update_template(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        change: impl Fn(&mut LaunchTemplateRecord) -> Result<(), AwsError>,
    ) -> Result<LaunchTemplateRecord, AwsError> {
        let mut cas = records::Cas::new(self.store(), "launch template");
        loop {
            cas.attempt().await?;
            let (mut r, rev) = self.find_template(id, name).await?;
            change(&mut r)?;
            let k = key(&r.id);
            if cas.commit(Txn::new().when(&k, rev).put(&k, records::encode(&r))).await? {
                return Ok(r);
            }
        }
    }
}

impl wire::LaunchTemplatesApi<RequestContext> for Ec2 {
    async fn create_launch_template(
        &self,
        ctx: &RequestContext,
        input: wire::CreateLaunchTemplateRequest,
    ) -> Result<wire::CreateLaunchTemplateResult, AwsError> {
        let name =
            input.launch_template_name.ok_or_else(|| codes::missing("LaunchTemplateName"))?;
        check_name(&name)?;
        let data = template_data(TemplateData::default(), input.launch_template_data)?;
        let tags = spec_tags(input.tag_specifications, wire::ResourceType::LaunchTemplate)?;
        let t = now();
        let rec = LaunchTemplateRecord {
            id: new_id("lt"),
            name: name.clone(),
            create_time: t,
            created_by: ctx.principal.arn.clone(),
            default_version: 1,
            latest_version: 1,
            tags,
            versions: vec![TemplateVersion {
                number: 1,
                description: input.version_description,
                create_time: t,
                data,
            }],
        };
        let (k, nk) = (key(&rec.id), name_key(&name));
        let txn = Txn::new()
            .when(&nk, 0)
            .put(&k, records::encode(&rec))
            .put(&nk, rec.id.clone().into_bytes());
        if !records::commit(self.store(), txn).await? {
            return Err(codes::err(
                "InvalidLaunchTemplateName.AlreadyExistsException",
                format!("Launch template name already in use: '{name}'."),
            ));
        }
        Ok(wire::CreateLaunchTemplateResult {
            launch_template: Some(wire_template(&rec)),
            warning: None,
        })
    }

    async fn describe_launch_templates(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeLaunchTemplatesRequest,
    ) -> Result<wire::DescribeLaunchTemplatesResult, AwsError> {
        let filters =
            filters::parse(input.filters, &["launch-template-name", "launch-template-id"])?;
        let mut all = list::<LaunchTemplateRecord>(self.store(), TEMPLATES).await?;
        if let Some(ids) = input.launch_template_ids.filter(|v| !v.is_empty()) {
            for id in &ids {
                check_id(id)?;
                if !all.iter().any(|r| &r.id == id) {
                    return Err(id_not_found(id));
                }
            }
            all.retain(|r| ids.contains(&r.id));
        }
        if let Some(names) = input.launch_template_names.filter(|v| !v.is_empty()) {
            for n in &names {
                if !all.iter().any(|r| &r.name == n) {
                    return Err(name_not_found(n));
                }
            }
            all.retain(|r| names.contains(&r.name));
        }
        all.retain(|r| {
            filters::matches(&filters, &r.tags, |f| match f {
                "launch-template-name" => filters::one(r.name.clone()),
                "launch-template-id" => filters::one(r.id.clone()),
                _ => vec![],
            })
        });
        let (page, next_token) = filters::page(
            all,
            |r| r.id.as_str(),
            input.max_results,
            1,
            input.next_token.as_deref(),
        )?;
        Ok(wire::DescribeLaunchTemplatesResult {
            launch_templates: Some(page.iter().map(wire_template).collect()),
            next_token,
        })
    }

    async fn create_launch_template_version(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateLaunchTemplateVersionRequest,
    ) -> Result<wire::CreateLaunchTemplateVersionResult, AwsError> {
        let data = input.launch_template_data;
        let (source, description) = (input.source_version, input.version_description);
        let rec = self
            .update_template(
                input.launch_template_id.as_deref(),
                input.launch_template_name.as_deref(),
                |r| {
                    let base = match &source {
                        Some(s) => r.version(Some(s))?.data.clone(),
                        None => TemplateData::default(),
                    };
                    let data = template_data(base, data.clone())?;
                    let number = r.versions.iter().map(|v| v.number).max().unwrap_or(0) + 1;
                    r.versions.push(TemplateVersion {
                        number,
                        description: description.clone(),
                        create_time: now(),
                        data,
                    });
                    r.latest_version = number;
                    Ok(())
                },
            )
            .await?;
        let v = rec.version(Some("$Latest"))?;
        Ok(wire::CreateLaunchTemplateVersionResult {
            launch_template_version: Some(wire_version(&rec, v)),
            warning: None,
        })
    }

    async fn describe_launch_template_versions(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeLaunchTemplateVersionsRequest,
    ) -> Result<wire::DescribeLaunchTemplateVersionsResult, AwsError> {
        let templates =
            if input.launch_template_id.is_some() || input.launch_template_name.is_some() {
                vec![
                    self.find_template(
                        input.launch_template_id.as_deref(),
                        input.launch_template_name.as_deref(),
                    )
                    .await?
                    .0,
                ]
            } else {
                list::<LaunchTemplateRecord>(self.store(), TEMPLATES).await?
            };
        let bound = |v: &Option<String>, field: &str| -> Result<Option<u64>, AwsError> {
            v.as_deref()
                .map(|s| {
                    s.parse::<u64>().map_err(|_| {
                        codes::invalid(format!("{field}: '{s}' is not a version number."))
                    })
                })
                .transpose()
        };
        let (min, max) =
            (bound(&input.min_version, "MinVersion")?, bound(&input.max_version, "MaxVersion")?);
        let wanted = input.versions.filter(|v| !v.is_empty());
        let mut out: Vec<(String, wire::LaunchTemplateVersion)> = vec![];
        for r in &templates {
            let chosen: Vec<&TemplateVersion> = match &wanted {
                Some(specs) => {
                    let mut vs = vec![];
                    for s in specs {
                        let v = r.version(Some(s))?;
                        if !vs.iter().any(|x: &&TemplateVersion| x.number == v.number) {
                            vs.push(v);
                        }
                    }
                    vs
                }
                None => r.versions.iter().collect(),
            };
            for v in chosen {
                if min.is_some_and(|m| v.number < m) || max.is_some_and(|m| v.number > m) {
                    continue;
                }
                // Newest first within a template, as EC2 lists them.
                out.push((format!("{}/{:020}", r.id, u64::MAX - v.number), wire_version(r, v)));
            }
        }
        let (page, next_token) = filters::page(
            out,
            |(k, _)| k.as_str(),
            input.max_results,
            1,
            input.next_token.as_deref(),
        )?;
        Ok(wire::DescribeLaunchTemplateVersionsResult {
            launch_template_versions: Some(page.into_iter().map(|(_, v)| v).collect()),
            next_token,
        })
    }

    async fn modify_launch_template(
        &self,
        _ctx: &RequestContext,
        input: wire::ModifyLaunchTemplateRequest,
    ) -> Result<wire::ModifyLaunchTemplateResult, AwsError> {
        let default = input.default_version;
        let rec = self
            .update_template(
                input.launch_template_id.as_deref(),
                input.launch_template_name.as_deref(),
                |r| {
                    if let Some(d) = &default {
                        let n = r.version(Some(d))?.number;
                        r.default_version = n;
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(wire::ModifyLaunchTemplateResult { launch_template: Some(wire_template(&rec)) })
    }

    async fn delete_launch_template(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteLaunchTemplateRequest,
    ) -> Result<wire::DeleteLaunchTemplateResult, AwsError> {
        let (rec, rev) = self
            .find_template(
                input.launch_template_id.as_deref(),
                input.launch_template_name.as_deref(),
            )
            .await?;
        let k = key(&rec.id);
        let txn = Txn::new().when(&k, rev).delete(&k).delete(name_key(&rec.name));
        if !records::commit(self.store(), txn).await? {
            return Err(id_not_found(&rec.id));
        }
        Ok(wire::DeleteLaunchTemplateResult { launch_template: Some(wire_template(&rec)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> LaunchTemplateRecord {
        let v = |n| TemplateVersion {
            number: n,
            description: None,
            create_time: 0.0,
            data: TemplateData { key_name: Some(format!("k{n}")), ..Default::default() },
        };
        LaunchTemplateRecord {
            id: "lt-0123456789abcdef0".into(),
            name: "t".into(),
            create_time: 0.0,
            created_by: String::new(),
            default_version: 1,
            latest_version: 3,
            tags: vec![],
            versions: vec![v(1), v(2), v(3)],
        }
    }

    #[test]
    fn versions_resolve_as_ec2_names_them() {
        let r = rec();
        let cases: [(Option<&str>, Result<u64, &str>); 7] = [
            (None, Ok(1)),
            (Some("$Default"), Ok(1)),
            (Some("$Latest"), Ok(3)),
            (Some("2"), Ok(2)),
            (Some(""), Ok(1)),
            (Some("9"), Err("InvalidLaunchTemplateId.VersionNotFound")),
            (Some("latest"), Err("InvalidLaunchTemplateId.VersionNotFound")),
        ];
        for (spec, want) in cases {
            let got = r.version(spec).map(|v| v.number).map_err(|e| e.code);
            assert_eq!(got, want, "{spec:?}");
        }
    }

    #[test]
    fn names_and_ids_are_checked() {
        assert!(check_name("my-template_1.(x)/y").is_ok());
        for bad in ["ab", "has space", &"x".repeat(129)] {
            assert_eq!(
                check_name(bad).unwrap_err().code,
                "InvalidLaunchTemplateName.MalformedException"
            );
        }
        assert!(check_id("lt-0123456789abcdef0").is_ok());
        assert_eq!(check_id("i-0123").unwrap_err().code, "InvalidLaunchTemplateId.Malformed");
    }

    #[test]
    fn a_new_version_keeps_what_it_omits_from_its_source() {
        let base = TemplateData {
            image_id: Some("ami-0123456789abcdef0".into()),
            key_name: Some("k".into()),
            ..Default::default()
        };
        let d = template_data(
            base,
            Some(wire::RequestLaunchTemplateData {
                instance_type: wire::InstanceType::from_str("t3.micro"),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(d.image_id.as_deref(), Some("ami-0123456789abcdef0"));
        assert_eq!(d.instance_type.as_deref(), Some("t3.micro"));
        assert_eq!(d.key_name.as_deref(), Some("k"));
        let e = template_data(
            TemplateData::default(),
            Some(wire::RequestLaunchTemplateData {
                image_id: Some("nope".into()),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidAMIID.Malformed");
        assert!(e.message.contains("ImageId"));
    }
}
