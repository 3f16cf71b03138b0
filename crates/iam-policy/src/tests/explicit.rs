//! Actions a policy must grant by name ([`RequestContext::with_explicit_grants`]): only an
//! `Action` pattern with the action's service prefix written out allows them; denies match as
//! usual; the rule applies to boundaries and session policies too.

use super::*;

#[test]
fn explicit_grants_table() {
    let td = format!("arn:aws:ecs:us-east-1:{ACCT}:task-definition/web:1");
    let all = stmt("Allow", json!("*"), json!("*"));
    let all_services = stmt("Allow", json!("*:*"), json!("*"));
    let fuzzy_service = stmt("Allow", json!("ber*:*"), json!("*"));
    let one_char = stmt("Allow", json!("bert?:RunPrivileged"), json!("*"));
    let not_iam = idp(json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}));
    let berth_all = stmt("Allow", json!("berth:*"), json!("*"));
    let berth_run = stmt("Allow", json!("BERTH:Run*"), json!("*"));
    let named = stmt("Allow", json!(["ecs:RunTask", "berth:RunPrivileged"]), json!(td.clone()));
    let other_td = stmt(
        "Allow",
        json!("berth:RunPrivileged"),
        json!(format!("arn:aws:ecs:us-east-1:{ACCT}:task-definition/db:*")),
    );
    let deny_all = stmt("Deny", json!("*"), json!("*"));
    let deny_not_ecs = idp(json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Deny", "NotAction": "ecs:*", "Resource": "*"}}));

    type Row<'a> = (&'a str, Vec<&'a Policy>, Want);
    let rows: Vec<Row> = vec![
        ("no policy", vec![], Want::Implicit(IdentityBased)),
        ("Action * does not grant", vec![&all], Want::Implicit(IdentityBased)),
        ("Action *:* does not grant", vec![&all_services], Want::Implicit(IdentityBased)),
        ("a wildcard in the service", vec![&fuzzy_service], Want::Implicit(IdentityBased)),
        ("? in the service", vec![&one_char], Want::Implicit(IdentityBased)),
        ("NotAction does not grant", vec![&not_iam], Want::Implicit(IdentityBased)),
        ("berth:* grants", vec![&berth_all], Want::Allow),
        ("service prefix case-insensitive", vec![&berth_run], Want::Allow),
        ("named, on the resource", vec![&named], Want::Allow),
        ("named, another resource", vec![&other_td], Want::Implicit(IdentityBased)),
        ("* next to the named grant", vec![&all, &named], Want::Allow),
        ("Deny * still denies", vec![&berth_all, &deny_all], Want::Explicit(IdentityBased)),
        ("Deny NotAction still denies", vec![&named, &deny_not_ecs], Want::Explicit(IdentityBased)),
    ];
    for (name, policies, want) in rows {
        let ctx =
            RequestContext::new(user("bob"), "berth:RunPrivileged", &td).with_explicit_grants();
        check(name, &eval_id(&policies, &ctx), want);
    }

    // Without the mark the same wildcards grant (ordinary actions are unaffected).
    let ctx = RequestContext::new(user("bob"), "berth:RunPrivileged", &td);
    check("unmarked: * grants", &eval_id(&[&all], &ctx), Want::Allow);
    let ctx = RequestContext::new(user("bob"), "ecs:RunTask", &td).with_explicit_grants();
    check("marked ecs action, named", &eval_id(&[&named], &ctx), Want::Allow);

    // A boundary and session policies must name the action too.
    let boundary = parse(
        PolicyKind::PermissionsBoundary,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
    );
    let named_boundary = parse(
        PolicyKind::PermissionsBoundary,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "berth:*", "Resource": "*"}}),
    );
    let ctx =
        RequestContext::new(session("r", "s"), "berth:RunPrivileged", &td).with_explicit_grants();
    let set = |b: &Policy| {
        PolicySet { identity: vec![&named], boundary: Some(b), ..PolicySet::default() }
            .evaluate(&ctx)
    };
    check("boundary *", &set(&boundary), Want::Implicit(PermissionsBoundary));
    check("boundary berth:*", &set(&named_boundary), Want::Allow);
    let session_all = parse(
        PolicyKind::Session,
        json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
    );
    let d =
        PolicySet { identity: vec![&named], session: vec![&session_all], ..PolicySet::default() }
            .evaluate(&ctx);
    check("session *", &d, Want::Implicit(Session));
    // The root user is allowed whatever.
    let root = Principal::from_arn(&format!("arn:aws:iam::{ACCT}:root"));
    let ctx = RequestContext::new(root, "berth:RunPrivileged", &td).with_explicit_grants();
    check("root", &eval_id(&[], &ctx), Want::Allow);
    // AWS's message names the action and the resource.
    let ctx = RequestContext::new(user("bob"), "berth:RunPrivileged", &td).with_explicit_grants();
    assert_eq!(
        eval_id(&[&all], &ctx).access_denied_message(&ctx).unwrap(),
        format!(
            "User: arn:aws:iam::{ACCT}:user/bob is not authorized to perform: berth:RunPrivileged \
             on resource: {td} because no identity-based policy allows the berth:RunPrivileged action"
        )
    );
}
