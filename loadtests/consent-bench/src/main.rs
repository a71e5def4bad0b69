//! Consent decisions under load, with 100,000 active grants in one tenant.
//!
//! Starts identity, a one-node ledger, the object store and consent (the test stack) on the
//! embedded adapters or on PostgreSQL + RabbitMQ, writes the grants straight into consent's
//! database, then measures:
//! * in-process (`Engine::decide`, what the RPC handler calls): an open loop paced at
//!   `--rate` decisions/s for `--seconds`, and a closed loop for the ceiling;
//! * over the bus (`consent.decide` RPC through `ConsentClient`), single and batched (50),
//!   at several concurrency levels.
//!
//! Prints a Markdown report. Run with `make bench-consent`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use caretrail_consent::entities::grant;
use caretrail_contracts::auth::{PrincipalKind, Role};
use caretrail_contracts::consent::{Action, DecideIn, Purpose, RecordAttributes, Subject};
use caretrail_contracts::{GrantId, InstitutionId, PatientId, RecordId, TenantId};
use caretrail_runtime::clients::ConsentClient;
use caretrail_runtime::testing::Backend;
use caretrail_test_stack::{Options, Stack};
use clap::Parser;
use sea_orm::{EntityTrait, IntoActiveModel};

#[derive(Parser)]
struct Args {
    /// Active grants to load.
    #[arg(long, default_value_t = 100_000)]
    grants: usize,
    /// Paced in-process rate (decisions/s).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds per bus measurement.
    #[arg(long, default_value_t = 5)]
    bus_seconds: u64,
    /// Also run on PostgreSQL + RabbitMQ.
    #[arg(long)]
    real: bool,
}

const PER_PATIENT: usize = 5;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

struct Load {
    tenant: TenantId,
    subject: Subject,
    records: Vec<RecordAttributes>,
}

