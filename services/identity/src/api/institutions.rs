use actix_web::{HttpResponse, web};
use caretrail_bus::{Event, outbox};
use caretrail_contracts::{
    InstitutionId, SigningKeyId, TenantId,
    events::{CutOffScope, InstitutionKeyV1, InstitutionRegisteredV1},
    identity::AccessChange,
};
use caretrail_crypto::{SigningKey, Suite};
use caretrail_platform::auth::Principal;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::{require_admin, require_admin_or_operator, require_member};
use crate::{
    IdentityError, State,
    access::{self, Change},
    entities::{institution, institution_key},
    model::{
        InstitutionIn, InstitutionListOut, InstitutionOut, InstitutionPatchIn, InstitutionStatus,
        Level, SigningKeyOut,
    },
};

pub(crate) fn key_out(k: institution_key::Model) -> Result<SigningKeyOut, IdentityError> {
    Ok(SigningKeyOut {
        id: k.id.parse().map_err(|_| IdentityError::Corrupt("key id"))?,
        algorithm: k.algorithm,
        custody: k.custody,
        public_key_pem: k.public_key_pem,
        status: k.status,
        created_at: k.created_at,
        certificate_pem: k.certificate_pem,
        serial: k.serial,
        retired_at: k.retired_at,
        revoked_at: k.revoked_at,
    })
}

pub(crate) async fn out(
    conn: &impl ConnectionTrait,
    i: institution::Model,
) -> Result<InstitutionOut, IdentityError> {
    let keys = institution_key::Entity::find()
        .filter(institution_key::Column::TenantId.eq(i.tenant_id.clone()))
        .filter(institution_key::Column::InstitutionId.eq(i.id.clone()))
        .order_by_asc(institution_key::Column::CreatedAt)
        .all(conn)
        .await?;
    Ok(InstitutionOut {
        id: i
            .id
            .parse()
            .map_err(|_| IdentityError::Corrupt("institution id"))?,
        tenant_id: i
            .tenant_id
            .parse()
            .map_err(|_| IdentityError::Corrupt("tenant id"))?,
        code: i.code,
        name: i.name,
        level: Level::parse(&i.level).ok_or(IdentityError::Corrupt("institution level"))?,
        status: InstitutionStatus::parse(&i.status)?,
        signing_keys: keys.into_iter().map(key_out).collect::<Result<_, _>>()?,
        created_at: i.created_at,
        updated_at: i.updated_at,
    })
}

/// Registers an institution with a custodial signing key of the tenant's suite.
pub async fn create_institution(
    state: &State,
    tenant: &TenantId,
    input: InstitutionIn,
) -> Result<InstitutionOut, IdentityError> {
    input.validate()?;
    let t = super::tenants::load(state, tenant).await?;
    let suite: Suite = t
        .suite
        .parse()
        .map_err(|_| IdentityError::Corrupt("tenant suite"))?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let duplicate = institution::Entity::find()
        .filter(institution::Column::TenantId.eq(tenant.as_str()))
        .filter(institution::Column::Code.eq(input.code.clone()))
        .one(&txn)
        .await?;
    if duplicate.is_some() {
        return Err(IdentityError::Conflict(format!(
            "an institution with code {:?} exists in this tenant",
            input.code
        )));
    }
    let id = InstitutionId::generate();
    let now = Utc::now();
    let inserted = institution::ActiveModel {
        id: Set(id.to_string()),
        tenant_id: Set(tenant.to_string()),
        code: Set(input.code.clone()),
        name: Set(input.name.trim().to_string()),
        level: Set(input.level.as_str().to_string()),
        created_at: Set(now),
        updated_at: Set(now),
        status: Set(InstitutionStatus::Active.as_str().into()),
    }
    .insert(&txn)
    .await;
    let model = match inserted {
        Err(e) if crate::error::is_unique_violation(&e) => {
            return Err(IdentityError::Conflict(format!(
                "an institution with code {:?} exists in this tenant",
                input.code
            )));
        }
        other => other?,
    };
    let key = SigningKey::generate_for_suite(suite)?;
    let key_id = SigningKeyId::generate();
    let public_pem = key.public_key().to_spki_pem();
    let cert = crate::certs::certify_institution_key(
        state,
        &t,
        id.as_str(),
        input.level.as_str(),
        &key.public_key(),
        now,
    )?;
    let sealed = state
        .master
        .seal("institution-key", key_id.as_str(), &key.to_pkcs8_der()?)?;
    super::keys::new_key_row(
        tenant,
        id.as_str(),
        &key_id,
        &key.public_key(),
        Some(sealed),
        "custodial",
        &cert,
        now,
    )
    .insert(&txn)
    .await?;
    let registered = Event::new(
        tenant.as_str(),
        crate::SERVICE,
        "institution.registered",
        1,
        &InstitutionRegisteredV1 {
            institution: id.clone(),
            code: input.code.clone(),
            level: input.level.as_str().into(),
        },
    )?;
    let key_registered = Event::new(
        tenant.as_str(),
        crate::SERVICE,
        "institution.key_registered",
        1,
        &InstitutionKeyV1 {
            institution: id.clone(),
            key: key_id,
            algorithm: key.algorithm().to_string(),
            public_key_pem: public_pem,
        },
    )?;
    outbox::enqueue(&txn, &registered).await?;
    outbox::enqueue(&txn, &key_registered).await?;
    let result = out(&txn, model).await?;
    txn.commit().await.map_err(IdentityError::from)?;
    state.outbox.notify_one();
    Ok(result)
}

