//! The classification policy: each record category has a sensitivity level, and rules say
//! which institutions and roles may do what, on which levels, for which purposes, without
//! an explicit grant. Versioned per tenant; every change is validated and anchored.

use std::collections::{BTreeMap, HashSet};

use caretrail_contracts::auth::Role;
use caretrail_contracts::consent::{Action, Purpose};
use caretrail_contracts::identity::Level;
use caretrail_contracts::records::Category;
use caretrail_platform::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How sensitive a category is: L1 (routine) … L4 (most sensitive: mental health, genetics).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Sensitivity {
    L1,
    L2,
    L3,
    L4,
}

/// Which institutions a rule covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "levels")]
pub enum Institutions {
    /// The institution that created the record.
    Owner,
    /// Institutions of these levels.
    Levels(Vec<Level>),
}

/// Permits an action without a grant when everything matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in decisions and on the ledger, e.g. `creator_institution`.
    pub name: String,
    pub institutions: Institutions,
    /// Users holding any of these roles.
    pub roles: Vec<Role>,
    /// Partner apps of a matching institution (their `records:read` scope is checked by the
    /// object store).
    #[serde(default)]
    pub apps: bool,
    pub actions: Vec<Action>,
    /// Records up to this level.
    pub max_sensitivity: Sensitivity,
    pub purposes: Vec<Purpose>,
}

/// What a break-glass declaration opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassPolicy {
    /// Hours the access lasts (1–24).
    pub hours: u32,
    /// Records up to this level.
    pub max_sensitivity: Sensitivity,
    /// Roles that may declare one.
    pub roles: Vec<Role>,
}

/// A tenant's policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Every category's level.
    pub sensitivity: BTreeMap<Category, Sensitivity>,
    /// Evaluated in order; the first that matches permits.
    pub rules: Vec<Rule>,
    pub break_glass: BreakGlassPolicy,
}

impl Policy {
    /// The policy every tenant starts with:
    /// * the institution that created a record reads it (care and audit purposes);
    /// * regulators' auditors read metadata of everything and content up to L2, for audit;
    /// * public health has no record-level access (it gets de-identified aggregates);
    /// * everything else needs a grant or a break-glass declaration (up to L3, 4 hours).
    pub fn default_policy() -> Self {
        use Sensitivity::*;
        let sensitivity = Category::ALL
            .into_iter()
            .map(|c| {
                let level = match c {
                    Category::Other => L1,
                    Category::InfectiousDisease => L3,
                    Category::MentalHealth | Category::Genetic => L4,
                    _ => L2,
                };
                (c, level)
            })
            .collect();
        Self {
            sensitivity,
            rules: vec![
                Rule {
                    name: "creator_institution".into(),
                    institutions: Institutions::Owner,
                    roles: vec![Role::Physician, Role::InstitutionAdmin],
                    apps: true,
                    actions: vec![Action::ReadMetadata, Action::ReadContent],
                    max_sensitivity: L4,
                    purposes: vec![
                        Purpose::Treatment,
                        Purpose::Referral,
                        Purpose::Emergency,
                        Purpose::Audit,
                    ],
                },
                Rule {
                    name: "regulator_metadata".into(),
                    institutions: Institutions::Levels(vec![Level::Regulator]),
                    roles: vec![Role::Auditor],
                    apps: false,
                    actions: vec![Action::ReadMetadata],
                    max_sensitivity: L4,
                    purposes: vec![Purpose::Audit],
                },
                Rule {
                    name: "regulator_content".into(),
                    institutions: Institutions::Levels(vec![Level::Regulator]),
                    roles: vec![Role::Auditor],
                    apps: false,
                    actions: vec![Action::ReadContent],
                    max_sensitivity: L2,
                    purposes: vec![Purpose::Audit],
                },
            ],
            break_glass: BreakGlassPolicy {
                hours: 4,
                max_sensitivity: L3,
                roles: vec![Role::Physician],
            },
        }
    }

