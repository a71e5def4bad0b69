//! What consent hides stays hidden from every angle a partner app can try: the decision API,
//! a refused read, list pages, a range request, an erased record, a grant's validation — and
//! the holes found by reading the code (issue #25), each reproduced here.

use caretrail_consent::api::decisions::NOT_PERMITTED;
use caretrail_runtime::testing::Backend;
use caretrail_test_stack::metadata;
use serde_json::{Value, json};

use crate::flows::Pilot;

/// A well-formed record id no tenant has.
const NO_SUCH_RECORD: &str = "rec_0000000000000000000000000000dead";

impl Pilot {
    async fn upload_as_benniu(&self, category: &str, bytes: &[u8]) -> String {
        let resp = self
            .stack
            .upload(
                &self.benniu_app,
                "application/pdf",
                &metadata(&self.patient, category),
                bytes.to_vec(),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        body["record"]["id"].as_str().unwrap().to_string()
    }

    /// `GET` on the object store: the status and the JSON body.
    async fn record_get(&self, token: &str, path: &str) -> (u16, Value) {
        self.stack.get_json(&self.stack.store, token, path).await
    }
}

/// The claims of an access token (read, not verified).
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A problem body without its request id (the only part that differs between two requests).
fn sans_request_id(mut problem: Value) -> Value {
    if let Some(o) = problem.as_object_mut() {
        o.remove("request_id");
    }
    problem
}

/// The decision API answers about the caller, in one voice for "refused" and "no such
/// record"; auditors (and the owner) hear the reasons.
async fn decisions_are_no_oracle(backend: Backend) {
    let p = Pilot::start(backend).await;
    let psych = p.upload_as_benniu("mental_health", b"psych notes").await;

    // The hospital, with no grant, asks about an exam report, an L4 record and a record that
    // does not exist: three identical answers, none naming a level.
    let (status, decided) = p
        .post(
            &p.dr_li,
            "/v1/decisions",
            json!({"action": "read_metadata", "records": [p.exam, psych, NO_SUCH_RECORD]}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let answers: Vec<Value> = decided["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.as_object_mut().unwrap().remove("record");
            d
        })
        .collect();
    assert_eq!(answers[0], answers[1], "{decided}");
    assert_eq!(answers[0], answers[2], "{decided}");
    assert_eq!(answers[0]["permit"], false);
    assert_eq!(answers[0]["reasons"], json!([NOT_PERMITTED]));
    assert!(!decided.to_string().contains("L4"), "{decided}");

    // The owner hears why; an auditor asking about the hospital's physician hears
    // everything, including which record does not exist.
    let (_, own) = p
        .post(
            &p.benniu_app,
            "/v1/decisions",
            json!({"action": "read_metadata", "records": [psych]}),
        )
        .await;
    assert_eq!(own["decisions"][0]["permit"], true, "{own}");
    let subject = json!({
        "id": claims(&p.dr_li)["sub"],
        "institution": p.hospital,
        "roles": ["physician"],
    });
    let (status, audited) = p
        .post(
            &p.auditor,
            "/v1/decisions",
            json!({"subject": subject, "action": "read_metadata", "records": [psych, NO_SUCH_RECORD]}),
        )
        .await;
    assert_eq!(status, 200, "{audited}");
    assert_ne!(audited["decisions"][0]["reasons"], json!([NOT_PERMITTED]));
    assert_eq!(
        audited["decisions"][1]["reasons"],
        json!(["no such record"])
    );
    // Asking about someone else is auditing: not for tenant admins or physicians.
    for token in [&p.admin, &p.dr_li] {
        let (status, body) = p
            .post(
                token,
                "/v1/decisions",
                json!({"subject": subject, "action": "read_metadata", "records": [psych]}),
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }

    p.stack.stop().await;
}

#[tokio::test]
async fn decisions_are_no_oracle_embedded() {
    decisions_are_no_oracle(Backend::Embedded).await;
}

#[tokio::test]
async fn decisions_are_no_oracle_real() {
    decisions_are_no_oracle(Backend::Real).await;
}

/// A refused read, a refused erasure and a read of an erased record tell a non-owner what a
/// record that does not exist would; the refusals are still on the trail.
async fn refusals_look_like_missing_records(backend: Backend) {
    let p = Pilot::start(backend).await;
    let psych = p.upload_as_benniu("mental_health", b"psych notes").await;
    // A refused read is a 404 exactly like a record that does not exist — and it is still
    // on the trail as a refusal.
    let (status, refused) = p
        .record_get(&p.dr_li, &format!("/v1/records/{psych}"))
        .await;
    let (_, missing) = p
        .record_get(&p.dr_li, &format!("/v1/records/{NO_SUCH_RECORD}"))
        .await;
    assert_eq!(status, 404, "{refused}");
    assert_eq!(sans_request_id(refused), sans_request_id(missing.clone()));
    for path in [
        format!("/v1/records/{psych}/content"),
        format!("/v1/records/{psych}/receipt"),
    ] {
        let (status, body) = p.record_get(&p.dr_li, &path).await;
        assert_eq!(
            (status, sans_request_id(body)),
            (404, sans_request_id(missing.clone())),
            "{path}"
        );
    }
    let kinds = p.stack.anchored_kinds(&psych, 4).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "record.access_denied")
            .count(),
        3,
        "{kinds:?}"
    );
    // A record that does not exist costs the same: its refusal is on the trail too (so the
    // ledger grows alike), and neither refusal is readable by the refused institution.
    let unknown = p.stack.anchored_kinds(NO_SUCH_RECORD, 1).await;
    assert_eq!(unknown, vec!["record.access_denied"]);
    let size = |token: String| {
        let stack = &p.stack;
        async move {
            let (_, cp) = stack
                .get_json(&stack.ledger, &token, "/v1/ledger/checkpoint")
                .await;
            cp["tree_size"].as_u64().unwrap()
        }
    };
    let before = size(p.dr_li.clone()).await;
    let (status, _) = p
        .record_get(&p.dr_li, &format!("/v1/records/{psych}"))
        .await;
    assert_eq!(status, 404);
    p.stack.anchored_kinds(&psych, 5).await;
    let after_hidden = size(p.dr_li.clone()).await;
    let (status, _) = p
        .record_get(&p.dr_li, &format!("/v1/records/{NO_SUCH_RECORD}"))
        .await;
    assert_eq!(status, 404);
    p.stack.anchored_kinds(NO_SUCH_RECORD, 2).await;
    let after_unknown = size(p.dr_li.clone()).await;
    assert_eq!(
        after_hidden - before,
        after_unknown - after_hidden,
        "both grow by one"
    );
    let (_, seen) = p
        .stack
        .get_json(&p.stack.ledger, &p.dr_li, "/v1/ledger/entries")
        .await;
    assert!(
        !seen["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "record.access_denied"),
        "the refused institution reads none of its refusals: {seen}"
    );
    let (_, audited) = p
        .stack
        .get_json(&p.stack.ledger, &p.auditor, "/v1/ledger/entries")
        .await;
    let refusals = audited["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "record.access_denied")
        .count();
    assert_eq!(refusals, 6, "the auditor reads every refusal: {audited}");
    // The owner is told it was refused (an app of the owner without the scope would be);
    // the owner reads.
    let (status, _) = p
        .record_get(&p.benniu_app, &format!("/v1/records/{psych}"))
        .await;
    assert_eq!(status, 200);

    // Erasure: the owner's admin erases; only those who may read the record learn it was
    // erased, and another institution's admin cannot tell it exists.
    let benniu_admin = p.stack.user_token("admin.benniu").await;
    let bureau_admin = p.admin.clone();
    let erase = |token: String, id: String| {
        let http = p.stack.http.clone();
        let url = format!("{}/v1/records/{id}", p.stack.store);
        async move {
            let resp = http
                .delete(url)
                .bearer_auth(token)
                .json(&json!({"reason": "duplicate upload"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = erase(bureau_admin, psych.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = erase(benniu_admin, psych.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .record_get(&p.dr_li, &format!("/v1/records/{psych}"))
        .await;
    assert_eq!(
        (status, sans_request_id(body)),
        (404, sans_request_id(missing))
    );
    let (status, _) = p
        .record_get(&p.benniu_app, &format!("/v1/records/{psych}"))
        .await;
    assert_eq!(status, 410);
    p.stack.stop().await;
}

#[tokio::test]
async fn refusals_look_like_missing_records_embedded() {
    refusals_look_like_missing_records(Backend::Embedded).await;
}

#[tokio::test]
async fn refusals_look_like_missing_records_real() {
    refusals_look_like_missing_records(Backend::Real).await;
}

/// `limit=1` pages of a patient's records walk exactly the records the caller may see; no
/// cursor is the id of a hidden record, and no `next_cursor` says hidden records follow.
async fn list_pages_are_cut_from_what_the_caller_sees(backend: Backend) {
    let p = Pilot::start(backend).await;
    // Records in creation order: exam (granted), lab (hidden), then hidden, granted, hidden.
    let hidden_1 = p.upload_as_benniu("mental_health", b"h1").await;
    let exam_2 = p.upload_as_benniu("exam_report", b"e2").await;
    let hidden_2 = p.upload_as_benniu("lab_result", b"h2").await;
    let (status, grant) = p.post(&p.dr_zhang, "/v1/grants", p.grant_body()).await;
    assert_eq!(status, 201, "{grant}");

    let hidden = [p.lab.clone(), hidden_1, hidden_2];
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            None => format!(
                "/v1/patients/{}/records?limit=1&purpose=referral",
                p.patient
            ),
            Some(c) => format!(
                "/v1/patients/{}/records?limit=1&purpose=referral&cursor={c}",
                p.patient
            ),
        };
        let (status, page) = p.record_get(&p.dr_li, &path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "every page but none is full: {page}");
        seen.push(items[0]["id"].as_str().unwrap().to_string());
        match page["next_cursor"].as_str() {
            None => break,
            Some(c) => {
                assert!(!hidden.iter().any(|h| h == c), "cursor {c} is hidden");
                assert_eq!(c, seen.last().unwrap().as_str());
                cursor = Some(c.to_string());
            }
        }
    }
    assert_eq!(seen, vec![p.exam.clone(), exam_2], "{seen:?}");
    // The owner still sees all five, in pages of two.
    let (_, page) = p
        .record_get(
            &p.benniu_app,
            &format!("/v1/patients/{}/records?limit=2", p.patient),
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string());
    p.stack.stop().await;
}

#[tokio::test]
async fn list_pages_are_cut_from_what_the_caller_sees_embedded() {
    list_pages_are_cut_from_what_the_caller_sees(Backend::Embedded).await;
}

#[tokio::test]
async fn list_pages_are_cut_from_what_the_caller_sees_real() {
    list_pages_are_cut_from_what_the_caller_sees(Backend::Real).await;
}

/// Who may declare an emergency is the tenant's policy — on PostgreSQL too, where a policy
/// read outside the tenant's transaction sees no row and falls back to the default policy.
async fn break_glass_follows_the_tenants_policy(backend: Backend) {
    let p = Pilot::start(backend).await;
    // The bureau lets institution admins declare emergencies, and no longer physicians.
    let (_, current) = p.get(&p.admin, "/v1/policy").await;
    let mut policy = current["policy"].clone();
    policy["break_glass"]["roles"] = json!(["institution_admin"]);
    assert_eq!(current["version"], 0);
    let (status, changed) = p
        .send_put(
            &p.admin,
            json!({"policy": policy, "reason": "emergencies go through the duty admin"}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    let declaration = json!({
        "patient": p.patient,
        "justification": "unconscious patient in the emergency department, no history",
    });
    let (status, body) = p.post(&p.dr_li, "/v1/break-glass", declaration).await;
    assert_eq!(status, 403, "the tenant's policy, not the default: {body}");
    p.stack.stop().await;
}

#[tokio::test]
async fn break_glass_follows_the_tenants_policy_embedded() {
    break_glass_follows_the_tenants_policy(Backend::Embedded).await;
}

#[tokio::test]
async fn break_glass_follows_the_tenants_policy_real() {
    break_glass_follows_the_tenants_policy(Backend::Real).await;
}

/// Break-glass opens emergency care and treatment, not research or insurance.
#[tokio::test]
async fn break_glass_is_for_emergencies_only() {
    let p = Pilot::start(Backend::Embedded).await;
    let declaration = json!({
        "patient": p.patient,
        "justification": "unconscious patient in the emergency department, no history",
    });
    let (status, body) = p.post(&p.dr_li, "/v1/break-glass", declaration).await;
    assert_eq!(status, 201, "{body}");
    for (purpose, want) in [
        ("emergency", 200),
        ("treatment", 200),
        ("research", 404),
        ("insurance", 404),
    ] {
        let (status, body) = p
            .record_get(
                &p.dr_li,
                &format!("/v1/records/{}?purpose={purpose}", p.exam),
            )
            .await;
        assert_eq!(status, want, "{purpose}: {body}");
    }
    // Every one of those reads is on the trail — the two the emergency permitted (metadata
    // only, no content) as much as the two it refused.
    let kinds = p.stack.anchored_kinds(&p.exam, 5).await;
    assert_eq!(
        kinds,
        [
            "record.anchored",
            "record.accessed",
            "record.accessed",
            "record.access_denied",
            "record.access_denied"
        ]
    );
    p.stack.stop().await;
}

/// Declining a referral ends its grant, always, in the transaction that declines it.
async fn declining_a_referral_ends_its_grant(backend: Backend) {
    let p = Pilot::start(backend).await;
    let referral = json!({
        "patient": p.patient,
        "to_institution": p.hospital,
        "reason": "high 10-year ASCVD risk; cardiology review",
        "urgency": "routine",
        "grant": {
            "scope": {"categories": ["lab_result"]},
            "valid_until": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
            "evidence": {"kind": "patient_signature", "reference": "form-9"},
        },
    });
    let (status, created) = p.post(&p.dr_zhang, "/v1/referrals", referral).await;
    assert_eq!(status, 201, "{created}");
    let rid = created["id"].as_str().unwrap().to_string();
    let gid = created["grant"]["id"].as_str().unwrap().to_string();
    assert_eq!(p.read(&p.dr_li, &p.lab).await, 200);
    let (status, body) = p
        .post(
            &p.dr_li,
            &format!("/v1/referrals/{rid}/decline"),
            json!({"end_grant": false}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (_, unchanged) = p.get(&p.dr_zhang, &format!("/v1/referrals/{rid}")).await;
    assert_eq!(
        unchanged["status"], "requested",
        "a refusal changes nothing"
    );
    let (status, declined) = p
        .post(&p.dr_li, &format!("/v1/referrals/{rid}/decline"), json!({}))
        .await;
    assert_eq!(status, 200, "{declined}");
    assert_eq!(declined["status"], "declined");
    let (_, grant) = p.get(&p.dr_zhang, &format!("/v1/grants/{gid}")).await;
    assert_eq!(grant["status"], "revoked", "{grant}");
    assert_eq!(p.read(&p.dr_li, &p.lab).await, 404);
    p.stack.stop().await;
}

#[tokio::test]
async fn declining_a_referral_ends_its_grant_embedded() {
    declining_a_referral_ends_its_grant(Backend::Embedded).await;
}

#[tokio::test]
async fn declining_a_referral_ends_its_grant_real() {
    declining_a_referral_ends_its_grant(Backend::Real).await;
}

/// A range beyond the end of a record costs a grant limited to one access nothing.
#[tokio::test]
async fn a_range_beyond_the_end_uses_no_access() {
    let p = Pilot::start(Backend::Embedded).await;
    // One access: a range past the end is answered 416 without using it up.
    let mut body = p.grant_body();
    body["max_accesses"] = json!(1);
    let (status, grant) = p.post(&p.dr_zhang, "/v1/grants", body).await;
    assert_eq!(status, 201, "{grant}");
    let url = format!(
        "{}/v1/records/{}/content?purpose=referral",
        p.stack.store, p.exam
    );
    let resp = p
        .stack
        .http
        .get(&url)
        .bearer_auth(&p.dr_li)
        .header("range", "bytes=1000000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    let gid = grant["id"].as_str().unwrap();
    let (_, g) = p.get(&p.dr_zhang, &format!("/v1/grants/{gid}")).await;
    assert_eq!(g["accesses_used"], 0, "{g}");
    assert_eq!(p.read(&p.dr_li, &p.exam).await, 200);
    assert_eq!(
        p.read(&p.dr_li, &p.exam).await,
        404,
        "the one access is used"
    );
    // Someone without a grant learns nothing from a range request either.
    let resp = p
        .stack
        .http
        .get(format!("{}/v1/records/{}/content", p.stack.store, p.lab))
        .bearer_auth(&p.dr_li)
        .header("range", "bytes=1000000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    p.stack.stop().await;
}

/// A grant's validation says nothing of other institutions' records and lists a bounded
/// number of problems; nothing refused is stored.
#[tokio::test]
async fn grant_validation_is_no_oracle_and_bounded() {
    let p = Pilot::start(Backend::Embedded).await;
    // Records that do not exist, are another patient's or another institution's all get one
    // answer.
    let other_patient = p
        .stack
        .register_patient(&p.benniu_app, "320402199001015678")
        .await;
    let theirs = {
        let resp = p
            .stack
            .upload(
                &p.benniu_app,
                "application/pdf",
                &metadata(&other_patient, "lab_result"),
                b"other".to_vec(),
            )
            .await;
        let body: Value = resp.json().await.unwrap();
        body["record"]["id"].as_str().unwrap().to_string()
    };
    let hospital_record = {
        let patient = &p.patient;
        let resp = p
            .stack
            .upload(
                &p.dr_li,
                "application/pdf",
                &metadata(patient, "imaging"),
                b"ct".to_vec(),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        body["record"]["id"].as_str().unwrap().to_string()
    };
    let mut body = p.grant_body();
    body["scope"] = json!({"records": [NO_SUCH_RECORD, theirs, hospital_record]});
    let (status, problem) = p.post(&p.dr_zhang, "/v1/grants", body).await;
    assert_eq!(status, 400, "{problem}");
    let messages: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 3, "{problem}");
    assert!(messages.iter().all(|m| *m == messages[0]), "{problem}");

    // A flood of bad items is one bounded answer.
    let mut body = p.grant_body();
    let junk: Vec<String> = (0..5000).map(|i| format!("junk-{i}")).collect();
    body["scope"] = json!({"categories": junk});
    let (status, problem) = p.post(&p.dr_zhang, "/v1/grants", body).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["errors"].as_array().unwrap().len() <= 21,
        "{problem}"
    );
    let (grants, _) = p.counts().await;
    assert_eq!(grants, 0, "refused grants are not stored");
    p.stack.stop().await;
}

/// Every string value of a JSON document.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(fields) => fields.values().for_each(|f| strings(f, out)),
        _ => {}
    }
}

/// The ledger is evidence, not a second copy: after uploads, grants, reads, refusals, a
/// referral, break-glass and a revocation, no entry states a category, an encounter date, a
/// purpose, an urgency or any hash of free text — only ids, times and a seal — and the audit
/// trail still shows them, with openings that match the seals.
#[tokio::test]
async fn ledger_entries_carry_no_health_information() {
    let p = Pilot::start_with_audit(Backend::Embedded).await;
    let psych = p.upload_as_benniu("mental_health", b"psych notes").await;
    let (status, grant) = p.post(&p.dr_zhang, "/v1/grants", p.grant_body()).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(p.read(&p.dr_li, &p.exam).await, 200);
    assert_eq!(p.read(&p.dr_li, &psych).await, 404);
    let (status, referral) = p
        .post(
            &p.dr_zhang,
            "/v1/referrals",
            json!({
                "patient": p.patient, "to_institution": p.hospital,
                "reason": "suspected unstable angina", "urgency": "urgent",
            }),
        )
        .await;
    assert_eq!(status, 201, "{referral}");
    let (status, bg) = p
        .post(
            &p.dr_li,
            "/v1/break-glass",
            json!({"patient": p.patient, "justification": "unconscious in the ED, history needed"}),
        )
        .await;
    assert_eq!(status, 201, "{bg}");
    if let Some(index) = bg["receipt"]["ledger_index"].as_u64() {
        assert_eq!(
            bg["ledger_index"], index,
            "the declaration shows its own entry: {bg}"
        );
    }
    let gid = grant["id"].as_str().unwrap();
    let (status, _) = p
        .post(
            &p.dr_zhang,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "patient moved away"}),
        )
        .await;
    assert_eq!(status, 200);
    p.stack.anchored_kinds(&psych, 2).await;

    // Anchoring is asynchronous (the referral's, the seed's access changes): wait until
    // every kind this test made is on the ledger.
    let wanted = [
        "record.anchored",
        "consent.granted",
        "record.accessed",
        "record.access_denied",
        "referral.created",
        "break_glass.declared",
        "consent.revoked",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let (status, page) = p
            .stack
            .get_json(&p.stack.ledger, &p.auditor, "/v1/ledger/entries")
            .await;
        assert_eq!(status, 200, "{page}");
        let all_there = wanted.iter().all(|w| {
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == *w)
        });
        if all_there || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let entries = page["entries"].as_array().unwrap();
    let mut kinds = Vec::new();
    for e in entries {
        let kind = e["kind"].as_str().unwrap();
        kinds.push(kind.to_string());
        if kind.starts_with("institution.key") || kind == "policy.changed" {
            continue;
        }
        let payload = &e["payload_json"];
        // Changes of who may act (users, apps) hold ids and roles only: nothing to seal, and
        // nothing of anyone's health either (checked below).
        if caretrail_contracts::identity::AccessChange::from_name(kind).is_none() {
            assert_eq!(payload["v"], 2, "{kind}: {payload}");
            assert!(payload["sealed"].is_string(), "{kind}: {payload}");
        }
        let mut values = Vec::new();
        strings(payload, &mut values);
        for forbidden in [
            "mental_health",
            "exam_report",
            "lab_result",
            "2026-11-01",
            "referral",
            "treatment",
            "emergency",
            "urgent",
            "application/pdf",
            "read_content",
        ] {
            assert!(
                !values.iter().any(|v| v == forbidden),
                "{kind} states {forbidden}: {payload}"
            );
        }
        for hashed in [
            "title_hash",
            "reason_hash",
            "justification_hash",
            "evidence_hash",
        ] {
            assert!(payload.get(hashed).is_none(), "{kind}: {payload}");
        }
    }
    for kind in wanted {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }

    // The regulator's trail still shows the category and the purposes, with openings.
    let audit = p.stack.audit_url().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let trail = loop {
        let (status, trail) = p
            .stack
            .get_json(
                &audit,
                &p.auditor,
                &format!("/v1/audit/records/{}/trail", p.exam),
            )
            .await;
        if status == 200
            && trail["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["kind"] == "consent.revoked"))
        {
            break trail;
        }
        assert!(std::time::Instant::now() < deadline, "{trail}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let events = trail["events"].as_array().unwrap();
    let anchored = events
        .iter()
        .find(|e| e["kind"] == "record.anchored")
        .unwrap();
    assert_eq!(anchored["category"], "exam_report");
    assert_eq!(anchored["opening"]["fields"]["category"], "exam_report");
    let read = events
        .iter()
        .find(|e| e["kind"] == "record.accessed")
        .unwrap();
    assert_eq!(read["purpose"], "referral");
    assert_eq!(read["opening"]["fields"]["purpose"], "referral");
    let granted = events
        .iter()
        .find(|e| e["kind"] == "consent.granted")
        .unwrap();
    assert_eq!(granted["scope"]["categories"], json!(["exam_report"]));
    assert_eq!(
        granted["opening"]["fields"]["categories"],
        json!(["exam_report"])
    );
    p.stack.stop().await;
}
