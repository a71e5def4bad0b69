//! The ledger service on one node: start-up on both backends, appends with receipts that
//! verify offline, refusals that change nothing, tenant isolation, witness cosignatures, the
//! bus RPC and `ledger.appended` events, restart and tamper detection at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::HttpResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_contracts::auth::{Claims, PrincipalKind, Role};
use caretrail_crypto::{HashValue, SignatureAlgorithm, SigningKey, Suite};
use caretrail_ledger::api::{AppendIn, AppendOut, AppendResultOut, SubmissionIn};
use caretrail_ledger::storage::keys::{KIND_KEY_REGISTERED, KIND_KEY_REVOKED, REGISTRAR};
use caretrail_ledger::{Application, Config, LedgerSettings, Receipt};
use caretrail_ledger_proofs::{
    CheckKind, CheckStatus, Checkpoint, Cosigner, ProofBundle, Submission, TrustAnchors,
    VerifierKey, canonical_json, verify_bundle, verify_consistency, verify_inclusion,
};
use caretrail_platform::{
    config::HttpSettings,
    health::Health,
    http::{ServerParts, resource, start},
    metrics::Metrics,
};
use caretrail_runtime::testing::Backend;
use serde_json::{Value, json};

caretrail_runtime::service_start_tests!(caretrail_ledger, "ledger", |service, dir| {
    caretrail_ledger::Config::new(
        service,
        caretrail_ledger::LedgerSettings {
            ledger_data_dir: dir.join("ledger"),
            ..Default::default()
        },
    )
});

// ---------------------------------------------------------------------------------------------
// tokens: a stand-in for identity's JWKS

struct TokenKeys {
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwks: Value,
}

fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let sk = SigningKey::generate(SignatureAlgorithm::Ed25519).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sk.public_key().to_raw_bytes());
        TokenKeys {
            key: jsonwebtoken::EncodingKey::from_ed_der(&sk.to_pkcs8_der().unwrap()),
            jwks: json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "jwk_ledger_test", "alg": "EdDSA", "use": "sig"}]}),
            kid: "jwk_ledger_test".into(),
        }
    })
}

pub(crate) fn jwks_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let (port, server) = start(ServerParts {
                    service: "jwks-stub",
                    settings: HttpSettings {
                        http_port: 0,
                        ..HttpSettings::default()
                    },
                    health: Health::new(),
                    metrics: Metrics::new("jwks_stub").unwrap(),
                    configure: |cfg: &mut actix_web::web::ServiceConfig| {
                        cfg.service(
                            resource("/.well-known/jwks.json")
                                .get(|| async { HttpResponse::Ok().json(&token_keys().jwks) }),
                        );
                    },
                })
                .unwrap();
                tx.send(port).unwrap();
                server.await.unwrap();
            });
        });
        let port = rx.recv().unwrap();
        format!("http://127.0.0.1:{port}/.well-known/jwks.json")
    })
    .clone()
}

pub(crate) fn token(tenant: &str, institution: Option<&str>, roles: Vec<Role>) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        iss: caretrail_platform::auth::default_issuer(),
        aud: caretrail_contracts::auth::AUDIENCE.into(),
        sub: caretrail_contracts::UserId::generate().to_string(),
        exp: now + 600,
        nbf: now,
        iat: now,
        iat_ms: None,
        jti: format!("jti_{}", uuid::Uuid::new_v4().simple()),
        kind: PrincipalKind::User,
        tenant: Some(tenant.parse().unwrap()),
        institution: institution.map(|i| i.parse().unwrap()),
        roles,
        scope: String::new(),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(token_keys().kid.clone());
    jsonwebtoken::encode(&header, &claims, &token_keys().key).unwrap()
}

// ---------------------------------------------------------------------------------------------
// harness

pub(crate) struct Ledger {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    app_node: std::sync::Arc<caretrail_ledger::LedgerNode>,
    _db_dir: Option<tempfile::TempDir>,
}

async fn config(backend: Backend, data: &Path) -> (Config, Option<tempfile::TempDir>) {
    let (service, db_dir) = caretrail_runtime::testing::settings(backend, "ledger").await;
    let mut config = Config::new(
        service,
        LedgerSettings {
            ledger_data_dir: data.to_path_buf(),
            ..Default::default()
        },
    );
    config.auth.jwks_url = Some(jwks_url());
    (config, db_dir)
}

