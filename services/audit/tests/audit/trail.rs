//! A record's trail — anchoring, refusal, grant, access, revocation, refusal — in ledger
//! order, each event with a proof that verifies offline; the event search and its filters
//! and pages; the access summary; idempotent indexing; tenant isolation.

use std::time::{Duration, Instant};

use caretrail_ledger_proofs::{ProofBundle, TrustAnchors, VerifierKey, verify_bundle};
use caretrail_runtime::testing::Backend;
use caretrail_test_stack::{Options, Stack, metadata, validate_fhir};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

async fn get(stack: &Stack, token: &str, path: &str) -> (u16, Value) {
    stack.get_json(stack.audit_url(), token, path).await
}

async fn consent(stack: &Stack, token: &str, path: &str, body: Value) -> Value {
    let resp = stack
        .http
        .post(format!("{}{path}", stack.consent_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn read(stack: &Stack, token: &str, record: &str) -> u16 {
    stack
        .get(
            token,
            &format!("/v1/records/{record}/content?purpose=referral"),
        )
        .await
        .status()
        .as_u16()
}

async fn trail_with_proofs(backend: Backend) {
    let stack = Stack::start_with(
        backend,
        Options {
            consent: true,
            audit: true,
            ..Options::default()
        },
    )
    .await;
    let app = stack.app_token(0, 0).await;
    let dr_zhang = stack.user_token("dr.zhang").await;
    let dr_li = stack.user_token("dr.li").await;
    let auditor = stack.user_token("auditor.chen").await;
    let other_tenant = stack.app_token(1, 0).await;
    let patient = stack.register_patient(&app, "320402198001011234").await;
    let uploaded: Value = stack
        .upload(
            &app,
            "application/pdf",
            &metadata(&patient, "exam_report"),
            b"%PDF exam".to_vec(),
        )
        .await
        .json()
        .await
        .unwrap();
    let record = uploaded["record"]["id"].as_str().unwrap().to_string();
    let hospital = stack.institution(0, 1)["id"].as_str().unwrap().to_string();

    assert_eq!(read(&stack, &dr_li, &record).await, 404);
    let grant = consent(
        &stack,
        &dr_zhang,
        "/v1/grants",
        json!({
            "patient": patient, "recipient_institution": hospital, "purpose": "referral",
            "scope": {"categories": ["exam_report"]},
            "valid_until": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
            "evidence": {"kind": "patient_app_approval", "reference": "approval-1"},
        }),
    )
    .await;
    let gid = grant["id"].as_str().unwrap().to_string();
    assert_eq!(read(&stack, &dr_li, &record).await, 200);
    consent(
        &stack,
        &dr_zhang,
        &format!("/v1/grants/{gid}/revoke"),
        json!({"reason": "withdrawn"}),
    )
    .await;
    assert_eq!(read(&stack, &dr_li, &record).await, 404);

    let want = [
        "record.anchored",
        "record.access_denied",
        "consent.granted",
        "record.accessed",
        "consent.revoked",
        "record.access_denied",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let trail = loop {
        let (status, trail) = get(
            &stack,
            &auditor,
            &format!("/v1/audit/records/{record}/trail"),
        )
        .await;
        if status == 200 && trail["events"].as_array().map(Vec::len) == Some(want.len()) {
            break trail;
        }
        assert!(
            Instant::now() < deadline,
            "trail incomplete: {status} {trail}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let events = trail["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, want, "{trail}");
    assert_eq!(trail["patient"], patient.as_str());
    // Who, for whom, on what authority.
    assert_eq!(events[2]["grant"], gid.as_str());
    assert_eq!(events[2]["recipient_institution"], hospital.as_str());
    assert_eq!(events[2]["scope"]["categories"], json!(["exam_report"]));
    assert_eq!(events[3]["actor"]["institution"], hospital.as_str());
    assert_eq!(events[3]["decided_by"]["id"], gid.as_str());
    assert_eq!(events[3]["purpose"], "referral");
    assert_eq!(events[5]["permit"], false);

    // Every event's proof verifies offline against the ledger's key, and names its entry.
    let keys = stack.ledger_keys(&app).await;
    let anchors = TrustAnchors {
        ledger_keys: vec![VerifierKey::parse(keys["ledger_key"].as_str().unwrap()).unwrap()],
        ..TrustAnchors::default()
    };
    let mut last = 0;
    for e in events {
        let bundle: ProofBundle = serde_json::from_value(e["proof"].clone()).unwrap();
        verify_bundle(&bundle, &anchors).unwrap_or_else(|f| panic!("{}: {f:?}", e["kind"]));
        let entry = caretrail_ledger_proofs::Entry::decode(&bundle.entry).unwrap();
        assert_eq!(entry.index as i64, e["ledger_index"].as_i64().unwrap());
        assert_eq!(entry.kind, e["kind"].as_str().unwrap());
        assert!(entry.index > last || last == 0, "ledger order");
        last = entry.index;
        let mut forged = bundle.clone();
        let at = forged.entry.len() / 2;
        forged.entry[at] ^= 1;
        assert!(
            verify_bundle(&forged, &anchors).is_err(),
            "a changed entry must not verify"
        );
    }

    // The FHIR export validates against the R4 models; a broken one would not.
    let (status, fhir) = get(
        &stack,
        &auditor,
        &format!("/v1/audit/records/{record}/trail/fhir"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(fhir["resourceType"], "Bundle");
    let resources: Vec<&str> = fhir["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        resources.iter().filter(|r| **r == "AuditEvent").count(),
        want.len()
    );
    // Every entry here is signed (manifests and grants by institutions, accesses by the
    // platform), so each has its Provenance with the signature.
    assert_eq!(
        resources.iter().filter(|r| **r == "Provenance").count(),
        want.len(),
        "{fhir}"
    );
    validate_fhir(&fhir).unwrap_or_else(|report| panic!("{report}"));
    let mut broken = fhir.clone();
    broken["entry"][0]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("recorded");
    assert!(
        validate_fhir(&broken).is_err(),
        "the validator must catch a missing AuditEvent.recorded"
    );
    // CSV for spreadsheets.
    let resp = stack
        .http
        .get(format!(
            "{}/v1/audit/events?patient={patient}&format=csv",
            stack.audit_url()
        ))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + want.len(), "{csv}");
    assert!(lines[0].starts_with("id,at,kind,record"));
    assert!(lines.iter().any(|l| l.contains(",consent.granted,")));

    // The search: filters, pages, proofs on request.
    let (_, all) = get(
        &stack,
        &auditor,
        &format!("/v1/audit/events?patient={patient}&limit=200"),
    )
    .await;
    let all_ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(all_ids.len(), want.len(), "{all}");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/audit/events?patient={patient}&limit=2{cursor}");
        let (status, page) = get(&stack, &auditor, &path).await;
        assert_eq!(status, 200);
        for e in page["items"].as_array().unwrap() {
            paged.push(e["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        paged, all_ids,
        "pages add up to the whole, in order, without repeats"
    );
    let (_, denied) = get(
        &stack,
        &auditor,
        "/v1/audit/events?kind=record.access_denied",
    )
    .await;
    assert_eq!(denied["items"].as_array().unwrap().len(), 2);
    let (_, consent_events) = get(
        &stack,
        &auditor,
        "/v1/audit/events?kind=consent.*&proofs=true",
    )
    .await;
    assert_eq!(consent_events["items"].as_array().unwrap().len(), 2);
    // proofs=true attaches a bundle to every item (its entry travels base64-encoded).
    for item in consent_events["items"].as_array().unwrap() {
        assert!(item["proof"]["entry"].is_string(), "{item}");
    }
    let (_, by_hospital) = get(
        &stack,
        &auditor,
        &format!("/v1/audit/events?institution={hospital}"),
    )
    .await;
    // Its key registered on the ledger (the oldest), the seed's changes of who acts for it
    // (its app, its two physicians, dr.wu disabled), and its five dealings with the record.
    let kinds: Vec<&str> = by_hospital["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 10, "{by_hospital}");
    assert_eq!(kinds[0], "institution.key_registered", "{by_hospital}");
    let mut seeded = kinds[1..5].to_vec();
    seeded.sort_unstable();
    assert_eq!(
        seeded,
        [
            "app.created",
            "user.created",
            "user.created",
            "user.disabled"
        ],
        "{by_hospital}"
    );
    assert!(
        kinds[5..]
            .iter()
            .all(|k| k.starts_with("record.") || k.starts_with("consent.")),
        "{by_hospital}"
    );
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (_, none) = get(
        &stack,
        &auditor,
        &format!("/v1/audit/events?from={}", future.replace('+', "%2B")),
    )
    .await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        get(&stack, &auditor, "/v1/audit/events?kind=DROP%20TABLE")
            .await
            .0,
        400
    );

    // The access summary.
    let (_, summary) = get(&stack, &auditor, "/v1/audit/reports/access-summary").await;
    assert_eq!(summary["grants_created"], 1, "{summary}");
    assert_eq!(summary["grants_revoked"], 1);
    assert_eq!(summary["refusals_total"], 2);
    assert_eq!(summary["records_anchored"], 1);
    let hospital_exam = summary["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["institution"] == hospital.as_str() && a["category"] == "exam_report")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            hospital_exam["accesses"].as_u64(),
            hospital_exam["refusals"].as_u64()
        ),
        (Some(1), Some(2))
    );

    // Only auditors and tenant admins; and nothing of this tenant for another.
    assert_eq!(
        get(&stack, &dr_li, &format!("/v1/audit/records/{record}/trail"))
            .await
            .0,
        403
    );
    for suffix in ["", "/fhir", "/bundle"] {
        assert_eq!(
            get(
                &stack,
                &other_tenant,
                &format!("/v1/audit/records/{record}/trail{suffix}")
            )
            .await
            .0,
            404,
            "trail{suffix}"
        );
    }
    // Its own institution's key registration and app only; nothing of the first tenant.
    let (status, theirs) = get(&stack, &other_tenant, "/v1/audit/events").await;
    assert_eq!(status, 200);
    let own = stack.institution(1, 0)["id"].clone();
    assert!(
        theirs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(
                |e| (e["kind"] == "institution.key_registered" || e["kind"] == "app.created")
                    && e["owner_institution"] == own
            ),
        "{theirs}"
    );
    let (_, their_summary) = get(&stack, &other_tenant, "/v1/audit/reports/access-summary").await;
    assert_eq!(their_summary["records_anchored"], 0);

    // A redelivered event changes nothing.
    let db = &stack.audit_state.as_ref().unwrap().db;
    let tenant = stack.tenant_id(0);
    let count = || async {
        // Under the tenant's row-level security context, as the service reads.
        let txn = caretrail_db::begin_tenant(db, &tenant).await.unwrap();
        let n = caretrail_audit::entities::audit_event::Entity::find()
            .count(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        n
    };
    let before = count().await;
    let bus = stack.bus().await;
    let event = caretrail_bus::Event::new(
        stack.tenant_id(0),
        "object-store",
        "record.accessed",
        1,
        &json!({"record": record, "patient": patient, "ledger_index": 1, "leaf_hash": "00"}),
    )
    .unwrap();
    bus.publish(&event).await.unwrap();
    bus.publish(&event).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = count().await;
        if n == before + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} rows, expected {}",
            before + 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count().await,
        before + 1,
        "the duplicate delivery was absorbed"
    );

    // The trail is in the order things happened, not the ledger's: a read decided before a
    // refusal but anchored after it is listed first.
    let synthetic = "rec_0000000000000000000000000000beef";
    let base = chrono::Utc::now() - chrono::Duration::seconds(60);
    for (kind, ms, index) in [
        ("record.anchored", 0, 1000),
        ("record.access_denied", 200, 1001),
        ("record.accessed", 100, 1002),
    ] {
        let mut event = caretrail_bus::Event::new(
            stack.tenant_id(0),
            "object-store",
            kind,
            1,
            &json!({"record": synthetic, "patient": patient, "ledger_index": index, "leaf_hash": "00"}),
        )
        .unwrap();
        event.occurred_at = base + chrono::Duration::milliseconds(ms);
        bus.publish(&event).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let order = loop {
        let (status, trail) = get(
            &stack,
            &auditor,
            &format!("/v1/audit/records/{synthetic}/trail?proofs=false"),
        )
        .await;
        let events = trail["events"].as_array().cloned().unwrap_or_default();
        if status == 200 && events.len() == 3 {
            break events
                .iter()
                .map(|e| {
                    (
                        e["kind"].as_str().unwrap().to_string(),
                        e["ledger_index"].as_i64().unwrap(),
                    )
                })
                .collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "{status} {trail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        order,
        [
            ("record.anchored".to_string(), 1000),
            ("record.accessed".to_string(), 1002),
            ("record.access_denied".to_string(), 1001)
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn trail_with_proofs_embedded() {
    trail_with_proofs(Backend::Embedded).await;
}

#[tokio::test]
async fn trail_with_proofs_real() {
    trail_with_proofs(Backend::Real).await;
}
