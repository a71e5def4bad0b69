//! The consent service's decision contract: services ask it (bus RPC [`SERVICE`] /
//! [`METHOD_DECIDE`]) whether a subject may act on records, in batches.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Claims, PrincipalKind, Role};
use crate::{InstitutionId, PatientId, RecordId, TenantId};

/// Bus RPC service name of consent.
pub const SERVICE: &str = "consent";
/// RPC method: [`DecideIn`] → [`DecideOut`].
pub const METHOD_DECIDE: &str = "decide";

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subject {
    pub kind: PrincipalKind,
    /// `usr_…` or `app_…`.
    pub id: String,
    pub institution: Option<InstitutionId>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl Subject {
    /// The subject a token speaks for.
    pub fn of(claims: &Claims) -> Self {
        Self {
            kind: claims.kind,
            id: claims.sub.clone(),
            institution: claims.institution.clone(),
            roles: claims.roles.clone(),
            scopes: claims
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What the subject wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ReadMetadata,
    ReadContent,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadMetadata => "read_metadata",
            Action::ReadContent => "read_content",
        }
    }
}

/// Why the subject asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    #[default]
    Treatment,
    Referral,
    Emergency,
    Research,
    Insurance,
    Audit,
    PublicHealth,
}

impl Purpose {
    pub const ALL: [Purpose; 7] = [
        Purpose::Treatment,
        Purpose::Referral,
        Purpose::Emergency,
        Purpose::Research,
        Purpose::Insurance,
        Purpose::Audit,
        Purpose::PublicHealth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Treatment => "treatment",
            Purpose::Referral => "referral",
            Purpose::Emergency => "emergency",
            Purpose::Research => "research",
            Purpose::Insurance => "insurance",
            Purpose::Audit => "audit",
            Purpose::PublicHealth => "public_health",
        }
    }
}

impl Purpose {
    /// The HL7 v3-ActReason code of this purpose of use (FHIR `purposeOfEvent`, Consent
    /// `provision.purpose`).
    pub fn act_reason(self) -> &'static str {
        match self {
            Purpose::Treatment | Purpose::Referral => "TREAT",
            Purpose::Emergency => "ETREAT",
            Purpose::Research => "HRESCH",
            Purpose::Insurance => "HPAYMT",
            Purpose::Audit => "HOPERAT",
            Purpose::PublicHealth => "PUBHLTH",
        }
    }
}

impl std::str::FromStr for Purpose {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Purpose::ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown purpose {s:?}; one of {}", known.join(", "))
            })
    }
}

/// The attributes of a record a decision needs (never its content or title).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordAttributes {
    pub record: RecordId,
    pub patient: PatientId,
    pub category: String,
    /// The institution that created the record.
    pub owner: InstitutionId,
    /// When the encounter took place (`YYYY-MM-DD`), for grants limited to a data period.
    pub encounter_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecideIn {
    pub tenant: TenantId,
    pub subject: Subject,
    pub action: Action,
    pub purpose: Purpose,
    pub resources: Vec<RecordAttributes>,
    /// The caller is about to perform the action (not just asking): permits count against
    /// grants limited to a number of accesses.
    #[serde(default)]
    pub enforce: bool,
}

/// What decided: a grant, a policy rule or a break-glass declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecidedBy {
    /// `grant`, `policy` or `break_glass`.
    pub kind: String,
    /// The grant id, the rule name or the break-glass id.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub permit: bool,
    pub reasons: Vec<String>,
    pub decided_by: DecidedBy,
    /// E.g. `log_access`.
    #[serde(default)]
    pub obligations: Vec<String>,
}

/// One decision per resource, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecideOut {
    pub decisions: Vec<Decision>,
}
