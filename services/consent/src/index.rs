//! The in-memory decision index of one tenant: its policy, its institutions' levels, its
//! active grants by patient and its open break-glass declarations. Decisions are pure
//! functions of the index and the request, so they take microseconds; the index is built
//! from the database and kept current by events ([`crate::engine`]).

use std::collections::HashMap;
use std::sync::Arc;

use caretrail_contracts::auth::{PrincipalKind, Role};
use caretrail_contracts::consent::{
    Action, DecidedBy, Decision, Purpose, RecordAttributes, Subject,
};
use caretrail_contracts::identity::Level;
use caretrail_contracts::records::Category;
use chrono::NaiveDate;

use crate::policy::{Asker, Policy};

/// An active grant, as decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEntry {
    pub id: Box<str>,
    pub patient: Box<str>,
    /// The granting institution: a grant covers its records only.
    pub grantor: Box<str>,
    pub recipient_institution: Box<str>,
    pub recipient_user: Option<Box<str>>,
    pub purpose: Purpose,
    pub records: Box<[Box<str>]>,
    pub categories: Box<[Category]>,
    pub data_from: Option<NaiveDate>,
    pub data_until: Option<NaiveDate>,
    /// Unix milliseconds.
    pub valid_from: i64,
    pub valid_until: i64,
    pub max_accesses: Option<u32>,
    pub accesses_used: u32,
}

/// An open break-glass declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassEntry {
    pub id: Box<str>,
    pub user: Box<str>,
    pub institution: Box<str>,
    /// Unix milliseconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct TenantIndex {
    pub policy: Arc<Policy>,
    pub policy_version: i32,
    pub institutions: HashMap<Box<str>, Level>,
    grants: HashMap<Box<str>, Vec<Arc<GrantEntry>>>,
    grant_patients: HashMap<Box<str>, Box<str>>,
    break_glass: HashMap<Box<str>, Vec<BreakGlassEntry>>,
}

/// Purposes a grant for `granted` serves: its own, and for care grants the other care
/// purpose (the receiving clinician of a referral treats the referred patient).
fn serves(granted: Purpose, asked: Purpose) -> bool {
    granted == asked
        || matches!(
            (granted, asked),
            (Purpose::Referral, Purpose::Treatment) | (Purpose::Treatment, Purpose::Referral)
        )
}

fn permit(kind: &str, id: &str, reason: String, obligations: &[&str]) -> Decision {
    Decision {
        permit: true,
        reasons: vec![reason],
        decided_by: DecidedBy {
            kind: kind.into(),
            id: id.into(),
        },
        obligations: obligations.iter().map(|o| o.to_string()).collect(),
    }
}

impl TenantIndex {
    pub fn new(
        policy: Arc<Policy>,
        policy_version: i32,
        institutions: HashMap<Box<str>, Level>,
    ) -> Self {
        Self {
            policy,
            policy_version,
            institutions,
            grants: HashMap::new(),
            grant_patients: HashMap::new(),
            break_glass: HashMap::new(),
        }
    }

    pub fn grant_count(&self) -> usize {
        self.grant_patients.len()
    }

    /// Adds or replaces a grant.
    pub fn put_grant(&mut self, grant: GrantEntry) {
        self.remove_grant(&grant.id);
        self.grant_patients
            .insert(grant.id.clone(), grant.patient.clone());
        self.grants
            .entry(grant.patient.clone())
            .or_default()
            .push(Arc::new(grant));
    }

    pub fn remove_grant(&mut self, id: &str) {
        let Some(patient) = self.grant_patients.remove(id) else {
            return;
        };
        if let Some(list) = self.grants.get_mut(&patient) {
            list.retain(|g| &*g.id != id);
            if list.is_empty() {
                self.grants.remove(&patient);
            }
        }
    }

    pub fn grant(&self, id: &str) -> Option<&GrantEntry> {
        let patient = self.grant_patients.get(id)?;
        self.grants
            .get(patient)?
            .iter()
            .find(|g| &*g.id == id)
            .map(|g| g.as_ref())
    }

    pub fn put_break_glass(&mut self, patient: &str, entry: BreakGlassEntry) {
        let list = self.break_glass.entry(patient.into()).or_default();
        list.retain(|b| b.id != entry.id);
        list.push(entry);
    }

    /// Forgets expired grants and declarations (decisions ignore them anyway).
    pub fn prune(&mut self, now_ms: i64) {
        let expired: Vec<Box<str>> = self
            .grants
            .values()
            .flatten()
            .filter(|g| g.valid_until <= now_ms)
            .map(|g| g.id.clone())
            .collect();
        for id in expired {
            self.remove_grant(&id);
        }
        self.break_glass.retain(|_, list| {
            list.retain(|b| b.expires_at > now_ms);
            !list.is_empty()
        });
    }

