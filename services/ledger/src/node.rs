//! One ledger node: openraft on the durable storage, the HTTP network, the append pipeline
//! (verify → batch → propose → receipt) and forwarding to the leader.
//!
//! # Append path
//!
//! 1. Any node accepts appends (bus RPC, internal HTTP). A node that is not the leader
//!    forwards them unchanged to the leader over the cluster port ([`ClusterRequest`]).
//! 2. The leader checks each submission (shape, kind, payload size, tenant) and its signature
//!    against the submitter's key **as registered in the tenant's log** (a single submission on
//!    the calling thread, larger requests on blocking threads in chunks).
//! 3. Checked submissions queue for the batcher, which stamps them with the leader's clock and
//!    proposes up to `ledger_max_batch` of them as one Raft entry, keeping a few proposals in
//!    flight. openraft 0.9 hands storage one entry per proposal, so this is where batching
//!    happens; the log store's group commit then folds concurrent proposals into one fsync.
//! 4. A proposal returns after a majority has the entry durably and the leader has applied it;
//!    only then is a receipt built: index, leaf hash, a checkpoint that includes the entry and
//!    the inclusion proof, plus the whole proof bundle for `caretrail verify`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use caretrail_contracts::ledger::{LedgerFailure, Receipt};
use caretrail_crypto::{Suite, VerifyingKey};
use caretrail_ledger_proofs::{BundleKeys, ProofBundle, Submission};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::checkpoint::Checkpoints;
use crate::config::LedgerSettings;
use crate::network::{Network, PeerError};
use crate::storage::keys::REGISTRAR;
use crate::storage::{
    AppendRequest, Appended, LedgerCommand, LedgerResponse, LedgerView, NodeId, Refusal,
    StoreError, TenantSpec, TypeConfig,
};

/// Entry kinds any submitter may append (besides the registrar's access changes,
/// [`caretrail_contracts::identity::AccessChange`]). Payloads hold ids and hashes only.
pub const KINDS: &[&str] = &[
    "record.anchored",
    "record.accessed",
    "record.access_denied",
    "record.erased",
    "consent.granted",
    "consent.revoked",
    "referral.created",
    "referral.accepted",
    "referral.declined",
    "referral.completed",
    "referral.cancelled",
    "break_glass.declared",
    "policy.changed",
    "kek.rotated",
    crate::storage::keys::KIND_KEY_REGISTERED,
    crate::storage::keys::KIND_KEY_REVOKED,
];

/// A submission with its signature, as clients send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSubmission {
    pub submission: Submission,
    pub signature: Vec<u8>,
}

impl From<Refusal> for LedgerFailure {
    fn from(r: Refusal) -> Self {
        let code = match &r {
            Refusal::UnknownTenant { .. } => "unknown_tenant",
            Refusal::InvalidEntry { .. } => "invalid_entry",
            Refusal::InvalidTenant { .. } => "invalid_tenant",
            Refusal::TenantSuiteConflict { .. } => "tenant_suite_conflict",
            Refusal::RequestIdConflict { .. } => "request_id_conflict",
            Refusal::LogFull { .. } => "log_full",
            Refusal::UnknownInstitution { .. } => "unknown_institution",
            Refusal::UnknownKey { .. } => "unknown_key",
            Refusal::KeyRevoked { .. } => "key_revoked",
            Refusal::InvalidCosignature { .. } => "invalid_cosignature",
        };
        Self::new(code, r.to_string())
    }
}

/// Requests a node hands to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterRequest {
    Append(Vec<SignedSubmission>),
    RegisterTenant {
        tenant: String,
        suite: Suite,
        registrar_key_pem: String,
    },
    Cosign {
        tenant: String,
        witness: String,
        size: u64,
        line: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterResponse {
    Append(Vec<Result<Receipt, LedgerFailure>>),
    Done(Result<(), LedgerFailure>),
}

struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<Result<Appended, LedgerFailure>>,
}