#[utoipa::path(post, operation_id = "create_institution", path = "/v1/tenants/{tenant_id}/institutions", tag = "institutions",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)), request_body = InstitutionIn,
    responses((status = 201, body = InstitutionOut, description = "Created"), (status = 400, body = caretrail_platform::Problem, description = "Invalid input (problem+json with field errors)"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)"), (status = 409, body = caretrail_platform::Problem, description = "Conflict")),
    security(("bearer" = [])))]
/// Register an institution; it gets a custodial signing key of the tenant's suite.
pub async fn create(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
    input: web::Json<InstitutionIn>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = path.into_inner();
    // Setting a tenant up (the institution its first administrators belong to) is the
    // operator's as well.
    require_admin_or_operator(&p, &tenant, "tenant")?;
    Ok(
        HttpResponse::Created()
            .json(create_institution(&state, &tenant, input.into_inner()).await?),
    )
}

#[utoipa::path(get, operation_id = "list_institutions", path = "/v1/tenants/{tenant_id}/institutions", tag = "institutions",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)),
    responses((status = 200, body = InstitutionListOut, description = "OK"), (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)")),
    security(("bearer" = [])))]
/// List the institutions of a tenant.
pub async fn list(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = path.into_inner();
    require_member(&p, &tenant, "tenant")?;
    super::tenants::load(&state, &tenant).await?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let rows = institution::Entity::find()
        .filter(institution::Column::TenantId.eq(tenant.as_str()))
        .order_by_asc(institution::Column::CreatedAt)
        .all(&txn)
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(out(&txn, row).await?);
    }
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(InstitutionListOut { items }))
}

/// Finds an institution the caller may see, in its own tenant (operators: any tenant).
/// The operator has no tenant; with row-level security it can only look inside one tenant
/// at a time, so it asks each (operators are rare and tenants few per release).
async fn operator_find_tenant(
    state: &State,
    id: &InstitutionId,
) -> Result<TenantId, IdentityError> {
    let tenants = crate::entities::tenant::Entity::find()
        .all(&state.db)
        .await?;
    for t in tenants {
        let txn = caretrail_db::begin_tenant(&state.db, &t.id).await?;
        let found = institution::Entity::find_by_id(id.to_string())
            .filter(institution::Column::TenantId.eq(t.id.clone()))
            .one(&txn)
            .await?;
        txn.commit().await?;
        if found.is_some() {
            return t
                .id
                .parse()
                .map_err(|_| IdentityError::Corrupt("tenant id"));
        }
    }
    Err(IdentityError::NotFound("institution"))
}

pub(crate) async fn find_visible(
    state: &State,
    p: &Principal,
    id: &InstitutionId,
) -> Result<(TenantId, institution::Model), IdentityError> {
    // Members look in their own tenant only; an id of another tenant is simply not there.
    let tenant = match &p.0.tenant {
        Some(t) => t.clone(),
        None if p.0.is_operator() => operator_find_tenant(state, id).await?,
        None => return Err(IdentityError::NotFound("institution")),
    };
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let row = institution::Entity::find_by_id(id.to_string())
        .filter(institution::Column::TenantId.eq(tenant.as_str()))
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("institution"))?;
    txn.commit().await?;
    Ok((tenant, row))
}

#[utoipa::path(get, operation_id = "get_institution", path = "/v1/institutions/{institution_id}", tag = "institutions",
    params(("institution_id" = caretrail_contracts::InstitutionId, Path)),
    responses((status = 200, body = InstitutionOut, description = "OK"), (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)")),
    security(("bearer" = [])))]
