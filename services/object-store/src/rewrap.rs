//! Rewrapping after a KEK rotation: every data key wrapped under an older version is
//! unwrapped and wrapped again under the current one, in small transactions, without
//! touching the objects. One job per tenant at a time; it stops when none is left and can
//! be restarted at any time (a crash loses nothing: rows still on an old version are simply
//! picked up by the next run).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use caretrail_contracts::TenantId;
use caretrail_crypto::{Suite, WrapBinding, WrappedKey};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::State;
use crate::entities::record;
use crate::error::ObjectStoreError;

const BATCH: u64 = 100;

#[derive(Default)]
pub struct Rewrap {
    running: Mutex<HashSet<String>>,
}

impl Rewrap {
    pub fn is_running(&self, tenant: &str) -> bool {
        self.running
            .lock()
            .map(|r| r.contains(tenant))
            .unwrap_or(false)
    }

    /// Starts the tenant's job unless one is running.
    pub fn start(&self, state: Arc<State>, tenant: TenantId, suite: Suite) {
        match self.running.lock() {
            Ok(mut running) => {
                if !running.insert(tenant.to_string()) {
                    return;
                }
            }
            Err(_) => return,
        }
        tokio::spawn(async move {
            match run(&state, &tenant, suite).await {
                Ok(n) => tracing::info!(tenant = %tenant, rewrapped = n, "data keys rewrapped"),
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %caretrail_platform::problem::ErrorChain(&e), "rewrapping stopped; rotate again or restart to resume")
                }
            }
            if let Ok(mut running) = state.rewrap.running.lock() {
                running.remove(tenant.as_str());
            }
        });
    }
}

async fn run(state: &State, tenant: &TenantId, suite: Suite) -> Result<u64, ObjectStoreError> {
    let (mut current, mut new_kek) = state.keks.current(tenant.as_str(), suite).await?;
    let mut done = 0u64;
    loop {
        let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
        let rows = record::Entity::find()
            .filter(record::Column::TenantId.eq(tenant.as_str()))
            .filter(record::Column::KekVersion.lt(current))
            .filter(record::Column::WrappedKey.is_not_null())
            .order_by_asc(record::Column::Id)
            .limit(BATCH)
            .all(&txn)
            .await?;
        txn.commit().await?;
        if rows.is_empty() {
            // A rotation while this job ran (its own request found the job running) moves
            // the target: go on until nothing is left under any older version.
            let (latest, kek) = state.keks.current(tenant.as_str(), suite).await?;
            if latest == current {
                return Ok(done);
            }
            (current, new_kek) = (latest, kek);
            continue;
        }
        // Unwrap and rewrap outside the write transaction (opening a KEK reads the database).
        let mut updates = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(text) = r.wrapped_key.as_deref() else {
                continue;
            };
            let old = state
                .keks
                .version(tenant.as_str(), suite, r.kek_version)
                .await?;
            let data_key = old.unwrap(
                &WrappedKey::from_base64(text)?,
                &WrapBinding::new(tenant.as_str(), r.kek_version as u32, &r.id),
            )?;
            let rewrapped = new_kek.wrap(
                &data_key,
                &WrapBinding::new(tenant.as_str(), current as u32, &r.id),
            )?;
            updates.push((r.id.clone(), r.kek_version, rewrapped.to_base64()));
        }
        let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
        let mut changed = 0;
        for (id, version, wrapped) in updates {
            // Only if nothing changed meanwhile (an erasure wins).
            let updated = record::Entity::update_many()
                .col_expr(record::Column::WrappedKey, Expr::value(wrapped))
                .col_expr(record::Column::KekVersion, Expr::value(current))
                .filter(record::Column::Id.eq(id.as_str()))
                .filter(record::Column::TenantId.eq(tenant.as_str()))
                .filter(record::Column::KekVersion.eq(version))
                .filter(record::Column::WrappedKey.is_not_null())
                .exec(&txn)
                .await?;
            changed += updated.rows_affected;
        }
        txn.commit().await?;
        done += changed;
    }
}
