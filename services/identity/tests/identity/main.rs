//! Identity through the gateway, on the embedded adapters and on real PostgreSQL + RabbitMQ:
//! client credentials, token verification with the published JWKS, refusals, tenant
//! isolation on every endpoint, the patient index, revocation and key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use caretrail_identity::{Application, Config};
use caretrail_platform::config::HttpSettings;
use caretrail_runtime::testing::{Backend, settings};
use serde_json::{Value, json};

struct Stack {
    gw: String,
    gateway_verifier: caretrail_platform::auth::Verifier,
    /// Identity itself and its bus, for more gateway replicas.
    identity_url: String,
    bus: caretrail_bus::BusSettings,
    _dir: Option<tempfile::TempDir>,
    operator: (String, String),
    http: reqwest::Client,
    db_url: String,
}

async fn stack(backend: Backend) -> Stack {
    stack_with(backend, 0).await
}

async fn stack_with(backend: Backend, key_activation_secs: i64) -> Stack {
    caretrail_platform::telemetry::init_for_tests();
    let (service, dir) = settings(backend, "identity").await;
    let bus = service.bus.clone();
    let db_url = {
        use secrecy::ExposeSecret;
        service.db.database_url.expose_secret().to_string()
    };
    let mut config = Config::new(
        service,
        caretrail_identity::secrets::MasterKey::generate_hex().unwrap(),
    );
    config.token_key_activation_secs = key_activation_secs;
    // No ledger runs here; the all-in-one test covers registration on the ledger.
    config.ledger_sync = false;
    let identity = Application::build(config).await.unwrap();
    let identity_url = format!("http://127.0.0.1:{}", identity.port());
    let state = identity.state();
    tokio::spawn(identity.run_until(std::future::pending()));
    let mut gw_config =
        caretrail_gateway::Config::with_single_upstream(HttpSettings::ephemeral(), &identity_url);
    gw_config.bus = bus.clone();
    let gateway = caretrail_gateway::Application::build(gw_config)
        .await
        .unwrap();
    let gw = format!("http://127.0.0.1:{}", gateway.port());
    let gateway_verifier = gateway.verifier();
    tokio::spawn(gateway.run_until(std::future::pending()));
    let cred = caretrail_identity::seed::bootstrap_operator(&state, "test operator")
        .await
        .unwrap();
    Stack {
        gw,
        gateway_verifier,
        identity_url,
        bus,
        _dir: dir,
        operator: (cred.client_id, cred.client_secret),
        http: reqwest::Client::new(),
        db_url,
    }
}

impl Stack {
    async fn token_for(&self, id: &str, secret: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/v1/oauth/token", self.gw))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn operator_token(&self) -> String {
        self.token_for(&self.operator.0.clone(), &self.operator.1.clone())
            .await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.gw))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A tenant with one institution and an admin app; returns (tenant, institution, admin token, app creds).
    async fn tenant(&self, op: &str, name: &str, suite: &str) -> (String, String, String) {
        let (s, t) = self
            .call(
                reqwest::Method::POST,
                "/v1/tenants",
                op,
                Some(json!({"name": name, "suite": suite})),
            )
            .await;
        assert_eq!(s, 201, "{t}");
        let tid = t["id"].as_str().unwrap().to_string();
        let (s, i) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/tenants/{tid}/institutions"),
                op,
                Some(json!({"code": "HC-1", "name": format!("{name} centre"), "level": "primary"})),
            )
            .await;
        assert_eq!(s, 201, "{i}");
        let iid = i["id"].as_str().unwrap().to_string();
        // The operator sets up the tenant's first administrator; that administrator, not the
        // operator, registers the tenant's apps.
        let password = "a long enough first-admin password";
        let (s, user) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/tenants/{tid}/users"),
                op,
                Some(json!({
                    "institution_id": iid, "username": "first.admin", "display_name": "First Admin",
                    "roles": ["tenant_admin"], "password": password,
                })),
            )
            .await;
        assert_eq!(s, 201, "{user}");
        let login = self
            .http
            .post(format!("{}/v1/auth/login", self.gw))
            .json(&json!({"tenant_id": tid, "username": "first.admin", "password": password}))
            .send()
            .await
            .unwrap();
        let login: Value = login.json().await.unwrap();
        let tenant_admin = login["access_token"].as_str().expect("login").to_string();
        let (s, app) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/tenants/{tid}/apps"),
                &tenant_admin,
                Some(json!({"name": "HIS", "institution_id": iid, "scopes": ["admin", "patients:write", "records:read"]})),
            )
            .await;
        assert_eq!(s, 201, "{app}");
        let token = self
            .token_for(
                app["client_id"].as_str().unwrap(),
                app["client_secret"].as_str().unwrap(),
            )
            .await;
        (tid, iid, token)
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(caretrail_runtime::testing::Backend::Embedded).await;
            }
            #[tokio::test]
            async fn postgres_and_rabbitmq() {
                super::$name(caretrail_runtime::testing::Backend::Real).await;
            }
        }
    };
}

