//! The decision table (pure) and the ECR API's decisions on a real store: identity and
//! repository policies together, explicit denies, the root locked out of everything but the
//! policy, several repositories in one request, unparseable policies.

use std::sync::Arc;

use berth_model::iam::{self as model, Attached, IamUser};
use berth_store::{Store, Txn};

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::ecr::records::{RepoRecord, repo_key};

const ACCT: &str = "000000000000";

fn parsed(doc: &str) -> Stored {
    Stored::Parsed(Arc::new(Policy::parse(doc, PolicyKind::Resource).unwrap()))
}

#[test]
fn the_gate_lets_the_root_manage_policies_and_refuses_unparseable_ones_to_others() {
    let deny_all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:*"}]}"#;
    let set = "ecr:SetRepositoryPolicy";
    let del = "ecr:DeleteRepositoryPolicy";
    let get = "ecr:GetRepositoryPolicy";
    let delete_image = "ecr:BatchDeleteImage";
    // (root, action, stored) -> Allow / Evaluate(with policy?) / Unparseable
    let cases: Vec<(bool, &str, Stored, &str)> = vec![
        (true, set, parsed(deny_all), "allow"),
        (true, del, Stored::Unparseable, "allow"),
        (true, get, Stored::None, "allow"),
        (true, "ECR:deleterepositorypolicy", parsed(deny_all), "allow"),
        (true, delete_image, parsed(deny_all), "evaluate with"),
        (true, delete_image, Stored::None, "evaluate without"),
        (true, delete_image, Stored::Unparseable, "evaluate without"),
        (false, set, parsed(deny_all), "evaluate with"),
        (false, del, Stored::None, "evaluate without"),
        (false, delete_image, Stored::Unparseable, "unparseable"),
        (false, get, Stored::Unparseable, "unparseable"),
    ];
    for (root, action, stored, want) in cases {
        let got = match gate(root, action, stored) {
            Gate::Allow => "allow",
            Gate::Evaluate(Some(_)) => "evaluate with",
            Gate::Evaluate(None) => "evaluate without",
            Gate::Unparseable => "unparseable",
        };
        assert_eq!(got, want, "root={root} {action}");
    }
}

async fn put<T: serde::Serialize>(store: &dyn Store, key: &str, v: &T) {
    store.txn(Txn::new().put(key, crate::records::encode(v))).await.unwrap();
}

fn repo(name: &str, policy: Option<&str>) -> RepoRecord {
    RepoRecord {
        name: name.into(),
        arn: format!("arn:aws:ecr:us-east-1:{ACCT}:repository/{name}"),
        registry_id: ACCT.into(),
        created_at: 0.0,
        image_tag_mutability: "MUTABLE".into(),
        scan_on_push: false,
        encryption_type: "AES256".into(),
        kms_key: None,
        tags: vec![],
        lifecycle_policy: None,
        lifecycle_policy_updated_at: None,
        repository_policy: policy.map(str::to_string),
    }
}

fn principal(arn: String) -> Principal {
    Principal { arn, account_id: ACCT.into(), access_key_id: String::new(), instance: None }
}

