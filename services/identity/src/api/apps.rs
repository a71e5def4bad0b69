use actix_web::{HttpResponse, web};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use caretrail_contracts::{
    AppId, InstitutionId, TenantId, events::CutOffScope, identity::AccessChange,
};
use caretrail_crypto::Suite;
use caretrail_platform::auth::Principal;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::{require_admin, require_admin_or_operator};
use crate::{
    IdentityError, State,
    access::{self, Change},
    entities::{app, institution},
    model::{AppCredentialsOut, AppIn, AppListOut, AppOut},
};

/// Client secrets are 256 random bits: a fast hash is enough (no password to brute-force).
pub(crate) fn hash_secret(secret: &str) -> String {
    caretrail_crypto::hash(Suite::Intl, secret.as_bytes()).to_hex()
}

fn new_secret() -> Result<String, IdentityError> {
    let key = caretrail_crypto::DataKey::generate(Suite::Intl)?;
    Ok(format!(
        "cts_{}",
        URL_SAFE_NO_PAD.encode(key.expose_secret())
    ))
}

pub(crate) fn out(a: app::Model) -> Result<AppOut, IdentityError> {
    Ok(AppOut {
        id: a.id.parse().map_err(|_| IdentityError::Corrupt("app id"))?,
        client_id: a.id.clone(),
        name: a.name,
        institution_id: a
            .institution_id
            .map(|i| i.parse())
            .transpose()
            .map_err(|_| IdentityError::Corrupt("institution id"))?,
        scopes: a
            .scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        status: a.status,
        created_at: a.created_at,
    })
}

/// Creates a partner app (`kind = app`) or the operator's credential (`kind = operator`).
pub async fn create_app(
    state: &State,
    tenant: Option<&TenantId>,
    institution: Option<&InstitutionId>,
    name: &str,
    kind: &str,
    scopes: &[String],
    by: &str,
) -> Result<AppCredentialsOut, IdentityError> {
    let id = AppId::generate();
    let secret = new_secret()?;
    let now = Utc::now();
    let model = app::ActiveModel {
        id: Set(id.to_string()),
        tenant_id: Set(tenant.map(ToString::to_string)),
        institution_id: Set(institution.map(ToString::to_string)),
        name: Set(name.trim().to_string()),
        kind: Set(kind.to_string()),
        scopes: Set(scopes.join(" ")),
        secret_hash: Set(hash_secret(&secret)),
        status: Set("active".into()),
        created_at: Set(now),
        secret_rotated_at: Set(now),
    };
    let txn = caretrail_db::begin_write(&state.db).await?;
    let model = model.insert(&txn).await?;
    let recorded = match tenant {
        Some(t) => Some(
            access::record(
                state,
                &txn,
                Change {
                    change: AccessChange::AppCreated,
                    tenant: t.clone(),
                    subject: id.to_string(),
                    institution: institution.cloned(),
                    roles: Vec::new(),
                    by: by.to_string(),
                    cut_off: None,
                },
            )
            .await?,
        ),
        None => None,
    };
    txn.commit().await?;
    if let Some(r) = recorded {
        r.apply(state);
    }
    Ok(AppCredentialsOut {
        app: out(model)?,
        client_secret: secret,
    })
}

#[utoipa::path(post, operation_id = "create_app", path = "/v1/tenants/{tenant_id}/apps", tag = "apps",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)), request_body = AppIn,
    responses((status = 201, body = AppCredentialsOut, description = "Created"), (status = 400, body = caretrail_platform::Problem, description = "Invalid input (problem+json with field errors)"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)")),
    security(("bearer" = [])))]
/// Register a partner app for one institution; returns its client secret once.
pub async fn create(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
    input: web::Json<AppIn>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = path.into_inner();
    require_admin(&p, &tenant, "tenant")?;
    input.validate()?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let institution = institution::Entity::find_by_id(input.institution_id.to_string())
        .filter(institution::Column::TenantId.eq(tenant.as_str()))
        .one(&txn)
        .await?;
    txn.commit().await?;
    if institution.is_none() {
        return Err(IdentityError::field(
            "institution_id",
            "no such institution in this tenant",
        ));
    }
    let created = create_app(
        &state,
        Some(&tenant),
        Some(&input.institution_id),
        &input.name,
        "app",
        &input.scopes,
        &p.0.sub,
    )
    .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, operation_id = "list_apps", path = "/v1/tenants/{tenant_id}/apps", tag = "apps",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)), responses((status = 200, body = AppListOut, description = "OK")),
    security(("bearer" = [])))]