    /// A category's level; a category the policy does not list counts as the most sensitive.
    pub fn level_of(&self, category: &str) -> Sensitivity {
        Category::parse(category)
            .and_then(|c| self.sensitivity.get(&c).copied())
            .unwrap_or(Sensitivity::L4)
    }

    /// Every problem with the document, by field.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for c in Category::ALL {
            if !self.sensitivity.contains_key(&c) {
                errors.push(FieldError::new(
                    "sensitivity",
                    format!("category {} has no level", c.as_str()),
                ));
            }
        }
        if self.rules.len() > 100 {
            errors.push(FieldError::new("rules", "at most 100 rules"));
        }
        let mut names = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let field = |f: &str| format!("rules[{i}].{f}");
            let name_ok = !rule.name.is_empty()
                && rule.name.len() <= 64
                && rule
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok {
                errors.push(FieldError::new(
                    field("name"),
                    "1–64 characters of a-z, 0-9 and _",
                ));
            } else if !names.insert(rule.name.as_str()) {
                errors.push(FieldError::new(field("name"), "names must be unique"));
            }
            if rule.actions.is_empty() {
                errors.push(FieldError::new(field("actions"), "must not be empty"));
            }
            if rule.purposes.is_empty() {
                errors.push(FieldError::new(field("purposes"), "must not be empty"));
            }
            if rule.roles.is_empty() && !rule.apps {
                errors.push(FieldError::new(
                    field("roles"),
                    "a rule must cover some roles or partner apps",
                ));
            }
            if let Institutions::Levels(levels) = &rule.institutions
                && levels.is_empty()
            {
                errors.push(FieldError::new(field("institutions"), "must not be empty"));
            }
            if rule.purposes.contains(&Purpose::PublicHealth) {
                errors.push(FieldError::new(
                    field("purposes"),
                    "public health gets de-identified aggregates, never records",
                ));
            }
        }
        if !(1..=24).contains(&self.break_glass.hours) {
            errors.push(FieldError::new("break_glass.hours", "between 1 and 24"));
        }
        errors
    }
}

/// Who is asking, as the policy sees them.
pub struct Asker<'a> {
    pub is_app: bool,
    pub roles: &'a [Role],
    pub institution: &'a str,
    pub level: Option<Level>,
}

impl Rule {
    pub fn matches(
        &self,
        asker: &Asker<'_>,
        owner: &str,
        action: Action,
        purpose: Purpose,
        level: Sensitivity,
    ) -> bool {
        let who = if asker.is_app {
            self.apps
        } else {
            asker.roles.iter().any(|r| self.roles.contains(r))
        };
        let institution = match &self.institutions {
            Institutions::Owner => asker.institution == owner,
            Institutions::Levels(levels) => asker.level.is_some_and(|l| levels.contains(&l)),
        };
        who && institution
            && self.actions.contains(&action)
            && self.purposes.contains(&purpose)
            && level <= self.max_sensitivity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid_and_covers_every_category() {
        let p = Policy::default_policy();
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        assert_eq!(p.level_of("mental_health"), Sensitivity::L4);
        assert_eq!(p.level_of("exam_report"), Sensitivity::L2);
        assert_eq!(p.level_of("not_a_category"), Sensitivity::L4);
    }

    #[test]
    fn invalid_documents_name_their_problems() {
        let mut p = Policy::default_policy();
        p.sensitivity.remove(&Category::Genetic);
        p.rules[1].name = p.rules[0].name.clone();
        p.rules[2].actions.clear();
        p.rules[2].purposes.push(Purpose::PublicHealth);
        p.break_glass.hours = 0;
        let fields: Vec<String> = p.problems().into_iter().map(|e| e.field).collect();
        for expected in [
            "sensitivity",
            "rules[1].name",
            "rules[2].actions",
            "rules[2].purposes",
            "break_glass.hours",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} in {fields:?}"
            );
        }
    }
}
