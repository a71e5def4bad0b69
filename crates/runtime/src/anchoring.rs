//! The anchoring queue a service keeps for the ledger entries it owes. Each entry is first a
//! row of the service's `anchors` table, committed with the state change that caused it. The
//! [`Anchorer`] signs them (custodial signatures through identity), appends them in batches,
//! and on commit stores the receipt, lets the service update its own rows ([`AnchorHooks`])
//! and publishes the domain event through the outbox — all in one transaction, and only once
//! (the row's `pending → done` transition guards it). A ledger outage delays entries; it
//! never loses them: the ledger deduplicates by request id, so retries are safe.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_bus::{BusError, Event, outbox};
use caretrail_contracts::identity::{SignResult, ToSign};
use caretrail_contracts::ledger::{LedgerFailure, Receipt, SubmissionIn};
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clients::{IdentityClient, LedgerClient};

/// The queue's rows (table `anchors`, created by `caretrail_migrations::anchors`).
pub mod anchor {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "anchors")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        /// What the entry is about: a record, a grant, a policy version…
        pub subject_id: String,
        pub kind: String,
        /// Ledger request id, unique per signer: makes retries idempotent.
        pub request_id: String,
        /// Institution id or `registrar` (platform attestation).
        pub signer: String,
        /// Base64 canonical payload.
        pub payload: String,
        /// JSON `SubmissionIn` once signed.
        pub submission: Option<String>,
        /// `pending`, `done`, `failed`.
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub last_error: Option<String>,
        /// JSON of the domain event published once anchored (ledger fields added then).
        pub event: String,
        pub ledger_index: Option<i64>,
        /// JSON ledger receipt.
        pub receipt: Option<String>,
        pub created_at: DateTimeUtc,
        pub anchored_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("database failure")]
    Database(#[from] DbErr),
    #[error("database failure")]
    Db(#[from] caretrail_db::DbError),
    #[error("message bus failure")]
    Bus(#[from] BusError),
    #[error("corrupt anchor row: {0}")]
    Corrupt(&'static str),
}

/// Most entries per ledger call.
const BATCH: u64 = 100;
/// Attempts before an entry the ledger keeps refusing is parked as `failed`.
const MAX_ATTEMPTS: i32 = 30;

/// An entry to anchor, with the event to publish once it is committed.
pub struct NewAnchor {
    pub tenant: String,
    pub subject: String,
    pub kind: &'static str,
    pub request_id: String,
    pub signer: String,
    pub payload: Vec<u8>,
    /// Already signed (bring-your-own-key submissions).
    pub submission: Option<SubmissionIn>,
    /// The domain event's name and payload (without its ledger fields).
    pub event_name: &'static str,
    pub event: serde_json::Value,
    /// Leave it to the caller for this long before the background worker picks it up.
    pub hold: Duration,
}

/// Writes the anchor row inside the caller's transaction; returns its id.
pub async fn enqueue<C: ConnectionTrait>(conn: &C, a: NewAnchor) -> Result<i64, AnchorError> {
    let now = Utc::now();
    let submission = match a.submission {
        Some(s) => Some(serde_json::to_string(&s).map_err(|_| AnchorError::Corrupt("submission"))?),
        None => None,
    };
    let event = serde_json::json!({"name": a.event_name, "payload": a.event});
    let row = anchor::ActiveModel {
        tenant_id: Set(a.tenant),
        subject_id: Set(a.subject),
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

/// The receipt of the newest anchored entry of `kind` about `subject`, if any.
pub async fn receipt_of<C: ConnectionTrait>(
    conn: &C,
    tenant: &str,
    subject: &str,
    kind: &str,
) -> Result<Option<Receipt>, AnchorError> {
    let row = anchor::Entity::find()
        .filter(anchor::Column::TenantId.eq(tenant))
        .filter(anchor::Column::SubjectId.eq(subject))
        .filter(anchor::Column::Kind.eq(kind))
        .filter(anchor::Column::Status.eq("done"))
        .order_by_desc(anchor::Column::Id)
        .one(conn)
        .await?;
    match row.and_then(|r| r.receipt) {
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| AnchorError::Corrupt("receipt")),
        None => Ok(None),
    }
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

/// What the owning service does when one of its entries is settled.
#[async_trait]
pub trait AnchorHooks: Send + Sync + 'static {
    /// Inside the transaction that marks the row anchored (runs once per row); the
    /// transaction is already scoped to the row's tenant.
    async fn anchored(
        &self,
        txn: &DatabaseTransaction,
        row: &anchor::Model,
        receipt: &Receipt,
    ) -> Result<(), AnchorError>;

    /// After the ledger refused the row for good.
    async fn refused(
        &self,
        db: &DatabaseConnection,
        row: &anchor::Model,
    ) -> Result<(), AnchorError>;
}

pub struct Anchorer {
    service: &'static str,
    db: DatabaseConnection,
    identity: IdentityClient,
    ledger: LedgerClient,
    outbox: Arc<Notify>,
    hooks: Arc<dyn AnchorHooks>,
    wake: Notify,
}

impl Anchorer {
    pub fn new(
        service: &'static str,
        db: DatabaseConnection,
        identity: IdentityClient,
        ledger: LedgerClient,
        outbox: Arc<Notify>,
        hooks: Arc<dyn AnchorHooks>,
    ) -> Self {
        Self {
            service,
            db,
            identity,
            ledger,
            outbox,
            hooks,
            wake: Notify::new(),
        }
    }

    /// New rows are waiting.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Anchors the given rows now (a caller waiting for its receipt).
    pub async fn anchor_now(&self, ids: &[i64]) -> Result<Vec<Outcome>, AnchorError> {
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

    /// Anchors one row now, waiting at most `wait`; `None` when it is still pending then
    /// (the background worker carries on).
    pub async fn anchor_within(&self, id: i64, wait: Duration) -> Option<Outcome> {
        match tokio::time::timeout(wait, self.anchor_now(&[id])).await {
            Ok(Ok(mut outcomes)) => outcomes.pop(),
            Ok(Err(error)) => {
                tracing::warn!(error = %caretrail_platform::problem::ErrorChain(&error), anchor = id, "anchoring continues in the background");
                None
            }
            Err(_) => None,
        }
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

    async fn process_due(&self) -> Result<usize, AnchorError> {
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

    async fn process(&self, rows: Vec<anchor::Model>) -> Result<Vec<(i64, Outcome)>, AnchorError> {
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
                                    .map_err(|_| AnchorError::Corrupt("submission"))?;
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

    /// Commits the receipt, the service's own updates and the event, once.
    async fn complete(
        &self,
        row: &anchor::Model,
        receipt: Receipt,
    ) -> Result<Outcome, AnchorError> {
        let receipt_json =
            serde_json::to_string(&receipt).map_err(|_| AnchorError::Corrupt("receipt"))?;
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
            self.hooks.anchored(&txn, row, &receipt).await?;
            let stored: serde_json::Value =
                serde_json::from_str(&row.event).map_err(|_| AnchorError::Corrupt("event"))?;
            let name = stored["name"]
                .as_str()
                .unwrap_or(row.kind.as_str())
                .to_string();
            let mut payload = stored["payload"].clone();
            if let Some(map) = payload.as_object_mut() {
                map.insert("ledger_index".into(), receipt.index.into());
                map.insert("leaf_hash".into(), receipt.leaf_hash.clone().into());
            }
            let mut event = Event::new(&row.tenant_id, self.service, name, 1, &payload)?;
            // When it happened (the anchor was queued with the action, in its transaction),
            // not when the ledger confirmed it: anchoring is asynchronous, so a read can reach
            // the ledger after a revocation that followed it.
            event.occurred_at = row.created_at;
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
    ) -> Result<Outcome, AnchorError> {
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
                subject = %row.subject_id,
                code = %failure.code,
                "the ledger refused an entry for good; it is parked as failed"
            );
        }
        update.update(&self.db).await?;
        if permanent {
            self.hooks.refused(&self.db, row).await?;
        }
        Ok(if permanent {
            Outcome::Refused(failure)
        } else {
            Outcome::Pending(failure)
        })
    }
}
