//! Changes of who may act — users created, disabled, re-roled; apps revoked — are anchored on
//! the tenant's ledger by its registrar and listed by the audit index with who made them,
//! each with a proof that verifies; another tenant sees none of them.

use std::time::{Duration, Instant};

use caretrail_runtime::testing::Backend;
use caretrail_test_stack::{Options, Stack};
use serde_json::{Value, json};

async fn changes(stack: &Stack, token: &str, kind: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = stack
            .get_ok_json(
                stack.audit_url(),
                token,
                &format!("/v1/audit/events?kind={kind}&proofs=true"),
            )
            .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= want {
            return items;
        }
        assert!(Instant::now() < deadline, "{kind}: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The verified ledger entry behind an audit item, and its payload.
fn entry(item: &Value) -> (caretrail_ledger_proofs::Entry, Value) {
    let proof: caretrail_ledger_proofs::ProofBundle =
        serde_json::from_value(item["proof"].clone()).unwrap();
    let anchors = caretrail_ledger_proofs::TrustAnchors::from_bundle(&proof).unwrap();
    let verified = caretrail_ledger_proofs::verify_bundle(&proof, &anchors).unwrap();
    assert_eq!(
        Some(verified.entry.index as i64),
        item["ledger_index"].as_i64()
    );
    assert_eq!(verified.entry.submitter, "registrar");
    let payload = serde_json::from_slice(&verified.entry.payload).unwrap();
    (verified.entry, payload)
}

async fn access_changes_are_anchored_and_listed(backend: Backend) {
    let stack = Stack::start_with(
        backend,
        Options {
            audit: true,
            ..Options::default()
        },
    )
    .await;
    let auditor = stack.user_token("auditor.chen").await;
    let admin = stack.user_token("admin.bureau").await;
    let admin_sub = {
        use base64::Engine as _;
        let claims = admin.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        claims["sub"].as_str().unwrap().to_string()
    };
    let tenant = stack.tenant_id(0);

    // The demo seed disabled dr.wu (a physician who left); the bureau's admin now disables
    // dr.li and makes dr.zhang an institution admin too.
    let users = stack
        .get_ok_json(
            &stack.identity,
            &admin,
            &format!("/v1/tenants/{tenant}/users"),
        )
        .await;
    let id_of = |name: &str| {
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (li, zhang) = (id_of("dr.li"), id_of("dr.zhang"));
    let resp = stack
        .http
        .post(format!(
            "{}/v1/tenants/{tenant}/users/{li}/disable",
            stack.identity
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = stack
        .http
        .patch(format!(
            "{}/v1/tenants/{tenant}/users/{zhang}",
            stack.identity
        ))
        .bearer_auth(&admin)
        .json(&json!({"roles": ["physician", "institution_admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let disabled = changes(&stack, &auditor, "user.disabled", 2).await;
    assert_eq!(disabled.len(), 2, "{disabled:?}");
    let by_admin = disabled
        .iter()
        .find(|d| d["actor"]["subject"] == admin_sub.as_str())
        .expect("dr.li's disabling, by the admin");
    let (e, payload) = entry(by_admin);
    assert_eq!(e.kind, "user.disabled");
    assert_eq!(payload["subject"], li.as_str());
    assert_eq!(payload["by"], admin_sub.as_str());
    let by_seed = disabled
        .iter()
        .find(|d| d["actor"]["subject"] == "seed")
        .expect("dr.wu's disabling, by the seed");
    assert_eq!(entry(by_seed).1["subject"], id_of("dr.wu").as_str());

    let changed = changes(&stack, &auditor, "user.role_changed", 1).await;
    let (_, payload) = entry(&changed[0]);
    assert_eq!(payload["subject"], zhang.as_str());
    assert_eq!(payload["roles"], json!(["physician", "institution_admin"]));
    // Every demo user's creation is there too, and `user.*` lists them all.
    let created = changes(&stack, &auditor, "user.created", 5).await;
    assert!(created.len() >= 5, "{created:?}");
    let all = changes(&stack, &auditor, "user.*", created.len() + 3).await;
    assert!(all.len() >= created.len() + 3);

    // The other tenant sees its own changes only.
    let other = stack.app_token(1, 0).await;
    let theirs = stack
        .get_ok_json(
            stack.audit_url(),
            &other,
            "/v1/audit/events?kind=user.disabled",
        )
        .await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0, "{theirs}");
    stack.stop().await;
}

#[tokio::test]
async fn access_changes_are_anchored_and_listed_embedded() {
    access_changes_are_anchored_and_listed(Backend::Embedded).await;
}

#[tokio::test]
async fn access_changes_are_anchored_and_listed_real() {
    access_changes_are_anchored_and_listed(Backend::Real).await;
}