/// Proposals in flight at once.
const PIPELINE: usize = 4;
/// Requests of at most this many submissions are checked and given their receipts on the
/// calling thread. Handing them to the blocking pool costs a thread wake-up and two context
/// switches each way, more than one Ed25519 check or one receipt (all in memory: the key
/// cache, the cached tree nodes and leaf hashes, pages of entries just written), and
/// single-entry appends are what services send. Larger requests, and receipts while the tree
/// nodes are still loading after a start (proofs then read the store), go to the pool.
const INLINE_SUBMISSIONS: usize = 1;
/// How long a request waits for a leader to exist before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(5);

pub struct LedgerNode {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub view: LedgerView,
    pub network: Network,
    pub checkpoints: Arc<Checkpoints>,
    pub settings: LedgerSettings,
    /// The address peers use for this node's cluster port.
    pub advertise: String,
    queue: mpsc::Sender<Pending>,
    pub(crate) keys: KeyCache,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn hex_hashes(hashes: &[caretrail_crypto::HashValue]) -> Vec<String> {
    hashes.iter().map(|h| h.to_hex()).collect()
}

impl LedgerNode {
    pub(crate) fn new(
        id: NodeId,
        raft: Raft<TypeConfig>,
        view: LedgerView,
        network: Network,
        checkpoints: Arc<Checkpoints>,
        settings: LedgerSettings,
        advertise: String,
    ) -> Arc<Self> {
        let (queue, rx) = mpsc::channel(settings.ledger_max_batch * 8);
        let node = Arc::new(Self {
            id,
            raft,
            view,
            network,
            checkpoints,
            settings,
            advertise,
            queue,
            keys: KeyCache::default(),
        });
        tokio::spawn(batcher(
            node.raft.clone(),
            rx,
            node.settings.ledger_max_batch,
            node.propose_timeout(),
        ));
        node
    }

