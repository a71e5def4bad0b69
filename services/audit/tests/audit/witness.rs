//! The built-in witness: it accepts and cosigns checkpoints that extend the last one it
//! accepted, and flags — never accepts, never cosigns — forged ones: a rewritten history, a
//! changed root, a rolled-back tree, a checkpoint signed by another key or under a new key.
//! The forgeries are signed with the ledger's own checkpoint key, as a compromised or buggy
//! ledger would sign them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use caretrail_audit::witness::{
    BusPort, Outcome, Refusal, Witness, WitnessMetrics, WitnessMode, WitnessPort,
};
use caretrail_bus::BusError;
use caretrail_contracts::identity::{CosignIn, TenantInfo};
use caretrail_contracts::ledger::{CosignatureIn, WitnessViewOut};
use caretrail_crypto::{SigningKey, VerifyingKey};
use caretrail_ledger::checkpoint::CheckpointKeys;
use caretrail_ledger_proofs::{Checkpoint, HashValue, Note, NoteSigner, Suite, VerifierKey};
use caretrail_runtime::clients::{IdentityClient, LedgerClient};
use caretrail_runtime::testing::Backend;
use caretrail_test_stack::{Options, Stack, metadata};
use serde_json::Value;

/// The real ledger and identity, with a forged answer to `view` when one is set.
struct Forging {
    inner: BusPort,
    forged: Mutex<Option<WitnessViewOut>>,
    /// Answer as a ledger that no longer knows the tenant.
    missing: std::sync::atomic::AtomicBool,
    submitted: Mutex<Vec<u64>>,
}

#[async_trait]
impl WitnessPort for Forging {
    async fn tenants(&self) -> Result<Vec<TenantInfo>, BusError> {
        self.inner.tenants().await
    }
    async fn regulators(&self, tenant: &str) -> Result<Vec<String>, BusError> {
        self.inner.regulators(tenant).await
    }
    async fn view(
        &self,
        tenant: &str,
        since: u64,
        cosigned_since: u64,
    ) -> Result<WitnessViewOut, BusError> {
        if self.missing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BusError::Remote(caretrail_bus::RemoteError::new(
                "unknown_tenant",
                "tenant has no ledger",
            )));
        }
        if let Some(forged) = self.forged.lock().unwrap().clone() {
            return Ok(forged);
        }
        self.inner.view(tenant, since, cosigned_since).await
    }
    async fn cosign(&self, input: &CosignIn) -> Result<String, BusError> {
        self.inner.cosign(input).await
    }
    async fn submit(&self, input: &CosignatureIn) -> Result<(), BusError> {
        self.submitted.lock().unwrap().push(input.tree_size);
        self.inner.submit(input).await
    }
}

fn metrics() -> WitnessMetrics {
    let counter = |name: &str| {
        prometheus::IntCounterVec::new(prometheus::Opts::new(name, "test"), &["k"]).unwrap()
    };
    WitnessMetrics {
        checks: counter("checks"),
        flags: counter("flags"),
    }
}

fn body_of(note: &str, suite: Suite) -> Checkpoint {
    Checkpoint::parse_body(Note::parse(note.as_bytes()).unwrap().text(), suite).unwrap()
}

/// A checkpoint note of `size` entries with `root`, signed by `signer`.
fn forged(
    real: &WitnessViewOut,
    signer: &NoteSigner,
    size: u64,
    root: HashValue,
    consistency: Vec<String>,
) -> WitnessViewOut {
    let origin = body_of(&real.checkpoint, root.suite()).origin().to_string();
    let note = Checkpoint::new(origin, size, root)
        .unwrap()
        .sign(signer)
        .unwrap();
    WitnessViewOut {
        tree_size: size,
        checkpoint: note.encode(),
        ledger_key: real.ledger_key.clone(),
        cosigned_consistency: consistency.clone(),
        consistency,
    }
}

async fn upload(stack: &Stack, token: &str, patient: &str) {
    let resp = stack
        .upload(
            token,
            "application/pdf",
            &metadata(patient, "exam_report"),
            b"%PDF witness".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 201);
}

