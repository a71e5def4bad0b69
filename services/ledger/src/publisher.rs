//! `ledger.appended` events for the audit service, published by the leader by tailing each
//! tenant's log from a cursor kept in the service database.
//!
//! The log itself is the outbox: an entry is committed before it is published, and the cursor
//! advances only after the broker confirmed the events, so nothing committed is ever missed
//! (a crash or a leader change re-publishes from the cursor). Event ids are derived from
//! (tenant, index), so consumers deduplicate re-published events with their inbox.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use caretrail_bus::{Bus, Event};
use caretrail_db::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::node::LedgerNode;

/// Payload of `ledger.appended` (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerAppendedV1 {
    pub tenant: String,
    pub index: u64,
    pub kind: String,
    pub submitter: String,
    pub request_id: String,
    pub key_id: String,
    pub timestamp_ms: u64,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// Base64 canonical payload.
    pub payload: String,
    /// The payload parsed, when it is JSON.
    pub payload_json: Option<serde_json::Value>,
}

/// Events published per tenant per round.
const CHUNK: u64 = 500;

fn event_id(tenant: &str, index: u64) -> uuid::Uuid {
    let digest = caretrail_crypto::hash(
        caretrail_crypto::Suite::Intl,
        format!("caretrail/ledger.appended/v1\n{tenant}\n{index}").as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    // Shape it as an RFC 9562 version-8 (custom) UUID.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

async fn cursor(
    db: &DatabaseConnection,
    tenant: &str,
) -> Result<u64, caretrail_db::sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT next_index FROM ledger_publish_cursor WHERE tenant = $1",
        _ => "SELECT next_index FROM ledger_publish_cursor WHERE tenant = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [tenant.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => u64::try_from(r.try_get::<i64>("", "next_index")?).unwrap_or(0),
        None => 0,
    })
}

async fn advance(
    db: &DatabaseConnection,
    tenant: &str,
    next: u64,
) -> Result<(), caretrail_db::sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO ledger_publish_cursor (tenant, next_index) VALUES ($1, $2) \
             ON CONFLICT (tenant) DO UPDATE SET next_index = GREATEST(ledger_publish_cursor.next_index, EXCLUDED.next_index)"
        }
        _ => {
            "INSERT INTO ledger_publish_cursor (tenant, next_index) VALUES (?, ?) \
             ON CONFLICT (tenant) DO UPDATE SET next_index = MAX(ledger_publish_cursor.next_index, excluded.next_index)"
        }
    };
    let next = i64::try_from(next).unwrap_or(i64::MAX);
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [tenant.into(), Value::BigInt(Some(next))],
    ))
    .await?;
    Ok(())
}

/// One round: publish what each tenant has beyond its cursor (in chunks). Returns whether
/// there may be more.
async fn round(node: &LedgerNode, db: &DatabaseConnection, bus: &dyn Bus) -> anyhow::Result<bool> {
    let view = node.view.clone();
    let tenants = tokio::task::spawn_blocking(move || view.tenants()).await??;
    let mut more = false;
    for t in tenants {
        let from = cursor(db, &t.tenant).await?;
        if from >= t.size {
            continue;
        }
        let to = t.size.min(from + CHUNK);
        more |= to < t.size;
        let view = node.view.clone();
        let tenant = t.tenant.clone();
        let events = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Event>> {
            let tree = view.tree(&tenant)?;
            let mut out = Vec::new();
            for i in from..to {
                let e = tree.entry(i)?;
                let payload = LedgerAppendedV1 {
                    tenant: e.tenant.clone(),
                    index: e.index,
                    kind: e.kind.clone(),
                    submitter: e.submitter.clone(),
                    request_id: e.request_id.clone(),
                    key_id: e.key_id.clone(),
                    timestamp_ms: e.timestamp_ms,
                    leaf_hash: tree.leaf_hash(i)?.to_hex(),
                    payload: base64::engine::general_purpose::STANDARD.encode(&e.payload),
                    payload_json: serde_json::from_slice(&e.payload).ok(),
                };
                let mut event =
                    Event::new(&e.tenant, crate::SERVICE, "ledger.appended", 1, &payload)?;
                event.id = event_id(&e.tenant, i);
                out.push(event);
            }
            Ok(out)
        })
        .await??;
        for event in &events {
            bus.publish(event).await?;
        }
        advance(db, &t.tenant, to).await?;
    }
    Ok(more)
}

/// Runs while this node leads; idles otherwise.
pub fn spawn(
    node: Arc<LedgerNode>,
    db: DatabaseConnection,
    bus: Arc<dyn Bus>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let mut pause = Duration::from_millis(200);
            if node.is_leader() {
                match round(&node, &db, bus.as_ref()).await {
                    Ok(true) => pause = Duration::ZERO,
                    Ok(false) => failures = 0,
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 || failures.is_multiple_of(50) {
                            tracing::warn!(%error, failures, "publishing ledger.appended failed; will retry");
                        }
                        pause = Duration::from_secs(1);
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn event_ids_are_stable_and_distinct() {
        assert_eq!(event_id("ten_a", 1), event_id("ten_a", 1));
        assert_ne!(event_id("ten_a", 1), event_id("ten_a", 2));
        assert_ne!(event_id("ten_a", 1), event_id("ten_b", 1));
        assert_eq!(event_id("ten_a", 1).get_version_num(), 8);
    }
}
