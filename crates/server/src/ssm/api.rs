//! The Parameter Store operations themselves (`wire::ParametersApi`): each validates its input,
//! then reads or changes one parameter record with a compare-and-set (see the module above for
//! the contract).

use super::*;

impl wire::ParametersApi<RequestContext> for Parameters {
    async fn put_parameter(
        &self,
        ctx: &RequestContext,
        input: wire::PutParameterRequest,
    ) -> Result<wire::PutParameterResult, AwsError> {
        let name = split_selector(input.name.as_deref().unwrap_or_default()).0;
        let name = if input.name.as_deref().is_some_and(|n| n.starts_with("arn:")) {
            name
        } else {
            input.name.clone().unwrap_or_default()
        };
        check_name(&name)?;
        let value = input.value.clone().unwrap_or_default();
        let overwrite = input.overwrite.unwrap_or(false);
        if overwrite && input.tags.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(validation(
                "tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
            ));
        }
        if input.policies.as_deref().is_some_and(|p| !p.trim().is_empty() && p.trim() != "[]") {
            return Err(ErrorCode::UnsupportedFeatureRequiredException.with(
                "Policies: parameter policies (expiration, notifications) are not supported by Berth yet.",
            ));
        }
        let data_type = input.data_type.clone().unwrap_or_else(|| "text".into());
        match data_type.as_str() {
            "text" | "aws:ssm:integration" => {}
            "aws:ec2:image" => {
                if !value.starts_with("ami-") {
                    return Err(validation(format!(
                        "Value: '{value}' is not a valid image id for data type aws:ec2:image (ami-...)."
                    )));
                }
            }
            other => {
                return Err(validation(format!(
                    "DataType: '{other}' is not valid; use text, aws:ec2:image or aws:ssm:integration."
                )));
            }
        }
        let tags = check_tags(input.tags.as_deref().unwrap_or_default())?;
        if tags.len() > MAX_TAGS {
            return Err(ErrorCode::TooManyTagsError.with(format!("At most {MAX_TAGS} tags.")));
        }
        if let Some(p) = &input.allowed_pattern {
            let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                ErrorCode::InvalidAllowedPatternException
                    .with(format!("AllowedPattern: '{p}' is not a valid regular expression: {e}"))
            })?;
            if !re.is_match(&value) {
                return Err(ErrorCode::ParameterPatternMismatchException.with(format!(
                    "Parameter value, cannot be validated against allowedPattern: {p}"
                )));
            }
        }
        let user = ctx.principal.arn.clone();
        let k = key(&name);
        let mut cas = records::Cas::new(&*self.store, format!("parameter {name}"));
        loop {
            cas.attempt().await?;
            let existing = self.get(&name).await?;
            let rev = existing.as_ref().map_or(0, |(_, r)| *r);
            let prev = existing.as_ref().map(|(r, _)| r.latest().clone());
            if existing.is_some() && !overwrite {
                return Err(ErrorCode::ParameterAlreadyExists.with(
                    "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                ));
            }
            let kind = match (input.r#type, &prev) {
                (Some(t), _) => t.as_str().to_string(),
                (None, Some(p)) => p.kind.clone(),
                (None, None) => {
                    return Err(validation(
                        "Type: a parameter type is required when you create a parameter.",
                    ));
                }
            };
            let prev_tier = prev.as_ref().map(|p| p.tier.clone());
            let tier = match input.tier {
                Some(ParameterTier::Advanced) => "Advanced",
                Some(ParameterTier::Standard) => {
                    if prev_tier.as_deref() == Some("Advanced") {
                        return Err(validation(
                            "Tier: an Advanced parameter can't be changed back to the Standard tier.",
                        ));
                    }
                    "Standard"
                }
                Some(ParameterTier::IntelligentTiering)
                    if value.len() > STANDARD_MAX || prev_tier.as_deref() == Some("Advanced") =>
                {
                    "Advanced"
                }
                Some(ParameterTier::IntelligentTiering) => "Standard",
                // The account's default tier is Standard; an Advanced parameter stays so.
                None if prev_tier.as_deref() == Some("Advanced") => "Advanced",
                None => "Standard",
            };
            let limit = if tier == "Advanced" { ADVANCED_MAX } else { STANDARD_MAX };
            if value.len() > limit {
                return Err(validation(if tier == "Standard" {
                    format!(
                        "Value: Standard tier parameters support a maximum parameter value of {STANDARD_MAX} characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier."
                    )
                } else {
                    format!(
                        "Value: parameters support a maximum value of {ADVANCED_MAX} characters."
                    )
                }));
            }
            let mut rec = match existing {
                Some((r, _)) => r,
                None => {
                    ParameterRecord { name: name.clone(), tags: tags.clone(), versions: vec![] }
                }
            };
            let version = rec.versions.last().map_or(1, |v| v.version + 1);
            if rec.versions.len() >= MAX_VERSIONS {
                if !rec.versions[0].labels.is_empty() {
                    return Err(ErrorCode::ParameterMaxVersionLimitExceeded.with(format!(
                        "You attempted to create a new version of {name} by calling the PutParameter API with the overwrite flag. Version {}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
                        rec.versions[0].version
                    )));
                }
                rec.versions.remove(0);
            }
            let secure = kind == "SecureString";
            let stored = if secure {
                self.vault.parameters.seal(&self.aad(&name, version), value.as_bytes())
            } else {
                value.clone()
            };
            rec.versions.push(VersionRecord {
                version,
                kind: kind.clone(),
                value: stored,
                key_id: secure
                    .then(|| input.key_id.clone().unwrap_or_else(|| DEFAULT_KEY_ID.into())),
                description: input
                    .description
                    .clone()
                    .or_else(|| prev.as_ref().and_then(|p| p.description.clone())),
                allowed_pattern: input
                    .allowed_pattern
                    .clone()
                    .or_else(|| prev.as_ref().and_then(|p| p.allowed_pattern.clone())),
                tier: tier.to_string(),
                data_type: data_type.clone(),
                labels: vec![],
                modified: now(),
                user: user.clone(),
            });
            if cas.commit(Txn::new().when(&k, rev).put(&k, records::encode(&rec))).await? {
                return Ok(wire::PutParameterResult {
                    version: Some(version),
                    tier: Some(parse_tier(tier)),
                });
            }
        }
    }

    async fn get_parameter(
        &self,
        _ctx: &RequestContext,
        input: wire::GetParameterRequest,
    ) -> Result<wire::GetParameterResult, AwsError> {
        let name = input.name.unwrap_or_default();
        match self.select(&name, input.with_decryption.unwrap_or(false)).await? {
            Some(p) => Ok(wire::GetParameterResult { parameter: Some(p) }),
            None => Err(not_found(&name)),
        }
    }

    async fn get_parameters(
        &self,
        _ctx: &RequestContext,
        input: wire::GetParametersRequest,
    ) -> Result<wire::GetParametersResult, AwsError> {
        let decrypt = input.with_decryption.unwrap_or(false);
        let mut found = vec![];
        let mut invalid = vec![];
        for name in input.names.unwrap_or_default() {
            match self.select(&name, decrypt).await {
                Ok(Some(p)) => found.push(p),
                Ok(None) => invalid.push(name),
                Err(e) if e.code == "ParameterVersionNotFound" => invalid.push(name),
                Err(e) => return Err(e),
            }
        }
        Ok(wire::GetParametersResult { parameters: Some(found), invalid_parameters: Some(invalid) })
    }

    async fn get_parameters_by_path(
        &self,
        _ctx: &RequestContext,
        input: wire::GetParametersByPathRequest,
    ) -> Result<wire::GetParametersByPathResult, AwsError> {
        let path = input.path.unwrap_or_default();
        if !path.starts_with('/') {
            return Err(validation(format!(
                "Path: '{path}' is not a valid path: a path begins with a forward slash (/)."
            )));
        }
        let recursive = input.recursive.unwrap_or(false);
        let decrypt = input.with_decryption.unwrap_or(false);
        let filters = input.parameter_filters.unwrap_or_default();
        let base = format!("{}/", path.trim_end_matches('/'));
        let mut out = Vec::new();
        for rec in self.all(&base).await? {
            let rest = &rec.name[base.len()..];
            if (recursive || !rest.contains('/')) && filter_matches(&rec, &filters, true)? {
                out.push(rec);
            }
        }
        let (offset, limit) = page(input.next_token.as_deref(), input.max_results, 10)?;
        let token = next_token(offset, limit, out.len());
        let parameters = out
            .iter()
            .skip(offset)
            .take(limit)
            .map(|r| self.parameter(r, r.latest(), None, decrypt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(wire::GetParametersByPathResult { parameters: Some(parameters), next_token: token })
    }

    async fn delete_parameter(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteParameterRequest,
    ) -> Result<wire::DeleteParameterResult, AwsError> {
        let name = split_selector(&input.name.unwrap_or_default()).0;
        let k = key(&name);
        let Some((_, rev)) = self.get(&name).await? else { return Err(not_found(&name)) };
        if !records::commit(&*self.store, Txn::new().when(&k, rev).delete(&k)).await?
            && self.get(&name).await?.is_some()
        {
            return Err(ErrorCode::TooManyUpdates
                .with("There are concurrent updates for the parameter; retry."));
        }
        Ok(wire::DeleteParameterResult {})
    }

    async fn delete_parameters(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteParametersRequest,
    ) -> Result<wire::DeleteParametersResult, AwsError> {
        let mut deleted = vec![];
        let mut invalid = vec![];
        for raw in input.names.unwrap_or_default() {
            let name = split_selector(&raw).0;
            match self.get(&name).await? {
                Some((_, rev)) => {
                    let k = key(&name);
                    records::commit(&*self.store, Txn::new().when(&k, rev).delete(&k)).await?;
                    deleted.push(raw);
                }
                None => invalid.push(raw),
            }
        }
        Ok(wire::DeleteParametersResult {
            deleted_parameters: Some(deleted),
            invalid_parameters: Some(invalid),
        })
    }

    async fn describe_parameters(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeParametersRequest,
    ) -> Result<wire::DescribeParametersResult, AwsError> {
        let filters = input.filters.unwrap_or_default();
        let string_filters = input.parameter_filters.unwrap_or_default();
        if !filters.is_empty() && !string_filters.is_empty() {
            return Err(validation(
                "You can use either Filters or ParameterFilters in a single request, not both.",
            ));
        }
        let mut out = Vec::new();
        'records: for rec in self.all("").await? {
            let v = rec.latest();
            for f in &filters {
                let values = f.values.clone().unwrap_or_default();
                let ok = match f.key {
                    Some(wire::ParametersFilterKey::Name) => {
                        values.iter().any(|x| rec.name.starts_with(x.as_str()))
                    }
                    Some(wire::ParametersFilterKey::Type) => values.contains(&v.kind),
                    Some(wire::ParametersFilterKey::KeyId) => {
                        v.key_id.as_ref().is_some_and(|k| values.contains(k))
                    }
                    None => {
                        return Err(ErrorCode::InvalidFilterKey.with("Filters[].Key: required."));
                    }
                };
                if !ok {
                    continue 'records;
                }
            }
            if filter_matches(&rec, &string_filters, false)? {
                out.push(rec);
            }
        }
        let (offset, limit) = page(input.next_token.as_deref(), input.max_results, 50)?;
        let token = next_token(offset, limit, out.len());
        Ok(wire::DescribeParametersResult {
            parameters: Some(
                out.iter().skip(offset).take(limit).map(|r| self.metadata(r)).collect(),
            ),
            next_token: token,
        })
    }

    async fn get_parameter_history(
        &self,
        _ctx: &RequestContext,
        input: wire::GetParameterHistoryRequest,
    ) -> Result<wire::GetParameterHistoryResult, AwsError> {
        let name = split_selector(&input.name.unwrap_or_default()).0;
        let Some((rec, _)) = self.get(&name).await? else { return Err(not_found(&name)) };
        let decrypt = input.with_decryption.unwrap_or(false);
        let (offset, limit) = page(input.next_token.as_deref(), input.max_results, 50)?;
        let token = next_token(offset, limit, rec.versions.len());
        let history = rec
            .versions
            .iter()
            .skip(offset)
            .take(limit)
            .map(|v| {
                Ok(wire::ParameterHistory {
                    name: Some(rec.name.clone()),
                    r#type: Some(parse_type(&v.kind)),
                    key_id: v.key_id.clone(),
                    last_modified_date: Some(v.modified),
                    last_modified_user: Some(v.user.clone()),
                    description: v.description.clone(),
                    value: Some(self.value(&rec.name, v, decrypt)?),
                    allowed_pattern: v.allowed_pattern.clone(),
                    version: Some(v.version),
                    labels: Some(v.labels.clone()),
                    tier: Some(parse_tier(&v.tier)),
                    policies: Some(vec![]),
                    data_type: Some(v.data_type.clone()),
                })
            })
            .collect::<Result<Vec<_>, AwsError>>()?;
        Ok(wire::GetParameterHistoryResult { parameters: Some(history), next_token: token })
    }

    async fn label_parameter_version(
        &self,
        _ctx: &RequestContext,
        input: wire::LabelParameterVersionRequest,
    ) -> Result<wire::LabelParameterVersionResult, AwsError> {
        let name = split_selector(&input.name.unwrap_or_default()).0;
        let labels = input.labels.unwrap_or_default();
        let (valid, invalid): (Vec<String>, Vec<String>) =
            labels.into_iter().partition(|l| label_ok(l));
        let version = self
            .update(&name, |rec| {
                let version = input.parameter_version.unwrap_or(rec.latest().version);
                let Some(i) = rec.versions.iter().position(|v| v.version == version) else {
                    return Err(ErrorCode::ParameterVersionNotFound.with(format!(
                        "Systems Manager could not find version {version} of {name}. Verify the version and try again."
                    )));
                };
                // A label names one version: it moves here from wherever it was.
                for v in &mut rec.versions {
                    v.labels.retain(|l| !valid.contains(l));
                }
                for l in &valid {
                    rec.versions[i].labels.push(l.clone());
                }
                if rec.versions[i].labels.len() > MAX_LABELS {
                    return Err(ErrorCode::ParameterVersionLabelLimitExceeded.with(format!(
                        "A parameter version can have maximum {MAX_LABELS} labels. Move one or more labels to another version and try again."
                    )));
                }
                Ok(version)
            })
            .await?;
        Ok(wire::LabelParameterVersionResult {
            invalid_labels: Some(invalid),
            parameter_version: Some(version),
        })
    }

    async fn unlabel_parameter_version(
        &self,
        _ctx: &RequestContext,
        input: wire::UnlabelParameterVersionRequest,
    ) -> Result<wire::UnlabelParameterVersionResult, AwsError> {
        let name = split_selector(&input.name.unwrap_or_default()).0;
        let labels = input.labels.unwrap_or_default();
        let version = input.parameter_version.unwrap_or_default();
        let (removed, invalid) = self
            .update(&name, |rec| {
                let Some(v) = rec.versions.iter_mut().find(|v| v.version == version) else {
                    return Err(ErrorCode::ParameterVersionNotFound.with(format!(
                        "Systems Manager could not find version {version} of {name}. Verify the version and try again."
                    )));
                };
                let (removed, invalid): (Vec<String>, Vec<String>) =
                    labels.iter().cloned().partition(|l| v.labels.contains(l));
                v.labels.retain(|l| !removed.contains(l));
                Ok((removed, invalid))
            })
            .await?;
        Ok(wire::UnlabelParameterVersionResult {
            removed_labels: Some(removed),
            invalid_labels: Some(invalid),
        })
    }
}
