//! Proof bundles: everything needed to verify one ledger entry offline.

use std::fmt;

use caretrail_crypto::{HashValue, Suite, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, OpenedCheckpoint};
use crate::entry::Entry;
use crate::error::{ProofError, Result};
use crate::merkle::{verify_consistency, verify_inclusion};
use crate::note::{Note, NoteSignature, VerifiedSignature, VerifierKey};

/// Value of [`ProofBundle::format`].
pub const BUNDLE_FORMAT: &str = "caretrail-proof-bundle/v1";
/// Largest bundle [`ProofBundle::from_json`] accepts, in bytes.
pub const MAX_BUNDLE_LEN: usize = 4 * 1024 * 1024;
/// Most hashes accepted in one proof (an inclusion proof has ≤ 64, a consistency proof ≤ 128).
pub const MAX_PROOF_HASHES: usize = 130;

/// The JSON document `caretrail verify` checks. Hashes are lowercase hex, bytes standard base64.
///
/// ```json
/// {
///   "format": "caretrail-proof-bundle/v1",
///   "suite": "intl",
///   "entry": "<base64 of the CTLE-encoded entry>",
///   "inclusion": { "leaf_index": 5, "tree_size": 8, "hashes": ["<hex>", "..."] },
///   "checkpoint": "<signed checkpoint note, may include cosignature lines>",
///   "cosignatures": ["— witness.example/w1 <base64>"],
///   "consistency": { "old_checkpoint": "<signed note>", "hashes": ["<hex>"] },
///   "keys": {
///     "ledger": "<vkey>",
///     "witnesses": ["<vkey>"],
///     "submitter_public_key_pem": "-----BEGIN PUBLIC KEY-----\n..."
///   }
/// }
/// ```
///
/// `cosignatures` (extra lines appended to the checkpoint note) and `consistency` (a proof that
/// `checkpoint` extends an earlier checkpoint, e.g. one a regulator pinned) are optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    pub format: String,
    pub suite: Suite,
    #[serde(with = "crate::serde_util::base64_bytes")]
    pub entry: Vec<u8>,
    pub inclusion: BundleInclusion,
    pub checkpoint: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosignatures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<BundleConsistency>,
    pub keys: BundleKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInclusion {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConsistency {
    /// Signed note of the earlier checkpoint.
    pub old_checkpoint: String,
    /// Consistency proof from the earlier checkpoint's size to the bundle checkpoint's size.
    pub hashes: Vec<String>,
}

/// Public verification material published by the tenant. [`verify_bundle`] only uses it through
/// [`TrustAnchors::from_bundle`]; verifiers should pin these keys out of band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleKeys {
    /// The ledger's checkpoint key (vkey).
    pub ledger: String,
    #[serde(default)]
    pub witnesses: Vec<String>,
    /// The submitting institution's SPKI PEM public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter_public_key_pem: Option<String>,
}

impl BundleKeys {
    pub fn new(
        ledger: &VerifierKey,
        witnesses: &[VerifierKey],
        submitter: Option<&VerifyingKey>,
    ) -> Self {
        Self {
            ledger: ledger.to_vkey(),
            witnesses: witnesses.iter().map(VerifierKey::to_vkey).collect(),
            submitter_public_key_pem: submitter.map(VerifyingKey::to_spki_pem),
        }
    }
}

fn hashes_to_hex(hashes: &[HashValue]) -> Vec<String> {
    hashes.iter().map(HashValue::to_hex).collect()
}

fn hashes_from_hex(suite: Suite, hashes: &[String]) -> Result<Vec<HashValue>> {
    if hashes.len() > MAX_PROOF_HASHES {
        return Err(ProofError::LimitExceeded(format!(
            "proof has more than {MAX_PROOF_HASHES} hashes"
        )));
    }
    hashes
        .iter()
        .map(|h| {
            if h.len() != 64 {
                return Err(ProofError::malformed("proof hash", "must be 64 hex digits"));
            }
            Ok(HashValue::from_hex(suite, h)?)
        })
        .collect()
}

