//! Anchoring: every ledger entry the object store owes (`record.anchored`,
//! `record.accessed`, `record.access_denied`, `record.erased`) is first a row of the
//! `anchors` table, committed with the state change that caused it. The anchorer signs
//! (custodial signatures through identity), appends in batches, and on commit records the
//! receipt and publishes the domain event through the outbox — all in one transaction, and
//! only once (the row's `pending → done` transition guards it). A ledger outage delays
//! entries; it never loses them: the ledger deduplicates by request id, so retries are safe.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_bus::{Event, outbox};
use caretrail_contracts::identity::{SignResult, ToSign};
use caretrail_contracts::ledger::{LedgerFailure, Receipt, SubmissionIn};
use caretrail_runtime::clients::{IdentityClient, LedgerClient};
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::entities::{anchor, record};
use crate::error::ObjectStoreError;

pub const KIND_ANCHORED: &str = "record.anchored";
pub const KIND_ACCESSED: &str = "record.accessed";
pub const KIND_DENIED: &str = "record.access_denied";
pub const KIND_ERASED: &str = "record.erased";

/// Most entries per ledger call.
const BATCH: u64 = 100;
/// Attempts before an entry the ledger keeps refusing is parked as `failed`.
const MAX_ATTEMPTS: i32 = 30;

/// An entry to anchor, with the event to publish once it is committed.
pub struct NewAnchor {
    pub tenant: String,
    pub record: String,
    pub kind: &'static str,
    pub request_id: String,
    pub signer: String,
    pub payload: Vec<u8>,
    /// Already signed (bring-your-own-key uploads).
    pub submission: Option<SubmissionIn>,
    /// The domain event's name and payload (without its ledger fields).
    pub event_name: &'static str,
    pub event: serde_json::Value,
    /// Leave it to the caller for this long before the background worker picks it up.
    pub hold: Duration,
}

