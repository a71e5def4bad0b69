//! Prefixed identifiers: `<prefix>_<32 lowercase hex>`, parsed at the boundary so that no raw
//! string travels inside a service.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: expected {prefix}_ followed by 32 lowercase hex digits")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

fn well_formed(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal, $example:literal, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, example = $example, pattern = $pattern)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// An id from 16 bytes (e.g. a keyed hash).
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::from_bytes(bytes).simple()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                if well_formed($prefix, s) {
                    Ok(Self(s.to_string()))
                } else {
                    Err(IdError { kind: $kind, prefix: $prefix, value: s.chars().take(80).collect() })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant: a regional health bureau subscribing to Caretrail.
    TenantId, "ten", "tenant", "ten_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^ten_[0-9a-f]{32}$");
id_type!(
    /// An institution inside a tenant (health centre, hospital, regulator).
    InstitutionId, "ins", "institution", "ins_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^ins_[0-9a-f]{32}$");
id_type!(
    /// A person who logs in: physician, administrator, auditor.
    UserId, "usr", "user", "usr_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^usr_[0-9a-f]{32}$");
id_type!(
    /// A partner application (EMR/HIS, patient app) using client credentials.
    AppId, "app", "app", "app_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^app_[0-9a-f]{32}$");
id_type!(
    /// The pseudonymous cross-institution patient id (keyed hash of the health-card number).
    PatientId, "pat", "patient", "pat_5f1c0e2a9d8b7c6a5f4e3d2c1b0a9f8e", "^pat_[0-9a-f]{32}$");
id_type!(
    /// An institution's signing key (its certificate names it).
    SigningKeyId, "key", "signing key", "key_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^key_[0-9a-f]{32}$");
id_type!(
    /// A medical record.
    RecordId, "rec", "record", "rec_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^rec_[0-9a-f]{32}$");
id_type!(
    /// A consent grant.
    GrantId, "gnt", "grant", "gnt_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^gnt_[0-9a-f]{32}$");
id_type!(
    /// A referral of a patient from one institution to another.
    ReferralId, "ref", "referral", "ref_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^ref_[0-9a-f]{32}$");
id_type!(
    /// A break-glass (emergency access) declaration.
    BreakGlassId, "bgl", "break-glass", "bgl_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e", "^bgl_[0-9a-f]{32}$");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_dont_validate() {
        let t = TenantId::generate();
        assert_eq!(t.as_str().parse::<TenantId>().unwrap(), t);
        assert!(
            "ins_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e"
                .parse::<TenantId>()
                .is_err()
        );
        assert!(
            "ten_0193C1D2E8A97B4C8F2A6D1E0B3C4D5E"
                .parse::<TenantId>()
                .is_err()
        );
        assert!("ten_0193".parse::<TenantId>().is_err());
        assert!(
            "ten_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e "
                .parse::<TenantId>()
                .is_err()
        );
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), t);
        assert!(serde_json::from_str::<TenantId>("\"ten_x\"").is_err());
        assert_eq!(
            PatientId::from_bytes([0xab; 16]).as_str(),
            format!("pat_{}", "ab".repeat(16))
        );
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use utoipa::PartialSchema;

    fn pattern<T: PartialSchema>() -> String {
        let schema = serde_json::to_value(T::schema()).unwrap_or_default();
        schema["pattern"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn each_id_schema_states_its_own_prefix() {
        let want = |prefix: &str| format!("^{prefix}_[0-9a-f]{{32}}$");
        assert_eq!(pattern::<TenantId>(), want(TenantId::PREFIX));
        assert_eq!(pattern::<InstitutionId>(), want(InstitutionId::PREFIX));
        assert_eq!(pattern::<UserId>(), want(UserId::PREFIX));
        assert_eq!(pattern::<AppId>(), want(AppId::PREFIX));
        assert_eq!(pattern::<PatientId>(), want(PatientId::PREFIX));
        assert_eq!(pattern::<SigningKeyId>(), want(SigningKeyId::PREFIX));
        assert_eq!(pattern::<RecordId>(), want(RecordId::PREFIX));
        assert_eq!(pattern::<GrantId>(), want(GrantId::PREFIX));
        assert_eq!(pattern::<ReferralId>(), want(ReferralId::PREFIX));
        assert_eq!(pattern::<BreakGlassId>(), want(BreakGlassId::PREFIX));
    }
}
