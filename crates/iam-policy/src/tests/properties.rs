//! Property tests.

use super::*;

const ACTIONS: [&str; 6] = ["ecs:*", "ecs:Describe*", "ecs:RunTask", "iam:*", "*", "ecs:?unTask"];
const RESOURCES: [&str; 5] = [
    "*",
    "arn:aws:ecs:*:*:cluster/*",
    "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
    "arn:aws:ecs:*:*:cluster/dev-*",
    "arn:aws:ecs:us-east-1:123456789012:*",
];
const REQ_ACTIONS: [&str; 4] =
    ["ecs:RunTask", "ecs:DescribeClusters", "iam:CreateUser", "s3:GetObject"];
const REQ_RESOURCES: [&str; 3] = [
    "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
    "arn:aws:ecs:us-east-1:123456789012:cluster/dev-1",
    "*",
];

fn arb_statement() -> impl Strategy<Value = serde_json::Value> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::subsequence(ACTIONS.to_vec(), 1..3),
        any::<bool>(),
        prop::sample::subsequence(RESOURCES.to_vec(), 1..3),
        prop::option::of(prop::sample::select(vec!["prod", "dev-*", "x"])),
    )
        .prop_map(|(allow, not_action, actions, not_resource, resources, cond)| {
            let mut s = serde_json::Map::new();
            s.insert("Effect".into(), json!(if allow { "Allow" } else { "Deny" }));
            s.insert((if not_action { "NotAction" } else { "Action" }).into(), json!(actions));
            s.insert(
                (if not_resource { "NotResource" } else { "Resource" }).into(),
                json!(resources),
            );
            if let Some(c) = cond {
                s.insert("Condition".into(), json!({"StringLikeIfExists": {"ecs:cluster": c}}));
            }
            serde_json::Value::Object(s)
        })
}

fn arb_policy() -> impl Strategy<Value = Vec<serde_json::Value>> {
    prop::collection::vec(arb_statement(), 0..4)
}

fn compile(stmts: &[serde_json::Value]) -> Policy {
    idp(json!({"Version": "2012-10-17", "Statement": stmts}))
}

proptest! {
    #[test]
    fn adding_a_deny_never_allows_more(
        policies in prop::collection::vec(arb_policy(), 0..4),
        extra in arb_statement(),
        at in 0usize..4,
        action in prop::sample::select(REQ_ACTIONS.to_vec()),
        resource in prop::sample::select(REQ_RESOURCES.to_vec()),
        cluster in prop::option::of(prop::sample::select(vec!["prod", "dev-1"])),
    ) {
        let mut ctx = RequestContext::new(user("bob"), action, resource);
        if let Some(c) = cluster { ctx.set("ecs:cluster", c); }
        let before: Vec<Policy> = policies.iter().map(|p| compile(p)).collect();
        let refs: Vec<&Policy> = before.iter().collect();
        let d0 = eval_id(&refs, &ctx);

        // The same statement as a Deny, added to one of the policies (or a new one).
        let mut deny = extra.clone();
        deny["Effect"] = json!("Deny");
        let mut after_src = policies.clone();
        if after_src.is_empty() || at >= after_src.len() { after_src.push(vec![deny]); } else { after_src[at].push(deny); }
        let after: Vec<Policy> = after_src.iter().map(|p| compile(p)).collect();
        let refs: Vec<&Policy> = after.iter().collect();
        let d1 = eval_id(&refs, &ctx);
        prop_assert!(d0.is_allowed() || !d1.is_allowed(), "a Deny turned {d0} into {d1}");
        // When that statement applies to the request, the answer is an explicit deny.
        let mut alone = extra.clone();
        alone["Effect"] = json!("Allow");
        if eval_id(&[&compile(&[alone])], &ctx).is_allowed() {
            prop_assert!(matches!(d1, Decision::ExplicitDeny(_)), "applicable Deny gave {d1}");
        }

        // And an Allow never takes an Allow away.
        let mut allow = extra;
        allow["Effect"] = json!("Allow");
        let mut after_src = policies;
        after_src.push(vec![allow]);
        let after: Vec<Policy> = after_src.iter().map(|p| compile(p)).collect();
        let refs: Vec<&Policy> = after.iter().collect();
        let d2 = eval_id(&refs, &ctx);
        prop_assert!(!d0.is_allowed() || d2.is_allowed(), "an Allow turned {d0} into {d2}");
    }

    #[test]
    fn boundary_never_widens(
        identity in arb_policy(),
        boundary in arb_policy(),
        action in prop::sample::select(REQ_ACTIONS.to_vec()),
        resource in prop::sample::select(REQ_RESOURCES.to_vec()),
    ) {
        let ctx = RequestContext::new(user("bob"), action, resource);
        let id = compile(&identity);
        let b = parse(PolicyKind::PermissionsBoundary, json!({"Version": "2012-10-17", "Statement": boundary}));
        let without = eval_id(&[&id], &ctx);
        let with = PolicySet { identity: vec![&id], boundary: Some(&b), ..Default::default() }.evaluate(&ctx);
        prop_assert!(without.is_allowed() || !with.is_allowed());
        // With a boundary, allowed means both allow on their own.
        if with.is_allowed() {
            prop_assert!(eval_id(&[&b], &ctx).is_allowed());
        }
    }

    /// The wildcard matcher agrees with a regex translation of the pattern.
    #[test]
    fn glob_agrees_with_regex(pat in "[ab*?]{0,8}", s in "[ab]{0,10}") {
        let re = format!(
            "^(?s:{})$",
            pat.chars().map(|c| match c { '*' => ".*".to_string(), '?' => ".".to_string(), c => c.to_string() }).collect::<String>()
        );
        let re = regex::Regex::new(&re).expect("valid regex");
        let p = stmt("Allow", json!("ecs:RunTask"), json!(format!("arn:aws:s3:::{pat}")));
        let ctx = RequestContext::new(user("bob"), "ecs:RunTask", &format!("arn:aws:s3:::{s}"));
        prop_assert_eq!(eval_id(&[&p], &ctx).is_allowed(), re.is_match(&s));
    }

    /// Parsing never panics, whatever the JSON.
    #[test]
    fn parse_never_panics(doc in "\\PC{0,200}") {
        let _ = Policy::parse(&doc, PolicyKind::Identity);
        let _ = Policy::parse(&doc, PolicyKind::Resource);
    }
}