    /// The current leader and its cluster address, waiting up to [`LEADER_WAIT`] for one.
    pub async fn leader(&self) -> Result<(NodeId, String), LedgerFailure> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow();
                if let Some(leader) = m.current_leader {
                    let addr = m
                        .membership_config
                        .membership()
                        .get_node(&leader)
                        .map(|n| n.addr.clone());
                    if let Some(addr) = addr {
                        return Ok((leader, addr));
                    }
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(LedgerFailure::unavailable("the node is stopping")),
                Err(_) => {
                    return Err(LedgerFailure::new(
                        "no_leader",
                        "the ledger cluster has no leader (no quorum); retry later",
                    ));
                }
            }
        }
    }

    /// Handles a request here when this node leads, otherwise on the leader.
    pub async fn submit(&self, request: ClusterRequest) -> ClusterResponse {
        let mut last = None;
        for _ in 0..3 {
            let (leader, addr) = match self.leader().await {
                Ok(l) => l,
                Err(e) => return failed(&request, e),
            };
            // Handled here when this node leads; a `not_leader` answer (leadership moved
            // meanwhile) is retried on the new leader like a forwarded one.
            let forwarded: Result<ClusterResponse, PeerError> = if leader == self.id {
                Ok(self.handle_as_leader(request.clone()).await)
            } else {
                self.network
                    .post_json(
                        leader,
                        &addr,
                        "/cluster/forward",
                        &request,
                        Duration::from_secs(30),
                    )
                    .await
            };
            match forwarded {
                Ok(ClusterResponse::Append(results))
                    if results
                        .iter()
                        .all(|r| r.as_ref().is_err_and(|e| e.code == "not_leader")) =>
                {
                    last = Some(LedgerFailure::new("no_leader", "leadership changed"));
                }
                Ok(ClusterResponse::Done(Err(e))) if e.code == "not_leader" => last = Some(e),
                Ok(response) => return response,
                Err(e) => {
                    tracing::warn!(leader, error = %e, "forwarding to the leader failed");
                    last = Some(LedgerFailure::unavailable(e));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let failure = last.unwrap_or_else(|| LedgerFailure::unavailable("no leader reachable"));
        failed(&request, failure)
    }

    /// Handles a forwarded or local request; refuses with `not_leader` if leadership moved.
    pub async fn handle_as_leader(&self, request: ClusterRequest) -> ClusterResponse {
        if self.raft.current_leader().await != Some(self.id) {
            return failed(
                &request,
                LedgerFailure::new("not_leader", "this node is not the leader"),
            );
        }
        match request {
            ClusterRequest::Append(subs) => ClusterResponse::Append(self.append_here(subs).await),
            ClusterRequest::RegisterTenant {
                tenant,
                suite,
                registrar_key_pem,
            } => ClusterResponse::Done(
                self.register_tenant_here(tenant, suite, registrar_key_pem)
                    .await,
            ),
            ClusterRequest::Cosign {
                tenant,
                witness,
                size,
                line,
            } => ClusterResponse::Done(self.cosign_here(tenant, witness, size, line).await),
        }
    }

    /// Appends and waits for the receipts (one result per submission, in order).
    pub async fn append(&self, subs: Vec<SignedSubmission>) -> Vec<Result<Receipt, LedgerFailure>> {
        let n = subs.len();
        match self.submit(ClusterRequest::Append(subs)).await {
            ClusterResponse::Append(results) if results.len() == n => results,
            ClusterResponse::Append(_) | ClusterResponse::Done(_) => {
                vec![Err(LedgerFailure::unavailable("unexpected answer")); n]
            }
        }
    }

    pub async fn register_tenant(
        &self,
        tenant: String,
        suite: Suite,
        registrar_key_pem: String,
    ) -> Result<(), LedgerFailure> {
        match self
            .submit(ClusterRequest::RegisterTenant {
                tenant,
                suite,
                registrar_key_pem,
            })
            .await
        {
            ClusterResponse::Done(r) => r,
            ClusterResponse::Append(_) => Err(LedgerFailure::unavailable("unexpected answer")),
        }
    }

    pub async fn cosign(
        &self,
        tenant: String,
        witness: String,
        size: u64,
        line: String,
    ) -> Result<(), LedgerFailure> {
        match self
            .submit(ClusterRequest::Cosign {
                tenant,
                witness,
                size,
                line,
            })
            .await
        {
            ClusterResponse::Done(r) => r,
            ClusterResponse::Append(_) => Err(LedgerFailure::unavailable("unexpected answer")),
        }
    }

    async fn propose(&self, command: LedgerCommand) -> Result<LedgerResponse, LedgerFailure> {
        propose(&self.raft, command, self.propose_timeout()).await
    }

    fn propose_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.ledger_propose_timeout_ms)
    }

    async fn register_tenant_here(
        &self,
        tenant: String,
        suite: Suite,
        registrar_key_pem: String,
    ) -> Result<(), LedgerFailure> {
        let origin = format!("{}/{}", self.settings.ledger_origin_prefix, tenant);
        let checkpoint_key = self
            .checkpoints
            .keys()
            .verifier_key(suite, &origin)
            .map_err(|e| LedgerFailure::new("invalid_tenant", e.to_string()))?
            .to_vkey();
        let spec = TenantSpec {
            tenant,
            suite,
            origin,
            checkpoint_key,
            registrar_key: registrar_key_pem,
        };
        match self.propose(LedgerCommand::RegisterTenant(spec)).await? {
            LedgerResponse::Tenant(r) => r.map(drop).map_err(LedgerFailure::from),
            _ => Err(LedgerFailure::unavailable(
                "unexpected state machine answer",
            )),
        }
    }

    async fn cosign_here(
        &self,
        tenant: String,
        witness: String,
        size: u64,
        line: String,
    ) -> Result<(), LedgerFailure> {
        let view = self.view.clone();
        let spec = blocking(move || {
            crate::witness::check_cosignature(&view, &tenant, &witness, size, &line)
        })
        .await?;
        match self.propose(LedgerCommand::AddCosignature(spec)).await? {
            LedgerResponse::Cosigned(r) => r.map_err(LedgerFailure::from),
            _ => Err(LedgerFailure::unavailable(
                "unexpected state machine answer",
            )),
        }
    }

    async fn append_here(
        &self,
        subs: Vec<SignedSubmission>,
    ) -> Vec<Result<Receipt, LedgerFailure>> {
        // 1. Check shape and signatures on blocking threads, in chunks.
        let checked = self.check_all(subs).await;
        // 2. Queue for the batcher.
        let mut waiting = Vec::with_capacity(checked.len());
        for item in checked {
            match item {
                Ok(request) => {
                    let (reply, rx) = oneshot::channel();
                    if self.queue.send(Pending { request, reply }).await.is_err() {
                        waiting.push(Err(LedgerFailure::unavailable("the node is stopping")));
                    } else {
                        waiting.push(Ok(rx));
                    }
                }
                Err(e) => waiting.push(Err(e)),
            }
        }
        let mut appended = Vec::with_capacity(waiting.len());
        for w in waiting {
            appended.push(match w {
                Ok(rx) => match rx.await {
                    Ok(r) => r,
                    Err(_) => Err(LedgerFailure::unavailable("the proposal was dropped")),
                },
                Err(e) => Err(e),
            });
        }
        // 3. Receipts.
        if appended.len() <= INLINE_SUBMISSIONS && !self.view.loading_tree_nodes() {
            return receipts(&self.view, &self.checkpoints, &self.keys, appended);
        }
        let view = self.view.clone();
        let checkpoints = self.checkpoints.clone();
        let keys = self.keys.clone();
        match blocking(move || Ok(receipts(&view, &checkpoints, &keys, appended))).await {
            Ok(r) => r,
            Err(e) => vec![Err(e)],
        }
    }

    async fn check_all(
        &self,
        subs: Vec<SignedSubmission>,
    ) -> Vec<Result<AppendRequest, LedgerFailure>> {
        const CHUNK: usize = 256;
        let max_payload = self.settings.ledger_max_payload_bytes;
        if subs.len() <= INLINE_SUBMISSIONS {
            return subs
                .into_iter()
                .map(|s| check_submission(&self.view, &self.keys, max_payload, s))
                .collect();
        }
        let mut handles = Vec::new();
        let mut subs = subs;
        while !subs.is_empty() {
            let rest = subs.split_off(subs.len().min(CHUNK));
            let chunk = std::mem::replace(&mut subs, rest);
            let view = self.view.clone();
            let cache = self.keys.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|s| check_submission(&view, &cache, max_payload, s))
                    .collect::<Vec<_>>()
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            match h.await {
                Ok(results) => out.extend(results),
                Err(e) => {
                    tracing::error!(error = %e, "signature check task failed");
                    out.push(Err(LedgerFailure::unavailable("internal error")));
                }
            }
        }
        out
    }

    /// Raft status for the admin API and `/readyz`.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let cached = self.view.cached_tree_nodes();
        let last_log_index = m.last_log_index;
        let members: BTreeMap<NodeId, String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let replication = m.replication.as_ref().map(|r| {
            r.iter()
                .map(|(id, matched)| {
                    let matched_index = matched.map(|l| l.index);
                    let lag = last_log_index
                        .unwrap_or(0)
                        .saturating_sub(matched_index.unwrap_or(0));
                    (*id, PeerProgress { matched_index, lag })
                })
                .collect()
        });
        NodeStatus {
            node_id: self.id,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
            voters,
            replication,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            entries: self.view.entry_counts().0,
            cached_upper_nodes: cached.upper,
            cached_leaf_hashes: cached.leaves,
            loading_tree_nodes: self.view.loading_tree_nodes(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }
}