/// List a tenant's partner apps (never their secrets).
pub async fn list(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = path.into_inner();
    require_admin_or_operator(&p, &tenant, "tenant")?;
    super::tenants::load(&state, &tenant).await?;
    let rows = app::Entity::find()
        .filter(app::Column::TenantId.eq(tenant.as_str()))
        .order_by_asc(app::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let items = rows.into_iter().map(out).collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(AppListOut { items }))
}

/// The app `id` and its tenant, if the caller administers that tenant (`operator_too`: or
/// is the operator).
async fn load_admin(
    state: &State,
    p: &Principal,
    id: &AppId,
    operator_too: bool,
) -> Result<(app::Model, TenantId), IdentityError> {
    let row = app::Entity::find_by_id(id.to_string())
        .one(&state.db)
        .await?
        .ok_or(IdentityError::NotFound("app"))?;
    let tenant: TenantId = row
        .tenant_id
        .as_deref()
        .ok_or(IdentityError::NotFound("app"))?
        .parse()
        .map_err(|_| IdentityError::Corrupt("tenant id"))?;
    if operator_too {
        require_admin_or_operator(p, &tenant, "app")?;
    } else {
        require_admin(p, &tenant, "app")?;
    }
    Ok((row, tenant))
}

/// Saves the changed app with its access change; its tokens are cut off.
async fn change_app(
    state: &State,
    p: &Principal,
    tenant: TenantId,
    am: app::ActiveModel,
    change: AccessChange,
) -> Result<app::Model, IdentityError> {
    let txn = caretrail_db::begin_write(&state.db).await?;
    let model = am.update(&txn).await?;
    let recorded = access::record(
        state,
        &txn,
        Change {
            change,
            tenant,
            subject: model.id.clone(),
            institution: model
                .institution_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| IdentityError::Corrupt("institution id"))?,
            roles: Vec::new(),
            by: p.0.sub.clone(),
            cut_off: Some(CutOffScope::Subject(model.id.clone())),
        },
    )
    .await?;
    txn.commit().await?;
    recorded.apply(state);
    Ok(model)
}

#[utoipa::path(post, operation_id = "rotate_app_secret", path = "/v1/apps/{app_id}/rotate-secret", tag = "apps",
    params(("app_id" = caretrail_contracts::AppId, Path)), responses((status = 200, body = AppCredentialsOut, description = "OK")),
    security(("bearer" = [])))]
/// Issue a new client secret (`app.secret_rotated`): the old one stops working at once, and
/// so, within a second, do the tokens it obtained.
pub async fn rotate_secret(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<AppId>,
) -> Result<HttpResponse, IdentityError> {
    // A new secret is a way in: the tenant's own administrators only.
    let (row, tenant) = load_admin(&state, &p, &path.into_inner(), false).await?;
    let secret = new_secret()?;
    let mut am: app::ActiveModel = row.into();
    am.secret_hash = Set(hash_secret(&secret));
    am.secret_rotated_at = Set(Utc::now());
    let model = change_app(&state, &p, tenant, am, AccessChange::AppSecretRotated).await?;
    Ok(HttpResponse::Ok().json(AppCredentialsOut {
        app: out(model)?,
        client_secret: secret,
    }))
}

#[utoipa::path(post, operation_id = "revoke_app", path = "/v1/apps/{app_id}/revoke", tag = "apps",
    params(("app_id" = caretrail_contracts::AppId, Path)), responses((status = 200, body = AppOut, description = "OK")),
    security(("bearer" = [])))]
/// Revoke an app (`app.revoked`): it gets no new tokens, and the ones it has stop working
/// within a second.
pub async fn revoke(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<AppId>,
) -> Result<HttpResponse, IdentityError> {
    // Cutting an app off gives no access: the operator may, in an incident.
    let (row, tenant) = load_admin(&state, &p, &path.into_inner(), true).await?;
    if row.status == "revoked" {
        return Ok(HttpResponse::Ok().json(out(row)?));
    }
    let mut am: app::ActiveModel = row.into();
    am.status = Set("revoked".into());
    let model = change_app(&state, &p, tenant, am, AccessChange::AppRevoked).await?;
    Ok(HttpResponse::Ok().json(out(model)?))
}
