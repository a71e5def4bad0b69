//! The decision engine: one [`TenantIndex`] per tenant, loaded from the database on first
//! use and kept current by events. A change is applied to this replica's index before the
//! request that made it is answered, and published (outbox → `<tenant>.consent.index.changed`)
//! to every other replica, which re-reads the changed row; a periodic full reload repairs
//! anything a replica missed while disconnected.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use caretrail_bus::{Bus, ConsumerHandle, Event, HandlerError, Subscription, handler_fn, outbox};
use caretrail_contracts::consent::{DecideIn, DecidedBy, Decision};
use caretrail_contracts::identity::Level;
use caretrail_runtime::clients::IdentityClient;
use chrono::{NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::entities::{break_glass, grant, policy};
use crate::error::ConsentError;
use crate::index::{BreakGlassEntry, GrantEntry, TenantIndex};
use crate::policy::Policy;

/// Name of the event that tells every replica to re-read a row.
pub const INDEX_CHANGED: &str = "index.changed";
/// How often every loaded tenant is reloaded in full.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// Least time between two institution refreshes of one tenant.
const INSTITUTIONS_REFRESH: Duration = Duration::from_secs(5);

/// Payload of [`INDEX_CHANGED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexChanged {
    /// `grant`, `policy` or `break_glass`.
    pub kind: String,
    pub id: String,
}

impl IndexChanged {
    pub const GRANT: &'static str = "grant";
    pub const POLICY: &'static str = "policy";
    pub const BREAK_GLASS: &'static str = "break_glass";

    fn new(kind: &str, id: &str) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
        }
    }

    pub fn grant(id: &str) -> Self {
        Self::new(Self::GRANT, id)
    }

    pub fn policy(version: i32) -> Self {
        Self::new(Self::POLICY, &version.to_string())
    }

    pub fn break_glass(id: &str) -> Self {
        Self::new(Self::BREAK_GLASS, id)
    }
}

/// Queues the change event in the transaction that makes the change.
pub async fn publish_change<C: ConnectionTrait>(
    conn: &C,
    tenant: &str,
    change: &IndexChanged,
) -> Result<(), caretrail_bus::BusError> {
    let event = Event::new(tenant, crate::SERVICE, INDEX_CHANGED, 1, change)?;
    outbox::enqueue(conn, &event).await?;
    Ok(())
}

struct Slot {
    /// Serialises loading and applying changes, so a change read after a load's snapshot is
    /// never overwritten by it.
    gate: tokio::sync::Mutex<()>,
    index: RwLock<Option<TenantIndex>>,
    institutions_loaded: RwLock<Instant>,
}

pub struct Engine {
    db: DatabaseConnection,
    identity: IdentityClient,
    tenants: RwLock<HashMap<String, Arc<Slot>>>,
}