/// Get an institution of the caller's tenant, with its signing keys.
pub async fn get(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<InstitutionId>,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, row) = find_visible(&state, &p, &path.into_inner()).await?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let result = out(&txn, row).await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(result))
}

#[utoipa::path(patch, operation_id = "update_institution", path = "/v1/institutions/{institution_id}", tag = "institutions",
    params(("institution_id" = caretrail_contracts::InstitutionId, Path)), request_body = InstitutionPatchIn,
    responses((status = 200, body = InstitutionOut, description = "OK"), (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)")),
    security(("bearer" = [])))]
/// Rename an institution. Tenant administrators only.
pub async fn update(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<InstitutionId>,
    input: web::Json<InstitutionPatchIn>,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, row) = find_visible(&state, &p, &path.into_inner()).await?;
    require_admin(&p, &tenant, "institution")?;
    let mut am: institution::ActiveModel = row.into();
    if let Some(name) = &input.name {
        let probe = InstitutionIn {
            code: "x".into(),
            name: name.clone(),
            level: Level::Primary,
        };
        probe.validate()?;
        am.name = Set(name.trim().to_string());
    }
    am.updated_at = Set(Utc::now());
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let model = am.update(&txn).await?;
    let result = out(&txn, model).await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(result))
}

/// Moves an institution to `status`, recording `change`; deactivation ends its users'
/// sessions and cuts off every token of its users and apps.
async fn set_status(
    state: &State,
    p: &Principal,
    id: InstitutionId,
    status: InstitutionStatus,
    change: AccessChange,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, _) = find_visible(state, p, &id).await?;
    // Cutting an institution off gives no access, and running a tenant's membership is the
    // operator's too; both are anchored on the ledger with who did it.
    require_admin_or_operator(p, &tenant, "institution")?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let row = institution::Entity::find_by_id(id.to_string())
        .filter(institution::Column::TenantId.eq(tenant.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("institution"))?;
    if InstitutionStatus::parse(&row.status)? == status {
        let result = out(&txn, row).await?;
        txn.commit().await?;
        return Ok(HttpResponse::Ok().json(result));
    }
    let mut am: institution::ActiveModel = row.into();
    am.status = Set(status.as_str().into());
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    let cuts = status == InstitutionStatus::Deactivated;
    if cuts {
        let users = access::institution_users(&txn, &tenant, &id).await?;
        access::end_sessions(&txn, &tenant, &users).await?;
    }
    let recorded = access::record(
        state,
        &txn,
        Change {
            change,
            tenant: tenant.clone(),
            subject: id.to_string(),
            institution: Some(id.clone()),
            roles: Vec::new(),
            by: p.0.sub.clone(),
            cut_off: cuts.then(|| CutOffScope::Institution(id.clone())),
        },
    )
    .await?;
    let result = out(&txn, model).await?;
    txn.commit().await?;
    recorded.apply(state);
    Ok(HttpResponse::Ok().json(result))
}

#[utoipa::path(post, operation_id = "deactivate_institution", path = "/v1/institutions/{institution_id}/deactivate", tag = "institutions",
    params(("institution_id" = caretrail_contracts::InstitutionId, Path)),
    responses((status = 200, body = InstitutionOut, description = "Deactivated: its users and apps cannot authenticate, and their tokens stop working within a second"),
              (status = 403, body = caretrail_platform::Problem, description = "Not a tenant administrator or the operator"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)")),
    security(("bearer" = [])))]
/// Deactivate an institution (`institution.deactivated`). Its records stay where they are,
/// governed by policy and grants: grants it gave keep letting others read; grants it received
/// stay on record but nobody of it can use them until it is reactivated.
pub async fn deactivate(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<InstitutionId>,
) -> Result<HttpResponse, IdentityError> {
    set_status(
        &state,
        &p,
        path.into_inner(),
        InstitutionStatus::Deactivated,
        AccessChange::InstitutionDeactivated,
    )
    .await
}

#[utoipa::path(post, operation_id = "reactivate_institution", path = "/v1/institutions/{institution_id}/reactivate", tag = "institutions",
    params(("institution_id" = caretrail_contracts::InstitutionId, Path)),
    responses((status = 200, body = InstitutionOut, description = "Active again: its users and apps may authenticate (tokens cut off before stay refused)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not a tenant administrator or the operator"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for objects of other tenants)")),
    security(("bearer" = [])))]
/// Reactivate an institution (`institution.reactivated`).
pub async fn reactivate(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<InstitutionId>,
) -> Result<HttpResponse, IdentityError> {
    set_status(
        &state,
        &p,
        path.into_inner(),
        InstitutionStatus::Active,
        AccessChange::InstitutionReactivated,
    )
    .await
}
