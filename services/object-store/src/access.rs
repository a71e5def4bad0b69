//! The trail of reads: every read — of a record's content, of its metadata or receipt, of it
//! on a list page — and every refusal is a ledger entry (`record.accessed`,
//! `record.access_denied`), as the decision's `log_access` obligation says, attested by the
//! platform, queued in a transaction of its own and anchored by the anchorer. Who read whose record and when is in
//! clear; why (purpose), what (action) and under which rule are sealed
//! ([`crate::entries`]).

use std::time::Duration;

use caretrail_contracts::consent::{Action, DecidedBy, Decision, Purpose, RecordAttributes};
use caretrail_contracts::identity::PLATFORM_SIGNER;
use caretrail_contracts::{InstitutionId, PatientId, RecordId, TenantId};
use caretrail_crypto::Suite;
use caretrail_platform::auth::Principal;
use chrono::Utc;
use serde_json::{Value, json};

use crate::State;
use crate::anchor::{self, NewAnchor};
use crate::entries;
use crate::error::ObjectStoreError;

type Result<T> = std::result::Result<T, ObjectStoreError>;

/// What an access entry says of the record read (or asked for).
pub struct Read<'a> {
    pub tenant: &'a str,
    pub suite: Suite,
    pub record: &'a str,
    /// `None` for a record the tenant does not have.
    pub patient: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// The domain event's record fields (the audit service's view).
    pub event: Value,
}

/// Queues the entry of one read or refusal.
pub async fn queue(
    state: &State,
    p: &Principal,
    read: Read<'_>,
    action: Action,
    purpose: Purpose,
    decision: &Decision,
) -> Result<()> {
    let tenant = read.tenant;
    queue_page(state, p, tenant, vec![(read, decision)], action, purpose).await
}

/// Queues the entries of the reads of one list page, in one transaction.
pub async fn queue_page(
    state: &State,
    p: &Principal,
    tenant: &str,
    reads: Vec<(Read<'_>, &Decision)>,
    action: Action,
    purpose: Purpose,
) -> Result<()> {
    if reads.is_empty() {
        return Ok(());
    }
    let anchors = reads
        .into_iter()
        .map(|(read, decision)| entry(p, read, action, purpose, decision))
        .collect::<Result<Vec<_>>>()?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant).await?;
    for anchor in anchors {
        anchor::enqueue(&txn, anchor).await?;
    }
    txn.commit().await?;
    state.anchorer.notify();
    Ok(())
}

/// The anchor of one read or refusal.
fn entry(
    p: &Principal,
    read: Read<'_>,
    action: Action,
    purpose: Purpose,
    decision: &Decision,
) -> Result<NewAnchor> {
    let kind = if decision.permit {
        anchor::KIND_ACCESSED
    } else {
        anchor::KIND_DENIED
    };
    // Who read whose record, and when, in clear; why and under what rule, sealed.
    let (payload, opening) = entries::sealed(
        read.suite,
        json!({
            "record": read.record,
            "patient": read.patient,
            "owner": read.owner,
            "subject": p.0.sub,
            "subject_kind": p.0.kind,
            "institution": p.0.institution,
            "permit": decision.permit,
            "at": Utc::now().timestamp_millis(),
        }),
        json!({
            "action": action.as_str(),
            "purpose": purpose.as_str(),
            "decided_by": {"kind": decision.decided_by.kind, "id": decision.decided_by.id},
        }),
    )?;
    let mut event = read.event;
    event["action"] = action.as_str().into();
    event["purpose"] = purpose.as_str().into();
    event["decided_by"] = json!(decision.decided_by);
    event["reasons"] = json!(decision.reasons);
    event["opening"] = json!(opening);
    Ok(NewAnchor {
        tenant: read.tenant.to_string(),
        subject: read.record.to_string(),
        kind,
        request_id: format!("access:{}", uuid::Uuid::now_v7().simple()),
        signer: PLATFORM_SIGNER.to_string(),
        payload,
        submission: None,
        event_name: kind,
        event,
        hold: Duration::ZERO,
    })
}

/// The rule of a refusal of a record the tenant does not have (only auditors read it).
pub const NO_SUCH_RECORD: &str = "no_such_record";

/// A read of a well-formed record id the tenant does not have: the same work a refused read
/// of an existing record does — a consent decision (on a stand-in the decider refuses, its
/// answer unused) and a refusal queued for the ledger — so that neither the time taken nor
/// the ledger's growth tells the caller whether the record exists. Auditors see these
/// refusals (owner and patient empty): someone probing ids shows up on the trail.
pub async fn refuse_unknown(
    state: &State,
    p: &Principal,
    tenant: &TenantId,
    record: &RecordId,
    action: Action,
    purpose: Purpose,
) -> Result<()> {
    let stand_in = RecordAttributes {
        record: record.clone(),
        patient: PatientId::from_bytes([0; 16]),
        category: "other".into(),
        owner: InstitutionId::from_bytes([0; 16]),
        encounter_date: "1900-01-01".into(),
    };
    state
        .decider
        .decide(
            tenant,
            &caretrail_contracts::consent::Subject::of(&p.0),
            action,
            purpose,
            vec![stand_in],
            false,
        )
        .await?;
    // The suite even of a suspended tenant: a refusal is recorded whatever the tenant's state.
    let suite: Suite = state
        .identity
        .tenant(tenant.as_str())
        .await
        .map_err(|e| ObjectStoreError::Dependency("the identity service", e))?
        .ok_or(ObjectStoreError::NotFound)?
        .suite
        .parse()
        .map_err(|_| ObjectStoreError::Corrupt("tenant suite"))?;
    let refusal = Decision {
        permit: false,
        reasons: vec!["no such record".into()],
        decided_by: DecidedBy {
            kind: "policy".into(),
            id: NO_SUCH_RECORD.into(),
        },
        obligations: vec!["log_access".into()],
    };
    let read = Read {
        tenant: tenant.as_str(),
        suite,
        record: record.as_str(),
        patient: None,
        owner: None,
        event: json!({
            "record": record,
            "patient": null,
            "category": null,
            "owner": null,
            "content_hash": null,
            "actor": {"subject": p.0.sub, "kind": p.0.kind, "institution": p.0.institution},
        }),
    };
    queue(state, p, read, action, purpose, &refusal).await
}
