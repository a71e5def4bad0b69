//! The built-in witness: every `witness_interval_ms` the audit service asks the ledger for
//! each tenant's latest signed checkpoint and a consistency proof from the last checkpoint it
//! accepted, checks the ledger's signature against the key pinned at first contact and the
//! proof against the accepted root, and only then accepts it — and, in `cosign` mode,
//! cosigns it with the tenant's regulator's custodial key (identity) and hands the
//! cosignature to the ledger, which serves it with the checkpoint.
//!
//! A checkpoint that does not extend the accepted one (a rewritten or truncated history, a
//! changed root for the same size) or that the pinned key did not sign is never accepted:
//! it raises a `checkpoint_inconsistent` / `checkpoint_invalid` anomaly (row,
//! `audit.anomaly.flagged` event, metric) once per presented checkpoint, and the witness keeps
//! the last good state, so every later checkpoint is still checked against it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use caretrail_bus::BusError;
use caretrail_contracts::identity::{CosignIn, Level, TenantInfo};
use caretrail_contracts::ledger::{CosignatureIn, WitnessViewOut};
use caretrail_ledger_proofs::{
    Checkpoint, HashValue, Note, ProofError, Suite, VerifierKey, check_extends,
};
use caretrail_runtime::clients::{IdentityClient, LedgerClient};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use serde::Deserialize;
use serde_json::json;

use crate::anomalies::{self, Flag, FlagError};
use crate::entities::witness_state;

/// What the witness does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WitnessMode {
    /// No checks.
    Off,
    /// Check every checkpoint and raise alerts, without cosigning.
    Verify,
    /// Check, and cosign accepted checkpoints as the tenant's regulator.
    Cosign,
}

impl WitnessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WitnessMode::Off => "off",
            WitnessMode::Verify => "verify",
            WitnessMode::Cosign => "cosign",
        }
    }
}

/// Why a presented checkpoint was refused (the alert's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tree is smaller than the accepted one.
    TreeShrank,
    /// Same size, different root.
    RootChanged,
    /// The consistency proof from the accepted checkpoint does not verify.
    ProofFailed,
    /// The origin line changed.
    OriginChanged,
    /// The ledger's verifier key differs from the pinned one.
    KeyChanged,
    /// The note's signature does not verify, or the note does not parse.
    BadSignature,
    /// The ledger no longer knows a log the witness has accepted checkpoints of.
    LogMissing,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TreeShrank => "tree_shrank",
            Refusal::RootChanged => "root_changed",
            Refusal::ProofFailed => "consistency_proof_failed",
            Refusal::OriginChanged => "origin_changed",
            Refusal::KeyChanged => "ledger_key_changed",
            Refusal::BadSignature => "bad_signature",
            Refusal::LogMissing => "log_missing",
        }
    }

    /// The anomaly kind: a history that does not extend the accepted one, or a checkpoint
    /// the pinned key did not sign.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::TreeShrank
            | Refusal::RootChanged
            | Refusal::ProofFailed
            | Refusal::OriginChanged
            | Refusal::LogMissing => "checkpoint_inconsistent",
            Refusal::KeyChanged | Refusal::BadSignature => "checkpoint_invalid",
        }
    }
}

