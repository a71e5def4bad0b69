//! Referrals: a physician refers a patient to another institution, usually with a grant for
//! what the receiving side needs. Every transition is anchored (`referral.*`) and published;
//! declining or cancelling ends the grant, completing may.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::policy::{ConsentActor, ConsentReader, GrantWriter};
use caretrail_contracts::{InstitutionId, PatientId, ReferralId, UserId};
use caretrail_platform::FieldError;
use caretrail_platform::auth::Guarded;
use caretrail_runtime::anchoring::NewAnchor;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::grants::{self, GrantSpec};
use super::{Caller, Result, page_size, queue_anchor, tenant_suite, text};
use crate::State;
use crate::entities::{grant, referral};
use crate::error::ConsentError;
use crate::model::{ReferralIn, ReferralListOut, ReferralOut, TransitionIn};

const URGENCIES: [&str; 3] = ["routine", "urgent", "emergency"];

async fn referral_out(
    state: &State,
    caller: &Caller,
    row: &referral::Model,
) -> Result<ReferralOut> {
    let grant = match &row.grant_id {
        Some(id) => {
            let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
            let g = grant::Entity::find_by_id(id.clone())
                .filter(grant::Column::TenantId.eq(caller.tenant.as_str()))
                .one(&txn)
                .await?;
            txn.commit().await?;
            g.map(|g| grants::grant_out(&g, None)).transpose()?
        }
        None => None,
    };
    Ok(ReferralOut {
        id: row.id.clone(),
        patient: row.patient_id.clone(),
        from_institution: row.from_institution.clone(),
        from_user: row.from_user.clone(),
        to_institution: row.to_institution.clone(),
        to_user: row.to_user.clone(),
        reason: row.reason.clone(),
        urgency: row.urgency.clone(),
        grant,
        status: row.status.clone(),
        note: row.note.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Queues the anchoring of a referral's state (signed by the acting institution).
async fn anchor_transition(
    state: &State,
    txn: &DatabaseTransaction,
    caller: &Caller,
    row: &referral::Model,
    kind: &'static str,
) -> Result<i64> {
    let signer = caller.institution()?.to_string();
    let suite = tenant_suite(state, &caller.tenant).await?;
    let at = Utc::now();
    // Who referred whom to whom, in clear; how urgent and why, sealed.
    let (payload, opening) = super::sealed(
        suite,
        json!({
            "referral": row.id,
            "patient": row.patient_id,
            "from": row.from_institution,
            "to": row.to_institution,
            "to_user": row.to_user,
            "grant": row.grant_id,
            "status": row.status,
            "by": caller.id,
            "at": at.timestamp_millis(),
        }),
        json!({
            "urgency": row.urgency,
            "reason_hash": caretrail_crypto::hash(suite, row.reason.as_bytes()).to_hex(),
        }),
    )?;
    let event = json!({
        "opening": opening,
        "referral": row.id,
        "patient": row.patient_id,
        "from_institution": row.from_institution,
        "to_institution": row.to_institution,
        "to_user": row.to_user,
        "urgency": row.urgency,
        "grant": row.grant_id,
        "status": row.status,
        "actor": {"subject": caller.id, "kind": caller.kind, "institution": caller.institution},
    });
    queue_anchor(
        txn,
        NewAnchor {
            tenant: row.tenant_id.clone(),
            subject: row.id.clone(),
            kind,
            request_id: format!("referral:{}:{}", row.id, row.status),
            signer,
            payload,
            submission: None,
            event_name: kind,
            event,
            hold: Duration::ZERO,
        },
    )
    .await
}

#[utoipa::path(post, operation_id = "create_referral", path = "/v1/referrals", tag = "consent",
    request_body = ReferralIn,
    responses((status = 201, body = ReferralOut, description = "Referred; its grant is anchored and in force"),
              (status = 202, body = ReferralOut, description = "Referred; the grant is in force once anchoring completes"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not allowed for the caller")),
    security(("bearer" = [])))]
/// Refer a patient to another institution (optionally one physician there), with the grant
/// that lets it read what the referral needs.
pub async fn create(
    state: web::Data<State>,
    g: Guarded<GrantWriter>,
    body: web::Json<ReferralIn>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let from = caller.institution()?.clone();
    let body = body.into_inner();
    let mut errors = Vec::new();
    let patient = body.patient.parse::<PatientId>();
    if let Err(e) = &patient {
        errors.push(FieldError::new("patient", e.to_string()));
    }
    let to = body.to_institution.parse::<InstitutionId>();
    match &to {
        Err(e) => errors.push(FieldError::new("to_institution", e.to_string())),
        Ok(to) if *to == from => errors.push(FieldError::new(
            "to_institution",
            "refer to another institution",
        )),
        Ok(_) => {}
    }
    if let Some(user) = &body.to_user
        && let Err(e) = user.parse::<UserId>()
    {
        errors.push(FieldError::new("to_user", e.to_string()));
    }
    let reason = text(&mut errors, "reason", &body.reason, 1, 2000);
    let urgency = body.urgency.clone().unwrap_or_else(|| "routine".into());
    if !URGENCIES.contains(&urgency.as_str()) {
        errors.push(FieldError::new("urgency", "routine, urgent or emergency"));
    }
    let (Ok(patient), Ok(to)) = (patient, to) else {
        return Err(ConsentError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ConsentError::Validation(errors));
    }
    let id = ReferralId::generate().to_string();
    let grant = match body.grant {
        Some(g) => Some(
            grants::validate(
                &state,
                &caller,
                &from,
                GrantSpec {
                    patient: patient.to_string(),
                    recipient_institution: to.to_string(),
                    recipient_user: body.to_user.clone(),
                    purpose: "referral".into(),
                    scope: g.scope,
                    valid_from: None,
                    valid_until: g.valid_until,
                    max_accesses: g.max_accesses,
                    evidence: g.evidence,
                    referral: Some(id.clone()),
                },
            )
            .await
            .map_err(|e| match e {
                // Field paths relative to the referral body.
                ConsentError::Validation(errors) => ConsentError::Validation(
                    errors
                        .into_iter()
                        .map(|f| FieldError::new(format!("grant.{}", f.field), f.message))
                        .collect(),
                ),
                other => other,
            })?,
        ),
        None => {
            // A referral without a grant still needs a patient the tenant knows.
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
            let institutions = state
                .identity
                .institutions(caller.tenant.as_str())
                .await
                .map_err(|e| ConsentError::Dependency("the identity service", e))?;
            if !institutions.iter().any(|i| i.institution == to) {
                return Err(ConsentError::field(
                    "to_institution",
                    "no such institution in this tenant",
                ));
            }
            None
        }
    };
    let suite = tenant_suite(&state, &caller.tenant).await?;
    let now = Utc::now();
    let row = referral::Model {
        id: id.clone(),
        tenant_id: caller.tenant.to_string(),
        patient_id: patient.to_string(),
        from_institution: from.to_string(),
        from_user: caller.id.clone(),
        to_institution: to.to_string(),
        to_user: body.to_user,
        reason,
        urgency,
        grant_id: grant.as_ref().map(|g| g.id.clone()),
        status: "requested".into(),
        note: None,
        created_at: now,
        updated_at: now,
    };
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let row = row.into_active_model().insert(&txn).await?;
    let granted = match grant {
        Some(g) => Some(grants::insert(&state, &txn, &caller, g, suite).await?),
        None => None,
    };
    anchor_transition(&state, &txn, &caller, &row, "referral.created").await?;
    txn.commit().await?;
    state.anchorer.notify();
    let mut created = true;
    if let Some((g, anchor)) = granted {
        let receipt = super::settle(&state, anchor).await?;
        grants::activate_here(&state, caller.tenant.as_str(), &g.id).await?;
        created = receipt.is_some();
    }
    let out = referral_out(&state, &caller, &row).await?;
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Accepted()
    }
    .insert_header((
        actix_web::http::header::LOCATION,
        format!("/v1/referrals/{}", row.id),
    ))
    .json(out))
}

async fn load(state: &State, caller: &Caller, id: &str) -> Result<referral::Model> {
    let id: ReferralId = id.parse().map_err(|_| ConsentError::NotFound)?;
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let row = referral::Entity::find_by_id(id.to_string())
        .filter(referral::Column::TenantId.eq(caller.tenant.as_str()))
        .one(&txn)
        .await?;
    txn.commit().await?;
    let row = row.ok_or(ConsentError::NotFound)?;
    if !caller.oversees() && !caller.belongs_to(&[&row.from_institution, &row.to_institution]) {
        return Err(ConsentError::NotFound);
    }
    Ok(row)
}

#[utoipa::path(get, operation_id = "get_referral", path = "/v1/referrals/{referral_id}", tag = "consent",
    params(("referral_id" = caretrail_contracts::ReferralId, Path)),
    responses((status = 200, body = ReferralOut, description = "The referral"), (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)")),
    security(("bearer" = [])))]
