//! `caretrail demo`: the pilot's story through the gateway's public API only, against a
//! running server (`make run`), printed as a narrative with ✓/✗ per verification. The same
//! code is the product's acceptance test (`services/caretrail/tests/cli.rs`).
//!
//! 1. The town health centre's app registers a patient and uploads an exam report (and a lab
//!    result); the receipt verifies offline.
//! 2. Its physician refers the patient to the tertiary hospital with a grant for exam
//!    reports, 30 days.
//! 3. The hospital's specialist lists the patient's records (exactly the granted one),
//!    downloads the report (same bytes); the lab result is refused.
//! 4. The grant is revoked; the specialist's next read is refused within a second.
//! 5. The bureau's auditor fetches the record's trail: anchoring, grant, access, revocation,
//!    refusal, in the order they happened, each proof verifying offline; downloads it as one proof file
//!    (`caretrail verify trail`); sees the bureau's witness cosignature on the ledger's
//!    checkpoint; the FHIR R4 export.
//! 6. The second tenant's credentials see none of it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use caretrail_ledger_proofs::{
    Checkpoint, ProofBundle, Suite, TrustAnchors, VerifierKey, verify_bundle,
};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The demo credentials `make run` wrote.
    #[arg(long, default_value = "data/dev-credentials.json")]
    pub credentials: PathBuf,
}

struct Story {
    http: reqwest::Client,
    base: String,
    creds: Value,
    passed: usize,
    failed: usize,
}

impl Story {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
            println!("   ✓ {what}");
        } else {
            self.failed += 1;
            println!("   ✗ {what}");
        }
    }

    fn step(&self, n: u32, text: &str) {
        println!("\n{n}. {text}");
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn get(&self, path: &str, token: &str) -> Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    fn institution(&self, t: usize, i: usize) -> &Value {
        &self.creds["tenants"][t]["institutions"][i]
    }

    async fn app_token(&self, t: usize, i: usize) -> Result<String> {
        let app = &self.institution(t, i)["app"];
        let resp: Value = self
            .http
            .post(format!("{}/v1/oauth/token", self.base))
            .basic_auth(
                app["client_id"].as_str().unwrap_or_default(),
                app["client_secret"].as_str(),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?
            .json()
            .await?;
        resp["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no token for the app: {resp}"))
    }

    async fn user_token(&self, username: &str) -> Result<String> {
        let tenant = &self.creds["tenants"][0];
        let user = tenant["institutions"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["users"].as_array().into_iter().flatten())
            .find(|u| u["username"] == username)
            .ok_or_else(|| anyhow!("no demo user {username}"))?;
        let resp: Value = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"tenant_id": tenant["id"], "username": username, "password": user["password"]}))
            .send()
            .await?
            .json()
            .await?;
        resp["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{username} could not log in: {resp}"))
    }

    async fn upload(
        &self,
        token: &str,
        patient: &str,
        category: &str,
        body: &[u8],
    ) -> Result<(u16, Value)> {
        let metadata = json!({
            "patient": patient, "category": category, "title": "2026 annual physical examination",
            "encounter_date": "2026-11-01", "fhir_resource_type": "DiagnosticReport",
        });
        let resp = self
            .http
            .post(format!("{}/v1/records", self.base))
            .bearer_auth(token)
            .header("content-type", "application/pdf")
            .header("caretrail-metadata", metadata.to_string())
            .body(body.to_vec())
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn anchors(&self, token: &str) -> Result<TrustAnchors> {
        let (_, keys) = self.get("/v1/ledger/keys", token).await?;
        let key = keys["ledger_key"]
            .as_str()
            .ok_or_else(|| anyhow!("the ledger published no checkpoint key: {keys}"))?;
        Ok(TrustAnchors {
            ledger_keys: vec![VerifierKey::parse(key)?],
            ..TrustAnchors::default()
        })
    }
}

