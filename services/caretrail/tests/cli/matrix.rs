//! One authorization matrix, tested from the OpenAPI document: every operation of
//! `openapi/caretrail.json` is called through the gateway of `caretrail serve --seed-demo` as
//! every kind of caller, and each status is compared with the committed table in
//! `docs/authorization.md`. An operation without a row (a new route) fails the test, as does a
//! row without an operation.
//!
//! Rows run in the table's order and, within a row, callers in the columns' order, so that
//! state changes are deterministic: an erasure succeeds for the first caller allowed and is
//! `410` for the next; the table says so. Objects a row changes for good (apps rotated or
//! revoked, an institution's key, referrals moving through their states) are made for that row
//! during set-up.
//!
//! `MATRIX_PRINT=1` prints the table as observed (to review a change, never to paste blindly).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, client_credentials, start_with_env};

/// The callers, in the table's column order.
const CALLERS: [&str; 13] = [
    "phys_own",
    "phys_other",
    "inst_admin",
    "tenant_admin",
    "auditor",
    "app_benniu",
    "app_hospital",
    "app_bureau",
    "app_other_tenant",
    "operator",
    "none",
    "expired",
    "revoked",
];

const TABLE: &str = include_str!("../../../../docs/authorization.md");
const OPENAPI: &str = include_str!("../../../../openapi/caretrail.json");

/// Access tokens live this long on the matrix server (the shortest identity allows), so that a
/// token taken at the start is expired (past the 30 s leeway) by the time the column runs.
const TTL_SECS: u64 = 60;
const LEEWAY_SECS: u64 = 30;

/// `(operation id, expected status per caller)` in the table's order.
fn table() -> Vec<(String, Vec<u16>)> {
    let mut rows = Vec::new();
    for line in TABLE.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `op` | method path | s1 | … | s13 |
        if cells.len() != CALLERS.len() + 4 || !cells[1].starts_with('`') {
            continue;
        }
        let op = cells[1].trim_matches('`').to_string();
        let statuses = cells[3..3 + CALLERS.len()]
            .iter()
            .map(|c| {
                c.parse::<u16>()
                    .unwrap_or_else(|_| panic!("{op}: {c:?} is not a status"))
            })
            .collect();
        rows.push((op, statuses));
    }
    rows
}