async fn forged_checkpoints_are_flagged(backend: Backend) {
    let stack = Stack::start_with(
        backend,
        Options {
            audit: true,
            ..Options::default()
        },
    )
    .await;
    let bus = stack.bus().await;
    let (_events, flagged) = stack.collect_events("*.audit.anomaly.flagged").await;
    let timeout = Duration::from_secs(10);
    let port = Arc::new(Forging {
        inner: BusPort {
            ledger: LedgerClient::new(bus.clone(), timeout),
            identity: IdentityClient::new(bus.clone(), timeout),
        },
        forged: Mutex::new(None),
        missing: std::sync::atomic::AtomicBool::new(false),
        submitted: Mutex::new(Vec::new()),
    });
    let metrics = metrics();
    let witness = Witness {
        db: stack.audit_state.as_ref().unwrap().db.clone(),
        port: port.clone(),
        mode: WitnessMode::Cosign,
        metrics: metrics.clone(),
    };
    let gm = TenantInfo {
        tenant: stack.tenant_id(0),
        suite: "gm".into(),
        status: "active".into(),
    };
    let app = stack.app_token(0, 0).await;
    let auditor = stack.user_token("auditor.chen").await;
    let regulator = stack.institution(0, 2)["id"].as_str().unwrap().to_string();
    let patient = stack.register_patient(&app, "320402198001011234").await;
    upload(&stack, &app, &patient).await;

    // First contact: accepted and cosigned by the district health bureau.
    let Outcome::Accepted {
        size: first,
        cosigned: true,
    } = witness.check(&gm).await.unwrap()
    else {
        panic!("first checkpoint not cosigned");
    };
    let served = stack
        .get_ok_json(&stack.ledger, &app, "/v1/ledger/checkpoint")
        .await;
    assert_eq!(served["tree_size"], first);
    assert_eq!(
        served["cosignatures"][0]["witness"],
        regulator.as_str(),
        "{served}"
    );
    // The cosignature verifies offline with the bureau's key as registered on the ledger.
    let keys = stack.ledger_keys(&app).await;
    let bureau_pem = keys["institution_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["institution"] == regulator.as_str() && k["revoked_index"].is_null())
        .expect("bureau key")["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    let bureau = VerifyingKey::from_spki_pem(&bureau_pem).unwrap();
    let witness_key = VerifierKey::cosigner(regulator.clone(), bureau).unwrap();
    let ledger_key = VerifierKey::parse(keys["ledger_key"].as_str().unwrap()).unwrap();
    let opened = Checkpoint::open(
        served["checkpoint"].as_str().unwrap().as_bytes(),
        Suite::Gm,
        std::slice::from_ref(&ledger_key),
        std::slice::from_ref(&witness_key),
    )
    .unwrap();
    assert_eq!(opened.cosignatures.len(), 1);

    // The log grows: the new checkpoint is proven consistent and cosigned.
    upload(&stack, &app, &patient).await;
    let Outcome::Accepted {
        size: accepted,
        cosigned: true,
    } = witness.check(&gm).await.unwrap()
    else {
        panic!("grown checkpoint not accepted");
    };
    assert!(accepted > first);
    let state = stack
        .get_ok_json(stack.audit_url(), &auditor, "/v1/audit/witness")
        .await;
    assert_eq!(state["accepted"]["tree_size"], accepted, "{state}");
    assert_eq!(state["accepted"]["cosigned_size"], accepted, "{state}");

    // Forgeries, signed with the ledger's own checkpoint key.
    let real = port.inner.view(&gm.tenant, 0, 0).await.unwrap();
    let origin = body_of(&real.checkpoint, Suite::Gm).origin().to_string();
    let keys = CheckpointKeys::load(&stack.ledger_dir.join("checkpoint-keys.pem"), false).unwrap();
    let ledger_signer = keys.signer(Suite::Gm, &origin).unwrap();
    let other_signer = NoteSigner::new(
        origin.clone(),
        SigningKey::generate_for_suite(Suite::Gm).unwrap(),
    )
    .unwrap();
    let junk = |label: &[u8]| caretrail_crypto::hash(Suite::Gm, label);
    let real_root = *body_of(&real.checkpoint, Suite::Gm).root();
    let rollback = {
        // A genuine, correctly signed checkpoint of an earlier size: a rollback.
        let resp = stack
            .get_ok_json(
                &stack.ledger,
                &app,
                &format!("/v1/ledger/checkpoints/{first}"),
            )
            .await;
        resp["checkpoint"].as_str().unwrap().to_string()
    };
    let real_proof: Vec<String> = vec![junk(b"sibling").to_hex(); 3];
    let cases: Vec<(WitnessViewOut, Refusal)> = vec![
        (
            forged(
                &real,
                &ledger_signer,
                accepted + 3,
                junk(b"rewritten"),
                real_proof,
            ),
            Refusal::ProofFailed,
        ),
        (
            forged(&real, &ledger_signer, accepted, junk(b"other root"), vec![]),
            Refusal::RootChanged,
        ),
        (
            WitnessViewOut {
                tree_size: first,
                checkpoint: rollback,
                ledger_key: real.ledger_key.clone(),
                consistency: vec![],
                cosigned_consistency: vec![],
            },
            Refusal::TreeShrank,
        ),
        (
            forged(&real, &other_signer, accepted, real_root, vec![]),
            Refusal::BadSignature,
        ),
        (
            WitnessViewOut {
                ledger_key: other_signer.verifier_key().to_vkey(),
                ..forged(&real, &other_signer, accepted + 1, junk(b"x"), vec![])
            },
            Refusal::KeyChanged,
        ),
    ];
    for (view, want) in &cases {
        *port.forged.lock().unwrap() = Some(view.clone());
        assert_eq!(
            witness.check(&gm).await.unwrap(),
            Outcome::Refused {
                refusal: *want,
                new_alert: true
            },
            "{want:?}"
        );
    }
    // The same forgery again is refused but flagged only once.
    *port.forged.lock().unwrap() = Some(cases[0].0.clone());
    assert_eq!(
        witness.check(&gm).await.unwrap(),
        Outcome::Refused {
            refusal: Refusal::ProofFailed,
            new_alert: false
        }
    );
    // Identity's key itself refuses to cosign a fork, whoever asks: a bigger tree with
    // another history, a rolled-back tree, another root for the cosigned size, a
    // non-regulator witness, another log.
    let ask = |checkpoint: Checkpoint, witness: &str, from_size: u64| CosignIn {
        tenant: gm.tenant.clone(),
        witness: witness.to_string(),
        checkpoint: checkpoint.body(),
        from_size,
        consistency: vec![junk(b"sibling").to_hex(); 3],
    };
    let refusal = |r: Result<String, BusError>| match r {
        Err(BusError::Remote(e)) => e.code,
        other => panic!("cosigned: {other:?}"),
    };
    let fork = Checkpoint::new(origin.clone(), accepted + 3, junk(b"fork")).unwrap();
    assert_eq!(
        refusal(
            port.inner
                .cosign(&ask(fork.clone(), &regulator, accepted))
                .await
        ),
        "not_consistent"
    );
    assert_eq!(
        refusal(port.inner.cosign(&ask(fork.clone(), &regulator, 1)).await),
        "cosign_from"
    );
    let smaller = Checkpoint::new(origin.clone(), first, junk(b"old")).unwrap();
    assert_eq!(
        refusal(port.inner.cosign(&ask(smaller, &regulator, accepted)).await),
        "not_consistent"
    );
    let same_size = Checkpoint::new(origin.clone(), accepted, junk(b"other")).unwrap();
    assert_eq!(
        refusal(
            port.inner
                .cosign(&ask(same_size, &regulator, accepted))
                .await
        ),
        "not_consistent"
    );
    let hospital = stack.institution(0, 1)["id"].as_str().unwrap().to_string();
    assert_eq!(
        refusal(port.inner.cosign(&ask(fork, &hospital, 0)).await),
        "forbidden_witness"
    );
    let elsewhere = Checkpoint::new("evil.example/another", accepted + 1, junk(b"x")).unwrap();
    assert_eq!(
        refusal(
            port.inner
                .cosign(&ask(elsewhere, &regulator, accepted))
                .await
        ),
        "invalid_request"
    );

    // Nothing forged was accepted or cosigned.
    let state = stack
        .get_ok_json(stack.audit_url(), &auditor, "/v1/audit/witness")
        .await;
    assert_eq!(state["accepted"]["tree_size"], accepted, "{state}");
    assert!(
        port.submitted
            .lock()
            .unwrap()
            .iter()
            .all(|&s| s <= accepted),
        "{:?}",
        port.submitted.lock().unwrap()
    );
    let inconsistent = stack
        .get_ok_json(
            stack.audit_url(),
            &auditor,
            "/v1/audit/anomalies?kind=checkpoint_inconsistent",
        )
        .await;
    let mut reasons: Vec<&str> = inconsistent["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["detail"]["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["consistency_proof_failed", "root_changed", "tree_shrank"],
        "{inconsistent}"
    );
    assert_eq!(
        inconsistent["items"][0]["detail"]["accepted"]["tree_size"],
        accepted
    );
    let invalid = stack
        .get_ok_json(
            stack.audit_url(),
            &auditor,
            "/v1/audit/anomalies?kind=checkpoint_invalid",
        )
        .await;
    assert_eq!(invalid["items"].as_array().unwrap().len(), 2, "{invalid}");
    assert_eq!(
        metrics
            .flags
            .with_label_values(&["checkpoint_inconsistent"])
            .get(),
        3
    );
    assert_eq!(
        metrics
            .flags
            .with_label_values(&["checkpoint_invalid"])
            .get(),
        2
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kinds: Vec<String> = flagged
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        if kinds.len() >= 5 {
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| *k == "checkpoint_inconsistent")
                    .count(),
                3,
                "{kinds:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "alert events: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The honest ledger again: checked against the last good state, accepted and cosigned.
    *port.forged.lock().unwrap() = None;
    upload(&stack, &app, &patient).await;
    let Outcome::Accepted {
        size,
        cosigned: true,
    } = witness.check(&gm).await.unwrap()
    else {
        panic!("honest checkpoint refused after the forgeries");
    };
    assert!(size > accepted);

    // A ledger that "forgets" a log the witness has seen is flagged too.
    port.missing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        witness.check(&gm).await.unwrap(),
        Outcome::Refused {
            refusal: Refusal::LogMissing,
            new_alert: true
        }
    );
    port.missing
        .store(false, std::sync::atomic::Ordering::SeqCst);

    // The intl tenant has no regulator: checked (Ed25519 checkpoints), not cosigned, and a
    // forgery of its log is flagged in its tenant only.
    let intl = TenantInfo {
        tenant: stack.tenant_id(1),
        suite: "intl".into(),
        status: "active".into(),
    };
    let Outcome::Accepted {
        size: intl_size,
        cosigned: false,
    } = witness.check(&intl).await.unwrap()
    else {
        panic!("intl checkpoint not accepted");
    };
    let intl_real = port.inner.view(&intl.tenant, 0, 0).await.unwrap();
    let intl_origin = body_of(&intl_real.checkpoint, Suite::Intl)
        .origin()
        .to_string();
    let intl_signer = keys.signer(Suite::Intl, &intl_origin).unwrap();
    *port.forged.lock().unwrap() = Some(forged(
        &intl_real,
        &intl_signer,
        intl_size,
        caretrail_crypto::hash(Suite::Intl, b"rewritten"),
        vec![],
    ));
    assert_eq!(
        witness.check(&intl).await.unwrap(),
        Outcome::Refused {
            refusal: Refusal::RootChanged,
            new_alert: true
        }
    );
    let other = stack.app_token(1, 0).await;
    let theirs = stack
        .get_ok_json(stack.audit_url(), &other, "/v1/audit/witness")
        .await;
    assert_eq!(theirs["accepted"]["tree_size"], intl_size, "{theirs}");
    let their_flags = stack
        .get_ok_json(stack.audit_url(), &other, "/v1/audit/anomalies")
        .await;
    assert_eq!(
        their_flags["items"].as_array().unwrap().len(),
        1,
        "{their_flags}"
    );
    assert_eq!(their_flags["items"][0]["detail"]["reason"], "root_changed");
    stack.stop().await;
}

#[tokio::test]
async fn the_witness_cosigns_consistent_checkpoints_and_flags_forged_ones_embedded() {
    forged_checkpoints_are_flagged(Backend::Embedded).await;
}

#[tokio::test]
async fn the_witness_cosigns_consistent_checkpoints_and_flags_forged_ones_real() {
    forged_checkpoints_are_flagged(Backend::Real).await;
}

/// The service's own loop: an upload's checkpoint is soon served with the regulator's
/// cosignature, and the checks are counted on /metrics.
#[tokio::test]
async fn the_running_witness_cosigns_new_checkpoints() {
    let stack = Stack::start_with(
        Backend::Embedded,
        Options {
            audit: true,
            witness: WitnessMode::Cosign,
            witness_interval_ms: 200,
            ..Options::default()
        },
    )
    .await;
    let app = stack.app_token(0, 0).await;
    let patient = stack.register_patient(&app, "320402198001011234").await;
    upload(&stack, &app, &patient).await;
    let size = stack
        .get_ok_json(&stack.ledger, &app, "/v1/ledger/checkpoint")
        .await["tree_size"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cosigned = stack
            .http
            .get(format!("{}/v1/ledger/cosigned-checkpoint", stack.ledger))
            .bearer_auth(&app)
            .send()
            .await
            .unwrap();
        if cosigned.status() == 200 {
            let cosigned: Value = cosigned.json().await.unwrap();
            if cosigned["tree_size"].as_u64().unwrap() >= size {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never cosigned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let auditor = stack.user_token("auditor.chen").await;
    let state = stack
        .get_ok_json(stack.audit_url(), &auditor, "/v1/audit/witness")
        .await;
    assert_eq!(state["mode"], "cosign");
    assert!(
        state["accepted"]["cosigned_size"].as_u64().unwrap() >= size,
        "{state}"
    );
    let metrics = stack.audit_metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("caretrail_audit_witness_checks_total{outcome=\"cosigned\"")),
        "{metrics}"
    );
    stack.stop().await;
}
