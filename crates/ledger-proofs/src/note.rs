//! C2SP signed notes (c2sp.org/signed-note): parsing, signing, verification, and verifier keys
//! in the `vkey` text format of golang.org/x/mod/sumdb/note.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_crypto::{SignatureAlgorithm, SigningKey, Suite, VerifyingKey, hash};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ProofError, Result};

/// Signature lines accepted in one note (the Go reference's limit; signed-note requires ≥ 16).
pub const MAX_SIGNATURES: usize = 100;
/// Largest note accepted, in bytes.
pub const MAX_NOTE_LEN: usize = 256 * 1024;
/// Longest key name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

const SIG_PREFIX: &str = "\u{2014} ";

const TYPE_ED25519: &[u8] = &[0x01];
const TYPE_ED25519_COSIGNATURE: &[u8] = &[0x04];
const TYPE_SM2: &[u8] = b"\xffcaretrail/sm2-note/v1\n";
const TYPE_SM2_COSIGNATURE: &[u8] = b"\xffcaretrail/sm2-cosignature/v1\n";

/// Signature type of a note key: what the signature covers and how its key ID is computed.
///
/// | type | identifier bytes | key ID hash | public key | signature bytes |
/// |------|------------------|-------------|------------|-----------------|
/// | [`Ed25519`](Self::Ed25519) | `0x01` | SHA-256 | 32-byte Ed25519 | 64-byte Ed25519 over the text |
/// | [`Ed25519Cosignature`](Self::Ed25519Cosignature) | `0x04` | SHA-256 | 32-byte Ed25519 | `u64be timestamp ‖` Ed25519 over the cosignature/v1 message |
/// | [`Sm2`](Self::Sm2) (Caretrail) | `0xFF ‖ "caretrail/sm2-note/v1\n"` | SM3 | 65-byte SEC1 point | DER SM2 over the text |
/// | [`Sm2Cosignature`](Self::Sm2Cosignature) (Caretrail) | `0xFF ‖ "caretrail/sm2-cosignature/v1\n"` | SM3 | 65-byte SEC1 point | `u64be timestamp ‖` DER SM2 over the cosignature/v1 message |
///
/// SM2 signatures use the default distinguishing id `1234567812345678`. The SM2 types are not
/// registered with C2SP: signed-note reserves `0xFF` for types without an assigned byte and
/// recommends a longer identifier after it, which is what the Caretrail types do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteKeyType {
    Ed25519,
    Ed25519Cosignature,
    Sm2,
    Sm2Cosignature,
}

impl NoteKeyType {
    const ALL: [NoteKeyType; 4] = [
        Self::Ed25519,
        Self::Ed25519Cosignature,
        Self::Sm2,
        Self::Sm2Cosignature,
    ];

    /// The identifier bytes that prefix the public key in key IDs and vkeys.
    pub const fn type_bytes(self) -> &'static [u8] {
        match self {
            Self::Ed25519 => TYPE_ED25519,
            Self::Ed25519Cosignature => TYPE_ED25519_COSIGNATURE,
            Self::Sm2 => TYPE_SM2,
            Self::Sm2Cosignature => TYPE_SM2_COSIGNATURE,
        }
    }

    pub const fn algorithm(self) -> SignatureAlgorithm {
        match self {
            Self::Ed25519 | Self::Ed25519Cosignature => SignatureAlgorithm::Ed25519,
            Self::Sm2 | Self::Sm2Cosignature => SignatureAlgorithm::Sm2,
        }
    }

    /// Timestamped witness cosignature (tlog-cosignature) rather than a plain note signature.
    pub const fn is_cosignature(self) -> bool {
        matches!(self, Self::Ed25519Cosignature | Self::Sm2Cosignature)
    }

    /// Hash used for key IDs: SHA-256 for the C2SP types, SM3 for the Caretrail SM2 types.
    pub const fn key_id_suite(self) -> Suite {
        match self {
            Self::Ed25519 | Self::Ed25519Cosignature => Suite::Intl,
            Self::Sm2 | Self::Sm2Cosignature => Suite::Gm,
        }
    }

    /// The type for keys of `algorithm`, as plain note signer or as cosigner.
    pub fn for_algorithm(algorithm: SignatureAlgorithm, cosignature: bool) -> Result<Self> {
        match (algorithm, cosignature) {
            (SignatureAlgorithm::Ed25519, false) => Ok(Self::Ed25519),
            (SignatureAlgorithm::Ed25519, true) => Ok(Self::Ed25519Cosignature),
            (SignatureAlgorithm::Sm2, false) => Ok(Self::Sm2),
            (SignatureAlgorithm::Sm2, true) => Ok(Self::Sm2Cosignature),
            (other, _) => Err(ProofError::UnsupportedKeyType(format!(
                "{other} keys cannot sign notes (Ed25519 or SM2 only)"
            ))),
        }
    }

    /// Split `type ‖ public key` material into its type and raw key.
    fn split_material(material: &[u8]) -> Result<(Self, &[u8])> {
        Self::ALL
            .into_iter()
            .find_map(|t| material.strip_prefix(t.type_bytes()).map(|raw| (t, raw)))
            .ok_or_else(|| {
                ProofError::UnsupportedKeyType(format!(
                    "note key type byte 0x{:02x}",
                    material.first().copied().unwrap_or_default()
                ))
            })
    }
}

