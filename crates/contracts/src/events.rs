//! Payloads of domain events (the bus envelope carries tenant, ids and timestamps). Each
//! payload is versioned by the event's `version`; a breaking change is a new version.

use serde::{Deserialize, Serialize};

use crate::{InstitutionId, SigningKeyId, TenantId};

/// `identity.token.revoked` v1: the gateway and every service refuse the `jti` from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevokedV1 {
    pub jti: String,
    /// Unix seconds after which the token is expired anyway (the deny-list may forget it).
    pub expires_at: i64,
}

/// Whose access tokens a cut-off ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum CutOffScope {
    /// One user or app (`sub`).
    Subject(String),
    /// Every user and app of an institution.
    Institution(InstitutionId),
    /// Everyone of a tenant.
    Tenant(TenantId),
}

/// `identity.tokens.cut_off` v1: the gateway and every service refuse the access tokens of
/// `scope` issued before `not_before_ms` (unix milliseconds, compared with the token's
/// `iat_ms`), so a token issued after the change — a user enabled again at once, a new
/// role — is not caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensCutOffV1 {
    pub scope: CutOffScope,
    pub not_before_ms: i64,
    /// Unix seconds after which every token it catches has expired (it may be forgotten).
    pub until: i64,
}

/// Identity's answer to a replica that (re)joins the bus: every revocation still in force
/// (RPC `revocations`, and `GET /internal/revoked-tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationsV1 {
    #[serde(default)]
    pub items: Vec<TokenRevokedV1>,
    #[serde(default)]
    pub cut_offs: Vec<TokensCutOffV1>,
}

/// `identity.<change>` v1 for every [`crate::identity::AccessChange`]: who changed whose
/// access. Identity anchors each on the tenant's ledger (registrar-signed, ids only) and the
/// audit index lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChangedV1 {
    pub change: crate::identity::AccessChange,
    /// The user, app, institution or tenant changed.
    pub subject: String,
    /// Its institution, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution: Option<InstitutionId>,
    /// Roles after the change (users).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<crate::auth::Role>,
    /// Who made the change (`sub` of the caller's token).
    pub by: String,
}

/// `identity.tenant.created` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreatedV1 {
    pub tenant: TenantId,
    pub name: String,
    pub suite: String,
}

/// `identity.institution.registered` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionRegisteredV1 {
    pub institution: InstitutionId,
    pub code: String,
    pub level: String,
}

/// `identity.institution.key_registered` / `key_rotated` / `key_revoked` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionKeyV1 {
    pub institution: InstitutionId,
    pub key: SigningKeyId,
    pub algorithm: String,
    pub public_key_pem: String,
}

/// Who acted on a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorV1 {
    /// `usr_…` or `app_…`.
    pub subject: String,
    pub kind: crate::auth::PrincipalKind,
    pub institution: Option<InstitutionId>,
}

/// `object-store.record.anchored` / `record.accessed` / `record.access_denied` /
/// `record.erased` v1, published once the matching ledger entry is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEventV1 {
    pub record: crate::RecordId,
    pub patient: crate::PatientId,
    pub category: String,
    /// The institution that created the record.
    pub owner: InstitutionId,
    pub content_hash: String,
    pub actor: ActorV1,
    /// `read_metadata` / `read_content` for accesses and refusals.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub decided_by: Option<crate::consent::DecidedBy>,
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The ledger entry that anchors this event.
    pub ledger_index: u64,
    pub leaf_hash: String,
}