async fn load_grants(stack: &Stack, n: usize) -> Result<Load> {
    let tenant: TenantId = stack.tenant_id(0).parse()?;
    let owner: InstitutionId = stack.institution(0, 0)["id"].as_str().unwrap().parse()?;
    let hospital: InstitutionId = stack.institution(0, 1)["id"].as_str().unwrap().parse()?;
    let db = &stack.consent_state.as_ref().unwrap().db;
    let now = chrono::Utc::now();
    let mut records = Vec::new();
    let txn = caretrail_db::begin_tenant(db, tenant.as_str()).await?;
    let mut rows = Vec::with_capacity(1000);
    for i in 0..n {
        let patient = if i % PER_PATIENT == 0 || records.is_empty() {
            let p = PatientId::generate();
            records.push(RecordAttributes {
                record: RecordId::generate(),
                patient: p.clone(),
                category: "exam_report".into(),
                owner: owner.clone(),
                encounter_date: "2026-11-01".into(),
            });
            p
        } else {
            records.last().unwrap().patient.clone()
        };
        // One grant per patient reaches the hospital; the others go to other institutions.
        let recipient = if i % PER_PATIENT == 0 {
            hospital.clone()
        } else {
            InstitutionId::generate()
        };
        rows.push(
            grant::Model {
                id: GrantId::generate().to_string(),
                tenant_id: tenant.to_string(),
                patient_id: patient.to_string(),
                grantor_institution: owner.to_string(),
                granted_by: "usr_bench".into(),
                recipient_institution: recipient.to_string(),
                recipient_user: None,
                purpose: "referral".into(),
                record_ids: "[]".into(),
                categories: "[\"exam_report\",\"lab_result\"]".into(),
                data_from: None,
                data_until: None,
                valid_from: now - chrono::Duration::hours(1),
                valid_until: now + chrono::Duration::days(30),
                max_accesses: None,
                accesses_used: 0,
                evidence: "{\"kind\":\"patient_app_approval\",\"reference\":\"bench\"}".into(),
                referral_id: None,
                status: "active".into(),
                created_at: now,
                revoked_at: None,
                revoked_by: None,
                revocation_reason: None,
                ledger_index: Some(1),
            }
            .into_active_model(),
        );
        if rows.len() == 1000 {
            grant::Entity::insert_many(std::mem::take(&mut rows))
                .exec(&txn)
                .await?;
        }
    }
    if !rows.is_empty() {
        grant::Entity::insert_many(rows).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(Load {
        tenant,
        subject: Subject {
            kind: PrincipalKind::User,
            id: "usr_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e".into(),
            institution: Some(hospital),
            roles: vec![Role::Physician],
            scopes: Vec::new(),
        },
        records,
    })
}

fn input(load: &Load, i: usize, batch: usize) -> DecideIn {
    DecideIn {
        tenant: load.tenant.clone(),
        subject: load.subject.clone(),
        action: Action::ReadMetadata,
        purpose: Purpose::Referral,
        resources: (0..batch)
            .map(|k| load.records[(i * 7919 + k * 104_729) % load.records.len()].clone())
            .collect(),
        enforce: false,
    }
}

async fn run(backend: Backend, args: &Args) -> Result<()> {
    let label = match backend {
        Backend::Embedded => "embedded (SQLite, in-process bus)",
        Backend::Real => "PostgreSQL + RabbitMQ",
    };
    let stack = Stack::start_with(
        backend,
        Options {
            consent: true,
            ..Options::default()
        },
    )
    .await;
    let started = Instant::now();
    let load = load_grants(&stack, args.grants).await?;
    let inserted = started.elapsed();
    let engine = stack.consent_state.as_ref().unwrap().engine.clone();
    let started = Instant::now();
    let held = engine.grant_count(load.tenant.as_str()).await?;
    let indexed = started.elapsed();
    println!("\n### {label}\n");
    println!(
        "{} grants written in {:.1} s; the index loaded them in {:.2} s (memory per grant: `cargo bench -p caretrail-consent`)\n",
        args.grants,
        inserted.as_secs_f64(),
        indexed.as_secs_f64(),
    );
    assert_eq!(held, args.grants);

    // In-process, open loop: `rate` per second in 1 ms ticks.
    let per_tick = (args.rate / 1000).max(1) as usize;
    let ticks = args.seconds * 1000;
    let mut lat = Vec::with_capacity(ticks as usize * per_tick);
    let mut permits = 0usize;
    let begin = tokio::time::Instant::now();
    for t in 0..ticks {
        tokio::time::sleep_until(begin + Duration::from_millis(t)).await;
        for k in 0..per_tick {
            let req = input(&load, t as usize * per_tick + k, 1);
            let s = Instant::now();
            let d = engine.decide(&req).await?;
            lat.push(s.elapsed());
            permits += usize::from(d[0].permit);
        }
    }
    let wall = begin.elapsed();
    lat.sort();
    println!(
        "| path | load | decisions/s | p50 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|"
    );
    println!(
        "| in-process `Engine::decide` | paced {} /s, {} s | {:.0} | {} | {} | {} |",
        args.rate,
        args.seconds,
        lat.len() as f64 / wall.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
    assert!(permits > 0 && permits < lat.len() * 2);

    // In-process ceiling: as fast as one task goes.
    let mut lat = Vec::new();
    let begin = Instant::now();
    let mut i = 0;
    while begin.elapsed() < Duration::from_secs(3) {
        let req = input(&load, i, 1);
        let s = Instant::now();
        engine.decide(&req).await?;
        lat.push(s.elapsed());
        i += 1;
    }
    let wall = begin.elapsed();
    lat.sort();
    println!(
        "| in-process `Engine::decide` | closed loop, 1 task | {:.0} | {} | {} | {} |",
        lat.len() as f64 / wall.as_secs_f64(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );

    // Over the bus.
    let settings = caretrail_bus::BusSettings {
        bus_url: match backend {
            Backend::Embedded => "inprocess".to_string(),
            Backend::Real => caretrail_runtime::testing::amqp_url(),
        }
        .into(),
        bus_prefix: stack.prefix.clone(),
        bus_quorum_queues: false,
    };
    let bus = caretrail_bus::connect(&settings).await?;
    let client = ConsentClient::new(bus, Duration::from_secs(10));
    let load = Arc::new(load);
    for batch in [1usize, 50] {
        for concurrency in [1usize, 8, 32] {
            let begin = Instant::now();
            let until = begin + Duration::from_secs(args.bus_seconds);
            let mut tasks = Vec::new();
            for c in 0..concurrency {
                let (client, load) = (client.clone(), load.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = c * 1_000_003;
                    while Instant::now() < until {
                        let req = input(&load, i, batch);
                        let s = Instant::now();
                        let out = client.decide(&req).await.unwrap();
                        assert_eq!(out.decisions.len(), batch);
                        lat.push(s.elapsed());
                        i += 1;
                    }
                    lat
                }));
            }
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await?);
            }
            let wall = begin.elapsed();
            lat.sort();
            println!(
                "| bus RPC, batch {batch} | closed loop, {concurrency} callers | {:.0} | {} | {} | {} |",
                (lat.len() * batch) as f64 / wall.as_secs_f64(),
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap())
            );
        }
    }
    stack.stop().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!("## Consent decisions with {} active grants\n", args.grants);
    println!(
        "Machine: {} cores; client and services share them. Latency per call (a batch call decides 50 records; decisions/s counts records).",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    run(Backend::Embedded, &args).await?;
    if args.real {
        run(Backend::Real, &args).await?;
    }
    Ok(())
}