/// Writes the anchor row inside the caller's transaction; returns its id.
pub async fn enqueue<C: ConnectionTrait>(conn: &C, a: NewAnchor) -> Result<i64, ObjectStoreError> {
    let now = Utc::now();
    let submission = match a.submission {
        Some(s) => {
            Some(serde_json::to_string(&s).map_err(|_| ObjectStoreError::Corrupt("submission"))?)
        }
        None => None,
    };
    let event = serde_json::json!({"name": a.event_name, "payload": a.event});
    let row = anchor::ActiveModel {
        tenant_id: Set(a.tenant),
        record_id: Set(a.record),
        kind: Set(a.kind.to_string()),
        request_id: Set(a.request_id),
        signer: Set(a.signer),
        payload: Set(B64.encode(&a.payload)),
        submission: Set(submission),
        status: Set("pending".into()),
        attempts: Set(0),
        next_attempt_at: Set(now + chrono::Duration::from_std(a.hold).unwrap_or_default()),
        last_error: Set(None),
        event: Set(event.to_string()),
        ledger_index: Set(None),
        receipt: Set(None),
        created_at: Set(now),
        anchored_at: Set(None),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(row.id)
}

/// What happened to one anchor.
#[derive(Debug)]
pub enum Outcome {
    Anchored(Box<Receipt>),
    /// Refused for good (e.g. a signature that does not verify).
    Refused(LedgerFailure),
    /// Not yet: it stays queued and is retried.
    Pending(LedgerFailure),
}

/// Ledger refusals that no retry can fix.
fn is_permanent(code: &str) -> bool {
    matches!(
        code,
        "bad_signature"
            | "key_revoked"
            | "invalid_entry"
            | "invalid_request"
            | "request_id_conflict"
            | "log_full"
            | "forbidden_kind"
            | "byok_signature_required"
    )
}

pub struct Anchorer {
    db: DatabaseConnection,
    identity: IdentityClient,
    ledger: LedgerClient,
    outbox: Arc<Notify>,
    wake: Notify,
}

impl Anchorer {
    pub fn new(
        db: DatabaseConnection,
        identity: IdentityClient,
        ledger: LedgerClient,
        outbox: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            identity,
            ledger,
            outbox,
            wake: Notify::new(),
        }
    }

    /// New rows are waiting.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Anchors the given rows now (an upload waiting for its receipt).
    pub async fn anchor_now(&self, ids: &[i64]) -> Result<Vec<Outcome>, ObjectStoreError> {
        let rows = anchor::Entity::find()
            .filter(anchor::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(anchor::Column::Id)
            .all(&self.db)
            .await?;
        let mut outcomes = self.process(rows).await?;
        let mut ordered = Vec::with_capacity(ids.len());
        for id in ids {
            ordered.push(
                outcomes
                    .iter()
                    .position(|(row_id, _)| row_id == id)
                    .map(|i| outcomes.swap_remove(i).1)
                    .unwrap_or_else(|| Outcome::Pending(LedgerFailure::unavailable("not queued"))),
            );
        }
        Ok(ordered)
    }

    /// The background loop: due rows, in batches, until cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            // A pass cut short by shutdown loses nothing: its rows stay pending and the
            // ledger deduplicates a resubmission.
            let pass = tokio::select! {
                _ = stop.cancelled() => return,
                pass = self.process_due() => pass,
            };
            let worked = match pass {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(error = %caretrail_platform::problem::ErrorChain(&error), "anchoring pass failed");
                    0
                }
            };
            if worked as u64 == BATCH {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn process_due(&self) -> Result<usize, ObjectStoreError> {
        let rows = anchor::Entity::find()
            .filter(anchor::Column::Status.eq("pending"))
            .filter(anchor::Column::NextAttemptAt.lte(Utc::now()))
            .order_by_asc(anchor::Column::Id)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        let n = rows.len();
        if n > 0 {
            self.process(rows).await?;
        }
        Ok(n)
    }

    async fn process(
        &self,
        rows: Vec<anchor::Model>,
    ) -> Result<Vec<(i64, Outcome)>, ObjectStoreError> {
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut ready: Vec<(anchor::Model, SubmissionIn)> = Vec::new();
        let mut unsigned = Vec::new();
        for row in rows {
            if row.status == "done" {
                let outcome = match row.receipt.as_deref().map(serde_json::from_str::<Receipt>) {
                    Some(Ok(r)) => Outcome::Anchored(Box::new(r)),
                    _ => Outcome::Pending(LedgerFailure::unavailable(
                        "anchored without a stored receipt",
                    )),
                };
                outcomes.push((row.id, outcome));
                continue;
            }
            if row.status != "pending" {
                outcomes.push((
                    row.id,
                    Outcome::Refused(LedgerFailure::new(
                        "failed",
                        row.last_error.clone().unwrap_or_default(),
                    )),
                ));
                continue;
            }
            match row
                .submission
                .as_deref()
                .map(serde_json::from_str::<SubmissionIn>)
            {
                Some(Ok(s)) => ready.push((row, s)),
                // One unreadable row is parked; it must not block the rows behind it.
                Some(Err(_)) => {
                    let failure =
                        LedgerFailure::new("invalid_entry", "the stored submission is unreadable");
                    let outcome = self.failed(&row, failure).await?;
                    outcomes.push((row.id, outcome));
                }
                None => unsigned.push(row),
            }
        }
        if !unsigned.is_empty() {
            let items = unsigned
                .iter()
                .map(|r| ToSign {
                    tenant: r.tenant_id.clone(),
                    kind: r.kind.clone(),
                    signer: r.signer.clone(),
                    request_id: r.request_id.clone(),
                    payload: r.payload.clone(),
                })
                .collect();
            match self.identity.sign(items).await {
                Ok(results) => {
                    for (row, result) in unsigned.into_iter().zip(results) {
                        match result {
                            SignResult::Signed(s) => {
                                let text = serde_json::to_string(&s)
                                    .map_err(|_| ObjectStoreError::Corrupt("submission"))?;
                                anchor::Entity::update_many()
                                    .col_expr(anchor::Column::Submission, Expr::value(text))
                                    .filter(anchor::Column::Id.eq(row.id))
                                    .exec(&self.db)
                                    .await?;
                                ready.push((row, s));
                            }
                            SignResult::Error { code, message } => {
                                let failure = LedgerFailure::new(&code, message);
                                let outcome = self.failed(&row, failure).await?;
                                outcomes.push((row.id, outcome));
                            }
                        }
                    }
                }
                Err(e) => {
                    for row in unsigned {
                        let outcome = self
                            .failed(&row, LedgerFailure::unavailable(format!("identity: {e}")))
                            .await?;
                        outcomes.push((row.id, outcome));
                    }
                }
            }
        }
        if ready.is_empty() {
            return Ok(outcomes);
        }
        let submissions = ready.iter().map(|(_, s)| s.clone()).collect();
        match self.ledger.append(submissions).await {
            Ok(results) => {
                for ((row, _), result) in ready.into_iter().zip(results) {
                    let outcome = match result {
                        Ok(receipt) => self.complete(&row, receipt).await?,
                        Err(failure) => self.failed(&row, failure).await?,
                    };
                    outcomes.push((row.id, outcome));
                }
            }
            Err(e) => {
                for (row, _) in ready {
                    let outcome = self
                        .failed(&row, LedgerFailure::unavailable(e.to_string()))
                        .await?;
                    outcomes.push((row.id, outcome));
                }
            }
        }
        Ok(outcomes)
    }

    /// Commits the receipt, the record's ledger position and the event, once.
    async fn complete(
        &self,
        row: &anchor::Model,
        receipt: Receipt,
    ) -> Result<Outcome, ObjectStoreError> {
        let receipt_json =
            serde_json::to_string(&receipt).map_err(|_| ObjectStoreError::Corrupt("receipt"))?;
        let txn = caretrail_db::begin_tenant(&self.db, &row.tenant_id).await?;
        let claimed = anchor::Entity::update_many()
            .col_expr(anchor::Column::Status, Expr::value("done"))
            .col_expr(
                anchor::Column::LedgerIndex,
                Expr::value(receipt.index as i64),
            )
            .col_expr(anchor::Column::Receipt, Expr::value(receipt_json))
            .col_expr(anchor::Column::AnchoredAt, Expr::value(Utc::now()))
            .col_expr(
                anchor::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .filter(anchor::Column::Id.eq(row.id))
            .filter(anchor::Column::Status.eq("pending"))
            .exec(&txn)
            .await?;
        if claimed.rows_affected == 1 {
            if row.kind == KIND_ANCHORED {
                record::Entity::update_many()
                    .col_expr(record::Column::Status, Expr::value("active"))
                    .col_expr(
                        record::Column::LedgerIndex,
                        Expr::value(receipt.index as i64),
                    )
                    .col_expr(
                        record::Column::LeafHash,
                        Expr::value(receipt.leaf_hash.clone()),
                    )
                    .filter(record::Column::Id.eq(row.record_id.as_str()))
                    .filter(record::Column::TenantId.eq(row.tenant_id.as_str()))
                    .filter(record::Column::Status.eq("anchoring"))
                    .exec(&txn)
                    .await?;
            }
            let stored: serde_json::Value =
                serde_json::from_str(&row.event).map_err(|_| ObjectStoreError::Corrupt("event"))?;
            let name = stored["name"]
                .as_str()
                .unwrap_or(row.kind.as_str())
                .to_string();
            let mut payload = stored["payload"].clone();
            if let Some(map) = payload.as_object_mut() {
                map.insert("ledger_index".into(), receipt.index.into());
                map.insert("leaf_hash".into(), receipt.leaf_hash.clone().into());
            }
            let event = Event::new(&row.tenant_id, crate::SERVICE, name, 1, &payload)?;
            outbox::enqueue(&txn, &event).await?;
        }
        txn.commit().await?;
        if claimed.rows_affected == 1 {
            self.outbox.notify_one();
        }
        Ok(Outcome::Anchored(Box::new(receipt)))
    }

    async fn failed(
        &self,
        row: &anchor::Model,
        failure: LedgerFailure,
    ) -> Result<Outcome, ObjectStoreError> {
        let attempts = row.attempts + 1;
        let permanent = is_permanent(&failure.code) || attempts >= MAX_ATTEMPTS;
        let backoff = Duration::from_secs(1u64 << attempts.clamp(0, 6) as u32);
        let mut update = anchor::ActiveModel {
            id: Set(row.id),
            attempts: Set(attempts),
            last_error: Set(Some(failure.to_string())),
            next_attempt_at: Set(
                Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default()
            ),
            ..Default::default()
        };
        if permanent {
            update.status = Set("failed".into());
            tracing::error!(
                anchor = row.id,
                kind = %row.kind,
                record = %row.record_id,
                code = %failure.code,
                "the ledger refused an entry for good; it is parked as failed"
            );
        }
        update.update(&self.db).await?;
        if permanent && row.kind == KIND_ANCHORED {
            // A record whose manifest never makes it onto the ledger is withdrawn, and its
            // data key destroyed so the stored object is noise.
            let txn = caretrail_db::begin_tenant(&self.db, &row.tenant_id).await?;
            record::Entity::update_many()
                .col_expr(record::Column::Status, Expr::value("rejected"))
                .col_expr(
                    record::Column::WrappedKey,
                    Expr::value(Option::<String>::None),
                )
                .filter(record::Column::Id.eq(row.record_id.as_str()))
                .filter(record::Column::TenantId.eq(row.tenant_id.as_str()))
                .filter(record::Column::Status.eq("anchoring"))
                .exec(&txn)
                .await?;
            txn.commit().await?;
        }
        Ok(if permanent {
            Outcome::Refused(failure)
        } else {
            Outcome::Pending(failure)
        })
    }
}
