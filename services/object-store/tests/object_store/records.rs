//! Records end to end: upload with a receipt that verifies, download, tenant isolation,
//! refusals, tampering, bad input, crypto-shredding, KEK rotation, S3 outages, decisions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use caretrail_crypto::{Suite, VerifyingKey};
use caretrail_ledger_proofs::{
    CheckKind, CheckStatus, ProofBundle, TrustAnchors, VerifierKey, verify_bundle,
};
use caretrail_object_store::entities::{anchor, record};
use caretrail_runtime::testing::Backend;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::stack::{Options, Stack, metadata};

const PDF: &str = "application/pdf";

/// A recognisable body of `len` bytes that spans many AEAD chunks.
fn body_with_marker(marker: &str, len: usize) -> Vec<u8> {
    let mut body = format!("%PDF-1.7\n{marker}\n").into_bytes();
    let mut x: u32 = 0x1234_5678;
    while body.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        body.push((x & 0xff) as u8);
    }
    body.truncate(len);
    body
}

fn suite_of(t: usize) -> Suite {
    // The demo's first tenant is gm, the second intl.
    if t == 0 { Suite::Gm } else { Suite::Intl }
}

async fn problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "expected {status} {code}");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

/// Verifies a receipt's bundle offline against the ledger key and the institution keys.
async fn assert_receipt_verifies(stack: &Stack, token: &str, receipt: &Value) {
    let keys = stack.ledger_keys(token).await;
    let anchors = TrustAnchors {
        ledger_keys: vec![VerifierKey::parse(keys["ledger_key"].as_str().unwrap()).unwrap()],
        submitter_keys: keys["institution_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| VerifyingKey::from_spki_pem(k["public_key_pem"].as_str().unwrap()).unwrap())
            .collect(),
        ..TrustAnchors::default()
    };
    let bundle: ProofBundle = serde_json::from_value(receipt["bundle"].clone()).unwrap();
    let report = verify_bundle(&bundle, &anchors).expect("the receipt verifies");
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.check == CheckKind::SubmitterSignature && c.status == CheckStatus::Passed)
    );
    // The bundle is about this record's manifest (ids and hashes, no title).
    let entry = caretrail_ledger_proofs::Entry::decode(&bundle.entry).unwrap();
    assert_eq!(receipt["ledger_index"], entry.index);
    assert_eq!(entry.kind, "record.anchored");
    let manifest: Value = serde_json::from_slice(&entry.payload).unwrap();
    assert_eq!(manifest["record"], receipt["record_id"]);
    assert_eq!(manifest["content_hash"], receipt["content_hash"]);
    // Ids and hashes only: the health fields are sealed, not even their hashes in clear.
    assert_eq!(manifest["v"], 2);
    assert!(manifest["sealed"].is_string(), "{manifest}");
    for hidden in [
        "title",
        "title_hash",
        "category",
        "encounter_date",
        "media_type",
        "size",
    ] {
        assert!(manifest.get(hidden).is_none(), "{hidden} in {manifest}");
    }
    let tampered = {
        let mut b = bundle.clone();
        let at = b.entry.len() - 120;
        b.entry[at] ^= 1;
        b
    };
    assert!(
        verify_bundle(&tampered, &anchors).is_err(),
        "a changed manifest must not verify"
    );
}

