//! A running identity + ledger + object store (+ consent) sharing one bus, with the demo
//! tenants seeded: what the integration tests of the object store and consent run against.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caretrail_object_store::{StorageKind, StoreSettings};
use caretrail_runtime::testing::{Backend, settings};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct Stack {
    /// Bus prefix shared by the three services.
    pub prefix: String,
    /// PostgreSQL, RabbitMQ and S3 (not the embedded adapters).
    pub real: bool,
    pub identity: String,
    pub ledger: String,
    pub store: String,
    pub state: actix_web::web::Data<caretrail_object_store::State>,
    /// The consent service, when started ([`Options::consent`]).
    pub consent: Option<String>,
    pub consent_state: Option<actix_web::web::Data<caretrail_consent::State>>,
    /// Its settings, to start more replicas on the same database and bus.
    pub consent_settings: Option<caretrail_runtime::ServiceSettings>,
    /// The audit service, when started ([`Options::audit`]).
    pub audit: Option<String>,
    pub audit_state: Option<actix_web::web::Data<caretrail_audit::State>>,
    jwks: String,
    pub demo: Value,
    pub objects_dir: PathBuf,
    /// The one-node ledger's data directory (checkpoint keys, Raft log).
    pub ledger_dir: PathBuf,
    pub store_db_file: Option<PathBuf>,
    pub http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dirs: Vec<caretrail_runtime::testing::tempfile::TempDir>,
}

/// S3 settings of the test server (`infra/start-s3.sh`).
pub fn s3_settings(endpoint: Option<String>) -> StoreSettings {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    StoreSettings {
        storage: StorageKind::S3,
        s3_endpoint: Some(
            endpoint.unwrap_or_else(|| env("CARETRAIL_TEST_S3_ENDPOINT", "http://127.0.0.1:3900")),
        ),
        s3_region: env("CARETRAIL_TEST_S3_REGION", "garage"),
        s3_bucket: env("CARETRAIL_TEST_S3_BUCKET", "caretrail-test"),
        s3_access_key_id: Some(env("CARETRAIL_S3_ACCESS_KEY", "GK31c2f218a2e44f485b94239e").into()),
        s3_secret_access_key: Some(
            env(
                "CARETRAIL_S3_SECRET_KEY",
                "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835",
            )
            .into(),
        ),
        s3_force_path_style: true,
        ..StoreSettings::default()
    }
}

pub struct Options {
    pub max_record_bytes: u64,
    /// Replaces the S3 endpoint (a proxy the test can cut).
    pub s3_endpoint: Option<String>,
    pub decisions: caretrail_object_store::DecisionSource,
    /// Also run the consent service (and let it decide reads).
    pub consent: bool,
    /// Also run the audit service.
    pub audit: bool,
    /// Its unusual-volume threshold (accesses per hour), when not the default.
    pub audit_access_min_per_hour: Option<u64>,
    /// Its built-in witness (off unless a test wants the loop; tests may also run rounds
    /// themselves) and how often it checks.
    pub witness: caretrail_audit::witness::WitnessMode,
    pub witness_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_record_bytes: 64 * 1024 * 1024,
            s3_endpoint: None,
            decisions: caretrail_object_store::DecisionSource::OwnerOnly,
            consent: false,
            audit: false,
            audit_access_min_per_hour: None,
            witness: caretrail_audit::witness::WitnessMode::Off,
            witness_interval_ms: 200,
        }
    }
}

impl Stack {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, options: Options) -> Self {
        caretrail_platform::telemetry::init_for_tests();
        let mut dirs = Vec::new();
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let scratch = caretrail_runtime::testing::tempfile::tempdir().unwrap();
        let (identity_settings, d) = settings(backend, "identity").await;
        dirs.extend(d);
        let prefix = identity_settings.bus.bus_prefix.clone();

        macro_rules! run {
            ($app:expr) => {{
                let app = $app;
                let port = app.port();
                let (tx, rx) = oneshot::channel::<()>();
                stops.push(tx);
                tasks.push(tokio::spawn(app.run_until(async {
                    let _ = rx.await;
                })));
                format!("http://127.0.0.1:{port}")
            }};
        }

        let master = caretrail_identity::secrets::MasterKey::generate_hex().unwrap();
        let identity_app = caretrail_identity::Application::build(caretrail_identity::Config::new(
            identity_settings,
            master,
        ))
        .await
        .expect("identity");
        let identity_state = identity_app.state();
        let identity = run!(identity_app);
        let jwks = format!("{identity}/.well-known/jwks.json");

