//! Decisions of the in-memory index, without services: the default policy over every
//! institution level × role × purpose × category × action, and every way a grant can fail
//! to cover a read.

use std::collections::HashMap;
use std::sync::Arc;

use caretrail_consent::index::{BreakGlassEntry, GrantEntry, TenantIndex};
use caretrail_consent::policy::{Policy, Sensitivity};
use caretrail_contracts::auth::{PrincipalKind, Role};
use caretrail_contracts::consent::{Action, Purpose, RecordAttributes, Subject};
use caretrail_contracts::identity::Level;
use caretrail_contracts::records::Category;
use caretrail_contracts::{InstitutionId, PatientId, RecordId};

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

struct World {
    index: TenantIndex,
    institutions: HashMap<Level, InstitutionId>,
    patient: PatientId,
}

fn world() -> World {
    let institutions: HashMap<Level, InstitutionId> = Level::ALL
        .into_iter()
        .map(|l| (l, InstitutionId::generate()))
        .collect();
    let levels = institutions
        .iter()
        .map(|(l, i)| (i.as_str().into(), *l))
        .collect();
    World {
        index: TenantIndex::new(Arc::new(Policy::default_policy()), 0, levels),
        institutions,
        patient: PatientId::generate(),
    }
}

fn record(w: &World, owner: Level, category: Category) -> RecordAttributes {
    RecordAttributes {
        record: RecordId::generate(),
        patient: w.patient.clone(),
        category: category.as_str().into(),
        owner: w.institutions[&owner].clone(),
        encounter_date: "2026-11-01".into(),
    }
}

fn user(w: &World, level: Level, roles: &[Role]) -> Subject {
    Subject {
        kind: PrincipalKind::User,
        id: caretrail_contracts::UserId::generate().to_string(),
        institution: Some(w.institutions[&level].clone()),
        roles: roles.to_vec(),
        scopes: Vec::new(),
    }
}

fn app(w: &World, level: Level) -> Subject {
    Subject {
        kind: PrincipalKind::App,
        id: caretrail_contracts::AppId::generate().to_string(),
        institution: Some(w.institutions[&level].clone()),
        roles: Vec::new(),
        scopes: vec!["records:read".into()],
    }
}

/// The default policy in words, written independently of the rule engine.
fn expected(
    subject_level: Level,
    role: Option<Role>,
    owner: bool,
    action: Action,
    purpose: Purpose,
    sensitivity: Sensitivity,
) -> Option<&'static str> {
    let care = matches!(
        purpose,
        Purpose::Treatment | Purpose::Referral | Purpose::Emergency | Purpose::Audit
    );
    let staff = matches!(
        role,
        None | Some(Role::Physician) | Some(Role::InstitutionAdmin)
    );
    if owner && staff && care {
        return Some("creator_institution");
    }
    let auditor = subject_level == Level::Regulator && role == Some(Role::Auditor);
    if auditor && purpose == Purpose::Audit {
        match action {
            Action::ReadMetadata => return Some("regulator_metadata"),
            Action::ReadContent if sensitivity <= Sensitivity::L2 => {
                return Some("regulator_content");
            }
            Action::ReadContent => {}
        }
    }
    None
}

