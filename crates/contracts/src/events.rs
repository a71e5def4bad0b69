//! Payloads of domain events (the bus envelope carries tenant, ids and timestamps). Each
//! payload is versioned by the event's `version`; a breaking change is a new version.

use serde::{Deserialize, Serialize};

use crate::{AppId, InstitutionId, SigningKeyId, TenantId};

/// `identity.token.revoked` v1: the gateway and every service refuse the `jti` from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevokedV1 {
    pub jti: String,
    /// Unix seconds after which the token is expired anyway (the deny-list may forget it).
    pub expires_at: i64,
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

/// `identity.app.created` / `app.revoked` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppChangedV1 {
    pub app: AppId,
    pub institution: Option<InstitutionId>,
}
