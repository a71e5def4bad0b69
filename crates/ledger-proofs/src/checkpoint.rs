//! Checkpoints per c2sp.org/tlog-checkpoint: a signed note whose text is
//! `<origin>\n<tree size>\n<base64 root hash>\n` followed by optional extension lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_crypto::{HASH_LEN, HashValue, Suite};
use serde::Serialize;

use crate::error::{ProofError, Result};
use crate::note::{Note, NoteSigner, VerifiedSignature, VerifierKey};

/// Extension lines accepted after the root hash (a Caretrail limit; C2SP sets none).
pub const MAX_EXTENSION_LINES: usize = 16;
/// Longest origin accepted, in bytes.
pub const MAX_ORIGIN_LEN: usize = 255;

/// A log's tree head: origin, size and root hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    #[serde(serialize_with = "crate::serde_util::ser_hash_hex")]
    root: HashValue,
    extensions: Vec<String>,
}

fn check_line(what: &'static str, line: &str) -> Result<()> {
    if line.is_empty() {
        return Err(ProofError::malformed(what, "empty line"));
    }
    if line.chars().any(char::is_control) {
        return Err(ProofError::malformed(
            what,
            "contains a newline or control character",
        ));
    }
    Ok(())
}

impl Checkpoint {
    /// `origin` must be non-empty, at most [`MAX_ORIGIN_LEN`] bytes, without control characters.
    /// The ledger uses `caretrail.<region>/<tenant id>`.
    pub fn new(origin: impl Into<String>, size: u64, root: HashValue) -> Result<Self> {
        let origin = origin.into();
        check_line("checkpoint origin", &origin)?;
        if origin.len() > MAX_ORIGIN_LEN {
            return Err(ProofError::LimitExceeded(format!(
                "origin is longer than {MAX_ORIGIN_LEN} bytes"
            )));
        }
        Ok(Self {
            origin,
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// Add opaque extension lines (non-empty, no control characters; NOT RECOMMENDED by C2SP).
    pub fn with_extensions(mut self, extensions: Vec<String>) -> Result<Self> {
        if extensions.len() > MAX_EXTENSION_LINES {
            return Err(ProofError::LimitExceeded(format!(
                "more than {MAX_EXTENSION_LINES} checkpoint extension lines"
            )));
        }
        for line in &extensions {
            check_line("checkpoint extension line", line)?;
        }
        self.extensions = extensions;
        Ok(self)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &HashValue {
        &self.root
    }

    pub fn suite(&self) -> Suite {
        self.root.suite()
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text (the signed body).
    pub fn body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.as_bytes())
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parse a note text. The root hash is read as a `suite` hash (the text does not say which).
    pub fn parse_body(text: &str, suite: Suite) -> Result<Self> {
        let bad = |reason: &str| ProofError::malformed("checkpoint", reason.to_string());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text must end with a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("needs origin, tree size and root hash lines"));
        };
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        let size = parse_size(size)?;
        let root_bytes = B64
            .decode(root)
            .map_err(|_| bad("root hash is not standard base64"))?;
        if root_bytes.len() != HASH_LEN {
            return Err(bad("root hash must be 32 bytes"));
        }
        let root = HashValue::from_slice(suite, &root_bytes)?;
        Self::new(origin, size, root)?.with_extensions(extensions)
    }

    /// A note of this checkpoint signed by the log key.
    pub fn sign(&self, signer: &NoteSigner) -> Result<Note> {
        let mut note = Note::new(self.body())?;
        signer.sign_note(&mut note)?;
        Ok(note)
    }

    /// Parse and verify a signed checkpoint note: at least one signature by a `log_keys` key
    /// must verify (other lines are ignored, a failing known line rejects the note); cosignatures
    /// by `witness_keys` are verified and returned (none required here).
    pub fn open(
        msg: &[u8],
        suite: Suite,
        log_keys: &[VerifierKey],
        witness_keys: &[VerifierKey],
    ) -> Result<OpenedCheckpoint> {
        Self::open_note(Note::parse(msg)?, suite, log_keys, witness_keys)
    }

    /// [`Self::open`] for an already parsed note (e.g. with extra cosignature lines added).
    pub fn open_note(
        note: Note,
        suite: Suite,
        log_keys: &[VerifierKey],
        witness_keys: &[VerifierKey],
    ) -> Result<OpenedCheckpoint> {
        let log_signatures = note.verify(log_keys)?;
        let cosignatures = note.verify_known(witness_keys)?;
        let checkpoint = Self::parse_body(note.text(), suite)?;
        Ok(OpenedCheckpoint {
            checkpoint,
            note,
            log_signatures,
            cosignatures,
        })
    }
}

/// ASCII decimal without leading zeroes (except `0` itself), fitting in u64.
fn parse_size(s: &str) -> Result<u64> {
    let bad = || {
        ProofError::malformed(
            "checkpoint",
            "tree size must be a decimal number without leading zeroes",
        )
    };
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad());
    }
    s.parse::<u64>().map_err(|_| bad())
}

/// A checkpoint whose log signature verified.
#[derive(Debug, Clone)]
pub struct OpenedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: Note,
    /// Verified signatures by log keys (at least one).
    pub log_signatures: Vec<VerifiedSignature>,
    /// Verified signatures by witness keys (cosignatures carry their timestamps).
    pub cosignatures: Vec<VerifiedSignature>,
}
