//! Consent grants: recorded by a physician of an institution holding the patient's records,
//! signed by that institution and anchored (`consent.granted`); in force once anchored;
//! revocation (`consent.revoked`) takes effect before it is acknowledged.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::Role;
use caretrail_contracts::auth::policy::{ConsentReader, GrantWriter, TenantMember};
use caretrail_contracts::consent::Purpose;
use caretrail_contracts::records::Category;
use caretrail_contracts::{GrantId, InstitutionId, PatientId, RecordId, UserId};
use caretrail_crypto::Suite;
use caretrail_platform::FieldError;
use caretrail_platform::auth::Guarded;
use caretrail_runtime::anchoring::NewAnchor;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::{Caller, Result, page_size, queue_anchor, sealed, settle, tenant_suite, text};
use crate::State;
use crate::engine::{IndexChanged, publish_change};
use crate::entities::grant;
use crate::error::ConsentError;
use crate::model::{
    EVIDENCE_KINDS, EvidenceIn, GrantIn, GrantListOut, GrantOut, GrantRevokeIn, LedgerReceiptOut,
    ScopeIn, ScopeOut,
};

pub const KIND_GRANTED: &str = "consent.granted";
pub const KIND_REVOKED: &str = "consent.revoked";
/// Purposes a grant may be made for.
const GRANT_PURPOSES: [Purpose; 5] = [
    Purpose::Treatment,
    Purpose::Referral,
    Purpose::Emergency,
    Purpose::Research,
    Purpose::Insurance,
];
/// Most records one grant may name.
const MAX_SCOPE_RECORDS: usize = 1000;
/// Longest validity of one grant.
const MAX_VALIDITY_DAYS: i64 = 5 * 366;

fn parse_json<T: serde::de::DeserializeOwned>(s: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(s).map_err(|_| ConsentError::Corrupt(what))
}

pub fn status_of(row: &grant::Model, now: DateTime<Utc>) -> String {
    if row.status == "active" && row.valid_until <= now {
        "expired".into()
    } else {
        row.status.clone()
    }
}

pub fn grant_out(row: &grant::Model, receipt: Option<LedgerReceiptOut>) -> Result<GrantOut> {
    let categories: Vec<Category> = parse_json(&row.categories, "grant categories")?;
    Ok(GrantOut {
        id: row.id.clone(),
        patient: row.patient_id.clone(),
        grantor_institution: row.grantor_institution.clone(),
        granted_by: row.granted_by.clone(),
        recipient_institution: row.recipient_institution.clone(),
        recipient_user: row.recipient_user.clone(),
        purpose: row
            .purpose
            .parse()
            .map_err(|_| ConsentError::Corrupt("grant purpose"))?,
        scope: ScopeOut {
            records: parse_json(&row.record_ids, "grant records")?,
            categories,
            data_from: row.data_from.clone(),
            data_until: row.data_until.clone(),
        },
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        max_accesses: row.max_accesses.map(|m| m.max(0) as u32),
        accesses_used: row.accesses_used.max(0) as u32,
        evidence: parse_json(&row.evidence, "grant evidence")?,
        referral: row.referral_id.clone(),
        status: status_of(row, Utc::now()),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
        revoked_by: row.revoked_by.clone(),
        revocation_reason: row.revocation_reason.clone(),
        ledger_index: row.ledger_index,
        receipt,
    })
}

/// A grant to validate and store.
pub struct GrantSpec {
    pub patient: String,
    pub recipient_institution: String,
    pub recipient_user: Option<String>,
    pub purpose: String,
    pub scope: ScopeIn,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: DateTime<Utc>,
    pub max_accesses: Option<u32>,
    pub evidence: EvidenceIn,
    pub referral: Option<String>,
}

impl From<GrantIn> for GrantSpec {
    fn from(g: GrantIn) -> Self {
        Self {
            patient: g.patient,
            recipient_institution: g.recipient_institution,
            recipient_user: g.recipient_user,
            purpose: g.purpose,
            scope: g.scope,
            valid_from: g.valid_from,
            valid_until: g.valid_until,
            max_accesses: g.max_accesses,
            evidence: g.evidence,
            referral: None,
        }
    }
}

