//! Who may read which entries through the public API (`/v1/ledger/**`).
//!
//! An entry is evidence about the people and institutions it names, so reading it is as
//! strict as reading what it attests (docs/ARCHITECTURE.md, "Who reads the ledger"):
//!
//! - those who read the whole trail (auditors, tenant admins, apps with `audit:read`) read
//!   every entry of their tenant;
//! - anyone else acting for an institution (physicians, institution admins, its apps) reads
//!   the entries their institution submitted and those that name it — an entry names an
//!   institution when a top-level field of its JSON payload holds the institution's id
//!   (`owner`, `institution`, `grantor`, `recipient_institution`, `from_institution`, …) —
//!   except refusals (`record.access_denied`), which only the record's owner reads: the
//!   refused institution would learn from its refusal that the record exists;
//! - a principal of no institution reads none.
//!
//! Checkpoints, inclusion and consistency proofs and the keys stay readable by every member
//! of the tenant: they hold hashes, sizes and public keys, and any holder of an entry must be
//! able to verify it. An entry the caller may not read answers exactly like one that does not
//! exist.

use caretrail_contracts::auth::Claims;
use caretrail_ledger_proofs::Entry;

/// The entries a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// Every entry of the tenant.
    Everything,
    /// Entries this institution submitted or that name it.
    Institution(String),
    /// None (a tenant principal acting for no institution).
    Nothing,
}

/// Most entries one range request examines for a reader who sees only some: the page then
/// ends early and `next` says where to go on, so a request's cost stays bounded.
pub const SCAN_LIMIT: u64 = 10_000;

impl Reader {
    pub fn of(claims: &Claims) -> Self {
        if claims.reads_trail() {
            return Self::Everything;
        }
        match &claims.institution {
            Some(institution) => Self::Institution(institution.to_string()),
            None => Self::Nothing,
        }
    }

    pub fn sees_everything(&self) -> bool {
        *self == Self::Everything
    }

    pub fn may_read(&self, entry: &Entry) -> bool {
        match self {
            Self::Everything => true,
            Self::Nothing => false,
            Self::Institution(id) => {
                entry.submitter == *id
                    || match entry.kind.as_str() {
                        // A refusal is the owner's business and the auditors': the institution
                        // refused would learn from it that the record exists.
                        KIND_ACCESS_DENIED => field_is(&entry.payload, "owner", id),
                        _ => names(&entry.payload, id),
                    }
            }
        }
    }
}

/// The kind of a refused read, which its refused reader may not read.
const KIND_ACCESS_DENIED: &str = "record.access_denied";

/// Whether the payload's top-level `field` is `institution`.
fn field_is(payload: &[u8], field: &str, institution: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| {
            v.get(field)
                .and_then(|f| f.as_str())
                .map(|f| f == institution)
        })
        .unwrap_or(false)
}

/// Whether a top-level field of the payload (canonical JSON) holds `institution`, as a string
/// or in an array of strings.
fn names(payload: &[u8], institution: &str) -> bool {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(payload) else {
        return false;
    };
    fields.values().any(|v| match v {
        serde_json::Value::String(s) => s == institution,
        serde_json::Value::Array(items) => items.iter().any(|i| i.as_str() == Some(institution)),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use caretrail_contracts::auth::{PrincipalKind, Role};

    fn claims(kind: PrincipalKind, roles: Vec<Role>, scope: &str, ins: Option<&str>) -> Claims {
        Claims {
            iss: "i".into(),
            aud: "caretrail".into(),
            sub: "usr_1".into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            iat_ms: None,
            jti: "j".into(),
            kind,
            tenant: Some("ten_00000000000000000000000000000001".parse().unwrap()),
            institution: ins.map(|i| i.parse().unwrap()),
            roles,
            scope: scope.into(),
        }
    }

    fn entry(submitter: &str, payload: &str) -> Entry {
        Entry {
            tenant: "t".into(),
            index: 0,
            timestamp_ms: 0,
            kind: "record.accessed".into(),
            submitter: submitter.into(),
            request_id: "r".into(),
            key_id: "k".into(),
            payload: payload.as_bytes().to_vec(),
            signature: vec![],
        }
    }

    const A: &str = "ins_0000000000000000000000000000000a";
    const B: &str = "ins_0000000000000000000000000000000b";

    #[test]
    fn readers_follow_roles_scopes_and_institutions() {
        use PrincipalKind::*;
        assert_eq!(
            Reader::of(&claims(User, vec![Role::Auditor], "", Some(A))),
            Reader::Everything
        );
        assert_eq!(
            Reader::of(&claims(User, vec![Role::TenantAdmin], "", None)),
            Reader::Everything
        );
        assert_eq!(
            Reader::of(&claims(App, vec![], "records:read audit:read", Some(A))),
            Reader::Everything
        );
        // An app's roles claim does not stand in for the audit:read scope.
        assert_eq!(
            Reader::of(&claims(App, vec![Role::Auditor], "records:read", Some(A))),
            Reader::Institution(A.into())
        );
        assert_eq!(
            Reader::of(&claims(User, vec![Role::Physician], "", Some(A))),
            Reader::Institution(A.into())
        );
        assert_eq!(
            Reader::of(&claims(User, vec![Role::Physician], "", None)),
            Reader::Nothing
        );
        let mut operator = claims(Operator, vec![Role::TenantAdmin], "admin", None);
        operator.tenant = None;
        assert_eq!(Reader::of(&operator), Reader::Nothing);
    }

    #[test]
    fn an_institution_reads_what_it_submitted_or_what_names_it() {
        let a = Reader::Institution(A.into());
        assert!(a.may_read(&entry(A, "{}")));
        assert!(a.may_read(&entry("registrar", &format!(r#"{{"owner":"{A}"}}"#))));
        assert!(a.may_read(&entry(B, &format!(r#"{{"to":["{B}","{A}"]}}"#))));
        assert!(!a.may_read(&entry(B, &format!(r#"{{"owner":"{B}"}}"#))));
        // Only top-level fields name a party; a nested or partial match does not.
        assert!(!a.may_read(&entry(B, &format!(r#"{{"x":{{"owner":"{A}"}}}}"#))));
        assert!(!a.may_read(&entry(B, &format!(r#"{{"note":"{A} and more"}}"#))));
        assert!(!a.may_read(&entry(B, "not json")));
        assert!(!Reader::Nothing.may_read(&entry(A, "{}")));
        // A refusal names the refused institution, which must not learn the record exists.
        let mut refusal = entry(
            "registrar",
            &format!(r#"{{"owner":"{A}","institution":"{B}","permit":false}}"#),
        );
        refusal.kind = "record.access_denied".into();
        assert!(a.may_read(&refusal));
        assert!(!Reader::Institution(B.into()).may_read(&refusal));
        assert!(Reader::Everything.may_read(&entry(B, "{}")));
    }
}
