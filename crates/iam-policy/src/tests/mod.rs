//! Table tests built from the examples of AWS's IAM user guide (policy
//! evaluation logic, condition operators, policy variables), parser error
//! tables, and property tests.

use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::json;
use time::macros::datetime;

use crate::*;

const ACCT: &str = "123456789012";

fn user(name: &str) -> Principal {
    Principal::from_arn(&format!("arn:aws:iam::{ACCT}:user/{name}"))
}

fn session(role: &str, name: &str) -> Principal {
    Principal::assumed_role(
        &format!("arn:aws:sts::{ACCT}:assumed-role/{role}/{name}"),
        &format!("arn:aws:iam::{ACCT}:role/{role}"),
    )
}

fn cluster(name: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{ACCT}:cluster/{name}")
}

fn parse(kind: PolicyKind, v: serde_json::Value) -> Policy {
    Policy::from_value(&v, kind).unwrap_or_else(|e| panic!("{e} at {}: {v}", e.element()))
}

fn idp(v: serde_json::Value) -> Policy {
    parse(PolicyKind::Identity, v)
}

/// An identity policy of one statement.
fn stmt(effect: &str, action: serde_json::Value, resource: serde_json::Value) -> Policy {
    idp(
        json!({"Version": "2012-10-17", "Statement": {"Effect": effect, "Action": action, "Resource": resource}}),
    )
}

fn allow_with(action: &str, resource: &str, cond: serde_json::Value) -> Policy {
    idp(json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": action, "Resource": resource, "Condition": cond
    }]}))
}

fn eval_id(policies: &[&Policy], ctx: &RequestContext) -> Decision {
    evaluate_identity(policies, ctx)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Allow,
    Explicit(PolicyType),
    Implicit(PolicyType),
}

fn check(name: &str, d: &Decision, want: Want) {
    let got = match d {
        Decision::Allow(_) | Decision::AllowRoot => Want::Allow,
        Decision::ExplicitDeny(r) => Want::Explicit(r.policy_type),
        Decision::ImplicitDeny(t) => Want::Implicit(t.to_owned()),
    };
    assert_eq!(got, want, "case {name}: decision {d}");
}

use PolicyType::*;

mod conditions;
mod evaluation;
mod explicit;
mod parsing;
mod properties;
