//! Anomaly flags, raised while indexing (in the indexing transaction, so exactly once per
//! event): a break-glass use, an access attempt that no grant or rule permitted, and a
//! user's access volume far above their usual. Each flag is a row, an
//! `audit.anomaly.flagged` event (outbox) and a Prometheus counter.

use caretrail_bus::{Event, outbox};
use chrono::Duration;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::entities::{anomaly, audit_event};

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("bus: {0}")]
    Bus(#[from] caretrail_bus::BusError),
}

/// When a user's accesses count as unusual.
#[derive(Debug, Clone, Copy)]
pub struct VolumeRule {
    /// Never flag fewer accesses than this in an hour.
    pub min_per_hour: u64,
    /// Flag when the last hour exceeds this multiple of the user's hourly average over the
    /// previous week.
    pub factor: f64,
}

/// Flags what `row` warrants; returns the kinds flagged (for the metric, after commit).
pub async fn check(
    txn: &DatabaseTransaction,
    row: &audit_event::Model,
    rule: VolumeRule,
) -> Result<Vec<&'static str>, FlagError> {
    let mut flagged = Vec::new();
    match row.kind.as_str() {
        "break_glass.declared" => {
            let key = row.break_glass_id.clone().unwrap_or_else(|| row.id.clone());
            if flag(
                txn,
                row,
                "break_glass_used",
                &key,
                json!({"break_glass": row.break_glass_id}),
            )
            .await?
            {
                flagged.push("break_glass_used");
            }
        }
        "record.access_denied" => {
            let detail = json!({"record": row.record_id, "purpose": row.purpose});
            let new = flag(txn, row, "access_refused", &row.id, detail).await?;
            if new {
                flagged.push("access_refused");
            }
        }
        "record.accessed" => {
            let Some(subject) = &row.actor_subject else {
                return Ok(flagged);
            };
            let now = row.occurred_at;
            let accesses = |from: chrono::DateTime<chrono::Utc>,
                            to: chrono::DateTime<chrono::Utc>| {
                audit_event::Entity::find()
                    .filter(audit_event::Column::TenantId.eq(row.tenant_id.as_str()))
                    .filter(audit_event::Column::ActorSubject.eq(subject.as_str()))
                    .filter(audit_event::Column::Kind.eq("record.accessed"))
                    // Content reads: metadata views (lists, receipts) are on the trail too,
                    // but a list page of fifty is not fifty reads of records.
                    .filter(audit_event::Column::Action.eq("read_content"))
                    .filter(audit_event::Column::OccurredAt.gt(from))
                    .filter(audit_event::Column::OccurredAt.lte(to))
                    .count(txn)
            };
            let hour_ago = now - Duration::hours(1);
            let last_hour = accesses(hour_ago, now).await?;
            let week = accesses(hour_ago - Duration::days(7), hour_ago).await?;
            let usual = week as f64 / (7.0 * 24.0);
            let threshold = (rule.factor * usual).max(rule.min_per_hour as f64);
            if last_hour as f64 > threshold {
                // One flag per user and hour.
                let key = format!("{subject}:{}", now.timestamp() / 3600);
                let detail = json!({"last_hour": last_hour, "hourly_average_last_week": usual, "threshold": threshold});
                if flag(txn, row, "access_volume", &key, detail).await? {
                    flagged.push("access_volume");
                }
            }
        }
        _ => {}
    }
    Ok(flagged)
}

/// Inserts the flag unless it exists; publishes its event. True when it is new.
async fn flag(
    txn: &DatabaseTransaction,
    row: &audit_event::Model,
    kind: &'static str,
    key: &str,
    detail: serde_json::Value,
) -> Result<bool, FlagError> {
    raise(
        txn,
        Flag {
            tenant: row.tenant_id.clone(),
            kind,
            key: key.to_string(),
            event_id: row.id.clone(),
            subject: row.actor_subject.clone(),
            institution: row.actor_institution.clone(),
            patient: row.patient_id.clone(),
            record: row.record_id.clone(),
            ledger_index: row.ledger_index,
            detail,
        },
    )
    .await
}

/// One anomaly to flag (once per tenant, kind and key).
#[derive(Debug, Clone)]
pub struct Flag {
    pub tenant: String,
    pub kind: &'static str,
    pub key: String,
    /// What raised it: an audit event id, or e.g. `checkpoint:<size>` for the witness.
    pub event_id: String,
    pub subject: Option<String>,
    pub institution: Option<String>,
    pub patient: Option<String>,
    pub record: Option<String>,
    pub ledger_index: Option<i64>,
    pub detail: serde_json::Value,
}

/// Inserts the flag unless it exists and publishes its `audit.anomaly.flagged` event through
/// the outbox, in `txn`. True when it is new.
pub async fn raise(txn: &DatabaseTransaction, flag: Flag) -> Result<bool, FlagError> {
    let row = anomaly::ActiveModel {
        id: sea_orm::ActiveValue::Set(flag_id(&flag.tenant, flag.kind, &flag.key)),
        tenant_id: sea_orm::ActiveValue::Set(flag.tenant.clone()),
        kind: sea_orm::ActiveValue::Set(flag.kind.into()),
        dedupe_key: sea_orm::ActiveValue::Set(flag.key.chars().take(200).collect()),
        subject: sea_orm::ActiveValue::Set(flag.subject.clone()),
        institution: sea_orm::ActiveValue::Set(flag.institution.clone()),
        patient_id: sea_orm::ActiveValue::Set(flag.patient.clone()),
        record_id: sea_orm::ActiveValue::Set(flag.record.clone()),
        event_id: sea_orm::ActiveValue::Set(flag.event_id.chars().take(64).collect()),
        detail: sea_orm::ActiveValue::Set(flag.detail.to_string()),
        flagged_at: sea_orm::ActiveValue::Set(chrono::Utc::now()),
    };
    let inserted = anomaly::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                anomaly::Column::TenantId,
                anomaly::Column::Kind,
                anomaly::Column::DedupeKey,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let event = Event::new(
        &flag.tenant,
        crate::SERVICE,
        "anomaly.flagged",
        1,
        &json!({
            "kind": flag.kind,
            "subject": flag.subject,
            "institution": flag.institution,
            "patient": flag.patient,
            "record": flag.record,
            "event": flag.event_id,
            "ledger_index": flag.ledger_index,
            "detail": flag.detail,
        }),
    )?;
    outbox::enqueue(txn, &event).await?;
    tracing::warn!(tenant = %flag.tenant, kind = flag.kind, subject = ?flag.subject, "audit anomaly flagged");
    Ok(true)
}

/// A stable id per (tenant, kind, dedupe key) — the flag's identity — so ids cannot collide
/// across tenants or between flags of the same event.
fn flag_id(tenant: &str, kind: &str, key: &str) -> String {
    let material = format!("{tenant}\n{kind}\n{key}");
    caretrail_crypto::hash(caretrail_crypto::Suite::Intl, material.as_bytes()).to_hex()
}