        let ledger_dir = scratch.path().join("ledger");
        let (mut ledger_settings, d) = settings(backend, "ledger").await;
        dirs.extend(d);
        ledger_settings.bus.bus_prefix = prefix.clone();
        let mut ledger_config = caretrail_ledger::Config::new(
            ledger_settings,
            caretrail_ledger::LedgerSettings {
                ledger_data_dir: ledger_dir.clone(),
                ..Default::default()
            },
        );
        ledger_config.auth.jwks_url = Some(jwks.clone());
        let ledger = run!(
            caretrail_ledger::Application::build(ledger_config)
                .await
                .expect("ledger")
        );

        let (mut store_service, d) = settings(backend, "object_store").await;
        let store_db_file = d.as_ref().map(|dir| dir.path().join("test.db"));
        dirs.extend(d);
        store_service.bus.bus_prefix = prefix.clone();
        let bus_prefix = prefix;
        let objects_dir = scratch.path().join("objects");
        let mut store_settings = match backend {
            Backend::Embedded => StoreSettings {
                objects_dir: objects_dir.clone(),
                ..StoreSettings::default()
            },
            Backend::Real => s3_settings(options.s3_endpoint.clone()),
        };
        store_settings.keyring =
            Some(caretrail_object_store::keys::Keyring::generate_json().unwrap());
        store_settings.max_record_bytes = options.max_record_bytes;
        store_settings.decisions = options.decisions;
        if options.consent {
            store_settings.decisions = caretrail_object_store::DecisionSource::Consent;
        }
        let mut store_config = caretrail_object_store::Config::new(store_service, store_settings);
        store_config.auth.jwks_url = Some(jwks.clone());
        let store_app = caretrail_object_store::Application::build(store_config)
            .await
            .expect("object store");
        let state = store_app.state();
        let store = run!(store_app);

        let (mut consent, mut consent_state, mut consent_settings) = (None, None, None);
        if options.consent {
            let (mut service, d) = settings(backend, "consent").await;
            dirs.extend(d);
            service.bus.bus_prefix = bus_prefix.clone();
            consent_settings = Some(service.clone());
            let app = start_consent(service, &jwks).await;
            consent_state = Some(app.state());
            consent = Some(run!(app));
        }
        let (mut audit, mut audit_state) = (None, None);
        if options.audit {
            let (mut service, d) = settings(backend, "audit").await;
            dirs.extend(d);
            service.bus.bus_prefix = bus_prefix.clone();
            let mut config = caretrail_audit::Config::new(service);
            config.auth.jwks_url = Some(jwks.clone());
            if let Some(n) = options.audit_access_min_per_hour {
                config.anomaly_access_min_per_hour = n;
            }
            config.witness = options.witness;
            config.witness_interval_ms = options.witness_interval_ms;
            let app = caretrail_audit::Application::build(config)
                .await
                .expect("audit");
            audit_state = Some(app.state());
            audit = Some(run!(app));
        }