async fn client_credentials_flow_and_jwks_verification(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, admin) = s.tenant(&op, "Tianning District Health Bureau", "gm").await;

    // A partner app for the institution, token by client_secret_post this time.
    let (status, app) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tid}/apps"),
            &admin,
            Some(json!({"name": "Benniu HIS", "institution_id": iid, "scopes": ["records:read", "records:write"]})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let resp = s
        .http
        .post(format!("{}/v1/oauth/token", s.gw))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app["client_id"].as_str().unwrap()),
            ("client_secret", app["client_secret"].as_str().unwrap()),
            ("scope", "records:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["scope"], "records:read",
        "narrowed to the requested scope"
    );
    let token = body["access_token"].as_str().unwrap();

    // Verify it independently with the published JWKS and discovery document.
    let discovery: Value = s
        .http
        .get(format!("{}/.well-known/openid-configuration", s.gw))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        discovery["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/v1/oauth/token")
    );
    let jwks: jsonwebtoken::jwk::JwkSet = s
        .http
        .get(format!("{}/.well-known/jwks.json", s.gw))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["caretrail"]);
    validation.set_issuer(&[discovery["issuer"].as_str().unwrap()]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["tenant"], tid);
    assert_eq!(claims["institution"], iid);
    assert_eq!(claims["kind"], "app");
    for c in ["exp", "nbf", "iat", "jti", "sub"] {
        assert!(!claims[c].is_null(), "claim {c}");
    }

    // The institution got a custodial signing key of the tenant's suite.
    let (status, ins) = s
        .call(
            reqwest::Method::GET,
            &format!("/v1/institutions/{iid}"),
            token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{ins}");
    assert_eq!(ins["signing_keys"][0]["algorithm"], "sm2");
    assert_eq!(ins["signing_keys"][0]["custody"], "custodial");

    // OAuth refusals.
    let bad = s
        .http
        .post(format!("{}/v1/oauth/token", s.gw))
        .basic_auth(app["client_id"].as_str().unwrap(), Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let b: Value = bad.json().await.unwrap();
    assert_eq!(b["error"], "invalid_client");
    assert_eq!(b["code"], "invalid_client");
    for (form, error) in [
        (vec![("grant_type", "password")], "unsupported_grant_type"),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "audit:read"),
            ],
            "invalid_scope",
        ),
    ] {
        let r = s
            .http
            .post(format!("{}/v1/oauth/token", s.gw))
            .basic_auth(
                app["client_id"].as_str().unwrap(),
                Some(app["client_secret"].as_str().unwrap()),
            )
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error);
    }

    // Rotating the secret invalidates the old one; revoking the app stops new tokens.
    let app_id = app["id"].as_str().unwrap();
    let (status, rotated) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/apps/{app_id}/rotate-secret"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_ne!(rotated["client_secret"], app["client_secret"]);
    let old = s
        .http
        .post(format!("{}/v1/oauth/token", s.gw))
        .basic_auth(app_id, Some(app["client_secret"].as_str().unwrap()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    s.token_for(app_id, rotated["client_secret"].as_str().unwrap())
        .await;
    let (status, _) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/apps/{app_id}/revoke"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let after = s
        .http
        .post(format!("{}/v1/oauth/token", s.gw))
        .basic_auth(app_id, Some(rotated["client_secret"].as_str().unwrap()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    // Suspending the tenant stops token issuance, and the tokens it holds stop working.
    let (status, other) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tid}/apps"),
            &admin,
            Some(json!({"name": "live", "institution_id": iid, "scopes": ["records:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let (status, _) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tid}/suspend"),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 200);
    s.refused_within_a_second(&admin, &format!("/v1/tenants/{tid}"))
        .await;
    let refused = s
        .http
        .post(format!("{}/v1/oauth/token", s.gw))
        .basic_auth(
            other["client_id"].as_str().unwrap(),
            Some(other["client_secret"].as_str().unwrap()),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        400,
        "an active app of a suspended tenant gets no token"
    );
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let (status, _) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tid}/resume"),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 200);
    s.token_for(
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
    )
    .await;
}
both!(client_credentials_flow_and_jwks_verification);

async fn tenant_isolation_on_every_endpoint(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (ta, ia, admin_a) = s.tenant(&op, "Tenant A", "intl").await;
    let (tb, ib, admin_b) = s.tenant(&op, "Tenant B", "gm").await;
    let (_, app_b_full) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tb}/apps"),
            &admin_b,
            Some(json!({"name": "B HIS", "institution_id": ib, "scopes": ["records:read"]})),
        )
        .await;
    let app_b = app_b_full["id"].as_str().unwrap().to_string();
    let (_, ins_b_before) = s
        .call(
            reqwest::Method::GET,
            &format!("/v1/institutions/{ib}"),
            &admin_b,
            None,
        )
        .await;
    use reqwest::Method as M;
    let probes: Vec<(M, String, Option<Value>)> = vec![
        (M::GET, format!("/v1/tenants/{tb}"), None),
        (M::GET, format!("/v1/tenants/{tb}/institutions"), None),
        (
            M::POST,
            format!("/v1/tenants/{tb}/institutions"),
            Some(json!({"code": "X-1", "name": "Intruder", "level": "tertiary"})),
        ),
        (M::GET, format!("/v1/institutions/{ib}"), None),
        (
            M::PATCH,
            format!("/v1/institutions/{ib}"),
            Some(json!({"name": "Renamed by A"})),
        ),
        (M::GET, format!("/v1/tenants/{tb}/apps"), None),
        (
            M::POST,
            format!("/v1/tenants/{tb}/apps"),
            Some(json!({"name": "x", "institution_id": ib, "scopes": ["admin"]})),
        ),
        (M::POST, format!("/v1/apps/{app_b}/rotate-secret"), None),
        (M::POST, format!("/v1/apps/{app_b}/revoke"), None),
        (M::GET, format!("/v1/tenants/{tb}/users"), None),
        (
            M::POST,
            format!("/v1/tenants/{tb}/users"),
            Some(
                json!({"institution_id": ib, "username": "spy", "display_name": "Spy", "roles": ["tenant_admin"], "password": "long enough password"}),
            ),
        ),
        (M::GET, format!("/v1/tenants/{tb}/ca"), None),
        (
            M::POST,
            format!("/v1/institutions/{ib}/keys"),
            Some(json!({})),
        ),
        (M::POST, format!("/v1/tenants/{tb}/suspend"), None),
    ];
    for (method, path, body) in probes {
        let (status, problem) = s.call(method.clone(), &path, &admin_a, body).await;
        assert_eq!(status, 404, "{method} {path} by tenant A: {problem}");
        assert_eq!(problem["code"], "not_found");
    }
    // Nothing of B changed: institution (keys included), app secret, users, tenant status.
    let (_, ins_b) = s
        .call(M::GET, &format!("/v1/institutions/{ib}"), &admin_b, None)
        .await;
    assert_eq!(ins_b, ins_b_before);
    s.token_for(&app_b, app_b_full["client_secret"].as_str().unwrap())
        .await;
    let (_, users_b) = s
        .call(M::GET, &format!("/v1/tenants/{tb}/users"), &admin_b, None)
        .await;
    // Only the first administrator the operator set up: nothing the other tenant tried.
    let users_b = users_b["items"].as_array().unwrap();
    assert_eq!(users_b.len(), 1, "{users_b:?}");
    assert_eq!(users_b[0]["username"], "first.admin");
    let (_, tenant_b) = s
        .call(M::GET, &format!("/v1/tenants/{tb}"), &admin_b, None)
        .await;
    assert_eq!(tenant_b["status"], "active");
    let (_, list_b) = s
        .call(
            M::GET,
            &format!("/v1/tenants/{tb}/institutions"),
            &admin_b,
            None,
        )
        .await;
    assert_eq!(list_b["items"].as_array().unwrap().len(), 1);
    // The operator reaches every tenant's institutions (row-level security included).
    let (status, seen) = s
        .call(M::GET, &format!("/v1/institutions/{ib}"), &op, None)
        .await;
    assert_eq!(status, 200, "{seen}");
    let unknown = caretrail_contracts::TenantId::generate();
    let (status, _) = s
        .call(
            M::GET,
            &format!("/v1/tenants/{unknown}/institutions"),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 404, "unknown tenant");
    // A tenant's app cannot act as operator.
    let (status, _) = s.call(M::GET, "/v1/tenants", &admin_a, None).await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            M::POST,
            "/v1/tenants",
            &admin_a,
            Some(json!({"name": "x", "suite": "gm"})),
        )
        .await;
    assert_eq!(status, 403);
    // And a non-admin app of A cannot administer A.
    let (_, app) = s
        .call(
            M::POST,
            &format!("/v1/tenants/{ta}/apps"),
            &admin_a,
            Some(json!({"name": "reader", "institution_id": ia, "scopes": ["records:read"]})),
        )
        .await;
    let reader = s
        .token_for(
            app["client_id"].as_str().unwrap(),
            app["client_secret"].as_str().unwrap(),
        )
        .await;
    let (status, _) = s
        .call(
            M::POST,
            &format!("/v1/tenants/{ta}/institutions"),
            &reader,
            Some(json!({"code": "Y", "name": "y", "level": "primary"})),
        )
        .await;
    assert_eq!(status, 403);
    // Own tenant: fine.
    let (status, _) = s
        .call(M::GET, &format!("/v1/tenants/{ta}"), &admin_a, None)
        .await;
    assert_eq!(status, 200);
}
both!(tenant_isolation_on_every_endpoint);