/// A referral, to its two institutions, tenant admins and auditors.
pub async fn get(
    state: web::Data<State>,
    g: Guarded<ConsentReader>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let row = load(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(referral_out(&state, &caller, &row).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReferralQuery {
    pub patient: Option<String>,
    /// requested, accepted, declined, completed, cancelled.
    pub status: Option<String>,
    /// `incoming` (to the caller's institution) or `outgoing`.
    pub direction: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u64>,
}

#[utoipa::path(get, operation_id = "list_referrals", path = "/v1/referrals", tag = "consent",
    params(ReferralQuery),
    responses((status = 200, body = ReferralListOut, description = "A page of referrals"), (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)")),
    security(("bearer" = [])))]
/// The caller's institution's referrals (incoming and outgoing), oldest first.
pub async fn list(
    state: web::Data<State>,
    g: Guarded<ConsentReader>,
    q: web::Query<ReferralQuery>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let limit = page_size(q.limit)?;
    let mut query =
        referral::Entity::find().filter(referral::Column::TenantId.eq(caller.tenant.as_str()));
    if let Some(patient) = &q.patient {
        let patient: PatientId = patient.parse().map_err(|e: caretrail_contracts::IdError| {
            ConsentError::field("patient", e.to_string())
        })?;
        query = query.filter(referral::Column::PatientId.eq(patient.as_str()));
    }
    if let Some(status) = &q.status {
        if ![
            "requested",
            "accepted",
            "declined",
            "completed",
            "cancelled",
        ]
        .contains(&status.as_str())
        {
            return Err(ConsentError::field(
                "status",
                "requested, accepted, declined, completed or cancelled",
            ));
        }
        query = query.filter(referral::Column::Status.eq(status.as_str()));
    }
    let institution = caller.institution.as_ref().map(|i| i.to_string());
    match (q.direction.as_deref(), institution) {
        (Some("incoming"), Some(i)) => query = query.filter(referral::Column::ToInstitution.eq(i)),
        (Some("outgoing"), Some(i)) => {
            query = query.filter(referral::Column::FromInstitution.eq(i))
        }
        (Some("incoming" | "outgoing"), None) => {
            return Err(ConsentError::field(
                "direction",
                "the caller has no institution",
            ));
        }
        (Some(_), _) => return Err(ConsentError::field("direction", "incoming or outgoing")),
        (None, Some(i)) if !caller.oversees() => {
            query = query.filter(
                Condition::any()
                    .add(referral::Column::FromInstitution.eq(i.as_str()))
                    .add(referral::Column::ToInstitution.eq(i.as_str())),
            )
        }
        (None, None) if !caller.oversees() => {
            return Err(ConsentError::Forbidden("this needs an institution".into()));
        }
        (None, _) => {}
    }
    if let Some(cursor) = &q.cursor {
        let after: ReferralId = cursor
            .parse()
            .map_err(|_| ConsentError::field("cursor", "not a cursor from this API"))?;
        query = query.filter(referral::Column::Id.gt(after.as_str()));
    }
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let mut rows = query
        .order_by_asc(referral::Column::Id)
        .limit(limit + 1)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(referral_out(&state, &caller, row).await?);
    }
    Ok(HttpResponse::Ok().json(ReferralListOut { items, next_cursor }))
}

/// One transition: who may make it, from which states, and whether it ends the grant.
async fn transition(
    state: &State,
    g: Guarded<ConsentActor>,
    id: &str,
    body: TransitionIn,
    to: &'static str,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let row = load(state, &caller, id).await?;
    let (side, from_states, end_grant_default): (&str, &[&str], bool) = match to {
        "accepted" => (&row.to_institution, &["requested"], false),
        "declined" => (&row.to_institution, &["requested"], true),
        "completed" => (&row.to_institution, &["accepted"], false),
        _ => (&row.from_institution, &["requested", "accepted"], true),
    };
    if !caller.belongs_to(&[side]) {
        return Err(ConsentError::Forbidden(format!(
            "only the {} institution may mark this referral {to}",
            if side == row.to_institution {
                "receiving"
            } else {
                "referring"
            }
        )));
    }
    let mut errors = Vec::new();
    let note = body
        .note
        .as_deref()
        .map(|n| text(&mut errors, "note", n, 1, 2000));
    // The receiving institution cannot keep for itself a grant it was given for a referral
    // it declines.
    if to == "declined" && body.end_grant == Some(false) {
        errors.push(caretrail_platform::FieldError::new(
            "end_grant",
            "declining a referral always ends its grant",
        ));
    }
    if !errors.is_empty() {
        return Err(ConsentError::Validation(errors));
    }
    let ends_grant = body.end_grant.unwrap_or(end_grant_default);
    let grant = match (&row.grant_id, ends_grant) {
        (Some(grant_id), true) => {
            let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
            let g = grant::Entity::find_by_id(grant_id.clone())
                .filter(grant::Column::TenantId.eq(caller.tenant.as_str()))
                .one(&txn)
                .await?;
            txn.commit().await?;
            g
        }
        _ => None,
    };
    let suite = match grant {
        Some(_) => Some(super::tenant_suite(state, &caller.tenant).await?),
        None => None,
    };
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let now = Utc::now();
    let changed = referral::Entity::update_many()
        .col_expr(referral::Column::Status, Expr::value(to))
        .col_expr(referral::Column::Note, Expr::value(note.clone()))
        .col_expr(referral::Column::UpdatedAt, Expr::value(now))
        .filter(referral::Column::Id.eq(row.id.as_str()))
        .filter(referral::Column::TenantId.eq(caller.tenant.as_str()))
        .filter(referral::Column::Status.is_in(from_states.iter().copied()))
        .exec(&txn)
        .await?;
    if changed.rows_affected == 0 {
        txn.rollback().await?;
        return Err(ConsentError::Conflict(format!(
            "a {} referral cannot become {to}",
            row.status
        )));
    }
    let mut updated = row.clone();
    updated.status = to.into();
    updated.note = note;
    updated.updated_at = now;
    let kind = match to {
        "accepted" => "referral.accepted",
        "declined" => "referral.declined",
        "completed" => "referral.completed",
        _ => "referral.cancelled",
    };
    anchor_transition(state, &txn, &caller, &updated, kind).await?;
    // The grant ends in the same transaction as the referral: both or neither.
    let revocation = match (&grant, suite) {
        (Some(g), Some(suite)) => {
            grants::revoke_in(state, &txn, &caller, suite, g, &format!("referral {to}"))
                .await?
                .map(|anchor| (g.id.clone(), anchor))
        }
        _ => None,
    };
    txn.commit().await?;
    state.anchorer.notify();
    if let Some((grant_id, anchor)) = revocation {
        grants::revoked(state, &caller, &grant_id, anchor).await?;
    }
    Ok(HttpResponse::Ok().json(referral_out(state, &caller, &updated).await?))
}

macro_rules! transition_handler {
    ($name:ident, $op:literal, $status:literal, $doc:literal) => {
        #[utoipa::path(post, operation_id = $op, path = concat!("/v1/referrals/{referral_id}/", stringify!($name)), tag = "consent",
            params(("referral_id" = caretrail_contracts::ReferralId, Path)),
            request_body = TransitionIn,
            responses((status = 200, body = ReferralOut, description = "The referral"),
                      (status = 403, body = caretrail_platform::Problem, description = "Not this side of the referral"),
                      (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
                      (status = 409, body = caretrail_platform::Problem, description = "Not possible from the referral's current state")),
            security(("bearer" = [])))]
        #[doc = $doc]
        pub async fn $name(
            state: web::Data<State>,
            g: Guarded<ConsentActor>,
            path: web::Path<String>,
            body: Option<web::Json<TransitionIn>>,
        ) -> Result<HttpResponse> {
            let body = body.map(|b| b.into_inner()).unwrap_or_default();
            transition(&state, g, &path, body, $status).await
        }
    };
}

transition_handler!(
    accept,
    "accept_referral",
    "accepted",
    "The receiving institution accepts the referral."
);
transition_handler!(
    decline,
    "decline_referral",
    "declined",
    "The receiving institution declines; the referral's grant ends."
);
transition_handler!(
    complete,
    "complete_referral",
    "completed",
    "The receiving institution completes the referral (`end_grant: true` ends its grant)."
);
transition_handler!(
    cancel,
    "cancel_referral",
    "cancelled",
    "The referring institution cancels; the grant ends unless `end_grant: false`."
);
