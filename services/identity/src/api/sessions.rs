//! Password sessions: argon2id hashes, lockout after repeated failures, access token +
//! single-use rotating refresh token, logout, and setting a new password with a one-time
//! reset token.

use actix_web::{HttpRequest, HttpResponse, web};
use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use caretrail_contracts::{
    TenantId,
    auth::{Claims, PrincipalKind},
};
use caretrail_platform::FieldError;
use caretrail_platform::auth::Principal;
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect,
};

use super::users::{new_tenant_token, roles_of, scopes_for, token_hash};
use crate::{
    IdentityError, State,
    entities::{institution, password_reset, refresh_token, tenant, user},
    model::{InstitutionStatus, LoginIn, PasswordResetIn, RefreshIn, SessionOut, UserStatus},
};

/// Consecutive failures before an account is locked, and for how long.
const MAX_FAILURES: i32 = 5;
const LOCKOUT: Duration = Duration::minutes(15);
const REFRESH_TTL: Duration = Duration::hours(12);

fn invalid_credentials() -> IdentityError {
    IdentityError::Unauthorized("invalid credentials, or the account is temporarily locked".into())
}

/// Argon2 is deliberately slow and memory-hungry: at most a few run at once, on the blocking
/// pool rather than an HTTP worker, so a login flood queues instead of starving the service.
fn argon2_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(4))
}

pub(crate) async fn hash_password_blocking(password: String) -> Result<String, IdentityError> {
    let _permit = argon2_permits()
        .acquire()
        .await
        .map_err(|_| IdentityError::Corrupt("password hashing is shut down"))?;
    web::block(move || hash_password(&password))
        .await
        .map_err(|_| IdentityError::Corrupt("password hashing was cancelled"))?
}

async fn verify_password_blocking(password: String, stored: String) -> bool {
    let Ok(_permit) = argon2_permits().acquire().await else {
        return false;
    };
    web::block(move || verify_password(&password, &stored))
        .await
        .unwrap_or(false)
}

fn hash_password(password: &str) -> Result<String, IdentityError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| IdentityError::Corrupt("password hashing failed"))
}

fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Verifying against this when the user does not exist keeps timing uniform.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password-0000").unwrap_or_default())
}

async fn issue_session(
    state: &State,
    conn: &impl ConnectionTrait,
    u: &user::Model,
    family: Option<String>,
) -> Result<SessionOut, IdentityError> {
    let tenant: TenantId = u
        .tenant_id
        .parse()
        .map_err(|_| IdentityError::Corrupt("tenant id"))?;
    let roles = roles_of(u);
    let claims = Claims {
        iss: String::new(),
        aud: String::new(),
        sub: u.id.clone(),
        exp: 0,
        nbf: 0,
        iat: 0,
        iat_ms: None,
        jti: String::new(),
        kind: PrincipalKind::User,
        tenant: Some(tenant.clone()),
        institution: Some(
            u.institution_id
                .parse()
                .map_err(|_| IdentityError::Corrupt("institution id"))?,
        ),
        scope: scopes_for(&roles),
        roles,
    };
    let now = Utc::now();
    let (access_token, claims) = state.tokens.issue(claims, now)?;
    let refresh = new_tenant_token(&tenant)?;
    refresh_token::ActiveModel {
        id: Set(format!("rtk_{}", uuid::Uuid::now_v7().simple())),
        tenant_id: Set(u.tenant_id.clone()),
        user_id: Set(u.id.clone()),
        family_id: Set(family.unwrap_or_else(|| format!("rtf_{}", uuid::Uuid::now_v7().simple()))),
        token_hash: Set(token_hash(&refresh)),
        expires_at: Set(now + REFRESH_TTL),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(SessionOut {
        access_token,
        token_type: "Bearer",
        expires_in: claims.exp - claims.iat,
        refresh_token: refresh,
        refresh_expires_in: REFRESH_TTL.num_seconds(),
    })
}

#[utoipa::path(post, operation_id = "login", path = "/v1/auth/login", tag = "users", request_body = LoginIn,
    responses((status = 200, body = SessionOut, description = "Logged in"),
              (status = 400, body = caretrail_platform::Problem, description = "Username or password over its bound (128 / 1024 bytes)"),
              (status = 401, body = caretrail_platform::Problem, description = "Invalid credentials or locked"),
              (status = 413, body = caretrail_platform::Problem, description = "A body over 16 KiB (refused by the gateway before anything is checked)"),
              (status = 429, body = caretrail_platform::Problem, description = "Too many attempts from this address or for this account; `Retry-After` says when to try again")))]