/// Checks everything a grant names against identity and the object store; the unsaved row.
pub async fn validate(
    state: &State,
    caller: &Caller,
    grantor: &InstitutionId,
    spec: GrantSpec,
) -> Result<grant::Model> {
    let mut errors = Vec::new();
    let patient = spec.patient.parse::<PatientId>().map_err(|e| e.to_string());
    if let Err(e) = &patient {
        errors.push(FieldError::new("patient", e.clone()));
    }
    let recipient = spec
        .recipient_institution
        .parse::<InstitutionId>()
        .map_err(|e| e.to_string());
    match &recipient {
        Err(e) => errors.push(FieldError::new("recipient_institution", e.clone())),
        Ok(r) if r == grantor => errors.push(FieldError::new(
            "recipient_institution",
            "an institution needs no grant for its own records",
        )),
        Ok(_) => {}
    }
    if let Some(user) = &spec.recipient_user
        && let Err(e) = user.parse::<UserId>()
    {
        errors.push(FieldError::new("recipient_user", e.to_string()));
    }
    let purpose = match spec.purpose.parse::<Purpose>() {
        Ok(p) if GRANT_PURPOSES.contains(&p) => Some(p),
        Ok(_) => {
            errors.push(FieldError::new(
                "purpose",
                "grants are for treatment, referral, emergency, research or insurance",
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new("purpose", e));
            None
        }
    };
    let mut records = Vec::new();
    let mut seen = HashSet::new();
    // Too many names is one problem, not one per name.
    let listed = if spec.scope.records.len() > MAX_SCOPE_RECORDS {
        &spec.scope.records[..0]
    } else {
        &spec.scope.records[..]
    };
    for (i, r) in listed.iter().enumerate() {
        match r.parse::<RecordId>() {
            Ok(id) if seen.insert(id.clone()) => records.push(id),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(
                format!("scope.records[{i}]"),
                e.to_string(),
            )),
        }
    }
    if spec.scope.records.len() > MAX_SCOPE_RECORDS {
        errors.push(FieldError::new(
            "scope.records",
            format!("at most {MAX_SCOPE_RECORDS} records"),
        ));
    }
    let mut categories = Vec::new();
    if spec.scope.categories.len() > Category::ALL.len() * 4 {
        errors.push(FieldError::new(
            "scope.categories",
            format!("at most {} categories", Category::ALL.len()),
        ));
    }
    for (i, c) in spec
        .scope
        .categories
        .iter()
        .take(Category::ALL.len() * 4)
        .enumerate()
    {
        match Category::parse(c) {
            Some(c) if !categories.contains(&c) => categories.push(c),
            Some(_) => {}
            None => errors.push(FieldError::new(
                format!("scope.categories[{i}]"),
                format!("unknown category {c:?}"),
            )),
        }
    }
    if spec.scope.records.is_empty() && spec.scope.categories.is_empty() {
        errors.push(FieldError::new("scope", "name records, categories or both"));
    }
    if let (Some(from), Some(until)) = (spec.scope.data_from, spec.scope.data_until)
        && until < from
    {
        errors.push(FieldError::new("scope.data_until", "before data_from"));
    }
    let now = Utc::now();
    let valid_from = spec.valid_from.unwrap_or(now);
    if spec.valid_until <= valid_from {
        errors.push(FieldError::new("valid_until", "must be after valid_from"));
    } else if spec.valid_until <= now {
        errors.push(FieldError::new("valid_until", "must be in the future"));
    } else if spec.valid_until - valid_from > chrono::Duration::days(MAX_VALIDITY_DAYS) {
        errors.push(FieldError::new(
            "valid_until",
            "at most five years of validity",
        ));
    }
    if spec.max_accesses == Some(0) || spec.max_accesses.is_some_and(|m| m > 1_000_000) {
        errors.push(FieldError::new("max_accesses", "1..=1000000"));
    }
    if !EVIDENCE_KINDS.contains(&spec.evidence.kind.as_str()) {
        errors.push(FieldError::new(
            "evidence.kind",
            format!("one of {}", EVIDENCE_KINDS.join(", ")),
        ));
    }
    let reference = text(
        &mut errors,
        "evidence.reference",
        &spec.evidence.reference,
        1,
        256,
    );
    if !errors.is_empty() {
        return Err(ConsentError::Validation(errors));
    }
    let (Ok(patient), Ok(recipient), Some(purpose)) = (patient, recipient, purpose) else {
        return Err(ConsentError::Validation(errors));
    };
    let tenant = &caller.tenant;
    // What the grant names must exist in this tenant.
    let known_patient = state
        .identity
        .patient(tenant.as_str(), patient.as_str())
        .await
        .map_err(|e| ConsentError::Dependency("the identity service", e))?;
    if known_patient.is_none() {
        errors.push(FieldError::new("patient", "not registered in this tenant"));
    }
    let institutions = state
        .identity
        .institutions(tenant.as_str())
        .await
        .map_err(|e| ConsentError::Dependency("the identity service", e))?;
    if !institutions.iter().any(|i| i.institution == recipient) {
        errors.push(FieldError::new(
            "recipient_institution",
            "no such institution in this tenant",
        ));
    }
    if !records.is_empty() {
        let found = state
            .records
            .attributes(tenant, records.clone())
            .await
            .map_err(|e| ConsentError::Dependency("the object store", e))?;
        // One answer for a record that does not exist, is another patient's or another
        // institution's: a grantor learns nothing of records that are not its own.
        for (i, id) in records.iter().enumerate() {
            let own = found
                .iter()
                .any(|r| &r.record == id && r.patient == patient && &r.owner == grantor);
            if !own {
                errors.push(FieldError::new(
                    format!("scope.records[{i}]"),
                    "not a record of this patient's that your institution holds",
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConsentError::Validation(errors));
    }
    let json = |v: serde_json::Value| v.to_string();
    Ok(grant::Model {
        id: GrantId::generate().to_string(),
        tenant_id: tenant.to_string(),
        patient_id: patient.to_string(),
        grantor_institution: grantor.to_string(),
        granted_by: caller.id.clone(),
        recipient_institution: recipient.to_string(),
        recipient_user: spec.recipient_user,
        purpose: purpose.as_str().into(),
        record_ids: json(json!(records)),
        categories: json(json!(categories)),
        data_from: spec.scope.data_from.map(|d| d.to_string()),
        data_until: spec.scope.data_until.map(|d| d.to_string()),
        valid_from,
        valid_until: spec.valid_until,
        max_accesses: spec.max_accesses.map(|m| m as i32),
        accesses_used: 0,
        evidence: json(json!(EvidenceIn {
            kind: spec.evidence.kind,
            reference,
        })),
        referral_id: spec.referral,
        status: "pending".into(),
        created_at: now,
        revoked_at: None,
        revoked_by: None,
        revocation_reason: None,
        ledger_index: None,
    })
}

/// The `consent.granted` payload: ids and validity in clear; purpose, scope and the evidence's
/// hash sealed.
fn granted_payload(
    row: &grant::Model,
    suite: Suite,
) -> Result<(Vec<u8>, caretrail_ledger_proofs::Opening)> {
    let evidence_hash = caretrail_crypto::hash(suite, row.evidence.as_bytes()).to_hex();
    sealed(
        suite,
        json!({
            "grant": row.id,
            "patient": row.patient_id,
            "grantor": row.grantor_institution,
            "granted_by": row.granted_by,
            "recipient_institution": row.recipient_institution,
            "recipient_user": row.recipient_user,
            "valid_from": row.valid_from.timestamp_millis(),
            "valid_until": row.valid_until.timestamp_millis(),
            "referral": row.referral_id,
        }),
        json!({
            "purpose": row.purpose,
            "records": parse_json::<serde_json::Value>(&row.record_ids, "grant records")?,
            "categories": parse_json::<serde_json::Value>(&row.categories, "grant categories")?,
            "data_from": row.data_from,
            "data_until": row.data_until,
            "max_accesses": row.max_accesses,
            "evidence_hash": evidence_hash,
        }),
    )
}

/// The domain event of a grant (the anchorer adds its ledger fields).
fn grant_event(row: &grant::Model, actor: &Caller) -> Result<serde_json::Value> {
    Ok(json!({
        "grant": row.id,
        "patient": row.patient_id,
        "grantor": row.grantor_institution,
        "recipient_institution": row.recipient_institution,
        "recipient_user": row.recipient_user,
        "purpose": row.purpose,
        "records": parse_json::<serde_json::Value>(&row.record_ids, "grant records")?,
        "categories": parse_json::<serde_json::Value>(&row.categories, "grant categories")?,
        "data_from": row.data_from,
        "data_until": row.data_until,
        "valid_from": row.valid_from,
        "valid_until": row.valid_until,
        "max_accesses": row.max_accesses,
        "referral": row.referral_id,
        "actor": {"subject": actor.id, "kind": actor.kind, "institution": actor.institution},
        "reason": row.revocation_reason,
    }))
}

/// Inserts the grant and queues its anchoring, in the caller's transaction.
pub async fn insert(
    state: &State,
    txn: &DatabaseTransaction,
    caller: &Caller,
    row: grant::Model,
    suite: Suite,
) -> Result<(grant::Model, i64)> {
    let (payload, opening) = granted_payload(&row, suite)?;
    let mut event = grant_event(&row, caller)?;
    event["opening"] = json!(opening);
    let row = row.into_active_model().insert(txn).await?;
    let anchor = queue_anchor(
        txn,
        NewAnchor {
            tenant: row.tenant_id.clone(),
            subject: row.id.clone(),
            kind: KIND_GRANTED,
            request_id: format!("grant:{}", row.id),
            signer: row.grantor_institution.clone(),
            payload,
            submission: None,
            event_name: KIND_GRANTED,
            event,
            hold: Duration::from_millis(state.settings.anchor_wait_ms) + Duration::from_secs(5),
        },
    )
    .await?;
    Ok((row, anchor))
}

/// After the grant's anchoring settled: this replica's index knows it before the reply.
pub async fn activate_here(state: &State, tenant: &str, id: &str) -> Result<()> {
    state.engine.apply(tenant, &IndexChanged::grant(id)).await
}

pub async fn load(state: &State, caller: &Caller, id: &str) -> Result<grant::Model> {
    let id: GrantId = id.parse().map_err(|_| ConsentError::NotFound)?;
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let row = grant::Entity::find_by_id(id.to_string())
        .filter(grant::Column::TenantId.eq(caller.tenant.as_str()))
        .one(&txn)
        .await?;
    txn.commit().await?;
    let row = row.ok_or(ConsentError::NotFound)?;
    // Outsiders learn nothing, not even that it exists.
    if !caller.oversees()
        && !caller.belongs_to(&[&row.grantor_institution, &row.recipient_institution])
    {
        return Err(ConsentError::NotFound);
    }
    Ok(row)
}

#[utoipa::path(post, operation_id = "create_grant", path = "/v1/grants", tag = "consent",
    request_body = GrantIn,
    responses((status = 201, body = GrantOut, description = "Signed by the caller's institution, anchored (`consent.granted`, receipt included) and in force"),
              (status = 202, body = GrantOut, description = "Stored; in force once anchoring completes in the background"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid or unknown patient, institution, records; no evidence; bad period"),
              (status = 403, body = caretrail_platform::Problem, description = "Not a physician (or an app with grants:write) of an institution"),
              (status = 422, body = caretrail_platform::Problem, description = "The ledger refused the grant")),
    security(("bearer" = [])))]
/// Record a patient's consent: the recipient institution (optionally one named physician)
/// may read the scoped records of the caller's institution for the purpose, in the window.
pub async fn create(
    state: web::Data<State>,
    g: Guarded<GrantWriter>,
    body: web::Json<GrantIn>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let grantor = caller.institution()?.clone();
    let suite = tenant_suite(&state, &caller.tenant).await?;
    let row = validate(&state, &caller, &grantor, body.into_inner().into()).await?;
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let (row, anchor) = insert(&state, &txn, &caller, row, suite).await?;
    txn.commit().await?;
    respond_created(&state, &caller, row, anchor).await
}

/// 201 with the receipt once anchored (and in force), else 202.
pub async fn respond_created(
    state: &State,
    caller: &Caller,
    row: grant::Model,
    anchor: i64,
) -> Result<HttpResponse> {
    let receipt = settle(state, anchor).await?;
    activate_here(state, caller.tenant.as_str(), &row.id).await?;
    let location = format!("/v1/grants/{}", row.id);
    let row = load(state, caller, &row.id).await?;
    let out = grant_out(&row, receipt)?;
    Ok(if out.receipt.is_some() {
        HttpResponse::Created()
    } else {
        HttpResponse::Accepted()
    }
    .insert_header((actix_web::http::header::LOCATION, location))
    .json(out))
}

#[utoipa::path(get, operation_id = "get_grant", path = "/v1/grants/{grant_id}", tag = "consent",
    params(("grant_id" = caretrail_contracts::GrantId, Path)),
    responses((status = 200, body = GrantOut, description = "The grant"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found, or not the caller's institution's (also for other tenants)")),
    security(("bearer" = [])))]
/// A grant, to its granting and receiving institutions, tenant admins and auditors.
pub async fn get(
    state: web::Data<State>,
    g: Guarded<ConsentReader>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let row = load(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(grant_out(&row, None)?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct GrantQuery {
    pub patient: Option<String>,
    /// Receiving institution.
    pub recipient: Option<String>,
    /// Granting institution.
    pub grantor: Option<String>,
    /// pending, active, expired, revoked, rejected.
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u64>,
}

#[utoipa::path(get, operation_id = "list_grants", path = "/v1/grants", tag = "consent",
    params(GrantQuery),
    responses((status = 200, body = GrantListOut, description = "A page of grants"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)")),
    security(("bearer" = [])))]
/// Search grants by patient, institution and status (oldest first). Physicians and apps see
/// their institution's grants (given or received); tenant admins and auditors all.
pub async fn list(
    state: web::Data<State>,
    g: Guarded<ConsentReader>,
    q: web::Query<GrantQuery>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let limit = page_size(q.limit)?;
    let mut query =
        grant::Entity::find().filter(grant::Column::TenantId.eq(caller.tenant.as_str()));
    if let Some(patient) = &q.patient {
        let patient: PatientId = patient.parse().map_err(|e: caretrail_contracts::IdError| {
            ConsentError::field("patient", e.to_string())
        })?;
        query = query.filter(grant::Column::PatientId.eq(patient.as_str()));
    }
    for (field, value, column) in [
        (
            "recipient",
            &q.recipient,
            grant::Column::RecipientInstitution,
        ),
        ("grantor", &q.grantor, grant::Column::GrantorInstitution),
    ] {
        if let Some(value) = value {
            let id: InstitutionId = value.parse().map_err(|e: caretrail_contracts::IdError| {
                ConsentError::field(field, e.to_string())
            })?;
            query = query.filter(column.eq(id.as_str()));
        }
    }
    let now = Utc::now();
    match q.status.as_deref() {
        None => {}
        Some("active") => {
            query = query
                .filter(grant::Column::Status.eq("active"))
                .filter(grant::Column::ValidUntil.gt(now))
        }
        Some("expired") => {
            query = query
                .filter(grant::Column::Status.eq("active"))
                .filter(grant::Column::ValidUntil.lte(now))
        }
        Some(s @ ("pending" | "revoked" | "rejected")) => {
            query = query.filter(grant::Column::Status.eq(s))
        }
        Some(_) => {
            return Err(ConsentError::field(
                "status",
                "one of pending, active, expired, revoked, rejected",
            ));
        }
    }
    if !caller.oversees() {
        let institution = caller.institution()?.to_string();
        query = query.filter(
            Condition::any()
                .add(grant::Column::GrantorInstitution.eq(institution.as_str()))
                .add(grant::Column::RecipientInstitution.eq(institution.as_str())),
        );
    }
    if let Some(cursor) = &q.cursor {
        let after: GrantId = cursor
            .parse()
            .map_err(|_| ConsentError::field("cursor", "not a cursor from this API"))?;
        query = query.filter(grant::Column::Id.gt(after.as_str()));
    }
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let mut rows = query
        .order_by_asc(grant::Column::Id)
        .limit(limit + 1)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
    let items = rows
        .iter()
        .map(|r| grant_out(r, None))
        .collect::<Result<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(GrantListOut { items, next_cursor }))
}

/// Revokes a grant: refused to every replica's decisions before this returns on this one,
/// and within a second on the others. Revoking a revoked grant changes nothing.
pub async fn revoke_grant(
    state: &State,
    caller: &Caller,
    id: &str,
    reason: &str,
) -> Result<(grant::Model, Option<LedgerReceiptOut>)> {
    let row = load(state, caller, id).await?;
    let may = caller.has(Role::TenantAdmin)
        || (caller.belongs_to(&[&row.grantor_institution])
            && caller.allowed::<caretrail_contracts::auth::policy::ConsentActor>());
    if !may {
        return Err(ConsentError::Forbidden(
            "only the granting institution or a tenant admin revokes a grant".into(),
        ));
    }
    apply_revocation(state, caller, row, reason).await
}

/// Revokes `row` (already authorised) and anchors `consent.revoked`.
pub async fn apply_revocation(
    state: &State,
    caller: &Caller,
    row: grant::Model,
    reason: &str,
) -> Result<(grant::Model, Option<LedgerReceiptOut>)> {
    let id = row.id.clone();
    match row.status.as_str() {
        "revoked" => return Ok((row, None)),
        "rejected" => {
            return Err(ConsentError::Conflict(
                "the ledger refused this grant; it was never in force".into(),
            ));
        }
        _ => {}
    }
    let suite = tenant_suite(state, &caller.tenant).await?;
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let Some(anchor) = revoke_in(state, &txn, caller, suite, &row, reason).await? else {
        // Revoked concurrently: the other request anchors it.
        txn.rollback().await?;
        return Ok((load(state, caller, &id).await?, None));
    };
    txn.commit().await?;
    let receipt = revoked(state, caller, &id, anchor).await?;
    Ok((load(state, caller, &id).await?, receipt))
}

/// The revocation of `row` inside the caller's transaction, so that it commits with whatever
/// ended the grant (a declined referral) or not at all: flips the row, publishes the change
/// and queues `consent.revoked`. `None` if the grant was no longer pending or active (revoked
/// concurrently, refused by the ledger). After the commit, call [`revoked`].
pub async fn revoke_in(
    state: &State,
    txn: &sea_orm::DatabaseTransaction,
    caller: &Caller,
    suite: caretrail_crypto::Suite,
    row: &grant::Model,
    reason: &str,
) -> Result<Option<i64>> {
    let now = Utc::now();
    let changed = grant::Entity::update_many()
        .col_expr(grant::Column::Status, Expr::value("revoked"))
        .col_expr(grant::Column::RevokedAt, Expr::value(now))
        .col_expr(grant::Column::RevokedBy, Expr::value(caller.id.clone()))
        .col_expr(
            grant::Column::RevocationReason,
            Expr::value(reason.to_string()),
        )
        .filter(grant::Column::Id.eq(row.id.as_str()))
        .filter(grant::Column::TenantId.eq(caller.tenant.as_str()))
        .filter(grant::Column::Status.is_in(["pending", "active"]))
        .exec(txn)
        .await?;
    if changed.rows_affected == 0 {
        return Ok(None);
    }
    publish_change(txn, caller.tenant.as_str(), &IndexChanged::grant(&row.id)).await?;
    let signer = row.grantor_institution.clone();
    let (payload, opening) = sealed(
        suite,
        json!({
            "grant": row.id,
            "patient": row.patient_id,
            "grantor": row.grantor_institution,
            "recipient_institution": row.recipient_institution,
            "revoked_by": caller.id,
            "at": now.timestamp_millis(),
        }),
        json!({"reason_hash": caretrail_crypto::hash(suite, reason.as_bytes()).to_hex()}),
    )?;
    let mut revoked = row.clone();
    revoked.status = "revoked".into();
    revoked.revocation_reason = Some(reason.to_string());
    let mut event = grant_event(&revoked, caller)?;
    event["opening"] = json!(opening);
    let anchor = queue_anchor(
        txn,
        NewAnchor {
            tenant: row.tenant_id.clone(),
            subject: row.id.clone(),
            kind: KIND_REVOKED,
            request_id: format!("revoke:{}", row.id),
            signer,
            payload,
            submission: None,
            event_name: KIND_REVOKED,
            event,
            hold: Duration::from_millis(state.settings.anchor_wait_ms) + Duration::from_secs(5),
        },
    )
    .await?;
    Ok(Some(anchor))
}

/// After a revocation committed: in force on this replica before anyone hears back (an
/// error here is the caller's, as before: it must not hear "revoked" while this replica may
/// still permit), then anchored (the receipt if the ledger answered in time).
pub async fn revoked(
    state: &State,
    caller: &Caller,
    grant: &str,
    anchor: i64,
) -> Result<Option<LedgerReceiptOut>> {
    activate_here(state, caller.tenant.as_str(), grant).await?;
    state.outbox.notify_one();
    Ok(settle(state, anchor).await.unwrap_or_else(|e| {
        tracing::warn!(error = %caretrail_platform::problem::ErrorChain(&e), %grant, "the revocation is in force; its anchoring continues in the background");
        None
    }))
}

#[utoipa::path(post, operation_id = "revoke_grant", path = "/v1/grants/{grant_id}/revoke", tag = "consent",
    params(("grant_id" = caretrail_contracts::GrantId, Path)),
    request_body = GrantRevokeIn,
    responses((status = 200, body = GrantOut, description = "Revoked and in force on every decision from now on; `consent.revoked` is anchored (receipt when it committed in time)"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not the granting institution or a tenant admin"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "The grant was never in force (refused by the ledger)")),
    security(("bearer" = [])))]
/// Revoke a grant (the patient withdrew consent, the referral ended…): effective at once.
pub async fn revoke(
    state: web::Data<State>,
    g: Guarded<TenantMember>,
    path: web::Path<String>,
    body: web::Json<GrantRevokeIn>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let mut errors = Vec::new();
    let reason = text(&mut errors, "reason", &body.reason, 1, 1000);
    if !errors.is_empty() {
        return Err(ConsentError::Validation(errors));
    }
    let (row, receipt) = revoke_grant(&state, &caller, &path, &reason).await?;
    Ok(HttpResponse::Ok().json(grant_out(&row, receipt)?))
}

#[utoipa::path(get, operation_id = "get_grant_fhir", path = "/v1/grants/{grant_id}/fhir", tag = "consent",
    params(("grant_id" = caretrail_contracts::GrantId, Path)),
    responses((status = 200, content_type = "application/fhir+json", description = "The grant as a FHIR R4 Consent resource"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)")),
    security(("bearer" = [])))]
/// The grant as a FHIR R4 `Consent` resource.
pub async fn fhir(
    state: web::Data<State>,
    g: Guarded<ConsentReader>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let row = load(&state, &caller, &path).await?;
    let out = grant_out(&row, None)?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(super::fhir::consent(&out)))
}