#[test]
fn the_default_policy_over_levels_roles_purposes_and_sensitivity() {
    let w = world();
    let policy = Policy::default_policy();
    let mut checked = 0;
    for subject_level in Level::ALL {
        let mut subjects: Vec<(Option<Role>, Subject)> = Role::ALL
            .into_iter()
            .map(|r| (Some(r), user(&w, subject_level, &[r])))
            .collect();
        subjects.push((None, app(&w, subject_level)));
        for owner_level in [Level::Primary, Level::Tertiary] {
            for category in Category::ALL {
                let r = record(&w, owner_level, category);
                let sensitivity = policy.level_of(category.as_str());
                for (role, subject) in &subjects {
                    for purpose in Purpose::ALL {
                        for action in [Action::ReadMetadata, Action::ReadContent] {
                            let (d, counted) = w.index.decide(subject, action, purpose, &r, NOW);
                            let want = expected(
                                subject_level,
                                *role,
                                owner_level == subject_level,
                                action,
                                purpose,
                                sensitivity,
                            );
                            assert_eq!(
                                d.permit,
                                want.is_some(),
                                "{subject_level:?} {role:?} {action:?} {purpose:?} {category:?} ({sensitivity:?}) of {owner_level:?}: {d:?}"
                            );
                            if let Some(rule) = want {
                                assert_eq!(d.decided_by.kind, "policy");
                                assert_eq!(d.decided_by.id, rule);
                                assert!(d.obligations.contains(&"log_access".to_string()));
                            }
                            assert!(counted.is_none());
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 5 * 5 * 2 * 10 * 7 * 2);
}

#[test]
fn public_health_never_reads_records_and_regulators_never_read_l3_l4_content() {
    let w = world();
    let ph = user(&w, Level::PublicHealth, &[Role::Auditor, Role::Physician]);
    let auditor = user(&w, Level::Regulator, &[Role::Auditor]);
    for category in Category::ALL {
        let r = record(&w, Level::Primary, category);
        for purpose in Purpose::ALL {
            for action in [Action::ReadMetadata, Action::ReadContent] {
                assert!(!w.index.decide(&ph, action, purpose, &r, NOW).0.permit);
            }
        }
    }
    for category in [
        Category::MentalHealth,
        Category::Genetic,
        Category::InfectiousDisease,
    ] {
        let r = record(&w, Level::Primary, category);
        let d = w
            .index
            .decide(&auditor, Action::ReadContent, Purpose::Audit, &r, NOW)
            .0;
        assert!(!d.permit, "{category:?}");
        assert!(
            w.index
                .decide(&auditor, Action::ReadMetadata, Purpose::Audit, &r, NOW)
                .0
                .permit
        );
    }
}

fn grant(w: &World, id: &str, recipient: Level) -> GrantEntry {
    GrantEntry {
        id: id.into(),
        patient: w.patient.as_str().into(),
        grantor: w.institutions[&Level::Primary].as_str().into(),
        recipient_institution: w.institutions[&recipient].as_str().into(),
        recipient_user: None,
        purpose: Purpose::Referral,
        records: Box::new([]),
        categories: Box::new([Category::ExamReport]),
        data_from: None,
        data_until: None,
        valid_from: NOW - HOUR,
        valid_until: NOW + HOUR,
        max_accesses: None,
        accesses_used: 0,
    }
}

#[test]
fn grants_permit_inside_their_scope_and_nowhere_else() {
    let mut w = world();
    let specialist = user(&w, Level::Tertiary, &[Role::Physician]);
    let exam = record(&w, Level::Primary, Category::ExamReport);
    let lab = record(&w, Level::Primary, Category::LabResult);
    let read = |w: &World, s: &Subject, r: &RecordAttributes, p: Purpose, at: i64| {
        w.index.decide(s, Action::ReadContent, p, r, at).0
    };
    assert!(!read(&w, &specialist, &exam, Purpose::Referral, NOW).permit);

    w.index.put_grant(grant(&w, "g1", Level::Tertiary));
    let d = read(&w, &specialist, &exam, Purpose::Referral, NOW);
    assert!(d.permit, "{d:?}");
    assert_eq!(
        (d.decided_by.kind.as_str(), d.decided_by.id.as_str()),
        ("grant", "g1")
    );
    // A referral grant also serves the receiving clinician's treatment reads.
    assert!(read(&w, &specialist, &exam, Purpose::Treatment, NOW).permit);
    // Outside the scope, for another purpose, before the start, after the end.
    assert!(!read(&w, &specialist, &lab, Purpose::Referral, NOW).permit);
    let d = read(&w, &specialist, &exam, Purpose::Research, NOW);
    assert!(!d.permit);
    assert!(
        d.reasons.iter().any(|r| r.contains("granted for referral")),
        "{d:?}"
    );
    assert!(!read(&w, &specialist, &exam, Purpose::Referral, NOW - 2 * HOUR).permit);
    let d = read(&w, &specialist, &exam, Purpose::Referral, NOW + HOUR);
    assert!(!d.permit);
    assert!(d.reasons.iter().any(|r| r.contains("expired")), "{d:?}");
    // Another institution, an institution admin of the right one, another institution's record.
    let other = user(&w, Level::Secondary, &[Role::Physician]);
    assert!(!read(&w, &other, &exam, Purpose::Referral, NOW).permit);
    let admin = user(&w, Level::Tertiary, &[Role::InstitutionAdmin]);
    assert!(!read(&w, &admin, &exam, Purpose::Referral, NOW).permit);
    let secondary_exam = record(&w, Level::Secondary, Category::ExamReport);
    assert!(!read(&w, &specialist, &secondary_exam, Purpose::Referral, NOW).permit);
    // Revoked grants leave the index.
    w.index.remove_grant("g1");
    assert!(!read(&w, &specialist, &exam, Purpose::Referral, NOW).permit);
}

#[test]
fn named_physicians_record_lists_data_periods_and_access_limits() {
    let mut w = world();
    let named = user(&w, Level::Tertiary, &[Role::Physician]);
    let colleague = user(&w, Level::Tertiary, &[Role::Physician]);
    let exam = record(&w, Level::Primary, Category::ExamReport);
    let mut old_exam = record(&w, Level::Primary, Category::ExamReport);
    old_exam.encounter_date = "2019-03-01".into();
    let imaging = record(&w, Level::Primary, Category::Imaging);
    let mut g = grant(&w, "g2", Level::Tertiary);
    g.recipient_user = Some(named.id.as_str().into());
    g.records = Box::new([imaging.record.as_str().into()]);
    g.data_from = Some("2025-01-01".parse().unwrap());
    g.max_accesses = Some(2);
    w.index.put_grant(g.clone());
    let read = |w: &World, s: &Subject, r: &RecordAttributes| {
        w.index
            .decide(s, Action::ReadContent, Purpose::Referral, r, NOW)
    };
    let (d, counted) = read(&w, &named, &exam);
    assert!(d.permit);
    assert_eq!(counted.as_deref(), Some("g2"), "limited grants are counted");
    assert!(read(&w, &named, &imaging).0.permit, "listed by id");
    assert!(
        !read(&w, &colleague, &exam).0.permit,
        "named for another physician"
    );
    assert!(
        !read(&w, &named, &old_exam).0.permit,
        "before the data period"
    );
    // Metadata reads are not counted.
    assert!(
        w.index
            .decide(&named, Action::ReadMetadata, Purpose::Referral, &exam, NOW)
            .1
            .is_none()
    );
    g.accesses_used = 2;
    w.index.put_grant(g);
    let d = read(&w, &named, &exam).0;
    assert!(!d.permit);
    assert!(d.reasons.iter().any(|r| r.contains("used up")), "{d:?}");
    assert_eq!(w.index.grant_count(), 1);
}

#[test]
fn break_glass_opens_the_declarants_reads_up_to_the_policy_level_until_it_expires() {
    let mut w = world();
    let er = user(&w, Level::Tertiary, &[Role::Physician]);
    let other = user(&w, Level::Tertiary, &[Role::Physician]);
    let exam = record(&w, Level::Primary, Category::ExamReport);
    let psych = record(&w, Level::Primary, Category::MentalHealth);
    let patient = w.patient.to_string();
    w.index.put_break_glass(
        &patient,
        BreakGlassEntry {
            id: "bgl_1".into(),
            user: er.id.as_str().into(),
            institution: w.institutions[&Level::Tertiary].as_str().into(),
            expires_at: NOW + HOUR,
        },
    );
    let d = w
        .index
        .decide(&er, Action::ReadContent, Purpose::Emergency, &exam, NOW)
        .0;
    assert!(d.permit);
    assert_eq!(d.decided_by.kind, "break_glass");
    assert!(d.obligations.contains(&"break_glass_review".to_string()));
    assert!(
        !w.index
            .decide(&er, Action::ReadContent, Purpose::Emergency, &psych, NOW)
            .0
            .permit
    );
    assert!(
        !w.index
            .decide(&other, Action::ReadContent, Purpose::Emergency, &exam, NOW)
            .0
            .permit
    );
    assert!(
        !w.index
            .decide(
                &er,
                Action::ReadContent,
                Purpose::Emergency,
                &exam,
                NOW + 2 * HOUR
            )
            .0
            .permit
    );
    w.index.prune(NOW + 2 * HOUR);
    assert!(
        !w.index
            .decide(&er, Action::ReadContent, Purpose::Emergency, &exam, NOW)
            .0
            .permit
    );
}