/// Log in with a password. After 5 consecutive failures the account is locked for 15 minutes;
/// attempts are throttled per client address and per account (429 with `Retry-After`).
pub async fn login(
    state: web::Data<State>,
    req: HttpRequest,
    input: web::Json<LoginIn>,
) -> Result<HttpResponse, IdentityError> {
    let input = input.into_inner();
    // Bounded before any work: a 64 KiB "password" is not a password.
    let mut errors = Vec::new();
    if input.password.len() > MAX_PASSWORD_BYTES {
        errors.push(FieldError::new(
            "password",
            format!("at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    if input.username.is_empty() || input.username.len() > MAX_USERNAME_BYTES {
        errors.push(FieldError::new(
            "username",
            format!("1 to {MAX_USERNAME_BYTES} bytes"),
        ));
    }
    if !errors.is_empty() {
        return Err(IdentityError::Validation(errors));
    }
    state
        .logins
        .by_address
        .take(&client_address(&req))
        .map_err(IdentityError::Throttled)?;
    state
        .logins
        .by_account
        .take(&format!("{}\n{}", input.tenant_id, input.username))
        .map_err(IdentityError::Throttled)?;

    // Read, then hash, holding no lock: on SQLite a write transaction is the database's one
    // writer, and an argon2 verification takes tens of milliseconds.
    let tenant_row = tenant::Entity::find_by_id(input.tenant_id.to_string())
        .one(&state.db)
        .await?;
    let txn = caretrail_db::begin_tenant_read(&state.db, input.tenant_id.as_str()).await?;
    let found = user::Entity::find()
        .filter(user::Column::TenantId.eq(input.tenant_id.as_str()))
        .filter(user::Column::Username.eq(input.username.clone()))
        .one(&txn)
        .await?;
    txn.commit().await?;
    let Some(u) = found else {
        let _ = verify_password_blocking(input.password, dummy_hash().to_string()).await;
        return Err(invalid_credentials());
    };
    let ok = verify_password_blocking(input.password, u.password_hash.clone()).await;
    let active = u.status == UserStatus::Active.as_str()
        && tenant_row.is_some_and(|t| t.status == "active")
        && institution_active(&state, &u).await?;

    // Then write, briefly, under the row's lock: the count and the lockout are read again
    // there, so concurrent attempts on one account each count.
    let txn = caretrail_db::begin_tenant(&state.db, input.tenant_id.as_str()).await?;
    let current = user::Entity::find_by_id(u.id.clone())
        .filter(user::Column::TenantId.eq(input.tenant_id.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(invalid_credentials)?;
    let now = Utc::now();
    let locked = current.locked_until.is_some_and(|t| t > now);
    // A password changed since it was read is checked against the new one next time.
    let same_password = current.password_hash == u.password_hash;
    if locked || !ok || !active || !same_password {
        if !ok && !locked {
            let failures = current.failed_attempts + 1;
            let mut am: user::ActiveModel = current.clone().into();
            am.failed_attempts = Set(if failures >= MAX_FAILURES {
                0
            } else {
                failures
            });
            if failures >= MAX_FAILURES {
                am.locked_until = Set(Some(now + LOCKOUT));
                tracing::warn!(user = %current.id, "account locked after repeated login failures");
            }
            am.update(&txn).await?;
            txn.commit().await?;
        }
        return Err(invalid_credentials());
    }
    let mut am: user::ActiveModel = current.clone().into();
    am.failed_attempts = Set(0);
    am.locked_until = Set(None);
    am.update(&txn).await?;
    let session = issue_session(&state, &txn, &current, None).await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(session))
}

/// Longest password a login accepts (and a user may be given).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest username a login accepts.
const MAX_USERNAME_BYTES: usize = 128;

/// The client's address: what the gateway saw (it sets `X-Forwarded-For` from the connection
/// and drops any the client sent), else the connection's own peer.
fn client_address(req: &HttpRequest) -> String {
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .or_else(|| req.peer_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

async fn load_refresh(
    state: &State,
    token: &str,
) -> Result<
    (
        TenantId,
        caretrail_db::sea_orm::DatabaseTransaction,
        refresh_token::Model,
    ),
    IdentityError,
> {
    let tenant: TenantId = token
        .split_once('.')
        .and_then(|(t, _)| t.parse().ok())
        .ok_or_else(invalid_credentials)?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    // Locked, so two concurrent refreshes with one token cannot both succeed.
    let row = refresh_token::Entity::find()
        .filter(refresh_token::Column::TenantId.eq(tenant.as_str()))
        .filter(refresh_token::Column::TokenHash.eq(token_hash(token)))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(invalid_credentials)?;
    Ok((tenant, txn, row))
}

async fn revoke_family(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    family: &str,
) -> Result<(), IdentityError> {
    refresh_token::Entity::update_many()
        .col_expr(
            refresh_token::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Some(Utc::now())),
        )
        .filter(refresh_token::Column::TenantId.eq(tenant.as_str()))
        .filter(refresh_token::Column::FamilyId.eq(family))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

#[utoipa::path(post, operation_id = "refresh_session", path = "/v1/auth/refresh", tag = "users", request_body = RefreshIn,
    responses((status = 200, body = SessionOut, description = "New tokens"),
              (status = 401, body = caretrail_platform::Problem, description = "Invalid, expired or reused refresh token"),
              (status = 429, body = caretrail_platform::Problem, description = "Too many attempts from this address (throttled at the gateway); `Retry-After` says when to try again")))]
/// Exchange a refresh token for new tokens. Each refresh token works once; presenting a used
/// one (a sign of theft) ends the whole session.
pub async fn refresh(
    state: web::Data<State>,
    input: web::Json<RefreshIn>,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, txn, row) = load_refresh(&state, &input.refresh_token).await?;
    let now = Utc::now();
    if row.used_at.is_some() {
        revoke_family(&txn, &tenant, &row.family_id).await?;
        txn.commit().await?;
        tracing::warn!(user = %row.user_id, "refresh token reused; session revoked");
        return Err(invalid_credentials());
    }
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid_credentials());
    }
    let u = user::Entity::find_by_id(row.user_id.clone())
        .filter(user::Column::TenantId.eq(tenant.as_str()))
        .one(&txn)
        .await?
        .ok_or_else(invalid_credentials)?;
    let tenant_active = tenant::Entity::find_by_id(tenant.to_string())
        .one(&state.db)
        .await?
        .is_some_and(|t| t.status == "active");
    if u.status != UserStatus::Active.as_str()
        || !tenant_active
        || !institution_active(&state, &u).await?
    {
        return Err(invalid_credentials());
    }
    let family = row.family_id.clone();
    let mut am: refresh_token::ActiveModel = row.into();
    am.used_at = Set(Some(now));
    am.update(&txn).await?;
    let session = issue_session(&state, &txn, &u, Some(family)).await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(session))
}

