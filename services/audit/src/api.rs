//! The regulator API (auditors and tenant admins; apps with `audit:read`), tenant-scoped by
//! the caller's token: a record's trail with ledger proofs, an event search and an access
//! summary.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::policy::AuditReader;
use caretrail_contracts::ledger::{BundleResult, MAX_BUNDLES};
use caretrail_contracts::{InstitutionId, PatientId, RecordId, TenantId};
use caretrail_platform::auth::Guarded;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::State;
use crate::entities::audit_event;
use crate::error::AuditError;
use crate::model::{
    AcceptedCheckpointOut, AccessCountOut, AccessSummaryOut, ActorOut, AnomalyListOut, AnomalyOut,
    AuditEventListOut, AuditEventOut, DecidedByOut, TRAIL_BUNDLE_FORMAT, TrailBundleOut, TrailOut,
    WitnessOut,
};

type Result<T> = std::result::Result<T, AuditError>;

/// Auditors and tenant admins of a tenant, or its apps holding `audit:read`.
/// The tenant of a caller [`AuditReader`] admitted.
fn auditor_tenant(g: &Guarded<AuditReader>) -> Result<TenantId> {
    Ok(g.tenant()?.clone())
}

/// Page size from a query (default 50, at most 200).
fn page_size(limit: Option<u64>) -> Result<u64> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(AuditError::field("limit", "1..=200"))
    }
}

/// The exact scope of a grant, from its event (`payload`).
fn scope_of(row: &audit_event::Model, payload: Option<&Value>) -> Option<Value> {
    if !row.kind.starts_with("consent.") {
        return None;
    }
    let p = payload?;
    Some(serde_json::json!({
        "records": p["records"],
        "categories": p["categories"],
        "data_from": p["data_from"],
        "data_until": p["data_until"],
        "valid_from": p["valid_from"],
        "valid_until": p["valid_until"],
        "max_accesses": p["max_accesses"],
        "recipient_user": p["recipient_user"],
    }))
}

/// The opening of the entry's sealed fields, as the producer sent it with the event (events
/// of entries written before payload version 2 have none: their fields are in clear).
fn opening_of(payload: Option<&mut Value>) -> Option<caretrail_ledger_proofs::Opening> {
    let opening = payload?.get_mut("opening")?.take();
    serde_json::from_value(opening).ok()
}

fn event_out(row: &audit_event::Model) -> AuditEventOut {
    // The event as its producer sent it, parsed once for the scope and the opening.
    let mut payload: Option<Value> = serde_json::from_str(&row.payload).ok();
    let scope = scope_of(row, payload.as_ref());
    let opening = opening_of(payload.as_mut());
    AuditEventOut {
        id: row.id.clone(),
        kind: row.kind.clone(),
        at: row.occurred_at,
        actor: ActorOut {
            subject: row.actor_subject.clone(),
            institution: row.actor_institution.clone(),
        },
        record: row.record_id.clone(),
        patient: row.patient_id.clone(),
        grant: row.grant_id.clone(),
        referral: row.referral_id.clone(),
        category: row.category.clone(),
        owner_institution: row.owner_institution.clone(),
        recipient_institution: row.recipient_institution.clone(),
        purpose: row.purpose.clone(),
        action: row.action.clone(),
        permit: row.permit,
        decided_by: match (&row.decided_by_kind, &row.decided_by_id) {
            (Some(kind), Some(id)) => Some(DecidedByOut {
                kind: kind.clone(),
                id: id.clone(),
            }),
            _ => None,
        },
        scope,
        opening,
        ledger_index: row.ledger_index,
        leaf_hash: row.leaf_hash.clone(),
        proof: None,
    }
}

/// Whether a grant event's scope covers the record.
fn covers(
    grant: &audit_event::Model,
    record: &str,
    category: Option<&str>,
    owner: Option<&str>,
) -> bool {
    let Ok(p) = serde_json::from_str::<Value>(&grant.payload) else {
        return false;
    };
    if owner.is_some() && p["grantor"].as_str() != owner {
        return false;
    }
    let listed = |field: &str, value: &str| {
        p[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(value)))
    };
    listed("records", record) || category.is_some_and(|c| listed("categories", c))
}

