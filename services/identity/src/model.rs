//! Request and response bodies (`XxxIn` / `XxxOut`) of the public API.

use caretrail_contracts::{AppId, InstitutionId, PatientId, SigningKeyId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::IdentityError;
use caretrail_platform::FieldError;

pub use caretrail_contracts::identity::Level;

fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(field, format!("at most {max} characters")));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn done(errors: Vec<FieldError>) -> Result<(), IdentityError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(IdentityError::Validation(errors))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Tianning District Health Bureau", "suite": "gm"}))]
pub struct TenantIn {
    pub name: String,
    /// Crypto suite, fixed for the tenant's lifetime: `intl` or `gm`.
    #[schema(value_type = String, example = "gm")]
    pub suite: caretrail_crypto::Suite,
}

impl TenantIn {
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut e = Vec::new();
        // The name goes into the tenant CA's X.509 subject (O), limited to 64 characters.
        check_text(&mut e, "name", &self.name, 64);
        done(e)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOut {
    pub id: TenantId,
    pub name: String,
    #[schema(example = "gm")]
    pub suite: String,
    #[schema(example = "active")]
    pub status: String,
    /// The tenant CA's public key (SPKI PEM): it certifies the institutions' keys.
    pub ca_public_key_pem: String,
    /// The tenant CA's self-signed X.509 certificate (trust anchor for `openssl verify`).
    pub ca_certificate_pem: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantListOut {
    pub items: Vec<TenantOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "TN-HC-001", "name": "Benniu Town Health Centre", "level": "primary"}))]
pub struct InstitutionIn {
    /// Unique within the tenant (e.g. the national institution code).
    pub code: String,
    pub name: String,
    pub level: Level,
}

impl InstitutionIn {
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut e = Vec::new();
        check_text(&mut e, "name", &self.name, 200);
        if self.code.is_empty()
            || self.code.len() > 64
            || !self
                .code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            e.push(FieldError::new(
                "code",
                "1–64 characters: letters, digits, - _ .",
            ));
        }
        done(e)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstitutionPatchIn {
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeyOut {
    pub id: SigningKeyId,
    #[schema(example = "sm2")]
    pub algorithm: String,
    /// `custodial` (held encrypted by Caretrail) or `byok`.
    pub custody: String,
    pub public_key_pem: String,
    /// `active`, `retired` (rotated out: verifies signatures made before `retired_at`) or
    /// `revoked`.
    #[schema(example = "active")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// X.509 certificate issued by the tenant CA.
    pub certificate_pem: Option<String>,
    /// Certificate serial (hex).
    pub serial: Option<String>,
    pub retired_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// Bring your own key: the institution's public key (SPKI PEM) of the tenant's suite.
    /// Omit it to have Caretrail generate and hold a new custodial key.
    pub public_key_pem: Option<String>,
    /// Proof of possession, required with `public_key_pem`: the base64 signature (as printed
    /// by `caretrail crypto sign`) by that key over the UTF-8 text
    /// `caretrail/byok/v1 <tenant_id> <institution_id> <key id>`, where the key id is the hex
    /// key id `caretrail crypto keygen` prints (first 16 bytes of the suite hash of the SPKI).
    pub proof: Option<String>,
}

/// The text a BYOK key must sign to prove its holder asked for the certificate.
pub fn byok_challenge(tenant: &str, institution: &str, key_id_hex: &str) -> String {
    format!("caretrail/byok/v1 {tenant} {institution} {key_id_hex}")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKeyIn {
    /// Why (e.g. `key_compromise`, `superseded`): recorded and published.
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StatusQuery {
    /// RFC 3339 instant to evaluate (default: now), e.g. a signature's timestamp.
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateStatusOut {
    pub serial: String,
    pub key_id: SigningKeyId,
    pub institution_id: InstitutionId,
    /// Whether a signature made at `at` by this key is valid.
    pub valid_at_time: bool,
    pub at: DateTime<Utc>,
    /// `valid`, `retired`, `revoked`, `expired` or `not_yet_valid`, at `at`.
    pub status: String,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revocation_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaOut {
    pub tenant_id: TenantId,
    pub certificate_pem: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstitutionOut {
    pub id: InstitutionId,
    pub tenant_id: TenantId,
    pub code: String,
    pub name: String,
    pub level: Level,
    /// A deactivated institution's users and apps cannot authenticate.
    pub status: InstitutionStatus,
    pub signing_keys: Vec<SigningKeyOut>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstitutionListOut {
    pub items: Vec<InstitutionOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Benniu HIS", "institution_id": "ins_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "scopes": ["records:read", "records:write", "patients:write"]}))]
pub struct AppIn {
    pub name: String,
    /// The institution the app acts for.
    pub institution_id: InstitutionId,
    pub scopes: Vec<String>,
}

impl AppIn {
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut e = Vec::new();
        check_text(&mut e, "name", &self.name, 200);
        if self.scopes.is_empty() {
            e.push(FieldError::new("scopes", "at least one scope"));
        }
        for s in &self.scopes {
            if !caretrail_contracts::auth::scopes::TENANT_SCOPES.contains(&s.as_str()) {
                e.push(FieldError::new("scopes", format!("unknown scope {s:?}")));
            }
        }
        done(e)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppOut {
    pub id: AppId,
    /// Use as `client_id` at the token endpoint.
    pub client_id: String,
    pub name: String,
    pub institution_id: Option<InstitutionId>,
    pub scopes: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppCredentialsOut {
    #[serde(flatten)]
    pub app: AppOut,
    /// Shown once; store it in a secret store. Caretrail keeps only its hash.
    pub client_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppListOut {
    pub items: Vec<AppOut>,
}

/// RFC 6749 §5.1 token response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// `application/x-www-form-urlencoded` body of `POST /v1/oauth/token`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenIn {
    #[schema(example = "client_credentials")]
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    /// With `client_secret_post`; otherwise use HTTP Basic (`client_secret_basic`).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RevokeIn {
    /// The access token to revoke (RFC 7009).
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"identifier": "320402198001011234"}))]
pub struct PatientIn {
    /// National id or resident health-card number. Never stored; only its keyed hash is.
    pub identifier: String,
}

impl PatientIn {
    /// Canonical form, so the same card number always yields the same id.
    pub fn normalised(&self) -> Result<String, IdentityError> {
        let n: String = self
            .identifier
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_uppercase)
            .collect();
        if n.len() < 6 || n.len() > 64 || !n.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(IdentityError::field(
                "identifier",
                "6–64 letters or digits (spaces and dashes are ignored)",
            ));
        }
        Ok(n)
    }
}

/// The patient's pseudonymous id. Whether this call registered the patient or another
/// institution had is not said: that a person is a patient somewhere in the consortium is
/// not the caller's to learn.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientOut {
    pub id: PatientId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKeyOut {
    pub kid: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"institution_id": "ins_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "username": "dr.wang", "display_name": "Dr Wang Li", "roles": ["physician"], "password": "correct horse battery staple"}))]
pub struct UserIn {
    pub institution_id: InstitutionId,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<caretrail_contracts::auth::Role>,
    /// At least 12 characters.
    pub password: String,
}

impl UserIn {
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut e = Vec::new();
        check_text(&mut e, "display_name", &self.display_name, 200);
        if self.username.len() < 3
            || self.username.len() > 128
            || !self
                .username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_@".contains(c))
        {
            e.push(FieldError::new(
                "username",
                "3–128 characters: letters, digits, . - _ @",
            ));
        }
        if self.roles.is_empty() {
            e.push(FieldError::new("roles", "at least one role"));
        }
        check_password(&mut e, "password", &self.password);
        done(e)
    }
}

/// What every password must be: 12–256 characters.
fn check_password(errors: &mut Vec<FieldError>, field: &str, password: &str) {
    let len = password.chars().count();
    if !(12..=256).contains(&len) {
        errors.push(FieldError::new(field, "12–256 characters"));
    }
}

/// Whether a user may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    /// Cut off until enabled again.
    Disabled,
    /// Gone for good: no password, the username free again; the id stays in trails.
    Removed,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
            UserStatus::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            "removed" => Ok(UserStatus::Removed),
            _ => Err(IdentityError::Corrupt("user status")),
        }
    }
}

