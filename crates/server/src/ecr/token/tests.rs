//! Tokens (pure) and the registry's decisions on a real store: identity policies, repository
//! policies, explicit denies, the root, instance and role tokens.

use std::sync::Arc;

use berth_model::iam::{self as model, Attached, IamRole, IamUser};
use berth_store::{Store, Txn};

use super::*;
use crate::clock::SystemClock;
use crate::ecr::records::{EcrMetadata, RepoRecord, repo_key};
use crate::iam::Iam;

const ACCT: &str = "000000000000";

fn basic(token: &str) -> String {
    format!("Basic {token}")
}

fn user_holder(name: &str) -> Holder {
    Holder {
        arn: format!("arn:aws:iam::{ACCT}:user/{name}"),
        access_key_id: String::new(),
        instance: None,
        role: false,
    }
}

#[test]
fn tokens_carry_their_holder_and_verify_only_under_their_key_and_before_expiry() {
    let key = TokenKey::new([7; 32], ACCT);
    let alice = user_holder("alice");
    let token = key.authorization_token(&alice, 1_000);
    let decoded = String::from_utf8(STANDARD.decode(&token).unwrap()).unwrap();
    assert!(decoded.starts_with("AWS:1000."));
    assert_eq!(key.verify(Some(&basic(&token)), 999), Ok(alice.clone()));
    let expired = key.verify(Some(&basic(&token)), 1_000).unwrap_err();
    assert!(matches!(expired, Denial::Unauthenticated(m) if m.contains("expired")));
    let other_key = TokenKey::new([8; 32], ACCT);
    assert!(other_key.verify(Some(&basic(&token)), 0).is_err());
    let other_account = TokenKey::new([7; 32], "111111111111");
    assert!(other_account.verify(Some(&basic(&token)), 0).is_err());
    // Neither the expiry nor the holder can be changed under the MAC.
    let forged = decoded.replace("AWS:1000.", "AWS:9999.");
    assert!(key.verify(Some(&basic(&STANDARD.encode(forged))), 0).is_err());
    let (_, rest) = decoded.split_once('.').unwrap();
    let mac = rest.rsplit_once('.').unwrap().1;
    let root = URL_SAFE_NO_PAD.encode(format!(r#"{{"a":"arn:aws:iam::{ACCT}:root"}}"#));
    let swapped = format!("AWS:1000.{root}.{mac}");
    assert!(key.verify(Some(&basic(&STANDARD.encode(swapped))), 0).is_err());
    // The previous format (no holder) and junk are invalid.
    let old = format!("AWS:1000.{mac}");
    for bad in [
        None,
        Some("Bearer x".to_string()),
        Some("Basic !!".to_string()),
        Some("Basic dXNlcjpwYXNz".to_string()),
        Some(basic(&STANDARD.encode(old))),
    ] {
        assert!(key.verify(bad.as_deref(), 0).is_err(), "{bad:?}");
    }
    // Holders round-trip, sessions with their key id, instances with their instance.
    let session = Principal {
        arn: format!("arn:aws:sts::{ACCT}:assumed-role/r/s"),
        account_id: ACCT.into(),
        access_key_id: "ASIAXYZ".into(),
        instance: None,
    };
    let instance = Principal {
        arn: "arn:aws:ecs:us-east-1:0:container-instance/c/i".into(),
        account_id: ACCT.into(),
        access_key_id: "AKIAINST".into(),
        instance: Some("arn:aws:ecs:us-east-1:0:container-instance/c/i".into()),
    };
    for h in [Holder::caller(&session), Holder::caller(&instance), Holder::role("arn:x")] {
        let t = key.authorization_token(&h, 50);
        assert_eq!(key.verify(Some(&basic(&t)), 0), Ok(h));
    }
    assert_eq!(Holder::caller(&session).access_key_id, "ASIAXYZ");
    assert_eq!(Holder::caller(&instance).access_key_id, "", "only a session's key id");
}

#[test]
fn the_key_is_derived_from_the_master_key_per_label() {
    let master = crate::auth::MasterKey::from_bytes(&[7u8; 32]);
    let h = user_holder("a");
    let a = TokenKey::new(master.derive(KEY_LABEL), ACCT);
    let b = TokenKey::new(master.derive(KEY_LABEL), ACCT);
    assert_eq!(a.password(&h, 5), b.password(&h, 5), "the same master key gives the same tokens");
    assert_ne!(master.derive(KEY_LABEL), master.derive("another purpose"));
    let other = crate::auth::MasterKey::from_bytes(&[8u8; 32]);
    let c = TokenKey::new(other.derive(KEY_LABEL), ACCT);
    assert_ne!(a.password(&h, 5), c.password(&h, 5), "another master key, other tokens");
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

fn inline(doc: &str) -> Attached {
    let mut a = Attached::default();
    a.inline.insert("p".into(), doc.to_string());
    a
}

const PULL: &str =
    r#"["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"]"#;

#[tokio::test]
async fn identity_and_repository_policies_decide_together_and_deny_wins() {
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
    // alice: pull on `a` only. bob: nothing of his own. carol: pull everywhere.
    let alice = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{PULL},"Resource":"{}"}}]}}"#,
        arn("a")
    );
    let everywhere = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{PULL},"Resource":"*"}}]}}"#
    );
    for (name, doc) in [("alice", Some(&alice)), ("bob", None), ("carol", Some(&everywhere))] {
        let u = IamUser {
            name: name.into(),
            id: format!("AIDA{name}"),
            path: "/".into(),
            arn: user_arn(name),
            created_at: 0.0,
            tags: vec![],
            policies: doc.map(|d| inline(d)).unwrap_or_default(),
            groups: vec![],
            boundary: None,
        };
        put(&*store, &model::user_key(name), &u).await;
    }
    let role = IamRole {
        name: "exec".into(),
        id: "AROAEXEC".into(),
        path: "/".into(),
        arn: format!("arn:aws:iam::{ACCT}:role/exec"),
        created_at: 0.0,
        trust_policy: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
        description: None,
        max_session_duration: 3600,
        tags: vec![],
        policies: inline(&everywhere),
        boundary: None,
    };
    put(&*store, &model::role_key("exec"), &role).await;
    // b lets bob pull; c denies carol and the role pulls, and denies everyone deletes.
    let b_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"bob","Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":{PULL}}}]}}"#,
        user_arn("bob")
    );
    let c_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{{"AWS":["{}","{}"]}},"Action":"ecr:BatchGetImage"}},{{"Effect":"Deny","Principal":"*","Action":"ecr:BatchDeleteImage"}}]}}"#,
        user_arn("carol"),
        role.arn
    );
    put(&*store, &repo_key("a"), &repo("a", None)).await;
    put(&*store, &repo_key("b"), &repo("b", Some(&b_policy))).await;
    put(&*store, &repo_key("c"), &repo("c", Some(&c_policy))).await;
    put(&*store, &repo_key("broken"), &repo("broken", Some("{\"Statement\":7}"))).await;
    iam.invalidate();
    let key = Arc::new(TokenKey::new([2; 32], ACCT));
    let access = Arc::new(RepositoryAccess::new(
        iam,
        Arc::new(EcrMetadata { store: store.clone(), clock: Arc::new(SystemClock) }),
        format!("arn:aws:ecr:us-east-1:{ACCT}:repository/"),
    ));
    let gate =
        TokenAuthorizer::new(key.clone(), clock, "http://x/".into(), access, "us-east-1".into());
    let root = Holder {
        arn: format!("arn:aws:iam::{ACCT}:root"),
        access_key_id: String::new(),
        instance: None,
        role: false,
    };
    let instance = Holder {
        arn: "arn:aws:ecs:us-east-1:0:container-instance/c/i".into(),
        access_key_id: String::new(),
        instance: Some("arn:aws:ecs:us-east-1:0:container-instance/c/i".into()),
        role: false,
    };
    let exec = Holder::role(&role.arn);
    let (alice, bob, carol) = (user_holder("alice"), user_holder("bob"), user_holder("carol"));
    use Action::*;
    let cases: &[(&Holder, &str, Action, Result<(), &str>)] = &[
        (&alice, "a", BatchGetImage, Ok(())),
        (&alice, "a", GetDownloadUrlForLayer, Ok(())),
        (&alice, "a", InitiateLayerUpload, Err("no identity-based policy allows")),
        (&alice, "b", BatchGetImage, Err("no identity-based policy allows")),
        (&bob, "b", BatchGetImage, Ok(())),
        (&bob, "b", PutImage, Err("no identity-based policy allows the ecr:PutImage")),
        (&bob, "a", BatchGetImage, Err("no identity-based policy allows")),
        (&carol, "a", BatchGetImage, Ok(())),
        (&carol, "c", BatchGetImage, Err("explicit deny in a resource-based policy")),
        (&carol, "c", GetDownloadUrlForLayer, Ok(())),
        (&exec, "a", BatchGetImage, Ok(())),
        (&exec, "c", BatchGetImage, Err("explicit deny in a resource-based policy")),
        (&exec, "a", PutImage, Err("no identity-based policy allows")),
        (&root, "a", PutImage, Ok(())),
        (&root, "c", BatchGetImage, Ok(())),
        (&root, "c", BatchDeleteImage, Err("explicit deny in a resource-based policy")),
        (&root, "broken", PutImage, Ok(())),
        (&carol, "broken", BatchGetImage, Err("does not parse")),
        (&instance, "c", BatchGetImage, Ok(())),
        (&instance, "a", PutImage, Err("may only pull")),
        // Logging in needs only a valid token.
        (&bob, "a", Login, Ok(())),
    ];
    let ext = http::Extensions::new();
    for (holder, repo, action, want) in cases {
        let header = basic(&key.authorization_token(holder, i64::MAX));
        let got = gate.authorize(Some(&header), &ext, Some(repo), *action).await;
        match (want, got) {
            (Ok(()), Ok(())) => {}
            (Err(part), Err(Denial::Denied(m))) => {
                assert!(m.contains(part), "{} {action:?} {repo}: {m}", holder.arn);
                if let Some(a) = action.iam_action() {
                    assert!(m.contains(a), "{m} names the action");
                }
                assert!(m.contains(&arn(repo)) || m.contains(repo), "{m} names the repository");
            }
            (want, got) => panic!("{} {action:?} {repo}: want {want:?}, got {got:?}", holder.arn),
        }
    }
    // No token at all: a challenge, whatever the repository.
    let e = gate.authorize(None, &ext, Some("a"), BatchGetImage).await.unwrap_err();
    assert!(matches!(e, Denial::Unauthenticated(_)));
}