/// Attaches proof bundles from the ledger (batched).
async fn attach_proofs(
    state: &State,
    tenant: &TenantId,
    events: &mut [AuditEventOut],
) -> Result<()> {
    let wanted: Vec<(usize, u64)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.ledger_index.map(|x| (i, x.max(0) as u64)))
        .collect();
    for chunk in wanted.chunks(MAX_BUNDLES) {
        let results = state
            .ledger
            .bundles(tenant.as_str(), chunk.iter().map(|(_, x)| *x).collect())
            .await
            .map_err(|e| AuditError::Dependency("the ledger", e))?;
        for ((i, _), result) in chunk.iter().zip(results) {
            if let BundleResult::Bundle(bundle) = result {
                events[*i].proof = Some(*bundle);
            }
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TrailQuery {
    /// Attach a ledger proof bundle to every event (default true).
    pub proofs: Option<bool>,
}

#[utoipa::path(get, operation_id = "record_trail", path = "/v1/audit/records/{record_id}/trail", tag = "audit",
    params(("record_id" = caretrail_contracts::RecordId, Path), TrailQuery),
    responses((status = 200, body = TrailOut, description = "Every event of the record in the order it happened — anchoring, the grants that covered it, accesses and refusals, revocations, erasure — each with its ledger proof"),
              (status = 403, body = caretrail_platform::Problem, description = "Not an auditor or tenant admin"),
              (status = 404, body = caretrail_platform::Problem, description = "No such record in the caller's tenant")),
    security(("bearer" = [])))]
/// A record's whole lifecycle, each event with its inclusion proof and signed checkpoint.
pub async fn trail(
    state: web::Data<State>,
    g: Guarded<AuditReader>,
    path: web::Path<String>,
    q: web::Query<TrailQuery>,
) -> Result<HttpResponse> {
    let tenant = auditor_tenant(&g)?;
    let trail = build_trail(&state, &tenant, &path, q.proofs.unwrap_or(true)).await?;
    Ok(HttpResponse::Ok().json(trail))
}

#[utoipa::path(get, operation_id = "record_trail_bundle", path = "/v1/audit/records/{record_id}/trail/bundle", tag = "audit",
    params(("record_id" = caretrail_contracts::RecordId, Path)),
    responses((status = 200, body = TrailBundleOut, description = "The trail with every event's proof bundle, as one file (attachment) for `caretrail verify trail`"),
              (status = 403, body = caretrail_platform::Problem, description = "Not an auditor or tenant admin"),
              (status = 404, body = caretrail_platform::Problem, description = "No such record in the caller's tenant")),
    security(("bearer" = [])))]
/// The record's trail as one downloadable proof file (`caretrail-trail-bundle/v1`): verify
/// it offline with `caretrail verify trail FILE --ledger-key <vkey>`.
pub async fn trail_bundle(
    state: web::Data<State>,
    g: Guarded<AuditReader>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = auditor_tenant(&g)?;
    let trail = build_trail(&state, &tenant, &path, true).await?;
    let filename = format!("trail-{}.json", trail.record);
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .json(TrailBundleOut {
            format: TRAIL_BUNDLE_FORMAT.to_string(),
            tenant: tenant.to_string(),
            generated_at: Utc::now(),
            trail,
        }))
}

#[utoipa::path(get, operation_id = "record_trail_fhir", path = "/v1/audit/records/{record_id}/trail/fhir", tag = "audit",
    params(("record_id" = caretrail_contracts::RecordId, Path)),
    responses((status = 200, content_type = "application/fhir+json", description = "The trail as a FHIR R4 collection Bundle: an AuditEvent per event (with its ledger entry as an entity) and a Provenance carrying the SM2/Ed25519 signature of every signed entry"),
              (status = 403, body = caretrail_platform::Problem, description = "Not an auditor or tenant admin"),
              (status = 404, body = caretrail_platform::Problem, description = "No such record in the caller's tenant")),
    security(("bearer" = [])))]
/// A record's trail as FHIR R4 `AuditEvent` and `Provenance` resources.
pub async fn trail_fhir(
    state: web::Data<State>,
    g: Guarded<AuditReader>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = auditor_tenant(&g)?;
    let trail = build_trail(&state, &tenant, &path, true).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(crate::fhir::trail_bundle(tenant.as_str(), &trail)))
}

