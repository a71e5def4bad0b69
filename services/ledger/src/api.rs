//! HTTP API of the ledger service.
//!
//! Public, through the gateway, tenant-scoped by the caller's token (`/v1/ledger/**`): the
//! latest checkpoint with its cosignatures, entries, inclusion and consistency proofs, proof
//! bundles, the tenant's keys, and witness cosignature submission. Checkpoints, proofs and
//! keys are public to every member of the tenant; entries only to their readers
//! ([`crate::readers`]).
//!
//! Internal, on the service port but not routed by the gateway (`/internal/ledger/**`):
//! append (single or batch) and tenant registration, used by the other services (which may
//! also use the bus RPC, see [`crate::rpc`]).

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_contracts::auth::policy::TenantMember;
pub use caretrail_contracts::ledger::{
    AppendIn, AppendOut, AppendResultOut, SubmissionIn, TenantIn,
};
use caretrail_crypto::{HashValue, Suite, VerifyingKey};
use caretrail_ledger_proofs::{ProofBundle, Submission};
use caretrail_platform::auth::Guarded;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::LedgerError;
use crate::checkpoint::SignedCheckpoint;
use crate::node::{LedgerFailure, LedgerNode, SignedSubmission, blocking, storage_failure};
use crate::readers::{self, Reader};
use crate::storage::{StoredCosignature, TenantTree};

pub type Node = web::Data<Arc<LedgerNode>>;

/// Most entries returned by one range request.
pub const MAX_RANGE: u64 = 1000;

async fn with_tree<T: Send + 'static>(
    node: &Node,
    tenant: String,
    f: impl FnOnce(&TenantTree, &LedgerNode) -> Result<T, LedgerFailure> + Send + 'static,
) -> Result<T, LedgerError> {
    let node = node.get_ref().clone();
    Ok(blocking(move || {
        let tree = node.view.tree(&tenant).map_err(storage_failure)?;
        f(&tree, &node)
    })
    .await?)
}

/// Read-your-writes on followers: a client holding a receipt may ask any node for an entry or
/// size the leader has committed but this node has not applied yet. Wait briefly for it.
async fn caught_up(node: &Node, tenant: &str, size: u64) {
    const WAIT: std::time::Duration = std::time::Duration::from_millis(1000);
    if node.is_leader() {
        return;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = node.view.clone();
        let t = tenant.to_string();
        let have = tokio::task::spawn_blocking(move || view.tenant(&t))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .map_or(0, |i| i.size);
        if have >= size || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// checkpoints

/// A signed checkpoint with the witness cosignatures recorded for its size.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointOut {
    pub tenant: String,
    /// `intl` (SHA-256, Ed25519) or `gm` (SM3, SM2).
    pub suite: String,
    pub origin: String,
    pub tree_size: u64,
    /// Hex root hash.
    pub root: String,
    /// The signed note: checkpoint body, the ledger's signature line, then one line per
    /// witness cosignature.
    pub checkpoint: String,
    /// The witness cosignature lines (also appended to `checkpoint`).
    pub cosignatures: Vec<CosignatureOut>,
    /// The ledger's verifier key for this tenant (pin it).
    pub ledger_key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignatureOut {
    /// Witness institution id (the cosignature key name).
    pub witness: String,
    pub line: String,
}

fn with_cosignatures(note: &str, cosigs: &[StoredCosignature]) -> String {
    let mut out = note.to_string();
    for c in cosigs {
        out.push_str(&c.line);
        out.push('\n');
    }
    out
}

fn checkpoint_out(
    tree: &TenantTree,
    _node: &LedgerNode,
    signed: &SignedCheckpoint,
) -> Result<CheckpointOut, LedgerFailure> {
    let cosigs: Vec<StoredCosignature> = tree
        .cosignatures(signed.size)
        .map_err(storage_failure)?
        .into_iter()
        .filter(|c| c.root == signed.root)
        .collect();
    let info = tree.info();
    Ok(CheckpointOut {
        tenant: info.tenant.clone(),
        suite: info.suite.to_string(),
        origin: info.origin.clone(),
        tree_size: signed.size,
        root: signed.root.to_hex(),
        checkpoint: with_cosignatures(&signed.note, &cosigs),
        cosignatures: cosigs
            .into_iter()
            .map(|c| CosignatureOut {
                witness: c.witness,
                line: c.line,
            })
            .collect(),
        ledger_key: info.checkpoint_key.clone(),
    })
}

fn sign_at(
    tree: &TenantTree,
    node: &LedgerNode,
    size: u64,
) -> Result<Arc<SignedCheckpoint>, LedgerFailure> {
    if size > tree.size() {
        return Err(LedgerFailure::new(
            "not_found",
            format!(
                "no checkpoint of size {size}; the log has {} entries",
                tree.size()
            ),
        ));
    }
    node.checkpoints
        .sign_at(tree, size)
        .map_err(|e| LedgerFailure::new("unavailable", format!("checkpoint: {e}")))
}

#[utoipa::path(get, operation_id = "ledger_latest_checkpoint", path = "/v1/ledger/checkpoint", tag = "ledger",
    responses((status = 200, body = CheckpointOut, description = "The latest signed checkpoint of the caller's tenant, with any cosignatures"),
              (status = 404, body = caretrail_platform::Problem, description = "The tenant has no ledger")),
    security(("bearer" = [])))]
