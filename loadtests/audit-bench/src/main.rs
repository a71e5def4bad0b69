//! Audit queries at scale: writes `--events` (default 1,000,000) indexed events for one
//! tenant straight into the audit schema — 100,000 records of 10,000 patients, each record
//! anchored, then accessed, refused, covered by grants — and times the queries regulators
//! run: a record's trail (without ledger proofs: the database part) and an event search by
//! patient, on SQLite and (with `--real`) PostgreSQL. Prints a Markdown report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::Result;
use caretrail_audit::entities::audit_event;
use caretrail_contracts::{InstitutionId, PatientId, RecordId, TenantId};
use caretrail_runtime::testing::{Backend, settings};
use clap::Parser;
use rand::Rng;
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Queries timed per kind.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    #[arg(long)]
    real: bool,
}

const EVENTS_PER_RECORD: usize = 10;
const RECORDS_PER_PATIENT: usize = 10;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn run(backend: Backend, args: &Args) -> Result<()> {
    let (service, _dir) = settings(backend, "audit").await;
    let db =
        caretrail_db::connect_and_migrate::<caretrail_migrations::audit::Migrator>(&service.db)
            .await?;
    let tenant = TenantId::generate();
    let owner = InstitutionId::generate();
    let hospital = InstitutionId::generate();
    let records = args.events / EVENTS_PER_RECORD;
    let patients: Vec<PatientId> = (0..(records / RECORDS_PER_PATIENT).max(1))
        .map(|_| PatientId::generate())
        .collect();
    let record_ids: Vec<RecordId> = (0..records).map(|_| RecordId::generate()).collect();
    let kinds = [
        "record.anchored",
        "record.accessed",
        "record.accessed",
        "record.access_denied",
        "record.accessed",
        "record.accessed",
        "record.access_denied",
        "record.accessed",
        "record.accessed",
        "record.accessed",
    ];
    let started = Instant::now();
    let t0 = chrono::Utc::now() - chrono::Duration::days(30);
    let txn = caretrail_db::begin_tenant(&db, tenant.as_str()).await?;
    let mut batch = Vec::with_capacity(1000);
    let mut n = 0usize;
    for (round, kind) in kinds.iter().enumerate() {
        for (i, record) in record_ids.iter().enumerate() {
            let patient = &patients[i / RECORDS_PER_PATIENT % patients.len()];
            batch.push(
                audit_event::Model {
                    id: uuid::Uuid::now_v7().to_string(),
                    tenant_id: tenant.to_string(),
                    service: "object-store".into(),
                    kind: (*kind).into(),
                    occurred_at: t0 + chrono::Duration::milliseconds(n as i64 * 2),
                    ledger_index: Some(n as i64 + 1),
                    leaf_hash: Some(format!("{n:064x}")),
                    record_id: Some(record.to_string()),
                    patient_id: Some(patient.to_string()),
                    grant_id: None,
                    referral_id: None,
                    break_glass_id: None,
                    category: Some("exam_report".into()),
                    owner_institution: Some(owner.to_string()),
                    actor_subject: Some("usr_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e".into()),
                    actor_institution: Some(if round == 0 {
                        owner.to_string()
                    } else {
                        hospital.to_string()
                    }),
                    recipient_institution: None,
                    purpose: Some("referral".into()),
                    action: Some("read_content".into()),
                    permit: Some(*kind == "record.accessed"),
                    decided_by_kind: Some("grant".into()),
                    decided_by_id: Some("gnt_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e".into()),
                    payload: format!("{{\"record\":\"{record}\",\"patient\":\"{patient}\"}}"),
                }
                .into_active_model(),
            );
            n += 1;
            if batch.len() == 1000 {
                audit_event::Entity::insert_many(std::mem::take(&mut batch))
                    .exec(&txn)
                    .await?;
            }
        }
    }
    if !batch.is_empty() {
        audit_event::Entity::insert_many(batch).exec(&txn).await?;
    }
    txn.commit().await?;
    let loaded = started.elapsed();
    let state = caretrail_audit::State {
        db: db.clone(),
        ledger: caretrail_runtime::clients::LedgerClient::new(
            std::sync::Arc::new(caretrail_bus::InProcessBus::new()),
            Duration::from_secs(1),
        ),
        witness: caretrail_audit::witness::WitnessMode::Off,
    };
    let mut rng = rand::thread_rng();
    let mut trail = Vec::with_capacity(args.queries);
    for _ in 0..args.queries {
        let record = &record_ids[rng.gen_range(0..record_ids.len())];
        let s = Instant::now();
        let t = caretrail_audit::api::build_trail(&state, &tenant, record.as_str(), false).await?;
        trail.push(s.elapsed());
        assert_eq!(t.events.len(), EVENTS_PER_RECORD);
    }
    let mut search = Vec::with_capacity(args.queries);
    for _ in 0..args.queries {
        let patient = &patients[rng.gen_range(0..patients.len())];
        let s = Instant::now();
        let txn = caretrail_db::begin_tenant(&db, tenant.as_str()).await?;
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
            .filter(audit_event::Column::PatientId.eq(patient.as_str()))
            .order_by_asc(audit_event::Column::Id)
            .limit(51)
            .all(&txn)
            .await?;
        txn.commit().await?;
        search.push(s.elapsed());
        assert!(!rows.is_empty());
    }
    trail.sort();
    search.sort();
    let label = match backend {
        Backend::Embedded => "SQLite",
        Backend::Real => "PostgreSQL",
    };
    println!(
        "| {label} | {n} events written in {:.0} s | trail of a record (10 events) | {} | {} | {} |",
        loaded.as_secs_f64(),
        ms(percentile(&trail, 0.5)),
        ms(percentile(&trail, 0.99)),
        ms(*trail.last().unwrap())
    );
    println!(
        "| {label} | | events of a patient (first page of 50) | {} | {} | {} |",
        ms(percentile(&search, 0.5)),
        ms(percentile(&search, 0.99)),
        ms(*search.last().unwrap())
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!("## Audit queries with {} indexed events\n", args.events);
    println!(
        "| database | load | query | p50 ms | p99 ms | max ms |\n|---|---|---|---:|---:|---:|"
    );
    run(Backend::Embedded, &args).await?;
    if args.real {
        run(Backend::Real, &args).await?;
    }
    Ok(())
}