impl Story {
    /// Waits for the built-in witness's cosignature (it checks every few seconds) and
    /// verifies it offline with the regulator's key as registered on the ledger; the
    /// cosigned tree size, once it is at least `min_size`.
    async fn witnessed(
        &self,
        token: &str,
        anchors: &TrustAnchors,
        min_size: u64,
    ) -> Result<Option<u64>> {
        let (_, keys) = self.get("/v1/ledger/keys", token).await?;
        let regulator = self.institution(0, 2)["id"].as_str().unwrap_or_default();
        let witness_keys: Vec<VerifierKey> = keys["institution_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|k| k["institution"] == regulator && k["revoked_index"].is_null())
            .filter_map(|k| {
                let public =
                    caretrail_crypto::VerifyingKey::from_spki_pem(k["public_key_pem"].as_str()?)
                        .ok()?;
                VerifierKey::cosigner(regulator, public).ok()
            })
            .collect();
        let suite = if keys["suite"] == "gm" {
            Suite::Gm
        } else {
            Suite::Intl
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let (status, cp) = self.get("/v1/ledger/cosigned-checkpoint", token).await?;
            if status == 200
                && let Some(note) = cp["checkpoint"].as_str()
                && let Ok(opened) =
                    Checkpoint::open(note.as_bytes(), suite, &anchors.ledger_keys, &witness_keys)
                && !opened.cosignatures.is_empty()
                && opened.checkpoint.size() >= min_size
            {
                return Ok(Some(opened.checkpoint.size()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(None)
    }
}

fn verifies(bundle: &Value, anchors: &TrustAnchors) -> bool {
    serde_json::from_value::<ProofBundle>(bundle.clone())
        .ok()
        .is_some_and(|b| verify_bundle(&b, anchors).is_ok())
}

/// Runs the story; `Err` for failures to run it at all, otherwise the checks' verdict.
pub async fn run(args: &DemoArgs) -> Result<bool> {
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(&args.credentials).with_context(|| {
            format!(
                "reading {} (run `make run` first)",
                args.credentials.display()
            )
        })?,
    )?;
    let mut s = Story {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: args.url.trim_end_matches('/').to_string(),
        creds,
        passed: 0,
        failed: 0,
    };
    let started = Instant::now();
    let benniu = s.institution(0, 0)["name"]
        .as_str()
        .unwrap_or("the health centre")
        .to_string();
    let hospital_name = s.institution(0, 1)["name"]
        .as_str()
        .unwrap_or("the hospital")
        .to_string();
    let hospital = s.institution(0, 1)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("Caretrail pilot story against {}", s.base);

    s.step(
        1,
        &format!("{benniu} registers a patient and uploads an exam report"),
    );
    let app = s.app_token(0, 0).await?;
    let card = format!(
        "3204021980{:08}",
        started.elapsed().subsec_nanos() % 100_000_000
    );
    let (_, patient) = s
        .post("/v1/patients", &app, json!({"identifier": card}))
        .await?;
    let patient = patient["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no patient id: {patient}"))?
        .to_string();
    println!("   patient {patient} (pseudonymous: the card number is never stored)");
    let report =
        format!("%PDF-1.7 exam report {patient}: BP 162/98 mmHg, LDL-C 4.9 mmol/L").into_bytes();
    let (status, exam) = s.upload(&app, &patient, "exam_report", &report).await?;
    s.check(
        status == 201,
        &format!("exam report stored encrypted and anchored (HTTP {status})"),
    );
    let exam_id = exam["record"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let anchors = s.anchors(&app).await?;
    s.check(
        verifies(&exam["receipt"]["bundle"], &anchors),
        &format!(
            "receipt verifies offline: ledger entry #{} in a signed checkpoint",
            exam["receipt"]["ledger_index"]
        ),
    );
    let (_, lab) = s
        .upload(&app, &patient, "lab_result", b"%PDF lab panel")
        .await?;
    let lab_id = lab["record"]["id"].as_str().unwrap_or_default().to_string();

    s.step(
        2,
        &format!(
            "Dr Zhang refers the patient to {hospital_name}, granting exam reports for 30 days"
        ),
    );
    let dr_zhang = s.user_token("dr.zhang").await?;
    let (status, referral) = s
        .post(
            "/v1/referrals",
            &dr_zhang,
            json!({
                "patient": patient, "to_institution": hospital,
                "reason": "high 10-year cardiovascular risk; cardiology review", "urgency": "urgent",
                "grant": {
                    "scope": {"categories": ["exam_report"]},
                    "valid_until": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
                    "evidence": {"kind": "patient_app_approval", "reference": format!("approval-{patient}")},
                },
            }),
        )
        .await?;
    s.check(
        status == 201,
        &format!("referral created with its grant signed and anchored (HTTP {status})"),
    );
    let grant_id = referral["grant"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    s.step(
        3,
        "The specialist at the hospital reads what was granted, and only that",
    );
    let dr_li = s.user_token("dr.li").await?;
    let (_, listed) = s
        .get(
            &format!("/v1/patients/{patient}/records?purpose=referral"),
            &dr_li,
        )
        .await?;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    s.check(
        ids == [exam_id.as_str()],
        &format!(
            "the list shows exactly the granted record ({} of 2)",
            ids.len()
        ),
    );
    let resp = s
        .http
        .get(format!(
            "{}/v1/records/{exam_id}/content?purpose=referral",
            s.base
        ))
        .bearer_auth(&dr_li)
        .send()
        .await?;
    let ok = resp.status().as_u16() == 200;
    let bytes = resp.bytes().await?;
    s.check(
        ok && bytes.as_ref() == report.as_slice(),
        "the downloaded report has the same bytes",
    );
    let (status, _) = s
        .get(
            &format!("/v1/records/{lab_id}/content?purpose=referral"),
            &dr_li,
        )
        .await?;
    s.check(
        status == 404,
        &format!("the ungranted lab result is refused, as if it did not exist (HTTP {status})"),
    );

    s.step(4, "The patient withdraws consent: the grant is revoked");
    let (status, _) = s
        .post(
            &format!("/v1/grants/{grant_id}/revoke"),
            &dr_zhang,
            json!({"reason": "patient withdrew consent in the app"}),
        )
        .await?;
    let revoked_at = Instant::now();
    s.check(status == 200, &format!("grant revoked (HTTP {status})"));
    let mut refused_after = None;
    while revoked_at.elapsed() < Duration::from_secs(1) {
        let (status, _) = s
            .get(
                &format!("/v1/records/{exam_id}/content?purpose=referral"),
                &dr_li,
            )
            .await?;
        // Refused like a record that does not exist: no oracle for a non-owner.
        if status == 404 {
            refused_after = Some(revoked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.check(
        refused_after.is_some(),
        &format!(
            "the specialist's next read is refused within a second ({} ms)",
            refused_after.map(|d| d.as_millis()).unwrap_or(1000)
        ),
    );

    s.step(
        5,
        "The district health bureau's auditor verifies the record's whole trail",
    );
    let auditor = s.user_token("auditor.chen").await?;
    // The specialist's list view (the record's metadata) and its download are two reads.
    let want = [
        "record.anchored",
        "consent.granted",
        "record.accessed",
        "record.accessed",
        "consent.revoked",
        "record.access_denied",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let trail = loop {
        let (status, trail) = s
            .get(&format!("/v1/audit/records/{exam_id}/trail"), &auditor)
            .await?;
        let kinds: Vec<&str> = trail["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        if status == 200 && kinds == want {
            break trail;
        }
        if Instant::now() > deadline {
            s.check(false, &format!("the trail is complete: {kinds:?}"));
            break trail;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let institutions = s.creds["tenants"][0]["institutions"].clone();
    let name_of = |id: Option<&str>| -> String {
        let Some(id) = id else { return "-".into() };
        institutions
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == id)
            .and_then(|i| i["name"].as_str())
            .unwrap_or(id)
            .to_string()
    };
    for e in trail["events"].as_array().into_iter().flatten() {
        let who = name_of(e["actor"]["institution"].as_str());
        let ok = verifies(&e["proof"], &anchors);
        let line = format!(
            "{:<22} ledger #{:<4} by {who}{} — proof verifies offline",
            e["kind"].as_str().unwrap_or("?"),
            e["ledger_index"],
            e["recipient_institution"]
                .as_str()
                .map(|r| format!(" for {}", name_of(Some(r))))
                .unwrap_or_default(),
        );
        s.check(ok, &line);
    }

    let (status, download) = s
        .get(
            &format!("/v1/audit/records/{exam_id}/trail/bundle"),
            &auditor,
        )
        .await?;
    let events = download["events"].as_array().cloned().unwrap_or_default();
    let all_verify = !events.is_empty() && events.iter().all(|e| verifies(&e["proof"], &anchors));
    let saved = std::env::temp_dir().join(format!("caretrail-trail-{exam_id}.json"));
    let written = serde_json::to_vec_pretty(&download)
        .ok()
        .and_then(|bytes| std::fs::write(&saved, bytes).ok())
        .is_some();
    s.check(
        status == 200 && download["format"] == "caretrail-trail-bundle/v1" && all_verify,
        &format!(
            "the trail downloads as one proof file{} (check it with `caretrail verify trail`)",
            if written {
                format!(", saved to {}", saved.display())
            } else {
                String::new()
            }
        ),
    );
    // The cosigned checkpoint must cover this story's entries, not an earlier run's.
    let covers = events
        .iter()
        .filter_map(|e| e["ledger_index"].as_u64())
        .max()
        .map_or(1, |last| last + 1);
    let witnessed = s.witnessed(&auditor, &anchors, covers).await?;
    s.check(
        witnessed.is_some(),
        &match witnessed {
            Some(size) => format!(
                "the bureau's witness cosigned checkpoint {size} after checking it extends every \
                 earlier one; the cosignature verifies offline"
            ),
            None => "the bureau's witness cosigned a checkpoint within 30 s".into(),
        },
    );

    let (status, fhir) = s
        .get(&format!("/v1/audit/records/{exam_id}/trail/fhir"), &auditor)
        .await?;
    let count = |kind: &str| {
        fhir["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["resource"]["resourceType"] == kind)
            .count()
    };
    s.check(
        status == 200 && count("AuditEvent") == want.len() && count("Provenance") == want.len(),
        &format!(
            "FHIR R4 export: {} AuditEvent and {} Provenance (with the entries' signatures)",
            count("AuditEvent"),
            count("Provenance")
        ),
    );

    s.step(6, "The other tenant's credentials see none of it");
    let other = s.app_token(1, 0).await?;
    let (status, _) = s.get(&format!("/v1/records/{exam_id}"), &other).await?;
    s.check(
        status == 404,
        &format!("the record does not exist for it (HTTP {status})"),
    );
    let (status, _) = s
        .get(&format!("/v1/audit/records/{exam_id}/trail"), &other)
        .await?;
    s.check(
        status == 404,
        &format!("nor does its trail (HTTP {status})"),
    );
    let (_, grants) = s.get("/v1/grants", &other).await?;
    s.check(
        grants["items"].as_array().is_some_and(Vec::is_empty),
        "nor any grant",
    );

    println!(
        "\n{} — {} checks passed, {} failed, in {:.1} s",
        if s.failed == 0 {
            "STORY VERIFIED"
        } else {
            "STORY FAILED"
        },
        s.passed,
        s.failed,
        started.elapsed().as_secs_f64()
    );
    if s.passed == 0 {
        bail!("nothing was checked");
    }
    Ok(s.failed == 0)
}