type KeyCacheKey = (String, String, String);

/// Parsed institution keys by (tenant, submitter, key id); whether a key is revoked is always
/// read from the log, never from here.
#[derive(Clone, Default)]
pub(crate) struct KeyCache {
    keys: Arc<Mutex<HashMap<KeyCacheKey, Arc<VerifyingKey>>>>,
}

impl KeyCache {
    fn get(&self, k: &KeyCacheKey) -> Option<Arc<VerifyingKey>> {
        self.keys.lock().ok()?.get(k).cloned()
    }
    /// The parsed key, parsing and caching `spki_der` on a miss (`None` if it does not parse).
    fn get_or_parse(&self, k: KeyCacheKey, spki_der: &[u8]) -> Option<Arc<VerifyingKey>> {
        if let Some(key) = self.get(&k) {
            return Some(key);
        }
        let key = Arc::new(VerifyingKey::from_spki_der(spki_der).ok()?);
        self.put(k, key.clone());
        Some(key)
    }

    fn put(&self, k: KeyCacheKey, v: Arc<VerifyingKey>) {
        if let Ok(mut m) = self.keys.lock() {
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(k, v);
        }
    }
}

fn check_submission(
    view: &LedgerView,
    cache: &KeyCache,
    max_payload: usize,
    signed: SignedSubmission,
) -> Result<AppendRequest, LedgerFailure> {
    let SignedSubmission {
        submission: sub,
        signature,
    } = signed;
    sub.validate()
        .map_err(|e| LedgerFailure::new("invalid_entry", e.to_string()))?;
    // Changes of who may act are the registrar's statements (identity, under the tenant CA
    // key): no institution may write one.
    let access_change = caretrail_contracts::identity::AccessChange::from_name(&sub.kind).is_some();
    if access_change && sub.submitter != REGISTRAR {
        return Err(LedgerFailure::new(
            "invalid_entry",
            format!(
                "{} entries must be submitted by the tenant's registrar",
                sub.kind
            ),
        ));
    }
    if !access_change && !KINDS.contains(&sub.kind.as_str()) {
        return Err(LedgerFailure::new(
            "unknown_kind",
            format!("unknown entry kind {:?}", sub.kind),
        ));
    }
    if sub.payload.len() > max_payload {
        return Err(LedgerFailure::new(
            "payload_too_large",
            format!(
                "payload is {} bytes, at most {max_payload} accepted (ids and hashes only)",
                sub.payload.len()
            ),
        ));
    }
    if signature.is_empty() {
        return Err(LedgerFailure::new(
            "bad_signature",
            "the entry is not signed",
        ));
    }
    let tree = match view.tree(&sub.tenant) {
        Ok(t) => t,
        Err(StoreError::UnknownTenant(t)) => {
            return Err(LedgerFailure::new(
                "unknown_tenant",
                format!("tenant {t:?} has no ledger"),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the ledger failed");
            return Err(LedgerFailure::unavailable("storage error"));
        }
    };
    let cache_key = (
        sub.tenant.clone(),
        sub.submitter.clone(),
        sub.key_id.clone(),
    );
    let key = if sub.submitter == REGISTRAR {
        if sub.key_id != tree.info().registrar_key_id {
            return Err(Refusal::UnknownKey {
                submitter: sub.submitter.clone(),
                key_id: sub.key_id.clone(),
            }
            .into());
        }
        cache
            .get_or_parse(cache_key, &tree.info().registrar_key)
            .ok_or_else(|| LedgerFailure::unavailable("stored registrar key"))?
    } else {
        let record = tree
            .key(&sub.submitter, &sub.key_id)
            .map_err(|_| LedgerFailure::unavailable("storage error"))?;
        let Some(record) = record else {
            let known = tree
                .keys(Some(&sub.submitter))
                .map_err(|_| LedgerFailure::unavailable("storage error"))?;
            return Err(if known.is_empty() {
                Refusal::UnknownInstitution {
                    submitter: sub.submitter.clone(),
                }
            } else {
                Refusal::UnknownKey {
                    submitter: sub.submitter.clone(),
                    key_id: sub.key_id.clone(),
                }
            }
            .into());
        };
        if let Some(revoked_at) = record.revoked_index {
            return Err(Refusal::KeyRevoked {
                submitter: sub.submitter.clone(),
                key_id: sub.key_id.clone(),
                revoked_at,
            }
            .into());
        }
        cache
            .get_or_parse(cache_key, &record.public_key)
            .ok_or_else(|| LedgerFailure::unavailable("stored institution key"))?
    };
    sub.verify(&key, &signature).map_err(|_| {
        LedgerFailure::new(
            "bad_signature",
            format!(
                "the signature does not verify with key {} of {}",
                sub.key_id, sub.submitter
            ),
        )
    })?;
    Ok(AppendRequest {
        tenant: sub.tenant,
        kind: sub.kind,
        submitter: sub.submitter,
        request_id: sub.request_id,
        key_id: sub.key_id,
        payload: sub.payload,
        signature,
        timestamp_ms: 0,
    })
}

fn failed(request: &ClusterRequest, e: LedgerFailure) -> ClusterResponse {
    match request {
        ClusterRequest::Append(subs) => ClusterResponse::Append(vec![Err(e); subs.len()]),
        _ => ClusterResponse::Done(Err(e)),
    }
}

pub(crate) async fn propose(
    raft: &Raft<TypeConfig>,
    command: LedgerCommand,
    timeout: Duration,
) -> Result<LedgerResponse, LedgerFailure> {
    let written = match tokio::time::timeout(timeout, raft.client_write(command)).await {
        Ok(w) => w,
        // Outcome unknown (e.g. a leader cut off from its quorum): the caller retries with the
        // same request id, which returns the entry if it was committed after all.
        Err(_) => {
            return Err(LedgerFailure::unavailable(
                "the entry was not committed in time (no quorum?)",
            ));
        }
    };
    match written {
        Ok(r) => Ok(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(LedgerFailure::new(
            "not_leader",
            "leadership moved while proposing",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "proposal failed");
            Err(LedgerFailure::unavailable("the proposal failed"))
        }
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerFailure> + Send + 'static,
) -> Result<T, LedgerFailure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "blocking ledger task failed");
            Err(LedgerFailure::unavailable("internal error"))
        }
    }
}