/// Whether an institution's users and apps may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstitutionStatus {
    Active,
    Deactivated,
}

impl InstitutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstitutionStatus::Active => "active",
            InstitutionStatus::Deactivated => "deactivated",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "active" => Ok(InstitutionStatus::Active),
            "deactivated" => Ok(InstitutionStatus::Deactivated),
            _ => Err(IdentityError::Corrupt("institution status")),
        }
    }
}

/// A change to a user: new roles (their tokens are cut off), a new display name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchIn {
    #[serde(default)]
    pub roles: Option<Vec<caretrail_contracts::auth::Role>>,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl UserPatchIn {
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut e = Vec::new();
        if self.roles.is_none() && self.display_name.is_none() {
            e.push(FieldError::new("roles", "give roles, display_name or both"));
        }
        if self.roles.as_ref().is_some_and(Vec::is_empty) {
            e.push(FieldError::new("roles", "at least one role"));
        }
        if let Some(name) = &self.display_name {
            check_text(&mut e, "display_name", name, 200);
        }
        done(e)
    }
}

/// A one-time password-reset token: the administrator hands it to the user, who sets a new
/// password with it (`POST /v1/auth/password-reset`) before it expires.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordResetOut {
    pub user_id: caretrail_contracts::UserId,
    pub reset_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetIn {
    /// The token from the administrator.
    pub token: String,
    /// At least 12 characters.
    pub new_password: String,
}

impl PasswordResetIn {
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut e = Vec::new();
        if self.token.is_empty() || self.token.len() > 256 {
            e.push(FieldError::new("token", "1 to 256 bytes"));
        }
        if self.new_password.len() > crate::api::sessions::MAX_PASSWORD_BYTES {
            e.push(FieldError::new(
                "new_password",
                format!("at most {} bytes", crate::api::sessions::MAX_PASSWORD_BYTES),
            ));
        } else {
            check_password(&mut e, "new_password", &self.new_password);
        }
        done(e)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: caretrail_contracts::UserId,
    pub tenant_id: TenantId,
    pub institution_id: InstitutionId,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<caretrail_contracts::auth::Role>,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserListOut {
    pub items: Vec<UserOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub tenant_id: TenantId,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshIn {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: i64,
    /// Single use: each refresh returns a new one. Reusing an old one ends the session.
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}