/// The latest signed checkpoint (c2sp.org/tlog-checkpoint) of the caller's tenant.
pub async fn latest_checkpoint(
    node: Node,
    g: Guarded<TenantMember>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let out = with_tree(&node, tenant, |tree, node| {
        let signed = sign_at(tree, node, tree.size())?;
        checkpoint_out(tree, node, &signed)
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[utoipa::path(get, operation_id = "ledger_checkpoint_at", path = "/v1/ledger/checkpoints/{size}", tag = "ledger",
    params(("size" = u64, Path, description = "Tree size")),
    responses((status = 200, body = CheckpointOut, description = "The signed checkpoint of the first `size` entries, with its cosignatures"),
              (status = 404, body = caretrail_platform::Problem, description = "No such size")),
    security(("bearer" = [])))]
/// The signed checkpoint of the first `size` entries.
pub async fn checkpoint_at(
    node: Node,
    g: Guarded<TenantMember>,
    size: web::Path<u64>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let size = size.into_inner();
    caught_up(&node, &tenant, size).await;
    let out = with_tree(&node, tenant, move |tree, node| {
        let signed = sign_at(tree, node, size)?;
        checkpoint_out(tree, node, &signed)
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[utoipa::path(get, operation_id = "ledger_cosigned_checkpoint", path = "/v1/ledger/cosigned-checkpoint", tag = "ledger",
    responses((status = 200, body = CheckpointOut, description = "The newest checkpoint that witnesses cosigned"),
              (status = 404, body = caretrail_platform::Problem, description = "Nothing cosigned yet")),
    security(("bearer" = [])))]
/// The newest checkpoint with at least one witness cosignature.
pub async fn cosigned_checkpoint(
    node: Node,
    g: Guarded<TenantMember>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let out = with_tree(&node, tenant, |tree, node| {
        let size = tree
            .latest_cosigned_size()
            .map_err(storage_failure)?
            .ok_or_else(|| LedgerFailure::new("not_found", "no checkpoint has been cosigned"))?;
        let signed = sign_at(tree, node, size)?;
        checkpoint_out(tree, node, &signed)
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// A witness cosignature over the checkpoint of `tree_size` entries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CosignatureIn {
    pub tree_size: u64,
    /// The signature line, `— <institution id> <base64(key id ‖ timestamp ‖ signature)>`
    /// (c2sp.org/tlog-cosignature), made with one of the institution's registered keys.
    pub line: String,
}

#[utoipa::path(post, operation_id = "ledger_cosign", path = "/v1/ledger/cosignatures", tag = "ledger",
    request_body = CosignatureIn,
    responses((status = 201, body = CheckpointOut, description = "Recorded; the checkpoint with its cosignatures"),
              (status = 403, body = caretrail_platform::Problem, description = "The caller is not an institution's auditor or admin"),
              (status = 422, body = caretrail_platform::Problem, description = "The cosignature does not verify")),
    security(("bearer" = [])))]
/// Submit a witness cosignature (e.g. the regulator's) after checking the checkpoint's
/// consistency with the last one the witness accepted.
pub async fn cosign(
    node: Node,
    g: Guarded<TenantMember>,
    input: web::Json<CosignatureIn>,
) -> Result<HttpResponse, LedgerError> {
    use caretrail_contracts::auth::Role;
    let tenant = g.tenant()?.to_string();
    let institution = g
        .claims()
        .institution
        .as_ref()
        .map(|i| i.to_string())
        .ok_or_else(|| LedgerError::Forbidden("witnesses are institutions".into()))?;
    if !(g.claims().has_role(Role::Auditor) || g.claims().has_role(Role::InstitutionAdmin)) {
        return Err(LedgerError::Forbidden(
            "cosigning needs the auditor or institution_admin role".into(),
        ));
    }
    let input = input.into_inner();
    node.cosign(tenant.clone(), institution, input.tree_size, input.line)
        .await?;
    let size = input.tree_size;
    let out = with_tree(&node, tenant, move |tree, node| {
        let signed = sign_at(tree, node, size)?;
        checkpoint_out(tree, node, &signed)
    })
    .await?;
    Ok(HttpResponse::Created().json(out))
}

/// The latest checkpoint with a consistency proof from `since`, for the audit service's
/// witness (bus RPC). A follower that has not yet applied `since` entries says so rather than
/// show an older tree, which the witness would take for a rewritten history; the leader
/// answers with whatever it holds.
pub async fn witness_view(
    node: &Node,
    input: caretrail_contracts::ledger::WitnessViewIn,
) -> Result<caretrail_contracts::ledger::WitnessViewOut, LedgerError> {
    caught_up(node, &input.tenant, input.since).await;
    // A leader just elected may not have applied every committed entry yet; a smaller tree
    // from it would read as a truncated history. After a linearizable read barrier (applied
    // up to the commit index) a smaller tree is what the log really holds.
    let leader = node.is_leader() && node.raft.ensure_linearizable().await.is_ok();
    with_tree(node, input.tenant, move |tree, node| {
        let size = tree.size();
        if size < input.since && !leader {
            return Err(LedgerFailure::unavailable(format!(
                "this node holds {size} entries, fewer than the {} asked about",
                input.since
            )));
        }
        let signed = sign_at(tree, node, size)?;
        let out = checkpoint_out(tree, node, &signed)?;
        let proof_from = |from: u64| -> Result<Vec<String>, LedgerFailure> {
            if from == 0 || from >= size {
                return Ok(Vec::new());
            }
            Ok(tree
                .consistency_proof(from, size)
                .map_err(storage_failure)?
                .iter()
                .map(HashValue::to_hex)
                .collect())
        };
        Ok(caretrail_contracts::ledger::WitnessViewOut {
            tree_size: size,
            checkpoint: out.checkpoint,
            ledger_key: out.ledger_key,
            consistency: proof_from(input.since)?,
            cosigned_consistency: proof_from(input.cosigned_since)?,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// entries

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryOut {
    pub index: u64,
    pub timestamp_ms: u64,
    pub kind: String,
    pub submitter: String,
    pub request_id: String,
    pub key_id: String,
    /// Base64 of the canonical payload bytes.
    pub payload: String,
    /// The payload parsed, when it is JSON (it normally is: RFC 8785 canonical JSON).
    #[schema(value_type = Object)]
    pub payload_json: Option<serde_json::Value>,
    /// Base64 submitter signature.
    pub signature: String,
    /// Hex leaf hash.
    pub leaf_hash: String,
}

fn entry_out(
    tree: &TenantTree,
    e: caretrail_ledger_proofs::Entry,
) -> Result<EntryOut, LedgerFailure> {
    let leaf = tree.leaf_hash(e.index).map_err(storage_failure)?;
    Ok(EntryOut {
        index: e.index,
        timestamp_ms: e.timestamp_ms,
        kind: e.kind,
        submitter: e.submitter,
        request_id: e.request_id,
        key_id: e.key_id,
        payload_json: serde_json::from_slice(&e.payload).ok(),
        payload: B64.encode(&e.payload),
        signature: B64.encode(&e.signature),
        leaf_hash: leaf.to_hex(),
    })
}

/// Entry `index` if `reader` may read it; one it may not read is "not found", like one that
/// does not exist.
fn readable_entry(
    tree: &TenantTree,
    reader: &Reader,
    index: u64,
) -> Result<caretrail_ledger_proofs::Entry, LedgerFailure> {
    if index >= tree.size() {
        return Err(no_such_entry(index));
    }
    let e = tree.entry(index).map_err(storage_failure)?;
    if reader.may_read(&e) {
        Ok(e)
    } else {
        Err(no_such_entry(index))
    }
}

fn no_such_entry(index: u64) -> LedgerFailure {
    LedgerFailure::new("not_found", format!("no entry {index} that you may read"))
}

#[utoipa::path(get, operation_id = "ledger_entry", path = "/v1/ledger/entries/{index}", tag = "ledger",
    params(("index" = u64, Path, description = "Entry index")),
    responses((status = 200, body = EntryOut, description = "The entry"),
              (status = 404, body = caretrail_platform::Problem, description = "No such entry, or one the caller may not read (the same answer)")),
    security(("bearer" = [])))]
/// One entry of the caller's tenant's log, if the caller may read it: the whole log for
/// auditors and tenant admins, else what the caller's institution submitted or is named in.
pub async fn entry(
    node: Node,
    g: Guarded<TenantMember>,
    index: web::Path<u64>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let reader = Reader::of(g.claims());
    let index = index.into_inner();
    caught_up(&node, &tenant, index.saturating_add(1)).await;
    let out = with_tree(&node, tenant, move |tree, _| {
        entry_out(tree, readable_entry(tree, &reader, index)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RangeQuery {
    /// First index (default 0).
    pub start: Option<u64>,
    /// At most this many entries (default and maximum 1000).
    #[param(minimum = 1, maximum = 1000, default = 1000)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntriesOut {
    /// The entries of the range the caller may read, in index order.
    pub entries: Vec<EntryOut>,
    /// Tree size when the range was read.
    pub tree_size: u64,
    /// Where the next page starts, if the log goes on. A caller who reads only some entries
    /// may get fewer than `limit` (even none) with a `next`: each request examines at most
    /// 10,000 entries.
    pub next: Option<u64>,
}

#[utoipa::path(get, operation_id = "ledger_entries", path = "/v1/ledger/entries", tag = "ledger",
    params(RangeQuery),
    responses((status = 200, body = EntriesOut, description = "The entries of a range the caller may read, in index order"),
              (status = 400, body = caretrail_platform::Problem, description = "Bad limit")),
    security(("bearer" = [])))]
/// A range of entries: all of them for auditors and tenant admins (apps: `audit:read`), else
/// those the caller's institution submitted or is named in.
pub async fn entries(
    node: Node,
    g: Guarded<TenantMember>,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let reader = Reader::of(g.claims());
    let start = q.start.unwrap_or(0);
    let limit = q.limit.unwrap_or(MAX_RANGE);
    if limit == 0 || limit > MAX_RANGE {
        return Err(LedgerError::BadRequest(format!(
            "limit must be 1..={MAX_RANGE}"
        )));
    }
    let out = with_tree(&node, tenant, move |tree, _| {
        let size = tree.size();
        let scan = if reader.sees_everything() {
            limit
        } else {
            readers::SCAN_LIMIT
        };
        let mut entries = Vec::new();
        let mut at = start;
        while at < size && at - start < scan && (entries.len() as u64) < limit {
            let e = tree.entry(at).map_err(storage_failure)?;
            if reader.may_read(&e) {
                entries.push(entry_out(tree, e)?);
            }
            at += 1;
        }
        Ok(EntriesOut {
            entries,
            tree_size: size,
            next: (at < size).then_some(at),
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

// ---------------------------------------------------------------------------------------------
// proofs

#[derive(Debug, Deserialize, IntoParams)]
pub struct InclusionQuery {
    /// Entry index (or give `leaf_hash`).
    pub index: Option<u64>,
    /// Hex leaf hash (or give `index`).
    pub leaf_hash: Option<String>,
    /// Tree size to prove against (default: the current size).
    pub tree_size: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionOut {
    pub leaf_index: u64,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root: String,
    /// RFC 9162 inclusion proof, hex.
    pub hashes: Vec<String>,
}

#[utoipa::path(get, operation_id = "ledger_inclusion_proof", path = "/v1/ledger/proofs/inclusion", tag = "ledger",
    params(InclusionQuery),
    responses((status = 200, body = InclusionOut, description = "RFC 9162 inclusion proof"),
              (status = 400, body = caretrail_platform::Problem, description = "Bad parameters"),
              (status = 404, body = caretrail_platform::Problem, description = "No such entry or size")),
    security(("bearer" = [])))]
/// Inclusion proof of an entry (by index or leaf hash) in the tree of `tree_size` entries.
pub async fn inclusion(
    node: Node,
    g: Guarded<TenantMember>,
    q: web::Query<InclusionQuery>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let q = q.into_inner();
    let needed = q
        .tree_size
        .unwrap_or(0)
        .max(q.index.map_or(0, |i| i.saturating_add(1)));
    caught_up(&node, &tenant, needed).await;
    let out = with_tree(&node, tenant, move |tree, _| {
        let size = q.tree_size.unwrap_or(tree.size());
        let suite = tree.info().suite;
        let (index, proof) = match (q.index, q.leaf_hash) {
            (Some(index), None) => (
                index,
                tree.inclusion_proof(index, size).map_err(storage_failure)?,
            ),
            (None, Some(hex)) => {
                let leaf = HashValue::from_hex(suite, &hex).map_err(|_| {
                    LedgerFailure::new("invalid_request", "leaf_hash must be 64 hex digits")
                })?;
                tree.inclusion_proof_by_leaf(&leaf, size)
                    .map_err(storage_failure)?
            }
            _ => {
                return Err(LedgerFailure::new(
                    "invalid_request",
                    "give exactly one of index and leaf_hash",
                ));
            }
        };
        if index >= size {
            return Err(LedgerFailure::new(
                "invalid_request",
                format!("entry {index} is not in a tree of {size} entries"),
            ));
        }
        Ok(InclusionOut {
            leaf_index: index,
            leaf_hash: tree.leaf_hash(index).map_err(storage_failure)?.to_hex(),
            tree_size: size,
            root: tree.root_at(size).map_err(storage_failure)?.to_hex(),
            hashes: proof.iter().map(HashValue::to_hex).collect(),
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    /// Older tree size.
    pub from: u64,
    /// Newer tree size (default: the current size).
    pub to: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyOut {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    /// RFC 9162 consistency proof, hex.
    pub hashes: Vec<String>,
}

#[utoipa::path(get, operation_id = "ledger_consistency_proof", path = "/v1/ledger/proofs/consistency", tag = "ledger",
    params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyOut, description = "RFC 9162 consistency proof"),
              (status = 400, body = caretrail_platform::Problem, description = "Bad sizes"),
              (status = 404, body = caretrail_platform::Problem, description = "No such size")),
    security(("bearer" = [])))]
/// Consistency proof between the trees of `from` and `to` entries.
pub async fn consistency(
    node: Node,
    g: Guarded<TenantMember>,
    q: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let q = q.into_inner();
    caught_up(&node, &tenant, q.to.unwrap_or(0).max(q.from)).await;
    let out = with_tree(&node, tenant, move |tree, _| {
        let to = q.to.unwrap_or(tree.size());
        if q.from > to {
            return Err(LedgerFailure::new("invalid_request", "from must be ≤ to"));
        }
        let proof = tree
            .consistency_proof(q.from, to)
            .map_err(storage_failure)?;
        Ok(ConsistencyOut {
            from: q.from,
            to,
            from_root: tree.root_at(q.from).map_err(storage_failure)?.to_hex(),
            to_root: tree.root_at(to).map_err(storage_failure)?.to_hex(),
            hashes: proof.iter().map(HashValue::to_hex).collect(),
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct BundleQuery {
    /// Also prove that the checkpoint extends the one of this size (e.g. the last one the
    /// verifier pinned).
    pub since: Option<u64>,
}

#[utoipa::path(get, operation_id = "ledger_proof_bundle", path = "/v1/ledger/entries/{index}/bundle", tag = "ledger",
    params(("index" = u64, Path, description = "Entry index"), BundleQuery),
    responses((status = 200, body = Object, description = "A caretrail-proof-bundle/v1 document for `caretrail verify bundle`"),
              (status = 404, body = caretrail_platform::Problem, description = "No such entry, or one the caller may not read (the same answer)")),
    security(("bearer" = [])))]
/// Everything needed to verify one entry offline: the entry, its inclusion proof, the signed
/// checkpoint with cosignatures, the keys, and optionally a consistency proof.
pub async fn bundle(
    node: Node,
    g: Guarded<TenantMember>,
    index: web::Path<u64>,
    q: web::Query<BundleQuery>,
) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let reader = Reader::of(g.claims());
    let out = proof_bundle(&node, tenant, &reader, index.into_inner(), q.since).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// The proof bundle of entry `index` against the tenant's latest checkpoint (with a
/// consistency proof from `since` if given): for the HTTP API and the `bundles` RPC.
pub async fn proof_bundle(
    node: &Node,
    tenant: String,
    reader: &Reader,
    index: u64,
    since: Option<u64>,
) -> Result<ProofBundle, LedgerError> {
    caught_up(node, &tenant, index.saturating_add(1)).await;
    let reader = reader.clone();
    with_tree(node, tenant, move |tree, node| {
        if !reader.sees_everything() && index >= tree.size() {
            return Err(no_such_entry(index));
        }
        let signed = sign_at(tree, node, tree.size())?;
        let vkey = node
            .checkpoints
            .verifier_key(tree.info())
            .map_err(|e| LedgerFailure::new("unavailable", e.to_string()))?;
        let receipt = crate::node::receipt_for(tree, &signed, &vkey, &node.keys, index, false)?;
        let mut bundle = receipt.bundle;
        // Checked on the entry the bundle carries (read once): one the reader may not read is
        // "not found", like one that does not exist.
        if !reader.sees_everything() {
            let entry = caretrail_ledger_proofs::Entry::decode(&bundle.entry).map_err(|e| {
                storage_failure(crate::storage::StoreError::Corrupt(format!(
                    "entry {index} does not decode: {e}"
                )))
            })?;
            if !reader.may_read(&entry) {
                return Err(no_such_entry(index));
            }
        }
        bundle.cosignatures = tree
            .cosignatures(signed.size)
            .map_err(storage_failure)?
            .into_iter()
            .filter(|c| c.root == signed.root)
            .map(|c| c.line)
            .collect();
        if let Some(old) = since {
            if old > signed.size {
                return Err(LedgerFailure::new(
                    "invalid_request",
                    "since is beyond the tree",
                ));
            }
            let old_checkpoint = sign_at(tree, node, old)?;
            let proof = tree
                .consistency_proof(old, signed.size)
                .map_err(storage_failure)?;
            bundle = bundle.with_consistency(&old_checkpoint.note, &proof);
        }
        Ok(bundle)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// keys

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstitutionKeyOut {
    pub institution: String,
    pub key_id: String,
    pub algorithm: String,
    pub public_key_pem: String,
    /// Index of the `institution.key_registered` entry.
    pub registered_index: u64,
    /// Index of the `institution.key_revoked` entry, if revoked.
    pub revoked_index: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeysOut {
    pub tenant: String,
    pub suite: String,
    /// The ledger's checkpoint verifier key (signed-note vkey).
    pub ledger_key: String,
    /// The registrar's public key (signs institution key entries).
    pub registrar_key_pem: String,
    pub institution_keys: Vec<InstitutionKeyOut>,
}

#[utoipa::path(get, operation_id = "ledger_keys", path = "/v1/ledger/keys", tag = "ledger",
    responses((status = 200, body = KeysOut, description = "The tenant's ledger key, registrar key and institution key history")),
    security(("bearer" = [])))]
/// The keys a verifier needs: the ledger's checkpoint key, the registrar key and every
/// institution key with the entries that registered and revoked it.
pub async fn keys(node: Node, g: Guarded<TenantMember>) -> Result<HttpResponse, LedgerError> {
    let tenant = g.tenant()?.to_string();
    let out = with_tree(&node, tenant, |tree, _| {
        let info = tree.info();
        let registrar = VerifyingKey::from_spki_der(&info.registrar_key)
            .map_err(|e| LedgerFailure::new("unavailable", e.to_string()))?;
        let institution_keys = tree
            .keys(None)
            .map_err(storage_failure)?
            .into_iter()
            .filter_map(|k| {
                let public = VerifyingKey::from_spki_der(&k.public_key).ok()?;
                Some(InstitutionKeyOut {
                    institution: k.institution,
                    key_id: k.key_id,
                    algorithm: public.algorithm().to_string(),
                    public_key_pem: public.to_spki_pem(),
                    registered_index: k.registered_index,
                    revoked_index: k.revoked_index,
                })
            })
            .collect();
        Ok(KeysOut {
            tenant: info.tenant.clone(),
            suite: info.suite.to_string(),
            ledger_key: info.checkpoint_key.clone(),
            registrar_key_pem: registrar.to_spki_pem(),
            institution_keys,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

// ---------------------------------------------------------------------------------------------
// internal: append and tenant registration

/// The wire form of a signed submission.
pub fn submission_in(s: &SignedSubmission) -> SubmissionIn {
    SubmissionIn {
        tenant: s.submission.tenant.clone(),
        kind: s.submission.kind.clone(),
        submitter: s.submission.submitter.clone(),
        request_id: s.submission.request_id.clone(),
        key_id: s.submission.key_id.clone(),
        payload: B64.encode(&s.submission.payload),
        signature: B64.encode(&s.signature),
    }
}

/// Decodes a wire submission.
pub fn parse_submission(s: SubmissionIn) -> Result<SignedSubmission, LedgerFailure> {
    let payload = B64
        .decode(&s.payload)
        .map_err(|_| LedgerFailure::new("invalid_entry", "payload is not base64"))?;
    let signature = B64
        .decode(&s.signature)
        .map_err(|_| LedgerFailure::new("invalid_entry", "signature is not base64"))?;
    Ok(SignedSubmission {
        submission: Submission {
            tenant: s.tenant,
            kind: s.kind,
            submitter: s.submitter,
            request_id: s.request_id,
            key_id: s.key_id,
            payload,
        },
        signature,
    })
}

/// Most submissions in one append request.
pub const MAX_SUBMISSIONS: usize = 10_000;

/// Parses and appends; one result per submission.
pub async fn append_submissions(node: &LedgerNode, input: Vec<SubmissionIn>) -> AppendOut {
    let mut parsed = Vec::with_capacity(input.len());
    let mut slots = Vec::with_capacity(input.len());
    for s in input {
        match parse_submission(s) {
            Ok(p) => {
                slots.push(None);
                parsed.push(p);
            }
            Err(e) => slots.push(Some(e)),
        }
    }
    let mut results = node.append(parsed).await.into_iter();
    let results = slots
        .into_iter()
        .map(|slot| match slot {
            Some(e) => AppendResultOut::Error(e),
            None => match results.next() {
                Some(Ok(r)) => AppendResultOut::Receipt(Box::new(r)),
                Some(Err(e)) => AppendResultOut::Error(e),
                None => AppendResultOut::Error(LedgerFailure::new("unavailable", "missing result")),
            },
        })
        .collect();
    AppendOut { results }
}

/// `POST /internal/ledger/append`: batch append; 200 with one result per submission.
pub async fn internal_append(
    node: Node,
    input: web::Json<AppendIn>,
) -> Result<HttpResponse, LedgerError> {
    let input = input.into_inner();
    if input.submissions.is_empty() || input.submissions.len() > MAX_SUBMISSIONS {
        return Err(LedgerError::BadRequest(format!(
            "submissions must hold 1..={MAX_SUBMISSIONS} items"
        )));
    }
    Ok(HttpResponse::Ok().json(append_submissions(&node, input.submissions).await))
}

/// `POST /internal/ledger/entries`: append one; 201 with the receipt or problem+json.
pub async fn internal_append_one(
    node: Node,
    input: web::Json<SubmissionIn>,
) -> Result<HttpResponse, LedgerError> {
    let mut out = append_submissions(&node, vec![input.into_inner()]).await;
    match out.results.pop() {
        Some(AppendResultOut::Receipt(r)) => Ok(HttpResponse::Created().json(r)),
        Some(AppendResultOut::Error(e)) => Err(e.into()),
        None => Err(LedgerFailure::new("unavailable", "missing result").into()),
    }
}

pub async fn register_tenant(node: &LedgerNode, input: TenantIn) -> Result<(), LedgerFailure> {
    let suite: Suite = input
        .suite
        .parse()
        .map_err(|_| LedgerFailure::new("invalid_tenant", "suite must be intl or gm"))?;
    node.register_tenant(input.tenant, suite, input.registrar_key_pem)
        .await
}

/// `POST /internal/ledger/tenants`: create a tenant's log (idempotent).
pub async fn internal_register_tenant(
    node: Node,
    input: web::Json<TenantIn>,
) -> Result<HttpResponse, LedgerError> {
    register_tenant(&node, input.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /internal/ledger/status`: this node's Raft status.
pub async fn internal_status(node: Node) -> HttpResponse {
    HttpResponse::Ok().json(node.status())
}
