//! Unit tests: staging label moves, sealing, lookups by name and ARN, deletion and the sweep.

use std::sync::Arc;

use berth_store::Store;
use berth_wire::secretsmanager::{self as wire, SecretsApi as _, VersionsApi as _};

use super::*;

fn fixture() -> (tempfile::TempDir, Arc<dyn Store>, SecretsManager) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let vault = Arc::new(Vault::new(&MasterKey::from_bytes(&[7; 32]), store.clone()));
    let region = berth_model::regions::lookup("us-east-1").unwrap();
    let sm = SecretsManager::new(store.clone(), vault, region, "000000000000");
    (dir, store, sm)
}

fn ctx() -> RequestContext {
    RequestContext {
        principal: Arc::new(crate::auth::Principal {
            arn: "arn:aws:iam::000000000000:root".into(),
            account_id: "000000000000".into(),
            access_key_id: "AKIATEST".into(),
            instance: None,
        }),
        request_id: "r".into(),
    }
}

const TOKEN_A: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const TOKEN_B: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
const TOKEN_C: &str = "cccccccc-cccc-cccc-cccc-cccccccccccc";

async fn put(sm: &SecretsManager, id: &str, token: &str, value: &str) {
    sm.put_secret_value(
        &ctx(),
        wire::PutSecretValueRequest {
            secret_id: Some(id.into()),
            client_request_token: Some(token.into()),
            secret_string: Some(value.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

async fn get(sm: &SecretsManager, id: &str, stage: Option<&str>) -> (String, String) {
    let v = sm
        .get_secret_value(
            &ctx(),
            wire::GetSecretValueRequest {
                secret_id: Some(id.into()),
                version_stage: stage.map(str::to_string),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (v.version_id.unwrap(), v.secret_string.unwrap())
}

#[tokio::test]
async fn stages_move_as_aws_moves_them_and_values_are_sealed() {
    let (_d, store, sm) = fixture();
    let created = sm
        .create_secret(
            &ctx(),
            wire::CreateSecretRequest {
                name: Some("db/pass".into()),
                client_request_token: Some(TOKEN_A.into()),
                secret_string: Some("hunter2-first".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let arn = created.arn.unwrap();
    let suffix = arn.rsplit('-').next().unwrap();
    assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:000000000000:secret:db/pass-"));
    assert_eq!(suffix.len(), 6);
    assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric()));
    put(&sm, "db/pass", TOKEN_B, "hunter2-second").await;
    put(&sm, &arn, TOKEN_C, "hunter2-third").await;
    assert_eq!(get(&sm, "db/pass", None).await, (TOKEN_C.into(), "hunter2-third".into()));
    assert_eq!(
        get(&sm, &arn, Some("AWSPREVIOUS")).await,
        (TOKEN_B.into(), "hunter2-second".into())
    );
    // The partial ARN (no suffix) finds it too.
    let partial = arn[..arn.len() - 7].to_string();
    assert_eq!(get(&sm, &partial, None).await.1, "hunter2-third");
    // Version A lost every label: deprecated, listed only on request.
    let listed = sm
        .list_secret_version_ids(
            &ctx(),
            wire::ListSecretVersionIdsRequest {
                secret_id: Some("db/pass".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.versions.unwrap().len(), 2);
    // A retry with the same token and value is accepted; another value is not.
    put(&sm, "db/pass", TOKEN_C, "hunter2-third").await;
    let e = sm
        .put_secret_value(
            &ctx(),
            wire::PutSecretValueRequest {
                secret_id: Some("db/pass".into()),
                client_request_token: Some(TOKEN_C.into()),
                secret_string: Some("other".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceExistsException");
    // Move AWSCURRENT back to B: C becomes AWSPREVIOUS.
    sm.update_secret_version_stage(
        &ctx(),
        wire::UpdateSecretVersionStageRequest {
            secret_id: Some("db/pass".into()),
            version_stage: Some("AWSCURRENT".into()),
            remove_from_version_id: Some(TOKEN_C.into()),
            move_to_version_id: Some(TOKEN_B.into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(get(&sm, "db/pass", None).await.0, TOKEN_B);
    assert_eq!(get(&sm, "db/pass", Some("AWSPREVIOUS")).await.0, TOKEN_C);
    // Nothing in the store holds a value in plain text.
    let all = store.range(berth_store::Range::prefix("")).await.unwrap();
    for r in all {
        let text = String::from_utf8_lossy(&r.value);
        assert!(!text.contains("hunter2"), "{}: {text}", r.key);
    }
}

#[tokio::test]
async fn deleted_secrets_refuse_reads_until_restored_and_are_swept() {
    let (_d, _store, sm) = fixture();
    sm.create_secret(
        &ctx(),
        wire::CreateSecretRequest {
            name: Some("gone".into()),
            secret_string: Some("x".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let bad = sm
        .delete_secret(
            &ctx(),
            wire::DeleteSecretRequest {
                secret_id: Some("gone".into()),
                recovery_window_in_days: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code, "InvalidParameterException");
    sm.delete_secret(
        &ctx(),
        wire::DeleteSecretRequest {
            secret_id: Some("gone".into()),
            recovery_window_in_days: Some(7),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = sm
        .get_secret_value(
            &ctx(),
            wire::GetSecretValueRequest { secret_id: Some("gone".into()), ..Default::default() },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidRequestException");
    sm.restore_secret(&ctx(), wire::RestoreSecretRequest { secret_id: Some("gone".into()) })
        .await
        .unwrap();
    assert_eq!(get(&sm, "gone", None).await.1, "x");
    sm.delete_secret(
        &ctx(),
        wire::DeleteSecretRequest {
            secret_id: Some("gone".into()),
            recovery_window_in_days: Some(7),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sm.vault.sweep(now()).await.unwrap(), 0, "inside the window");
    assert_eq!(sm.vault.sweep(now() + 8.0 * 86_400.0).await.unwrap(), 1);
    let e = sm
        .describe_secret(&ctx(), wire::DescribeSecretRequest { secret_id: Some("gone".into()) })
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[test]
fn a_sealed_value_opens_only_for_its_own_secret_and_version() {
    let c = Cipher::new(&MasterKey::from_bytes(&[1; 32]), SECRETS_KEY_LABEL);
    let sealed = c.seal("arn-a\nv1", b"value");
    assert_eq!(c.open("arn-a\nv1", &sealed).as_deref(), Some(&b"value"[..]));
    assert_eq!(c.open("arn-b\nv1", &sealed), None);
    assert_eq!(c.open("arn-a\nv2", &sealed), None);
    let other = Cipher::new(&MasterKey::from_bytes(&[1; 32]), PARAMETERS_KEY_LABEL);
    assert_eq!(other.open("arn-a\nv1", &sealed), None, "another derived key");
}
