//! Decisions on a real store: users with attached, inline and group policies, boundaries,
//! role sessions with session policies, the role's own permissions for the agent, and the
//! cache following writes.

use std::sync::Arc;

use berth_model::iam::{
    Attached, IamGroup, IamManagedPolicy, IamPolicyVersion, IamRole, IamSession, IamUser,
};
use berth_store::{Store, Txn};

use super::*;
use crate::clock::SystemClock;

const ACCT: &str = "123456789012";

fn doc(statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

async fn put<T: serde::Serialize>(store: &dyn Store, key: &str, v: &T) {
    store.txn(Txn::new().put(key, records::encode(v))).await.unwrap();
}

fn managed(name: &str, document: String) -> IamManagedPolicy {
    IamManagedPolicy {
        name: name.into(),
        id: format!("ANPA{name}"),
        path: "/".into(),
        arn: format!("arn:aws:iam::{ACCT}:policy/{name}"),
        description: None,
        created_at: 0.0,
        updated_at: 0.0,
        default_version: "v1".into(),
        versions: vec![IamPolicyVersion { id: "v1".into(), document, created_at: 0.0 }],
        next_version: 2,
        tags: vec![],
    }
}

fn user(name: &str, policies: Attached, groups: &[&str], boundary: Option<String>) -> IamUser {
    IamUser {
        name: name.into(),
        id: format!("AIDA{name}"),
        path: "/".into(),
        arn: format!("arn:aws:iam::{ACCT}:user/{name}"),
        created_at: 0.0,
        tags: vec![("team".into(), "blue".into())],
        policies,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        boundary,
    }
}

fn principal(arn: &str, akid: &str) -> Principal {
    Principal {
        arn: arn.into(),
        account_id: ACCT.into(),
        access_key_id: akid.into(),
        instance: None,
    }
}

fn authz(action: &str, resource: &str) -> Authz {
    Authz {
        action: action.into(),
        resources: vec![resource.into()],
        region: "us-east-1".into(),
        ..Authz::default()
    }
}

async fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Arc<Iam>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let iam = Iam::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(MasterKey::from_bytes(&[1; 32])),
        ACCT,
    );
    (dir, store, iam)
}

fn cluster(name: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{ACCT}:cluster/{name}")
}