#[utoipa::path(post, operation_id = "logout", path = "/v1/auth/logout", tag = "users", request_body = RefreshIn,
    responses((status = 204, description = "Logged out")), security(("bearer" = [])))]
/// End a session: the refresh token family and the presented access token stop working.
pub async fn logout(
    state: web::Data<State>,
    p: Principal,
    input: web::Json<RefreshIn>,
) -> Result<HttpResponse, IdentityError> {
    if let Ok((tenant, txn, row)) = load_refresh(&state, &input.refresh_token).await
        && row.user_id == p.0.sub
    {
        revoke_family(&txn, &tenant, &row.family_id).await?;
        txn.commit().await?;
    }
    super::oauth::revoke_jti(&state, &p.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A deactivated institution's people do not log in or refresh.
async fn institution_active(state: &State, u: &user::Model) -> Result<bool, IdentityError> {
    let txn = caretrail_db::begin_tenant_read(&state.db, &u.tenant_id).await?;
    let row = institution::Entity::find_by_id(u.institution_id.clone())
        .filter(institution::Column::TenantId.eq(u.tenant_id.clone()))
        .one(&txn)
        .await?;
    txn.commit().await?;
    Ok(row.is_some_and(|i| i.status == InstitutionStatus::Active.as_str()))
}

fn invalid_reset_token() -> IdentityError {
    IdentityError::Unauthorized("invalid, expired or used password-reset token".into())
}

#[utoipa::path(post, operation_id = "reset_password", path = "/v1/auth/password-reset", tag = "users", request_body = PasswordResetIn,
    responses((status = 204, description = "The new password is set; the user's other sessions and tokens are ended"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid input (a password of 12–256 characters)"),
              (status = 401, body = caretrail_platform::Problem, description = "Invalid, expired or used token"),
              (status = 429, body = caretrail_platform::Problem, description = "Too many attempts from this address; `Retry-After` says when to try again")))]
/// Set a new password with the one-time token an administrator handed over. The token works
/// once; the lockout is cleared; every session and token of the user is ended
/// (`user.password_reset`).
pub async fn reset_password(
    state: web::Data<State>,
    req: HttpRequest,
    input: web::Json<PasswordResetIn>,
) -> Result<HttpResponse, IdentityError> {
    let input = input.into_inner();
    input.validate()?;
    // The address's own bucket for resets: a burst of logins does not block a reset.
    state
        .logins
        .by_address
        .take(&format!("password-reset\n{}", client_address(&req)))
        .map_err(IdentityError::Throttled)?;
    let tenant: TenantId = input
        .token
        .split_once('.')
        .and_then(|(t, _)| t.parse().ok())
        .ok_or_else(invalid_reset_token)?;
    // Hashed before any lock is taken: argon2 takes tens of milliseconds.
    let hash = hash_password_blocking(input.new_password).await?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let reset = password_reset::Entity::find()
        .filter(password_reset::Column::TenantId.eq(tenant.as_str()))
        .filter(password_reset::Column::TokenHash.eq(token_hash(&input.token)))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(invalid_reset_token)?;
    let now = Utc::now();
    if reset.used_at.is_some() || reset.expires_at <= now {
        return Err(invalid_reset_token());
    }
    let u = user::Entity::find_by_id(reset.user_id.clone())
        .filter(user::Column::TenantId.eq(tenant.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(invalid_reset_token)?;
    if u.status != UserStatus::Active.as_str() {
        return Err(invalid_reset_token());
    }
    let by = reset.created_by.clone();
    let mut used: password_reset::ActiveModel = reset.into();
    used.used_at = Set(Some(now));
    used.update(&txn).await?;
    let institution = u
        .institution_id
        .parse()
        .map_err(|_| IdentityError::Corrupt("institution id"))?;
    let roles = roles_of(&u);
    let mut am: user::ActiveModel = u.into();
    am.password_hash = Set(hash);
    am.failed_attempts = Set(0);
    am.locked_until = Set(None);
    let u = am.update(&txn).await?;
    crate::access::end_sessions(&txn, &tenant, std::slice::from_ref(&u.id)).await?;
    let recorded = crate::access::record(
        &state,
        &txn,
        crate::access::Change {
            change: caretrail_contracts::identity::AccessChange::UserPasswordReset,
            tenant: tenant.clone(),
            subject: u.id.clone(),
            institution: Some(institution),
            roles,
            by,
            cut_off: Some(caretrail_contracts::events::CutOffScope::Subject(
                u.id.clone(),
            )),
        },
    )
    .await?;
    txn.commit().await?;
    recorded.apply(&state);
    Ok(HttpResponse::NoContent().finish())
}