async fn patient_index_is_deterministic_and_unlinkable(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (ta, _ia, admin_a) = s.tenant(&op, "Tenant A", "gm").await;
    let (_tb, _ib, admin_b) = s.tenant(&op, "Tenant B", "gm").await;
    // A second institution of tenant A with its own app.
    let (_, ins2) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{ta}/institutions"),
            &admin_a,
            Some(json!({"code": "H-2", "name": "City hospital", "level": "tertiary"})),
        )
        .await;
    let (_, app2) = s
        .call(reqwest::Method::POST, &format!("/v1/tenants/{ta}/apps"), &admin_a,
              Some(json!({"name": "hospital HIS", "institution_id": ins2["id"], "scopes": ["patients:write"]})))
        .await;
    let hospital = s
        .token_for(
            app2["client_id"].as_str().unwrap(),
            app2["client_secret"].as_str().unwrap(),
        )
        .await;
    let card = "320402198001011234";
    let register = |token: String, id: &'static str| {
        let s = &s;
        async move {
            s.call(
                reqwest::Method::POST,
                "/v1/patients",
                &token,
                Some(json!({"identifier": id})),
            )
            .await
        }
    };
    let (st1, p1) = register(admin_a.clone(), "320402198001011234").await;
    assert_eq!(st1, 200, "{p1}");
    let (st2, p2) = register(hospital.clone(), "3204 0219-8001 011234").await;
    // Same number, other institution: same patient — and the same answer as the first
    // registration, so the hospital does not learn the person was already a patient here.
    assert_eq!(st2, 200);
    assert_eq!(p1, p2);
    assert_eq!(p1.as_object().unwrap().len(), 1, "{p1}");
    let (_, pb) = register(admin_b.clone(), "320402198001011234").await;
    assert_ne!(pb["id"], p1["id"], "another tenant gets an unrelated id");
    let (_, other) = register(admin_a.clone(), "320402198001011235").await;
    assert_ne!(other["id"], p1["id"]);
    assert!(p1["id"].as_str().unwrap().starts_with("pat_"));
    let (status, problem) = register(admin_a.clone(), "12").await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "identifier");
    // The raw number is stored nowhere (embedded: scan the database file itself).
    if let Some(path) = s.db_url.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap();
        let mut bytes = std::fs::read(file).unwrap_or_default();
        if let Ok(wal) = std::fs::read(format!("{file}-wal")) {
            bytes.extend(wal);
        }
        assert!(
            !bytes.windows(card.len()).any(|w| w == card.as_bytes()),
            "raw identifier found in the database"
        );
    }
}
both!(patient_index_is_deterministic_and_unlinkable);