impl Ledger {
    async fn start(config: Config, db_dir: Option<tempfile::TempDir>) -> Self {
        caretrail_platform::telemetry::init_for_tests();
        let app = Application::build(config).await.expect("build");
        let base = format!("http://127.0.0.1:{}", app.port());
        let app_node = app.node();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            stop: Some(tx),
            running: Some(running),
            app_node,
            _db_dir: db_dir,
        }
    }

    pub(crate) async fn embedded(data: &Path) -> Self {
        let (config, dir) = config(Backend::Embedded, data).await;
        Self::start(config, dir).await
    }

    pub(crate) async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            tx.send(()).unwrap();
        }
        if let Some(r) = self.running.take() {
            r.await.unwrap().unwrap();
        }
        self._db_dir.take()
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a tenant's log; returns its registrar key.
    pub(crate) async fn tenant(&self, tenant: &str, suite: Suite) -> SigningKey {
        let registrar = SigningKey::generate_for_suite(suite).unwrap();
        let (status, body) = self
            .post(
                "/internal/ledger/tenants",
                &json!({"tenant": tenant, "suite": suite.to_string(),
                        "registrar_key_pem": registrar.public_key().to_spki_pem()}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        registrar
    }

    pub(crate) async fn append(&self, subs: Vec<SubmissionIn>) -> Vec<AppendResultOut> {
        let (status, body) = self
            .post(
                "/internal/ledger/append",
                &serde_json::to_value(AppendIn { submissions: subs }).unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value::<AppendOut>(body).unwrap().results
    }

    pub(crate) async fn append_ok(&self, sub: SubmissionIn) -> Receipt {
        match self.append(vec![sub]).await.pop().unwrap() {
            AppendResultOut::Receipt(r) => *r,
            AppendResultOut::Error(e) => panic!("refused: {e}"),
        }
    }

    /// Registers `key` for `institution`, signed by the registrar.
    pub(crate) async fn register_key(
        &self,
        tenant: &str,
        registrar: &SigningKey,
        institution: &str,
        key: &SigningKey,
    ) -> Receipt {
        let public = key.public_key();
        let payload = canonical_json(&json!({
            "algorithm": public.algorithm().as_str(),
            "institution": institution,
            "key_id": public.key_id().to_hex(),
            "public_key": B64.encode(public.to_spki_der()),
        }))
        .unwrap();
        self.append_ok(signed(
            tenant,
            KIND_KEY_REGISTERED,
            REGISTRAR,
            &format!("key-{}", public.key_id().to_hex()),
            registrar,
            payload,
        ))
        .await
    }

    async fn size(&self, tenant: &str) -> u64 {
        self.app_node
            .view
            .tenant(tenant)
            .unwrap()
            .map_or(0, |t| t.size)
    }
}

pub(crate) fn signed(
    tenant: &str,
    kind: &str,
    submitter: &str,
    request_id: &str,
    key: &SigningKey,
    payload: Vec<u8>,
) -> SubmissionIn {
    let sub = Submission {
        tenant: tenant.into(),
        kind: kind.into(),
        submitter: submitter.into(),
        request_id: request_id.into(),
        key_id: key.key_id().to_hex(),
        payload,
    };
    let signature = sub.sign(key).unwrap();
    caretrail_ledger::api::submission_in(&caretrail_ledger::SignedSubmission {
        submission: sub,
        signature,
    })
}

pub(crate) fn anchored(tenant: &str, institution: &str, key: &SigningKey, n: u64) -> SubmissionIn {
    let payload = canonical_json(&json!({
        "record": format!("rec_{n:032x}"),
        "content_hash": HashValue::new(Suite::Intl, [n as u8; 32]).to_hex(),
    }))
    .unwrap();
    signed(
        tenant,
        "record.anchored",
        institution,
        &format!("req-{n}"),
        key,
        payload,
    )
}

fn pinned(ledger_key: &str, submitter: &SigningKey) -> TrustAnchors {
    TrustAnchors {
        ledger_keys: vec![VerifierKey::parse(ledger_key).unwrap()],
        submitter_keys: vec![submitter.public_key()],
        ..TrustAnchors::default()
    }
}

pub(crate) fn all_passed(bundle: &ProofBundle, anchors: &TrustAnchors) -> bool {
    // Every check that applies must pass, and the submitter signature must apply.
    match verify_bundle(bundle, anchors) {
        Ok(report) => report
            .checks
            .iter()
            .any(|c| c.status == CheckStatus::Passed && c.check == CheckKind::SubmitterSignature),
        Err(_) => false,
    }
}

pub(crate) const TEN_A: &str = "ten_0000000000000000000000000000000a";
pub(crate) const TEN_B: &str = "ten_0000000000000000000000000000000b";
pub(crate) const INS_A: &str = "ins_0000000000000000000000000000000a";
pub(crate) const INS_REG: &str = "ins_000000000000000000000000000000ee";

// ---------------------------------------------------------------------------------------------
// tests

async fn receipts_verify_offline(backend: Backend, suite: Suite) {
    let data = tempfile::tempdir().unwrap();
    let (config, dir) = config(backend, data.path()).await;
    let ledger = Ledger::start(config, dir).await;
    let registrar = ledger.tenant(TEN_A, suite).await;
    let inst = SigningKey::generate_for_suite(suite).unwrap();
    let key_receipt = ledger.register_key(TEN_A, &registrar, INS_A, &inst).await;
    assert_eq!(key_receipt.index, 0);

    let receipt = ledger.append_ok(anchored(TEN_A, INS_A, &inst, 1)).await;
    assert_eq!(receipt.index, 1);
    assert!(!receipt.duplicate);
    assert_eq!(receipt.tree_size, 2);

    // The ledger key a verifier pins comes from the keys endpoint.
    let t = token(TEN_A, Some(INS_A), vec![Role::Physician]);
    let (status, keys) = ledger.get(&t, "/v1/ledger/keys").await;
    assert_eq!(status, 200, "{keys}");
    let ledger_key = keys["ledger_key"].as_str().unwrap().to_string();
    assert_eq!(keys["institution_keys"][0]["institution"], INS_A);
    assert_eq!(keys["institution_keys"][0]["registered_index"], 0);

    // The receipt's bundle verifies offline with pinned keys, and fails with another key.
    let anchors = pinned(&ledger_key, &inst);
    assert!(all_passed(&receipt.bundle, &anchors));
    let impostor = SigningKey::generate_for_suite(suite).unwrap();
    let wrong = TrustAnchors {
        submitter_keys: vec![impostor.public_key()],
        ..anchors.clone()
    };
    assert!(!all_passed(&receipt.bundle, &wrong));
    let other_ledger = caretrail_ledger_proofs::NoteSigner::new(
        format!("caretrail.local/{TEN_A}"),
        SigningKey::generate_for_suite(suite).unwrap(),
    )
    .unwrap();
    let forged_ledger = TrustAnchors {
        ledger_keys: vec![other_ledger.verifier_key()],
        ..anchors.clone()
    };
    assert!(!all_passed(&receipt.bundle, &forged_ledger));

    // The same request id again: the original entry, nothing appended.
    let again = ledger.append_ok(anchored(TEN_A, INS_A, &inst, 1)).await;
    assert!(again.duplicate);
    assert_eq!(again.index, 1);
    assert_eq!(ledger.size(TEN_A).await, 2);

    // A batch: consecutive indexes, one checkpoint for all.
    let results = ledger
        .append((2..22).map(|n| anchored(TEN_A, INS_A, &inst, n)).collect())
        .await;
    let receipts: Vec<Receipt> = results
        .into_iter()
        .map(|r| match r {
            AppendResultOut::Receipt(r) => *r,
            AppendResultOut::Error(e) => panic!("{e}"),
        })
        .collect();
    assert_eq!(
        receipts.iter().map(|r| r.index).collect::<Vec<_>>(),
        (2..22).collect::<Vec<_>>()
    );
    for r in &receipts {
        assert!(all_passed(&r.bundle, &anchors), "receipt {}", r.index);
    }

    // Reads: entry, range, proofs — and they agree with the receipts.
    let (status, entry) = ledger.get(&t, "/v1/ledger/entries/5").await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["leaf_hash"], receipts[3].leaf_hash);
    assert_eq!(entry["submitter"], INS_A);
    assert_eq!(entry["payload_json"]["record"], format!("rec_{:032x}", 5));
    let (_, page) = ledger.get(&t, "/v1/ledger/entries?start=20&limit=5").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], Value::Null);
    let (status, missing) = ledger.get(&t, "/v1/ledger/entries/22").await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("not_found")));

    let (_, cp) = ledger.get(&t, "/v1/ledger/checkpoint").await;
    assert_eq!(cp["tree_size"], 22);
    let opened = Checkpoint::open(
        cp["checkpoint"].as_str().unwrap().as_bytes(),
        suite,
        &[VerifierKey::parse(&ledger_key).unwrap()],
        &[],
    )
    .unwrap();
    let root = *opened.checkpoint.root();
    let (_, inc) = ledger
        .get(
            &t,
            &format!(
                "/v1/ledger/proofs/inclusion?leaf_hash={}",
                receipts[0].leaf_hash
            ),
        )
        .await;
    assert_eq!(inc["leaf_index"], 2);
    let proof: Vec<HashValue> = inc["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| HashValue::from_hex(suite, h.as_str().unwrap()).unwrap())
        .collect();
    let leaf = HashValue::from_hex(suite, &receipts[0].leaf_hash).unwrap();
    verify_inclusion(&leaf, 2, 22, &proof, &root).unwrap();
    assert!(verify_inclusion(&leaf, 3, 22, &proof, &root).is_err());

    let old_root = HashValue::from_hex(suite, &receipt.root).unwrap();
    let (_, cons) = ledger
        .get(&t, "/v1/ledger/proofs/consistency?from=2&to=22")
        .await;
    let cproof: Vec<HashValue> = cons["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| HashValue::from_hex(suite, h.as_str().unwrap()).unwrap())
        .collect();
    verify_consistency(2, 22, &old_root, &root, &cproof).unwrap();
    let (status, bad) = ledger
        .get(&t, "/v1/ledger/proofs/consistency?from=23&to=22")
        .await;
    assert_eq!(status, 400, "{bad}");

    // A bundle with a consistency proof from the first receipt's checkpoint.
    let (status, bundle) = ledger.get(&t, "/v1/ledger/entries/1/bundle?since=2").await;
    assert_eq!(status, 200, "{bundle}");
    let bundle: ProofBundle = serde_json::from_value(bundle).unwrap();
    assert!(bundle.consistency.is_some());
    assert!(all_passed(&bundle, &anchors));

    ledger.stop().await;
}

#[tokio::test]
async fn receipts_verify_offline_intl_embedded() {
    receipts_verify_offline(Backend::Embedded, Suite::Intl).await;
}

#[tokio::test]
async fn receipts_verify_offline_gm_on_postgres_and_rabbitmq() {
    receipts_verify_offline(Backend::Real, Suite::Gm).await;
}

#[tokio::test]
async fn bad_submissions_are_refused_and_append_nothing() {
    let data = tempfile::tempdir().unwrap();
    let ledger = Ledger::embedded(data.path()).await;
    let registrar = ledger.tenant(TEN_A, Suite::Intl).await;
    let inst = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    ledger.register_key(TEN_A, &registrar, INS_A, &inst).await;
    let before = ledger.size(TEN_A).await;

    let refused = |sub: SubmissionIn| {
        let ledger = &ledger;
        async move {
            let (status, body) = ledger
                .post(
                    "/internal/ledger/entries",
                    &serde_json::to_value(sub).unwrap(),
                )
                .await;
            (
                status,
                body["code"].as_str().unwrap_or("").to_string(),
                body,
            )
        }
    };

    let mut unsigned = anchored(TEN_A, INS_A, &inst, 1);
    unsigned.signature = String::new();
    let mut tampered = anchored(TEN_A, INS_A, &inst, 2);
    tampered.payload = B64.encode(b"{\"record\":\"something else\"}");
    let stranger = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    let unknown_institution = anchored(TEN_A, "ins_00000000000000000000000000000999", &stranger, 3);
    let unknown_key = anchored(TEN_A, INS_A, &stranger, 4);
    let oversized = signed(
        TEN_A,
        "record.anchored",
        INS_A,
        "big",
        &inst,
        vec![b'x'; 20_000],
    );
    let unknown_kind = signed(
        TEN_A,
        "record.teleported",
        INS_A,
        "k",
        &inst,
        b"{}".to_vec(),
    );
    let unknown_tenant = anchored(TEN_B, INS_A, &inst, 5);
    let mut garbage = anchored(TEN_A, INS_A, &inst, 6);
    garbage.payload = "not base64!".into();
    let forged_key_entry = {
        // An institution may not register keys: only the registrar.
        let payload = canonical_json(&json!({"algorithm": "ed25519", "institution": INS_A,
            "key_id": stranger.key_id().to_hex(), "public_key": B64.encode(stranger.public_key().to_spki_der())})).unwrap();
        signed(TEN_A, KIND_KEY_REGISTERED, INS_A, "forge", &inst, payload)
    };

    // Nor state that a user was disabled: changes of who may act are the registrar's.
    let forged_access_change = signed(
        TEN_A,
        "user.disabled",
        INS_A,
        "access-forge",
        &inst,
        canonical_json(&json!({"change": "user.disabled", "subject": "usr_x", "by": "usr_y"}))
            .unwrap(),
    );

    for (sub, status, code) in [
        (forged_access_change, 422, "invalid_entry"),
        (unsigned, 422, "bad_signature"),
        (tampered, 422, "bad_signature"),
        (unknown_institution, 403, "unknown_institution"),
        (unknown_key, 403, "unknown_key"),
        (oversized, 413, "payload_too_large"),
        (unknown_kind, 422, "unknown_kind"),
        (unknown_tenant, 404, "unknown_tenant"),
        (garbage, 422, "invalid_entry"),
        (forged_key_entry, 422, "invalid_entry"),
    ] {
        let (s, c, body) = refused(sub).await;
        assert_eq!((s, c.as_str()), (status, code), "{body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    assert_eq!(
        ledger.size(TEN_A).await,
        before,
        "a refused entry was appended"
    );

    // A revoked key: accepted before the revocation, refused after.
    ledger.append_ok(anchored(TEN_A, INS_A, &inst, 10)).await;
    let revocation = canonical_json(&json!({"institution": INS_A,
        "key_id": inst.key_id().to_hex(), "reason": "laptop stolen"}))
    .unwrap();
    ledger
        .append_ok(signed(
            TEN_A,
            KIND_KEY_REVOKED,
            REGISTRAR,
            "rev-1",
            &registrar,
            revocation,
        ))
        .await;
    let size = ledger.size(TEN_A).await;
    let (s, c, body) = refused(anchored(TEN_A, INS_A, &inst, 11)).await;
    assert_eq!((s, c.as_str()), (403, "key_revoked"), "{body}");
    assert_eq!(ledger.size(TEN_A).await, size);

    // Malformed JSON is a 400 problem, not a crash.
    let r = reqwest::Client::new()
        .post(format!("{}/internal/ledger/entries", ledger.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    ledger.stop().await;
}

#[tokio::test]
async fn tenants_see_only_their_own_log() {
    let data = tempfile::tempdir().unwrap();
    let ledger = Ledger::embedded(data.path()).await;
    let reg_a = ledger.tenant(TEN_A, Suite::Intl).await;
    let inst = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    ledger.register_key(TEN_A, &reg_a, INS_A, &inst).await;
    ledger.append_ok(anchored(TEN_A, INS_A, &inst, 1)).await;

    // Tenant B has no ledger yet: nothing of A's is served to it.
    let tb = token(TEN_B, Some(INS_A), vec![Role::Auditor]);
    for path in [
        "/v1/ledger/checkpoint",
        "/v1/ledger/entries/0",
        "/v1/ledger/keys",
    ] {
        let (status, body) = ledger.get(&tb, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    // Once B has a log, B's reads show B's entries only.
    let reg_b = ledger.tenant(TEN_B, Suite::Gm).await;
    let inst_b = SigningKey::generate_for_suite(Suite::Gm).unwrap();
    ledger.register_key(TEN_B, &reg_b, INS_A, &inst_b).await;
    let (_, cp) = ledger.get(&tb, "/v1/ledger/checkpoint").await;
    assert_eq!(cp["tenant"], TEN_B);
    assert_eq!(cp["tree_size"], 1);
    let (_, e) = ledger.get(&tb, "/v1/ledger/entries/1").await;
    assert_eq!(e["code"], "not_found");

    // No token, a forged token: 401.
    let r = reqwest::get(format!("{}/v1/ledger/checkpoint", ledger.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, _) = ledger.get("not-a-jwt", "/v1/ledger/checkpoint").await;
    assert_eq!(status, 401);
    ledger.stop().await;
}

#[tokio::test]
async fn witness_cosignatures_are_checked_and_served() {
    let data = tempfile::tempdir().unwrap();
    let ledger = Ledger::embedded(data.path()).await;
    let registrar = ledger.tenant(TEN_A, Suite::Gm).await;
    let inst = SigningKey::generate_for_suite(Suite::Gm).unwrap();
    let regulator = SigningKey::generate_for_suite(Suite::Gm).unwrap();
    ledger.register_key(TEN_A, &registrar, INS_A, &inst).await;
    ledger
        .register_key(TEN_A, &registrar, INS_REG, &regulator)
        .await;
    for n in 0..5 {
        ledger.append_ok(anchored(TEN_A, INS_A, &inst, n)).await;
    }
    let auditor = token(TEN_A, Some(INS_REG), vec![Role::Auditor]);
    let (_, cp) = ledger.get(&auditor, "/v1/ledger/checkpoint").await;
    let ledger_key = VerifierKey::parse(cp["ledger_key"].as_str().unwrap()).unwrap();

    // The regulator checks the checkpoint (first contact: no previous one) and cosigns it.
    let cosigner = Cosigner::new(
        INS_REG,
        SigningKey::from_secret_bytes(SignatureAlgorithm::Sm2, &regulator.to_secret_bytes())
            .unwrap(),
    )
    .unwrap();
    let witness =
        caretrail_ledger_proofs::Witness::new(cosigner, Suite::Gm, vec![ledger_key.clone()]);
    let (checkpoint, cosig) = witness
        .verify_and_cosign(
            None,
            cp["checkpoint"].as_str().unwrap().as_bytes(),
            &[],
            1_700_000_000,
        )
        .unwrap();
    let (status, body) = reqwest::Client::new()
        .post(format!("{}/v1/ledger/cosignatures", ledger.base))
        .bearer_auth(&auditor)
        .json(&json!({"tree_size": checkpoint.size(), "line": cosig.line()}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    let body: Value = body.json().await.unwrap();
    assert_eq!(status, 201, "{body}");

    // Served with the cosignature, which verifies under the regulator's witness key.
    let (_, cosigned) = ledger.get(&auditor, "/v1/ledger/cosigned-checkpoint").await;
    assert_eq!(cosigned["tree_size"], checkpoint.size());
    let opened = Checkpoint::open(
        cosigned["checkpoint"].as_str().unwrap().as_bytes(),
        Suite::Gm,
        std::slice::from_ref(&ledger_key),
        &[witness.cosigner().verifier_key()],
    )
    .unwrap();
    assert_eq!(opened.cosignatures.len(), 1);
    assert_eq!(opened.cosignatures[0].timestamp, Some(1_700_000_000));

    // Refused: a cosignature by an unregistered key, over another size, by a physician.
    let rogue = Cosigner::new(INS_REG, SigningKey::generate_for_suite(Suite::Gm).unwrap()).unwrap();
    let rogue_sig = rogue.cosign(&checkpoint, 1_700_000_001).unwrap();
    let post = |tok: String, body: Value| {
        let base = ledger.base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/v1/ledger/cosignatures"))
                .bearer_auth(tok)
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = post(
        auditor.clone(),
        json!({"tree_size": checkpoint.size(), "line": rogue_sig.line()}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("invalid_cosignature")),
        "{b}"
    );
    let (s, b) = post(
        auditor.clone(),
        json!({"tree_size": checkpoint.size() - 1, "line": cosig.line()}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("invalid_cosignature")),
        "{b}"
    );
    let physician = token(TEN_A, Some(INS_REG), vec![Role::Physician]);
    let (s, _) = post(
        physician,
        json!({"tree_size": checkpoint.size(), "line": cosig.line()}),
    )
    .await;
    assert_eq!(s, 403);
    ledger.stop().await;
}

async fn rpc_appends_and_publishes_events(backend: Backend) {
    use caretrail_bus::{Subscription, handler_fn};
    let data = tempfile::tempdir().unwrap();
    let (config, dir) = config(backend, data.path()).await;
    let bus_settings = config.service.bus.clone();
    let ledger = Ledger::start(config, dir).await;
    let bus = caretrail_bus::connect(&bus_settings).await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer = bus
        .subscribe(
            Subscription::new("audit-test")
                .bind("*.ledger.ledger.appended")
                .ephemeral(),
            handler_fn(move |d| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(d.event);
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();

    let registrar = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    let _: Value = caretrail_bus::call_json(
        bus.as_ref(),
        "ledger",
        "register_tenant",
        &json!({"tenant": TEN_A, "suite": "intl", "registrar_key_pem": registrar.public_key().to_spki_pem()}),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let inst = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    ledger.register_key(TEN_A, &registrar, INS_A, &inst).await;
    let out: AppendOut = caretrail_bus::call_json(
        bus.as_ref(),
        "ledger",
        "append",
        &AppendIn {
            submissions: vec![
                anchored(TEN_A, INS_A, &inst, 1),
                anchored(TEN_A, "ins_nobody", &inst, 2),
            ],
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(matches!(&out.results[0], AppendResultOut::Receipt(r) if r.index == 1));
    assert!(
        matches!(&out.results[1], AppendResultOut::Error(e) if e.code == "unknown_institution")
    );

    // Both entries (the key registration and the record) arrive as ledger.appended events.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("ledger.appended within 10 s")
            .unwrap();
        assert_eq!(event.tenant, TEN_A);
        seen.push(event.payload["index"].as_u64().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1]);
    consumer.shutdown().await;
    ledger.stop().await;
}

#[tokio::test]
async fn rpc_appends_and_publishes_events_embedded() {
    rpc_appends_and_publishes_events(Backend::Embedded).await;
}

#[tokio::test]
async fn rpc_appends_and_publishes_events_on_rabbitmq() {
    rpc_appends_and_publishes_events(Backend::Real).await;
}

/// Flips a byte inside every entry sealed at rest in `state.redb` (`CTLX\x01` + nonce + …);
/// returns how many there were.
fn flip_sealed_entries(dir: &Path) -> usize {
    let path = dir.join("state.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let magic = b"CTLX\x01";
    let mut hits = 0;
    let mut i = 0;
    while i + magic.len() + 20 <= bytes.len() {
        if &bytes[i..i + magic.len()] == magic {
            bytes[i + magic.len() + 16] ^= 0x01;
            hits += 1;
            i += magic.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(&path, bytes).unwrap();
    hits
}

#[tokio::test]
async fn the_log_survives_restarts_and_tampering_stops_the_node() {
    let data = tempfile::tempdir().unwrap();
    let (config1, dir) = config(Backend::Embedded, data.path()).await;
    let ledger = Ledger::start(config1.clone(), dir).await;
    let registrar = ledger.tenant(TEN_A, Suite::Intl).await;
    let inst = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    ledger.register_key(TEN_A, &registrar, INS_A, &inst).await;
    let marker = b"MARKER-0123456789";
    let receipt = ledger
        .append_ok(signed(
            TEN_A,
            "record.anchored",
            INS_A,
            "marked",
            &inst,
            canonical_json(&json!({"note": String::from_utf8_lossy(marker)})).unwrap(),
        ))
        .await;
    let t = token(TEN_A, None, vec![Role::Auditor]);
    let (_, before) = ledger.get(&t, "/v1/ledger/checkpoint").await;
    let db_dir = ledger.stop().await;

    // Restart on the same files: same tree, and appends continue (idempotency kept).
    let ledger = Ledger::start(config1.clone(), db_dir).await;
    let (_, after) = ledger.get(&t, "/v1/ledger/checkpoint").await;
    assert_eq!(after["root"], before["root"]);
    assert_eq!(after["tree_size"], before["tree_size"]);
    let again = ledger
        .append_ok(signed(
            TEN_A,
            "record.anchored",
            INS_A,
            "marked",
            &inst,
            canonical_json(&json!({"note": String::from_utf8_lossy(marker)})).unwrap(),
        ))
        .await;
    assert!(again.duplicate);
    assert_eq!(again.index, receipt.index);
    let db_dir = ledger.stop().await;

    // Entries are sealed at rest: the payload is nowhere in the state file in clear.
    let state = std::fs::read(data.path().join("state.redb")).unwrap();
    assert!(!state.windows(marker.len()).any(|w| w == marker));
    // One flipped byte in a stored entry: the node refuses to start.
    assert!(flip_sealed_entries(data.path()) >= 2);
    let (config2, _unused) = config(Backend::Embedded, data.path()).await;
    let mut config2 = config2;
    config2.service.db = config1.service.db.clone();
    let err = Application::build(config2)
        .await
        .err()
        .expect("start refused");
    assert!(
        err.to_string().contains("failed verification"),
        "unexpected error: {err:#}"
    );
    drop(db_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_snapshots_and_purges_its_log_by_itself() {
    let data = tempfile::tempdir().unwrap();
    let (mut config, dir) = config(Backend::Embedded, data.path()).await;
    config.ledger.ledger_snapshot_every = 100;
    config.ledger.ledger_snapshot_keep_logs = 40;
    let ledger = Ledger::start(config.clone(), dir).await;
    let registrar = ledger.tenant(TEN_A, Suite::Intl).await;
    let inst = SigningKey::generate_for_suite(Suite::Intl).unwrap();
    ledger.register_key(TEN_A, &registrar, INS_A, &inst).await;
    assert_eq!(ledger.app_node.status().snapshot_index, None);
    // One request at a time: one Raft entry each.
    for n in 0..110 {
        ledger.append_ok(anchored(TEN_A, INS_A, &inst, n)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = ledger.app_node.status();
        if status.purged_index.is_some() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let snapshot = status.snapshot_index.expect("no snapshot was taken");
    assert!(snapshot >= 100, "{status:?}");
    assert!(status.purged_index.unwrap() + 40 <= snapshot, "{status:?}");
    let entries = ledger.size(TEN_A).await;
    let (entries_now, in_snapshot) = ledger.app_node.view.entry_counts();
    assert_eq!(entries_now, entries);
    assert!(
        in_snapshot >= 90 && in_snapshot <= entries,
        "{in_snapshot} of {entries}"
    );
    // The snapshot is a manifest: a few hundred bytes however many entries it covers.
    let manifest = std::fs::metadata(data.path().join("snapshots/current.snap"))
        .unwrap()
        .len();
    assert!(manifest < 2048, "current.snap is {manifest} bytes");

    // Batched appends: openraft alone would keep 40 Raft entries of log before a snapshot,
    // here up to 2,000 ledger entries; the node purges down to about 40 ledger entries.
    for batch in 0..20u64 {
        let subs = (0..50)
            .map(|i| anchored(TEN_A, INS_A, &inst, 1_000 + batch * 50 + i))
            .collect();
        for result in ledger.append(subs).await {
            assert!(matches!(result, AppendResultOut::Receipt(_)), "{result:?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = ledger.app_node.status();
        let (snapshot, purged) = (status.snapshot_index.unwrap(), status.purged_index.unwrap());
        if snapshot - purged < 40 || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (snapshot, purged) = (status.snapshot_index.unwrap(), status.purged_index.unwrap());
    assert!(snapshot - purged < 40, "{status:?}");
    let snapshot = ledger.app_node.status().snapshot_index.unwrap();
    let entries = ledger.size(TEN_A).await;
    let (_, in_snapshot) = ledger.app_node.view.entry_counts();

    // After a restart the node starts from its snapshot and purged log with every entry.
    let db_dir = ledger.stop().await;
    let ledger = Ledger::start(config, db_dir).await;
    assert_eq!(ledger.size(TEN_A).await, entries);
    // (A snapshot that was due may have been taken between the reads above and the stop.)
    let restarted = ledger.app_node.status().snapshot_index.unwrap();
    assert!(restarted >= snapshot, "{restarted} < {snapshot}");
    // The schedule counts from the snapshot's entries (read from its manifest).
    let (now, at_snapshot) = ledger.app_node.view.entry_counts();
    assert_eq!(now, entries);
    assert!(
        at_snapshot >= in_snapshot && at_snapshot <= entries,
        "{at_snapshot} not in {in_snapshot}..={entries}"
    );
    ledger.stop().await;
}