/// What one check of a tenant's log came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (first contact, unchanged or consistently grown) at this size; `cosigned`
    /// when this round cosigned it.
    Accepted { size: u64, cosigned: bool },
    /// Refused and flagged (`new_alert` false when this checkpoint was flagged before).
    Refused { refusal: Refusal, new_alert: bool },
    /// The tenant has no log yet.
    NoLog,
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("ledger or identity: {0}")]
    Remote(#[from] BusError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("database: {0}")]
    Tenant(#[from] caretrail_db::DbError),
    #[error("anomaly: {0}")]
    Flag(#[from] FlagError),
    #[error("stored witness state: {0}")]
    Corrupt(String),
}

/// The ledger and identity as the witness sees them (the real one goes over the bus; tests
/// put a forging ledger in front of it).
#[async_trait]
pub trait WitnessPort: Send + Sync {
    async fn tenants(&self) -> Result<Vec<TenantInfo>, BusError>;
    /// The regulator institutions that may cosign for the tenant.
    async fn regulators(&self, tenant: &str) -> Result<Vec<String>, BusError>;
    /// The latest checkpoint, proven to extend `since` and `cosigned_since`.
    async fn view(
        &self,
        tenant: &str,
        since: u64,
        cosigned_since: u64,
    ) -> Result<WitnessViewOut, BusError>;
    /// A cosignature line by `witness` over the checkpoint body; identity requires the
    /// consistency proof from the size it last cosigned.
    async fn cosign(&self, input: &CosignIn) -> Result<String, BusError>;
    async fn submit(&self, input: &CosignatureIn) -> Result<(), BusError>;
}

/// The bus-backed port.
pub struct BusPort {
    pub ledger: LedgerClient,
    pub identity: IdentityClient,
}

#[async_trait]
impl WitnessPort for BusPort {
    async fn tenants(&self) -> Result<Vec<TenantInfo>, BusError> {
        self.identity.tenants().await
    }

    async fn regulators(&self, tenant: &str) -> Result<Vec<String>, BusError> {
        let mut ids: Vec<String> = self
            .identity
            .institutions(tenant)
            .await?
            .into_iter()
            .filter(|i| i.level == Level::Regulator)
            .map(|i| i.institution.to_string())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn view(
        &self,
        tenant: &str,
        since: u64,
        cosigned_since: u64,
    ) -> Result<WitnessViewOut, BusError> {
        self.ledger
            .witness_view(tenant, since, cosigned_since)
            .await
    }

    async fn cosign(&self, input: &CosignIn) -> Result<String, BusError> {
        self.identity.cosign(input).await
    }

    async fn submit(&self, input: &CosignatureIn) -> Result<(), BusError> {
        self.ledger.cosign(input).await
    }
}

/// Counters of the witness (registered on the service's registry).
#[derive(Clone)]
pub struct WitnessMetrics {
    /// `outcome`: accepted, cosigned, refused, unavailable.
    pub checks: prometheus::IntCounterVec,
    /// Anomalies by kind (shared with the indexer's flags).
    pub flags: prometheus::IntCounterVec,
}

pub struct Witness {
    pub db: DatabaseConnection,
    pub port: Arc<dyn WitnessPort>,
    pub mode: WitnessMode,
    pub metrics: WitnessMetrics,
}

fn is_no_log(e: &BusError) -> bool {
    matches!(e, BusError::Remote(r) if r.code == "not_found" || r.code == "unknown_tenant")
}

impl Witness {
    /// Checks every active tenant once; failures are logged here and counted.
    pub async fn round(&self) {
        let tenants = match self.port.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "witness: could not list tenants");
                return;
            }
        };
        for tenant in tenants.iter().filter(|t| t.status == "active") {
            match self.check(tenant).await {
                Ok(outcome) => self.count(&outcome),
                Err(e) => {
                    self.metrics
                        .checks
                        .with_label_values(&["unavailable"])
                        .inc();
                    tracing::warn!(tenant = %tenant.tenant, error = %e, "witness check failed; retrying next round");
                }
            }
        }
    }

    fn count(&self, outcome: &Outcome) {
        let label = match outcome {
            Outcome::Accepted { cosigned: true, .. } => "cosigned",
            Outcome::Accepted { .. } => "accepted",
            Outcome::Refused { .. } => "refused",
            Outcome::NoLog => return,
        };
        self.metrics.checks.with_label_values(&[label]).inc();
    }

    /// Runs rounds until `stop` is cancelled.
    pub async fn run(self, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.round() => {}
            }
        }
    }

    async fn state(&self, tenant: &str) -> Result<Option<witness_state::Model>, WitnessError> {
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let row = witness_state::Entity::find_by_id(tenant.to_string())
            .one(&txn)
            .await?;
        txn.commit().await?;
        Ok(row)
    }

    /// One check of the tenant's log.
    pub async fn check(&self, tenant: &TenantInfo) -> Result<Outcome, WitnessError> {
        let suite: Suite = tenant
            .suite
            .parse()
            .map_err(|_| WitnessError::Corrupt(format!("suite {:?}", tenant.suite)))?;
        let id = tenant.tenant.as_str();
        let accepted = self.state(id).await?;
        let since = accepted.as_ref().map_or(0, |s| s.tree_size.max(0) as u64);
        let cosigned_before = accepted
            .as_ref()
            .map_or(0, |s| s.cosigned_size.max(0) as u64);
        let view = match self.port.view(id, since, cosigned_before).await {
            Ok(v) => v,
            Err(e) if is_no_log(&e) => {
                if accepted.is_none() {
                    return Ok(Outcome::NoLog);
                }
                let gone = WitnessViewOut {
                    tree_size: 0,
                    checkpoint: String::new(),
                    ledger_key: String::new(),
                    consistency: Vec::new(),
                    cosigned_consistency: Vec::new(),
                };
                let refusal = Refusal::LogMissing;
                let new_alert = self
                    .alert(id, refusal, accepted.as_ref(), &gone, "")
                    .await?;
                return Ok(Outcome::Refused { refusal, new_alert });
            }
            Err(e) => return Err(e.into()),
        };
        let presented_root = || {
            unverified_body(&view.checkpoint, suite)
                .map(|c| c.root().to_hex())
                .unwrap_or_default()
        };
        let checked = match judge(accepted.as_ref(), &view, suite) {
            Ok(checkpoint) => checkpoint,
            Err(refusal) => {
                let new_alert = self
                    .alert(id, refusal, accepted.as_ref(), &view, &presented_root())
                    .await?;
                return Ok(Outcome::Refused { refusal, new_alert });
            }
        };
        let size = checked.size();
        let mut cosigned = None;
        if self.mode == WitnessMode::Cosign && size > cosigned_before {
            // A failed cosignature does not hold back acceptance: the checkpoint is verified;
            // the next round cosigns it (cosigned_size stays behind until then).
            match self.cosign(id, &checked, cosigned_before, &view).await {
                Ok(step) => cosigned = step,
                Err(e) => {
                    tracing::warn!(tenant = id, size, error = %e, "witness could not cosign; retrying next round");
                }
            }
        }
        self.accept(id, accepted.as_ref(), &view, &checked, cosigned, since)
            .await?;
        Ok(Outcome::Accepted {
            size,
            cosigned: cosigned == Some(size),
        })
    }

    /// Cosigns as the tenant's regulator (the lowest id if several). The new cosigned size:
    /// `size` when done, the size identity holds when it asks for a proof from there (the
    /// next round brings it), `None` when the tenant has no regulator.
    async fn cosign(
        &self,
        tenant: &str,
        checkpoint: &Checkpoint,
        from_size: u64,
        view: &WitnessViewOut,
    ) -> Result<Option<u64>, BusError> {
        let Some(regulator) = self.port.regulators(tenant).await?.into_iter().next() else {
            return Ok(None);
        };
        let asked = self
            .port
            .cosign(&CosignIn {
                tenant: tenant.to_string(),
                witness: regulator.clone(),
                checkpoint: checkpoint.body(),
                from_size,
                consistency: view.cosigned_consistency.clone(),
            })
            .await;
        let line = match asked {
            Ok(line) => line,
            Err(BusError::Remote(r)) if r.code == "cosign_from" => {
                let held = r.message.parse::<u64>().ok();
                tracing::info!(
                    tenant,
                    ?held,
                    from_size,
                    "identity cosigned from another size; proving from there next round"
                );
                return Ok(held);
            }
            Err(e) => return Err(e),
        };
        self.port
            .submit(&CosignatureIn {
                tenant: tenant.to_string(),
                witness: regulator.clone(),
                tree_size: checkpoint.size(),
                line,
            })
            .await?;
        tracing::info!(tenant, size = checkpoint.size(), witness = %regulator, "witness cosigned the ledger's checkpoint");
        Ok(Some(checkpoint.size()))
    }

    /// Stores the accepted checkpoint, unless another replica moved the state meanwhile.
    async fn accept(
        &self,
        tenant: &str,
        previous: Option<&witness_state::Model>,
        view: &WitnessViewOut,
        checkpoint: &Checkpoint,
        cosigned: Option<u64>,
        since: u64,
    ) -> Result<(), WitnessError> {
        let now = chrono::Utc::now();
        let grew = previous.is_none_or(|p| p.tree_size as u64 != checkpoint.size());
        let row = witness_state::ActiveModel {
            tenant_id: Set(tenant.to_string()),
            ledger_key: Set(view.ledger_key.clone()),
            tree_size: Set(checkpoint.size() as i64),
            root: Set(checkpoint.root().to_hex()),
            checkpoint: Set(view.checkpoint.clone()),
            // Only a round that cosigned (or learnt identity's size) moves it: another
            // replica may have cosigned meanwhile.
            cosigned_size: match (cosigned, previous) {
                (Some(size), _) => Set(size as i64),
                (None, None) => Set(0),
                (None, Some(_)) => NotSet,
            },
            accepted_at: Set(if grew {
                now
            } else {
                previous.map_or(now, |p| p.accepted_at)
            }),
            checked_at: Set(now),
        };
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        if previous.is_none() {
            witness_state::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(witness_state::Column::TenantId)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        } else {
            // Optimistic: another audit replica may have accepted a newer checkpoint.
            witness_state::Entity::update_many()
                .set(row)
                .filter(witness_state::Column::TenantId.eq(tenant))
                .filter(witness_state::Column::TreeSize.eq(since as i64))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    async fn alert(
        &self,
        tenant: &str,
        refusal: Refusal,
        accepted: Option<&witness_state::Model>,
        view: &WitnessViewOut,
        presented_root: &str,
    ) -> Result<bool, WitnessError> {
        let root_prefix: String = presented_root.chars().take(16).collect();
        let flag = Flag {
            tenant: tenant.to_string(),
            kind: refusal.kind(),
            key: format!("{}:{}:{presented_root}", refusal.as_str(), view.tree_size),
            event_id: format!("cp:{}:{root_prefix}", view.tree_size),
            subject: None,
            institution: None,
            patient: None,
            record: None,
            ledger_index: None,
            detail: json!({
                "reason": refusal.as_str(),
                "accepted": accepted.map(|a| json!({
                    "tree_size": a.tree_size,
                    "root": a.root,
                    "ledger_key": a.ledger_key,
                })),
                "presented": {
                    "tree_size": view.tree_size,
                    "root": presented_root,
                    "ledger_key": view.ledger_key,
                    "checkpoint": view.checkpoint,
                },
            }),
        };
        let txn = caretrail_db::begin_tenant(&self.db, tenant).await?;
        let new = anomalies::raise(&txn, flag).await?;
        txn.commit().await?;
        if new {
            self.metrics
                .flags
                .with_label_values(&[refusal.kind()])
                .inc();
            tracing::error!(
                tenant,
                reason = refusal.as_str(),
                accepted_size = accepted.map(|a| a.tree_size),
                presented_size = view.tree_size,
                "witness: the ledger presented a checkpoint that does not extend the accepted one"
            );
        }
        Ok(new)
    }
}

/// The checkpoint a note states, without checking its signatures (for reports, and for the
/// state the witness verified when it accepted it).
fn unverified_body(note: &str, suite: Suite) -> Option<Checkpoint> {
    let note = Note::parse(note.as_bytes()).ok()?;
    Checkpoint::parse_body(note.text(), suite).ok()
}

/// Checks a presented checkpoint against the accepted state; the checkpoint to accept, or
/// why not. Pure, so every refusal can be tested without a ledger.
pub fn judge(
    accepted: Option<&witness_state::Model>,
    view: &WitnessViewOut,
    suite: Suite,
) -> Result<Checkpoint, Refusal> {
    let pinned = accepted.map_or(view.ledger_key.as_str(), |a| a.ledger_key.as_str());
    if pinned != view.ledger_key {
        return Err(Refusal::KeyChanged);
    }
    let key = VerifierKey::parse(pinned).map_err(|_| Refusal::BadSignature)?;
    let opened = Checkpoint::open(view.checkpoint.as_bytes(), suite, &[key], &[])
        .map_err(|_| Refusal::BadSignature)?;
    let next = opened.checkpoint;
    if next.size() != view.tree_size {
        return Err(Refusal::BadSignature);
    }
    let Some(accepted) = accepted else {
        return Ok(next);
    };
    let prev_size = accepted.tree_size.max(0) as u64;
    let prev_origin = unverified_body(&accepted.checkpoint, suite)
        .map(|c| c.origin().to_string())
        .unwrap_or_default();
    let prev = HashValue::from_hex(suite, &accepted.root)
        .ok()
        .and_then(|root| Checkpoint::new(prev_origin, prev_size, root).ok())
        .ok_or(Refusal::ProofFailed)?;
    let extends = view
        .consistency
        .iter()
        .map(|h| HashValue::from_hex(suite, h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ProofError::from)
        .and_then(|proof| check_extends(&prev, &next, &proof));
    match extends {
        Ok(()) => Ok(next),
        Err(ProofError::OriginMismatch { .. }) => Err(Refusal::OriginChanged),
        Err(_) if next.size() < prev_size => Err(Refusal::TreeShrank),
        Err(_) if next.size() == prev_size => Err(Refusal::RootChanged),
        Err(_) => Err(Refusal::ProofFailed),
    }
}