impl fmt::Display for NoteKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "ed25519",
            Self::Ed25519Cosignature => "ed25519-cosignature/v1",
            Self::Sm2 => "sm2 (caretrail)",
            Self::Sm2Cosignature => "sm2-cosignature/v1 (caretrail)",
        })
    }
}

/// Key names must be non-empty and hold no Unicode spaces, `+`, or control characters.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

fn check_key_name(name: &str) -> Result<()> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(ProofError::malformed(
            "key name",
            format!(
                "{name:?} must be 1..={MAX_NAME_LEN} bytes without spaces, '+' or control characters"
            ),
        ))
    }
}

/// Key ID: first 4 bytes (big-endian) of `H(name ‖ 0x0A ‖ type bytes ‖ public key)`, with H
/// per [`NoteKeyType::key_id_suite`].
pub fn key_id(name: &str, key_type: NoteKeyType, raw_public_key: &[u8]) -> u32 {
    let mut input = Vec::with_capacity(name.len() + 1 + 32 + raw_public_key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(key_type.type_bytes());
    input.extend_from_slice(raw_public_key);
    let digest = hash(key_type.key_id_suite(), &input);
    let b = digest.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The message a cosignature/v1 signs: `"cosignature/v1\ntime <timestamp>\n" ‖ note text`.
pub fn cosignature_message(timestamp: u64, note_text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{note_text}").into_bytes()
}

/// Largest timestamp a cosignature may carry (2^63 - 1).
pub const MAX_COSIGNATURE_TIMESTAMP: u64 = i64::MAX as u64;

/// A public note key: name, key ID, type and public key. Text form (`vkey`):
/// `<name>+<8 hex digits key ID>+<base64(type bytes ‖ public key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key_type: NoteKeyType,
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn new(name: impl Into<String>, key_type: NoteKeyType, key: VerifyingKey) -> Result<Self> {
        let name = name.into();
        check_key_name(&name)?;
        if key.algorithm() != key_type.algorithm() {
            return Err(ProofError::UnsupportedKeyType(format!(
                "a {} key cannot make {key_type} signatures",
                key.algorithm()
            )));
        }
        let key_id = key_id(&name, key_type, &key.to_raw_bytes());
        Ok(Self {
            name,
            key_id,
            key_type,
            key,
        })
    }

    /// The key that verifies `name`'s witness cosignatures made with `key`'s private half
    /// (the cosignature key type of its algorithm).
    pub fn cosigner(name: impl Into<String>, key: VerifyingKey) -> Result<Self> {
        let key_type = NoteKeyType::for_algorithm(key.algorithm(), true)?;
        Self::new(name, key_type, key)
    }

    /// Parse a vkey; the key ID must match the name and key.
    pub fn parse(vkey: &str) -> Result<Self> {
        let bad = |reason: &str| ProofError::malformed("verifier key", reason.to_string());
        let (name, rest) = vkey
            .split_once('+')
            .ok_or_else(|| bad("expected <name>+<key id>+<key>"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or_else(|| bad("expected <name>+<key id>+<key>"))?;
        check_key_name(name)?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("key id must be 8 hex digits"));
        }
        let claimed = u32::from_str_radix(id_hex, 16).map_err(|_| bad("key id is not hex"))?;
        let material = B64
            .decode(key_b64)
            .map_err(|_| bad("key is not standard base64"))?;
        let (key_type, raw) = NoteKeyType::split_material(&material)?;
        let key = VerifyingKey::from_raw_bytes(key_type.algorithm(), raw)?;
        let parsed = Self::new(name, key_type, key)?;
        if parsed.key_id != claimed {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(parsed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn key_type(&self) -> NoteKeyType {
        self.key_type
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The vkey text.
    pub fn to_vkey(&self) -> String {
        let mut material = self.key_type.type_bytes().to_vec();
        material.extend_from_slice(&self.key.to_raw_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(material))
    }

    /// Check `signature` (the bytes after the key ID) over `text`. Returns the cosignature
    /// timestamp for cosignature types.
    pub fn verify(&self, text: &str, signature: &[u8]) -> Result<Option<u64>> {
        let invalid = || ProofError::SignatureInvalid {
            name: self.name.clone(),
            key_id: self.key_id,
        };
        if self.key_type.is_cosignature() {
            let (ts, sig) = split_timestamp(signature).ok_or_else(invalid)?;
            self.key
                .verify_bytes(&cosignature_message(ts, text), sig)
                .map_err(|_| invalid())?;
            Ok(Some(ts))
        } else {
            self.key
                .verify_bytes(text.as_bytes(), signature)
                .map_err(|_| invalid())?;
            Ok(None)
        }
    }
}

/// `u64be timestamp ‖ signature`, timestamp ≤ 2^63 - 1, non-empty signature.
pub(crate) fn split_timestamp(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (ts, sig) = bytes.split_first_chunk::<8>()?;
    let ts = u64::from_be_bytes(*ts);
    (ts <= MAX_COSIGNATURE_TIMESTAMP && !sig.is_empty()).then_some((ts, sig))
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({})", self.to_vkey())
    }
}

impl FromStr for VerifierKey {
    type Err = ProofError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for VerifierKey {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_vkey())
    }
}

impl<'de> Deserialize<'de> for VerifierKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One signature line: `— <name> base64(u32be key ID ‖ signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The bytes after the key ID (for cosignatures: timestamp ‖ signature).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Parse one line, with or without its final newline.
    pub fn parse_line(line: &str) -> Result<Self> {
        let bad = |reason: &str| ProofError::malformed("signature line", reason.to_string());
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("must start with an em dash (U+2014) and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("expected <name> <base64>"))?;
        check_key_name(name)?;
        if b64.is_empty() {
            return Err(bad("empty signature"));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("signature is not standard base64"))?;
        let (id, sig) = raw
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("shorter than a key id and a signature"))?;
        if sig.is_empty() {
            return Err(bad("shorter than a key id and a signature"));
        }
        Ok(Self {
            name: name.to_string(),
            key_id: u32::from_be_bytes(*id),
            signature: sig.to_vec(),
        })
    }

    /// The line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A signature that verified against a known key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedSignature {
    pub name: String,
    pub key_id: u32,
    #[serde(serialize_with = "ser_display")]
    pub key_type: NoteKeyType,
    /// Cosignature time (POSIX seconds) for cosignature types.
    pub timestamp: Option<u64>,
}

fn ser_display<T: fmt::Display, S: Serializer>(
    v: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn check_note_chars(s: &str) -> Result<()> {
    if s.len() > MAX_NOTE_LEN {
        return Err(ProofError::LimitExceeded(format!(
            "note is {} bytes, at most {MAX_NOTE_LEN} accepted",
            s.len()
        )));
    }
    if s.chars().any(|c| c < '\u{20}' && c != '\n') {
        return Err(ProofError::malformed(
            "note",
            "contains an ASCII control character other than newline",
        ));
    }
    Ok(())
}

/// A signed note: text (ending in a newline) plus signature lines.
///
/// Encoded as `text ‖ "\n" ‖ lines`; the text is separated from the signatures by the last empty
/// line. Notes are valid UTF-8 without ASCII control characters other than newline; at most
/// [`MAX_SIGNATURES`] signatures and [`MAX_NOTE_LEN`] bytes are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// An unsigned note; `text` must be non-empty and end with a newline.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        check_note_chars(&text)?;
        if !text.ends_with('\n') {
            return Err(ProofError::malformed(
                "note",
                "text must end with a newline",
            ));
        }
        Ok(Self {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parse an encoded note (structure only; see [`Self::verify`]).
    pub fn parse(msg: &[u8]) -> Result<Self> {
        let bad = |reason: &str| ProofError::malformed("note", reason.to_string());
        if msg.len() > MAX_NOTE_LEN {
            return Err(ProofError::LimitExceeded(format!(
                "note is {} bytes, at most {MAX_NOTE_LEN} accepted",
                msg.len()
            )));
        }
        let s = std::str::from_utf8(msg).map_err(|_| bad("not valid UTF-8"))?;
        check_note_chars(s)?;
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(bad(
                "the signature block is empty or does not end with a newline",
            ));
        };
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(ProofError::LimitExceeded(format!(
                    "more than {MAX_SIGNATURES} signatures"
                )));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Add a signature line, replacing any existing one by the same name and key ID.
    pub fn add_signature(&mut self, sig: NoteSignature) -> Result<()> {
        check_key_name(&sig.name)?;
        if sig.signature.is_empty() {
            return Err(ProofError::malformed("signature line", "empty signature"));
        }
        self.signatures
            .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(ProofError::LimitExceeded(format!(
                "more than {MAX_SIGNATURES} signatures"
            )));
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// The encoded note (only parseable once it has at least one signature).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 120 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out
    }

    /// Verify per signed-note: lines whose name and key ID match no known key are ignored;
    /// a known key's signature that fails rejects the whole note; at least one must verify.
    pub fn verify(&self, known: &[VerifierKey]) -> Result<Vec<VerifiedSignature>> {
        let verified = self.verify_known(known)?;
        if verified.is_empty() {
            return Err(ProofError::NoTrustedSignature(format!(
                "none of the {} signature lines is by one of the {} known keys",
                self.signatures.len(),
                known.len()
            )));
        }
        Ok(verified)
    }

    /// Like [`Self::verify`] but accepts a note with no signature by a known key (returns the
    /// empty list). Repeated signatures by one key are checked once.
    pub fn verify_known(&self, known: &[VerifierKey]) -> Result<Vec<VerifiedSignature>> {
        let mut seen: HashSet<(&str, u32)> = HashSet::new();
        let mut out = Vec::new();
        for sig in &self.signatures {
            let mut matching = known
                .iter()
                .filter(|k| k.name == sig.name && k.key_id == sig.key_id);
            let Some(key) = matching.next() else {
                continue;
            };
            if matching.next().is_some() {
                return Err(ProofError::AmbiguousKey {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            if !seen.insert((sig.name.as_str(), sig.key_id)) {
                continue;
            }
            let timestamp = key.verify(&self.text, &sig.signature)?;
            out.push(VerifiedSignature {
                name: key.name.clone(),
                key_id: key.key_id,
                key_type: key.key_type,
                timestamp,
            });
        }
        Ok(out)
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// A private note key (a log's checkpoint key): signs note text with an Ed25519 or SM2 key.
pub struct NoteSigner {
    name: String,
    key_type: NoteKeyType,
    key_id: u32,
    key: SigningKey,
}

impl NoteSigner {
    /// A plain note signer ([`NoteKeyType::Ed25519`] or [`NoteKeyType::Sm2`]).
    pub fn new(name: impl Into<String>, key: SigningKey) -> Result<Self> {
        Self::with_type(name, key, false)
    }

    pub(crate) fn with_type(
        name: impl Into<String>,
        key: SigningKey,
        cosignature: bool,
    ) -> Result<Self> {
        let name = name.into();
        check_key_name(&name)?;
        let key_type = NoteKeyType::for_algorithm(key.algorithm(), cosignature)?;
        let key_id = key_id(&name, key_type, &key.verifying_key().to_raw_bytes());
        Ok(Self {
            name,
            key_type,
            key_id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn key_type(&self) -> NoteKeyType {
        self.key_type
    }

    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key_type: self.key_type,
            key: self.key.public_key(),
        }
    }

    /// Sign the raw message bytes.
    pub(crate) fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>> {
        Ok(self.key.sign(msg)?.into_bytes())
    }

    /// Signature line over `text` (which must be valid note text).
    pub fn sign(&self, text: &str) -> Result<NoteSignature> {
        if self.key_type.is_cosignature() {
            return Err(ProofError::UnsupportedKeyType(
                "a cosigner key makes timestamped cosignatures, not note signatures".into(),
            ));
        }
        Note::new(text)?;
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.sign_raw(text.as_bytes())?,
        })
    }

    /// Sign a note in place (replacing a previous signature by this key).
    pub fn sign_note(&self, note: &mut Note) -> Result<()> {
        let sig = self.sign(note.text())?;
        note.add_signature(sig)
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NoteSigner({}+{:08x}, {}, ..)",
            self.name, self.key_id, self.key_type
        )
    }
}