impl ProofBundle {
    /// Assemble a bundle (ledger side).
    pub fn new(
        suite: Suite,
        entry: &Entry,
        tree_size: u64,
        inclusion_proof: &[HashValue],
        checkpoint_note: &str,
        keys: BundleKeys,
    ) -> Result<Self> {
        Ok(Self {
            format: BUNDLE_FORMAT.to_string(),
            suite,
            entry: entry.encode()?,
            inclusion: BundleInclusion {
                leaf_index: entry.index,
                tree_size,
                hashes: hashes_to_hex(inclusion_proof),
            },
            checkpoint: checkpoint_note.to_string(),
            cosignatures: Vec::new(),
            consistency: None,
            keys,
        })
    }

    /// Attach a consistency proof from an earlier signed checkpoint.
    pub fn with_consistency(mut self, old_checkpoint_note: &str, proof: &[HashValue]) -> Self {
        self.consistency = Some(BundleConsistency {
            old_checkpoint: old_checkpoint_note.to_string(),
            hashes: hashes_to_hex(proof),
        });
        self
    }

    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_BUNDLE_LEN {
            return Err(ProofError::LimitExceeded(format!(
                "bundle is larger than {MAX_BUNDLE_LEN} bytes"
            )));
        }
        serde_json::from_slice(json)
            .map_err(|e| ProofError::malformed("proof bundle", e.to_string()))
    }

    pub fn to_json_pretty(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| ProofError::malformed("proof bundle", e.to_string()))
    }
}

/// What the verifier trusts. Keys must come from a trusted channel; [`Self::from_bundle`] takes
/// them from the bundle itself, which only shows the bundle is internally consistent.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    /// The checkpoint must carry a valid signature by one of these.
    pub ledger_keys: Vec<VerifierKey>,
    /// Cosignatures by these keys are verified (a failing one rejects the bundle).
    pub witness_keys: Vec<VerifierKey>,
    /// Valid cosignatures required.
    pub min_cosignatures: usize,
    /// Institution keys; when non-empty the entry's submitter signature must verify under one.
    pub submitter_keys: Vec<VerifyingKey>,
    /// Required checkpoint origin (e.g. `caretrail.eu/<tenant id>`), if any.
    pub origin: Option<String>,
}

impl TrustAnchors {
    /// Trust the keys the bundle carries (no cosignature quorum, any origin).
    pub fn from_bundle(bundle: &ProofBundle) -> Result<Self> {
        let submitter_keys = match &bundle.keys.submitter_public_key_pem {
            Some(pem) => vec![VerifyingKey::from_spki_pem(pem)?],
            None => Vec::new(),
        };
        Ok(Self {
            ledger_keys: vec![VerifierKey::parse(&bundle.keys.ledger)?],
            witness_keys: bundle
                .keys
                .witnesses
                .iter()
                .map(|k| VerifierKey::parse(k))
                .collect::<Result<_>>()?,
            min_cosignatures: 0,
            submitter_keys,
            origin: None,
        })
    }
}

/// The checks [`verify_bundle`] performs, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    BundleFormat,
    EntryEncoding,
    SubmitterSignature,
    CheckpointSignature,
    InclusionProof,
    Cosignatures,
    Consistency,
}

impl CheckKind {
    /// Every check, in the order [`verify_bundle`] runs them.
    pub const ALL: [CheckKind; 7] = [
        Self::BundleFormat,
        Self::EntryEncoding,
        Self::SubmitterSignature,
        Self::CheckpointSignature,
        Self::InclusionProof,
        Self::Cosignatures,
        Self::Consistency,
    ];
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BundleFormat => "bundle format",
            Self::EntryEncoding => "entry encoding",
            Self::SubmitterSignature => "submitter signature",
            Self::CheckpointSignature => "ledger checkpoint signature",
            Self::InclusionProof => "inclusion proof",
            Self::Cosignatures => "witness cosignatures",
            Self::Consistency => "consistency with earlier checkpoint",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    /// Not applicable (no key or no data supplied for it).
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub check: CheckKind,
    pub status: CheckStatus,
    /// One human-readable line.
    pub detail: String,
}

/// Outcome of a successful [`verify_bundle`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedReport {
    pub checks: Vec<CheckResult>,
    pub entry: Entry,
    #[serde(serialize_with = "crate::serde_util::ser_hash_hex")]
    pub leaf_hash: HashValue,
    pub checkpoint: Checkpoint,
    pub log_signatures: Vec<VerifiedSignature>,
    pub cosignatures: Vec<VerifiedSignature>,
    /// The earlier checkpoint the bundle's checkpoint was proven to extend.
    pub earlier_checkpoint: Option<Checkpoint>,
}

