//! The consent service end to end with identity, the ledger and the object store: grants
//! decide reads, revocations take effect before they are acknowledged (and on another
//! replica within a second), referrals and break-glass, the policy API, tenant isolation
//! and refusals that change nothing.

use std::time::{Duration, Instant};

use caretrail_runtime::testing::Backend;
use caretrail_test_stack::{Options, Stack, metadata, validate_fhir};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

pub(crate) struct Pilot {
    pub(crate) stack: Stack,
    /// Benniu's partner app (uploads, registers patients).
    pub(crate) benniu_app: String,
    pub(crate) dr_zhang: String,
    pub(crate) dr_li: String,
    pub(crate) auditor: String,
    pub(crate) admin: String,
    /// The second tenant's app.
    pub(crate) other_tenant: String,
    pub(crate) patient: String,
    pub(crate) hospital: String,
    pub(crate) exam: String,
    pub(crate) exam_bytes: Vec<u8>,
    pub(crate) lab: String,
}

pub(crate) async fn send(
    stack: &Stack,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = stack.http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Pilot {
    pub(crate) async fn start(backend: Backend) -> Self {
        Self::start_stack(backend, false).await
    }

    /// With the audit service too.
    pub(crate) async fn start_with_audit(backend: Backend) -> Self {
        Self::start_stack(backend, true).await
    }

    async fn start_stack(backend: Backend, audit: bool) -> Self {
        let stack = Stack::start_with(
            backend,
            Options {
                consent: true,
                audit,
                ..Options::default()
            },
        )
        .await;
        let benniu_app = stack.app_token(0, 0).await;
        let patient = stack
            .register_patient(&benniu_app, "320402198001011234")
            .await;
        let exam_bytes = b"%PDF-1.7 exam report: BP 162/98, LDL 4.9".to_vec();
        let mut ids = Vec::new();
        for (category, bytes) in [
            ("exam_report", exam_bytes.clone()),
            ("lab_result", b"lab".to_vec()),
        ] {
            let resp = stack
                .upload(
                    &benniu_app,
                    "application/pdf",
                    &metadata(&patient, category),
                    bytes,
                )
                .await;
            assert_eq!(resp.status(), 201);
            let body: Value = resp.json().await.unwrap();
            ids.push(body["record"]["id"].as_str().unwrap().to_string());
        }
        let hospital = stack.institution(0, 1)["id"].as_str().unwrap().to_string();
        Self {
            dr_zhang: stack.user_token("dr.zhang").await,
            dr_li: stack.user_token("dr.li").await,
            auditor: stack.user_token("auditor.chen").await,
            admin: stack.user_token("admin.bureau").await,
            other_tenant: stack.app_token(1, 0).await,
            benniu_app,
            patient,
            hospital,
            exam: ids[0].clone(),
            exam_bytes,
            lab: ids[1].clone(),
            stack,
        }
    }

    pub(crate) fn consent(&self, path: &str) -> String {
        format!("{}{path}", self.stack.consent_url())
    }

    pub(crate) async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        send(
            &self.stack,
            reqwest::Method::POST,
            self.consent(path),
            token,
            Some(body),
        )
        .await
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        send(
            &self.stack,
            reqwest::Method::GET,
            self.consent(path),
            token,
            None,
        )
        .await
    }

    pub(crate) fn grant_body(&self) -> Value {
        json!({
            "patient": self.patient,
            "recipient_institution": self.hospital,
            "purpose": "referral",
            "scope": {"categories": ["exam_report"]},
            "valid_until": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
            "evidence": {"kind": "patient_app_approval", "reference": "approval-0042"},
        })
    }

    /// Status of the specialist's content read of `record`.
    pub(crate) async fn read(&self, token: &str, record: &str) -> u16 {
        self.stack
            .get(
                token,
                &format!("/v1/records/{record}/content?purpose=referral"),
            )
            .await
            .status()
            .as_u16()
    }

    pub(crate) async fn counts(&self) -> (u64, u64) {
        let db = &self.stack.consent_state.as_ref().unwrap().db;
        let txn = caretrail_db::begin_tenant(db, &self.stack.tenant_id(0))
            .await
            .unwrap();
        let grants = caretrail_consent::entities::grant::Entity::find()
            .count(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        let anchors = caretrail_consent::entities::anchor::Entity::find()
            .count(db)
            .await
            .unwrap();
        (grants, anchors)
    }
}

async fn grant_read_revoke(backend: Backend) {
    let p = Pilot::start(backend).await;
    // Before any grant: the owner reads; the specialist is refused, and told only what a
    // record that does not exist would get.
    assert_eq!(p.read(&p.benniu_app, &p.exam).await, 200);
    assert_eq!(p.read(&p.dr_li, &p.exam).await, 404);

    let (status, grant) = p.post(&p.dr_zhang, "/v1/grants", p.grant_body()).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["status"], "active");
    assert!(
        grant["receipt"]["ledger_index"].as_u64().is_some(),
        "{grant}"
    );
    assert!(
        grant["receipt"]["checkpoint"]
            .as_str()
            .unwrap()
            .contains('\n')
    );
    let gid = grant["id"].as_str().unwrap().to_string();

    // The specialist sees exactly the granted record: same bytes; the lab result stays shut.
    let resp = p
        .stack
        .get(
            &p.dr_li,
            &format!("/v1/records/{}/content?purpose=referral", p.exam),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), p.exam_bytes);
    assert_eq!(p.read(&p.dr_li, &p.lab).await, 404);
    let list: Value = p
        .stack
        .get(
            &p.dr_li,
            &format!("/v1/patients/{}/records?purpose=referral", p.patient),
        )
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![p.exam.as_str()], "{list}");

    // The decision API says the same, naming the grant.
    let (status, decided) = p
        .post(
            &p.dr_li,
            "/v1/decisions",
            json!({"action": "read_content", "purpose": "referral", "records": [p.exam, p.lab]}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["decisions"][0]["permit"], true);
    assert_eq!(decided["decisions"][0]["decided_by"]["id"], gid.as_str());
    assert_eq!(decided["decisions"][1]["permit"], false);

    // Who sees the grant: both institutions and the auditor; the other tenant nothing.
    assert_eq!(p.get(&p.dr_li, &format!("/v1/grants/{gid}")).await.0, 200);
    assert_eq!(p.get(&p.auditor, &format!("/v1/grants/{gid}")).await.0, 200);
    assert_eq!(
        p.get(&p.other_tenant, &format!("/v1/grants/{gid}")).await.0,
        404
    );
    let (_, other_list) = p.get(&p.other_tenant, "/v1/grants").await;
    assert_eq!(
        other_list["items"].as_array().map(Vec::len),
        Some(0),
        "{other_list}"
    );
    let (status, _) = p
        .post(
            &p.other_tenant,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = p
        .post(
            &p.dr_li,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 403, "the recipient cannot revoke");
    let (_, search) = p
        .get(
            &p.auditor,
            &format!("/v1/grants?patient={}&status=active", p.patient),
        )
        .await;
    assert_eq!(search["items"].as_array().unwrap().len(), 1, "{search}");

    // The FHIR rendering.
    let (status, fhir) = p.get(&p.dr_zhang, &format!("/v1/grants/{gid}/fhir")).await;
    assert_eq!(status, 200);
    assert_eq!(fhir["resourceType"], "Consent");
    assert_eq!(fhir["status"], "active");
    assert_eq!(fhir["provision"]["type"], "permit");
    assert_eq!(fhir["patient"]["identifier"]["value"], p.patient.as_str());
    validate_fhir(&fhir).unwrap_or_else(|report| panic!("{report}"));

    // Revocation: refused from the moment it is acknowledged.
    let (status, revoked) = p
        .post(
            &p.benniu_app,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "patient withdrew consent in the app"}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(p.read(&p.dr_li, &p.exam).await, 404);
    let (status, again) = p
        .post(
            &p.dr_zhang,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!((status, again["status"].as_str()), (200, Some("revoked")));
    let (_, fhir) = p.get(&p.dr_zhang, &format!("/v1/grants/{gid}/fhir")).await;
    assert_eq!(fhir["status"], "inactive");
    // Both statements are on the ledger, once each.
    let db = &p.stack.consent_state.as_ref().unwrap().db;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        let rows = caretrail_consent::entities::anchor::Entity::find()
            .filter(caretrail_consent::entities::anchor::Column::SubjectId.eq(gid.as_str()))
            .order_by_asc(caretrail_consent::entities::anchor::Column::Id)
            .all(db)
            .await
            .unwrap();
        let kinds: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.kind.as_str(), r.status.as_str()))
            .collect();
        if kinds == [("consent.granted", "done"), ("consent.revoked", "done")] {
            break;
        }
        assert!(Instant::now() < deadline, "{kinds:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.stack.stop().await;
}

#[tokio::test]
async fn grant_read_revoke_embedded() {
    grant_read_revoke(Backend::Embedded).await;
}

#[tokio::test]
async fn grant_read_revoke_real() {
    grant_read_revoke(Backend::Real).await;
}

async fn bad_input_changes_nothing(backend: Backend) {
    let p = Pilot::start(backend).await;
    let other_tenant_patient = p
        .stack
        .register_patient(&p.other_tenant, "320402199002021111")
        .await;
    let other_record: Value = p
        .stack
        .upload(
            &p.other_tenant,
            "application/pdf",
            &metadata(&other_tenant_patient, "exam_report"),
            b"wujin".to_vec(),
        )
        .await
        .json()
        .await
        .unwrap();
    let other_record = other_record["record"]["id"].as_str().unwrap().to_string();
    let before = p.counts().await;
    let base = p.grant_body();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = base.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no evidence",
            with(&|b| {
                b.as_object_mut().unwrap().remove("evidence");
            }),
            "",
        ),
        (
            "empty evidence",
            with(&|b| b["evidence"]["reference"] = json!("  ")),
            "evidence.reference",
        ),
        (
            "end before start",
            with(&|b| {
                b["valid_from"] =
                    json!((chrono::Utc::now() + chrono::Duration::days(10)).to_rfc3339());
                b["valid_until"] =
                    json!((chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339());
            }),
            "valid_until",
        ),
        (
            "unknown patient",
            with(&|b| b["patient"] = json!("pat_00000000000000000000000000000000")),
            "patient",
        ),
        (
            "unknown institution",
            with(&|b| b["recipient_institution"] = json!("ins_00000000000000000000000000000000")),
            "recipient_institution",
        ),
        (
            "another tenant's record",
            with(&|b| b["scope"] = json!({"records": [other_record]})),
            "scope.records[0]",
        ),
        (
            "unknown category",
            with(&|b| b["scope"] = json!({"categories": ["gossip"]})),
            "scope.categories[0]",
        ),
        ("empty scope", with(&|b| b["scope"] = json!({})), "scope"),
        (
            "bad purpose",
            with(&|b| b["purpose"] = json!("public_health")),
            "purpose",
        ),
        (
            "to itself",
            with(&|b| b["recipient_institution"] = p.stack.institution(0, 0)["id"].clone()),
            "recipient_institution",
        ),
    ];
    for (name, body, field) in cases {
        let (status, problem) = p.post(&p.dr_zhang, "/v1/grants", body).await;
        assert_eq!(status, 400, "{name}: {problem}");
        if !field.is_empty() {
            assert_eq!(problem["code"], "invalid_request", "{name}");
            assert!(
                problem["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["field"] == field),
                "{name}: {problem}"
            );
        }
    }
    // Not a physician / no grants:write.
    assert_eq!(p.post(&p.auditor, "/v1/grants", base.clone()).await.0, 403);
    let hospital_app = p.stack.app_token(0, 1).await;
    assert_eq!(
        p.post(&hospital_app, "/v1/grants", base.clone()).await.0,
        403
    );
    assert_eq!(
        p.counts().await,
        before,
        "nothing stored, nothing queued for the ledger"
    );
    p.stack.stop().await;
}

#[tokio::test]
async fn bad_input_changes_nothing_embedded() {
    bad_input_changes_nothing(Backend::Embedded).await;
}

#[tokio::test]
async fn bad_input_changes_nothing_real() {
    bad_input_changes_nothing(Backend::Real).await;
}

/// Decisions race a revocation: none that starts after the revocation is acknowledged
/// may permit.
async fn revocation_races_reads(backend: Backend) {
    let p = Pilot::start(backend).await;
    let (status, grant) = p.post(&p.dr_zhang, "/v1/grants", p.grant_body()).await;
    assert_eq!(status, 201, "{grant}");
    let gid = grant["id"].as_str().unwrap().to_string();
    let url = p.consent("/v1/decisions");
    let body = json!({"action": "read_content", "purpose": "referral", "records": [p.exam]});
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (http, url, body, token) = (
            p.stack.http.clone(),
            url.clone(),
            body.clone(),
            p.dr_li.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                let started = Instant::now();
                let d: Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                seen.push((started, d["decisions"][0]["permit"] == true));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = p
        .post(
            &p.dr_zhang,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "withdrawn"}),
        )
        .await;
    let acknowledged = Instant::now();
    assert_eq!(status, 200);
    let mut before = 0;
    for reader in readers {
        for (started, permit) in reader.await.unwrap() {
            if started > acknowledged {
                assert!(
                    !permit,
                    "a decision started after the revocation was acknowledged permitted"
                );
            } else if permit {
                before += 1;
            }
        }
    }
    assert!(before > 0, "the readers never saw the grant in force");
    p.stack.stop().await;
}

