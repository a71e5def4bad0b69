//! Access tokens: claims, roles and scopes. Tokens are JWTs signed by the identity service
//! (EdDSA, `kid` from its JWKS); every service verifies them locally.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{InstitutionId, TenantId};

/// Audience every Caretrail access token carries.
pub const AUDIENCE: &str = "caretrail";

/// Who a token was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// The platform operator (manages tenants; no tenant of its own).
    Operator,
    /// A person, logged in with a password.
    User,
    /// A partner application, via OAuth2 client credentials.
    App,
}

/// Roles of users (and of partner apps acting for an institution).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Physician,
    InstitutionAdmin,
    TenantAdmin,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Physician,
        Role::InstitutionAdmin,
        Role::TenantAdmin,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Physician => "physician",
            Role::InstitutionAdmin => "institution_admin",
            Role::TenantAdmin => "tenant_admin",
            Role::Auditor => "auditor",
        }
    }
}

/// OAuth2 scopes partner apps can hold.
pub mod scopes {
    pub const RECORDS_READ: &str = "records:read";
    pub const RECORDS_WRITE: &str = "records:write";
    pub const PATIENTS_WRITE: &str = "patients:write";
    pub const GRANTS_WRITE: &str = "grants:write";
    pub const GRANTS_READ: &str = "grants:read";
    pub const AUDIT_READ: &str = "audit:read";
    pub const ADMIN: &str = "admin";
    pub const PLATFORM_ADMIN: &str = "platform:admin";
    /// Every scope a tenant's app may request (the platform scope is the operator's alone).
    pub const TENANT_SCOPES: [&str; 7] = [
        RECORDS_READ,
        RECORDS_WRITE,
        PATIENTS_WRITE,
        GRANTS_WRITE,
        GRANTS_READ,
        AUDIT_READ,
        ADMIN,
    ];
}

/// The claims of a Caretrail access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// `app_…`, `usr_…` or the operator's app id.
    pub sub: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub kind: PrincipalKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution: Option<InstitutionId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// Space-separated, as in RFC 6749.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_operator(&self) -> bool {
        self.kind == PrincipalKind::Operator
    }
}