        let demo = serde_json::to_value(
            caretrail_identity::seed::demo(&identity_state, &identity)
                .await
                .unwrap(),
        )
        .unwrap();
        dirs.push(scratch);
        let stack = Self {
            prefix: bus_prefix,
            real: backend == Backend::Real,
            identity,
            ledger,
            store,
            state,
            consent,
            consent_state,
            consent_settings,
            audit,
            audit_state,
            jwks,
            demo,
            objects_dir,
            ledger_dir,
            store_db_file,
            http: reqwest::Client::new(),
            stops,
            tasks,
            _dirs: dirs,
        };
        stack.wait_for_ledger_keys().await;
        stack
    }

    /// Starts another consent replica on the same database and bus; returns its URL and a
    /// sender that stops it.
    pub async fn consent_replica(
        &self,
    ) -> (
        String,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let service = self
            .consent_settings
            .clone()
            .expect("consent is not running");
        let app = start_consent(service, &self.jwks).await;
        let port = app.port();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        (format!("http://127.0.0.1:{port}"), tx, task)
    }

    /// The audit service's URL.
    pub fn audit_url(&self) -> &str {
        self.audit.as_deref().expect("audit is not running")
    }

    /// `GET base+path` with a bearer token: the status and the JSON body (`Null` if none).
    pub async fn get_json(&self, base: &str, token: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// [`Self::get_json`] that must answer 200.
    pub async fn get_ok_json(&self, base: &str, token: &str, path: &str) -> Value {
        let (status, body) = self.get_json(base, token, path).await;
        assert_eq!(status, 200, "{path}");
        body
    }

    /// The audit service's Prometheus text.
    pub async fn audit_metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.audit_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Collects the payloads of events matching `binding` (on a queue of the test's own) from
    /// now on; keep the handle alive while collecting.
    pub async fn collect_events(
        &self,
        binding: &str,
    ) -> (
        caretrail_bus::ConsumerHandle,
        std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    ) {
        static QUEUES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = QUEUES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
        let sink = seen.clone();
        let handle = self
            .bus()
            .await
            .subscribe(
                caretrail_bus::Subscription::new(format!("test.events{n}"))
                    .bind(binding)
                    .ephemeral(),
                caretrail_bus::handler_fn(move |d| {
                    let sink = sink.clone();
                    async move {
                        sink.lock().unwrap().push(d.event.payload);
                        Ok(())
                    }
                }),
            )
            .await
            .unwrap();
        (handle, seen)
    }

    /// A bus connection on this stack's prefix (tests publish and consume with it).
    pub async fn bus(&self) -> std::sync::Arc<dyn caretrail_bus::Bus> {
        let settings = caretrail_bus::BusSettings {
            bus_url: if self.real {
                caretrail_runtime::testing::amqp_url()
            } else {
                "inprocess".to_string()
            }
            .into(),
            bus_prefix: self.prefix.clone(),
            bus_quorum_queues: false,
        };
        caretrail_bus::connect(&settings).await.unwrap()
    }

    /// The consent service's URL.
    pub fn consent_url(&self) -> &str {
        self.consent.as_deref().expect("consent is not running")
    }

    pub async fn stop(mut self) {
        for tx in self.stops.drain(..) {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            t.await.unwrap().unwrap();
        }
    }

    /// `tenants[t].institutions[i]` of the demo.
    pub fn institution(&self, t: usize, i: usize) -> &Value {
        &self.demo["tenants"][t]["institutions"][i]
    }

    pub fn tenant_id(&self, t: usize) -> String {
        self.demo["tenants"][t]["id"].as_str().unwrap().to_string()
    }

    /// An access token of the demo institution's partner app.
    pub async fn app_token(&self, t: usize, i: usize) -> String {
        let app = self.institution(t, i)["app"].clone();
        self.client_token(&app).await
    }

    /// The platform operator's token (client credentials of the demo's operator).
    pub async fn operator_token(&self) -> String {
        let operator = self.demo["operator"].clone();
        self.client_token(&operator).await
    }

    async fn client_token(&self, app: &Value) -> String {
        let resp: Value = self
            .http
            .post(format!("{}/v1/oauth/token", self.identity))
            .basic_auth(
                app["client_id"].as_str().unwrap(),
                app["client_secret"].as_str(),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"].as_str().expect("token").to_string()
    }

    /// An access token of a demo user (gm tenant only), by username.
    pub async fn user_token(&self, username: &str) -> String {
        for ins in self.demo["tenants"][0]["institutions"].as_array().unwrap() {
            for user in ins["users"].as_array().unwrap() {
                if user["username"] == username {
                    let password = user["password"].as_str().expect("password");
                    return self.login(0, username, password).await;
                }
            }
        }
        panic!("no demo user {username}");
    }

    /// An access token of user `username` of tenant `t`, by password.
    pub async fn login(&self, t: usize, username: &str, password: &str) -> String {
        let resp: Value = self
            .http
            .post(format!("{}/v1/auth/login", self.identity))
            .json(&json!({
                "tenant_id": self.tenant_id(t),
                "username": username,
                "password": password,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"].as_str().expect("token").to_string()
    }

    pub async fn register_patient(&self, token: &str, number: &str) -> String {
        let resp: Value = self
            .http
            .post(format!("{}/v1/patients", self.identity))
            .bearer_auth(token)
            .json(&json!({ "identifier": number }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["id"].as_str().expect("patient id").to_string()
    }

    /// The ledger's keys for the tenant (checkpoint vkey, institution keys).
    pub async fn ledger_keys(&self, token: &str) -> Value {
        self.http
            .get(format!("{}/v1/ledger/keys", self.ledger))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Identity registers tenants and keys on the ledger asynchronously; uploads are signed
    /// with those keys, so wait until every demo institution's key is there.
    async fn wait_for_ledger_keys(&self) {
        for t in 0..2 {
            let token = self.app_token(t, 0).await;
            let want = self.demo["tenants"][t]["institutions"]
                .as_array()
                .unwrap()
                .len();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let keys = self.ledger_keys(&token).await;
                let n = keys["institution_keys"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0);
                if n >= want {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "ledger keys never arrived: {keys}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Uploads `body` with the given metadata; returns the response.
    pub async fn upload(
        &self,
        token: &str,
        media_type: &str,
        metadata: &Value,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let encoded: String = metadata
            .to_string()
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect();
        self.http
            .post(format!("{}/v1/records", self.store))
            .bearer_auth(token)
            .header("content-type", media_type)
            .header("caretrail-metadata", encoded)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.store))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Where a record's ciphertext is stored (`None` once the row is gone).
    async fn storage_key(&self, tenant: &str, record: &str) -> Option<String> {
        use sea_orm::EntityTrait;
        let txn = caretrail_db::begin_tenant(&self.state.db, tenant)
            .await
            .unwrap();
        let row = caretrail_object_store::entities::record::Entity::find_by_id((
            record.to_string(),
            tenant.to_string(),
        ))
        .one(&txn)
        .await
        .unwrap();
        txn.commit().await.unwrap();
        row.map(|r| r.storage_key)
    }

    /// The raw stored object (ciphertext) of a record, if both row and object exist.
    pub async fn stored_object(&self, tenant: &str, record: &str) -> Option<Vec<u8>> {
        use futures::StreamExt as _;
        let key = self.storage_key(tenant, record).await?;
        let mut stream = match self.state.storage.get(&key).await {
            Ok(s) => s,
            Err(caretrail_object_store::storage::StorageError::NotFound) => return None,
            Err(e) => panic!("{e}"),
        };
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        Some(out)
    }

    /// Replaces a record's stored object (tamper tests).
    pub async fn replace_object(&self, tenant: &str, record: &str, bytes: Vec<u8>) {
        let key = self.storage_key(tenant, record).await.expect("record row");
        let mut writer = self.state.storage.create(&key).await.unwrap();
        writer.write(bytes.into()).await.unwrap();
        writer.finish().await.unwrap();
    }

    /// Collects this stack's `object-store.record.*` events from the bus.
    pub async fn record_events(
        &self,
    ) -> (
        caretrail_bus::ConsumerHandle,
        Arc<Mutex<Vec<caretrail_bus::Event>>>,
    ) {
        let settings = caretrail_bus::BusSettings {
            bus_url: if self.real {
                caretrail_runtime::testing::amqp_url()
            } else {
                "inprocess".to_string()
            }
            .into(),
            bus_prefix: self.prefix.clone(),
            bus_quorum_queues: false,
        };
        let bus = caretrail_bus::connect(&settings).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let handle = bus
            .subscribe(
                caretrail_bus::Subscription::new("test.record-events")
                    .bind("*.object-store.record.*")
                    .ephemeral(),
                caretrail_bus::handler_fn(move |delivery| {
                    let sink = sink.clone();
                    async move {
                        sink.lock().unwrap().push(delivery.event);
                        Ok(())
                    }
                }),
            )
            .await
            .unwrap();
        (handle, seen)
    }

    /// A record's row, read under the tenant's row-level security context.
    pub async fn record_row(
        &self,
        tenant: &str,
        id: &str,
    ) -> caretrail_object_store::entities::record::Model {
        use sea_orm::EntityTrait;
        let txn = caretrail_db::begin_tenant(&self.state.db, tenant)
            .await
            .unwrap();
        let row = caretrail_object_store::entities::record::Entity::find_by_id((
            id.to_string(),
            tenant.to_string(),
        ))
        .one(&txn)
        .await
        .unwrap()
        .expect("record row");
        txn.commit().await.unwrap();
        row
    }

    /// Waits until every queued ledger entry of the record is anchored; returns their kinds.
    pub async fn anchored_kinds(&self, record: &str, want: usize) -> Vec<String> {
        use caretrail_object_store::entities::anchor;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let rows = anchor::Entity::find()
                .filter(anchor::Column::SubjectId.eq(record))
                .order_by_asc(anchor::Column::Id)
                .all(&self.state.db)
                .await
                .unwrap();
            if rows.len() >= want && rows.iter().all(|r| r.status == "done") {
                return rows.into_iter().map(|r| r.kind).collect();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "anchors of {record} not done: {:?}",
                rows.iter()
                    .map(|r| (&r.kind, &r.status, &r.last_error))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn metadata(patient: &str, category: &str) -> Value {
    json!({
        "patient": patient,
        "category": category,
        "title": "胸部CT检查报告 / chest CT report",
        "encounter_date": "2026-11-01",
        "fhir_resource_type": "DiagnosticReport",
    })
}

async fn start_consent(
    service: caretrail_runtime::ServiceSettings,
    jwks: &str,
) -> caretrail_consent::Application {
    let mut config =
        caretrail_consent::Config::new(service, caretrail_consent::ConsentSettings::default());
    config.auth.jwks_url = Some(jwks.to_string());
    caretrail_consent::Application::build(config)
        .await
        .expect("consent")
}

/// Runs `infra/validate-fhir.py` (the FHIR R4 models of `make fhir-validator`) on a
/// resource; `Ok` with its report when valid, `Err` with the validator's complaints.
pub fn validate_fhir(resource: &Value) -> Result<String, String> {
    let python = std::env::var("FHIR_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/caretrail/fhir-venv")
        })
        .join("bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/validate-fhir.py");
    let dir = caretrail_runtime::testing::tempfile::tempdir().unwrap();
    let file = dir.path().join("resource.json");
    std::fs::write(&file, serde_json::to_vec_pretty(resource).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {} (make fhir-validator): {e}", python.display()));
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}
