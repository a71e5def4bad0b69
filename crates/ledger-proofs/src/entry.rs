//! Ledger entries: the canonical binary encoding (the Merkle leaf) and the bytes a submitter
//! signs.

use caretrail_crypto::{HashValue, SigningKey, Suite, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{ProofError, Result};
use crate::merkle::leaf_hash;

/// Magic of an encoded entry.
pub const ENTRY_MAGIC: &[u8; 4] = b"CTLE";
/// Magic of a submitter's signing input.
pub const SIGNING_MAGIC: &[u8; 4] = b"CTLS";
/// Current version of both encodings.
pub const ENTRY_VERSION: u8 = 1;

pub const MAX_TENANT_LEN: usize = 128;
pub const MAX_KIND_LEN: usize = 64;
pub const MAX_SUBMITTER_LEN: usize = 256;
pub const MAX_REQUEST_ID_LEN: usize = 128;
pub const MAX_KEY_ID_LEN: usize = 256;
pub const MAX_PAYLOAD_LEN: usize = 1024 * 1024;
pub const MAX_SIGNATURE_LEN: usize = 512;

/// What an institution submits and signs, before the leader assigns index and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub tenant: String,
    /// E.g. `record.anchored`: 1..=64 bytes of `[a-z0-9._-]`.
    pub kind: String,
    /// Institution id.
    pub submitter: String,
    /// Client-chosen id, unique per submitter: the ledger deduplicates on
    /// (submitter, request_id), so a captured signed submission cannot be appended twice.
    pub request_id: String,
    /// Identifies the submitter's key (e.g. its `KeyId` hex); covered by the signature.
    pub key_id: String,
    /// Canonical payload bytes (e.g. [`crate::canonical_json`]).
    #[serde(with = "crate::serde_util::base64_bytes")]
    pub payload: Vec<u8>,
}

/// One ledger entry: a signed [`Submission`] plus the leader-assigned index and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub tenant: String,
    /// Position in the tenant's log (the Merkle leaf index).
    pub index: u64,
    /// Leader time of the append, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub kind: String,
    pub submitter: String,
    pub request_id: String,
    pub key_id: String,
    #[serde(with = "crate::serde_util::base64_bytes")]
    pub payload: Vec<u8>,
    /// Submitter's signature over [`Submission::signing_input`] (empty for unsigned entries).
    #[serde(with = "crate::serde_util::base64_bytes")]
    pub signature: Vec<u8>,
}

fn check_text(field: &'static str, value: &str, min: usize, max: usize) -> Result<()> {
    if value.len() < min || value.len() > max {
        return Err(ProofError::malformed(
            "entry",
            format!("{field} must be {min}..={max} bytes, got {}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ProofError::malformed(
            "entry",
            format!("{field} contains a control character"),
        ));
    }
    Ok(())
}

fn check_kind(kind: &str) -> Result<()> {
    check_text("kind", kind, 1, MAX_KIND_LEN)?;
    if !kind
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(ProofError::malformed(
            "entry",
            "kind may only hold a-z, 0-9, '.', '_' and '-'",
        ));
    }
    Ok(())
}

