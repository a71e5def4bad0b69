//! Entries only the ledger reports — institution keys registered by the tenant's registrar —
//! are indexed from `ledger.appended`, each linked to its entry with a proof; entries that
//! domain events describe are not indexed twice.

use std::time::{Duration, Instant};

use caretrail_runtime::testing::Backend;
use caretrail_test_stack::{Options, Stack, metadata};
use serde_json::Value;

async fn get(stack: &Stack, token: &str, path: &str) -> Value {
    stack.get_ok_json(stack.audit_url(), token, path).await
}

async fn key_history(backend: Backend) {
    let stack = Stack::start_with(
        backend,
        Options {
            audit: true,
            ..Options::default()
        },
    )
    .await;
    let auditor = stack.user_token("auditor.chen").await;
    let app = stack.app_token(0, 0).await;
    let patient = stack.register_patient(&app, "320402198001011234").await;
    let resp = stack
        .upload(
            &app,
            "application/pdf",
            &metadata(&patient, "exam_report"),
            b"%PDF".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let institutions: Vec<String> = stack.demo["tenants"][0]["institutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let keys = loop {
        let page = get(
            &stack,
            &auditor,
            "/v1/audit/events?kind=institution.key_registered&proofs=true",
        )
        .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= institutions.len() {
            break items;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(keys.len(), institutions.len());
    let mut owners: Vec<String> = keys
        .iter()
        .map(|k| k["owner_institution"].as_str().unwrap().to_string())
        .collect();
    owners.sort();
    let mut want = institutions.clone();
    want.sort();
    assert_eq!(owners, want);
    for key in &keys {
        assert_eq!(key["actor"]["subject"], "registrar", "{key}");
        let proof: caretrail_ledger_proofs::ProofBundle =
            serde_json::from_value(key["proof"].clone()).unwrap();
        let anchors = caretrail_ledger_proofs::TrustAnchors::from_bundle(&proof).unwrap();
        let verified = caretrail_ledger_proofs::verify_bundle(&proof, &anchors).unwrap();
        assert_eq!(verified.entry.kind, "institution.key_registered");
        assert_eq!(
            Some(verified.entry.index as i64),
            key["ledger_index"].as_i64()
        );
    }
    // The upload's entry is indexed once, from the object store's event, not again from
    // the ledger stream: a key registered after the upload comes later in that stream, and
    // once it is indexed the upload's ledger event has been consumed too.
    let admin = stack.user_token("admin.bureau").await;
    let benniu = stack.institution(0, 0)["id"].as_str().unwrap().to_string();
    let resp = stack
        .http
        .post(format!("{}/v1/institutions/{benniu}/keys", stack.identity))
        .bearer_auth(&admin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(
            &stack,
            &auditor,
            &format!("/v1/audit/events?kind=institution.key_registered&institution={benniu}"),
        )
        .await;
        if page["items"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let anchored = get(&stack, &auditor, "/v1/audit/events?kind=record.anchored").await;
    assert_eq!(anchored["items"].as_array().unwrap().len(), 1, "{anchored}");
    // The other tenant sees its own key history only.
    let other = stack.app_token(1, 0).await;
    let theirs = get(
        &stack,
        &other,
        "/v1/audit/events?kind=institution.key_registered",
    )
    .await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1, "{theirs}");
    assert_eq!(
        theirs["items"][0]["owner_institution"],
        stack.demo["tenants"][1]["institutions"][0]["id"]
    );
    stack.stop().await;
}

#[tokio::test]
async fn institution_keys_are_indexed_from_the_ledger_embedded() {
    key_history(Backend::Embedded).await;
}

#[tokio::test]
async fn institution_keys_are_indexed_from_the_ledger_real() {
    key_history(Backend::Real).await;
}