/// Collects queued appends into batches and proposes them, [`PIPELINE`] at a time.
async fn batcher(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    timeout: Duration,
) {
    let permits = Arc::new(Semaphore::new(PIPELINE));
    let mut last_ts = 0u64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // Leader time, never going backwards within this leader's term of office.
        last_ts = last_ts.max(now_ms());
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|mut p| {
                p.request.timestamp_ms = last_ts;
                (p.request, p.reply)
            })
            .unzip();
        let raft = raft.clone();
        tokio::spawn(async move {
            let result = propose(
                &raft,
                LedgerCommand::AppendBatch { entries: requests },
                timeout,
            )
            .await;
            drop(permit);
            match result {
                Ok(LedgerResponse::Appended(results)) if results.len() == replies.len() => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(r.map_err(LedgerFailure::from));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(LedgerFailure::unavailable("unexpected answer")));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// Builds receipts for appended entries: one checkpoint per tenant, one proof per entry.
///
/// The checkpoint is the latest one already signed when it includes every entry of the request
/// (under load most requests find one, so the leader signs about one checkpoint per applied
/// batch rather than one per request); otherwise the whole tree's is signed.
fn receipts(
    view: &LedgerView,
    checkpoints: &Checkpoints,
    keys: &KeyCache,
    appended: Vec<Result<Appended, LedgerFailure>>,
) -> Vec<Result<Receipt, LedgerFailure>> {
    let mut needed: HashMap<String, u64> = HashMap::new();
    for a in appended.iter().flatten() {
        let size = needed.entry(a.tenant.clone()).or_default();
        *size = (*size).max(a.index.saturating_add(1));
    }
    let mut trees = HashMap::new();
    appended
        .into_iter()
        .map(|a| {
            let a = a?;
            if !trees.contains_key(&a.tenant) {
                let tree = view.tree(&a.tenant).map_err(storage_failure)?;
                let min_size = needed.get(&a.tenant).copied().unwrap_or(tree.size());
                let checkpoint = checkpoints
                    .covering(&tree, min_size)
                    .map_err(|e| LedgerFailure::unavailable(format!("checkpoint: {e}")))?;
                let vkey = checkpoints
                    .verifier_key(tree.info())
                    .map_err(|e| LedgerFailure::unavailable(format!("checkpoint key: {e}")))?;
                trees.insert(a.tenant.clone(), (tree, checkpoint, vkey));
            }
            let Some((tree, checkpoint, vkey)) = trees.get(&a.tenant) else {
                return Err(LedgerFailure::unavailable("tree missing"));
            };
            receipt_for(tree, checkpoint, vkey, keys, a.index, a.duplicate)
        })
        .collect()
}

pub(crate) fn storage_failure(e: StoreError) -> LedgerFailure {
    match e {
        StoreError::UnknownTenant(t) => {
            LedgerFailure::new("unknown_tenant", format!("tenant {t:?} has no ledger"))
        }
        StoreError::NotFound(what) => LedgerFailure::new("not_found", format!("no {what}")),
        StoreError::Proof(p) => LedgerFailure::new("invalid_request", p.to_string()),
        other => {
            tracing::error!(error = %other, "ledger storage failed");
            LedgerFailure::unavailable("storage error")
        }
    }
}

/// A receipt (and its bundle) for entry `index`, against `checkpoint`.
pub(crate) fn receipt_for(
    tree: &crate::storage::TenantTree,
    checkpoint: &crate::checkpoint::SignedCheckpoint,
    vkey: &caretrail_ledger_proofs::VerifierKey,
    key_cache: &KeyCache,
    index: u64,
    duplicate: bool,
) -> Result<Receipt, LedgerFailure> {
    let entry = tree.entry(index).map_err(storage_failure)?;
    let proof = tree
        .inclusion_proof(index, checkpoint.size)
        .map_err(storage_failure)?;
    let suite = tree.info().suite;
    let cache_key = (
        entry.tenant.clone(),
        entry.submitter.clone(),
        entry.key_id.clone(),
    );
    let submitter_key = if entry.submitter == REGISTRAR {
        key_cache.get_or_parse(cache_key, &tree.info().registrar_key)
    } else {
        match tree
            .key(&entry.submitter, &entry.key_id)
            .map_err(storage_failure)?
        {
            Some(k) => key_cache.get_or_parse(cache_key, &k.public_key),
            None => None,
        }
    };
    let keys = BundleKeys::new(vkey, &[], submitter_key.as_deref());
    let leaf = tree.leaf_hash(index).map_err(storage_failure)?;
    let bundle = ProofBundle::new(
        suite,
        &entry,
        checkpoint.size,
        &proof,
        &checkpoint.note,
        keys,
    )
    .map_err(|e| LedgerFailure::unavailable(format!("bundle: {e}")))?;
    Ok(Receipt {
        tenant: entry.tenant.clone(),
        index,
        leaf_hash: leaf.to_hex(),
        duplicate,
        timestamp_ms: entry.timestamp_ms,
        tree_size: checkpoint.size,
        root: checkpoint.root.to_hex(),
        checkpoint: checkpoint.note.clone(),
        inclusion_proof: hex_hashes(&proof),
        bundle,
    })
}

/// Raft progress of one follower, as the leader sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerProgress {
    pub matched_index: Option<u64>,
    /// Raft entries the follower is behind the leader's last log index.
    pub lag: u64,
}

/// What the admin API reports about a node.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    pub node_id: u64,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Every member (voters and learners) with its cluster address.
    pub members: BTreeMap<u64, String>,
    pub voters: Vec<u64>,
    /// Leader only: per-follower progress.
    pub replication: Option<BTreeMap<u64, PeerProgress>>,
    pub millis_since_quorum_ack: Option<u64>,
    /// Ledger entries this node holds (all tenants).
    pub entries: u64,
    /// Tree nodes at levels ≥ 5 held in memory for proofs.
    pub cached_upper_nodes: u64,
    /// Leaf hashes held in memory for proofs (at most `ledger_leaf_hash_cache_mb` / 32 B):
    /// fewer than `entries` means some proofs read a block of leaf hashes from disk.
    pub cached_leaf_hashes: u64,
    /// Whether the cached nodes are still being loaded from disk (after a start or a snapshot
    /// install; the node serves meanwhile, its proofs reading the rest from disk).
    pub loading_tree_nodes: bool,
}

/// Members as openraft wants them.
pub fn basic_nodes(members: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, BasicNode> {
    members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect()
}