/// The record's own events plus the grant events covering it, in the order they happened.
pub async fn build_trail(
    state: &State,
    tenant: &TenantId,
    id: &str,
    proofs: bool,
) -> Result<TrailOut> {
    let record: RecordId = id.parse().map_err(|_| AuditError::NotFound)?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let own = audit_event::Entity::find()
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .filter(audit_event::Column::RecordId.eq(record.as_str()))
        .all(&txn)
        .await?;
    let Some(anchored) = own.iter().find(|r| r.kind == "record.anchored").cloned() else {
        txn.commit().await?;
        return Err(AuditError::NotFound);
    };
    let grants = match &anchored.patient_id {
        Some(patient) => {
            audit_event::Entity::find()
                .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
                .filter(audit_event::Column::PatientId.eq(patient.as_str()))
                .filter(audit_event::Column::Kind.is_in(["consent.granted", "consent.revoked"]))
                .all(&txn)
                .await?
        }
        None => Vec::new(),
    };
    txn.commit().await?;
    let mut rows = own;
    rows.extend(grants.into_iter().filter(|g| {
        covers(
            g,
            record.as_str(),
            anchored.category.as_deref(),
            anchored.owner_institution.as_deref(),
        )
    }));
    // In the order things happened; the ledger order can differ by the few milliseconds a
    // read's asynchronous anchoring takes (a read just before a revocation may be anchored
    // just after it), and each event still names its ledger entry.
    rows.sort_by(|a, b| {
        (a.occurred_at, a.ledger_index.unwrap_or(i64::MAX), &a.id).cmp(&(
            b.occurred_at,
            b.ledger_index.unwrap_or(i64::MAX),
            &b.id,
        ))
    });
    let mut events: Vec<AuditEventOut> = rows.iter().map(event_out).collect();
    if proofs {
        attach_proofs(state, tenant, &mut events).await?;
    }
    Ok(TrailOut {
        record: record.to_string(),
        patient: anchored.patient_id,
        category: anchored.category,
        owner_institution: anchored.owner_institution,
        events,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventQuery {
    pub patient: Option<String>,
    /// Acting, owning or receiving institution.
    pub institution: Option<String>,
    pub record: Option<String>,
    /// E.g. `record.accessed`; a trailing `*` matches a prefix (`consent.*`).
    pub kind: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub to: Option<DateTime<Utc>>,
    /// Attach ledger proof bundles (default false; not with csv).
    pub proofs: Option<bool>,
    /// `json` (default) or `csv` (one row per event, for spreadsheets).
    pub format: Option<String>,
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u64>,
}

#[utoipa::path(get, operation_id = "audit_events", path = "/v1/audit/events", tag = "audit",
    params(EventQuery),
    responses((status = 200, body = AuditEventListOut, description = "Matching events, oldest first"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not allowed for the caller")),
    security(("bearer" = [])))]
/// Search the tenant's audit events by patient, institution, record, kind and time.
pub async fn events(
    state: web::Data<State>,
    g: Guarded<AuditReader>,
    q: web::Query<EventQuery>,
) -> Result<HttpResponse> {
    let tenant = auditor_tenant(&g)?;
    let limit = page_size(q.limit)?;
    let mut query =
        audit_event::Entity::find().filter(audit_event::Column::TenantId.eq(tenant.as_str()));
    if let Some(patient) = &q.patient {
        let patient: PatientId = patient.parse().map_err(|e: caretrail_contracts::IdError| {
            AuditError::field("patient", e.to_string())
        })?;
        query = query.filter(audit_event::Column::PatientId.eq(patient.as_str()));
    }
    if let Some(record) = &q.record {
        let record: RecordId = record.parse().map_err(|e: caretrail_contracts::IdError| {
            AuditError::field("record", e.to_string())
        })?;
        query = query.filter(audit_event::Column::RecordId.eq(record.as_str()));
    }
    if let Some(institution) = &q.institution {
        let i: InstitutionId = institution
            .parse()
            .map_err(|e: caretrail_contracts::IdError| {
                AuditError::field("institution", e.to_string())
            })?;
        query = query.filter(
            Condition::any()
                .add(audit_event::Column::ActorInstitution.eq(i.as_str()))
                .add(audit_event::Column::OwnerInstitution.eq(i.as_str()))
                .add(audit_event::Column::RecipientInstitution.eq(i.as_str())),
        );
    }
    if let Some(kind) = &q.kind {
        let valid = !kind.is_empty()
            && kind.len() <= 64
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_' || b == b'*');
        if !valid {
            return Err(AuditError::field(
                "kind",
                "an event kind such as record.accessed or consent.*",
            ));
        }
        query = match kind.strip_suffix('*') {
            Some(prefix) => query.filter(audit_event::Column::Kind.starts_with(prefix)),
            None => query.filter(audit_event::Column::Kind.eq(kind.as_str())),
        };
    }
    if let Some(from) = q.from {
        query = query.filter(audit_event::Column::OccurredAt.gte(from));
    }
    if let Some(to) = q.to {
        query = query.filter(audit_event::Column::OccurredAt.lt(to));
    }
    if let Some(cursor) = &q.cursor {
        let valid =
            cursor.len() == 36 && cursor.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !valid {
            return Err(AuditError::field("cursor", "not a cursor from this API"));
        }
        query = query.filter(audit_event::Column::Id.gt(cursor.as_str()));
    }
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let mut rows = query
        .order_by_asc(audit_event::Column::Id)
        .limit(limit + 1)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
    let mut items: Vec<AuditEventOut> = rows.iter().map(event_out).collect();
    match q.format.as_deref() {
        None | Some("json") => {}
        Some("csv") => {
            let mut response = HttpResponse::Ok();
            response.content_type("text/csv; charset=utf-8");
            if let Some(cursor) = &next_cursor {
                response.insert_header(("caretrail-next-cursor", cursor.as_str()));
            }
            return Ok(response.body(csv(&items)));
        }
        Some(_) => return Err(AuditError::field("format", "json or csv")),
    }
    if q.proofs.unwrap_or(false) {
        attach_proofs(&state, &tenant, &mut items).await?;
    }
    Ok(HttpResponse::Ok().json(AuditEventListOut { items, next_cursor }))
}

/// RFC 4180 CSV of events (fields quoted when needed; formula-leading cells neutralised so
/// spreadsheets do not execute them).
fn csv(items: &[AuditEventOut]) -> String {
    fn cell(v: Option<&str>) -> String {
        let v = v.unwrap_or("");
        let v = if v.starts_with(['=', '+', '-', '@']) {
            format!("'{v}")
        } else {
            v.to_string()
        };
        if v.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v
        }
    }
    let mut out = String::from(
        "id,at,kind,record,patient,grant,category,actor,actor_institution,owner_institution,recipient_institution,purpose,permit,decided_by,ledger_index,leaf_hash\r\n",
    );
    for e in items {
        let at = e.at.to_rfc3339();
        let permit = e.permit.map(|p| p.to_string());
        let decided = e
            .decided_by
            .as_ref()
            .map(|d| format!("{}:{}", d.kind, d.id));
        let index = e.ledger_index.map(|i| i.to_string());
        let row = [
            Some(e.id.as_str()),
            Some(at.as_str()),
            Some(e.kind.as_str()),
            e.record.as_deref(),
            e.patient.as_deref(),
            e.grant.as_deref(),
            e.category.as_deref(),
            e.actor.subject.as_deref(),
            e.actor.institution.as_deref(),
            e.owner_institution.as_deref(),
            e.recipient_institution.as_deref(),
            e.purpose.as_deref(),
            permit.as_deref(),
            decided.as_deref(),
            index.as_deref(),
            e.leaf_hash.as_deref(),
        ];
        out.push_str(&row.into_iter().map(cell).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PeriodQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[utoipa::path(get, operation_id = "access_summary", path = "/v1/audit/reports/access-summary", tag = "audit",
    params(PeriodQuery),
    responses((status = 200, body = AccessSummaryOut, description = "The period's counts"), (status = 403, body = caretrail_platform::Problem, description = "Not allowed for the caller")),
    security(("bearer" = [])))]
/// Accesses per institution and category, refusals, break-glass uses, grants created and
/// revoked, in a period.
pub async fn access_summary(
    state: web::Data<State>,
    g: Guarded<AuditReader>,
    q: web::Query<PeriodQuery>,
) -> Result<HttpResponse> {
    let tenant = auditor_tenant(&g)?;
    let mut query = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::Kind)
        .column(audit_event::Column::ActorInstitution)
        .column(audit_event::Column::Category)
        .column_as(audit_event::Column::Id.count(), "n")
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .group_by(audit_event::Column::Kind)
        .group_by(audit_event::Column::ActorInstitution)
        .group_by(audit_event::Column::Category);
    if let Some(from) = q.from {
        query = query.filter(audit_event::Column::OccurredAt.gte(from));
    }
    if let Some(to) = q.to {
        query = query.filter(audit_event::Column::OccurredAt.lt(to));
    }
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let groups: Vec<(String, Option<String>, Option<String>, i64)> =
        query.into_tuple().all(&txn).await?;
    txn.commit().await?;
    let mut out = AccessSummaryOut {
        from: q.from,
        to: q.to,
        accesses: Vec::new(),
        refusals_total: 0,
        break_glass: 0,
        grants_created: 0,
        grants_revoked: 0,
        records_anchored: 0,
        records_erased: 0,
    };
    let mut per: HashMap<(Option<String>, Option<String>), (u64, u64)> = HashMap::new();
    for (kind, institution, category, n) in groups {
        let n = n.max(0) as u64;
        match kind.as_str() {
            "record.accessed" => per.entry((institution, category)).or_default().0 += n,
            "record.access_denied" => {
                per.entry((institution, category)).or_default().1 += n;
                out.refusals_total += n;
            }
            "break_glass.declared" => out.break_glass += n,
            "consent.granted" => out.grants_created += n,
            "consent.revoked" => out.grants_revoked += n,
            "record.anchored" => out.records_anchored += n,
            "record.erased" => out.records_erased += n,
            _ => {}
        }
    }
    out.accesses = per
        .into_iter()
        .map(
            |((institution, category), (accesses, refusals))| AccessCountOut {
                institution,
                category,
                accesses,
                refusals,
            },
        )
        .collect();
    out.accesses
        .sort_by(|a, b| (&a.institution, &a.category).cmp(&(&b.institution, &b.category)));
    Ok(HttpResponse::Ok().json(out))
}

const ANOMALY_KINDS: [&str; 5] = [
    "break_glass_used",
    "access_refused",
    "access_volume",
    "checkpoint_inconsistent",
    "checkpoint_invalid",
];

#[derive(Debug, Deserialize, IntoParams)]
pub struct AnomalyQuery {
    /// `break_glass_used`, `access_refused`, `access_volume`, `checkpoint_inconsistent` or
    /// `checkpoint_invalid`.
    pub kind: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Most recent first; 1..=200, default 50.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u64>,
}

#[utoipa::path(get, operation_id = "audit_anomalies", path = "/v1/audit/anomalies", tag = "audit",
    params(AnomalyQuery),
    responses((status = 200, body = AnomalyListOut, description = "Flags, most recent first"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid filter"),
              (status = 403, body = caretrail_platform::Problem, description = "Not an auditor or tenant admin")),
    security(("bearer" = [])))]
/// Anomalies: break-glass uses, refused access attempts and unusual access volume (flagged
/// while indexing), and checkpoints the built-in witness refused. Each was also published (`audit.anomaly.flagged`) and counted
/// (`caretrail_audit_anomalies_total`).
pub async fn anomalies(
    state: web::Data<State>,
    g: Guarded<AuditReader>,
    q: web::Query<AnomalyQuery>,
) -> Result<HttpResponse> {
    use crate::entities::anomaly;
    let tenant = auditor_tenant(&g)?;
    let limit = page_size(q.limit)?;
    let mut query = anomaly::Entity::find().filter(anomaly::Column::TenantId.eq(tenant.as_str()));
    if let Some(kind) = &q.kind {
        if !ANOMALY_KINDS.contains(&kind.as_str()) {
            return Err(AuditError::field(
                "kind",
                "break_glass_used, access_refused, access_volume, checkpoint_inconsistent or checkpoint_invalid",
            ));
        }
        query = query.filter(anomaly::Column::Kind.eq(kind.as_str()));
    }
    if let Some(from) = q.from {
        query = query.filter(anomaly::Column::FlaggedAt.gte(from));
    }
    if let Some(to) = q.to {
        query = query.filter(anomaly::Column::FlaggedAt.lt(to));
    }
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let rows = query
        .order_by_desc(anomaly::Column::FlaggedAt)
        .limit(limit)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let items = rows
        .into_iter()
        .map(|r| AnomalyOut {
            detail: serde_json::from_str(&r.detail).unwrap_or(Value::Null),
            id: r.id,
            kind: r.kind,
            subject: r.subject,
            institution: r.institution,
            patient: r.patient_id,
            record: r.record_id,
            event: r.event_id,
            flagged_at: r.flagged_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AnomalyListOut { items }))
}

#[utoipa::path(get, operation_id = "audit_witness", path = "/v1/audit/witness", tag = "audit",
    responses((status = 200, body = WitnessOut, description = "The witness's mode and last accepted checkpoint"),
              (status = 403, body = caretrail_platform::Problem, description = "Not an auditor or tenant admin")),
    security(("bearer" = [])))]
/// The built-in witness's view of the caller's tenant log: the last checkpoint it verified as
/// consistent with everything it accepted before, and how far it has cosigned. Refused
/// checkpoints show up as `checkpoint_inconsistent` / `checkpoint_invalid` anomalies.
pub async fn witness(state: web::Data<State>, g: Guarded<AuditReader>) -> Result<HttpResponse> {
    use crate::entities::witness_state;
    let tenant = auditor_tenant(&g)?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let row = witness_state::Entity::find_by_id(tenant.to_string())
        .one(&txn)
        .await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(WitnessOut {
        mode: state.witness.as_str().to_string(),
        accepted: row.map(|r| AcceptedCheckpointOut {
            tree_size: r.tree_size.max(0) as u64,
            root: r.root,
            checkpoint: r.checkpoint,
            ledger_key: r.ledger_key,
            cosigned_size: r.cosigned_size.max(0) as u64,
            accepted_at: r.accepted_at,
            checked_at: r.checked_at,
        }),
    }))
}