#[tokio::test]
async fn revocation_races_reads_embedded() {
    revocation_races_reads(Backend::Embedded).await;
}

#[tokio::test]
async fn revocation_races_reads_real() {
    revocation_races_reads(Backend::Real).await;
}

/// Two replicas on one database and bus: a revocation taken by one is enforced by the other
/// within a second.
async fn second_replica_follows(backend: Backend) {
    let p = Pilot::start(backend).await;
    let (replica, stop, task) = p.stack.consent_replica().await;
    let (status, grant) = p.post(&p.dr_zhang, "/v1/grants", p.grant_body()).await;
    assert_eq!(status, 201);
    let gid = grant["id"].as_str().unwrap().to_string();
    let decide = || async {
        let d: Value = p
            .stack
            .http
            .post(format!("{replica}/v1/decisions"))
            .bearer_auth(&p.dr_li)
            .json(&json!({"action": "read_content", "purpose": "referral", "records": [p.exam]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        d["decisions"][0]["permit"] == true
    };
    // The replica learns of the new grant too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !decide().await {
        assert!(Instant::now() < deadline, "the replica never saw the grant");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = p
        .post(
            &p.dr_zhang,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "withdrawn"}),
        )
        .await;
    assert_eq!(status, 200);
    let acknowledged = Instant::now();
    while decide().await {
        assert!(
            acknowledged.elapsed() < Duration::from_secs(1),
            "the other replica still permits a second after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    p.stack.stop().await;
}

#[tokio::test]
async fn second_replica_follows_embedded() {
    second_replica_follows(Backend::Embedded).await;
}

#[tokio::test]
async fn second_replica_follows_real() {
    second_replica_follows(Backend::Real).await;
}

#[tokio::test]
async fn access_limits_referrals_break_glass_and_policy() {
    let p = Pilot::start(Backend::Embedded).await;
    // A grant for two reads.
    let mut body = p.grant_body();
    body["max_accesses"] = json!(2);
    let (status, grant) = p.post(&p.dr_zhang, "/v1/grants", body).await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(p.read(&p.dr_li, &p.exam).await, 200);
    assert_eq!(p.read(&p.dr_li, &p.exam).await, 200);
    assert_eq!(
        p.read(&p.dr_li, &p.exam).await,
        404,
        "the third read exceeds the limit"
    );
    let (_, g) = p
        .get(
            &p.dr_zhang,
            &format!("/v1/grants/{}", grant["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(g["accesses_used"], 2);

    // A referral carrying a grant for lab results; accept, then complete ending the grant.
    let (status, referral) = p
        .post(
            &p.dr_zhang,
            "/v1/referrals",
            json!({
                "patient": p.patient,
                "to_institution": p.hospital,
                "reason": "high 10-year ASCVD risk; cardiology review",
                "urgency": "urgent",
                "grant": {
                    "scope": {"categories": ["lab_result"]},
                    "valid_until": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
                    "evidence": {"kind": "patient_signature", "reference": "form-7"},
                },
            }),
        )
        .await;
    assert_eq!(status, 201, "{referral}");
    let rid = referral["id"].as_str().unwrap().to_string();
    assert_eq!(referral["status"], "requested");
    assert_eq!(referral["grant"]["purpose"], "referral");
    assert_eq!(p.read(&p.dr_li, &p.lab).await, 200);
    assert_eq!(
        p.post(
            &p.dr_zhang,
            &format!("/v1/referrals/{rid}/accept"),
            json!({})
        )
        .await
        .0,
        403,
        "the referring side cannot accept"
    );
    let (status, accepted) = p
        .post(&p.dr_li, &format!("/v1/referrals/{rid}/accept"), json!({}))
        .await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (200, Some("accepted")),
        "{accepted}"
    );
    let (_, incoming) = p.get(&p.dr_li, "/v1/referrals?direction=incoming").await;
    assert_eq!(incoming["items"].as_array().unwrap().len(), 1);
    let (status, done) = p
        .post(
            &p.dr_li,
            &format!("/v1/referrals/{rid}/complete"),
            json!({"end_grant": true, "note": "seen in clinic"}),
        )
        .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    assert_eq!(done["grant"]["status"], "revoked");
    assert_eq!(p.read(&p.dr_li, &p.lab).await, 404);
    assert_eq!(
        p.post(
            &p.dr_zhang,
            &format!("/v1/referrals/{rid}/cancel"),
            json!({})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        p.get(&p.other_tenant, &format!("/v1/referrals/{rid}"))
            .await
            .0,
        404
    );

    // Break-glass: justified, time-boxed, the declarant only, not the most sensitive.
    let psych: Value = p
        .stack
        .upload(
            &p.benniu_app,
            "application/pdf",
            &metadata(&p.patient, "mental_health"),
            b"psych".to_vec(),
        )
        .await
        .json()
        .await
        .unwrap();
    let psych = psych["record"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        p.post(
            &p.dr_li,
            "/v1/break-glass",
            json!({"patient": p.patient, "justification": "short"})
        )
        .await
        .0,
        400
    );
    let (status, bg) = p
        .post(
            &p.dr_li,
            "/v1/break-glass",
            json!({"patient": p.patient, "justification": "unconscious in the ED, suspected stroke, history needed"}),
        )
        .await;
    assert_eq!(status, 201, "{bg}");
    let emergency_read = |record: String| {
        let (stack, token) = (&p.stack, p.dr_li.clone());
        async move {
            let path = format!("/v1/records/{record}/content?purpose=emergency");
            stack.get(&token, &path).await.status().as_u16()
        }
    };
    assert_eq!(emergency_read(p.lab.clone()).await, 200);
    assert_eq!(emergency_read(psych.clone()).await, 404);
    let (_, queue) = p.get(&p.auditor, "/v1/break-glass").await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 1, "{queue}");

    // Policy: only tenant admins change it; invalid documents are refused whole.
    let (status, current) = p.get(&p.dr_li, "/v1/policy").await;
    assert_eq!((status, current["version"].as_i64()), (200, Some(0)));
    let mut policy = current["policy"].clone();
    assert_eq!(
        p.send_put(&p.dr_zhang, json!({"policy": policy, "reason": "x"}))
            .await
            .0,
        403
    );
    policy["rules"][0]["actions"] = json!([]);
    let (status, problem) = p
        .send_put(&p.admin, json!({"policy": policy, "reason": "x"}))
        .await;
    assert_eq!(status, 400, "{problem}");
    // Regulators may no longer read exam-report content: raise exam reports to L3.
    let mut policy = current["policy"].clone();
    policy["sensitivity"]["exam_report"] = json!("L3");
    assert_eq!(p.audit_read().await, 200);
    let (status, changed) = p
        .send_put(
            &p.admin,
            json!({"policy": policy, "reason": "exam reports hold cardiovascular risk scores"}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["version"], 1);
    assert!(
        changed["receipt"]["ledger_index"].as_u64().is_some(),
        "{changed}"
    );
    assert_eq!(p.audit_read().await, 404);
    let (_, versions) = p.get(&p.auditor, "/v1/policy/versions").await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);

    // The other tenant, on every consent endpoint: nothing of this tenant exists for it.
    let o = &p.other_tenant;
    let gid = grant["id"].as_str().unwrap();
    for path in [
        format!("/v1/grants/{gid}"),
        format!("/v1/grants/{gid}/fhir"),
        format!("/v1/referrals/{rid}"),
    ] {
        assert_eq!(p.get(o, &path).await.0, 404, "{path}");
    }
    for path in [
        format!("/v1/grants/{gid}/revoke"),
        format!("/v1/referrals/{rid}/accept"),
        format!("/v1/referrals/{rid}/decline"),
        format!("/v1/referrals/{rid}/complete"),
        format!("/v1/referrals/{rid}/cancel"),
    ] {
        assert_eq!(
            p.post(o, &path, json!({"reason": "x"})).await.0,
            404,
            "{path}"
        );
    }
    for path in ["/v1/grants", "/v1/referrals", "/v1/break-glass"] {
        let (status, list) = p.get(o, path).await;
        assert_eq!(status, 200, "{path}: {list}");
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(0),
            "{path}: {list}"
        );
    }
    let (_, theirs) = p.get(o, "/v1/policy").await;
    assert_eq!(theirs["version"], 0, "policy versions are per tenant");
    let (status, decided) = p
        .post(
            o,
            "/v1/decisions",
            json!({"action": "read_metadata", "records": [p.exam]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(decided["decisions"][0]["permit"], false);
    // Hutang's app holds audit:read, so it hears "no such record": in its own tenant there
    // is none.
    assert_eq!(decided["decisions"][0]["reasons"][0], "no such record");
    p.stack.stop().await;
}

impl Pilot {
    async fn audit_read(&self) -> u16 {
        let url = format!("/v1/records/{}/content?purpose=audit", self.exam);
        self.stack.get(&self.auditor, &url).await.status().as_u16()
    }

    pub(crate) async fn send_put(&self, token: &str, body: Value) -> (u16, Value) {
        send(
            &self.stack,
            reqwest::Method::PUT,
            self.consent("/v1/policy"),
            token,
            Some(body),
        )
        .await
    }
}