    /// One decision for one record. `Counted` is set when the permit rests on a grant with
    /// an access limit.
    pub fn decide(
        &self,
        subject: &Subject,
        action: Action,
        purpose: Purpose,
        record: &RecordAttributes,
        now_ms: i64,
    ) -> (Decision, Option<Box<str>>) {
        let deny = |reasons: Vec<String>, by: &str| Decision {
            permit: false,
            reasons,
            decided_by: DecidedBy {
                kind: "policy".into(),
                id: by.into(),
            },
            obligations: vec!["log_access".into()],
        };
        let Some(institution) = subject.institution.as_ref().map(|i| i.as_str()) else {
            return (
                deny(
                    vec!["the subject acts for no institution".into()],
                    "no_institution",
                ),
                None,
            );
        };
        let is_app = subject.kind == PrincipalKind::App;
        let level = self.policy.level_of(&record.category);
        let asker = Asker {
            is_app,
            roles: &subject.roles,
            institution,
            level: self.institutions.get(institution).copied(),
        };
        let owner = record.owner.as_str();
        if let Some(rule) = self
            .policy
            .rules
            .iter()
            .find(|r| r.matches(&asker, owner, action, purpose, level))
        {
            let reason = format!(
                "policy rule {} permits {} of {:?} records for {}",
                rule.name,
                action.as_str(),
                level,
                purpose.as_str()
            );
            return (permit("policy", &rule.name, reason, &["log_access"]), None);
        }
        let mut near_misses = Vec::new();
        let may_use_grants = is_app || subject.roles.contains(&Role::Physician);
        if may_use_grants && let Some(grants) = self.grants.get(record.patient.as_str()) {
            for g in grants {
                if &*g.recipient_institution != institution {
                    continue;
                }
                match self.grant_covers(g, subject, purpose, record, now_ms) {
                    Ok(()) => {
                        let reason = format!(
                            "grant {} permits {} for {}",
                            g.id,
                            action.as_str(),
                            purpose.as_str()
                        );
                        let counted = (g.max_accesses.is_some() && action == Action::ReadContent)
                            .then(|| g.id.clone());
                        return (permit("grant", &g.id, reason, &["log_access"]), counted);
                    }
                    Err(why) => near_misses.push(format!("grant {}: {why}", g.id)),
                }
            }
        }
        if !is_app
            && let Some(list) = self.break_glass.get(record.patient.as_str())
            && let Some(b) = list.iter().find(|b| {
                &*b.user == subject.id.as_str()
                    && &*b.institution == institution
                    && b.expires_at > now_ms
            })
        {
            if !matches!(purpose, Purpose::Emergency | Purpose::Treatment) {
                near_misses.push(format!(
                    "break-glass {} serves emergency care, not {}",
                    b.id,
                    purpose.as_str()
                ));
            } else if level <= self.policy.break_glass.max_sensitivity {
                let reason = format!(
                    "break-glass {} (emergency access) permits {}",
                    b.id,
                    action.as_str()
                );
                return (
                    permit(
                        "break_glass",
                        &b.id,
                        reason,
                        &["log_access", "break_glass_review"],
                    ),
                    None,
                );
            } else {
                near_misses.push(format!(
                    "break-glass {} does not reach {:?} records",
                    b.id, level
                ));
            }
        }
        let mut reasons = vec![format!(
            "no policy rule or grant permits {} of this {:?} record for {}",
            action.as_str(),
            level,
            purpose.as_str()
        )];
        reasons.extend(near_misses);
        (deny(reasons, "default_deny"), None)
    }

    fn grant_covers(
        &self,
        g: &GrantEntry,
        subject: &Subject,
        purpose: Purpose,
        record: &RecordAttributes,
        now_ms: i64,
    ) -> Result<(), String> {
        if let Some(user) = &g.recipient_user
            && **user != *subject.id
        {
            return Err("named for another physician".into());
        }
        if now_ms < g.valid_from {
            return Err("not valid yet".into());
        }
        if now_ms >= g.valid_until {
            return Err("expired".into());
        }
        if !serves(g.purpose, purpose) {
            return Err(format!("granted for {}", g.purpose.as_str()));
        }
        if *g.grantor != *record.owner.as_str() {
            return Err("the record is another institution's".into());
        }
        let by_id = g.records.iter().any(|r| **r == *record.record.as_str());
        let by_category =
            Category::parse(&record.category).is_some_and(|c| g.categories.contains(&c));
        if !by_id && !by_category {
            return Err("the record is outside its scope".into());
        }
        if g.data_from.is_some() || g.data_until.is_some() {
            let date = NaiveDate::parse_from_str(&record.encounter_date, "%Y-%m-%d")
                .map_err(|_| "the record has no readable encounter date".to_string())?;
            if g.data_from.is_some_and(|from| date < from)
                || g.data_until.is_some_and(|until| date > until)
            {
                return Err("the record is outside its data period".into());
            }
        }
        if let Some(max) = g.max_accesses
            && g.accesses_used >= max
        {
            return Err("its accesses are used up".into());
        }
        Ok(())
    }
}
