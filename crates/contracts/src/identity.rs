//! The identity service's bus RPC (service [`SERVICE`]): what other services ask identity
//! about tenants and patients, and the custodial signing of ledger submissions.
//!
//! | method | body | reply |
//! |---|---|---|
//! | [`METHOD_TENANT`] | [`TenantQuery`] | [`TenantInfo`] (error `not_found`) |
//! | [`METHOD_PATIENT`] | [`PatientQuery`] | [`PatientInfo`] (error `not_found`) |
//! | [`METHOD_SIGN`] | [`SignIn`] | [`SignOut`]: one signed submission or error per item |
//! | [`METHOD_INSTITUTIONS`] | [`TenantQuery`] | [`InstitutionsOut`]: the tenant's institutions and levels |
//! | [`METHOD_TENANTS`] | `{}` | [`TenantsOut`]: every tenant with its suite and status |
//! | [`METHOD_COSIGN`] | [`CosignIn`] | [`CosignOut`]: a witness cosignature line (errors `forbidden_witness`, `cosign_from`, `not_consistent`, …) |
//! | [`METHOD_REVOCATIONS`] | `{}` | [`crate::events::RevocationsV1`]: revoked tokens and cut-offs still in force |
//!
//! Signing is limited to ledger submissions (the signed bytes start with the ledger's
//! `CTLS` domain separator), so the RPC cannot be used as a general-purpose signing oracle;
//! each signer signs only its own kinds ([`PLATFORM_KINDS`], [`INSTITUTION_KINDS`]), never
//! key registrations or revocations, and only for active tenants. Cosigning is limited to
//! the tenant's own checkpoints (`cosignature/v1` messages over a parsed checkpoint body whose
//! origin names the tenant), by a regulator-level institution's custodial key, and only for
//! a checkpoint proven consistent with the last one that key cosigned for the tenant. Who may call it is the
//! broker's business: in production only the services' own RabbitMQ users may publish to
//! the RPC queue.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ledger::SubmissionIn;

/// Bus RPC service name of identity.
pub const SERVICE: &str = "identity";
pub const METHOD_TENANT: &str = "tenant";
pub const METHOD_PATIENT: &str = "patient";
pub const METHOD_SIGN: &str = "sign";
pub const METHOD_INSTITUTIONS: &str = "institutions";
pub const METHOD_TENANTS: &str = "tenants";
pub const METHOD_COSIGN: &str = "cosign";
pub const METHOD_REVOCATIONS: &str = "revocations";

/// A change of who may act: identity publishes each as `identity.<name>` with an
/// [`crate::events::AccessChangedV1`], cuts off the tokens it affects, and anchors it on the
/// tenant's ledger as an entry of kind [`AccessChange::as_str`] signed by the registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum AccessChange {
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.disabled")]
    UserDisabled,
    #[serde(rename = "user.enabled")]
    UserEnabled,
    #[serde(rename = "user.role_changed")]
    UserRoleChanged,
    #[serde(rename = "user.removed")]
    UserRemoved,
    #[serde(rename = "user.password_reset")]
    UserPasswordReset,
    #[serde(rename = "institution.deactivated")]
    InstitutionDeactivated,
    #[serde(rename = "institution.reactivated")]
    InstitutionReactivated,
    #[serde(rename = "app.created")]
    AppCreated,
    #[serde(rename = "app.revoked")]
    AppRevoked,
    #[serde(rename = "app.secret_rotated")]
    AppSecretRotated,
    #[serde(rename = "tenant.suspended")]
    TenantSuspended,
    #[serde(rename = "tenant.resumed")]
    TenantResumed,
}

impl AccessChange {
    pub const ALL: [AccessChange; 13] = [
        AccessChange::UserCreated,
        AccessChange::UserDisabled,
        AccessChange::UserEnabled,
        AccessChange::UserRoleChanged,
        AccessChange::UserRemoved,
        AccessChange::UserPasswordReset,
        AccessChange::InstitutionDeactivated,
        AccessChange::InstitutionReactivated,
        AccessChange::AppCreated,
        AccessChange::AppRevoked,
        AccessChange::AppSecretRotated,
        AccessChange::TenantSuspended,
        AccessChange::TenantResumed,
    ];

