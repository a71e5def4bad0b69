//! Gateway behaviour against a stub upstream built on the same platform HTTP stack the
//! services use: routing, streaming, request id and trace propagation, limits, timeouts, and
//! problem+json for every failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use caretrail_gateway::{Application, Config};
use caretrail_platform::{
    config::HttpSettings,
    health::Health,
    http::{ServerParts, resource, start},
    metrics::Metrics,
};
use futures::StreamExt;

struct TestKeys {
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwks: serde_json::Value,
}

/// A stand-in for identity's token-signing key, published by the stub upstream's JWKS.
fn keys() -> &'static TestKeys {
    static KEYS: std::sync::OnceLock<TestKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use base64::Engine;
        let sk = caretrail_crypto::SigningKey::generate(caretrail_crypto::SignatureAlgorithm::Ed25519).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk.public_key().to_raw_bytes());
        let kid = "jwk_test".to_string();
        TestKeys {
            key: jsonwebtoken::EncodingKey::from_ed_der(&sk.to_pkcs8_der().unwrap()),
            jwks: serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}]}),
            kid,
        }
    })
}

fn claims() -> caretrail_contracts::auth::Claims {
    let now = chrono::Utc::now().timestamp();
    caretrail_contracts::auth::Claims {
        iss: caretrail_platform::auth::default_issuer(),
        aud: caretrail_contracts::auth::AUDIENCE.into(),
        sub: caretrail_contracts::AppId::generate().to_string(),
        exp: now + 300,
        nbf: now,
        iat: now,
        iat_ms: None,
        jti: format!("jti_{}", uuid::Uuid::new_v4().simple()),
        kind: caretrail_contracts::auth::PrincipalKind::App,
        tenant: Some(caretrail_contracts::TenantId::generate()),
        institution: None,
        roles: vec![],
        scope: "records:read".into(),
    }
}

fn sign(claims: &caretrail_contracts::auth::Claims) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(keys().kid.clone());
    jsonwebtoken::encode(&header, claims, &keys().key).unwrap()
}

fn token() -> String {
    sign(&claims())
}

/// A client that presents a valid access token.
fn authed() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", token()).parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn jwks() -> HttpResponse {
    HttpResponse::Ok().json(&keys().jwks)
}

fn header(req: &HttpRequest, name: &str) -> serde_json::Value {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| serde_json::Value::String(s.to_string()))
        .unwrap_or(serde_json::Value::Null)
}

async fn echo(req: HttpRequest, mut body: web::Payload) -> HttpResponse {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    if req.query_string().contains("raw") {
        return HttpResponse::Ok().body(bytes.freeze());
    }
    HttpResponse::Ok()
        .insert_header(("x-upstream", "stub"))
        .json(serde_json::json!({
            "method": req.method().as_str(),
            "path": req.path(),
            "query": req.query_string(),
            "request_id": header(&req, "x-request-id"),
            "traceparent": header(&req, "traceparent"),
            "forwarded_for": header(&req, "x-forwarded-for"),
            "authorization": header(&req, "authorization"),
            "len": bytes.len(),
        }))
}

async fn json_only(body: web::Json<serde_json::Value>) -> HttpResponse {
    HttpResponse::Created().json(body.into_inner())
}

async fn slow() -> HttpResponse {
    tokio::time::sleep(Duration::from_secs(3)).await;
    HttpResponse::Ok().finish()
}

/// Logins the stub upstream was asked to check.
static LOGINS_FORWARDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn login() -> HttpResponse {
    LOGINS_FORWARDED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    HttpResponse::Unauthorized().finish()
}

async fn revoked() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"items": [{"jti": "tok-revoked-early", "expires_at": 4_102_444_800i64}]}))
}

