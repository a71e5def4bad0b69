//! Decisions of the in-memory index with 100,000 active grants in one tenant (20,000
//! patients × 5 grants): a permit by grant, a permit by policy, a deny after scanning the
//! patient's grants, and a batch of 50 (a list page). Also prints the index's resident
//! memory per grant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use caretrail_consent::index::{GrantEntry, TenantIndex};
use caretrail_consent::policy::Policy;
use caretrail_contracts::auth::{PrincipalKind, Role};
use caretrail_contracts::consent::{Action, Purpose, RecordAttributes, Subject};
use caretrail_contracts::identity::Level;
use caretrail_contracts::records::Category;
use caretrail_contracts::{GrantId, InstitutionId, PatientId, RecordId, UserId};
use criterion::{Criterion, criterion_group, criterion_main};

pub const GRANTS: usize = 100_000;
const PER_PATIENT: usize = 5;
const NOW: i64 = 1_800_000_000_000;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

struct Fixture {
    index: TenantIndex,
    owner: InstitutionId,
    recipient: Subject,
    patients: Vec<PatientId>,
}

fn fixture() -> Fixture {
    let owner = InstitutionId::generate();
    let hospitals: Vec<InstitutionId> = (0..PER_PATIENT)
        .map(|_| InstitutionId::generate())
        .collect();
    let mut levels: std::collections::HashMap<Box<str>, Level> = hospitals
        .iter()
        .map(|h| (h.as_str().into(), Level::Tertiary))
        .collect();
    levels.insert(owner.as_str().into(), Level::Primary);
    let before = rss_bytes();
    let mut index = TenantIndex::new(Arc::new(Policy::default_policy()), 0, levels);
    let patients: Vec<PatientId> = (0..GRANTS / PER_PATIENT)
        .map(|_| PatientId::generate())
        .collect();
    for patient in &patients {
        for (i, hospital) in hospitals.iter().enumerate() {
            index.put_grant(GrantEntry {
                id: GrantId::generate().as_str().into(),
                patient: patient.as_str().into(),
                grantor: owner.as_str().into(),
                recipient_institution: hospital.as_str().into(),
                recipient_user: None,
                purpose: Purpose::Referral,
                records: Box::new([RecordId::generate().as_str().into()]),
                categories: Box::new([Category::ALL[i % 6], Category::ALL[(i + 1) % 6]]),
                data_from: None,
                data_until: None,
                valid_from: NOW - 1_000,
                valid_until: NOW + 86_400_000,
                max_accesses: None,
                accesses_used: 0,
            });
        }
    }
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "index of {GRANTS} grants: {:.1} MiB resident, {} bytes per grant",
        grown as f64 / 1048576.0,
        grown / GRANTS as u64
    );
    let recipient = Subject {
        kind: PrincipalKind::User,
        id: UserId::generate().to_string(),
        institution: Some(hospitals[0].clone()),
        roles: vec![Role::Physician],
        scopes: Vec::new(),
    };
    Fixture {
        index,
        owner,
        recipient,
        patients,
    }
}

fn record(f: &Fixture, patient: usize, category: Category) -> RecordAttributes {
    RecordAttributes {
        record: RecordId::generate(),
        patient: f.patients[patient % f.patients.len()].clone(),
        category: category.as_str().into(),
        owner: f.owner.clone(),
        encounter_date: "2026-11-01".into(),
    }
}

fn decisions(c: &mut Criterion) {
    let f = fixture();
    let granted = record(&f, 7, Category::ExamReport);
    let outside = record(&f, 7, Category::Genetic);
    let mut owner = f.recipient.clone();
    owner.institution = Some(f.owner.clone());
    let page: Vec<RecordAttributes> = (0..50)
        .map(|i| record(&f, 11, Category::ALL[i % 10]))
        .collect();
    let mut g = c.benchmark_group("decide_100k_grants");
    g.bench_function("permit_by_grant", |b| {
        b.iter(|| {
            let d = f.index.decide(
                black_box(&f.recipient),
                Action::ReadContent,
                Purpose::Referral,
                black_box(&granted),
                NOW,
            );
            assert!(d.0.permit);
        })
    });
    g.bench_function("permit_by_policy", |b| {
        b.iter(|| {
            let d = f.index.decide(
                black_box(&owner),
                Action::ReadContent,
                Purpose::Treatment,
                black_box(&granted),
                NOW,
            );
            assert!(d.0.permit);
        })
    });
    g.bench_function("deny_outside_scope", |b| {
        b.iter(|| {
            let d = f.index.decide(
                black_box(&f.recipient),
                Action::ReadContent,
                Purpose::Referral,
                black_box(&outside),
                NOW,
            );
            assert!(!d.0.permit);
        })
    });
    g.bench_function("batch_of_50", |b| {
        b.iter(|| {
            for r in &page {
                black_box(f.index.decide(
                    &f.recipient,
                    Action::ReadMetadata,
                    Purpose::Referral,
                    r,
                    NOW,
                ));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
