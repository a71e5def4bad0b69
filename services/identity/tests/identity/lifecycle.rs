//! People, apps, institutions and tenants are cut off within a second — through the gateway,
//! on both backends, and on a gateway replica that was off the bus when it happened.

use std::time::{Duration, Instant};

use caretrail_platform::config::HttpSettings;
use caretrail_runtime::testing::Backend;
use reqwest::Method;
use serde_json::{Value, json};

use super::Stack;

const PASSWORD: &str = "a long enough test password";

impl Stack {
    async fn login(&self, tid: &str, username: &str, password: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/auth/login", self.gw))
            .json(&json!({"tenant_id": tid, "username": username, "password": password}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn session(&self, tid: &str, username: &str, password: &str) -> (String, String) {
        let (status, body) = self.login(tid, username, password).await;
        assert_eq!(status, 200, "login {username}: {body}");
        (
            body["access_token"].as_str().unwrap().to_string(),
            body["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    async fn new_user(
        &self,
        admin: &str,
        tid: &str,
        iid: &str,
        name: &str,
        roles: Value,
    ) -> String {
        let (s, u) = self
            .call(
                Method::POST,
                &format!("/v1/tenants/{tid}/users"),
                admin,
                Some(json!({
                    "institution_id": iid, "username": name, "display_name": name,
                    "roles": roles, "password": PASSWORD,
                })),
            )
            .await;
        assert_eq!(s, 201, "{u}");
        u["id"].as_str().unwrap().to_string()
    }

    async fn refresh(&self, refresh_token: &str) -> u16 {
        self.http
            .post(format!("{}/v1/auth/refresh", self.gw))
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls `path` with `token` through the gateway until it is refused as revoked; fails
    /// unless that happens within a second.
    pub(super) async fn refused_within_a_second(&self, token: &str, path: &str) {
        let started = Instant::now();
        loop {
            let (status, body) = self.call(Method::GET, path, token, None).await;
            if status == 401 {
                assert_eq!(body["code"], "token_revoked", "{body}");
                return;
            }
            assert_eq!(status, 200, "{body}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{path} still answered 200 a second after the cut-off"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn app(&self, admin: &str, tid: &str, iid: &str) -> (String, String) {
        let (s, app) = self
            .call(
                Method::POST,
                &format!("/v1/tenants/{tid}/apps"),
                admin,
                Some(json!({"name": "EMR", "institution_id": iid, "scopes": ["records:read"]})),
            )
            .await;
        assert_eq!(s, 201, "{app}");
        (
            app["client_id"].as_str().unwrap().to_string(),
            app["client_secret"].as_str().unwrap().to_string(),
        )
    }

    async fn token_status(&self, id: &str, secret: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/oauth/token", self.gw))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn claims(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .unwrap()
        .claims
}

async fn people_are_cut_off_within_a_second(backend: Backend) {
    let s = super::stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, _admin_app) = s.tenant(&op, "Lifecycle", "intl").await;
    let (admin, _) = s
        .session(&tid, "first.admin", "a long enough first-admin password")
        .await;
    let me = format!("/v1/tenants/{tid}");
    let doc = s
        .new_user(&admin, &tid, &iid, "dr.gone", json!(["physician"]))
        .await;
    let user = format!("/v1/tenants/{tid}/users/{doc}");

    // Disabled: the token in hand stops working within a second, the session cannot be
    // renewed and the password no longer logs in.
    let (token, refresh) = s.session(&tid, "dr.gone", PASSWORD).await;
    let (status, out) = s
        .call(Method::POST, &format!("{user}/disable"), &admin, None)
        .await;
    assert_eq!(
        (status, out["status"].as_str()),
        (200, Some("disabled")),
        "{out}"
    );
    s.refused_within_a_second(&token, &me).await;
    assert_eq!(s.refresh(&refresh).await, 401);
    assert_eq!(s.login(&tid, "dr.gone", PASSWORD).await.0, 401);
    // Disabling again changes nothing and says so.
    let (status, out) = s
        .call(Method::POST, &format!("{user}/disable"), &admin, None)
        .await;
    assert_eq!((status, out["status"].as_str()), (200, Some("disabled")));

    // Enabled again: a login at once works (its token is not caught by the cut-off).
    let (status, out) = s
        .call(Method::POST, &format!("{user}/enable"), &admin, None)
        .await;
    assert_eq!(
        (status, out["status"].as_str()),
        (200, Some("active")),
        "{out}"
    );
    let (token, _) = s.session(&tid, "dr.gone", PASSWORD).await;
    assert_eq!(s.call(Method::GET, &me, &token, None).await.0, 200);

    // A new role: the token with the old roles stops working; a new login carries the new.
    let (status, out) = s
        .call(
            Method::PATCH,
            &user,
            &admin,
            Some(json!({"roles": ["institution_admin"]})),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["roles"], json!(["institution_admin"]));
    s.refused_within_a_second(&token, &me).await;
    let (token, _) = s.session(&tid, "dr.gone", PASSWORD).await;
    assert_eq!(claims(&token)["roles"], json!(["institution_admin"]));
    // A display name alone cuts nobody off.
    let (status, _) = s
        .call(
            Method::PATCH,
            &user,
            &admin,
            Some(json!({"display_name": "Dr. Gone"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.call(Method::GET, &me, &token, None).await.0, 200);

    // A password reset: a one-time token for the administrator to hand over; redeeming it
    // sets the password and ends the user's sessions.
    let (status, reset) = s
        .call(
            Method::POST,
            &format!("{user}/password-reset"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 201, "{reset}");
    let reset_token = reset["reset_token"].as_str().unwrap().to_string();
    let redeem = |token: String, password: &'static str| {
        let (http, gw) = (s.http.clone(), s.gw.clone());
        async move {
            let resp = http
                .post(format!("{gw}/v1/auth/password-reset"))
                .json(&json!({"token": token, "new_password": password}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, problem) = redeem(reset_token.clone(), "short").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = redeem(reset_token.clone(), "a brand new long password").await;
    assert_eq!(status, 204);
    s.refused_within_a_second(&token, &me).await;
    assert_eq!(s.login(&tid, "dr.gone", PASSWORD).await.0, 401);
    s.session(&tid, "dr.gone", "a brand new long password")
        .await;
    let (status, problem) = redeem(reset_token, "yet another long password").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, _) = redeem(format!("{tid}.forged"), "yet another long password").await;
    assert_eq!(status, 401);

    // Removed: gone for good, the name free again, the id still there for the trail.
    let (token, _) = s
        .session(&tid, "dr.gone", "a brand new long password")
        .await;
    let (status, out) = s.call(Method::DELETE, &user, &admin, None).await;
    assert_eq!(
        (status, out["status"].as_str()),
        (200, Some("removed")),
        "{out}"
    );
    s.refused_within_a_second(&token, &me).await;
    assert_eq!(
        s.login(&tid, "dr.gone", "a brand new long password")
            .await
            .0,
        401
    );
    let (status, out) = s.call(Method::GET, &user, &admin, None).await;
    assert_eq!((status, out["status"].as_str()), (200, Some("removed")));
    assert_eq!(
        s.call(Method::POST, &format!("{user}/enable"), &admin, None)
            .await
            .0,
        409
    );
    s.new_user(&admin, &tid, &iid, "dr.gone", json!(["physician"]))
        .await;
    let (_, removed) = s
        .call(
            Method::GET,
            &format!("/v1/tenants/{tid}/users?status=removed"),
            &admin,
            None,
        )
        .await;
    assert_eq!(removed["items"].as_array().unwrap().len(), 1, "{removed}");
}
both!(people_are_cut_off_within_a_second);

async fn who_may_change_whom(backend: Backend) {
    let s = super::stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, _) = s.tenant(&op, "Roles", "intl").await;
    let (other_tid, _, other_admin) = s.tenant(&op, "Elsewhere", "intl").await;
    let (admin, _) = s
        .session(&tid, "first.admin", "a long enough first-admin password")
        .await;
    let first_admin = claims(&admin)["sub"].as_str().unwrap().to_string();
    let doc = s
        .new_user(&admin, &tid, &iid, "dr.a", json!(["physician"]))
        .await;
    let boss = s
        .new_user(&admin, &tid, &iid, "boss.a", json!(["institution_admin"]))
        .await;
    let auditor = s
        .new_user(&admin, &tid, &iid, "auditor.a", json!(["auditor"]))
        .await;
    let (boss_token, _) = s.session(&tid, "boss.a", PASSWORD).await;
    let (doc_token, _) = s.session(&tid, "dr.a", PASSWORD).await;
    let path = |id: &str| format!("/v1/tenants/{tid}/users/{id}");

    // Bad input is 400 and changes nothing.
    for body in [
        json!({"roles": []}),
        json!({}),
        json!({"roles": ["surgeon"]}),
        json!({"role": ["physician"]}),
    ] {
        let (status, problem) = s
            .call(Method::PATCH, &path(&doc), &admin, Some(body.clone()))
            .await;
        assert!(status == 400 || status == 422, "{body}: {status} {problem}");
    }
    let (_, out) = s.call(Method::GET, &path(&doc), &admin, None).await;
    assert_eq!(out["roles"], json!(["physician"]));
    assert_eq!(
        s.call(Method::GET, &me_check(&tid), &doc_token, None)
            .await
            .0,
        200
    );

    // Another tenant's administrator finds nobody; a physician manages nobody.
    let (status, _) = s
        .call(
            Method::POST,
            &format!("{}/disable", path(&doc)),
            &other_admin,
            None,
        )
        .await;
    assert_eq!(status, 404, "another tenant ({other_tid})");
    let (status, _) = s
        .call(
            Method::POST,
            &format!("{}/disable", path(&boss)),
            &doc_token,
            None,
        )
        .await;
    assert_eq!(status, 403);

    // …and cannot tell which user ids exist: an unknown one is refused alike.
    let nobody = "usr_00000000000000000000000000000000";
    for (method, suffix) in [(Method::GET, ""), (Method::POST, "/disable")] {
        let (status, _) = s
            .call(
                method,
                &format!("{}{suffix}", path(nobody)),
                &doc_token,
                None,
            )
            .await;
        assert_eq!(status, 403, "{suffix}");
    }

    // An institution administrator manages its physicians, not auditors or tenant admins,
    // and hands out no role beyond its own institution's.
    let (status, _) = s
        .call(
            Method::POST,
            &format!("{}/disable", path(&auditor)),
            &boss_token,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            Method::PATCH,
            &path(&doc),
            &boss_token,
            Some(json!({"roles": ["tenant_admin"]})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            Method::POST,
            &format!("{}/disable", path(&doc)),
            &boss_token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, list) = s
        .call(
            Method::GET,
            &format!("/v1/tenants/{tid}/users"),
            &boss_token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["institution_id"] == iid.as_str())
    );

    // Nobody cuts themselves off.
    let (status, problem) = s
        .call(
            Method::POST,
            &format!("{}/disable", path(&first_admin)),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("conflict")));

    // The operator manages tenant administrators, and only them, and never their roles.
    let (status, _) = s
        .call(Method::POST, &format!("{}/disable", path(&doc)), &op, None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            Method::PATCH,
            &path(&first_admin),
            &op,
            Some(json!({"roles": ["physician"]})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            Method::POST,
            &format!("{}/password-reset", path(&first_admin)),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .call(
            Method::POST,
            &format!("{}/disable", path(&first_admin)),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 200);
    s.refused_within_a_second(&admin, &me_check(&tid)).await;
}
both!(who_may_change_whom);

fn me_check(tid: &str) -> String {
    format!("/v1/tenants/{tid}")
}

async fn apps_institutions_and_tenants_are_cut_off_within_a_second(backend: Backend) {
    let s = super::stack(backend).await;
    let op = s.operator_token().await;
    let (tid, iid, _) = s.tenant(&op, "Apps", "intl").await;
    let (admin, _) = s
        .session(&tid, "first.admin", "a long enough first-admin password")
        .await;
    let me = me_check(&tid);

    // Revoked: the app's token stops working, and it gets no new one.
    let (id, secret) = s.app(&admin, &tid, &iid).await;
    let token = s.token_for(&id, &secret).await;
    let (status, _) = s
        .call(Method::POST, &format!("/v1/apps/{id}/revoke"), &admin, None)
        .await;
    assert_eq!(status, 200);
    s.refused_within_a_second(&token, &me).await;
    assert_eq!(s.token_status(&id, &secret).await.0, 401);

    // Rotated: the old secret and its tokens stop working; the new secret's work at once.
    let (id, secret) = s.app(&admin, &tid, &iid).await;
    let token = s.token_for(&id, &secret).await;
    let (status, rotated) = s
        .call(
            Method::POST,
            &format!("/v1/apps/{id}/rotate-secret"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    s.refused_within_a_second(&token, &me).await;
    assert_eq!(s.token_status(&id, &secret).await.0, 401);
    let fresh = s
        .token_for(&id, rotated["client_secret"].as_str().unwrap())
        .await;
    assert_eq!(s.call(Method::GET, &me, &fresh, None).await.0, 200);

    // A second institution, deactivated: its people and apps are out; the first's are not.
    let (status, other) = s
        .call(
            Method::POST,
            &format!("/v1/tenants/{tid}/institutions"),
            &admin,
            Some(json!({"code": "HC-2", "name": "Second centre", "level": "primary"})),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let other = other["id"].as_str().unwrap().to_string();
    s.new_user(&admin, &tid, &other, "dr.second", json!(["physician"]))
        .await;
    let (user_token, refresh) = s.session(&tid, "dr.second", PASSWORD).await;
    let (app_id, app_secret) = s.app(&admin, &tid, &other).await;
    let app_token = s.token_for(&app_id, &app_secret).await;
    let (status, out) = s
        .call(
            Method::POST,
            &format!("/v1/institutions/{other}/deactivate"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (status, out["status"].as_str()),
        (200, Some("deactivated")),
        "{out}"
    );
    s.refused_within_a_second(&user_token, &me).await;
    s.refused_within_a_second(&app_token, &me).await;
    assert_eq!(s.refresh(&refresh).await, 401);
    assert_eq!(s.login(&tid, "dr.second", PASSWORD).await.0, 401);
    let (status, body) = s.token_status(&app_id, &app_secret).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        s.call(Method::GET, &me, &fresh, None).await.0,
        200,
        "the first institution's app"
    );
    let (status, out) = s
        .call(
            Method::POST,
            &format!("/v1/institutions/{other}/reactivate"),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, out["status"].as_str()), (200, Some("active")));
    s.session(&tid, "dr.second", PASSWORD).await;
    s.token_for(&app_id, &app_secret).await;

    // A suspended tenant: every token of it stops working.
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/tenants/{tid}/suspend"),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 200);
    s.refused_within_a_second(&admin, &me).await;
    s.refused_within_a_second(&fresh, &me).await;
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/tenants/{tid}/resume"),
            &op,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let fresh = s
        .token_for(&id, rotated["client_secret"].as_str().unwrap())
        .await;
    assert_eq!(s.call(Method::GET, &me, &fresh, None).await.0, 200);
}
both!(apps_institutions_and_tenants_are_cut_off_within_a_second);

/// A second gateway whose broker connection is down when an app is revoked misses the event;
/// when the connection is back it asks identity for what it missed, and refuses the token.
#[tokio::test]
async fn a_gateway_off_the_bus_catches_up_when_it_reconnects() {
    let s = super::stack(Backend::Real).await;
    let op = s.operator_token().await;
    let (tid, iid, _) = s.tenant(&op, "Replica", "intl").await;
    let (admin, _) = s
        .session(&tid, "first.admin", "a long enough first-admin password")
        .await;
    let (id, secret) = s.app(&admin, &tid, &iid).await;
    let token = s.token_for(&id, &secret).await;

    // The second replica reaches RabbitMQ through a link the test can cut.
    let proxy = caretrail_runtime::testing::CuttableProxy::start("127.0.0.1:5672")
        .await
        .unwrap();
    let mut bus = s.bus.clone();
    {
        use secrecy::ExposeSecret;
        let url = bus
            .bus_url
            .expose_secret()
            .replace("127.0.0.1:5672", &proxy.addr.to_string());
        assert!(
            url.contains(&proxy.addr.to_string()),
            "the test bus is on 127.0.0.1:5672"
        );
        bus.bus_url = url.into();
    }
    let mut config =
        caretrail_gateway::Config::with_single_upstream(HttpSettings::ephemeral(), &s.identity_url);
    config.bus = bus;
    let second = caretrail_gateway::Application::build(config).await.unwrap();
    let second_verifier = second.verifier();
    let second_url = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until(std::future::pending()));
    // Ready: it has loaded the list once.
    let ready = Instant::now();
    loop {
        let r = s
            .http
            .get(format!("{second_url}/readyz"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "the second gateway never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(second_verifier.verify(&token).await.is_ok());
    // Past the follower's first retry timer: from now on it reloads only every 30 s or when
    // it reconnects.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = s
        .call(Method::POST, &format!("/v1/apps/{id}/revoke"), &admin, None)
        .await;
    assert_eq!(status, 200);
    // The connected replica refuses within a second; the cut-off one has not heard.
    s.refused_within_a_second(&token, &me_check(&tid)).await;
    assert!(
        second_verifier.verify(&token).await.is_ok(),
        "the disconnected replica cannot have heard of the revocation"
    );

    proxy.restore();
    let back = Instant::now();
    loop {
        if second_verifier.verify(&token).await.is_err() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "the second gateway did not catch up after reconnecting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = s
        .http
        .get(format!("{second_url}{}", me_check(&tid)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "token_revoked");
}
