//! The ledger's service contract: what other services send to append entries and register
//! tenants (bus RPC service [`SERVICE`], or `POST /internal/ledger/*`), and the payloads the
//! ledger itself interprets (institution keys).

use caretrail_ledger_proofs::ProofBundle;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Bus RPC service name of the ledger.
pub const SERVICE: &str = "ledger";
/// RPC method: [`AppendIn`] → one receipt or error per submission, after commit.
pub const METHOD_APPEND: &str = "append";
/// RPC method: [`TenantIn`] → `{}` (idempotent).
pub const METHOD_REGISTER_TENANT: &str = "register_tenant";
/// RPC method: [`BundlesIn`] → [`BundlesOut`]: proof bundles of entries against the latest
/// checkpoint (for auditors' trails).
pub const METHOD_BUNDLES: &str = "bundles";
/// Most entries one `bundles` call may name.
pub const MAX_BUNDLES: usize = 200;
/// RPC method: [`WitnessViewIn`] → [`WitnessViewOut`]: the latest signed checkpoint and a
/// consistency proof from the size the witness last accepted.
pub const METHOD_WITNESS_VIEW: &str = "witness_view";
/// RPC method: [`CosignatureIn`] → `{}`: records a witness cosignature (checked against the
/// witness's registered keys).
pub const METHOD_COSIGN: &str = "cosign";

/// Submitter name of a tenant's registrar (the identity service, signing with the tenant CA
/// key): the only submitter of key entries.
pub const REGISTRAR: &str = "registrar";
/// Entry kind registering an institution key (payload [`KeyRegistration`]).
pub const KIND_KEY_REGISTERED: &str = "institution.key_registered";
/// Entry kind revoking an institution key (payload [`KeyRevocation`]).
pub const KIND_KEY_REVOKED: &str = "institution.key_revoked";

/// One signed submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionIn {
    pub tenant: String,
    pub kind: String,
    /// Institution id (or [`REGISTRAR`]).
    pub submitter: String,
    /// Unique per submitter: a repeated request id returns the first entry.
    pub request_id: String,
    /// Hex key id (`caretrail_crypto::KeyId`) of the signing key.
    pub key_id: String,
    /// Base64 canonical payload (ids and hashes only).
    pub payload: String,
    /// Base64 signature over the CTLS signing input (see `caretrail-ledger-proofs`).
    pub signature: String,
}

/// A batch of submissions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppendIn {
    pub submissions: Vec<SubmissionIn>,
}

/// Creates a tenant's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantIn {
    pub tenant: String,
    /// `intl` or `gm`.
    pub suite: String,
    /// PEM public key of the tenant's registrar (the tenant CA key).
    pub registrar_key_pem: String,
}

/// Payload of an `institution.key_registered` entry (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRegistration {
    pub institution: String,
    /// Hex `caretrail_crypto::KeyId` of the key; must match `public_key`.
    pub key_id: String,
    /// `ed25519`, `sm2` or `ecdsa-p256`; must match `public_key`.
    pub algorithm: String,
    /// Standard base64 of the SubjectPublicKeyInfo DER.
    pub public_key: String,
}

/// Payload of an `institution.key_revoked` entry (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevocation {
    pub institution: String,
    pub key_id: String,
    #[serde(default)]
    pub reason: String,
}

/// Why an append (or another ledger request) was refused or failed. `code` is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LedgerFailure {
    pub code: String,
    pub message: String,
}

impl LedgerFailure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// True for failures where retrying later can succeed (no leader, node stopping).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code.as_str(),
            "no_leader" | "unavailable" | "not_leader"
        )
    }

    pub fn unavailable(what: impl std::fmt::Display) -> Self {
        Self::new("unavailable", format!("the ledger is unavailable: {what}"))
    }
}

/// Proof that an entry is in the ledger, returned once it is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tenant: String,
    pub index: u64,
    /// Hex leaf hash `H(0x00 ‖ entry)`.
    pub leaf_hash: String,
    /// True when the request id had been appended before (this is the original entry).
    pub duplicate: bool,
    pub timestamp_ms: u64,
    /// Size of the checkpoint the proof is against.
    pub tree_size: u64,
    /// Hex root hash at `tree_size`.
    pub root: String,
    /// Signed checkpoint note (c2sp.org/tlog-checkpoint).
    pub checkpoint: String,
    /// Hex inclusion proof of `index` in the tree of `tree_size` entries.
    pub inclusion_proof: Vec<String>,
    /// Everything `caretrail verify bundle` needs, in one document.
    pub bundle: ProofBundle,
}

/// One result of a batch append: a receipt or the reason it was refused.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppendResultOut {
    #[schema(value_type = Object)]
    Receipt(Box<Receipt>),
    #[schema(value_type = Object)]
    Error(LedgerFailure),
}

/// Reply to [`AppendIn`]: one result per submission, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppendOut {
    pub results: Vec<AppendResultOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundlesIn {
    pub tenant: String,
    pub indexes: Vec<u64>,
}

/// One bundle or the reason there is none (e.g. `not_found`), per requested index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleResult {
    Bundle(Box<ProofBundle>),
    Error(LedgerFailure),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundlesOut {
    pub results: Vec<BundleResult>,
}

/// What a witness asks for: the tenant's latest checkpoint, proven to extend the one of
/// `since` entries it accepted before (0 on first contact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessViewIn {
    pub tenant: String,
    pub since: u64,
    /// Also prove the same checkpoint extends this size (what the witness last cosigned).
    #[serde(default)]
    pub cosigned_since: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessViewOut {
    pub tree_size: u64,
    /// The signed checkpoint note (c2sp.org/tlog-checkpoint), with any cosignature lines.
    pub checkpoint: String,
    /// The ledger's checkpoint verifier key for the tenant (signed-note `vkey`).
    pub ledger_key: String,
    /// Hex consistency proof from `since` to `tree_size` (empty when `since` is 0, equal to
    /// `tree_size`, or beyond it — the last is for the witness to flag).
    pub consistency: Vec<String>,
    /// Hex consistency proof from `cosigned_since` to `tree_size` (same rules).
    #[serde(default)]
    pub cosigned_consistency: Vec<String>,
}

/// A witness cosignature over the tenant's checkpoint of `tree_size` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignatureIn {
    pub tenant: String,
    /// The witnessing institution (the line's key name).
    pub witness: String,
    pub tree_size: u64,
    pub line: String,
}