fn millis(t: chrono::DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn date(s: &Option<String>) -> Option<NaiveDate> {
    s.as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

/// The index entry of an active grant row.
pub fn grant_entry(row: &grant::Model) -> Result<GrantEntry, ConsentError> {
    let records: Vec<String> = serde_json::from_str(&row.record_ids)
        .map_err(|_| ConsentError::Corrupt("grant records"))?;
    let categories: Vec<caretrail_contracts::records::Category> =
        serde_json::from_str(&row.categories)
            .map_err(|_| ConsentError::Corrupt("grant categories"))?;
    Ok(GrantEntry {
        id: row.id.as_str().into(),
        patient: row.patient_id.as_str().into(),
        grantor: row.grantor_institution.as_str().into(),
        recipient_institution: row.recipient_institution.as_str().into(),
        recipient_user: row.recipient_user.as_deref().map(Into::into),
        purpose: row
            .purpose
            .parse()
            .map_err(|_| ConsentError::Corrupt("grant purpose"))?,
        records: records.into_iter().map(String::into_boxed_str).collect(),
        categories: categories.into(),
        data_from: date(&row.data_from),
        data_until: date(&row.data_until),
        valid_from: millis(row.valid_from),
        valid_until: millis(row.valid_until),
        max_accesses: row.max_accesses.map(|m| Ord::max(m, 0) as u32),
        accesses_used: Ord::max(row.accesses_used, 0) as u32,
    })
}

impl Engine {
    pub fn new(db: DatabaseConnection, identity: IdentityClient) -> Self {
        Self {
            db,
            identity,
            tenants: RwLock::default(),
        }
    }

    fn slot(&self, tenant: &str) -> Arc<Slot> {
        if let Ok(map) = self.tenants.read()
            && let Some(slot) = map.get(tenant)
        {
            return slot.clone();
        }
        let mut map = match self.tenants.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    gate: tokio::sync::Mutex::new(()),
                    index: RwLock::new(None),
                    institutions_loaded: RwLock::new(Instant::now()),
                })
            })
            .clone()
    }

    /// The tenant's current policy and its version (the default policy is version 0).
    pub async fn current_policy<C: ConnectionTrait>(
        conn: &C,
        tenant: &str,
    ) -> Result<(Policy, i32), ConsentError> {
        let row = policy::Entity::find()
            .filter(policy::Column::TenantId.eq(tenant))
            .order_by_desc(policy::Column::Version)
            .one(conn)
            .await?;
        match row {
            Some(row) => {
                let doc = serde_json::from_str(&row.document)
                    .map_err(|_| ConsentError::Corrupt("policy document"))?;
                Ok((doc, row.version))
            }
            None => Ok((Policy::default_policy(), 0)),
        }
    }

    async fn institutions(&self, tenant: &str) -> Result<HashMap<Box<str>, Level>, ConsentError> {
        let list = self
            .identity
            .institutions(tenant)
            .await
            .map_err(|e| ConsentError::Dependency("the identity service", e))?;
        Ok(list
            .into_iter()
            .map(|i| (i.institution.as_str().into(), i.level))
            .collect())
    }

    /// Reads the tenant's whole index from the database.
    async fn load(&self, tenant: &str) -> Result<TenantIndex, ConsentError> {
        let institutions = self.institutions(tenant).await?;
        let now = Utc::now();
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let (policy, version) = Self::current_policy(&txn, tenant).await?;
        let grants = grant::Entity::find()
            .filter(grant::Column::TenantId.eq(tenant))
            .filter(grant::Column::Status.eq("active"))
            .filter(grant::Column::ValidUntil.gt(now))
            .all(&txn)
            .await?;
        let declarations = break_glass::Entity::find()
            .filter(break_glass::Column::TenantId.eq(tenant))
            .filter(break_glass::Column::ExpiresAt.gt(now))
            .all(&txn)
            .await?;
        txn.commit().await?;
        let mut index = TenantIndex::new(Arc::new(policy), version, institutions);
        for row in &grants {
            index.put_grant(grant_entry(row)?);
        }
        for row in declarations {
            index.put_break_glass(&row.patient_id, break_glass_entry(&row));
        }
        Ok(index)
    }

    /// The tenant's slot, loaded.
    async fn loaded(&self, tenant: &str) -> Result<Arc<Slot>, ConsentError> {
        let slot = self.slot(tenant);
        if slot.index.read().map(|i| i.is_some()).unwrap_or(false) {
            return Ok(slot);
        }
        {
            let _gate = slot.gate.lock().await;
            if !slot.index.read().map(|i| i.is_some()).unwrap_or(false) {
                let index = self.load(tenant).await?;
                if let Ok(mut guard) = slot.index.write() {
                    *guard = Some(index);
                }
                if let Ok(mut at) = slot.institutions_loaded.write() {
                    *at = Instant::now();
                }
            }
        }
        Ok(slot)
    }

    /// Applies a change to one row to the index of this replica (if it holds the tenant).
    pub async fn apply(&self, tenant: &str, change: &IndexChanged) -> Result<(), ConsentError> {
        let slot = self.slot(tenant);
        let _gate = slot.gate.lock().await;
        if !slot.index.read().map(|i| i.is_some()).unwrap_or(false) {
            // Not loaded here: the first decision will read the row as it is now.
            return Ok(());
        }
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let now = Utc::now();
        let update: Box<dyn FnOnce(&mut TenantIndex) + Send> = match change.kind.as_str() {
            IndexChanged::GRANT => {
                let row = grant::Entity::find_by_id(change.id.clone())
                    .filter(grant::Column::TenantId.eq(tenant))
                    .one(&txn)
                    .await?;
                let id = change.id.clone();
                match row {
                    Some(row) if row.status == "active" && row.valid_until > now => {
                        let entry = grant_entry(&row)?;
                        Box::new(move |i| i.put_grant(entry))
                    }
                    _ => Box::new(move |i| i.remove_grant(&id)),
                }
            }
            IndexChanged::BREAK_GLASS => {
                let row = break_glass::Entity::find_by_id(change.id.clone())
                    .filter(break_glass::Column::TenantId.eq(tenant))
                    .one(&txn)
                    .await?;
                match row {
                    Some(row) => Box::new(move |i| {
                        i.put_break_glass(&row.patient_id, break_glass_entry(&row))
                    }),
                    None => Box::new(|_| {}),
                }
            }
            IndexChanged::POLICY => {
                let (policy, version) = Self::current_policy(&txn, tenant).await?;
                let policy = Arc::new(policy);
                Box::new(move |i| {
                    if version >= i.policy_version {
                        i.policy = policy;
                        i.policy_version = version;
                    }
                })
            }
            _ => Box::new(|_| {}),
        };
        txn.commit().await?;
        if let Ok(mut guard) = slot.index.write()
            && let Some(index) = guard.as_mut()
        {
            update(index);
        }
        Ok(())
    }

    /// Re-reads the tenant's institutions (a new one was registered).
    pub async fn refresh_institutions(&self, tenant: &str) -> Result<(), ConsentError> {
        let slot = self.slot(tenant);
        if !slot.index.read().map(|i| i.is_some()).unwrap_or(false) {
            return Ok(());
        }
        let institutions = self.institutions(tenant).await?;
        if let Ok(mut guard) = slot.index.write()
            && let Some(index) = guard.as_mut()
        {
            index.institutions = institutions;
        }
        if let Ok(mut at) = slot.institutions_loaded.write() {
            *at = Instant::now();
        }
        Ok(())
    }

    /// Reloads every tenant this replica holds.
    pub async fn reconcile(&self) {
        let tenants: Vec<(String, Arc<Slot>)> = match self.tenants.read() {
            Ok(map) => map.iter().map(|(t, s)| (t.clone(), s.clone())).collect(),
            Err(_) => return,
        };
        for (tenant, slot) in tenants {
            let _gate = slot.gate.lock().await;
            match self.load(&tenant).await {
                Ok(mut index) => {
                    index.prune(Utc::now().timestamp_millis());
                    if let Ok(mut guard) = slot.index.write() {
                        *guard = Some(index);
                    }
                }
                Err(error) => {
                    tracing::warn!(%tenant, error = %caretrail_platform::problem::ErrorChain(&error), "reloading the decision index failed; keeping the current one")
                }
            }
        }
    }

    /// Runs until `stop`: periodic reconciliation.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RECONCILE_EVERY) => self.reconcile().await,
            }
        }
    }

    /// Number of active grants this replica holds for `tenant` (loads it).
    pub async fn grant_count(&self, tenant: &str) -> Result<usize, ConsentError> {
        let slot = self.loaded(tenant).await?;
        Ok(slot
            .index
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(TenantIndex::grant_count))
            .unwrap_or(0))
    }

    /// One decision per resource, in order. With `enforce`, permits under grants limited to
    /// a number of accesses are counted (and refused once the count is used up).
    pub async fn decide(&self, input: &DecideIn) -> Result<Vec<Decision>, ConsentError> {
        let tenant = input.tenant.as_str();
        let slot = self.loaded(tenant).await?;
        if let Some(institution) = &input.subject.institution {
            let known = slot
                .index
                .read()
                .ok()
                .and_then(|i| {
                    i.as_ref()
                        .map(|i| i.institutions.contains_key(institution.as_str()))
                })
                .unwrap_or(false);
            let stale = slot
                .institutions_loaded
                .read()
                .map(|at| at.elapsed() >= INSTITUTIONS_REFRESH)
                .unwrap_or(true);
            if !known && stale {
                self.refresh_institutions(tenant).await?;
            }
        }
        let now = Utc::now().timestamp_millis();
        let (mut decisions, counted) = {
            let guard = slot
                .index
                .read()
                .map_err(|_| ConsentError::Corrupt("decision index lock"))?;
            let index = guard
                .as_ref()
                .ok_or(ConsentError::Corrupt("decision index not loaded"))?;
            let mut decisions = Vec::with_capacity(input.resources.len());
            let mut counted = Vec::new();
            for (i, r) in input.resources.iter().enumerate() {
                let (decision, grant) =
                    index.decide(&input.subject, input.action, input.purpose, r, now);
                if let Some(grant) = grant {
                    counted.push((i, grant));
                }
                decisions.push(decision);
            }
            (decisions, counted)
        };
        if input.enforce {
            for (i, grant) in counted {
                if !self.count_access(tenant, &grant).await? {
                    decisions[i] = Decision {
                        permit: false,
                        reasons: vec![format!("grant {grant}: its accesses are used up")],
                        decided_by: DecidedBy {
                            kind: "grant".into(),
                            id: grant.to_string(),
                        },
                        obligations: vec!["log_access".into()],
                    };
                }
            }
        }
        Ok(decisions)
    }

    /// Counts one access against a limited grant; false when none is left. The database is
    /// the arbiter, so replicas with a stale count cannot over-permit.
    async fn count_access(&self, tenant: &str, id: &str) -> Result<bool, ConsentError> {
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let counted = grant::Entity::update_many()
            .col_expr(
                grant::Column::AccessesUsed,
                Expr::col(grant::Column::AccessesUsed).add(1),
            )
            .filter(grant::Column::Id.eq(id))
            .filter(grant::Column::TenantId.eq(tenant))
            .filter(grant::Column::Status.eq("active"))
            .filter(
                Expr::col(grant::Column::AccessesUsed).lt(Expr::col(grant::Column::MaxAccesses)),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.apply(tenant, &IndexChanged::grant(id)).await?;
        Ok(counted.rows_affected == 1)
    }
}

