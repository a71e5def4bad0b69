//! `POST /v1/decisions`: what the decision API would answer, for partner apps checking
//! before they offer an action. It never counts accesses (reads through the object store
//! do, over the bus).

use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::PrincipalKind;
use caretrail_contracts::consent::{DecideIn, DecidedBy, Subject};
use caretrail_contracts::{InstitutionId, RecordId};
use caretrail_platform::auth::Principal;

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
              (status = 403, body = caretrail_platform::Problem, description = "Asking about another subject needs tenant admin or auditor")),
    security(("bearer" = [])))]
/// Decide whether a subject (the caller by default) may act on records for a purpose.
/// Records the tenant does not have are denied like any other.
pub async fn decide(
    state: web::Data<State>,
    p: Principal,
    body: web::Json<DecisionsIn>,
) -> Result<HttpResponse> {
    let caller = Caller::from(&p)?;
    let body = body.into_inner();
    if body.records.is_empty() || body.records.len() > MAX_RECORDS {
        return Err(ConsentError::field(
            "records",
            format!("1..={MAX_RECORDS} record ids"),
        ));
    }
    let subject = match body.subject {
        None => caller.subject(),
        Some(s) => {
            if !caller.oversees() {
                return Err(ConsentError::Forbidden(
                    "only tenant admins and auditors ask about other subjects".into(),
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
    let mut decided = known.iter().map(|r| &r.record).zip(decisions);
    let mut out = Vec::with_capacity(ids.len());
    let mut pending = decided.next();
    for id in &ids {
        match pending {
            Some((record, ref decision)) if record == id => {
                out.push(DecisionOut {
                    record: id.to_string(),
                    permit: decision.permit,
                    reasons: decision.reasons.clone(),
                    decided_by: decision.decided_by.clone(),
                    obligations: decision.obligations.clone(),
                });
                pending = decided.next();
            }
            _ => out.push(DecisionOut {
                record: id.to_string(),
                permit: false,
                reasons: vec!["no such record".into()],
                decided_by: DecidedBy {
                    kind: "policy".into(),
                    id: "default_deny".into(),
                },
                obligations: Vec::new(),
            }),
        }
    }
    Ok(HttpResponse::Ok().json(DecisionsOut { decisions: out }))
}