async fn uploads_reads_and_isolates(backend: Backend) {
    let stack = Stack::start(backend).await;
    let (_events_consumer, events) = stack.record_events().await;
    for t in [0usize, 1] {
        let token = stack.app_token(t, 0).await;
        let patient = stack
            .register_patient(&token, &format!("3204021980010{t}1234"))
            .await;
        let marker = format!("CARETRAIL-MARKER-{}", uuid::Uuid::new_v4().simple());
        let body = body_with_marker(&marker, 300_000);
        let resp = stack
            .upload(
                &token,
                PDF,
                &metadata(&patient, "exam_report"),
                body.clone(),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let out: Value = resp.json().await.unwrap();
        let id = out["record"]["id"].as_str().unwrap().to_string();
        let expected_hash = caretrail_crypto::hash(suite_of(t), &body).to_hex();
        assert_eq!(out["record"]["content_hash"], expected_hash);
        assert_eq!(out["record"]["status"], "active");
        assert_eq!(out["receipt"]["record_id"], id.as_str());
        assert_eq!(out["receipt"]["content_hash"], expected_hash);
        assert_receipt_verifies(&stack, &token, &out["receipt"]).await;

        // Same bytes back; the store holds ciphertext only.
        let resp = stack
            .get(&token, &format!("/v1/records/{id}/content"))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], PDF);
        // Never rendered in the API's origin.
        assert!(
            resp.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment")
        );
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());
        // Ranges (imaging viewers seek): only the chunks holding the range are read.
        for (range, from, to) in [
            ("bytes=100000-150000", 100_000usize, 150_000usize),
            ("bytes=0-0", 0, 0),
            ("bytes=-1000", body.len() - 1000, body.len() - 1),
            ("bytes=299990-", 299_990, body.len() - 1),
        ] {
            let resp = stack
                .http
                .get(format!("{}/v1/records/{id}/content", stack.store))
                .bearer_auth(&token)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 206, "{range}");
            assert_eq!(
                resp.headers()["content-range"],
                format!("bytes {from}-{to}/{}", body.len()).as_str()
            );
            assert_eq!(
                resp.bytes().await.unwrap().as_ref(),
                &body[from..=to],
                "{range}"
            );
        }
        let resp = stack
            .http
            .get(format!("{}/v1/records/{id}/content", stack.store))
            .bearer_auth(&token)
            .header("range", "bytes=300000-")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 416);
        let tenant = stack.tenant_id(t);
        let stored = stack.stored_object(&tenant, &id).await.expect("stored");
        assert!(!stored.windows(marker.len()).any(|w| w == marker.as_bytes()));
        assert!(stored.len() > body.len());

        let meta: Value = stack
            .get(&token, &format!("/v1/records/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(meta["title"], "胸部CT检查报告 / chest CT report");
        let list: Value = stack
            .get(&token, &format!("/v1/patients/{patient}/records"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list["items"][0]["id"], id.as_str());
        // Five downloads, and the metadata read and the list page that showed it.
        assert_eq!(
            stack.anchored_kinds(&id, 8).await,
            [
                "record.anchored",
                "record.accessed",
                "record.accessed",
                "record.accessed",
                "record.accessed",
                "record.accessed",
                "record.accessed",
                "record.accessed"
            ]
        );
        // The audit service hears both, each linked to its ledger entry.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (anchored, accessed) = loop {
            let seen = events.lock().unwrap().clone();
            let find = |name: &str| {
                seen.iter()
                    .find(|e| e.name == name && e.payload["record"] == id.as_str())
                    .cloned()
            };
            if let (Some(a), Some(b)) = (find("record.anchored"), find("record.accessed")) {
                break (a, b);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "events missing: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(anchored.tenant, stack.tenant_id(t));
        assert_eq!(
            anchored.payload["ledger_index"],
            out["receipt"]["ledger_index"]
        );
        assert_eq!(anchored.payload["content_hash"], expected_hash);
        assert_eq!(accessed.payload["purpose"], "treatment");
        assert_eq!(accessed.payload["action"], "read_content");
        // The metadata read and the list page are reads of the record's metadata.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let metadata_reads = events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| {
                    e.name == "record.accessed"
                        && e.payload["record"] == id.as_str()
                        && e.payload["action"] == "read_metadata"
                })
                .count();
            if metadata_reads == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{metadata_reads} metadata reads"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accessed.payload["decided_by"]["id"], "owner_only");
        assert!(
            accessed.payload["ledger_index"].as_u64().unwrap()
                > anchored.payload["ledger_index"].as_u64().unwrap()
        );

        // Another institution of the tenant (no grant): refused — answered like a record that
        // does not exist — and the refusal anchored.
        if t == 0 {
            let hospital = stack.app_token(0, 1).await;
            problem(
                stack.get(&hospital, &format!("/v1/records/{id}")).await,
                404,
                "not_found",
            )
            .await;
            problem(
                stack
                    .get(&hospital, &format!("/v1/records/{id}/content"))
                    .await,
                404,
                "not_found",
            )
            .await;
            let list: Value = stack
                .get(&hospital, &format!("/v1/patients/{patient}/records"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(list["items"], json!([]));
            let kinds = stack.anchored_kinds(&id, 10).await;
            assert_eq!(kinds[8..], ["record.access_denied", "record.access_denied"]);
            // Another tenant sees nothing at all.
            let other = stack.app_token(1, 0).await;
            for path in [
                format!("/v1/records/{id}"),
                format!("/v1/records/{id}/content"),
                format!("/v1/records/{id}/receipt"),
            ] {
                problem(stack.get(&other, &path).await, 404, "not_found").await;
            }
            let resp = stack
                .http
                .delete(format!("{}/v1/records/{id}", stack.store))
                .bearer_auth(&other)
                .json(&json!({"reason": "not mine"}))
                .send()
                .await
                .unwrap();
            problem(resp, 404, "not_found").await;
            let list: Value = stack
                .get(&other, &format!("/v1/patients/{patient}/records"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(list["items"], json!([]));
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn uploads_reads_and_isolates_embedded() {
    uploads_reads_and_isolates(Backend::Embedded).await;
}

#[tokio::test]
async fn uploads_reads_and_isolates_on_postgres_rabbitmq_s3() {
    uploads_reads_and_isolates(Backend::Real).await;
}

/// A request on a connection of its own: the server closes connections whose response it
/// had to abort or fail, and a pooled client could pick such a connection up.
async fn fresh_get(
    stack: &Stack,
    token: &str,
    path: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("{}{path}", stack.store))
        .bearer_auth(token);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.unwrap()
}

async fn tampering_is_detected(backend: Backend) {
    let stack = Stack::start(backend).await;
    let token = stack.app_token(1, 0).await;
    let patient = stack.register_patient(&token, "320402198001019999").await;
    let body = body_with_marker("tamper", 400_000);
    let out: Value = stack
        .upload(&token, PDF, &metadata(&patient, "lab_result"), body.clone())
        .await
        .json()
        .await
        .unwrap();
    let id = out["record"]["id"].as_str().unwrap().to_string();
    let tenant = stack.tenant_id(1);
    let original = stack.stored_object(&tenant, &id).await.unwrap();
    let content = format!("/v1/records/{id}/content");

    // A flipped bit in the first chunk: a clean integrity error before any byte is sent.
    let mut early = original.clone();
    early[100] ^= 0x01;
    stack.replace_object(&tenant, &id, early).await;
    problem(
        fresh_get(&stack, &token, &content, None).await,
        500,
        "integrity_error",
    )
    .await;

    // Later in the object, or cut short: the stream fails instead of delivering wrong bytes.
    let mut late = original.clone();
    let at = original.len() - 1000;
    late[at] ^= 0x80;
    let truncated = original[..original.len() - 200].to_vec();
    for broken in [late, truncated] {
        stack.replace_object(&tenant, &id, broken).await;
        // Either refused before the first byte (small objects fail while the first piece
        // is held back) or cut off mid-stream — never a complete 200.
        let resp = fresh_get(&stack, &token, &content, None).await;
        if resp.status() == 200 {
            assert!(
                resp.bytes().await.is_err(),
                "an altered or truncated object must end the download with an error"
            );
        } else {
            problem(resp, 500, "integrity_error").await;
        }
    }
    // A range read of an altered chunk fails as well.
    let mut middle = original.clone();
    middle[original.len() / 2] ^= 0x04;
    stack.replace_object(&tenant, &id, middle).await;
    // The range starts in an intact chunk, so its first bytes may already be on the way:
    // then the response is cut off; it never completes.
    let sent = reqwest::Client::new()
        .get(format!("{}{content}", stack.store))
        .bearer_auth(&token)
        .header("range", "bytes=190000-210000")
        .send()
        .await;
    match sent {
        Err(_) => {}
        Ok(resp) if resp.status() == 206 => assert!(
            resp.bytes().await.is_err(),
            "a range over an altered chunk must not complete"
        ),
        Ok(resp) => {
            problem(resp, 500, "integrity_error").await;
        }
    }
    // A range that starts in the altered chunk fails before any byte.
    let resp = fresh_get(&stack, &token, &content, Some("bytes=200000-200100")).await;
    problem(resp, 500, "integrity_error").await;
    // Another record's (valid) ciphertext under this id does not decrypt either.
    let other: Value = stack
        .upload(&token, PDF, &metadata(&patient, "lab_result"), body.clone())
        .await
        .json()
        .await
        .unwrap();
    let other_id = other["record"]["id"].as_str().unwrap();
    let swapped = stack.stored_object(&tenant, other_id).await.unwrap();
    stack.replace_object(&tenant, &id, swapped).await;
    problem(
        fresh_get(&stack, &token, &content, None).await,
        500,
        "integrity_error",
    )
    .await;

    // Restored, it reads again.
    stack.replace_object(&tenant, &id, original).await;
    let resp = fresh_get(&stack, &token, &content, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());
    stack.stop().await;
}

#[tokio::test]
async fn tampering_is_detected_embedded() {
    tampering_is_detected(Backend::Embedded).await;
}

#[tokio::test]
async fn tampering_is_detected_on_s3() {
    tampering_is_detected(Backend::Real).await;
}

/// Records of both demo tenants (read under each tenant's RLS context) and queued anchors.
async fn counts(stack: &Stack) -> (u64, u64) {
    let mut records = 0;
    for t in 0..2 {
        let tenant = stack.tenant_id(t);
        let txn = caretrail_db::begin_tenant(&stack.state.db, &tenant)
            .await
            .unwrap();
        records += record::Entity::find()
            .filter(record::Column::TenantId.eq(tenant.as_str()))
            .count(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    (
        records,
        anchor::Entity::find().count(&stack.state.db).await.unwrap(),
    )
}

async fn bad_input_changes_nothing(backend: Backend) {
    let stack = Stack::start_with(
        backend,
        Options {
            max_record_bytes: 1024 * 1024,
            ..Options::default()
        },
    )
    .await;
    let token = stack.app_token(0, 0).await;
    let patient = stack.register_patient(&token, "320402198001018888").await;
    let before = counts(&stack).await;
    let body = b"%PDF-1.7 a small report".to_vec();
    let unregistered = format!("pat_{}", "ab".repeat(16));
    let cases: Vec<(Value, &str, Vec<u8>, u16, &str)> = vec![
        (
            metadata(&unregistered, "exam_report"),
            PDF,
            body.clone(),
            400,
            "unknown_patient",
        ),
        (
            metadata("bob", "exam_report"),
            PDF,
            body.clone(),
            400,
            "invalid_request",
        ),
        (
            metadata(&patient, "gossip"),
            PDF,
            body.clone(),
            400,
            "invalid_request",
        ),
        (
            json!({"patient": patient, "category": "other"}),
            PDF,
            body.clone(),
            400,
            "invalid_request",
        ),
        (
            metadata(&patient, "exam_report"),
            "application/x-msdownload",
            body.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            metadata(&patient, "exam_report"),
            PDF,
            Vec::new(),
            400,
            "empty_content",
        ),
        (
            metadata(&patient, "exam_report"),
            PDF,
            vec![b'x'; 1024 * 1024 + 1],
            413,
            "record_too_large",
        ),
    ];
    for (meta, media, body, status, code) in cases {
        problem(stack.upload(&token, media, &meta, body).await, status, code).await;
    }
    // No metadata, no token, no write permission.
    let resp = stack
        .http
        .post(format!("{}/v1/records", stack.store))
        .bearer_auth(&token)
        .header("content-type", PDF)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    problem(resp, 400, "invalid_request").await;
    let resp = stack
        .http
        .post(format!("{}/v1/records", stack.store))
        .header("content-type", PDF)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let hospital = stack.app_token(0, 1).await;
    problem(
        stack
            .upload(
                &hospital,
                PDF,
                &metadata(&patient, "exam_report"),
                body.clone(),
            )
            .await,
        403,
        "forbidden",
    )
    .await;

    // A streamed body (no Content-Length) over the limit is cut off too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![7u8; 64 * 1024])).collect();
    // A fresh client: the server stops reading this request's body mid-way.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/records", stack.store))
        .bearer_auth(&token)
        .header("content-type", PDF)
        .header(
            "caretrail-metadata",
            metadata(&patient, "imaging").to_string(),
        )
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server may answer 413 or reset the connection while the client still sends.
    if let Ok(resp) = resp {
        problem(resp, 413, "record_too_large").await;
    }
    assert_eq!(
        counts(&stack).await,
        before,
        "a refused upload left rows behind"
    );
    if backend == Backend::Embedded {
        let tenant_dir = stack.objects_dir.join(stack.tenant_id(0));
        let left: Vec<_> = std::fs::read_dir(&tenant_dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "objects left behind: {left:?}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn bad_input_changes_nothing_embedded() {
    bad_input_changes_nothing(Backend::Embedded).await;
}

#[tokio::test]
async fn bad_input_changes_nothing_on_postgres_rabbitmq_s3() {
    bad_input_changes_nothing(Backend::Real).await;
}

async fn crypto_shredding(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = stack.app_token(0, 0).await;
    let patient = stack.register_patient(&app, "320402198001017777").await;
    let body = body_with_marker("to be forgotten", 200_000);
    let out: Value = stack
        .upload(&app, PDF, &metadata(&patient, "mental_health"), body)
        .await
        .json()
        .await
        .unwrap();
    let id = out["record"]["id"].as_str().unwrap().to_string();
    let tenant = stack.tenant_id(0);
    let wrapped = stack.record_row(&tenant, &id).await.wrapped_key.unwrap();

    let erase = |token: String, reason: &'static str| {
        let http = stack.http.clone();
        let url = format!("{}/v1/records/{id}", stack.store);
        async move {
            http.delete(url)
                .bearer_auth(token)
                .json(&json!({ "reason": reason }))
                .send()
                .await
                .unwrap()
        }
    };
    // Physicians may not erase; another institution's administrator cannot even tell the
    // record exists.
    problem(
        erase(stack.user_token("dr.zhang").await, "patient request").await,
        403,
        "forbidden",
    )
    .await;
    problem(
        erase(stack.user_token("admin.bureau").await, "patient request").await,
        404,
        "not_found",
    )
    .await;
    let admin = stack.user_token("admin.benniu").await;
    problem(erase(admin.clone(), "").await, 400, "invalid_request").await;
    let resp = erase(admin.clone(), "patient exercised the right to erasure").await;
    assert_eq!(resp.status(), 200);

    for path in [
        format!("/v1/records/{id}"),
        format!("/v1/records/{id}/content"),
    ] {
        problem(stack.get(&app, &path).await, 410, "record_erased").await;
    }
    problem(erase(admin, "again").await, 410, "record_erased").await;
    assert!(
        stack.stored_object(&tenant, &id).await.is_none(),
        "the object is deleted"
    );
    let row = stack.record_row(&tenant, &id).await;
    assert_eq!(row.wrapped_key, None);
    if let Some(db_file) = &stack.store_db_file {
        // A copy of the database files holds no trace of the data key.
        for file in [db_file.clone(), db_file.with_extension("db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(
                    !bytes
                        .windows(wrapped.len())
                        .any(|w| w == wrapped.as_bytes()),
                    "{} still holds the wrapped key",
                    file.display()
                );
            }
        }
    }
    // The ledger still proves the record existed, and now that it was erased.
    let receipt: Value = stack
        .get(&app, &format!("/v1/records/{id}/receipt"))
        .await
        .json()
        .await
        .unwrap();
    assert_receipt_verifies(&stack, &app, &receipt).await;
    // The receipt read is on the trail too.
    assert_eq!(
        stack.anchored_kinds(&id, 3).await,
        ["record.anchored", "record.erased", "record.accessed"]
    );
    stack.stop().await;
}

#[tokio::test]
async fn crypto_shredding_embedded() {
    crypto_shredding(Backend::Embedded).await;
}

#[tokio::test]
async fn crypto_shredding_on_postgres_rabbitmq_s3() {
    crypto_shredding(Backend::Real).await;
}

async fn kek_rotation_rewraps(backend: Backend) {
    let stack = Stack::start(backend).await;
    let app = stack.app_token(0, 0).await;
    let patient = stack.register_patient(&app, "320402198001016666").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = body_with_marker(&format!("record {i}"), 10_000 + i);
        let out: Value = stack
            .upload(&app, PDF, &metadata(&patient, "prescription"), body.clone())
            .await
            .json()
            .await
            .unwrap();
        ids.push((out["record"]["id"].as_str().unwrap().to_string(), body));
    }
    problem(
        stack
            .http
            .post(format!("{}/v1/admin/keys/rotate", stack.store))
            .bearer_auth(stack.user_token("dr.zhang").await)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let admin = stack.user_token("admin.bureau").await;
    let keys: Value = stack
        .get(&admin, "/v1/admin/keys")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["current_version"], 1);
    assert_eq!(keys["versions"][0]["records"], 3);
    let resp = stack
        .http
        .post(format!("{}/v1/admin/keys/rotate", stack.store))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let keys: Value = stack
            .get(&admin, "/v1/admin/keys")
            .await
            .json()
            .await
            .unwrap();
        if keys["pending_rewrap"] == 0 && keys["rewrap_running"] == false {
            assert_eq!(keys["current_version"], 2);
            assert_eq!(keys["versions"][1]["records"], 3);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rewrap never finished: {keys}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tenant = stack.tenant_id(0);
    for (id, _) in &ids {
        assert_eq!(stack.record_row(&tenant, id).await.kek_version, 2);
    }
    for (id, body) in &ids {
        let resp = stack.get(&app, &format!("/v1/records/{id}/content")).await;
        assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());
    }
    // New uploads use the new version.
    let out: Value = stack
        .upload(
            &app,
            PDF,
            &metadata(&patient, "prescription"),
            b"%PDF new".to_vec(),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = out["record"]["id"].as_str().unwrap().to_string();
    assert_eq!(stack.record_row(&tenant, &id).await.kek_version, 2);
    stack.stop().await;
}

#[tokio::test]
async fn kek_rotation_rewraps_embedded() {
    kek_rotation_rewraps(Backend::Embedded).await;
}

#[tokio::test]
async fn kek_rotation_rewraps_on_postgres_rabbitmq_s3() {
    kek_rotation_rewraps(Backend::Real).await;
}

/// A TCP forwarder the test can cut, in front of the S3 server.
async fn cuttable_proxy(target: &str) -> (String, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let target = target.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if !flag.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://{addr}"), up)
}

#[tokio::test]
async fn s3_outage_answers_503_and_a_retry_succeeds() {
    let (endpoint, up) = cuttable_proxy("127.0.0.1:3900").await;
    let stack = Stack::start_with(
        Backend::Real,
        Options {
            s3_endpoint: Some(endpoint),
            ..Options::default()
        },
    )
    .await;
    let token = stack.app_token(1, 0).await;
    let patient = stack.register_patient(&token, "320402198001015555").await;
    let body = body_with_marker("outage", 100_000);
    let before = counts(&stack).await;
    up.store(false, Ordering::SeqCst);
    problem(
        stack
            .upload(&token, PDF, &metadata(&patient, "imaging"), body.clone())
            .await,
        503,
        "storage_unavailable",
    )
    .await;
    assert_eq!(
        counts(&stack).await,
        before,
        "no metadata for an upload that failed"
    );
    let list: Value = stack
        .get(&token, &format!("/v1/patients/{patient}/records"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.store))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "readiness reports the storage outage");
    up.store(true, Ordering::SeqCst);
    let resp = stack
        .upload(&token, PDF, &metadata(&patient, "imaging"), body.clone())
        .await;
    assert_eq!(resp.status(), 201);
    let out: Value = resp.json().await.unwrap();
    let id = out["record"]["id"].as_str().unwrap();
    let resp = stack
        .get(&token, &format!("/v1/records/{id}/content"))
        .await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());
    stack.stop().await;
}

/// With `decisions = consent`, reads follow the consent service's answers (a stand-in
/// RPC server here), one batched call per list.
#[tokio::test]
async fn reads_follow_consent_decisions() {
    use caretrail_contracts::consent::{DecideIn, DecideOut, DecidedBy, Decision, Purpose};
    let stack = Stack::start_with(
        Backend::Embedded,
        Options {
            decisions: caretrail_object_store::DecisionSource::Consent,
            ..Options::default()
        },
    )
    .await;
    let hospital_id = stack.institution(0, 1)["id"].as_str().unwrap().to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let bus = caretrail_bus::connect(&caretrail_bus::BusSettings {
        bus_url: "inprocess".to_string().into(),
        bus_prefix: stack.prefix.clone(),
        bus_quorum_queues: false,
    })
    .await
    .unwrap();
    let grant_holder = hospital_id.clone();
    let _consent = bus
        .serve(
            caretrail_contracts::consent::SERVICE,
            caretrail_bus::rpc_fn(move |req| {
                seen.fetch_add(1, Ordering::SeqCst);
                let grant_holder = grant_holder.clone();
                async move {
                    let input: DecideIn = serde_json::from_value(req.body).unwrap();
                    let decisions = input
                        .resources
                        .iter()
                        .map(|r| {
                            let owner = input.subject.institution.as_ref() == Some(&r.owner);
                            let granted = input.subject.institution.as_ref().map(|i| i.as_str())
                                == Some(grant_holder.as_str())
                                && input.purpose == Purpose::Treatment
                                && r.category == "exam_report";
                            Decision {
                                permit: owner || granted,
                                reasons: vec!["stub".into()],
                                decided_by: DecidedBy {
                                    kind: if granted {
                                        "grant".into()
                                    } else {
                                        "policy".into()
                                    },
                                    id: "gnt_stub".into(),
                                },
                                obligations: vec![],
                            }
                        })
                        .collect();
                    Ok(serde_json::to_value(DecideOut { decisions }).unwrap())
                }
            }),
        )
        .await
        .unwrap();
    let app = stack.app_token(0, 0).await;
    let patient = stack.register_patient(&app, "320402198001014444").await;
    let mut ids = Vec::new();
    for category in ["exam_report", "exam_report", "mental_health"] {
        let out: Value = stack
            .upload(
                &app,
                PDF,
                &metadata(&patient, category),
                b"%PDF report".to_vec(),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(out["record"]["id"].as_str().unwrap().to_string());
    }
    let hospital = stack.app_token(0, 1).await;
    let before = calls.load(Ordering::SeqCst);
    let list: Value = stack
        .get(&hospital, &format!("/v1/patients/{patient}/records"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before + 1,
        "one batched decision for the list"
    );
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), ids[1].as_str()]);
    let resp = stack
        .get(&hospital, &format!("/v1/records/{}/content", ids[0]))
        .await;
    assert_eq!(resp.status(), 200);
    problem(
        stack
            .get(&hospital, &format!("/v1/records/{}/content", ids[2]))
            .await,
        404,
        "not_found",
    )
    .await;
    problem(
        stack
            .get(
                &hospital,
                &format!("/v1/records/{}/content?purpose=research", ids[0]),
            )
            .await,
        404,
        "not_found",
    )
    .await;
    problem(
        stack
            .get(&hospital, &format!("/v1/records/{}?purpose=gossip", ids[0]))
            .await,
        400,
        "invalid_request",
    )
    .await;
    stack.stop().await;
}

/// An institution that holds its own key signs its manifests; uploads without a valid
/// signature are refused and leave nothing behind.
#[tokio::test]
async fn byok_institutions_sign_their_manifests() {
    use caretrail_crypto::SigningKey;

    let stack = Stack::start(Backend::Embedded).await;
    let tenant = stack.tenant_id(0);
    let own = SigningKey::generate_for_suite(Suite::Gm).unwrap();
    let key_id = own.public_key().key_id().to_hex();
    let app = make_byok(&stack, 0, 0, &own).await;
    let patient = stack.register_patient(&app, "320402198001013333").await;
    let body = body_with_marker("byok", 5_000);
    let before = counts(&stack).await;
    problem(
        stack
            .upload(&app, PDF, &metadata(&patient, "exam_report"), body.clone())
            .await,
        422,
        "signature_required",
    )
    .await;

    let record = caretrail_contracts::RecordId::generate().to_string();
    let signed = |key: &SigningKey, key_id: &str| {
        byok_metadata(&stack, (0, 0), key, key_id, &patient, &record, &body)
    };
    // A signed upload without its salt cannot be checked: refused before anything is stored.
    let mut saltless = signed(&own, &key_id);
    saltless.as_object_mut().unwrap().remove("seal_salt");
    problem(
        stack.upload(&app, PDF, &saltless, body.clone()).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(counts(&stack).await, before);
    // Signed by another key under our key id: the ledger refuses, nothing remains.
    let stranger = SigningKey::generate_for_suite(Suite::Gm).unwrap();
    problem(
        stack
            .upload(&app, PDF, &signed(&stranger, &key_id), body.clone())
            .await,
        422,
        "invalid_signature",
    )
    .await;
    assert_eq!(counts(&stack).await, before);
    assert!(stack.stored_object(&tenant, &record).await.is_none());

    // A key the ledger never registered: refused at once, not retried forever.
    let unknown = signed(&stranger, &stranger.public_key().key_id().to_hex());
    problem(
        stack.upload(&app, PDF, &unknown, body.clone()).await,
        422,
        "invalid_signature",
    )
    .await;
    assert_eq!(counts(&stack).await, before);

    let resp = stack
        .upload(&app, PDF, &signed(&own, &key_id), body.clone())
        .await;
    assert_eq!(resp.status(), 201);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["record"]["id"], record.as_str());
    assert_receipt_verifies(&stack, &app, &out["receipt"]).await;
    // Reusing the record id is a conflict.
    problem(
        stack.upload(&app, PDF, &signed(&own, &key_id), body).await,
        409,
        "conflict",
    )
    .await;
    stack.stop().await;
}

/// Identity's custodial signing serves ledger submissions only, each signer its own kinds.
#[tokio::test]
async fn identity_signs_only_each_signers_own_kinds() {
    use base64::Engine as _;
    use caretrail_contracts::identity::{PLATFORM_SIGNER, SignResult, ToSign};
    let stack = Stack::start(Backend::Embedded).await;
    let bus = caretrail_bus::connect(&caretrail_bus::BusSettings {
        bus_url: "inprocess".to_string().into(),
        bus_prefix: stack.prefix.clone(),
        bus_quorum_queues: false,
    })
    .await
    .unwrap();
    let identity = caretrail_runtime::clients::IdentityClient::new(bus, Duration::from_secs(5));
    let tenant = stack.tenant_id(0);
    let benniu = stack.institution(0, 0)["id"].as_str().unwrap().to_string();
    let item = |signer: &str, kind: &str| ToSign {
        tenant: tenant.clone(),
        kind: kind.into(),
        signer: signer.into(),
        request_id: format!("t-{kind}-{signer}"),
        payload: base64::engine::general_purpose::STANDARD.encode(b"{}"),
    };
    let results = identity
        .sign(vec![
            item(&benniu, "record.anchored"),
            item(PLATFORM_SIGNER, "record.accessed"),
            item(PLATFORM_SIGNER, "record.anchored"),
            item(&benniu, "record.accessed"),
            item(PLATFORM_SIGNER, "institution.key_registered"),
            item(&benniu, "institution.key_revoked"),
            item("ins_00000000000000000000000000000000", "record.anchored"),
        ])
        .await
        .unwrap();
    let codes: Vec<String> = results
        .iter()
        .map(|r| match r {
            SignResult::Signed(s) => {
                assert_eq!(s.tenant, tenant);
                "signed".to_string()
            }
            SignResult::Error { code, .. } => code.clone(),
        })
        .collect();
    assert_eq!(
        codes,
        [
            "signed",
            "signed",
            "forbidden_kind",
            "forbidden_kind",
            "forbidden_kind",
            "forbidden_kind",
            "unknown_signer"
        ]
    );
    stack.stop().await;
}

/// Turns institution (t, i) into a BYOK institution holding `key`; returns its app's token
/// once the key is on the ledger.
async fn make_byok(
    stack: &Stack,
    t: usize,
    i: usize,
    key: &caretrail_crypto::SigningKey,
) -> String {
    let tenant = stack.tenant_id(t);
    let institution = stack.institution(t, i)["id"].as_str().unwrap().to_string();
    let key_id = key.public_key().key_id().to_hex();
    let challenge = caretrail_identity::model::byok_challenge(&tenant, &institution, &key_id);
    // Tenant 0's tenant admin; tenant 1 has no people: the platform operator sets up its
    // first administrator (all it may do there), who registers the key.
    let admin = if t == 0 {
        stack.user_token("admin.bureau").await
    } else {
        tenant_admin_of(stack, t, i).await
    };
    let resp = stack
        .http
        .post(format!(
            "{}/v1/institutions/{institution}/keys",
            stack.identity
        ))
        .bearer_auth(&admin)
        .json(&json!({
            "public_key_pem": key.public_key().to_spki_pem(),
            "proof": key.sign(challenge.as_bytes()).unwrap().to_base64(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let app = stack.app_token(t, i).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !stack.ledger_keys(&app).await.to_string().contains(&key_id) {
        assert!(
            std::time::Instant::now() < deadline,
            "the BYOK key never reached the ledger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app
}

/// The metadata of a BYOK upload of `body` as record `record` of institution (t, i): the
/// manifest as a partner builds it from the documented format (docs/ARCHITECTURE.md, "What an
/// entry carries") — ids and hashes in clear, the health fields sealed under a salt of the
/// client's choosing — signed with `key` under `key_id`.
fn byok_metadata(
    stack: &Stack,
    (t, i): (usize, usize),
    key: &caretrail_crypto::SigningKey,
    key_id: &str,
    patient: &str,
    record: &str,
    body: &[u8],
) -> Value {
    use base64::Engine as _;
    use caretrail_ledger_proofs::{Submission, canonical_json};
    let suite = key.public_key().algorithm().suite();
    let institution = stack.institution(t, i)["id"].as_str().unwrap().to_string();
    let salt = [0x33_u8; 32];
    let meta = metadata(patient, "exam_report");
    let sealed_fields = canonical_json(&json!({
        "category": "exam_report",
        "media_type": PDF,
        "size": body.len(),
        "encounter_date": meta["encounter_date"],
        "fhir_resource_type": meta["fhir_resource_type"],
        "title_hash": caretrail_crypto::hash(suite, meta["title"].as_str().unwrap().as_bytes()).to_hex(),
    }))
    .unwrap();
    let seal = caretrail_crypto::hash(
        suite,
        &[b"caretrail/sealed/v1\n".as_slice(), &salt, &sealed_fields].concat(),
    );
    let manifest = canonical_json(&json!({
        "v": 2,
        "record": record,
        "patient": patient,
        "institution": institution,
        "content_hash": caretrail_crypto::hash(suite, body).to_hex(),
        "hash_algorithm": match suite { Suite::Gm => "sm3", Suite::Intl => "sha256" },
        "sealed": seal.to_hex(),
    }))
    .unwrap();
    let submission = Submission {
        tenant: stack.tenant_id(t),
        kind: "record.anchored".into(),
        submitter: institution,
        request_id: record.to_string(),
        key_id: key_id.to_string(),
        payload: manifest,
    };
    let mut m = meta;
    m["record_id"] = record.into();
    m["key_id"] = key_id.into();
    m["signature"] = base64::engine::general_purpose::STANDARD
        .encode(submission.sign(key).unwrap())
        .into();
    m["seal_salt"] = hex::encode(salt).into();
    m
}

/// A tenant administrator of tenant `t` (at institution `i`), set up by the operator.
async fn tenant_admin_of(stack: &Stack, t: usize, i: usize) -> String {
    let tenant = stack.tenant_id(t);
    let institution = stack.institution(t, i)["id"].as_str().unwrap().to_string();
    let password = "a long enough first-admin password";
    let resp = stack
        .http
        .post(format!("{}/v1/tenants/{tenant}/users", stack.identity))
        .bearer_auth(stack.operator_token().await)
        .json(&json!({
            "institution_id": institution, "username": "first.admin",
            "display_name": "First Admin", "roles": ["tenant_admin"], "password": password,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    stack.login(t, "first.admin", password).await
}

/// A BYOK upload of `body` as record `record` of institution (t, i), signed with `key`.
async fn byok_upload(
    stack: &Stack,
    at: (usize, usize),
    app: &str,
    key: &caretrail_crypto::SigningKey,
    patient: &str,
    record: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let key_id = key.public_key().key_id().to_hex();
    let m = byok_metadata(stack, at, key, &key_id, patient, record, &body);
    stack.upload(app, PDF, &m, body).await
}

/// Record ids are a tenant's own: a BYOK institution choosing an id another tenant uses gets
/// its record (no 409 telling it the id exists elsewhere); reusing one of its own tenant's is
/// still a conflict.
#[tokio::test]
async fn byok_record_ids_are_per_tenant() {
    let stack = Stack::start(Backend::Embedded).await;
    let gm = caretrail_crypto::SigningKey::generate_for_suite(Suite::Gm).unwrap();
    let intl = caretrail_crypto::SigningKey::generate_for_suite(Suite::Intl).unwrap();
    let benniu = make_byok(&stack, 0, 0, &gm).await;
    let hutang = make_byok(&stack, 1, 0, &intl).await;
    let p0 = stack.register_patient(&benniu, "320402198001014444").await;
    let p1 = stack.register_patient(&hutang, "320412198001015555").await;
    let record = caretrail_contracts::RecordId::generate().to_string();
    let resp = byok_upload(
        &stack,
        (0, 0),
        &benniu,
        &gm,
        &p0,
        &record,
        b"tianning".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = byok_upload(
        &stack,
        (1, 0),
        &hutang,
        &intl,
        &p1,
        &record,
        b"wujin".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    // Each tenant reads its own record under the shared id.
    for (app, want) in [(&benniu, "tianning"), (&hutang, "wujin")] {
        let resp = stack
            .get(app, &format!("/v1/records/{record}/content"))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), want.as_bytes());
    }
    problem(
        byok_upload(
            &stack,
            (0, 0),
            &benniu,
            &gm,
            &p0,
            &record,
            b"again".to_vec(),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    stack.stop().await;
}