fn break_glass_entry(row: &break_glass::Model) -> BreakGlassEntry {
    BreakGlassEntry {
        id: row.id.as_str().into(),
        user: row.user_id.as_str().into(),
        institution: row.institution_id.as_str().into(),
        expires_at: millis(row.expires_at),
    }
}

/// Follows index changes and new institutions on a queue of this replica's own.
pub async fn follow(bus: &dyn Bus, engine: Arc<Engine>) -> Result<ConsumerHandle, ConsentError> {
    let queue = format!("consent.index.{}", uuid::Uuid::new_v4().simple());
    let handle = bus
        .subscribe(
            Subscription::new(queue)
                .bind(format!("*.{}.{INDEX_CHANGED}", crate::SERVICE))
                .bind("*.identity.institution.registered")
                .ephemeral(),
            handler_fn(move |d| {
                let engine = engine.clone();
                async move {
                    let tenant = d.event.tenant.clone();
                    let result = if d.event.service == "identity" {
                        engine.refresh_institutions(&tenant).await
                    } else {
                        let change: IndexChanged = d
                            .event
                            .payload_as()
                            .map_err(|e| HandlerError::Reject(e.to_string()))?;
                        engine.apply(&tenant, &change).await
                    };
                    result.map_err(|e| HandlerError::Retry(e.to_string()))
                }
            }),
        )
        .await?;
    Ok(handle)
}
