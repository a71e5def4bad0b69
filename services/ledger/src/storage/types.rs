//! The Raft type configuration and the replicated commands with their responses.
//!
//! Everything here goes through the Raft log, so it must be deterministic to apply: the leader
//! assigns timestamps *before* proposing ([`AppendRequest::timestamp_ms`]), and signature checks
//! happen before proposing, never in the state machine.

use caretrail_crypto::{HASH_LEN, HashValue, Suite};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// Raft types of the ledger: node ids are `u64`, nodes carry their address.
    pub TypeConfig:
        D = LedgerCommand,
        R = LedgerResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot_data::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type RaftEntry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type RaftStorageError = openraft::StorageError<NodeId>;

/// A command replicated through the Raft log and applied to the ledger state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerCommand {
    /// Create a tenant's log with its hash suite. Entries for a tenant are refused until it is
    /// registered. Registering again with the same suite is a no-op; with another suite it is
    /// refused.
    RegisterTenant(TenantSpec),
    /// Append entries (possibly for several tenants) in order. Each entry gets its own result;
    /// a refused entry appends nothing and does not affect the others.
    AppendBatch { entries: Vec<AppendRequest> },
    /// Record a witness cosignature of a tenant's checkpoint (checked by the leader before
    /// proposing). Recording the same witness at the same size again replaces the line.
    AddCosignature(CosignatureSpec),
}

/// A witness cosignature to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignatureSpec {
    pub tenant: String,
    /// Tree size of the cosigned checkpoint.
    pub size: u64,
    /// Root hash of the cosigned checkpoint.
    pub root: [u8; HASH_LEN],
    /// Witness key name (the signed-note key name of the cosignature line).
    pub witness: String,
    /// The signature line, `— <name> <base64(key id ‖ timestamp ‖ signature)>`.
    pub line: String,
}

/// What a tenant's log is created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSpec {
    /// Tenant id (1..=128 bytes, no control characters).
    pub tenant: String,
    /// Hash suite of the tenant's Merkle tree (SHA-256 for `intl`, SM3 for `gm`).
    pub suite: Suite,
    /// Checkpoint origin line (e.g. `caretrail.eu/<tenant>`).
    pub origin: String,
    /// The ledger's checkpoint verifier key for this tenant (a signed-note `vkey`) or the id
    /// of the key; public material only, never a private key.
    pub checkpoint_key: String,
    /// PEM SubjectPublicKeyInfo of the tenant's registrar: the key that signs
    /// `institution.key_registered` / `institution.key_revoked` entries (see
    /// [`super::keys`]).
    pub registrar_key: String,
}

/// One submission to append, as proposed by the leader: the submitter-signed fields plus the
/// leader-assigned timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    pub tenant: String,
    /// Entry kind, e.g. `record.anchored`.
    pub kind: String,
    /// Submitting institution id.
    pub submitter: String,
    /// Client request id: a second append with the same (tenant, submitter, request id)
    /// returns the first one's index and appends nothing. Empty means "not deduplicated".
    pub request_id: String,
    /// Id of the submitter key that signed the payload.
    pub key_id: String,
    /// Canonical payload bytes (ids and hashes only).
    pub payload: Vec<u8>,
    /// Submitter's signature over the canonical signing input (checked before proposing).
    pub signature: Vec<u8>,
    /// Leader time of the append, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// The state machine's answer to one applied Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerResponse {
    /// Blank and membership entries.
    Empty,
    /// Answer to [`LedgerCommand::RegisterTenant`].
    Tenant(Result<TenantRegistered, Refusal>),
    /// Answer to [`LedgerCommand::AppendBatch`], one result per request, in order.
    Appended(Vec<Result<Appended, Refusal>>),
    /// Answer to [`LedgerCommand::AddCosignature`].
    Cosigned(Result<(), Refusal>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRegistered {
    pub tenant: String,
    pub suite: Suite,
    /// False when the tenant already existed with the same suite.
    pub created: bool,
}

/// An entry that is in the log (just appended or, for a repeated request id, appended before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub tenant: String,
    /// The entry's index in the tenant's log (its Merkle leaf index).
    pub index: u64,
    pub suite: Suite,
    /// `H(0x00 ‖ encoded entry)` in the tenant's suite.
    pub leaf_hash: [u8; HASH_LEN],
    /// True when the request id had been appended before: nothing new was appended.
    pub duplicate: bool,
}

impl Appended {
    pub fn leaf_hash(&self) -> HashValue {
        HashValue::new(self.suite, self.leaf_hash)
    }
}

/// Why a command or one entry of a batch was not applied (nothing was appended for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("unknown tenant {tenant:?}")]
    UnknownTenant { tenant: String },
    #[error("invalid entry: {reason}")]
    InvalidEntry { reason: String },
    #[error("invalid tenant: {reason}")]
    InvalidTenant { reason: String },
    #[error("tenant {tenant:?} already exists with suite {existing}")]
    TenantSuiteConflict { tenant: String, existing: Suite },
    #[error(
        "request id {request_id:?} of {submitter:?} was already used for different content (entry {index})"
    )]
    RequestIdConflict {
        submitter: String,
        request_id: String,
        index: u64,
    },
    #[error("tenant {tenant:?} log is full")]
    LogFull { tenant: String },
    #[error("{submitter:?} has no registered signing key")]
    UnknownInstitution { submitter: String },
    #[error("key {key_id:?} of {submitter:?} is not registered")]
    UnknownKey { submitter: String, key_id: String },
    #[error("key {key_id:?} of {submitter:?} was revoked by entry {revoked_at}")]
    KeyRevoked {
        submitter: String,
        key_id: String,
        revoked_at: u64,
    },
    #[error("cosignature refused: {reason}")]
    InvalidCosignature { reason: String },
}
