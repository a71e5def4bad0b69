use actix_web::{HttpResponse, web};
use caretrail_bus::{Event, outbox};
use caretrail_contracts::auth::policy::Operator;
use caretrail_contracts::{
    TenantId,
    events::{CutOffScope, TenantCreatedV1},
    identity::AccessChange,
};
use caretrail_crypto::{MacKey, SigningKey};
use caretrail_platform::auth::{Guarded, Principal};
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, QueryOrder};

use super::{require_member, require_operator};
use crate::{
    IdentityError, State,
    access::{self, Change},
    entities::tenant,
    model::{TenantIn, TenantListOut, TenantOut},
};

pub(crate) fn out(t: tenant::Model) -> Result<TenantOut, IdentityError> {
    Ok(TenantOut {
        id: t
            .id
            .parse()
            .map_err(|_| IdentityError::Corrupt("tenant id"))?,
        name: t.name,
        suite: t.suite,
        status: t.status,
        ca_public_key_pem: t.ca_public_pem,
        ca_certificate_pem: t.ca_cert_pem.unwrap_or_default(),
        created_at: t.created_at,
    })
}

pub(crate) async fn load(state: &State, id: &TenantId) -> Result<tenant::Model, IdentityError> {
    tenant::Entity::find_by_id(id.as_str().to_string())
        .one(&state.db)
        .await?
        .ok_or(IdentityError::NotFound("tenant"))
}

/// Creates a tenant (as the operator, or from the dev seed).
pub async fn create_tenant(state: &State, input: TenantIn) -> Result<TenantOut, IdentityError> {
    input.validate()?;
    let id = TenantId::generate();
    let ca = SigningKey::generate_for_suite(input.suite)?;
    let pseudonym = MacKey::generate(input.suite)?;
    let now = Utc::now();
    let ca_cert = crate::certs::new_tenant_ca(&ca, id.as_str(), input.name.trim(), now)?;
    let row = tenant::ActiveModel {
        id: Set(id.to_string()),
        name: Set(input.name.trim().to_string()),
        suite: Set(input.suite.to_string()),
        status: Set("active".into()),
        ca_key_enc: Set(state
            .master
            .seal("tenant-ca", id.as_str(), &ca.to_pkcs8_der()?)?),
        ca_public_pem: Set(ca.public_key().to_spki_pem()),
        pseudonym_key_enc: Set(state.master.seal(
            "pseudonym",
            id.as_str(),
            pseudonym.expose_secret(),
        )?),
        created_at: Set(now),
        updated_at: Set(now),
        ca_cert_pem: Set(Some(ca_cert.to_pem())),
    };
    let event = Event::new(
        id.as_str(),
        crate::SERVICE,
        "tenant.created",
        1,
        &TenantCreatedV1 {
            tenant: id.clone(),
            name: input.name.trim().to_string(),
            suite: input.suite.to_string(),
        },
    )?;
    let txn = caretrail_db::begin_write(&state.db).await?;
    let model = row.insert(&txn).await?;
    outbox::enqueue(&txn, &event).await?;
    txn.commit().await?;
    state.outbox.notify_one();
    tracing::info!(tenant = %id, suite = %input.suite, "tenant created");
    out(model)
}

#[utoipa::path(post, operation_id = "create_tenant", path = "/v1/tenants", tag = "tenants", request_body = TenantIn,
    responses((status = 201, body = TenantOut, description = "Created"), (status = 400, body = caretrail_platform::Problem, description = "Invalid input (problem+json with field errors)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not allowed for this caller")),
    security(("bearer" = [])))]
/// Create a tenant (a regional health bureau). Platform operator only.
pub async fn create(
    state: web::Data<State>,
    _operator: Guarded<Operator>,
    input: web::Json<TenantIn>,
) -> Result<HttpResponse, IdentityError> {
    Ok(HttpResponse::Created().json(create_tenant(&state, input.into_inner()).await?))
}

#[utoipa::path(get, operation_id = "list_tenants", path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = TenantListOut, description = "OK")), security(("bearer" = [])))]
/// List tenants. Platform operator only.
pub async fn list(
    state: web::Data<State>,
    _operator: Guarded<Operator>,
) -> Result<HttpResponse, IdentityError> {
    let rows = tenant::Entity::find()
        .order_by_asc(tenant::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let items = rows.into_iter().map(out).collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(TenantListOut { items }))
}

#[utoipa::path(get, operation_id = "get_tenant", path = "/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)),
    responses((status = 200, body = TenantOut, description = "OK"), (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)")),
    security(("bearer" = [])))]
/// Get a tenant: the operator, or a member of that tenant.
pub async fn get(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, IdentityError> {
    let id = path.into_inner();
    require_member(&p, &id, "tenant")?;
    Ok(HttpResponse::Ok().json(out(load(&state, &id).await?)?))
}

async fn set_status(
    state: &State,
    p: &Principal,
    id: TenantId,
    status: &str,
) -> Result<HttpResponse, IdentityError> {
    // Others' tenants are not found; one's own tenant is there but not one's to suspend.
    require_member(p, &id, "tenant")?;
    require_operator(p)?;
    let row = load(state, &id).await?;
    if row.status == status {
        return Ok(HttpResponse::Ok().json(out(row)?));
    }
    let mut am: tenant::ActiveModel = row.into();
    am.status = Set(status.to_string());
    am.updated_at = Set(Utc::now());
    let suspends = status == "suspended";
    let txn = caretrail_db::begin_write(&state.db).await?;
    let model = am.update(&txn).await?;
    // Suspension refuses every token of the tenant (refresh tokens are refused while it
    // lasts: refresh checks the tenant's status).
    let recorded = access::record(
        state,
        &txn,
        Change {
            change: if suspends {
                AccessChange::TenantSuspended
            } else {
                AccessChange::TenantResumed
            },
            tenant: id.clone(),
            subject: id.to_string(),
            institution: None,
            roles: Vec::new(),
            by: p.0.sub.clone(),
            cut_off: suspends.then(|| CutOffScope::Tenant(id.clone())),
        },
    )
    .await?;
    txn.commit().await?;
    recorded.apply(state);
    Ok(HttpResponse::Ok().json(out(model)?))
}

#[utoipa::path(post, operation_id = "suspend_tenant", path = "/v1/tenants/{tenant_id}/suspend", tag = "tenants",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)), responses((status = 200, body = TenantOut, description = "OK")),
    security(("bearer" = [])))]
/// Suspend a tenant (`tenant.suspended`): nobody of it gets new tokens, and every token it
/// holds stops working within a second. Platform operator only.
pub async fn suspend(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, IdentityError> {
    set_status(&state, &p, path.into_inner(), "suspended").await
}

#[utoipa::path(post, operation_id = "resume_tenant", path = "/v1/tenants/{tenant_id}/resume", tag = "tenants",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)), responses((status = 200, body = TenantOut, description = "OK")),
    security(("bearer" = [])))]
/// Resume a suspended tenant. Platform operator only.
pub async fn resume(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, IdentityError> {
    set_status(&state, &p, path.into_inner(), "active").await
}