#[tokio::test]
async fn api_calls_decide_with_identity_and_repository_policies() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let iam = Iam::new(
        store.clone(),
        clock.clone(),
        Arc::new(crate::auth::MasterKey::from_bytes(&[1; 32])),
        ACCT,
    );
    let arn = |r: &str| format!("arn:aws:ecr:us-east-1:{ACCT}:repository/{r}");
    let user_arn = |u: &str| format!("arn:aws:iam::{ACCT}:user/{u}");
    // bob: no policy of his own. dave: ecr:* everywhere.
    let everything = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
    for (name, doc) in [("bob", None), ("dave", Some(everything))] {
        let mut policies = Attached::default();
        if let Some(d) = doc {
            policies.inline.insert("p".into(), d.to_string());
        }
        let u = IamUser {
            name: name.into(),
            id: format!("AIDA{name}"),
            path: "/".into(),
            arn: user_arn(name),
            created_at: 0.0,
            tags: vec![],
            policies,
            groups: vec![],
            boundary: None,
        };
        put(&*store, &model::user_key(name), &u).await;
    }
    // bb: bob may describe its images. dd: dave may not delete images. locked: everything
    // is denied to everyone. broken: does not parse.
    let b_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"ecr:DescribeImages"}}]}}"#,
        user_arn("bob")
    );
    let d_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{{"AWS":"{}"}},"Action":"ecr:BatchDeleteImage"}}]}}"#,
        user_arn("dave")
    );
    let locked = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:*"}]}"#;
    put(&*store, &repo_key("aa"), &repo("aa", None)).await;
    put(&*store, &repo_key("bb"), &repo("bb", Some(&b_policy))).await;
    put(&*store, &repo_key("dd"), &repo("dd", Some(&d_policy))).await;
    put(&*store, &repo_key("locked"), &repo("locked", Some(locked))).await;
    put(&*store, &repo_key("broken"), &repo("broken", Some("{\"Statement\":7}"))).await;
    iam.invalidate();
    let access = RepositoryAccess::new(
        iam,
        Arc::new(EcrMetadata { store: store.clone(), clock }),
        format!("arn:aws:ecr:us-east-1:{ACCT}:repository/"),
    );
    let root = principal(format!("arn:aws:iam::{ACCT}:root"));
    let (bob, dave) = (principal(user_arn("bob")), principal(user_arn("dave")));
    /// Who, the action, the repositories, and the decision (a denial's message part).
    type Case<'a> = (&'a Principal, &'a str, &'a [&'a str], Result<(), &'a str>);
    let cases: &[Case] = &[
        (&bob, "ecr:DescribeImages", &["aa"], Err("no identity-based policy allows")),
        (&bob, "ecr:DescribeImages", &["bb"], Ok(())),
        (&bob, "ecr:BatchDeleteImage", &["bb"], Err("no identity-based policy allows")),
        // Every repository of the request must allow.
        (&bob, "ecr:DescribeImages", &["bb", "aa"], Err("no identity-based policy allows")),
        (&bob, "ecr:DescribeImages", &["nope"], Err("no identity-based policy allows")),
        (&dave, "ecr:BatchDeleteImage", &["aa"], Ok(())),
        (&dave, "ecr:BatchDeleteImage", &["dd"], Err("explicit deny in a resource-based policy")),
        (&dave, "ecr:PutImage", &["dd"], Ok(())),
        (&dave, "ecr:DescribeImages", &["locked"], Err("explicit deny")),
        (&dave, "ecr:SetRepositoryPolicy", &["locked"], Err("explicit deny")),
        (&dave, "ecr:DescribeImages", &["broken"], Err("does not parse")),
        (&root, "ecr:BatchDeleteImage", &["aa"], Ok(())),
        (
            &root,
            "ecr:BatchDeleteImage",
            &["locked"],
            Err("explicit deny in a resource-based policy"),
        ),
        (&root, "ecr:DeleteRepository", &["locked"], Err("explicit deny")),
        (&root, "ecr:GetRepositoryPolicy", &["locked"], Ok(())),
        (&root, "ecr:SetRepositoryPolicy", &["locked"], Ok(())),
        (&root, "ecr:DeleteRepositoryPolicy", &["locked"], Ok(())),
        (&root, "ecr:DescribeImages", &["broken"], Ok(())),
    ];
    for (p, action, repos, want) in cases {
        let req = Authz {
            action: action.to_string(),
            resources: repos.iter().map(|r| arn(r)).collect(),
            region: "us-east-1".into(),
            ..Authz::default()
        };
        let got = access.authorize(p, &req).await;
        match (want, got) {
            (Ok(()), Ok(())) => {}
            (Err(part), Err(e)) => {
                assert_eq!(e.code, "AccessDeniedException");
                assert!(e.message.contains(part), "{} {action} {repos:?}: {}", p.arn, e.message);
                assert!(e.message.contains(action), "{} names the action", e.message);
                let named = repos.iter().any(|r| e.message.contains(&arn(r)));
                assert!(named, "{} names the repository", e.message);
            }
            (want, got) => panic!("{} {action} {repos:?}: want {want:?}, got {got:?}", p.arn),
        }
    }
    // Actions on no repository: the identity policies alone (the root passes).
    let list = Authz { action: "ecr:DescribeRepositories".into(), ..Authz::default() };
    assert!(access.authorize(&root, &list).await.is_ok());
    assert!(access.authorize(&dave, &list).await.is_ok());
    assert!(access.authorize(&bob, &list).await.is_err());
    // A repository ARN of another registry is no repository of this one.
    assert_eq!(access.repository_of("arn:aws:ecr:eu-west-1:000000000000:repository/bb"), None);
    assert_eq!(access.repository_of(&arn("b/c")), Some("b/c"));
    assert_eq!(access.repository_of(&arn("")), None);
}