/// Every operation of the OpenAPI document: id → (method, path).
fn operations() -> BTreeMap<String, (String, String)> {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op["operationId"].as_str() {
                ops.insert(id.to_string(), (method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Ids the requests name, made during set-up.
#[derive(Default)]
struct Fixture {
    ids: BTreeMap<&'static str, String>,
    policy: Value,
    throwaway_token: String,
}

impl Fixture {
    fn id(&self, name: &str) -> &str {
        self.ids
            .get(name)
            .unwrap_or_else(|| panic!("fixture {name} was not made"))
    }
}

enum Body {
    None,
    Json(Value),
    Form(Vec<(&'static str, String)>),
    Upload { metadata: Value, bytes: Vec<u8> },
}

struct Req {
    path: String,
    body: Body,
}

fn req(path: String) -> Req {
    Req {
        path,
        body: Body::None,
    }
}

fn with_json(path: String, body: Value) -> Req {
    Req {
        path,
        body: Body::Json(body),
    }
}

/// The request each operation is called with (the same for every caller).
fn request(op: &str, path: &str, f: &Fixture) -> Req {
    let fill = |p: &str| {
        p.replace("{tenant_id}", f.id("tenant"))
            .replace("{institution_id}", f.id("institution"))
            .replace("{app_id}", f.id("app"))
            .replace("{record_id}", f.id("record"))
            .replace("{patient_id}", f.id("patient"))
            .replace("{grant_id}", f.id("grant"))
            .replace("{referral_id}", f.id("referral"))
            .replace("{serial}", f.id("serial"))
            .replace("{index}", f.id("record_index"))
            .replace("{size}", "1")
            .replace("{key_id}", f.id("clinic_key"))
            .replace("{user_id}", f.id("user"))
    };
    let valid_until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    match op {
        "revoke_app" => req(format!("/v1/apps/{}/revoke", f.id("app_to_revoke"))),
        "rotate_app_secret" => req(format!("/v1/apps/{}/rotate-secret", f.id("app_to_rotate"))),
        "audit_events" => req(format!("/v1/audit/events?record={}", f.id("record"))),
        "login" => with_json(
            "/v1/auth/login".into(),
            json!({"tenant_id": f.id("tenant"), "username": "nobody", "password": "not-a-password"}),
        ),
        "logout" | "refresh_session" => with_json(
            fill(path),
            json!({"refresh_token": format!("{}.not-a-refresh-token", f.id("tenant"))}),
        ),
        "declare_break_glass" => with_json(
            fill(path),
            json!({"patient": f.id("patient"), "justification": "authorization matrix: emergency access"}),
        ),
        "decide" => with_json(
            fill(path),
            json!({"action": "read_metadata", "records": [f.id("record")]}),
        ),
        "create_grant" => with_json(
            fill(path),
            json!({
                "patient": f.id("patient"), "recipient_institution": f.id("hospital"),
                "purpose": "referral", "scope": {"categories": ["lab_result"]},
                "valid_until": valid_until,
                "evidence": {"kind": "patient_signature", "reference": "matrix"},
            }),
        ),
        "revoke_grant" => with_json(
            format!("/v1/grants/{}/revoke", f.id("grant_to_revoke")),
            json!({"reason": "authorization matrix"}),
        ),
        "update_institution" => with_json(fill(path), json!({"name": f.id("institution_name")})),
        "rotate_institution_key" => with_json(
            format!("/v1/institutions/{}/keys", f.id("clinic")),
            json!({}),
        ),
        "revoke_institution_key" => with_json(
            format!(
                "/v1/institutions/{}/keys/{}/revoke",
                f.id("clinic"),
                f.id("clinic_key")
            ),
            json!({"reason": "authorization matrix"}),
        ),
        "ledger_cosign" => with_json(fill(path), json!({"tree_size": 1, "line": "— nobody AAAA"})),
        "ledger_consistency_proof" => req("/v1/ledger/proofs/consistency?from=1".into()),
        "ledger_inclusion_proof" => req("/v1/ledger/proofs/inclusion?index=0".into()),
        "revoke_token" => Req {
            path: fill(path),
            body: Body::Form(vec![("token", f.throwaway_token.clone())]),
        },
        "issue_token" => Req {
            path: fill(path),
            body: Body::Form(vec![("grant_type", "client_credentials".into())]),
        },
        "register_patient" => with_json(fill(path), json!({"identifier": "320402198001019999"})),
        "put_policy" => with_json(
            fill(path),
            json!({"policy": f.policy, "reason": "authorization matrix"}),
        ),
        "upload_record" => Req {
            path: fill(path),
            body: Body::Upload {
                metadata: json!({
                    "patient": f.id("patient"), "category": "lab_result",
                    "title": "matrix upload", "encounter_date": "2026-11-01",
                }),
                bytes: b"%PDF-1.7 matrix".to_vec(),
            },
        },
        "erase_record" => Req {
            path: format!("/v1/records/{}", f.id("record_to_erase")),
            body: Body::Json(json!({"reason": "authorization matrix"})),
        },
        "create_referral" => with_json(
            fill(path),
            json!({"patient": f.id("patient"), "to_institution": f.id("hospital"), "reason": "authorization matrix"}),
        ),
        "accept_referral" | "decline_referral" | "complete_referral" | "cancel_referral" => {
            let action = op.trim_end_matches("_referral");
            with_json(format!("/v1/referrals/{}/{action}", f.id(op)), json!({}))
        }
        "create_tenant" => with_json(
            fill(path),
            json!({"name": "Matrix District", "suite": "intl"}),
        ),
        "create_app" => with_json(
            fill(path),
            json!({"name": "matrix app", "institution_id": f.id("institution"), "scopes": ["records:read"]}),
        ),
        "create_institution" => with_json(
            fill(path),
            json!({"code": "MATRIX-NEW", "name": "Matrix Health Centre", "level": "primary"}),
        ),
        "create_user" => with_json(
            fill(path),
            json!({
                "institution_id": f.id("institution"), "username": "matrix.user",
                "display_name": "Matrix User", "roles": ["physician"],
                "password": "a long enough matrix password",
            }),
        ),
        "update_user" => with_json(fill(path), json!({"display_name": "Matrix Doctor"})),
        "disable_user" | "enable_user" => {
            req(fill(path).replace(f.id("user"), f.id("user_to_disable")))
        }
        "remove_user" => req(fill(path).replace(f.id("user"), f.id("user_to_remove"))),
        "reset_password" => with_json(
            fill(path),
            json!({"token": format!("{}.not-a-reset-token", f.id("tenant")), "new_password": "a long enough new password"}),
        ),
        "deactivate_institution" | "reactivate_institution" => {
            req(path.replace("{institution_id}", f.id("clinic")))
        }
        "suspend_tenant" | "resume_tenant" => {
            req(path.replace("{tenant_id}", f.id("other_tenant")))
        }
        _ => req(fill(path)),
    }
}

/// Credentials and tokens of every caller.
struct Callers {
    base: String,
    http: reqwest::Client,
    creds: Value,
    tokens: BTreeMap<&'static str, String>,
    taken: Instant,
}

impl Callers {
    async fn app_token(&self, t: usize, i: usize) -> String {
        let app = &self.creds["tenants"][t]["institutions"][i]["app"];
        self.client_token(app).await
    }

    async fn client_token(&self, app: &Value) -> String {
        let resp = client_credentials(&self.http, &self.base, app).await;
        let body: Value = resp.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("token: {body}"))
            .to_string()
    }

    async fn user_token(&self, username: &str) -> String {
        let tenant = &self.creds["tenants"][0];
        let user = tenant["institutions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["users"].as_array().cloned().unwrap_or_default())
            .find(|u| u["username"] == username)
            .unwrap_or_else(|| panic!("no demo user {username}"));
        let resp = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"tenant_id": tenant["id"], "username": username, "password": user["password"]}))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("login {username}: {body}"))
            .to_string()
    }

    /// Fresh tokens for every caller with an identity (the expired and revoked ones stay).
    async fn refresh(&mut self) {
        let users = [
            ("phys_own", "dr.zhang"),
            ("phys_other", "dr.li"),
            ("inst_admin", "admin.benniu"),
            ("tenant_admin", "admin.bureau"),
            ("auditor", "auditor.chen"),
        ];
        for (caller, username) in users {
            let token = self.user_token(username).await;
            self.tokens.insert(caller, token);
        }
        for (caller, t, i) in [
            ("app_benniu", 0, 0),
            ("app_hospital", 0, 1),
            ("app_bureau", 0, 2),
            ("app_other_tenant", 1, 0),
        ] {
            let token = self.app_token(t, i).await;
            self.tokens.insert(caller, token);
        }
        let operator = self.client_token(&self.creds["operator"].clone()).await;
        self.tokens.insert("operator", operator);
        self.taken = Instant::now();
    }

    async fn call(&self, caller: &str, method: &str, r: &Req) -> (u16, String) {
        let url = format!("{}{}", self.base, r.path);
        let mut rb = self.http.request(method.parse().unwrap(), url);
        if let Some(token) = self.tokens.get(caller) {
            rb = rb.bearer_auth(token);
        }
        rb = match &r.body {
            Body::None => rb,
            Body::Json(v) => rb.json(v),
            Body::Form(f) => rb.form(f),
            Body::Upload { metadata, bytes } => rb
                .header("content-type", "application/pdf")
                .header("caretrail-metadata", metadata.to_string())
                .body(bytes.clone()),
        };
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}

async fn ok_json(c: &Callers, caller: &str, method: &str, r: Req) -> Value {
    let (status, body) = c.call(caller, method, &r).await;
    assert!(
        (200..300).contains(&status),
        "set-up {method} {} as {caller}: {status} {body}",
        r.path
    );
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Makes what the rows name: a patient, records, grants, referrals in each state, apps and an
/// institution for the rows that change them for good.
async fn set_up(c: &Callers) -> Fixture {
    let mut f = Fixture::default();
    let t0 = &c.creds["tenants"][0];
    let id = |v: &Value| v.as_str().unwrap().to_string();
    f.ids.insert("tenant", id(&t0["id"]));
    f.ids
        .insert("other_tenant", id(&c.creds["tenants"][1]["id"]));
    f.ids
        .insert("institution", id(&t0["institutions"][0]["id"]));
    f.ids
        .insert("institution_name", id(&t0["institutions"][0]["name"]));
    f.ids.insert("hospital", id(&t0["institutions"][1]["id"]));

    // Institution keys reach the ledger asynchronously; uploads need them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = c
            .call("app_benniu", "GET", &req("/v1/ledger/keys".into()))
            .await;
        let keys: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status == 200
            && keys["institution_keys"]
                .as_array()
                .is_some_and(|k| k.len() >= 3)
        {
            break;
        }
        assert!(Instant::now() < deadline, "institution keys: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let patient = ok_json(
        c,
        "app_benniu",
        "POST",
        with_json(
            "/v1/patients".into(),
            json!({"identifier": "320402198001011234"}),
        ),
    )
    .await;
    f.ids.insert("patient", id(&patient["id"]));
    let patient_id = f.id("patient").to_string();
    let upload = |category: &'static str| Req {
        path: "/v1/records".into(),
        body: Body::Upload {
            metadata: json!({
                "patient": patient_id, "category": category,
                "title": "matrix record", "encounter_date": "2026-11-01",
            }),
            bytes: format!("%PDF-1.7 matrix {category}").into_bytes(),
        },
    };
    // The fixture record's ledger index is read by every caller, the other tenant's too,
    // whose own log grows with the refusals of its reads: lift the index well above what
    // that log can reach, so `ledger_entry` is "not found" there whatever the timing.
    for _ in 0..16 {
        ok_json(c, "app_benniu", "POST", upload("lab_result")).await;
    }
    let record = ok_json(c, "app_benniu", "POST", upload("exam_report")).await;
    f.ids.insert("record", id(&record["record"]["id"]));
    f.ids.insert(
        "record_index",
        record["receipt"]["ledger_index"]
            .as_u64()
            .unwrap()
            .to_string(),
    );
    let erasable = ok_json(c, "app_benniu", "POST", upload("exam_report")).await;
    f.ids
        .insert("record_to_erase", id(&erasable["record"]["id"]));

    let grant_body = json!({
        "patient": f.id("patient"), "recipient_institution": f.id("hospital"),
        "purpose": "referral", "scope": {"categories": ["lab_result"]},
        "valid_until": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
        "evidence": {"kind": "patient_signature", "reference": "matrix"},
    });
    for name in ["grant", "grant_to_revoke"] {
        let g = ok_json(
            c,
            "phys_own",
            "POST",
            with_json("/v1/grants".into(), grant_body.clone()),
        )
        .await;
        f.ids.insert(name, id(&g["id"]));
    }
    let referral = json!({
        "patient": f.id("patient"), "to_institution": f.id("hospital"),
        "reason": "authorization matrix",
    });
    for name in [
        "referral",
        "accept_referral",
        "decline_referral",
        "complete_referral",
        "cancel_referral",
    ] {
        let r = ok_json(
            c,
            "phys_own",
            "POST",
            with_json("/v1/referrals".into(), referral.clone()),
        )
        .await;
        f.ids.insert(name, id(&r["id"]));
    }
    ok_json(
        c,
        "phys_other",
        "POST",
        with_json(
            format!("/v1/referrals/{}/accept", f.id("complete_referral")),
            json!({}),
        ),
    )
    .await;

    let tenant = f.id("tenant").to_string();
    for name in ["app", "app_to_rotate", "app_to_revoke"] {
        let app = ok_json(
            c,
            "tenant_admin",
            "POST",
            with_json(
                format!("/v1/tenants/{tenant}/apps"),
                json!({"name": name, "institution_id": f.id("institution"), "scopes": ["records:read"]}),
            ),
        )
        .await;
        f.ids.insert(name, id(&app["id"]));
    }
    // Benniu physicians for the user rows: one read and renamed, one disabled and enabled,
    // one removed.
    for (name, username) in [
        ("user", "matrix.doctor"),
        ("user_to_disable", "matrix.leaving"),
        ("user_to_remove", "matrix.gone"),
    ] {
        let user = ok_json(
            c,
            "tenant_admin",
            "POST",
            with_json(
                format!("/v1/tenants/{tenant}/users"),
                json!({
                    "institution_id": f.id("institution"), "username": username,
                    "display_name": username, "roles": ["physician"],
                    "password": "a long enough matrix password",
                }),
            ),
        )
        .await;
        f.ids.insert(name, id(&user["id"]));
    }
    let clinic = ok_json(
        c,
        "tenant_admin",
        "POST",
        with_json(
            format!("/v1/tenants/{tenant}/institutions"),
            json!({"code": "MATRIX-CLINIC", "name": "Matrix Clinic", "level": "primary"}),
        ),
    )
    .await;
    f.ids.insert("clinic", id(&clinic["id"]));
    let clinic = ok_json(
        c,
        "tenant_admin",
        "GET",
        req(format!("/v1/institutions/{}", f.id("clinic"))),
    )
    .await;
    let active = |i: &Value| {
        i["signing_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["status"] == "active")
            .cloned()
            .unwrap_or_else(|| panic!("no active key: {i}"))
    };
    f.ids.insert("clinic_key", id(&active(&clinic)["id"]));
    let benniu = ok_json(
        c,
        "tenant_admin",
        "GET",
        req(format!("/v1/institutions/{}", f.id("institution"))),
    )
    .await;
    f.ids.insert("serial", id(&active(&benniu)["serial"]));
    let policy = ok_json(c, "tenant_admin", "GET", req("/v1/policy".into())).await;
    f.policy = policy["policy"].clone();
    f.throwaway_token = c.app_token(0, 0).await;

    // The built-in witness cosigns within its interval; wait, so the row is deterministic.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = c
            .call(
                "auditor",
                "GET",
                &req("/v1/ledger/cosigned-checkpoint".into()),
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no cosigned checkpoint");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    f
}

async fn matrix(env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env.push(("CARETRAIL_ACCESS_TOKEN_TTL_SECS", TTL_SECS.to_string()));
    let server: Server = start_with_env(dir.path(), true, &env).await;
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("dev-credentials.json")).unwrap(),
    )
    .unwrap();
    let mut c = Callers {
        base: server.base.clone(),
        http: reqwest::Client::new(),
        creds,
        tokens: BTreeMap::new(),
        taken: Instant::now(),
    };
    c.refresh().await;
    // A token that will have expired, and one revoked now (RFC 7009, by its holder).
    let expired = c.app_token(0, 0).await;
    let expired_at = Instant::now() + Duration::from_secs(TTL_SECS + LEEWAY_SECS + 2);
    let revoked = c.app_token(0, 0).await;
    let resp = c
        .http
        .post(format!("{}/v1/oauth/revoke", c.base))
        .bearer_auth(&revoked)
        .form(&[("token", revoked.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    c.tokens.insert("revoked", revoked);

    let f = set_up(&c).await;
    let ops = operations();
    let rows = table();
    let mut problems = Vec::new();
    let listed: Vec<&str> = rows.iter().map(|(op, _)| op.as_str()).collect();
    for op in ops.keys() {
        if !listed.contains(&op.as_str()) {
            problems.push(format!("{op}: no row in docs/authorization.md"));
        }
    }
    let mut observed: Vec<(String, Vec<u16>)> = Vec::new();
    let mut expired_column = Vec::new();
    for (op, want) in &rows {
        let Some((method, path)) = ops.get(op) else {
            problems.push(format!(
                "{op}: a row for no operation of the OpenAPI document"
            ));
            continue;
        };
        // Tokens live a minute: take new ones well before they lapse.
        if c.taken.elapsed() > Duration::from_secs(TTL_SECS / 2) {
            c.refresh().await;
        }
        let r = request(op, path, &f);
        let mut got = Vec::new();
        for (i, caller) in CALLERS.iter().enumerate() {
            if *caller == "expired" {
                // Run at the end, once the token has expired.
                expired_column.push((op.clone(), method.clone(), i));
                got.push(0);
                continue;
            }
            let (status, body) = c.call(caller, method, &r).await;
            if status != want[i] {
                problems.push(format!(
                    "{op} as {caller}: {status}, the table says {} — {}",
                    want[i],
                    body.chars().take(300).collect::<String>()
                ));
            }
            got.push(status);
        }
        observed.push((op.clone(), got));
        // Logging out revokes the caller's own token; suspending a tenant cuts off every
        // token of it (the other tenant's app), resuming it lets new ones work.
        if op == "logout" || op == "resume_tenant" {
            c.refresh().await;
        }
    }
    let wait = expired_at.saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    c.tokens.insert("expired", expired);
    for (op, method, i) in expired_column {
        let path = &ops[&op].1;
        let r = request(&op, path, &f);
        let (status, body) = c.call("expired", &method, &r).await;
        let want = rows.iter().find(|(o, _)| *o == op).unwrap().1[i];
        if status != want {
            problems.push(format!(
                "{op} as expired: {status}, the table says {want} — {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        if let Some(row) = observed.iter_mut().find(|(o, _)| *o == op) {
            row.1[i] = status;
        }
    }
    if std::env::var("MATRIX_PRINT").is_ok() {
        for (op, got) in &observed {
            let (method, path) = &ops[op];
            let cells: Vec<String> = got.iter().map(u16::to_string).collect();
            println!("| `{op}` | {method} {path} | {} |", cells.join(" | "));
        }
    }
    server.stop().await;
    assert!(
        problems.is_empty(),
        "{} differences from docs/authorization.md:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn every_operation_answers_every_caller_as_the_table_says_embedded() {
    matrix(&[]).await;
}

#[tokio::test]
async fn every_operation_answers_every_caller_as_the_table_says_on_postgres_rabbitmq_and_s3() {
    let real = super::RealBackend::new("matrix");
    matrix(&real.env).await;
    real.drop_database();
}
