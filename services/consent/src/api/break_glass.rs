//! Break-glass: a physician declares an emergency with a justification and gets time-boxed
//! access to the patient's records (up to the policy's level), anchored
//! (`break_glass.declared`) and raised as an event for audit review.

use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::Role;
use caretrail_contracts::auth::policy::{ConsentReader, Person};
use caretrail_contracts::{BreakGlassId, PatientId};
use caretrail_platform::FieldError;
use caretrail_platform::auth::Guarded;
use caretrail_runtime::anchoring::NewAnchor;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::{Caller, Result, queue_anchor, settle, tenant_suite, text};
use crate::State;
use crate::engine::{Engine, IndexChanged, publish_change};
use crate::entities::break_glass;
use crate::error::ConsentError;
use crate::model::{BreakGlassIn, BreakGlassListOut, BreakGlassOut, LedgerReceiptOut};

pub const KIND_DECLARED: &str = "break_glass.declared";

fn out(row: &break_glass::Model, receipt: Option<LedgerReceiptOut>) -> BreakGlassOut {
    // The row learns its index when the anchoring hook runs; a receipt in hand already has it.
    let ledger_index = row
        .ledger_index
        .or_else(|| receipt.as_ref().map(|r| r.ledger_index as i64));
    BreakGlassOut {
        id: row.id.clone(),
        patient: row.patient_id.clone(),
        user: row.user_id.clone(),
        institution: row.institution_id.clone(),
        justification: row.justification.clone(),
        started_at: row.started_at,
        expires_at: row.expires_at,
        ledger_index,
        receipt,
    }
}

#[utoipa::path(post, operation_id = "declare_break_glass", path = "/v1/break-glass", tag = "consent",
    request_body = BreakGlassIn,
    responses((status = 201, body = BreakGlassOut, description = "Emergency access is open until `expires_at`; anchored and flagged for audit review"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)"),
              (status = 403, body = caretrail_platform::Problem, description = "The policy does not let the caller's role declare an emergency")),
    security(("bearer" = [])))]
/// Declare an emergency: time-boxed access to the patient's records for the caller alone.
pub async fn declare(
    state: web::Data<State>,
    g: Guarded<Person>,
    body: web::Json<BreakGlassIn>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let institution = caller.institution()?.clone();
    // Inside the tenant's transaction: on PostgreSQL, row-level security hides every policy
    // row from a query that has not named its tenant, which would fall back to the default.
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let (policy, _) = Engine::current_policy(&txn, caller.tenant.as_str()).await?;
    txn.commit().await?;
    if !caller
        .roles
        .iter()
        .any(|r| policy.break_glass.roles.contains(r))
    {
        return Err(ConsentError::Forbidden(
            "the tenant's policy does not let this role declare an emergency".into(),
        ));
    }
    let mut errors = Vec::new();
    let patient = body.patient.parse::<PatientId>();
    if let Err(e) = &patient {
        errors.push(FieldError::new("patient", e.to_string()));
    }
    let justification = text(&mut errors, "justification", &body.justification, 20, 2000);
    let Ok(patient) = patient else {
        return Err(ConsentError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ConsentError::Validation(errors));
    }
    let known = state
        .identity
        .patient(caller.tenant.as_str(), patient.as_str())
        .await
        .map_err(|e| ConsentError::Dependency("the identity service", e))?;
    if known.is_none() {
        return Err(ConsentError::field(
            "patient",
            "not registered in this tenant",
        ));
    }
    let suite = tenant_suite(&state, &caller.tenant).await?;
    let now = Utc::now();
    let row = break_glass::Model {
        id: BreakGlassId::generate().to_string(),
        tenant_id: caller.tenant.to_string(),
        patient_id: patient.to_string(),
        user_id: caller.id.clone(),
        institution_id: institution.to_string(),
        justification,
        started_at: now,
        expires_at: now + chrono::Duration::hours(i64::from(policy.break_glass.hours)),
        ledger_index: None,
    };
    let (payload, opening) = super::sealed(
        suite,
        json!({
            "break_glass": row.id,
            "patient": row.patient_id,
            "user": row.user_id,
            "institution": row.institution_id,
            "started_at": row.started_at.timestamp_millis(),
            "expires_at": row.expires_at.timestamp_millis(),
        }),
        json!({
            "justification_hash": caretrail_crypto::hash(suite, row.justification.as_bytes()).to_hex(),
        }),
    )?;
    let event = json!({
        "opening": opening,
        "break_glass": row.id,
        "patient": row.patient_id,
        "user": row.user_id,
        "institution": row.institution_id,
        "started_at": row.started_at,
        "expires_at": row.expires_at,
        "review_required": true,
    });
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let row = row.into_active_model().insert(&txn).await?;
    publish_change(
        &txn,
        caller.tenant.as_str(),
        &IndexChanged::break_glass(&row.id),
    )
    .await?;
    let anchor = queue_anchor(
        &txn,
        NewAnchor {
            tenant: row.tenant_id.clone(),
            subject: row.id.clone(),
            kind: KIND_DECLARED,
            request_id: format!("break_glass:{}", row.id),
            signer: row.institution_id.clone(),
            payload,
            submission: None,
            event_name: KIND_DECLARED,
            event,
            hold: std::time::Duration::ZERO,
        },
    )
    .await?;
    txn.commit().await?;
    state.outbox.notify_one();
    // Emergency access does not wait for the ledger: it is open now, and anchored as soon
    // as the ledger answers.
    state
        .engine
        .apply(caller.tenant.as_str(), &IndexChanged::break_glass(&row.id))
        .await?;
    tracing::warn!(break_glass = %row.id, tenant = %row.tenant_id, user = %row.user_id, "break-glass access declared");
    let receipt = settle(&state, anchor).await.unwrap_or(None);
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/v1/break-glass/{}", row.id),
        ))
        .json(out(&row, receipt)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct BreakGlassQuery {
    pub patient: Option<String>,
    /// Most recent first; 1..=200, default 50.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u64>,
}

#[utoipa::path(get, operation_id = "list_break_glass", path = "/v1/break-glass", tag = "consent",
    params(BreakGlassQuery),
    responses((status = 200, body = BreakGlassListOut, description = "Break-glass declarations, most recent first"), (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)")),
    security(("bearer" = [])))]
/// Break-glass declarations, most recent first: all of the tenant's for tenant admins and
/// auditors (the review queue), the caller's institution's for everyone else.
pub async fn list(
    state: web::Data<State>,
    g: Guarded<ConsentReader>,
    q: web::Query<BreakGlassQuery>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let limit = super::page_size(q.limit)?;
    let mut query = break_glass::Entity::find()
        .filter(break_glass::Column::TenantId.eq(caller.tenant.as_str()));
    if let Some(patient) = &q.patient {
        let patient: PatientId = patient.parse().map_err(|e: caretrail_contracts::IdError| {
            ConsentError::field("patient", e.to_string())
        })?;
        query = query.filter(break_glass::Column::PatientId.eq(patient.as_str()));
    }
    if !(caller.has(Role::TenantAdmin) || caller.has(Role::Auditor)) {
        query = query.filter(break_glass::Column::InstitutionId.eq(caller.institution()?.as_str()));
    }
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let rows = query
        .order_by_desc(break_glass::Column::StartedAt)
        .limit(limit)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(BreakGlassListOut {
        items: rows.iter().map(|r| out(r, None)).collect(),
    }))
}