#[tokio::test]
async fn users_get_attached_inline_and_group_policies_within_their_boundary() {
    let (_d, store, iam) = setup().await;
    let dev = managed(
        "dev",
        doc(&format!(r#"{{"Effect":"Allow","Action":"ecs:*","Resource":"{}"}}"#, cluster("dev-*"))),
    );
    let tagged = managed(
        "tagged",
        doc(
            r#"{"Effect":"Allow","Action":"ecs:DescribeClusters","Resource":"arn:aws:ecs:*:*:cluster/${aws:PrincipalTag/team}"}"#,
        ),
    );
    let boundary =
        managed("boundary", doc(r#"{"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"}"#));
    for p in [&dev, &tagged, &boundary] {
        put(&*store, &model::policy_key(&p.name), p).await;
    }
    let mut a = Attached { managed: vec![dev.arn.clone()], ..Attached::default() };
    a.inline.insert(
        "deny".into(),
        doc(&format!(
            r#"{{"Effect":"Deny","Action":"ecs:DeleteCluster","Resource":"{}"}}"#,
            cluster("dev-keep")
        )),
    );
    put(&*store, &model::user_key("ann"), &user("ann", a.clone(), &["blue"], None)).await;
    let group = IamGroup {
        name: "blue".into(),
        id: "AGPA1".into(),
        path: "/".into(),
        arn: format!("arn:aws:iam::{ACCT}:group/blue"),
        created_at: 0.0,
        policies: Attached { managed: vec![tagged.arn.clone()], ..Attached::default() },
    };
    put(&*store, &model::group_key("blue"), &group).await;
    iam.invalidate();
    let ann = principal(&format!("arn:aws:iam::{ACCT}:user/ann"), "AKIAANN");

    iam.authorize(&ann, &authz("ecs:DeleteCluster", &cluster("dev-1"))).await.unwrap();
    let e =
        iam.authorize(&ann, &authz("ecs:DeleteCluster", &cluster("dev-keep"))).await.unwrap_err();
    assert!(
        e.message.contains("with an explicit deny in an identity-based policy"),
        "{}",
        e.message
    );
    // The group's policy, with the user's tag as a variable.
    iam.authorize(&ann, &authz("ecs:DescribeClusters", &cluster("blue"))).await.unwrap();
    let e = iam.authorize(&ann, &authz("ecs:DescribeClusters", &cluster("red"))).await.unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    assert_eq!(
        e.message,
        format!(
            "User: arn:aws:iam::{ACCT}:user/ann is not authorized to perform: ecs:DescribeClusters on resource: {} because no identity-based policy allows the ecs:DescribeClusters action",
            cluster("red")
        )
    );
    // Every resource of a request must be allowed.
    let both = Authz {
        resources: vec![cluster("dev-1"), cluster("red")],
        ..authz("ecs:DescribeClusters", "")
    };
    assert!(iam.authorize(&ann, &both).await.is_err());

    // A boundary, written later, is followed at once (the local write's invalidation).
    put(&*store, &model::user_key("ann"), &user("ann", a, &["blue"], Some(boundary.arn.clone())))
        .await;
    iam.invalidate();
    let e = iam.authorize(&ann, &authz("ecs:DeleteCluster", &cluster("dev-1"))).await.unwrap_err();
    assert!(e.message.contains("because no permissions boundary allows"), "{}", e.message);
    iam.authorize(&ann, &authz("ecs:DescribeClusters", &cluster("dev-1"))).await.unwrap();

    // A user that does not exist (deleted) is allowed nothing.
    let ghost = principal(&format!("arn:aws:iam::{ACCT}:user/ghost"), "AKIAGHOST");
    assert!(iam.authorize(&ghost, &authz("ecs:ListClusters", "*")).await.is_err());
}

#[tokio::test]
async fn the_change_feed_invalidates_without_a_local_write() {
    let (_d, store, iam) = setup().await;
    let bob = principal(&format!("arn:aws:iam::{ACCT}:user/bob"), "AKIABOB");
    put(&*store, &model::user_key("bob"), &user("bob", Attached::default(), &[], None)).await;
    // Wait until the watcher has seen bob's record (no local invalidation is made).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut a = Attached::default();
    a.inline.insert("all".into(), doc(r#"{"Effect":"Allow","Action":"ecs:*","Resource":"*"}"#));
    assert!(iam.authorize(&bob, &authz("ecs:ListClusters", "*")).await.is_err());
    put(&*store, &model::user_key("bob"), &user("bob", a, &[], None)).await;
    loop {
        if iam.authorize(&bob, &authz("ecs:ListClusters", "*")).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change feed never invalidated the cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sessions_are_the_role_within_the_session_policy_and_roles_act_for_the_agent() {
    let (_d, store, iam) = setup().await;
    let mut a = Attached::default();
    a.inline.insert(
        "secrets".into(),
        doc(r#"{"Effect":"Allow","Action":["secretsmanager:GetSecretValue","ecs:*"],"Resource":"arn:aws:secretsmanager:*:*:secret:app/*"},{"Effect":"Allow","Action":"ecs:List*","Resource":"*"}"#),
    );
    let role = IamRole {
        name: "exec".into(),
        id: "AROAEXEC".into(),
        path: "/".into(),
        arn: format!("arn:aws:iam::{ACCT}:role/exec"),
        created_at: 0.0,
        trust_policy: doc(
            r#"{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":"ecs-tasks.amazonaws.com"}}"#,
        ),
        description: None,
        max_session_duration: 3600,
        tags: vec![],
        policies: a,
        boundary: None,
    };
    put(&*store, &model::role_key("exec"), &role).await;
    iam.invalidate();
    let secret = format!("arn:aws:secretsmanager:us-east-1:{ACCT}:secret:app/db-AbCdEf");
    iam.authorize_role(&role.arn, "secretsmanager:GetSecretValue", &secret).await.unwrap();
    let other = format!("arn:aws:secretsmanager:us-east-1:{ACCT}:secret:other-AbCdEf");
    let e =
        iam.authorize_role(&role.arn, "secretsmanager:GetSecretValue", &other).await.unwrap_err();
    assert!(e.message.contains("role/exec is not authorized"), "{}", e.message);
    assert!(
        iam.authorize_role(&format!("arn:aws:iam::{ACCT}:role/none"), "ecs:ListClusters", "*")
            .await
            .is_err()
    );

    let session_arn = format!("arn:aws:sts::{ACCT}:assumed-role/exec/s");
    let s = IamSession {
        access_key_id: "ASIATEST".into(),
        token_sha256: String::new(),
        expires_at: f64::MAX,
        arn: session_arn.clone(),
        role_arn: Some(role.arn.clone()),
        user_id: "AROAEXEC:s".into(),
        policy: Some(doc(r#"{"Effect":"Allow","Action":"ecs:ListClusters","Resource":"*"}"#)),
        policy_arns: vec![],
        tags: vec![],
    };
    put(&*store, &model::session_key("ASIATEST"), &s).await;
    let p = principal(&session_arn, "ASIATEST");
    iam.authorize(&p, &authz("ecs:ListClusters", "*")).await.unwrap();
    let e = iam.authorize(&p, &authz("ecs:ListServices", "*")).await.unwrap_err();
    assert!(e.message.contains("because no session policy allows"), "{}", e.message);
    assert!(e.message.starts_with(&format!("User: {session_arn} ")), "{}", e.message);

    // Trust: a user is refused a role trusting only a service; the root too.
    let u = principal(&format!("arn:aws:iam::{ACCT}:user/ann"), "AKIAANN");
    assert!(iam.authorize_assume(&u, &role, "s", &[]).await.is_err());
    let root = principal(&format!("arn:aws:iam::{ACCT}:root"), "AKIAROOT");
    assert!(iam.authorize_assume(&root, &role, "s", &[]).await.is_err());
}

#[test]
fn principals_are_told_apart_by_arn_and_key() {
    let p = |arn: &str, k: &str| principal(arn, k);
    assert_eq!(who(&p("arn:aws:iam::1:root", "AKIA1")), Who::Root);
    assert_eq!(who(&p("arn:aws:iam::1:root", "ASIA1")), Who::Root);
    assert_eq!(who(&p("arn:aws:iam::1:user/a/b/carl", "AKIA1")), Who::User("carl"));
    assert_eq!(who(&p("arn:aws:sts::1:assumed-role/r/s", "ASIA1")), Who::Session);
    assert_eq!(who(&p("arn:aws:iam::1:user/carl", "ASIA1")), Who::Session);
    let mut inst = p("arn:aws:ecs:us-east-1:1:container-instance/c/i", "AKIA1");
    inst.instance = Some(inst.arn.clone());
    assert_eq!(who(&inst), Who::Instance);
}

/// `aws:RequestTag/*`, the multivalued `aws:TagKeys` (missing when the request carries no
/// tags) and `aws:ResourceTag/*` reach the policies; only policies reading resource tags ask
/// for them.
#[tokio::test]
async fn request_and_resource_tags_decide() {
    let (_d, store, iam) = setup().await;
    let mut a = Attached::default();
    a.inline.insert(
        "tags".into(),
        doc(r#"{"Effect":"Allow","Action":"ecs:CreateCluster","Resource":"*",
                "Condition":{"StringEquals":{"aws:RequestTag/team":"blue"},
                             "ForAllValues:StringEquals":{"aws:TagKeys":["team","env"]}}},
               {"Effect":"Allow","Action":"ecs:UntagResource","Resource":"*",
                "Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]},
                             "Null":{"aws:TagKeys":"false"}}},
               {"Effect":"Allow","Action":"ecs:DeleteCluster","Resource":"*",
                "Condition":{"StringEquals":{"aws:ResourceTag/team":"blue"}}}"#),
    );
    put(&*store, &model::user_key("tia"), &user("tia", a, &[], None)).await;
    put(&*store, &model::user_key("ned"), &user("ned", Attached::default(), &[], None)).await;
    iam.invalidate();
    let tia = principal(&format!("arn:aws:iam::{ACCT}:user/tia"), "AKIATIA");
    let ned = principal(&format!("arn:aws:iam::{ACCT}:user/ned"), "AKIANED");
    assert!(iam.reads_resource_tags(&tia).await.unwrap());
    assert!(!iam.reads_resource_tags(&ned).await.unwrap());

    let with = |action: &str, t: &[(&str, &str)], k: &[&str]| Authz {
        request_tags: Some(tags::RequestTags {
            tags: t.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            keys: k.iter().map(|k| k.to_string()).collect(),
        }),
        ..authz(action, "*")
    };
    let create = |t: &[(&str, &str)]| {
        with("ecs:CreateCluster", t, &t.iter().map(|(k, _)| *k).collect::<Vec<_>>())
    };
    iam.authorize(&tia, &create(&[("team", "blue")])).await.unwrap();
    iam.authorize(&tia, &create(&[("team", "blue"), ("env", "dev")])).await.unwrap();
    // One key outside the ForAllValues set: all the keys are checked, not the last one.
    assert!(iam.authorize(&tia, &create(&[("team", "blue"), ("cost", "x")])).await.is_err());
    assert!(iam.authorize(&tia, &create(&[("team", "red")])).await.is_err());
    assert!(iam.authorize(&tia, &authz("ecs:CreateCluster", "*")).await.is_err());
    // Untag: keys only; without any, aws:TagKeys is missing (Null says so).
    iam.authorize(&tia, &with("ecs:UntagResource", &[], &["env"])).await.unwrap();
    assert!(iam.authorize(&tia, &with("ecs:UntagResource", &[], &["env", "team"])).await.is_err());
    assert!(iam.authorize(&tia, &authz("ecs:UntagResource", "*")).await.is_err());

    let blue = cluster("blue");
    let delete = |resource_tags: Vec<(String, Vec<(String, String)>)>| Authz {
        resource_tags,
        ..authz("ecs:DeleteCluster", &blue)
    };
    let team = |v: &str| vec![("team".to_string(), v.to_string())];
    iam.authorize(&tia, &delete(vec![(blue.clone(), team("blue"))])).await.unwrap();
    assert!(iam.authorize(&tia, &delete(vec![(blue.clone(), team("red"))])).await.is_err());
    assert!(iam.authorize(&tia, &delete(vec![])).await.is_err());
    // Tags of another resource are not this one's.
    assert!(iam.authorize(&tia, &delete(vec![(cluster("other"), team("blue"))])).await.is_err());

    // ECS's own ecs:ResourceTag/KEY repeats aws:ResourceTag/KEY, and is read too.
    let mut a = Attached::default();
    a.inline.insert(
        "ecs".into(),
        doc(r#"{"Effect":"Allow","Action":"ecs:DeleteCluster","Resource":"*",
                "Condition":{"StringEquals":{"ecs:ResourceTag/team":"blue"}}}"#),
    );
    put(&*store, &model::user_key("ned"), &user("ned", a, &[], None)).await;
    iam.invalidate();
    assert!(iam.reads_resource_tags(&ned).await.unwrap());
    iam.authorize(&ned, &delete(vec![(blue.clone(), team("blue"))])).await.unwrap();
    assert!(iam.authorize(&ned, &delete(vec![(blue.clone(), team("red"))])).await.is_err());
}