/// Starts the stub upstream; returns its base URL.
fn stub_upstream() -> String {
    let (port, server) = start(ServerParts {
        service: "stub",
        settings: HttpSettings::ephemeral(),
        health: Health::new(),
        metrics: Metrics::new("stub").unwrap(),
        configure: |cfg: &mut web::ServiceConfig| {
            cfg.route("/.well-known/jwks.json", web::get().to(jwks))
                .route("/internal/revoked-tokens", web::get().to(revoked))
                .route("/v1/records/echo/stub", web::to(echo))
                .route("/v1/auth/login", web::post().to(login))
                .service(resource("/v1/grants").post(json_only))
                .route("/v1/ledger/slow", web::get().to(slow));
        },
    })
    .unwrap();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

async fn gateway_with(config: impl FnOnce(&mut Config)) -> String {
    caretrail_platform::telemetry::init_for_tests();
    let upstream = stub_upstream();
    let mut cfg = Config::with_single_upstream(HttpSettings::ephemeral(), &upstream);
    cfg.bus.bus_prefix = format!("gw-{}", uuid::Uuid::new_v4().simple());
    config(&mut cfg);
    let app = Application::build(cfg).await.unwrap();
    let port = app.port();
    tokio::spawn(app.run_until(std::future::pending()));
    format!("http://127.0.0.1:{port}")
}

async fn gateway() -> String {
    gateway_with(|_| {}).await
}

async fn problem(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:caretrail:problem:{code}"));
    assert!(body["title"].is_string());
    assert_eq!(
        body["request_id"], request_id,
        "request id in body and header"
    );
    body
}

#[tokio::test]
async fn routes_and_propagates_request_id_and_trace_context() {
    let gw = gateway().await;
    let client = reqwest::Client::new();
    let incoming_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = client
        .post(format!("{gw}/v1/records/echo/stub?x=1"))
        .header("x-request-id", "partner-req-42")
        .header("traceparent", incoming_trace)
        .header("authorization", format!("Bearer {}", token()))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "partner-req-42");
    assert_eq!(
        resp.headers()["x-upstream"],
        "stub",
        "upstream headers pass back"
    );
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/v1/records/echo/stub");
    assert_eq!(seen["query"], "x=1");
    assert_eq!(seen["len"], 5);
    assert_eq!(seen["request_id"], "partner-req-42");
    assert!(
        seen["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer "),
        "the token is forwarded"
    );
    assert_eq!(seen["forwarded_for"], "127.0.0.1");
    let (trace, parent) =
        caretrail_platform::trace_context::parse_traceparent(seen["traceparent"].as_str().unwrap())
            .expect("upstream gets a valid traceparent");
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "the gateway's span is the new parent"
    );
}

#[tokio::test]
async fn generates_a_request_id_when_none_or_a_bad_one_is_given() {
    let gw = gateway().await;
    let client = authed();
    for given in [None, Some("bad id with spaces")] {
        let mut req = client.post(format!("{gw}/v1/records/echo/stub"));
        if let Some(g) = given {
            req = req.header("x-request-id", g);
        }
        let resp = req.send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(id.starts_with("req_"), "{id}");
        let seen: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(seen["request_id"], id);
        assert!(
            seen["traceparent"].is_string(),
            "a new trace starts at the gateway"
        );
    }
}

