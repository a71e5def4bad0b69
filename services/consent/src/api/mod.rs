//! The public API (through the gateway, tenant-scoped by the caller's token): policy,
//! grants, referrals, break-glass declarations and decisions.

pub mod break_glass;
pub mod decisions;
pub mod fhir;
pub mod grants;
pub mod policy;
pub mod referrals;

use std::time::Duration;

use caretrail_contracts::auth::{PrincipalKind, Role};
use caretrail_contracts::consent::Subject;
use caretrail_contracts::{InstitutionId, TenantId};
use caretrail_crypto::Suite;
use caretrail_ledger_proofs::canonical_json;
use caretrail_platform::auth::{Guarded, Principal};
use caretrail_runtime::anchoring::{NewAnchor, Outcome, enqueue};
use sea_orm::DatabaseTransaction;

use crate::State;
use crate::error::ConsentError;
use crate::model::LedgerReceiptOut;

pub type Result<T> = std::result::Result<T, ConsentError>;

/// Who calls, from their token.
pub struct Caller {
    claims: caretrail_contracts::auth::Claims,
    pub tenant: TenantId,
    pub id: String,
    pub kind: PrincipalKind,
    pub institution: Option<InstitutionId>,
    pub roles: Vec<Role>,
}

impl Caller {
    /// The caller a policy admitted (handlers take `Guarded<SomePolicy>`).
    pub fn of<P>(g: &Guarded<P>) -> Result<Self> {
        Self::from(g.principal())
    }

    pub fn from(p: &Principal) -> Result<Self> {
        let tenant = p.0.tenant.clone().ok_or_else(|| {
            ConsentError::Forbidden("this operation needs a tenant's token".into())
        })?;
        Ok(Self {
            claims: p.0.clone(),
            tenant,
            id: p.0.sub.clone(),
            kind: p.0.kind,
            institution: p.0.institution.clone(),
            roles: p.0.roles.clone(),
        })
    }

    pub fn is_app(&self) -> bool {
        self.kind == PrincipalKind::App
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims.has_scope(scope)
    }

    /// Whether a shared policy admits the caller (for checks that need the object first).
    pub fn allowed<P: caretrail_contracts::auth::Policy>(&self) -> bool {
        P::allows(&self.claims)
    }

    /// Tenant admins and auditors see everything of their tenant.
    pub fn oversees(&self) -> bool {
        self.has(Role::TenantAdmin) || self.has(Role::Auditor)
    }

    pub fn institution(&self) -> Result<&InstitutionId> {
        self.institution
            .as_ref()
            .ok_or_else(|| ConsentError::Forbidden("this operation needs an institution".into()))
    }

    pub fn subject(&self) -> Subject {
        Subject::of(&self.claims)
    }

    /// Whether the caller's institution is one of `institutions`.
    pub fn belongs_to(&self, institutions: &[&str]) -> bool {
        self.institution
            .as_ref()
            .is_some_and(|i| institutions.contains(&i.as_str()))
    }
}

/// The tenant's suite; refuses suspended or unknown tenants.
pub async fn tenant_suite(state: &State, tenant: &TenantId) -> Result<Suite> {
    let info = state
        .identity
        .tenant(tenant.as_str())
        .await
        .map_err(|e| ConsentError::Dependency("the identity service", e))?
        .ok_or_else(|| ConsentError::Forbidden("unknown tenant".into()))?;
    if info.status != "active" {
        return Err(ConsentError::TenantSuspended);
    }
    info.suite
        .parse()
        .map_err(|_| ConsentError::Corrupt("tenant suite"))
}

/// A payload consent puts on the ledger: ids and times in `clear`, what would tell a reader
/// about a patient's care (purpose, scope, urgency, hashes of free text) sealed behind a
/// salted commitment whose opening goes with the domain event
/// (`caretrail_ledger_proofs::seal`; docs/ARCHITECTURE.md, "What an entry carries").
pub fn sealed(
    suite: caretrail_crypto::Suite,
    clear: serde_json::Value,
    fields: serde_json::Value,
) -> Result<(Vec<u8>, caretrail_ledger_proofs::Opening)> {
    caretrail_ledger_proofs::seal::sealed_payload(suite, clear, fields)
        .map_err(|_| ConsentError::Corrupt("sealing a ledger payload"))
}

pub fn canonical(value: serde_json::Value) -> Result<Vec<u8>> {
    canonical_json(&value).map_err(|_| ConsentError::Corrupt("canonical payload"))
}

/// Queues a ledger entry in the caller's transaction.
pub async fn queue_anchor(txn: &DatabaseTransaction, anchor: NewAnchor) -> Result<i64> {
    Ok(enqueue(txn, anchor).await?)
}

/// Anchors a queued entry now if the ledger answers within the configured wait. `Ok(None)`:
/// it stays queued and is anchored in the background.
pub async fn settle(state: &State, anchor_id: i64) -> Result<Option<LedgerReceiptOut>> {
    state.anchorer.notify();
    let wait = Duration::from_millis(state.settings.anchor_wait_ms);
    match state.anchorer.anchor_within(anchor_id, wait).await {
        Some(Outcome::Anchored(receipt)) => Ok(Some((*receipt).into())),
        Some(Outcome::Refused(failure)) => Err(ConsentError::LedgerRefused(failure.to_string())),
        Some(Outcome::Pending(_)) | None => Ok(None),
    }
}

/// Free text: trimmed, 1..=max characters, no control characters.
pub fn text(
    errors: &mut Vec<caretrail_platform::FieldError>,
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> String {
    let value = value.trim();
    let n = value.chars().count();
    if n < min.max(1) {
        errors.push(caretrail_platform::FieldError::new(
            field,
            if min > 1 {
                format!("at least {min} characters")
            } else {
                "must not be empty".into()
            },
        ));
    } else if n > max {
        errors.push(caretrail_platform::FieldError::new(
            field,
            format!("at most {max} characters"),
        ));
    } else if value.chars().any(char::is_control) {
        errors.push(caretrail_platform::FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    value.to_string()
}

/// Page size from a query (default 50, at most 200).
pub fn page_size(limit: Option<u64>) -> Result<u64> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ConsentError::field("limit", "1..=200"))
    }
}