async fn bad_input_is_400_with_field_details_and_writes_nothing(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, admin) = s.tenant(&op, "Tenant", "intl").await;
    use reqwest::Method as M;
    let cases: Vec<(String, Value, &str)> = vec![
        ("/v1/tenants".into(), json!({"suite": "gm"}), "invalid_body"),
        (
            "/v1/tenants".into(),
            json!({"name": "x", "suite": "rot13"}),
            "invalid_body",
        ),
        (
            "/v1/tenants".into(),
            json!({"name": "", "suite": "gm"}),
            "invalid_request",
        ),
        (
            "/v1/tenants".into(),
            json!({"name": "x".repeat(201), "suite": "gm"}),
            "invalid_request",
        ),
        (
            "/v1/tenants".into(),
            json!({"name": 42, "suite": "gm"}),
            "invalid_body",
        ),
        (
            "/v1/tenants".into(),
            json!({"name": "x", "suite": "gm", "extra": 1}),
            "invalid_body",
        ),
        (
            format!("/v1/tenants/{tid}/institutions"),
            json!({"code": "A", "name": "x", "level": "quaternary"}),
            "invalid_body",
        ),
        (
            format!("/v1/tenants/{tid}/institutions"),
            json!({"code": "has space", "name": "x", "level": "primary"}),
            "invalid_request",
        ),
        (
            format!("/v1/tenants/{tid}/apps"),
            json!({"name": "x", "institution_id": iid, "scopes": ["everything"]}),
            "invalid_request",
        ),
        (
            format!("/v1/tenants/{tid}/apps"),
            json!({"name": "x", "institution_id": "ins_nope", "scopes": ["admin"]}),
            "invalid_body",
        ),
    ];
    for (path, body, code) in cases {
        // Apps are registered by the tenant's administrators, tenants and institutions by the
        // operator.
        let caller = if path.ends_with("/apps") { &admin } else { &op };
        let (status, problem) = s.call(M::POST, &path, caller, Some(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {problem}");
        assert_eq!(problem["code"], code, "{path} {body}: {problem}");
        if code == "invalid_request" {
            assert!(
                !problem["errors"].as_array().unwrap().is_empty(),
                "field details: {problem}"
            );
        }
    }
    // Duplicate code is a conflict.
    let (status, _) = s
        .call(
            M::POST,
            &format!("/v1/tenants/{tid}/institutions"),
            &admin,
            Some(json!({"code": "HC-1", "name": "dup", "level": "primary"})),
        )
        .await;
    assert_eq!(status, 409);
    // Nothing was written.
    let (_, tenants) = s.call(M::GET, "/v1/tenants", &op, None).await;
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1);
    let (_, ins) = s
        .call(
            M::GET,
            &format!("/v1/tenants/{tid}/institutions"),
            &op,
            None,
        )
        .await;
    assert_eq!(ins["items"].as_array().unwrap().len(), 1);
    let (_, apps) = s
        .call(M::GET, &format!("/v1/tenants/{tid}/apps"), &op, None)
        .await;
    assert_eq!(apps["items"].as_array().unwrap().len(), 1);
}
both!(bad_input_is_400_with_field_details_and_writes_nothing);

