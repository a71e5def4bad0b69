use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek as ed;
use p256::ecdsa as p256dsa;
use pkcs8::der::asn1::ObjectIdentifier;
use pkcs8::{AssociatedOid, DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};
use spki::DecodePublicKey;
use zeroize::{Zeroize, Zeroizing};

use crate::sm2impl::{self, Sm2Secret};
use crate::{CryptoError, HashValue, Result, Suite, hash};

/// Default SM2 distinguishing identifier (GM/T 0009-2012 §10, also OpenSSL's and GmSSL's default).
pub const SM2_DEFAULT_DISTID: &[u8] = SM2_DEFAULT_DISTID_STR.as_bytes();
const SM2_DEFAULT_DISTID_STR: &str = "1234567812345678";

const OID_ED25519: ObjectIdentifier = ed::pkcs8::ALGORITHM_OID;
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SM2_CURVE: ObjectIdentifier = <sm2::Sm2 as AssociatedOid>::OID;
const OID_P256_CURVE: ObjectIdentifier = <p256::NistP256 as AssociatedOid>::OID;

// SubjectPublicKeyInfo prefixes (everything before the raw key bytes). Fixed for these
// algorithms, so encoding a public key cannot fail; tests check them against the crates' encoders.
const SPKI_PREFIX_ED25519: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const SPKI_PREFIX_SM2: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d, 0x03, 0x42, 0x00,
];
const SPKI_PREFIX_P256: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Signature scheme of a key. Ed25519 and ECDSA P-256 belong to `intl`, SM2 to `gm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureAlgorithm {
    Ed25519,
    Sm2,
    EcdsaP256,
}

impl SignatureAlgorithm {
    pub const fn suite(self) -> Suite {
        match self {
            Self::Ed25519 | Self::EcdsaP256 => Suite::Intl,
            Self::Sm2 => Suite::Gm,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Sm2 => "sm2",
            Self::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// Length of the raw public key from [`VerifyingKey::to_raw_bytes`].
    pub const fn raw_public_key_len(self) -> usize {
        match self {
            Self::Ed25519 => 32,
            Self::Sm2 | Self::EcdsaP256 => 65,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureAlgorithm {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ed25519" => Ok(Self::Ed25519),
            "sm2" => Ok(Self::Sm2),
            "ecdsa-p256" | "p256" | "p-256" => Ok(Self::EcdsaP256),
            _ => Err(CryptoError::UnsupportedAlgorithm(format!(
                "signature algorithm {s:?}"
            ))),
        }
    }
}

/// Stable identifier of a public key: the first 16 bytes of the suite hash (SHA-256 or SM3)
/// of its DER SubjectPublicKeyInfo. Displays as 32 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KeyId::LEN]);

impl KeyId {
    pub const LEN: usize = 16;

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl FromStr for KeyId {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self> {
        let bytes = hex::decode(s.trim())
            .map_err(|_| CryptoError::Malformed("key id is not hex".into()))?;
        let arr = <[u8; Self::LEN]>::try_from(bytes.as_slice())
            .map_err(|_| CryptoError::Malformed(format!("key id must be {} bytes", Self::LEN)))?;
        Ok(Self(arr))
    }
}

/// A signature: 64 raw bytes for Ed25519 (RFC 8032); DER `SEQUENCE { r INTEGER, s INTEGER }`
/// for SM2 (GM/T 0009) and ECDSA P-256 (X9.62), i.e. what OpenSSL produces and accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    algorithm: SignatureAlgorithm,
    bytes: Vec<u8>,
}

impl Signature {
    /// Parses and checks the encoding (not the validity) of a signature.
    pub fn from_bytes(algorithm: SignatureAlgorithm, bytes: &[u8]) -> Result<Self> {
        match algorithm {
            SignatureAlgorithm::Ed25519 => {
                if bytes.len() != ed::SIGNATURE_LENGTH {
                    return Err(CryptoError::Malformed(format!(
                        "Ed25519 signature must be 64 bytes, got {}",
                        bytes.len()
                    )));
                }
            }
            SignatureAlgorithm::Sm2 | SignatureAlgorithm::EcdsaP256 => {
                der_decode_rs(bytes)?;
            }
        }
        Ok(Self {
            algorithm,
            bytes: bytes.to_vec(),
        })
    }

    pub fn from_base64(algorithm: SignatureAlgorithm, text: &str) -> Result<Self> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| CryptoError::Malformed(format!("signature is not base64: {e}")))?;
        Self::from_bytes(algorithm, &bytes)
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn to_base64(&self) -> String {
        B64.encode(&self.bytes)
    }
}

impl AsRef<[u8]> for Signature {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}, {})", self.algorithm, self.to_base64())
    }
}

#[derive(Clone)]
enum VerifyingInner {
    Ed25519(ed::VerifyingKey),
    // Holds the Z_A precomputation for the default distinguishing id.
    Sm2(Box<sm2::dsa::VerifyingKey>),
    P256(p256dsa::VerifyingKey),
}

/// A public key of any supported signature algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    inner: VerifyingInner,
}

impl VerifyingKey {
    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self.inner {
            VerifyingInner::Ed25519(_) => SignatureAlgorithm::Ed25519,
            VerifyingInner::Sm2(_) => SignatureAlgorithm::Sm2,
            VerifyingInner::P256(_) => SignatureAlgorithm::EcdsaP256,
        }
    }

    pub fn suite(&self) -> Suite {
        self.algorithm().suite()
    }

    /// Verify `sig` over `msg` (SM2: with the default distinguishing id).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<()> {
        if sig.algorithm != self.algorithm() {
            return Err(CryptoError::SignatureInvalid);
        }
        self.verify_bytes(msg, &sig.bytes)
    }

    /// Verify an encoded signature. Anything that does not verify — including a malformed
    /// encoding — is [`CryptoError::SignatureInvalid`].
    pub fn verify_bytes(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        use p256::ecdsa::signature::Verifier as _;
        let ok = match &self.inner {
            VerifyingInner::Ed25519(vk) => match ed::Signature::from_slice(sig) {
                Ok(s) => vk.verify_strict(msg, &s).is_ok(),
                Err(_) => false,
            },
            VerifyingInner::Sm2(vk) => match der_decode_rs(sig) {
                Ok((r, s)) => match sm2::dsa::Signature::from_scalars(r, s) {
                    Ok(s) => vk.verify(msg, &s).is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            },
            VerifyingInner::P256(vk) => match der_decode_rs(sig) {
                Ok((r, s)) => match p256dsa::Signature::from_scalars(r, s) {
                    Ok(s) => vk.verify(msg, &s).is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(CryptoError::SignatureInvalid)
        }
    }

    /// SM2 only: verify with a distinguishing id other than the default.
    pub fn verify_sm2_with_distid(&self, msg: &[u8], sig: &Signature, distid: &[u8]) -> Result<()> {
        let pk = self.sm2_public()?;
        let z = sm2impl::z_a(distid, &pk)?;
        let (r, s) = der_decode_rs(&sig.bytes).map_err(|_| CryptoError::SignatureInvalid)?;
        if sig.algorithm == SignatureAlgorithm::Sm2 && sm2impl::verify(&pk, &z, msg, &r, &s) {
            Ok(())
        } else {
            Err(CryptoError::SignatureInvalid)
        }
    }

    /// SM2 only: the user identity hash Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A).
    pub fn sm2_z_a(&self, distid: &[u8]) -> Result<HashValue> {
        let pk = self.sm2_public()?;
        Ok(HashValue::new(Suite::Gm, sm2impl::z_a(distid, &pk)?))
    }

    fn sm2_public(&self) -> Result<sm2::PublicKey> {
        match &self.inner {
            VerifyingInner::Sm2(vk) => Ok(sm2::PublicKey::from(vk.as_ref())),
            _ => Err(CryptoError::UnsupportedAlgorithm(format!(
                "{} key used where an SM2 key is required",
                self.algorithm()
            ))),
        }
    }

    /// Raw public key: 32 bytes for Ed25519, 65-byte uncompressed SEC1 point (`04 ‖ x ‖ y`)
    /// for SM2 and P-256.
    pub fn to_raw_bytes(&self) -> Vec<u8> {
        match &self.inner {
            VerifyingInner::Ed25519(vk) => vk.to_bytes().to_vec(),
            VerifyingInner::Sm2(vk) => vk.to_sec1_bytes().to_vec(),
            VerifyingInner::P256(vk) => vk.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    pub fn from_raw_bytes(algorithm: SignatureAlgorithm, bytes: &[u8]) -> Result<Self> {
        let bad = |what: &str| CryptoError::InvalidKey(format!("{algorithm} public key: {what}"));
        let inner = match algorithm {
            SignatureAlgorithm::Ed25519 => {
                let arr: &[u8; 32] = bytes.try_into().map_err(|_| bad("must be 32 bytes"))?;
                VerifyingInner::Ed25519(
                    ed::VerifyingKey::from_bytes(arr).map_err(|_| bad("not a curve point"))?,
                )
            }
            SignatureAlgorithm::Sm2 => {
                let pk = sm2::PublicKey::from_sec1_bytes(bytes)
                    .map_err(|_| bad("not a valid SEC1 point"))?;
                VerifyingInner::Sm2(Box::new(sm2_verifying_key(pk)?))
            }
            SignatureAlgorithm::EcdsaP256 => VerifyingInner::P256(
                p256dsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map_err(|_| bad("not a valid SEC1 point"))?,
            ),
        };
        Ok(Self { inner })
    }

    /// DER SubjectPublicKeyInfo (RFC 8410 for Ed25519; id-ecPublicKey with the curve OID
    /// `1.2.156.10197.1.301` for SM2, as OpenSSL and GmSSL write it; prime256v1 for P-256).
    pub fn to_spki_der(&self) -> Vec<u8> {
        let prefix = match self.inner {
            VerifyingInner::Ed25519(_) => SPKI_PREFIX_ED25519,
            VerifyingInner::Sm2(_) => SPKI_PREFIX_SM2,
            VerifyingInner::P256(_) => SPKI_PREFIX_P256,
        };
        let mut der = prefix.to_vec();
        der.extend_from_slice(&self.to_raw_bytes());
        der
    }

    pub fn to_spki_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.to_spki_der())
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let info = spki::SubjectPublicKeyInfoRef::try_from(der)
            .map_err(|e| CryptoError::Malformed(format!("SubjectPublicKeyInfo: {e}")))?;
        let algorithm = classify(info.algorithm.oid, info.algorithm.parameters_oid().ok())?;
        let bad = |e: spki::Error| CryptoError::InvalidKey(format!("{algorithm} public key: {e}"));
        let inner = match algorithm {
            SignatureAlgorithm::Ed25519 => {
                VerifyingInner::Ed25519(ed::VerifyingKey::from_public_key_der(der).map_err(bad)?)
            }
            SignatureAlgorithm::Sm2 => VerifyingInner::Sm2(Box::new(sm2_verifying_key(
                sm2::PublicKey::from_public_key_der(der).map_err(bad)?,
            )?)),
            SignatureAlgorithm::EcdsaP256 => {
                VerifyingInner::P256(p256dsa::VerifyingKey::from_public_key_der(der).map_err(bad)?)
            }
        };
        Ok(Self { inner })
    }

    pub fn from_spki_pem(pem: &str) -> Result<Self> {
        let (label, der) = pem_decode(pem)?;
        if label != "PUBLIC KEY" {
            return Err(wrong_label(&label, "PUBLIC KEY"));
        }
        Self::from_spki_der(&der)
    }

    /// First 16 bytes of the suite hash of [`Self::to_spki_der`].
    pub fn key_id(&self) -> KeyId {
        let digest = hash(self.suite(), &self.to_spki_der());
        let mut id = [0u8; KeyId::LEN];
        id.copy_from_slice(&digest.as_bytes()[..KeyId::LEN]);
        KeyId(id)
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm() == other.algorithm() && self.to_raw_bytes() == other.to_raw_bytes()
    }
}

impl Eq for VerifyingKey {}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VerifyingKey({}, id {})",
            self.algorithm(),
            self.key_id()
        )
    }
}

enum SigningInner {
    Ed25519(ed::SigningKey),
    Sm2(Box<Sm2Secret>),
    P256(p256dsa::SigningKey),
}

/// A private signing key. Zeroized on drop; `Debug` shows only the algorithm and key id.
pub struct SigningKey {
    inner: SigningInner,
    public: VerifyingKey,
}

impl SigningKey {
    pub fn generate(algorithm: SignatureAlgorithm) -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        loop {
            crate::fill_random(seed.as_mut())?;
            // For SM2/P-256 a random 256-bit string is out of range with probability < 2^-32.
            match Self::from_secret_bytes(algorithm, seed.as_ref()) {
                Ok(key) => return Ok(key),
                Err(CryptoError::InvalidKey(_)) => continue,
                Err(other) => return Err(other),
            }
        }
    }

    /// The suite's default scheme: Ed25519 for `intl`, SM2 for `gm`.
    pub fn generate_for_suite(suite: Suite) -> Result<Self> {
        Self::generate(suite.signature_algorithm())
    }

    /// Ed25519: the 32-byte seed (RFC 8032 "secret key"). SM2 / P-256: the 32-byte big-endian
    /// private scalar, which must be in `[1, n-2]` / `[1, n-1]`.
    pub fn from_secret_bytes(algorithm: SignatureAlgorithm, bytes: &[u8]) -> Result<Self> {
        let bad = |what: &str| CryptoError::InvalidKey(format!("{algorithm} private key: {what}"));
        match algorithm {
            SignatureAlgorithm::Ed25519 => {
                let seed: &[u8; 32] = bytes.try_into().map_err(|_| bad("must be 32 bytes"))?;
                Ok(Self::from_ed25519(ed::SigningKey::from_bytes(seed)))
            }
            SignatureAlgorithm::Sm2 => {
                let sk = sm2::SecretKey::from_slice(bytes)
                    .map_err(|_| bad("must be a 32-byte scalar in range"))?;
                Self::from_sm2(&sk)
            }
            SignatureAlgorithm::EcdsaP256 => {
                let sk = p256dsa::SigningKey::from_slice(bytes)
                    .map_err(|_| bad("must be a 32-byte scalar in range"))?;
                Ok(Self::from_p256(sk))
            }
        }
    }

    /// Inverse of [`Self::from_secret_bytes`].
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match &self.inner {
            SigningInner::Ed25519(k) => k.to_bytes().to_vec(),
            SigningInner::Sm2(k) => k.to_bytes().to_vec(),
            SigningInner::P256(k) => k.to_bytes().to_vec(),
        })
    }

    fn from_ed25519(k: ed::SigningKey) -> Self {
        let public = VerifyingKey {
            inner: VerifyingInner::Ed25519(k.verifying_key()),
        };
        Self {
            inner: SigningInner::Ed25519(k),
            public,
        }
    }

    fn from_sm2(sk: &sm2::SecretKey) -> Result<Self> {
        let secret = Sm2Secret::new(sk)?;
        let public = VerifyingKey {
            inner: VerifyingInner::Sm2(Box::new(sm2_verifying_key(sk.public_key())?)),
        };
        Ok(Self {
            inner: SigningInner::Sm2(Box::new(secret)),
            public,
        })
    }

    fn from_p256(k: p256dsa::SigningKey) -> Self {
        let public = VerifyingKey {
            inner: VerifyingInner::P256(*k.verifying_key()),
        };
        Self {
            inner: SigningInner::P256(k),
            public,
        }
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.public.algorithm()
    }

    pub fn suite(&self) -> Suite {
        self.public.suite()
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Sign `msg`. Ed25519 is deterministic; SM2 uses a fresh random nonce hedged with the key
    /// and message; P-256 uses RFC 6979.
    pub fn sign(&self, msg: &[u8]) -> Result<Signature> {
        match &self.inner {
            SigningInner::Ed25519(k) => {
                use ed::Signer as _;
                Ok(Signature {
                    algorithm: SignatureAlgorithm::Ed25519,
                    bytes: k.sign(msg).to_bytes().to_vec(),
                })
            }
            SigningInner::Sm2(k) => {
                let (r, s) = k.sign(msg)?;
                Ok(Signature {
                    algorithm: SignatureAlgorithm::Sm2,
                    bytes: der_encode_rs(&r, &s),
                })
            }
            SigningInner::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256dsa::Signature = k
                    .try_sign(msg)
                    .map_err(|_| CryptoError::Malformed("ECDSA signing failed".into()))?;
                let (r, s) = sig.split_bytes();
                Ok(Signature {
                    algorithm: SignatureAlgorithm::EcdsaP256,
                    bytes: der_encode_rs(&r.into(), &s.into()),
                })
            }
        }
    }

    /// SM2 only: sign with a distinguishing id other than the default.
    pub fn sign_sm2_with_distid(&self, msg: &[u8], distid: &[u8]) -> Result<Signature> {
        match &self.inner {
            SigningInner::Sm2(k) => {
                let (r, s) = k.sign_with_distid(msg, distid)?;
                Ok(Signature {
                    algorithm: SignatureAlgorithm::Sm2,
                    bytes: der_encode_rs(&r, &s),
                })
            }
            _ => Err(CryptoError::UnsupportedAlgorithm(format!(
                "{} key used where an SM2 key is required",
                self.algorithm()
            ))),
        }
    }

    /// Unencrypted PKCS#8 v1 (RFC 5208) DER; OpenSSL 3 reads it as an ED25519 / SM2 / EC key.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let encode_err = |e: pkcs8::Error| CryptoError::Malformed(format!("PKCS#8 encoding: {e}"));
        let doc = match &self.inner {
            SigningInner::Ed25519(k) => {
                // v1 without the optional public key: the form `openssl genpkey` writes.
                let kp = ed::pkcs8::KeypairBytes {
                    secret_key: k.to_bytes(),
                    public_key: None,
                };
                kp.to_pkcs8_der().map_err(encode_err)?
            }
            SigningInner::Sm2(k) => k.secret_key().to_pkcs8_der().map_err(encode_err)?,
            SigningInner::P256(k) => k.to_pkcs8_der().map_err(encode_err)?,
        };
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let der = self.to_pkcs8_der()?;
        Ok(Zeroizing::new(pem_encode("PRIVATE KEY", &der)))
    }

    /// Parse an unencrypted PKCS#8 private key; the algorithm is read from the key itself.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let info = pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|e| CryptoError::Malformed(format!("PKCS#8: {e}")))?;
        let algorithm = classify(info.algorithm.oid, info.algorithm.parameters_oid().ok())?;
        let bad =
            |e: pkcs8::Error| CryptoError::InvalidKey(format!("{algorithm} private key: {e}"));
        match algorithm {
            SignatureAlgorithm::Ed25519 => Ok(Self::from_ed25519(
                ed::SigningKey::from_pkcs8_der(der).map_err(bad)?,
            )),
            SignatureAlgorithm::Sm2 => {
                Self::from_sm2(&sm2::SecretKey::from_pkcs8_der(der).map_err(bad)?)
            }
            SignatureAlgorithm::EcdsaP256 => Ok(Self::from_p256(
                p256dsa::SigningKey::from_pkcs8_der(der).map_err(bad)?,
            )),
        }
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let (label, der) = pem_decode(pem)?;
        if label != "PRIVATE KEY" {
            return Err(wrong_label(&label, "PRIVATE KEY"));
        }
        Self::from_pkcs8_der(&der)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({}, id {}, ..)",
            self.algorithm(),
            self.key_id()
        )
    }
}

/// A key read from a PEM file of unknown kind.
#[derive(Debug)]
pub enum ParsedKey {
    Private(Box<SigningKey>),
    Public(VerifyingKey),
}

impl ParsedKey {
    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self {
            Self::Private(k) => k.algorithm(),
            Self::Public(k) => k.algorithm(),
        }
    }

    pub fn suite(&self) -> Suite {
        self.algorithm().suite()
    }

    /// The public half, whichever kind was parsed.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::Private(k) => k.public_key(),
            Self::Public(k) => k.clone(),
        }
    }
}

/// Parse a `PRIVATE KEY` (PKCS#8) or `PUBLIC KEY` (SPKI) PEM and tell which algorithm it is.
pub fn parse_pem(pem: &str) -> Result<ParsedKey> {
    let (label, der) = pem_decode(pem)?;
    match label.as_str() {
        "PRIVATE KEY" => Ok(ParsedKey::Private(Box::new(SigningKey::from_pkcs8_der(
            &der,
        )?))),
        "PUBLIC KEY" => Ok(ParsedKey::Public(VerifyingKey::from_spki_der(&der)?)),
        other => Err(wrong_label(other, "PRIVATE KEY or PUBLIC KEY")),
    }
}

fn sm2_verifying_key(pk: sm2::PublicKey) -> Result<sm2::dsa::VerifyingKey> {
    sm2::dsa::VerifyingKey::new(SM2_DEFAULT_DISTID_STR, pk)
        .map_err(|_| CryptoError::InvalidKey("SM2 public key".into()))
}

fn classify(oid: ObjectIdentifier, params: Option<ObjectIdentifier>) -> Result<SignatureAlgorithm> {
    if oid == OID_ED25519 {
        return Ok(SignatureAlgorithm::Ed25519);
    }
    if oid == OID_EC_PUBLIC_KEY {
        return match params {
            Some(curve) if curve == OID_SM2_CURVE => Ok(SignatureAlgorithm::Sm2),
            Some(curve) if curve == OID_P256_CURVE => Ok(SignatureAlgorithm::EcdsaP256),
            Some(curve) => Err(CryptoError::UnsupportedAlgorithm(format!(
                "elliptic curve {curve}"
            ))),
            None => Err(CryptoError::UnsupportedAlgorithm(
                "EC key without a named curve (explicit parameters are not supported)".into(),
            )),
        };
    }
    if oid == OID_SM2_CURVE {
        return Err(CryptoError::UnsupportedAlgorithm(
            "SM2 key with the curve OID as algorithm identifier; re-encode it with `openssl pkey`"
                .into(),
        ));
    }
    Err(CryptoError::UnsupportedAlgorithm(format!(
        "key algorithm {oid}"
    )))
}

pub(crate) fn pem_decode(pem: &str) -> Result<(String, Zeroizing<Vec<u8>>)> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| CryptoError::Malformed(format!("not a PEM document: {e}")))?;
    Ok((label.to_string(), Zeroizing::new(der)))
}

fn wrong_label(found: &str, expected: &str) -> CryptoError {
    match found {
        "ENCRYPTED PRIVATE KEY" => CryptoError::UnsupportedAlgorithm(
            "encrypted PKCS#8 keys are not supported; decrypt with `openssl pkcs8 -in KEY -nocrypt`".into(),
        ),
        "EC PRIVATE KEY" => CryptoError::UnsupportedAlgorithm(
            "SEC1 \"EC PRIVATE KEY\" is not supported; convert with `openssl pkcs8 -topk8 -nocrypt -in KEY`".into(),
        ),
        _ => CryptoError::Malformed(format!("PEM label is {found:?}, expected {expected}")),
    }
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let mut b64 = Zeroizing::new(B64.encode(der));
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    b64.zeroize();
    out
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from 32-byte big-endian scalars.
pub(crate) fn der_encode_rs(r: &[u8; 32], s: &[u8; 32]) -> Vec<u8> {
    fn int(out: &mut Vec<u8>, v: &[u8; 32]) {
        let first = v.iter().position(|&b| b != 0).unwrap_or(31);
        let digits = &v[first..];
        let pad = digits[0] & 0x80 != 0;
        out.push(0x02);
        out.push((digits.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(digits);
    }
    let mut body = Vec::with_capacity(70);
    int(&mut body, r);
    int(&mut body, s);
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(0x30);
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    out
}

/// Strict DER decoding of `SEQUENCE { INTEGER r, INTEGER s }` with positive r, s < 2^256.
pub(crate) fn der_decode_rs(der: &[u8]) -> Result<([u8; 32], [u8; 32])> {
    let bad = |what: &str| CryptoError::Malformed(format!("DER signature: {what}"));
    fn int<'a>(input: &'a [u8], bad: &dyn Fn(&str) -> CryptoError) -> Result<([u8; 32], &'a [u8])> {
        let [tag, len, rest @ ..] = input else {
            return Err(bad("truncated INTEGER"));
        };
        let len = usize::from(*len);
        if *tag != 0x02 || len == 0 || len > 33 || rest.len() < len {
            return Err(bad("bad INTEGER header"));
        }
        let (digits, rest) = rest.split_at(len);
        if digits[0] & 0x80 != 0 {
            return Err(bad("negative INTEGER"));
        }
        if len > 1 && digits[0] == 0 && digits[1] & 0x80 == 0 {
            return Err(bad("non-minimal INTEGER"));
        }
        let digits = if digits[0] == 0 && len > 1 {
            &digits[1..]
        } else {
            digits
        };
        if digits.len() > 32 {
            return Err(bad("INTEGER wider than 256 bits"));
        }
        let mut out = [0u8; 32];
        out[32 - digits.len()..].copy_from_slice(digits);
        Ok((out, rest))
    }
    let [0x30, len, body @ ..] = der else {
        return Err(bad("not a SEQUENCE"));
    };
    if usize::from(*len) != body.len() || *len >= 0x80 {
        return Err(bad("SEQUENCE length mismatch or trailing data"));
    }
    let (r, rest) = int(body, &bad)?;
    let (s, rest) = int(rest, &bad)?;
    if !rest.is_empty() {
        return Err(bad("extra elements"));
    }
    Ok((r, s))
}
