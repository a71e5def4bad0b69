use actix_web::{HttpResponse, web};
use caretrail_contracts::{
    PatientId,
    auth::{Role, scopes},
};
use caretrail_crypto::{MacKey, Suite};
use caretrail_platform::auth::Principal;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::caller_tenant;
use crate::{
    IdentityError, State,
    entities::patient,
    model::{PatientIn, PatientOut},
};

/// `pat_` + the first 128 bits of HMAC(tenant pseudonymisation key, normalised number), with
/// the tenant's suite: stable within the tenant, unlinkable across tenants.
pub async fn pseudonym(
    state: &State,
    tenant: &caretrail_contracts::TenantId,
    normalised: &str,
) -> Result<PatientId, IdentityError> {
    let t = super::tenants::load(state, tenant).await?;
    let suite: Suite = t
        .suite
        .parse()
        .map_err(|_| IdentityError::Corrupt("tenant suite"))?;
    let secret = state
        .master
        .open("pseudonym", tenant.as_str(), &t.pseudonym_key_enc)?;
    let key = MacKey::from_bytes(suite, &secret)?;
    let tag = key.mac(format!("caretrail/patient/v1\n{normalised}").as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&tag.as_bytes()[..16]);
    Ok(PatientId::from_bytes(first))
}

#[utoipa::path(post, operation_id = "register_patient", path = "/v1/patients", tag = "patients", request_body = PatientIn,
    responses((status = 200, body = PatientOut, description = "The patient's pseudonymous id, whether registered now or before (the same answer either way)"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid input (problem+json with field errors)")),
    security(("bearer" = [])))]
/// Register a patient by national id or health-card number and get the tenant-wide
/// pseudonymous id. The number itself is never stored or logged.
pub async fn register(
    state: web::Data<State>,
    p: Principal,
    input: web::Json<PatientIn>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = caller_tenant(&p)?;
    if !(p.0.has_scope(scopes::PATIENTS_WRITE) || p.0.has_role(Role::Physician)) {
        return Err(IdentityError::Forbidden(
            "registering patients needs patients:write".into(),
        ));
    }
    let institution = p.0.institution.clone().ok_or_else(|| {
        IdentityError::Forbidden("registering patients needs an institution".into())
    })?;
    let normalised = input.normalised()?;
    let id = pseudonym(&state, &tenant, &normalised).await?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let existing = patient::Entity::find_by_id(id.to_string())
        .filter(patient::Column::TenantId.eq(tenant.as_str()))
        .one(&txn)
        .await?;
    if existing.is_none() {
        let inserted = patient::ActiveModel {
            id: Set(id.to_string()),
            tenant_id: Set(tenant.to_string()),
            registered_by: Set(institution.to_string()),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await;
        match inserted {
            Ok(_) => {}
            // Registered concurrently by someone else: the same patient.
            Err(e) if crate::error::is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(PatientOut { id }))
}