async fn revoked_tokens_are_refused_within_a_second(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (tid, _iid, admin) = s.tenant(&op, "Tenant", "intl").await;
    let (status, _) = s
        .call(
            reqwest::Method::GET,
            &format!("/v1/tenants/{tid}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let resp = s
        .http
        .post(format!("{}/v1/oauth/revoke", s.gw))
        .bearer_auth(&admin)
        .form(&[("token", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The gateway (another process in production) learns it over the bus.
    let jti = jsonwebtoken::dangerous::insecure_decode::<Value>(&admin)
        .unwrap()
        .claims["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    while !s.gateway_verifier.is_revoked(&jti) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the gateway did not learn the revocation within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, problem) = s
        .call(
            reqwest::Method::GET,
            &format!("/v1/tenants/{tid}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(problem["code"], "token_revoked");
}
both!(revoked_tokens_are_refused_within_a_second);

async fn signing_keys_rotate_without_breaking_tokens(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let old_kid = jsonwebtoken::decode_header(&op).unwrap().kid.unwrap();
    let (status, rotated) = s
        .call(
            reqwest::Method::POST,
            "/v1/admin/token-keys/rotate",
            &op,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    // With activation 0 (tests only) the key signs the moment it is published; verifiers
    // refetch the JWKS at most every 200 ms. Real deployments publish keys minutes ahead.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let jwks: Value = s
        .http
        .get(format!("{}/.well-known/jwks.json", s.gw))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
    // A token signed before the rotation still works; new tokens use the new key.
    let (status, _) = s.call(reqwest::Method::GET, "/v1/tenants", &op, None).await;
    assert_eq!(status, 200);
    let fresh = s.operator_token().await;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap(),
        new_kid
    );
    let (status, _) = s
        .call(reqwest::Method::GET, "/v1/tenants", &fresh, None)
        .await;
    assert_eq!(status, 200, "the gateway learns the new kid from the JWKS");
}
both!(signing_keys_rotate_without_breaking_tokens);

async fn new_signing_keys_are_published_before_they_sign(backend: Backend) {
    let s = stack_with(backend, 600).await;
    let op = s.operator_token().await;
    let old_kid = jsonwebtoken::decode_header(&op).unwrap().kid.unwrap();
    let (_, rotated) = s
        .call(
            reqwest::Method::POST,
            "/v1/admin/token-keys/rotate",
            &op,
            None,
        )
        .await;
    let next = rotated["kid"].as_str().unwrap();
    let jwks: Value = s
        .http
        .get(format!("{}/.well-known/jwks.json", s.gw))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == next),
        "published"
    );
    let fresh = s.operator_token().await;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap(),
        old_kid,
        "but not signing yet"
    );
}
both!(new_signing_keys_are_published_before_they_sign);

async fn users_log_in_get_locked_out_refresh_and_log_out(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, admin) = s.tenant(&op, "Tenant", "gm").await;
    let (tb, _ib, _admin_b) = s.tenant(&op, "Other", "intl").await;
    use reqwest::Method as M;
    let password = "correct horse battery staple";
    let (status, user) = s
        .call(M::POST, &format!("/v1/tenants/{tid}/users"), &admin,
              Some(json!({"institution_id": iid, "username": "dr.wang", "display_name": "Dr Wang", "roles": ["physician"], "password": password})))
        .await;
    assert_eq!(status, 201, "{user}");
    assert!(user.get("password_hash").is_none() && !user.to_string().contains(password));
    // Input refusals and isolation.
    let (status, p) = s
        .call(M::POST, &format!("/v1/tenants/{tid}/users"), &admin,
              Some(json!({"institution_id": iid, "username": "x.y", "display_name": "X", "roles": ["physician"], "password": "short"})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(p["errors"][0]["field"], "password");
    let (status, _) = s
        .call(M::POST, &format!("/v1/tenants/{tid}/users"), &admin,
              Some(json!({"institution_id": iid, "username": "x.y", "display_name": "X", "roles": ["surgeon"], "password": password})))
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .call(M::POST, &format!("/v1/tenants/{tid}/users"), &admin,
              Some(json!({"institution_id": iid, "username": "dr.wang", "display_name": "Dup", "roles": ["physician"], "password": password})))
        .await;
    assert_eq!(status, 409);
    let (status, _) = s
        .call(M::POST, &format!("/v1/tenants/{tb}/users"), &admin,
              Some(json!({"institution_id": iid, "username": "spy", "display_name": "Spy", "roles": ["tenant_admin"], "password": password})))
        .await;
    assert_eq!(status, 404, "tenant A cannot create users in tenant B");

    let login = |username: &'static str, pw: &'static str| {
        let s = &s;
        let tid = tid.clone();
        async move {
            let r = s
                .http
                .post(format!("{}/v1/auth/login", s.gw))
                .json(&json!({"tenant_id": tid, "username": username, "password": pw}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, session) = login("dr.wang", "correct horse battery staple").await;
    assert_eq!(status, 200, "{session}");
    let access = session["access_token"].as_str().unwrap().to_string();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&access)
        .unwrap()
        .claims;
    assert_eq!(claims["kind"], "user");
    assert_eq!(claims["roles"], json!(["physician"]));
    let (status, _) = s
        .call(M::GET, &format!("/v1/tenants/{tid}"), &access, None)
        .await;
    assert_eq!(status, 200);

    // Refresh rotates; reusing the old refresh token ends the whole session.
    let r1 = session["refresh_token"].as_str().unwrap().to_string();
    let refresh = |token: String| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}/v1/auth/refresh", s.gw))
                .json(&json!({"refresh_token": token}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, second) = refresh(r1.clone()).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    let (status, _) = refresh(r1.clone()).await;
    assert_eq!(status, 401, "a used refresh token is refused");
    let (status, _) = refresh(r2.clone()).await;
    assert_eq!(status, 401, "and its whole family is revoked");

    // Logout revokes the access token and the refresh family.
    let (_, third) = login("dr.wang", "correct horse battery staple").await;
    let a3 = third["access_token"].as_str().unwrap().to_string();
    let r3 = third["refresh_token"].as_str().unwrap().to_string();
    let (status, _) = s
        .call(
            M::POST,
            "/v1/auth/logout",
            &a3,
            Some(json!({"refresh_token": r3})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = refresh(r3).await;
    assert_eq!(status, 401);
    let started = std::time::Instant::now();
    loop {
        let (status, _) = s
            .call(M::GET, &format!("/v1/tenants/{tid}"), &a3, None)
            .await;
        if status == 401 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Brute force: five wrong passwords lock the account, even for the right one.
    let (status, p) = login("nobody", "whatever-password").await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    for _ in 0..5 {
        let (status, _) = login("dr.wang", "wrong password 123").await;
        assert_eq!(status, 401);
    }
    let (status, p) = login("dr.wang", "correct horse battery staple").await;
    assert_eq!(status, 401, "locked: {p}");
    assert_eq!(
        p["code"], "invalid_credentials",
        "same answer as a wrong password"
    );
}
both!(users_log_in_get_locked_out_refresh_and_log_out);

fn openssl(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (OpenSSL 3) is required for the certificate tests");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn certificates_verify_with_openssl_rotate_and_revoke(backend: Backend) {
    let s = stack(backend).await;
    let op = s.operator_token().await;
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    for suite in ["gm", "intl"] {
        let (tid, iid, admin) = s.tenant(&op, &format!("Bureau {suite}"), suite).await;
        let (_, ca) = s
            .call(M::GET, &format!("/v1/tenants/{tid}/ca"), &admin, None)
            .await;
        let (_, ins) = s
            .call(M::GET, &format!("/v1/institutions/{iid}"), &admin, None)
            .await;
        let key = &ins["signing_keys"][0];
        std::fs::write(
            dir.path().join("ca.pem"),
            ca["certificate_pem"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("cert.pem"),
            key["certificate_pem"].as_str().unwrap(),
        )
        .unwrap();
        let verify: Vec<&str> = if suite == "gm" {
            vec![
                "verify",
                "-x509_strict",
                "-vfyopt",
                "distid:1234567812345678",
                "-CAfile",
                "ca.pem",
                "cert.pem",
            ]
        } else {
            vec![
                "verify",
                "-x509_strict",
                "-check_ss_sig",
                "-CAfile",
                "ca.pem",
                "cert.pem",
            ]
        };
        let (ok, text) = openssl(&verify, dir.path());
        assert!(
            ok,
            "OpenSSL verifies the {suite} institution certificate: {text}"
        );
        let (_, subject) = openssl(
            &["x509", "-in", "cert.pem", "-noout", "-subject"],
            dir.path(),
        );
        assert!(
            subject.contains(&iid) && subject.contains(&tid) && subject.contains("primary"),
            "{subject}"
        );

        // Rotation: the old key is retired but valid for signatures made before it.
        let old_serial = key["serial"].as_str().unwrap().to_string();
        let before_rotation = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, new_key) = s
            .call(
                M::POST,
                &format!("/v1/institutions/{iid}/keys"),
                &admin,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 201, "{new_key}");
        assert_eq!(new_key["status"], "active");
        let status_of = |serial: String, at: Option<chrono::DateTime<chrono::Utc>>| {
            let s = &s;
            let admin = admin.clone();
            async move {
                let q = at
                    .map(|t| {
                        format!(
                            "?at={}",
                            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                                .replace('+', "%2B")
                        )
                    })
                    .unwrap_or_default();
                s.call(
                    M::GET,
                    &format!("/v1/certificates/{serial}/status{q}"),
                    &admin,
                    None,
                )
                .await
                .1
            }
        };
        let old_then = status_of(old_serial.clone(), Some(before_rotation)).await;
        assert_eq!(old_then["status"], "valid", "{old_then}");
        assert_eq!(old_then["valid_at_time"], true);
        let old_now = status_of(old_serial.clone(), None).await;
        assert_eq!(old_now["status"], "retired");
        assert_eq!(old_now["valid_at_time"], false);

        // Revocation: from now on invalid, before it still valid.
        let new_serial = new_key["serial"].as_str().unwrap().to_string();
        let before_revocation = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let new_id = new_key["id"].as_str().unwrap();
        let (status, revoked) = s
            .call(
                M::POST,
                &format!("/v1/institutions/{iid}/keys/{new_id}/revoke"),
                &admin,
                Some(json!({"reason": "key_compromise"})),
            )
            .await;
        assert_eq!(status, 200, "{revoked}");
        assert_eq!(
            status_of(new_serial.clone(), None).await["status"],
            "revoked"
        );
        assert_eq!(
            status_of(new_serial.clone(), Some(before_revocation)).await["status"],
            "valid"
        );
        let (status, _) = s
            .call(
                M::POST,
                &format!("/v1/institutions/{iid}/keys/{new_id}/revoke"),
                &admin,
                Some(json!({"reason": "again"})),
            )
            .await;
        assert_eq!(status, 409);

        // Bring your own key: the public key of the tenant's suite only.
        let algorithm = if suite == "gm" {
            caretrail_crypto::SignatureAlgorithm::Sm2
        } else {
            caretrail_crypto::SignatureAlgorithm::Ed25519
        };
        let own = caretrail_crypto::SigningKey::generate(algorithm).unwrap();
        let challenge = format!(
            "caretrail/byok/v1 {tid} {iid} {}",
            own.public_key().key_id().to_hex()
        );
        let proof = own.sign(challenge.as_bytes()).unwrap().to_base64();
        let keys_path = format!("/v1/institutions/{iid}/keys");
        let pem = own.public_key().to_spki_pem();
        let (status, p) = s
            .call(
                M::POST,
                &keys_path,
                &admin,
                Some(json!({"public_key_pem": pem})),
            )
            .await;
        assert_eq!(
            (status, p["errors"][0]["field"].as_str()),
            (400, Some("proof")),
            "no proof of possession"
        );
        let stranger = caretrail_crypto::SigningKey::generate(algorithm).unwrap();
        let forged = stranger.sign(challenge.as_bytes()).unwrap().to_base64();
        let (status, _) = s
            .call(
                M::POST,
                &keys_path,
                &admin,
                Some(json!({"public_key_pem": pem, "proof": forged})),
            )
            .await;
        assert_eq!(status, 400, "proof by another key");
        let (status, byok) = s
            .call(
                M::POST,
                &keys_path,
                &admin,
                Some(json!({"public_key_pem": pem, "proof": proof})),
            )
            .await;
        assert_eq!(status, 201, "{byok}");
        assert_eq!(byok["custody"], "byok");
        std::fs::write(
            dir.path().join("byok.pem"),
            byok["certificate_pem"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = verify.clone();
        *v.last_mut().unwrap() = "byok.pem";
        assert!(openssl(&v, dir.path()).0, "BYOK certificate verifies too");
        let wrong = if suite == "gm" {
            caretrail_crypto::SignatureAlgorithm::Ed25519
        } else {
            caretrail_crypto::SignatureAlgorithm::Sm2
        };
        let other = caretrail_crypto::SigningKey::generate(wrong).unwrap();
        let (status, p) = s
            .call(
                M::POST,
                &format!("/v1/institutions/{iid}/keys"),
                &admin,
                Some(json!({"public_key_pem": other.public_key().to_spki_pem()})),
            )
            .await;
        assert_eq!(
            (status, p["errors"][0]["field"].as_str()),
            (400, Some("public_key_pem"))
        );
        let (status, _) = s
            .call(
                M::POST,
                &format!("/v1/institutions/{iid}/keys"),
                &admin,
                Some(json!({"public_key_pem": own.to_pkcs8_pem().unwrap().as_str()})),
            )
            .await;
        assert_eq!(status, 400, "a private key is refused");

        // Another tenant sees none of it.
        let (_, _, intruder) = s.tenant(&op, &format!("Intruder {suite}"), suite).await;
        let (status, _) = s
            .call(
                M::POST,
                &format!("/v1/institutions/{iid}/keys"),
                &intruder,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 404);
        let (status, _) = s
            .call(
                M::GET,
                &format!("/v1/certificates/{old_serial}/status"),
                &intruder,
                None,
            )
            .await;
        assert_eq!(status, 404);
        let (status, _) = s
            .call(M::GET, &format!("/v1/tenants/{tid}/ca"), &intruder, None)
            .await;
        assert_eq!(status, 404);
    }
}
both!(certificates_verify_with_openssl_rotate_and_revoke);

/// Separation of duties: the platform operator sets a tenant up (institutions, its first
/// administrators) and can cut things off in an incident, but does not decide who reads
/// clinical data — no physicians, no apps, no app secrets, no signing keys of its choosing.
async fn operator_runs_tenants_but_cannot_reach_clinical_data(backend: Backend) {
    use reqwest::Method as M;
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, admin) = s.tenant(&op, "Tenant", "gm").await;
    let user = |username: &str, roles: Value| {
        json!({
            "institution_id": iid, "username": username, "display_name": "Someone",
            "roles": roles, "password": "a long enough password here",
        })
    };
    let users = format!("/v1/tenants/{tid}/users");
    for roles in [
        json!(["physician"]),
        json!(["auditor"]),
        json!(["tenant_admin", "physician"]),
        json!([]),
    ] {
        let (status, problem) = s
            .call(M::POST, &users, &op, Some(user("op.made", roles.clone())))
            .await;
        assert_eq!(status, 403, "{roles}: {problem}");
        assert_eq!(problem["code"], "forbidden");
    }
    let (status, second) = s
        .call(
            M::POST,
            &users,
            &op,
            Some(user("second.admin", json!(["tenant_admin"]))),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    // Apps, their secrets and the institutions' keys are the tenant's own business.
    let (status, _) = s
        .call(
            M::POST,
            &format!("/v1/tenants/{tid}/apps"),
            &op,
            Some(json!({"name": "x", "institution_id": iid, "scopes": ["records:read"]})),
        )
        .await;
    assert_eq!(status, 403);
    let (_, apps) = s
        .call(M::GET, &format!("/v1/tenants/{tid}/apps"), &op, None)
        .await;
    let app_id = apps["items"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = s
        .call(
            M::POST,
            &format!("/v1/apps/{app_id}/rotate-secret"),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 403, "a new secret is a way in");
    let (status, _) = s
        .call(
            M::POST,
            &format!("/v1/institutions/{iid}/keys"),
            &op,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status, 403,
        "a key of the operator's choosing would sign for the institution"
    );
    let (status, _) = s
        .call(
            M::PATCH,
            &format!("/v1/institutions/{iid}"),
            &op,
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, 403);
    // The tenant's administrators still can; the operator can still cut an app off.
    let (status, _) = s
        .call(
            M::POST,
            &format!("/v1/apps/{app_id}/rotate-secret"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call(M::POST, &format!("/v1/apps/{app_id}/revoke"), &op, None)
        .await;
    assert_eq!(status, 200);
    let (status, listed) = s.call(M::GET, &users, &op, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
}
both!(operator_runs_tenants_but_cannot_reach_clinical_data);

/// A flood of logins is refused before it costs anything: oversized passwords with a 400,
/// then, per client address and per account, 429 with `Retry-After` — never a 5xx, and the
/// tenant's apps keep getting tokens meanwhile.
async fn login_floods_are_bounded_and_throttled(backend: Backend) {
    use reqwest::Method as M;
    let s = stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, admin) = s.tenant(&op, "Tenant", "gm").await;
    let password = "correct horse battery staple";
    let (status, _) = s
        .call(M::POST, &format!("/v1/tenants/{tid}/users"), &admin,
              Some(json!({"institution_id": iid, "username": "dr.wang", "display_name": "Dr Wang", "roles": ["physician"], "password": password})))
        .await;
    assert_eq!(status, 201);
    let (_, app) = s
        .call(
            M::POST,
            &format!("/v1/tenants/{tid}/apps"),
            &admin,
            Some(json!({"name": "HIS", "institution_id": iid, "scopes": ["records:read"]})),
        )
        .await;
    let login = |tenant: String, username: String, pw: String| {
        let http = s.http.clone();
        let url = format!("{}/v1/auth/login", s.gw);
        async move {
            let r = http
                .post(url)
                .json(&json!({"tenant_id": tenant, "username": username, "password": pw}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            (
                status,
                retry,
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // 64 KiB is no password: the gateway refuses the body before it is read or forwarded;
    // 2 KiB passes the gateway and identity refuses it before any work.
    let (status, _, problem) = login(tid.clone(), "dr.wang".into(), "x".repeat(64 << 10)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("payload_too_large")),
        "{problem}"
    );
    let (status, _, problem) = login(tid.clone(), "dr.wang".into(), "x".repeat(2 << 10)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_request")),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["field"], "password");

    // A flood from one address: 401s until its bucket is empty, then 429 with Retry-After.
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let tenant = caretrail_contracts::TenantId::generate().to_string();
            tokio::spawn(login(tenant, format!("nobody{i}"), "wrong password".into()))
        })
        .collect();
    let mut statuses = Vec::new();
    for f in flood {
        let (status, retry, body) = f.await.unwrap();
        assert!(status == 401 || status == 429, "{status}: {body}");
        if status == 429 {
            assert_eq!(body["code"], "too_many_requests");
            assert!(retry.is_some_and(|r| r >= 1), "Retry-After on a 429");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Apps authenticate with their secret, not a password: unaffected.
    s.token_for(
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    )
    .await;
}
both!(login_floods_are_bounded_and_throttled);

mod lifecycle;