/// A failed [`verify_bundle`]: the failing check, why, and the checks that passed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFailure {
    pub check: CheckKind,
    pub error: ProofError,
    pub passed: Vec<CheckResult>,
}

impl fmt::Display for BundleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.check, self.error)
    }
}

impl std::error::Error for BundleFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

struct Run {
    checks: Vec<CheckResult>,
}

impl Run {
    fn step<T>(
        &mut self,
        check: CheckKind,
        f: impl FnOnce() -> Result<(T, CheckStatus, String)>,
    ) -> std::result::Result<T, BundleFailure> {
        match f() {
            Ok((value, status, detail)) => {
                self.checks.push(CheckResult {
                    check,
                    status,
                    detail,
                });
                Ok(value)
            }
            Err(error) => Err(BundleFailure {
                check,
                error,
                passed: std::mem::take(&mut self.checks),
            }),
        }
    }
}

fn short(h: &HashValue) -> String {
    h.to_hex().chars().take(16).collect()
}

fn open_checkpoint(
    text: &str,
    extra_lines: &[String],
    suite: Suite,
    anchors: &TrustAnchors,
) -> Result<OpenedCheckpoint> {
    let mut note = Note::parse(text.as_bytes())?;
    for line in extra_lines {
        note.add_signature(NoteSignature::parse_line(line)?)?;
    }
    let opened = Checkpoint::open_note(note, suite, &anchors.ledger_keys, &[])?;
    if let Some(origin) = &anchors.origin
        && opened.checkpoint.origin() != origin
    {
        return Err(ProofError::OriginMismatch {
            expected: origin.clone(),
            found: opened.checkpoint.origin().to_string(),
        });
    }
    Ok(opened)
}