#[tokio::test]
async fn streams_large_bodies_both_ways() {
    let gw = gateway().await;
    let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = authed()
        .put(format!("{gw}/v1/records/echo/stub?raw"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.bytes().await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back[..] == data[..], "same bytes back");
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let gw = gateway().await;
    for path in [
        "/v1/nothing",
        "/v2/records",
        "/",
        "/internal/info",
        "/v1/records/../x",
    ] {
        let resp = authed().get(format!("{gw}{path}")).send().await.unwrap();
        problem(resp, 404, "not_found").await;
    }
}

#[tokio::test]
async fn wrong_method_is_a_405_problem() {
    let gw = gateway().await;
    let client = authed();
    for path in ["/openapi.json", "/healthz"] {
        let resp = client.delete(format!("{gw}{path}")).send().await.unwrap();
        problem(resp, 405, "method_not_allowed").await;
    }
    // An upstream's 405 is passed through as its problem+json.
    let resp = client.get(format!("{gw}/v1/grants")).send().await.unwrap();
    problem(resp, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn oversized_bodies_are_413_problems() {
    let gw = gateway_with(|c| c.body_limit_bytes = 1024).await;
    let client = authed();
    // Declared length over the limit: refused before reading.
    let resp = client
        .post(format!("{gw}/v1/records/echo/stub"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    problem(resp, 413, "payload_too_large").await;
    // Chunked body that turns out too large: stopped mid-stream.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'y'; 512])).collect();
    let resp = client
        .post(format!("{gw}/v1/records/echo/stub"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    problem(resp, 413, "payload_too_large").await;
    // Under the limit passes.
    let resp = client
        .post(format!("{gw}/v1/records/echo/stub"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn malformed_and_invalid_json_are_400_problems() {
    let gw = gateway().await;
    let client = authed();
    let resp = client
        .post(format!("{gw}/v1/grants"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(resp, 400, "malformed_json").await;
    let resp = client
        .post(format!("{gw}/v1/grants"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(resp, 415, "unsupported_media_type").await;
    let resp = client
        .post(format!("{gw}/v1/grants"))
        .json(&serde_json::json!({"ok": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_problems() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    caretrail_platform::telemetry::init_for_tests();
    let app = Application::build(Config::with_single_upstream(
        HttpSettings::ephemeral(),
        &format!("http://127.0.0.1:{closed}"),
    ))
    .await
    .unwrap();
    let port = app.port();
    tokio::spawn(app.run_until(std::future::pending()));
    // The token endpoint needs no token, so the failure is the upstream's.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/oauth/token"))
        .send()
        .await
        .unwrap();
    let body = problem(resp, 502, "upstream_unavailable").await;
    assert!(
        !body.to_string().contains(&closed.to_string()),
        "no internal address leaks: {body}"
    );

    let gw = gateway_with(|c| c.upstream_timeout_secs = 1).await;
    let resp = authed()
        .get(format!("{gw}/v1/ledger/slow"))
        .send()
        .await
        .unwrap();
    problem(resp, 504, "upstream_timeout").await;
}

#[tokio::test]
async fn serves_openapi_3_1_and_docs() {
    let gw = gateway().await;
    let resp = reqwest::get(format!("{gw}/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.text().await.unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/caretrail.json"
    ))
    .unwrap();
    assert_eq!(
        served, committed,
        "the gateway serves the committed document"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Caretrail API");
    assert!(doc["paths"]["/healthz"]["get"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    // Every $ref resolves.
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap_or_default().to_string());
                    }
                    refs(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }

    let resp = reqwest::get(format!("{gw}/docs/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{gw}/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let gw = gateway().await;
    reqwest::get(format!("{gw}/healthz")).await.unwrap();
    let text = reqwest::get(format!("{gw}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("caretrail_http_requests_total") && l.contains("route=\"/healthz\"")
        })
        .unwrap_or_else(|| panic!("no counter for /healthz in {text}"));
    for label in ["method=\"GET\"", "service=\"gateway\"", "status=\"200\""] {
        assert!(line.contains(label), "{line}");
    }
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn drains_in_flight_requests_on_shutdown() {
    caretrail_platform::telemetry::init_for_tests();
    let upstream = stub_upstream();
    let app = Application::build(Config::with_single_upstream(
        HttpSettings::ephemeral(),
        &upstream,
    ))
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));
    let slow_url = format!("{base}/v1/ledger/slow");
    let in_flight = tokio::spawn(async move { authed().get(slow_url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(()).unwrap();
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(
        resp.status(),
        200,
        "the request started before shutdown is answered"
    );
    running.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no new connections after shutdown"
    );
}

mod tokens {
    use super::*;
    use base64::Engine;

    async fn status_code(gw: &str, token: Option<String>) -> (u16, String) {
        let mut req = reqwest::Client::new().get(format!("{gw}/v1/records/echo/stub"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if status == 200 {
            return (status, String::new());
        }
        assert!(resp.headers().contains_key("www-authenticate") || status != 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        (
            status,
            body["code"].as_str().unwrap_or_default().to_string(),
        )
    }

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[tokio::test]
    async fn valid_token_passes_and_missing_token_is_401() {
        let gw = gateway().await;
        assert_eq!(status_code(&gw, Some(token())).await.0, 200);
        assert_eq!(status_code(&gw, None).await, (401, "token_missing".into()));
        // Public endpoints need none (the stub answers the JWKS).
        let resp = reqwest::get(format!("{gw}/.well-known/jwks.json"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    #[tokio::test]
    async fn forged_tokens_are_refused() {
        let gw = gateway().await;
        let valid = token();
        let parts: Vec<&str> = valid.split('.').collect();

        // alg: none, no signature.
        let none_header =
            b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, keys().kid).as_bytes());
        let none = format!("{none_header}.{}.", parts[1]);
        assert_eq!(
            status_code(&gw, Some(none)).await,
            (401, "invalid_token".into())
        );

        // HS256 "signed" with the public key as the HMAC secret (algorithm confusion).
        let x = keys().jwks["keys"][0]["x"].as_str().unwrap().to_string();
        let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        hs.kid = Some(keys().kid.clone());
        let confused = jsonwebtoken::encode(
            &hs,
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            status_code(&gw, Some(confused)).await,
            (401, "invalid_token".into())
        );

        // Tampered payload (tenant swapped), original signature.
        let mut c = claims();
        c.tenant = Some(caretrail_contracts::TenantId::generate());
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert_eq!(
            status_code(&gw, Some(tampered)).await,
            (401, "invalid_token".into())
        );

        // Wrong audience, wrong issuer.
        let mut c = claims();
        c.aud = "someone-else".into();
        assert_eq!(
            status_code(&gw, Some(sign(&c))).await,
            (401, "invalid_token".into())
        );
        let mut c = claims();
        c.iss = "https://evil.example".into();
        assert_eq!(
            status_code(&gw, Some(sign(&c))).await,
            (401, "invalid_token".into())
        );

        // Expired, and not yet valid (beyond the 30 s leeway).
        let mut c = claims();
        c.exp = chrono::Utc::now().timestamp() - 120;
        assert_eq!(
            status_code(&gw, Some(sign(&c))).await,
            (401, "token_expired".into())
        );
        let mut c = claims();
        c.nbf = chrono::Utc::now().timestamp() + 600;
        c.exp = c.nbf + 300;
        assert_eq!(
            status_code(&gw, Some(sign(&c))).await,
            (401, "token_not_yet_valid".into())
        );

        // Signed by a key the JWKS does not publish (unknown or rotated-out kid).
        let other =
            caretrail_crypto::SigningKey::generate(caretrail_crypto::SignatureAlgorithm::Ed25519)
                .unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some("jwk_rotated_out".into());
        let foreign = jsonwebtoken::encode(
            &h,
            &claims(),
            &jsonwebtoken::EncodingKey::from_ed_der(&other.to_pkcs8_der().unwrap()),
        )
        .unwrap();
        assert_eq!(
            status_code(&gw, Some(foreign)).await,
            (401, "invalid_token".into())
        );
        // Another key claiming the published kid.
        h.kid = Some(keys().kid.clone());
        let impostor = jsonwebtoken::encode(
            &h,
            &claims(),
            &jsonwebtoken::EncodingKey::from_ed_der(&other.to_pkcs8_der().unwrap()),
        )
        .unwrap();
        assert_eq!(
            status_code(&gw, Some(impostor)).await,
            (401, "invalid_token".into())
        );

        // Garbage.
        assert_eq!(
            status_code(&gw, Some("not.a.jwt".into())).await,
            (401, "invalid_token".into())
        );
    }

    #[tokio::test]
    async fn revocation_reaches_the_gateway_over_the_bus_within_a_second() {
        let prefix = format!("gw-rev-{}", uuid::Uuid::new_v4().simple());
        let p = prefix.clone();
        let gw = gateway_with(move |c| c.bus.bus_prefix = p).await;
        let c = claims();
        let t = sign(&c);
        assert_eq!(status_code(&gw, Some(t.clone())).await.0, 200);
        let bus = caretrail_bus::InProcessBus::shared(&prefix);
        let event = caretrail_bus::Event::new(
            c.tenant.as_ref().unwrap().as_str(),
            "identity",
            "token.revoked",
            1,
            &caretrail_contracts::events::TokenRevokedV1 {
                jti: c.jti.clone(),
                expires_at: c.exp,
            },
        )
        .unwrap();
        use caretrail_bus::Bus;
        bus.publish(&event).await.unwrap();
        let started = std::time::Instant::now();
        loop {
            let (status, code) = status_code(&gw, Some(t.clone())).await;
            if status == 401 {
                assert_eq!(code, "token_revoked");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "revocation not applied within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Other tokens are unaffected.
        assert_eq!(status_code(&gw, Some(token())).await.0, 200);
    }
}

#[tokio::test]
async fn dot_segments_never_reach_an_upstream() {
    use std::io::{Read, Write};
    let gw = gateway().await;
    let addr = gw.trim_start_matches("http://").to_string();
    let token = token();
    // A raw request: HTTP clients would normalise the path before sending it.
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET /v1/records/../internal/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(response.contains("\"code\":\"not_found\""), "{response}");
    assert!(
        !response.contains("x-upstream"),
        "the stub upstream never saw it"
    );
}

/// A gateway that starts while identity is down is not ready (it could accept tokens revoked
/// meanwhile) until it has loaded the revocation list, which it keeps retrying.
#[tokio::test]
async fn not_ready_until_the_revocation_list_is_loaded() {
    caretrail_platform::telemetry::init_for_tests();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let identity_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = Config::with_single_upstream(
        HttpSettings::ephemeral(),
        &format!("http://127.0.0.1:{identity_port}"),
    );
    cfg.bus.bus_prefix = format!("gw-{}", uuid::Uuid::new_v4().simple());
    let app = Application::build(cfg).await.unwrap();
    let verifier = app.verifier();
    let port = app.port();
    tokio::spawn(app.run_until(std::future::pending()));
    let ready = || async move {
        reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 503);
    assert!(!verifier.is_revoked("tok-revoked-early"));
    // Identity comes up on its port.
    let (_, server) = start(ServerParts {
        service: "identity-stub",
        settings: HttpSettings {
            http_port: identity_port,
            ..HttpSettings::ephemeral()
        },
        health: Health::new(),
        metrics: Metrics::new("identity_stub").unwrap(),
        configure: |cfg: &mut web::ServiceConfig| {
            cfg.route("/internal/revoked-tokens", web::get().to(revoked));
        },
    })
    .unwrap();
    tokio::spawn(server);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ready().await != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(verifier.is_revoked("tok-revoked-early"));
}

/// Anonymous callers cost the services as little as possible: a credentials body over 16 KiB
/// is refused at the gateway, and password checks from one address are throttled there (429
/// with Retry-After) before they reach identity; token requests are not part of that bucket.
#[tokio::test]
async fn anonymous_floods_stop_at_the_gateway() {
    use std::sync::atomic::Ordering;
    let gw = gateway().await;
    let client = reqwest::Client::new();
    let before = LOGINS_FORWARDED.load(Ordering::SeqCst);
    let big = serde_json::json!({"tenant_id": "ten_x", "username": "u", "password": "x".repeat(64 << 10)});
    problem(
        client
            .post(format!("{gw}/v1/auth/login"))
            .json(&big)
            .send()
            .await
            .unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    assert_eq!(
        LOGINS_FORWARDED.load(Ordering::SeqCst),
        before,
        "not forwarded"
    );
    let small = serde_json::json!({"tenant_id": "ten_x", "username": "u", "password": "guess"});
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let resp = client
            .post(format!("{gw}/v1/auth/login"))
            .json(&small)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            problem(resp, 429, "too_many_requests").await;
            statuses.push(429);
        } else {
            statuses.push(resp.status().as_u16());
        }
    }
    let forwarded = LOGINS_FORWARDED.load(Ordering::SeqCst) - before;
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        (20..=22).contains(&forwarded),
        "{forwarded} forwarded of 30"
    );
    // Token requests do not draw from the login bucket.
    let resp = client
        .post(format!("{gw}/v1/oauth/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 429);
}

/// Behind a trusted proxy (an ingress controller) each client has its own login bucket and
/// upstreams see the client's address; a forged `X-Forwarded-For` picks no other bucket,
/// behind a proxy or not.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_told_apart() {
    let client = reqwest::Client::new();
    let small = serde_json::json!({"tenant_id": "ten_x", "username": "u", "password": "guess"});
    let login = |gw: &str, forwarded: &str| {
        let req = client
            .post(format!("{gw}/v1/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&small);
        async move { req.send().await.unwrap().status().as_u16() }
    };

    // The test's own connections come from 127.0.0.1: the trusted proxy.
    let gw = gateway_with(|c| c.trusted_proxies = "127.0.0.1/32".into()).await;
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(login(&gw, "203.0.113.7").await);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_ne!(
        login(&gw, "203.0.113.8").await,
        429,
        "another client, its own bucket"
    );
    assert_eq!(
        login(&gw, "198.51.100.1, 203.0.113.7").await,
        429,
        "what the client wrote left of the proxy's entry is not believed"
    );
    let seen: serde_json::Value = client
        .get(format!("{gw}/v1/records/echo/stub"))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
        .bearer_auth(token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["forwarded_for"], "203.0.113.9");

    // Without trusted proxies the header is ignored: a new address per request is no escape.
    let gw = gateway().await;
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(login(&gw, &format!("203.0.113.{i}")).await);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// A method the document does not declare for a path is `405` with the methods it does
/// declare in `Allow` (RFC 9110), from the gateway, before a token is even looked at.
#[tokio::test]
async fn undeclared_methods_are_405_with_allow() {
    let gw = gateway().await;
    let client = reqwest::Client::new();
    for (method, path, allow) in [
        (
            reqwest::Method::PUT,
            "/v1/records/rec_x",
            "GET, DELETE, HEAD",
        ),
        (reqwest::Method::GET, "/v1/auth/login", "POST"),
        (
            reqwest::Method::DELETE,
            "/.well-known/jwks.json",
            "GET, HEAD",
        ),
        // The gateway's own operations.
        (reqwest::Method::TRACE, "/healthz", "GET, HEAD"),
        (reqwest::Method::POST, "/metrics", "GET, HEAD"),
    ] {
        let resp = client
            .request(method.clone(), format!("{gw}{path}"))
            .send()
            .await
            .unwrap();
        let allowed = resp.headers()["allow"].to_str().unwrap().to_string();
        let body = problem(resp, 405, "method_not_allowed").await;
        assert_eq!(allowed, allow, "{method} {path}: {body}");
    }
}
