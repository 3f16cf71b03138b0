//! GetOperation, ListOperations: the record of every change that is asynchronous in AWS (all
//! `SUCCESS` here: they complete within their request).

use berth_model::servicediscovery::{self as model, keys};
use berth_wire::AwsError;
use berth_wire::servicediscovery as wire;
use wire::ErrorCode;

use super::{CloudMap, codes, list, page};
use crate::ecs::RequestContext;
use crate::records;

fn wire_operation(o: model::OperationRecord, account: &str) -> wire::OperationShape {
    wire::OperationShape {
        id: Some(o.id),
        owner_account: Some(account.to_string()),
        r#type: wire::OperationType::from_str(&o.op_type),
        status: wire::OperationStatus::from_str(&o.status),
        error_message: None,
        error_code: None,
        create_date: Some(o.create_date),
        update_date: Some(o.update_date),
        targets: Some(
            o.targets
                .into_iter()
                .filter_map(|(k, v)| wire::OperationTargetType::from_str(&k).map(|k| (k, v)))
                .collect(),
        ),
    }
}

/// Whether `o` passes every filter of a ListOperations call.
fn matches(
    o: &model::OperationRecord,
    filters: &[wire::OperationFilter],
) -> Result<bool, AwsError> {
    for (i, f) in filters.iter().enumerate() {
        let values = f.values.clone().unwrap_or_default();
        let cond = f.condition.unwrap_or(wire::FilterCondition::Eq);
        let bad = || {
            codes::invalid(format!(
                "Filters[{i}]: NAMESPACE_ID and SERVICE_ID take EQ with one value; STATUS and TYPE EQ or IN; UPDATE_DATE BETWEEN with two epoch times."
            ))
        };
        let ok = match (f.name, cond) {
            (Some(wire::OperationFilterName::NamespaceId), wire::FilterCondition::Eq)
                if values.len() == 1 =>
            {
                o.targets.get("NAMESPACE") == Some(&values[0])
            }
            (Some(wire::OperationFilterName::ServiceId), wire::FilterCondition::Eq)
                if values.len() == 1 =>
            {
                o.targets.get("SERVICE") == Some(&values[0])
            }
            (
                Some(wire::OperationFilterName::Status),
                wire::FilterCondition::Eq | wire::FilterCondition::In,
            ) if !values.is_empty() => values.contains(&o.status),
            (
                Some(wire::OperationFilterName::Type),
                wire::FilterCondition::Eq | wire::FilterCondition::In,
            ) if !values.is_empty() => values.contains(&o.op_type),
            (Some(wire::OperationFilterName::UpdateDate), wire::FilterCondition::Between)
                if values.len() == 2 =>
            {
                let (Ok(from), Ok(to)) = (values[0].parse::<f64>(), values[1].parse::<f64>())
                else {
                    return Err(bad());
                };
                (from..=to).contains(&o.update_date)
            }
            _ => return Err(bad()),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl wire::OperationsApi<RequestContext> for CloudMap {
    async fn get_operation(
        &self,
        _ctx: &RequestContext,
        input: wire::GetOperationRequest,
    ) -> Result<wire::GetOperationResponse, AwsError> {
        let id = input.operation_id.unwrap_or_default();
        let Some((o, _)) =
            records::get::<model::OperationRecord>(self.store(), &keys::operation(&id)).await?
        else {
            return Err(ErrorCode::OperationNotFound.with(format!("Operation not found: {id}")));
        };
        Ok(wire::GetOperationResponse { operation: Some(wire_operation(o, &self.account_id)) })
    }

    async fn list_operations(
        &self,
        _ctx: &RequestContext,
        input: wire::ListOperationsRequest,
    ) -> Result<wire::ListOperationsResponse, AwsError> {
        let filters = input.filters.unwrap_or_default();
        let mut kept = vec![];
        for (k, o, _) in list::<model::OperationRecord>(self.store(), keys::OPERATIONS).await? {
            if matches(&o, &filters)? {
                kept.push((k, o));
            }
        }
        let (items, next) = page(kept, input.next_token.as_deref(), input.max_results)?;
        Ok(wire::ListOperationsResponse {
            operations: Some(
                items
                    .into_iter()
                    .map(|o| wire::OperationSummary {
                        id: Some(o.id),
                        status: wire::OperationStatus::from_str(&o.status),
                    })
                    .collect(),
            ),
            next_token: next,
        })
    }
}
