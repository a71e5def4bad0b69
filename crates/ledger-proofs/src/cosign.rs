//! Witness cosignatures per c2sp.org/tlog-cosignature (cosignature/v1), and a witness that
//! cosigns a checkpoint only after checking it is consistent with the last one it accepted.

use std::fmt;

use caretrail_crypto::{HashValue, SigningKey, Suite};

use crate::checkpoint::Checkpoint;
use crate::error::{ProofError, Result};
use crate::merkle::verify_consistency;
use crate::note::{
    MAX_COSIGNATURE_TIMESTAMP, NoteKeyType, NoteSignature, NoteSigner, VerifierKey,
    cosignature_message, split_timestamp,
};

/// A timestamped cosignature. Its note signature line is
/// `— <name> base64(u32be key ID ‖ u64be timestamp ‖ signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    pub name: String,
    pub key_id: u32,
    /// POSIX seconds, ≤ 2^63 - 1.
    pub timestamp: u64,
    pub signature: Vec<u8>,
}

impl Cosignature {
    pub fn to_note_signature(&self) -> NoteSignature {
        let mut bytes = self.timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: bytes,
        }
    }

    /// Read the (unverified) timestamp and signature out of a note signature line.
    pub fn from_note_signature(sig: &NoteSignature) -> Result<Self> {
        let (timestamp, signature) = split_timestamp(&sig.signature).ok_or_else(|| {
            ProofError::malformed(
                "cosignature",
                "expected u64be timestamp (≤ 2^63-1) and a signature",
            )
        })?;
        Ok(Self {
            name: sig.name.clone(),
            key_id: sig.key_id,
            timestamp,
            signature: signature.to_vec(),
        })
    }

    /// The signature line, with its final newline.
    pub fn line(&self) -> String {
        self.to_note_signature().to_line()
    }
}

/// A witness's private key, making [`NoteKeyType::Ed25519Cosignature`] or (Caretrail)
/// [`NoteKeyType::Sm2Cosignature`] signatures. Use a key that signs nothing else.
pub struct Cosigner {
    inner: NoteSigner,
}

impl Cosigner {
    pub fn new(name: impl Into<String>, key: SigningKey) -> Result<Self> {
        Ok(Self {
            inner: NoteSigner::with_type(name, key, true)?,
        })
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }

    pub fn key_id(&self) -> u32 {
        self.inner.key_id()
    }

    pub fn key_type(&self) -> NoteKeyType {
        self.inner.key_type()
    }

    /// The vkey log clients and verifiers configure for this witness.
    pub fn verifier_key(&self) -> VerifierKey {
        self.inner.verifier_key()
    }

    /// Cosign a checkpoint at `timestamp` (POSIX seconds) without any check.
    pub fn cosign(&self, checkpoint: &Checkpoint, timestamp: u64) -> Result<Cosignature> {
        if timestamp > MAX_COSIGNATURE_TIMESTAMP {
            return Err(ProofError::LimitExceeded(
                "cosignature timestamp above 2^63 - 1".into(),
            ));
        }
        let signature = self
            .inner
            .sign_raw(&cosignature_message(timestamp, &checkpoint.body()))?;
        Ok(Cosignature {
            name: self.name().to_string(),
            key_id: self.key_id(),
            timestamp,
            signature,
        })
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cosigner({}+{:08x}, {}, ..)",
            self.name(),
            self.key_id(),
            self.key_type()
        )
    }
}

/// Check that `next` extends `prev` (same origin, not smaller, valid consistency proof), then
/// cosign `next` at `now`. With no `prev` (first contact) the proof must be empty.
///
/// `next` must already be known to be signed by the log (see [`Witness::verify_and_cosign`]).
pub fn cosign_if_consistent(
    prev: Option<&Checkpoint>,
    next: &Checkpoint,
    proof: &[HashValue],
    cosigner: &Cosigner,
    now: u64,
) -> Result<Cosignature> {
    match prev {
        None => {
            if !proof.is_empty() {
                return Err(ProofError::WrongProofLength {
                    expected: 0,
                    got: proof.len(),
                });
            }
        }
        Some(prev) => check_extends(prev, next, proof)?,
    }
    cosigner.cosign(next, now)
}

/// Checks that `next` extends `prev`: same origin, and `proof` is an RFC 9162 consistency
/// proof from `prev`'s tree to `next`'s (a smaller tree, or another root at the same size,
/// fails). Signatures are the caller's business.
pub fn check_extends(prev: &Checkpoint, next: &Checkpoint, proof: &[HashValue]) -> Result<()> {
    if prev.origin() != next.origin() {
        return Err(ProofError::OriginMismatch {
            expected: prev.origin().to_string(),
            found: next.origin().to_string(),
        });
    }
    verify_consistency(prev.size(), next.size(), prev.root(), next.root(), proof)
}

/// A witness (e.g. the regulator): cosigns checkpoints of logs whose keys it knows, only when
/// they are consistent with the last checkpoint it accepted (which the caller stores).
#[derive(Debug)]
pub struct Witness {
    cosigner: Cosigner,
    suite: Suite,
    log_keys: Vec<VerifierKey>,
}

impl Witness {
    /// `suite` is the hash suite of the witnessed logs; `log_keys` their checkpoint keys.
    pub fn new(cosigner: Cosigner, suite: Suite, log_keys: Vec<VerifierKey>) -> Self {
        Self {
            cosigner,
            suite,
            log_keys,
        }
    }

    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// See [`cosign_if_consistent`].
    pub fn cosign_if_consistent(
        &self,
        prev: Option<&Checkpoint>,
        next: &Checkpoint,
        proof: &[HashValue],
        now: u64,
    ) -> Result<Cosignature> {
        cosign_if_consistent(prev, next, proof, &self.cosigner, now)
    }

    /// Verify the log's signature on `next_note`, check consistency with `prev`, and cosign.
    /// Returns the accepted checkpoint (to store as the new `prev`) and the cosignature.
    pub fn verify_and_cosign(
        &self,
        prev: Option<&Checkpoint>,
        next_note: &[u8],
        proof: &[HashValue],
        now: u64,
    ) -> Result<(Checkpoint, Cosignature)> {
        let opened = Checkpoint::open(next_note, self.suite, &self.log_keys, &[])?;
        let cosig = self.cosign_if_consistent(prev, &opened.checkpoint, proof, now)?;
        Ok((opened.checkpoint, cosig))
    }
}