fn check_bytes(field: &'static str, value: &[u8], max: usize) -> Result<()> {
    if value.len() > max {
        return Err(ProofError::malformed(
            "entry",
            format!("{field} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths are checked against limits far below u32::MAX before encoding.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Submission {
    pub fn validate(&self) -> Result<()> {
        check_text("tenant", &self.tenant, 1, MAX_TENANT_LEN)?;
        check_kind(&self.kind)?;
        check_text("submitter", &self.submitter, 1, MAX_SUBMITTER_LEN)?;
        check_text("request_id", &self.request_id, 0, MAX_REQUEST_ID_LEN)?;
        check_text("key_id", &self.key_id, 0, MAX_KEY_ID_LEN)?;
        check_bytes("payload", &self.payload, MAX_PAYLOAD_LEN)
    }

    /// The bytes the submitter signs:
    /// `"CTLS" ‖ 0x01 ‖ F(tenant) ‖ F(kind) ‖ F(submitter) ‖ F(request_id) ‖ F(key_id) ‖ F(payload)`
    /// with `F(x) = u32be len(x) ‖ x`.
    pub fn signing_input(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out = Vec::with_capacity(64 + self.payload.len());
        out.extend_from_slice(SIGNING_MAGIC);
        out.push(ENTRY_VERSION);
        put_field(&mut out, self.tenant.as_bytes());
        put_field(&mut out, self.kind.as_bytes());
        put_field(&mut out, self.submitter.as_bytes());
        put_field(&mut out, self.request_id.as_bytes());
        put_field(&mut out, self.key_id.as_bytes());
        put_field(&mut out, &self.payload);
        Ok(out)
    }

    /// Sign with the institution key.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>> {
        Ok(key.sign(&self.signing_input()?)?.into_bytes())
    }

    /// Check a submitter signature over [`Self::signing_input`].
    pub fn verify(&self, key: &VerifyingKey, signature: &[u8]) -> Result<()> {
        key.verify_bytes(&self.signing_input()?, signature)?;
        Ok(())
    }

    /// The entry the leader appends.
    pub fn into_entry(self, index: u64, timestamp_ms: u64, signature: Vec<u8>) -> Entry {
        Entry {
            tenant: self.tenant,
            index,
            timestamp_ms,
            kind: self.kind,
            submitter: self.submitter,
            request_id: self.request_id,
            key_id: self.key_id,
            payload: self.payload,
            signature,
        }
    }
}

impl Entry {
    /// The submitter-signed part.
    pub fn submission(&self) -> Submission {
        Submission {
            tenant: self.tenant.clone(),
            kind: self.kind.clone(),
            submitter: self.submitter.clone(),
            request_id: self.request_id.clone(),
            key_id: self.key_id.clone(),
            payload: self.payload.clone(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.submission().validate()?;
        check_bytes("signature", &self.signature, MAX_SIGNATURE_LEN)
    }

    /// Canonical encoding (version 1):
    ///
    /// ```text
    /// "CTLE" ‖ 0x01 ‖ F(tenant) ‖ u64be index ‖ u64be timestamp_ms ‖ F(kind) ‖ F(submitter)
    ///        ‖ F(request_id) ‖ F(key_id) ‖ F(payload) ‖ F(signature)
    /// F(x) = u32be len(x) ‖ x   (strings are UTF-8)
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out = Vec::with_capacity(96 + self.payload.len() + self.signature.len());
        out.extend_from_slice(ENTRY_MAGIC);
        out.push(ENTRY_VERSION);
        put_field(&mut out, self.tenant.as_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        put_field(&mut out, self.kind.as_bytes());
        put_field(&mut out, self.submitter.as_bytes());
        put_field(&mut out, self.request_id.as_bytes());
        put_field(&mut out, self.key_id.as_bytes());
        put_field(&mut out, &self.payload);
        put_field(&mut out, &self.signature);
        Ok(out)
    }

    /// Strict inverse of [`Self::encode`]: rejects unknown magic or version, over-long fields,
    /// invalid UTF-8, invalid field values and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { rest: bytes };
        if r.take(4)? != ENTRY_MAGIC {
            return Err(ProofError::malformed("entry", "bad magic (expected CTLE)"));
        }
        let version = r.take(1)?;
        if version != [ENTRY_VERSION] {
            return Err(ProofError::malformed(
                "entry",
                format!(
                    "unsupported version {}",
                    version.first().copied().unwrap_or(0)
                ),
            ));
        }
        let tenant = r.string("tenant", MAX_TENANT_LEN)?;
        let index = r.u64()?;
        let timestamp_ms = r.u64()?;
        let kind = r.string("kind", MAX_KIND_LEN)?;
        let submitter = r.string("submitter", MAX_SUBMITTER_LEN)?;
        let request_id = r.string("request_id", MAX_REQUEST_ID_LEN)?;
        let key_id = r.string("key_id", MAX_KEY_ID_LEN)?;
        let payload = r.field("payload", MAX_PAYLOAD_LEN)?.to_vec();
        let signature = r.field("signature", MAX_SIGNATURE_LEN)?.to_vec();
        if !r.rest.is_empty() {
            return Err(ProofError::malformed(
                "entry",
                format!("{} trailing bytes", r.rest.len()),
            ));
        }
        let entry = Self {
            tenant,
            index,
            timestamp_ms,
            kind,
            submitter,
            request_id,
            key_id,
            payload,
            signature,
        };
        entry.validate()?;
        Ok(entry)
    }

    /// The Merkle leaf hash `H(0x00 ‖ encode())`.
    pub fn leaf_hash(&self, suite: Suite) -> Result<HashValue> {
        Ok(leaf_hash(suite, &self.encode()?))
    }

    /// Check the submitter's signature.
    pub fn verify_submitter(&self, key: &VerifyingKey) -> Result<()> {
        self.submission().verify(key, &self.signature)
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(ProofError::malformed("entry", "truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let arr: [u8; 8] = b
            .try_into()
            .map_err(|_| ProofError::malformed("entry", "truncated"))?;
        Ok(u64::from_be_bytes(arr))
    }

    fn field(&mut self, name: &'static str, max: usize) -> Result<&'a [u8]> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b
            .try_into()
            .map_err(|_| ProofError::malformed("entry", "truncated"))?;
        let len = usize::try_from(u32::from_be_bytes(arr)).unwrap_or(usize::MAX);
        if len > max {
            return Err(ProofError::malformed(
                "entry",
                format!("{name} is longer than {max} bytes"),
            ));
        }
        self.take(len)
    }

    fn string(&mut self, name: &'static str, max: usize) -> Result<String> {
        let b = self.field(name, max)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| ProofError::malformed("entry", format!("{name} is not UTF-8")))
    }
}