/// Verify a bundle against trusted keys: the entry decodes; its submitter signature verifies
/// (when institution keys are trusted); the checkpoint is signed by a trusted ledger key; the
/// entry's leaf hash is at its index in the tree of the checkpoint's size and root; trusted
/// witnesses' cosignatures verify (and meet the quorum); and, when present, the consistency
/// proof links an earlier ledger-signed checkpoint of the same origin to this one.
pub fn verify_bundle(
    bundle: &ProofBundle,
    anchors: &TrustAnchors,
) -> std::result::Result<VerifiedReport, BundleFailure> {
    let mut run = Run { checks: Vec::new() };
    let suite = bundle.suite;

    run.step(CheckKind::BundleFormat, || {
        if bundle.format != BUNDLE_FORMAT {
            return Err(ProofError::malformed(
                "proof bundle",
                format!("format {:?}, expected {BUNDLE_FORMAT:?}", bundle.format),
            ));
        }
        Ok((
            (),
            CheckStatus::Passed,
            format!("{BUNDLE_FORMAT}, suite {suite} ({})", suite.hash_name()),
        ))
    })?;

    let (entry, leaf) = run.step(CheckKind::EntryEncoding, || {
        let entry = Entry::decode(&bundle.entry)?;
        let leaf = entry.leaf_hash(suite)?;
        let detail = format!(
            "entry #{} of tenant {}: {} by {} (leaf hash {}…)",
            entry.index,
            entry.tenant,
            entry.kind,
            entry.submitter,
            short(&leaf)
        );
        Ok(((entry, leaf), CheckStatus::Passed, detail))
    })?;

    run.step(CheckKind::SubmitterSignature, || {
        if anchors.submitter_keys.is_empty() {
            return Ok((
                (),
                CheckStatus::Skipped,
                "no institution key supplied".into(),
            ));
        }
        if entry.signature.is_empty() {
            return Err(ProofError::NoTrustedSignature(
                "the entry carries no submitter signature".into(),
            ));
        }
        // Keys whose id matches the entry's key_id first, then the others.
        let mut keys: Vec<&VerifyingKey> = anchors.submitter_keys.iter().collect();
        keys.sort_by_key(|k| k.key_id().to_hex() != entry.key_id);
        for key in keys {
            if entry.verify_submitter(key).is_ok() {
                let detail = format!(
                    "signed by {} with {} key {}",
                    entry.submitter,
                    key.algorithm(),
                    key.key_id()
                );
                return Ok(((), CheckStatus::Passed, detail));
            }
        }
        Err(ProofError::Crypto(
            caretrail_crypto::CryptoError::SignatureInvalid,
        ))
    })?;

    let opened = run.step(CheckKind::CheckpointSignature, || {
        let opened = open_checkpoint(&bundle.checkpoint, &bundle.cosignatures, suite, anchors)?;
        let cp = &opened.checkpoint;
        let signers: Vec<String> = opened
            .log_signatures
            .iter()
            .map(|s| format!("{}+{:08x}", s.name, s.key_id))
            .collect();
        let detail = format!(
            "checkpoint {} at size {} (root {}…) signed by {}",
            cp.origin(),
            cp.size(),
            short(cp.root()),
            signers.join(", ")
        );
        Ok((opened, CheckStatus::Passed, detail))
    })?;
    let checkpoint = opened.checkpoint.clone();

    run.step(CheckKind::InclusionProof, || {
        let inc = &bundle.inclusion;
        if inc.leaf_index != entry.index {
            return Err(ProofError::IndexMismatch(format!(
                "the proof is for leaf {}, the entry says index {}",
                inc.leaf_index, entry.index
            )));
        }
        if inc.tree_size != checkpoint.size() {
            return Err(ProofError::SizeMismatch(format!(
                "the proof is for tree size {}, the checkpoint has size {}",
                inc.tree_size,
                checkpoint.size()
            )));
        }
        let proof = hashes_from_hex(suite, &inc.hashes)?;
        verify_inclusion(
            &leaf,
            inc.leaf_index,
            inc.tree_size,
            &proof,
            checkpoint.root(),
        )?;
        let detail = format!(
            "leaf {} is in the tree of size {} whose root the checkpoint signs ({} proof hashes)",
            inc.leaf_index,
            inc.tree_size,
            proof.len()
        );
        Ok(((), CheckStatus::Passed, detail))
    })?;

    let cosignatures = run.step(CheckKind::Cosignatures, || {
        let cosigs = opened.note.verify_known(&anchors.witness_keys)?;
        if cosigs.len() < anchors.min_cosignatures {
            return Err(ProofError::CosignatureQuorum {
                found: cosigs.len(),
                required: anchors.min_cosignatures,
            });
        }
        if anchors.witness_keys.is_empty() {
            return Ok((
                cosigs,
                CheckStatus::Skipped,
                "no witness key supplied".into(),
            ));
        }
        let names: Vec<String> = cosigs
            .iter()
            .map(|c| match c.timestamp {
                Some(t) => format!("{} at {t}", c.name),
                None => c.name.clone(),
            })
            .collect();
        let detail = format!(
            "{} of {} witnesses cosigned{}{}",
            cosigs.len(),
            anchors.witness_keys.len(),
            if names.is_empty() { "" } else { ": " },
            names.join(", ")
        );
        Ok((cosigs, CheckStatus::Passed, detail))
    })?;

    let earlier_checkpoint = run.step(CheckKind::Consistency, || {
        let Some(cons) = &bundle.consistency else {
            return Ok((
                None,
                CheckStatus::Skipped,
                "no earlier checkpoint supplied".into(),
            ));
        };
        let old = open_checkpoint(&cons.old_checkpoint, &[], suite, anchors)?.checkpoint;
        if old.origin() != checkpoint.origin() {
            return Err(ProofError::OriginMismatch {
                expected: checkpoint.origin().to_string(),
                found: old.origin().to_string(),
            });
        }
        let proof = hashes_from_hex(suite, &cons.hashes)?;
        verify_consistency(
            old.size(),
            checkpoint.size(),
            old.root(),
            checkpoint.root(),
            &proof,
        )?;
        let detail = format!(
            "size {} extends the earlier signed checkpoint of size {} ({} proof hashes)",
            checkpoint.size(),
            old.size(),
            proof.len()
        );
        Ok((Some(old), CheckStatus::Passed, detail))
    })?;

    Ok(VerifiedReport {
        checks: run.checks,
        entry,
        leaf_hash: leaf,
        checkpoint,
        log_signatures: opened.log_signatures,
        cosignatures,
        earlier_checkpoint,
    })
}
