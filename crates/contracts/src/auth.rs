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
    /// When it was issued, in milliseconds: what a cut-off compares (`iat` has whole
    /// seconds; a user enabled again in the second they were disabled must get a token that
    /// works). Absent from tokens of other issuers; `iat` is used then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
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

impl Claims {
    /// Reads the tenant's whole trail: auditors and tenant admins, and apps holding
    /// `audit:read`. The one definition every service's audit-level reads use.
    pub fn reads_trail(&self) -> bool {
        self.tenant.is_some()
            && match self.kind {
                PrincipalKind::App => self.has_scope(scopes::AUDIT_READ),
                PrincipalKind::User => {
                    self.has_role(Role::Auditor) || self.has_role(Role::TenantAdmin)
                }
                PrincipalKind::Operator => false,
            }
    }

    /// A token of a tenant (a person or an app), never the platform operator's.
    pub fn is_tenant_member(&self) -> bool {
        self.tenant.is_some() && self.kind != PrincipalKind::Operator
    }
}

/// A rule deciding, from the verified token alone, whether its holder may call an operation.
/// Handlers name their rule in their signature (`Guarded<AuditReader>` in
/// `caretrail_platform::auth`), so who may call a route is read where the route is declared;
/// checks that need the object (its tenant, its owner) stay in the operation.
pub trait Policy: 'static {
    /// Completes "this operation needs …" in the 403 a refused caller gets.
    const NEEDS: &'static str;
    fn allows(claims: &Claims) -> bool;
}

/// The policies shared by the services.
pub mod policy {
    use super::{Claims, Policy, PrincipalKind, Role, scopes};

    /// Any person or app of a tenant.
    pub struct TenantMember;
    impl Policy for TenantMember {
        const NEEDS: &'static str = "a tenant's token";
        fn allows(c: &Claims) -> bool {
            c.is_tenant_member()
        }
    }

    /// Readers of the whole trail: auditors, tenant admins, apps with `audit:read`.
    pub struct AuditReader;
    impl Policy for AuditReader {
        const NEEDS: &'static str = "the auditor or tenant_admin role (apps: audit:read)";
        fn allows(c: &Claims) -> bool {
            c.reads_trail()
        }
    }

    /// Auditors (and apps with `audit:read`) only: questions about what another subject
    /// could do belong to whoever audits, not to those who manage people.
    pub struct Auditor;
    impl Policy for Auditor {
        const NEEDS: &'static str = "the auditor role (apps: audit:read)";
        fn allows(c: &Claims) -> bool {
            app_scope_or_role(c, &[scopes::AUDIT_READ], Some(&[Role::Auditor]))
        }
    }

    /// Whether a tenant member is an app holding any of `scopes`, or a person holding any of
    /// `roles` (`None`: any role at all).
    fn app_scope_or_role(c: &Claims, scopes: &[&str], roles: Option<&[Role]>) -> bool {
        c.is_tenant_member()
            && match c.kind {
                PrincipalKind::App => scopes.iter().any(|s| c.has_scope(s)),
                _ => match roles {
                    Some(roles) => roles.iter().any(|r| c.has_role(*r)),
                    None => !c.roles.is_empty(),
                },
            }
    }

    /// A person of a tenant, not an app (declaring an emergency is a person's act).
    pub struct Person;
    impl Policy for Person {
        const NEEDS: &'static str = "a person's token, not an app's";
        fn allows(c: &Claims) -> bool {
            c.is_tenant_member() && c.kind == PrincipalKind::User
        }
    }

    /// Reads records (under consent decisions): any person with a role, apps with
    /// `records:read`.
    pub struct RecordReader;
    impl Policy for RecordReader {
        const NEEDS: &'static str = "records:read (people: any role)";
        fn allows(c: &Claims) -> bool {
            app_scope_or_role(c, &[scopes::RECORDS_READ], None)
        }
    }

    /// Uploads records for its institution: physicians, apps with `records:write`.
    pub struct RecordWriter;
    impl Policy for RecordWriter {
        const NEEDS: &'static str = "records:write (people: the physician role) and an institution";
        fn allows(c: &Claims) -> bool {
            c.institution.is_some()
                && app_scope_or_role(c, &[scopes::RECORDS_WRITE], Some(&[Role::Physician]))
        }
    }

    /// Reads consent (grants, referrals, break-glass, within what the rows let them see):
    /// any person with a role, apps with `grants:read` or `grants:write`.
    pub struct ConsentReader;
    impl Policy for ConsentReader {
        const NEEDS: &'static str = "grants:read (people: any role)";
        fn allows(c: &Claims) -> bool {
            app_scope_or_role(c, &[scopes::GRANTS_READ, scopes::GRANTS_WRITE], None)
        }
    }

    /// States consent for its institution (grants, referrals): physicians, apps with
    /// `grants:write`.
    pub struct GrantWriter;
    impl Policy for GrantWriter {
        const NEEDS: &'static str = "grants:write (people: the physician role) and an institution";
        fn allows(c: &Claims) -> bool {
            c.institution.is_some()
                && app_scope_or_role(c, &[scopes::GRANTS_WRITE], Some(&[Role::Physician]))
        }
    }

    /// Acts on consent its institution gave or received — moves a referral through its
    /// states, revokes a grant it gave: physicians and institution admins, apps with
    /// `grants:write` (which side may do what is the operation's check).
    pub struct ConsentActor;
    impl Policy for ConsentActor {
        const NEEDS: &'static str =
            "grants:write (people: the physician or institution_admin role) and an institution";
        fn allows(c: &Claims) -> bool {
            c.institution.is_some()
                && app_scope_or_role(
                    c,
                    &[scopes::GRANTS_WRITE],
                    Some(&[Role::Physician, Role::InstitutionAdmin]),
                )
        }
    }

    /// Administers the tenant's own settings (its policy, its record keys): tenant admins,
    /// apps with `admin`.
    pub struct TenantAdmin;
    impl Policy for TenantAdmin {
        const NEEDS: &'static str = "the tenant_admin role (apps: admin)";
        fn allows(c: &Claims) -> bool {
            app_scope_or_role(c, &[scopes::ADMIN], Some(&[Role::TenantAdmin]))
        }
    }

    /// The platform operator.
    pub struct Operator;
    impl Policy for Operator {
        const NEEDS: &'static str = "the platform operator's token";
        fn allows(c: &Claims) -> bool {
            c.is_operator()
        }
    }
}
