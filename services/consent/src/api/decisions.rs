//! `POST /v1/decisions`: what the decision API would answer, for partner apps checking
//! before they offer an action. It never counts accesses (reads through the object store
//! do, over the bus).

use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::policy::{Auditor, TenantMember};
use caretrail_contracts::auth::{Policy as _, PrincipalKind};
use caretrail_contracts::consent::{DecideIn, DecidedBy, Subject};
use caretrail_contracts::{InstitutionId, RecordId};
use caretrail_platform::auth::Guarded;

use super::{Caller, Result};
use crate::State;
use crate::error::ConsentError;
use crate::model::{DecisionOut, DecisionsIn, DecisionsOut};

/// Most records one request may name.
const MAX_RECORDS: usize = 1000;

#[utoipa::path(post, operation_id = "decide", path = "/v1/decisions", tag = "consent",
    request_body = DecisionsIn,
    responses((status = 200, body = DecisionsOut, description = "One decision per record, in order: permit or deny, the reasons, the grant or rule that decided, obligations"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid request (problem+json with the fields at fault)"),
              (status = 403, body = caretrail_platform::Problem, description = "Asking about another subject needs the auditor role (apps: audit:read)")),
    security(("bearer" = [])))]
/// Decide whether the caller may act on records for a purpose (auditors: any subject). A
/// refusal of a record the caller's institution does not own reads exactly like a record
/// that does not exist; auditors and owners see the reasons.
pub async fn decide(
    state: web::Data<State>,
    g: Guarded<TenantMember>,
    body: web::Json<DecisionsIn>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let p = g.principal();
    let body = body.into_inner();
    if body.records.is_empty() || body.records.len() > MAX_RECORDS {
        return Err(ConsentError::field(
            "records",
            format!("1..={MAX_RECORDS} record ids"),
        ));
    }
    // Asking what someone else could do is auditing; anyone else asks about themselves.
    let asks_for_other = body.subject.is_some();
    let subject = match body.subject {
        None => caller.subject(),
        Some(s) => {
            if !Auditor::allows(&p.0) {
                return Err(ConsentError::Forbidden(
                    "only auditors (apps: audit:read) ask about other subjects".into(),
                ));
            }
            let institution: InstitutionId =
                s.institution
                    .parse()
                    .map_err(|e: caretrail_contracts::IdError| {
                        ConsentError::field("subject.institution", e.to_string())
                    })?;
            let kind = if s.id.starts_with("app_") {
                PrincipalKind::App
            } else if s.id.starts_with("usr_") {
                PrincipalKind::User
            } else {
                return Err(ConsentError::field("subject.id", "a usr_… or app_… id"));
            };
            Subject {
                kind,
                id: s.id,
                institution: Some(institution),
                roles: s.roles,
                scopes: Vec::new(),
            }
        }
    };
    // Who may learn why a record is refused, and that it exists: auditors, and the
    // institution that owns it. Anyone else gets one answer for "refused" and "no such
    // record" alike.
    let full_detail = asks_for_other || p.0.reads_trail();
    let mut ids = Vec::with_capacity(body.records.len());
    for (i, r) in body.records.iter().enumerate() {
        ids.push(
            r.parse::<RecordId>()
                .map_err(|e| ConsentError::field(&format!("records[{i}]"), e.to_string()))?,
        );
    }
    let found = state
        .records
        .attributes(&caller.tenant, ids.clone())
        .await
        .map_err(|e| ConsentError::Dependency("the object store", e))?;
    let known: Vec<_> = ids
        .iter()
        .filter_map(|id| found.iter().find(|r| &r.record == id).cloned())
        .collect();
    let decisions = state
        .engine
        .decide(&DecideIn {
            tenant: caller.tenant.clone(),
            subject,
            action: body.action,
            purpose: body.purpose.unwrap_or_default(),
            resources: known.clone(),
            enforce: false,
        })
        .await?;
    let mut decided = known.iter().zip(decisions);
    let mut out = Vec::with_capacity(ids.len());
    let mut pending = decided.next();
    for id in &ids {
        match pending {
            Some((record, ref decision)) if &record.record == id => {
                let owns = caller.institution.as_ref() == Some(&record.owner);
                out.push(if decision.permit || full_detail || owns {
                    DecisionOut {
                        record: id.to_string(),
                        permit: decision.permit,
                        reasons: decision.reasons.clone(),
                        decided_by: decision.decided_by.clone(),
                        obligations: decision.obligations.clone(),
                    }
                } else {
                    not_permitted(id)
                });
                pending = decided.next();
            }
            _ if full_detail => out.push(DecisionOut {
                record: id.to_string(),
                permit: false,
                reasons: vec!["no such record".into()],
                decided_by: DecidedBy {
                    kind: "policy".into(),
                    id: "default_deny".into(),
                },
                obligations: Vec::new(),
            }),
            _ => out.push(not_permitted(id)),
        }
    }
    Ok(HttpResponse::Ok().json(DecisionsOut { decisions: out }))
}

/// The one answer a caller gets for a record it may not act on, whether or not the record
/// exists: no level, no grant, no near miss.
fn not_permitted(id: &RecordId) -> DecisionOut {
    DecisionOut {
        record: id.to_string(),
        permit: false,
        reasons: vec![NOT_PERMITTED.into()],
        decided_by: DecidedBy {
            kind: "policy".into(),
            id: "default_deny".into(),
        },
        obligations: Vec::new(),
    }
}

/// The reason of every refusal a caller may not see the detail of.
pub const NOT_PERMITTED: &str = "no policy rule, grant or emergency access lets you do this with this record, or there is no such record";
