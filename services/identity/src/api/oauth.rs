//! OAuth2 client-credentials grant (RFC 6749 §4.4) and token revocation (RFC 7009).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use base64::{Engine, engine::general_purpose::STANDARD};
use caretrail_bus::{Event, outbox};
use caretrail_contracts::{
    auth::{Claims, PrincipalKind, scopes},
    events::TokenRevokedV1,
};
use caretrail_platform::auth::Principal;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use subtle::ConstantTimeEq;

use crate::{
    IdentityError, State,
    entities::{app, institution, revoked_token, tenant},
    model::{InstitutionStatus, RevokeIn, TokenIn, TokenOut},
};

fn invalid_client() -> IdentityError {
    IdentityError::oauth(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    )
}

/// client_secret_basic (RFC 6749 §2.3.1: form-urlencoded id and secret in Basic auth) or
/// client_secret_post; not both.
fn client_credentials(
    req: &HttpRequest,
    form: &TokenIn,
) -> Result<(String, String), IdentityError> {
    let basic = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    match (basic, &form.client_id, &form.client_secret) {
        (Some(b64), None, None) => {
            let decoded = STANDARD.decode(b64.trim()).map_err(|_| invalid_client())?;
            let text = String::from_utf8(decoded).map_err(|_| invalid_client())?;
            let (id, secret) = text.split_once(':').ok_or_else(invalid_client)?;
            let unescape = |s: &str| url_decode(s).ok_or_else(invalid_client);
            Ok((unescape(id)?, unescape(secret)?))
        }
        (None, Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
        (Some(_), _, _) => Err(IdentityError::oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "use one client authentication method, not both",
        )),
        _ => Err(invalid_client()),
    }
}

fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[utoipa::path(post, operation_id = "issue_token", path = "/v1/oauth/token", tag = "oauth",
    request_body(content = TokenIn, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenOut, description = "OK"),
              (status = 400, description = "RFC 6749 error (`error` member) in problem+json"),
              (status = 401, description = "invalid_client")))]
/// OAuth2 client-credentials grant for partner apps (client_secret_basic or client_secret_post).
pub async fn token(
    state: web::Data<State>,
    req: HttpRequest,
    form: web::Form<TokenIn>,
) -> Result<HttpResponse, IdentityError> {
    let form = form.into_inner();
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(IdentityError::oauth(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported here",
            ));
        }
        None => {
            return Err(IdentityError::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            ));
        }
    }
    let (client_id, secret) = client_credentials(&req, &form)?;
    let row = app::Entity::find_by_id(client_id.clone())
        .one(&state.db)
        .await?;
    let expected = row
        .as_ref()
        .map(|a| a.secret_hash.clone())
        .unwrap_or_default();
    let given = super::apps::hash_secret(&secret);
    // Compare even when the app does not exist, so timing does not reveal valid ids.
    let matches: bool = given.as_bytes().ct_eq(expected.as_bytes()).into();
    let app = match row {
        Some(a) if matches && a.status == "active" => a,
        _ => {
            tracing::info!(client_id = %client_id.chars().take(40).collect::<String>(), "client authentication failed");
            return Err(invalid_client());
        }
    };
    if let Some(t) = &app.tenant_id {
        let tenant = tenant::Entity::find_by_id(t.clone()).one(&state.db).await?;
        if tenant.map(|t| t.status) != Some("active".to_string()) {
            return Err(IdentityError::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the tenant is suspended",
            ));
        }
    }
    if let (Some(t), Some(i)) = (&app.tenant_id, &app.institution_id) {
        let txn = caretrail_db::begin_tenant_read(&state.db, t).await?;
        let ins = institution::Entity::find_by_id(i.clone())
            .filter(institution::Column::TenantId.eq(t.clone()))
            .one(&txn)
            .await?;
        txn.commit().await?;
        if ins.map(|i| i.status) != Some(InstitutionStatus::Active.as_str().to_string()) {
            return Err(IdentityError::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the app's institution is deactivated",
            ));
        }
    }
    let granted: Vec<&str> = app.scopes.split(' ').filter(|s| !s.is_empty()).collect();
    let scope = match form
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => granted.join(" "),
        Some(requested) => {
            let wanted: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(bad) = wanted.iter().find(|w| !granted.contains(w)) {
                return Err(IdentityError::oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("scope {bad:?} is not granted to this client"),
                ));
            }
            wanted.join(" ")
        }
    };
    let kind = if app.kind == "operator" && scope.split(' ').any(|s| s == scopes::PLATFORM_ADMIN) {
        PrincipalKind::Operator
    } else {
        PrincipalKind::App
    };
    let claims = Claims {
        iss: String::new(),
        aud: String::new(),
        sub: app.id.clone(),
        exp: 0,
        nbf: 0,
        iat: 0,
        iat_ms: None,
        jti: String::new(),
        kind,
        tenant: app
            .tenant_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| IdentityError::Corrupt("tenant id"))?,
        institution: app
            .institution_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| IdentityError::Corrupt("institution id"))?,
        roles: Vec::new(),
        scope: scope.clone(),
    };
    let (access_token, claims) = state.tokens.issue(claims, Utc::now())?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(TokenOut {
            access_token,
            token_type: "Bearer",
            expires_in: claims.exp - claims.iat,
            scope,
        }))
}

#[utoipa::path(post, operation_id = "revoke_token", path = "/v1/oauth/revoke", tag = "oauth",
    request_body(content = RevokeIn, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked (or already invalid, per RFC 7009)")),
    security(("bearer" = [])))]
/// Revoke an access token (RFC 7009). Callers revoke their own tokens; tenant administrators
/// any token of their tenant. Every service refuses it within a second.
pub async fn revoke(
    state: web::Data<State>,
    p: Principal,
    form: web::Form<RevokeIn>,
) -> Result<HttpResponse, IdentityError> {
    // RFC 7009 §2.2: an invalid or expired token is not an error for the revoker.
    let Ok(target) = state.verifier.verify(&form.token).await else {
        return Ok(HttpResponse::Ok().finish());
    };
    let same_token = target.jti == p.0.jti;
    let same_subject = target.sub == p.0.sub;
    let admin_of_tenant = target
        .tenant
        .as_ref()
        .is_some_and(|t| super::require_admin(&p, t, "token").is_ok());
    if !(same_token || same_subject || admin_of_tenant || p.0.is_operator()) {
        // Do not reveal that the token exists.
        return Ok(HttpResponse::Ok().finish());
    }
    revoke_jti(&state, &target).await?;
    Ok(HttpResponse::Ok().finish())
}

pub(crate) async fn revoke_jti(state: &State, target: &Claims) -> Result<(), IdentityError> {
    let event = Event::new(
        target
            .tenant
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| caretrail_bus::PLATFORM_TENANT.to_string()),
        crate::SERVICE,
        "token.revoked",
        1,
        &TokenRevokedV1 {
            jti: target.jti.clone(),
            expires_at: target.exp,
        },
    )?;
    let txn = caretrail_db::begin_write(&state.db).await?;
    if revoked_token::Entity::find_by_id(target.jti.clone())
        .one(&txn)
        .await?
        .is_none()
    {
        revoked_token::ActiveModel {
            jti: Set(target.jti.clone()),
            tenant_id: Set(target.tenant.as_ref().map(ToString::to_string)),
            expires_at: Set(target.exp),
            revoked_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await?;
        outbox::enqueue(&txn, &event).await?;
    }
    txn.commit().await?;
    state.outbox.notify_one();
    // This replica refuses it immediately; others learn it from the event.
    state.verifier.revoke(&target.jti, target.exp);
    Ok(())
}