    /// The event name (after `identity.`) and the ledger entry kind.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessChange::UserCreated => "user.created",
            AccessChange::UserDisabled => "user.disabled",
            AccessChange::UserEnabled => "user.enabled",
            AccessChange::UserRoleChanged => "user.role_changed",
            AccessChange::UserRemoved => "user.removed",
            AccessChange::UserPasswordReset => "user.password_reset",
            AccessChange::InstitutionDeactivated => "institution.deactivated",
            AccessChange::InstitutionReactivated => "institution.reactivated",
            AccessChange::AppCreated => "app.created",
            AccessChange::AppRevoked => "app.revoked",
            AccessChange::AppSecretRotated => "app.secret_rotated",
            AccessChange::TenantSuspended => "tenant.suspended",
            AccessChange::TenantResumed => "tenant.resumed",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// Signer name for statements the platform attests (the tenant's registrar, i.e. its CA
/// key), such as who accessed a record.
pub const PLATFORM_SIGNER: &str = crate::ledger::REGISTRAR;

/// Entry kinds the platform signer attests: what the platform observed or carried out.
pub const PLATFORM_KINDS: [&str; 3] = ["record.accessed", "record.access_denied", "record.erased"];
/// Entry kinds an institution's custodial key signs on its behalf: what it states.
pub const INSTITUTION_KINDS: [&str; 10] = [
    "record.anchored",
    "consent.granted",
    "consent.revoked",
    "policy.changed",
    "referral.created",
    "referral.accepted",
    "referral.declined",
    "referral.completed",
    "referral.cancelled",
    "break_glass.declared",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQuery {
    pub tenant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub tenant: String,
    /// `intl` or `gm`.
    pub suite: String,
    /// `active` or `suspended`.
    pub status: String,
}

/// An institution's level in the regional consortium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Community or township health centre.
    Primary,
    /// District hospital.
    Secondary,
    /// City or provincial hospital.
    Tertiary,
    /// Health bureau, auditors.
    Regulator,
    PublicHealth,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Primary,
        Level::Secondary,
        Level::Tertiary,
        Level::Regulator,
        Level::PublicHealth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Primary => "primary",
            Level::Secondary => "secondary",
            Level::Tertiary => "tertiary",
            Level::Regulator => "regulator",
            Level::PublicHealth => "public_health",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionInfo {
    pub institution: crate::InstitutionId,
    pub name: String,
    pub level: Level,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionsOut {
    pub institutions: Vec<InstitutionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantsOut {
    pub tenants: Vec<TenantInfo>,
}

/// Asks a regulator institution's custodial key to cosign one of the tenant's checkpoints
/// (c2sp.org/tlog-cosignature) — for the audit service's built-in witness, which has
/// already checked the checkpoint's consistency with the last one it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignIn {
    pub tenant: String,
    /// The witnessing institution (level `regulator`).
    pub witness: String,
    /// The checkpoint body (origin, size, root, extension lines), without signatures.
    pub checkpoint: String,
    /// The size this witness last had cosigned (0 the first time) and the hex consistency
    /// proof from it to the checkpoint: identity cosigns only a proven extension of what its
    /// key signed before. A wrong `from_size` is refused with code `cosign_from` and the
    /// size identity holds as the message.
    #[serde(default)]
    pub from_size: u64,
    #[serde(default)]
    pub consistency: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignOut {
    /// The cosignature line, `— <institution id> <base64(key id ‖ timestamp ‖ signature)>`.
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientQuery {
    pub tenant: String,
    pub patient: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientInfo {
    pub patient: String,
    /// The institution that first registered the patient.
    pub registered_by: String,
}

/// One submission to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToSign {
    pub tenant: String,
    pub kind: String,
    /// An institution id (its active custodial key signs) or [`PLATFORM_SIGNER`].
    pub signer: String,
    pub request_id: String,
    /// Base64 canonical payload.
    pub payload: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignIn {
    pub items: Vec<ToSign>,
}

/// The signed submission, ready for the ledger, or why it was not signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignResult {
    Signed(SubmissionIn),
    /// `code`: `byok_signature_required` (the institution holds its own key),
    /// `unknown_signer`, `forbidden_kind`, `tenant_suspended`, `invalid_request`,
    /// `unavailable`.
    Error {
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignOut {
    pub results: Vec<SignResult>,
}

#[cfg(test)]
mod tests {
    use super::AccessChange;

    #[test]
    fn access_change_names_are_its_wire_names() {
        for change in AccessChange::ALL {
            let wire = serde_json::to_value(change).unwrap_or_default();
            assert_eq!(wire, change.as_str(), "{change:?}");
            assert_eq!(AccessChange::from_name(change.as_str()), Some(change));
        }
        assert_eq!(AccessChange::from_name("user.promoted"), None);
    }
}
