//! Transactional outbox: a service writes its state change and the event in one database
//! transaction ([`enqueue`]); a [`Relay`] publishes committed events with publisher confirms
//! and marks them sent. A crash between publish and mark republishes the event, which the
//! consumers' inbox absorbs, so every committed event is processed exactly once.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError, Event};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        #[sea_orm(unique)]
        pub message_id: String,
        pub tenant_id: String,
        pub routing_key: String,
        pub event_type: String,
        pub payload: String,
        pub headers: String,
        pub occurred_at: DateTimeUtc,
        pub published_at: Option<DateTimeUtc>,
        pub attempts: i32,
        pub last_error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stores `event` in the outbox as part of the caller's transaction.
pub async fn enqueue<C: ConnectionTrait>(conn: &C, event: &Event) -> Result<(), BusError> {
    let envelope = serde_json::to_string(event).map_err(BusError::Serialization)?;
    let headers = serde_json::to_string(&event.trace).map_err(BusError::Serialization)?;
    let row = entity::ActiveModel {
        message_id: Set(event.id.to_string()),
        tenant_id: Set(event.tenant.clone()),
        routing_key: Set(event.routing_key()),
        event_type: Set(event.event_type()),
        payload: Set(envelope),
        headers: Set(headers),
        occurred_at: Set(event.occurred_at),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        ..Default::default()
    };
    entity::Entity::insert(row)
        .exec_without_returning(conn)
        .await
        .map_err(|e| BusError::Unavailable(format!("outbox insert failed: {e}")))?;
    Ok(())
}

/// Number of events committed but not yet published (for metrics and tests).
pub async fn pending_count(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::PaginatorTrait;
    entity::Entity::find()
        .filter(entity::Column::PublishedAt.is_null())
        .count(db)
        .await
}

/// Publishes the outbox. Wake it with [`Relay::notifier`] after committing; it also polls.
pub struct Relay {
    db: DatabaseConnection,
    bus: Arc<dyn Bus>,
    notify: Arc<Notify>,
    poll_interval: Duration,
    batch: u64,
}

impl Relay {
    pub fn new(db: DatabaseConnection, bus: Arc<dyn Bus>) -> Self {
        Self {
            db,
            bus,
            notify: Arc::new(Notify::new()),
            poll_interval: Duration::from_millis(500),
            batch: 100,
        }
    }

    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Call `notify_one()` on this after committing a transaction that enqueued events.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Runs until cancelled; then makes one last attempt to flush.
    pub fn spawn(self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match self.publish_batch().await {
                    Ok(n) if n as u64 == self.batch => {
                        failures = 0;
                        continue; // more waiting
                    }
                    Ok(_) => failures = 0,
                    Err(error) => {
                        if failures == 0 {
                            tracing::warn!(%error, "outbox relay cannot publish; will retry");
                        }
                        failures = failures.saturating_add(1);
                    }
                }
                let wait = if failures == 0 {
                    self.poll_interval
                } else {
                    Duration::from_millis(100u64.saturating_mul(1 << Ord::min(failures, 6)))
                };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if let Err(error) = self.publish_batch().await {
                tracing::warn!(%error, "outbox not fully flushed at shutdown; the next start publishes the rest");
            }
        })
    }

    /// Publishes up to one batch, in commit order. Returns how many were published.
    pub async fn publish_batch(&self) -> Result<usize, BusError> {
        let db_err = |e: sea_orm::DbErr| BusError::Unavailable(format!("outbox: {e}"));
        let txn = caretrail_db::begin_write(&self.db)
            .await
            .map_err(|e| BusError::Unavailable(format!("outbox: {e}")))?;
        let mut query = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .order_by_asc(entity::Column::Seq)
            .limit(self.batch);
        if self.db.get_database_backend() == DbBackend::Postgres {
            // Several replicas may relay the same outbox; each row goes to one of them.
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = query.all(&txn).await.map_err(db_err)?;
        let mut published = 0;
        let mut failure = None;
        for row in rows {
            let event: Event = match serde_json::from_str(&row.payload) {
                Ok(e) => e,
                Err(e) => {
                    // Cannot happen for rows we wrote; park it rather than block the queue.
                    tracing::error!(seq = row.seq, error = %e, "undecodable outbox row skipped");
                    mark(&txn, row.seq, Some(format!("undecodable: {e}")), true)
                        .await
                        .map_err(db_err)?;
                    continue;
                }
            };
            match self.bus.publish(&event).await {
                Ok(()) => {
                    mark(&txn, row.seq, None, true).await.map_err(db_err)?;
                    published += 1;
                }
                Err(e) => {
                    mark(&txn, row.seq, Some(e.to_string()), false)
                        .await
                        .map_err(db_err)?;
                    failure = Some(e);
                    break; // keep order: do not skip ahead of an unpublished event
                }
            }
        }
        txn.commit().await.map_err(db_err)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(published),
        }
    }
}

async fn mark<C: ConnectionTrait>(
    conn: &C,
    seq: i64,
    error: Option<String>,
    published: bool,
) -> Result<(), sea_orm::DbErr> {
    let mut update = entity::Entity::update_many()
        .col_expr(
            entity::Column::Attempts,
            Expr::col(entity::Column::Attempts).add(1),
        )
        .col_expr(entity::Column::LastError, Expr::value(error))
        .filter(entity::Column::Seq.eq(seq));
    if published {
        update = update.col_expr(entity::Column::PublishedAt, Expr::value(Some(Utc::now())));
    }
    update.exec(conn).await.map(|_| ())
}
