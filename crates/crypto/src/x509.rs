//! X.509 v3 certificates for tenant CAs and institution keys (RFC 5280), readable and verifiable
//! by OpenSSL 3.
//!
//! Signature algorithms follow the issuer key: Ed25519 (RFC 8410, `1.3.101.112`), SM2-with-SM3
//! (GM/T 0015, `1.2.156.10197.1.501`) and ecdsa-with-SHA256 (RFC 5758) for P-256, all without
//! parameters. SM2 certificate signatures use the GM/T 0009 default distinguishing id
//! `1234567812345678`, as GM CAs and GmSSL do. OpenSSL 3.0 instead defaults to an empty id, so
//! it verifies our SM2 certificates only with `openssl verify -vfyopt distid:1234567812345678`
//! (and signs compatible ones only with `-sigopt distid:1234567812345678`).
//!
//! Key identifiers are not the RFC 5280 SHA-1 method (RFC 7093 allows others): the
//! SubjectKeyIdentifier is the subject's [`KeyId`](crate::KeyId), so `openssl x509 -text` shows
//! the same id the rest of Caretrail uses.
//!
//! Decoding is strict: the input must be canonical DER (so the fingerprint identifies the
//! certificate), v3, with a supported key and signature algorithm, no duplicate extensions and
//! no critical extension this module does not understand.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use der::asn1::{
    BitString, GeneralizedTime, Ia5StringRef, OctetString, PrintableStringRef, SetOfVec, UtcTime,
    Utf8StringRef,
};
use der::oid::{AssociatedOid, ObjectIdentifier};
use der::{Any, DateTime, Decode, Encode, Tag, Tagged};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage as X509KeyUsage, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;
use x509_cert::{TbsCertificate, Version};

use crate::sign::{pem_decode, pem_encode};
use crate::{
    CryptoError, HashValue, Result, SignatureAlgorithm, SigningKey, VerifyingKey, hash,
    random_array,
};

const OID_SIG_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_SIG_SM2_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
const OID_SIG_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

const OID_COUNTRY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const OID_ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_ORGANIZATIONAL_UNIT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
// X.520 organizationIdentifier; OpenSSL 3 prints it by name.
const OID_ORGANIZATION_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.97");

/// Short names for RFC 4514 output; anything else prints as `OID=#hex`.
const NAME_LABELS: &[(ObjectIdentifier, &str)] = &[
    (OID_COMMON_NAME, "CN"),
    (ObjectIdentifier::new_unwrap("2.5.4.7"), "L"),
    (ObjectIdentifier::new_unwrap("2.5.4.8"), "ST"),
    (OID_ORGANIZATION, "O"),
    (OID_ORGANIZATIONAL_UNIT, "OU"),
    (OID_COUNTRY, "C"),
    (ObjectIdentifier::new_unwrap("2.5.4.9"), "STREET"),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25"),
        "DC",
    ),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1"),
        "UID",
    ),
    (ObjectIdentifier::new_unwrap("2.5.4.5"), "serialNumber"),
    (OID_ORGANIZATION_IDENTIFIER, "organizationIdentifier"),
];

/// RFC 5280 upper bound (ub-common-name etc.), in characters.
const MAX_NAME_VALUE_CHARS: usize = 64;
/// Far above any certificate this crate writes; bounds the work done on hostile input.
const MAX_CERTIFICATE_LEN: usize = 64 * 1024;
/// Our last UTCTime year; later times are GeneralizedTime (RFC 5280 §4.1.2.5).
const LAST_UTC_TIME_YEAR: u16 = 2049;

/// The subject or issuer name of a certificate, limited to the attributes Caretrail writes.
///
/// Encoded in the order C, O, organizationIdentifier, OU, CN, one attribute per RDN, all
/// UTF8String except C (PrintableString).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DistinguishedName {
    /// C: two-letter ISO 3166 code.
    pub country: Option<String>,
    /// O: the tenant's display name.
    pub organization: Option<String>,
    /// organizationIdentifier (2.5.4.97): the tenant id.
    pub organization_identifier: Option<String>,
    /// OU: the institution's level.
    pub organizational_unit: Option<String>,
    /// CN: the institution id, or the CA's name.
    pub common_name: String,
}

impl DistinguishedName {
    pub fn new(common_name: impl Into<String>) -> Self {
        Self {
            common_name: common_name.into(),
            ..Self::default()
        }
    }

    /// `O = <tenant name>, organizationIdentifier = <tenant id>, CN = Caretrail tenant CA`.
    pub fn tenant_ca(tenant_id: &str, tenant_name: &str) -> Self {
        Self {
            organization: Some(tenant_name.to_owned()),
            organization_identifier: Some(tenant_id.to_owned()),
            ..Self::new("Caretrail tenant CA")
        }
    }

    /// `O = <tenant name>, organizationIdentifier = <tenant id>, OU = <level>,
    /// CN = <institution id>`.
    pub fn institution(
        tenant_id: &str,
        tenant_name: &str,
        institution_id: &str,
        level: &str,
    ) -> Self {
        Self {
            organization: Some(tenant_name.to_owned()),
            organization_identifier: Some(tenant_id.to_owned()),
            organizational_unit: Some(level.to_owned()),
            ..Self::new(institution_id)
        }
    }

    /// The tenant id (organizationIdentifier).
    pub fn tenant_id(&self) -> Option<&str> {
        self.organization_identifier.as_deref()
    }

    fn attributes(&self) -> impl Iterator<Item = (ObjectIdentifier, &str)> {
        [
            (OID_COUNTRY, self.country.as_deref()),
            (OID_ORGANIZATION, self.organization.as_deref()),
            (
                OID_ORGANIZATION_IDENTIFIER,
                self.organization_identifier.as_deref(),
            ),
            (OID_ORGANIZATIONAL_UNIT, self.organizational_unit.as_deref()),
            (OID_COMMON_NAME, Some(self.common_name.as_str())),
        ]
        .into_iter()
        .filter_map(|(oid, v)| v.map(|v| (oid, v)))
    }

    fn to_name(&self) -> Result<Name> {
        let mut rdns = Vec::new();
        for (oid, value) in self.attributes() {
            let label = label_of(&oid);
            let chars = value.chars().count();
            if chars == 0 || chars > MAX_NAME_VALUE_CHARS {
                return Err(CryptoError::Malformed(format!(
                    "name attribute {label} must be 1..={MAX_NAME_VALUE_CHARS} characters"
                )));
            }
            if value.chars().any(char::is_control) {
                return Err(CryptoError::Malformed(format!(
                    "name attribute {label} contains control characters"
                )));
            }
            let tag = if oid == OID_COUNTRY {
                if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(CryptoError::Malformed(
                        "country must be two upper-case letters (ISO 3166)".into(),
                    ));
                }
                Tag::PrintableString
            } else {
                Tag::Utf8String
            };
            let value = Any::new(tag, value.as_bytes()).map_err(der_err)?;
            let set =
                SetOfVec::try_from(vec![AttributeTypeAndValue { oid, value }]).map_err(der_err)?;
            rdns.push(RelativeDistinguishedName(set));
        }
        Ok(RdnSequence(rdns))
    }

    /// Only single-valued RDNs with the attributes of this type, each at most once.
    fn from_name(name: &Name) -> Result<Self> {
        let mut out = Self::default();
        let mut common_name = None;
        for rdn in &name.0 {
            let [atv] = rdn.0.as_slice() else {
                return Err(CryptoError::UnsupportedAlgorithm(
                    "multi-valued relative distinguished name".into(),
                ));
            };
            let slot = match atv.oid {
                OID_COUNTRY => &mut out.country,
                OID_ORGANIZATION => &mut out.organization,
                OID_ORGANIZATION_IDENTIFIER => &mut out.organization_identifier,
                OID_ORGANIZATIONAL_UNIT => &mut out.organizational_unit,
                OID_COMMON_NAME => &mut common_name,
                other => {
                    return Err(CryptoError::UnsupportedAlgorithm(format!(
                        "name attribute {other}"
                    )));
                }
            };
            if slot.is_some() {
                return Err(CryptoError::Malformed(format!(
                    "name attribute {} appears twice",
                    label_of(&atv.oid)
                )));
            }
            let value = attribute_string(&atv.value).ok_or_else(|| {
                CryptoError::UnsupportedAlgorithm(format!(
                    "string type of name attribute {}",
                    label_of(&atv.oid)
                ))
            })?;
            *slot = Some(value.to_owned());
        }
        out.common_name = common_name
            .ok_or_else(|| CryptoError::Malformed("name has no common name (CN)".into()))?;
        Ok(out)
    }
}

/// RFC 4514 string, most specific attribute first (`CN=…,OU=…,O=…`), the reverse of the order
/// `openssl x509 -text` prints.
impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attrs: Vec<_> = self.attributes().collect();
        for (i, (oid, value)) in attrs.iter().rev().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{}=", label_of(oid))?;
            escape_rfc4514(f, value)?;
        }
        Ok(())
    }
}

/// Validity period in Unix seconds, both ends inclusive (RFC 5280).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Validity {
    pub not_before: u64,
    pub not_after: u64,
}

impl Validity {
    pub const fn new(not_before: u64, not_after: u64) -> Self {
        Self {
            not_before,
            not_after,
        }
    }

    pub const fn contains(&self, unix_secs: u64) -> bool {
        self.not_before <= unix_secs && unix_secs <= self.not_after
    }
}

/// The key usage bits Caretrail sets; others present in a parsed certificate are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyUsage {
    pub digital_signature: bool,
    pub non_repudiation: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

impl KeyUsage {
    /// Institution keys: they sign records and consents, never certificates.
    pub const SIGNING: Self = Self {
        digital_signature: true,
        non_repudiation: true,
        key_cert_sign: false,
        crl_sign: false,
    };
    /// Certificate authorities.
    pub const CA: Self = Self {
        digital_signature: false,
        non_repudiation: false,
        key_cert_sign: true,
        crl_sign: true,
    };

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// DER of the KeyUsage BIT STRING (named bits, trailing zero bits dropped).
    fn to_extension_value(self) -> Result<Vec<u8>> {
        let bits = [
            (0, self.digital_signature),
            (1, self.non_repudiation),
            (5, self.key_cert_sign),
            (6, self.crl_sign),
        ];
        let highest = bits
            .iter()
            .filter(|(_, on)| *on)
            .map(|(i, _)| *i)
            .max()
            .ok_or_else(|| CryptoError::Malformed("key usage is empty".into()))?;
        // All our bits live in the first octet.
        let byte = bits
            .iter()
            .filter(|(_, on)| *on)
            .fold(0u8, |acc, (i, _)| acc | (0x80 >> i));
        BitString::new(7 - highest, vec![byte])
            .and_then(|b| b.to_der())
            .map_err(der_err)
    }
}

/// What the issuer certifies. Build it with [`CertificateRequest::institution`] or
/// [`CertificateRequest::ca`], or fill it in directly.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// Positive; [`random_serial`] gives 127 random bits, as RFC 5280 and the CA/B forum expect
    /// unpredictable serials.
    pub serial: u128,
    pub subject: DistinguishedName,
    pub subject_public_key: VerifyingKey,
    pub validity: Validity,
    pub is_ca: bool,
    /// Only for CAs: how many intermediate CAs may follow this one.
    pub path_len: Option<u8>,
    pub key_usage: KeyUsage,
}

impl CertificateRequest {
    /// An institution signing key: random serial, not a CA, digitalSignature + nonRepudiation.
    pub fn institution(
        subject: DistinguishedName,
        subject_public_key: VerifyingKey,
        validity: Validity,
    ) -> Result<Self> {
        Ok(Self {
            serial: random_serial()?,
            subject,
            subject_public_key,
            validity,
            is_ca: false,
            path_len: None,
            key_usage: KeyUsage::SIGNING,
        })
    }

    /// A CA key: random serial, keyCertSign + cRLSign.
    pub fn ca(
        subject: DistinguishedName,
        subject_public_key: VerifyingKey,
        validity: Validity,
        path_len: Option<u8>,
    ) -> Result<Self> {
        Ok(Self {
            serial: random_serial()?,
            subject,
            subject_public_key,
            validity,
            is_ca: true,
            path_len,
            key_usage: KeyUsage::CA,
        })
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str| {
            Err(CryptoError::Malformed(format!(
                "certificate request: {what}"
            )))
        };
        if self.serial == 0 {
            return bad("serial must be positive");
        }
        if self.validity.not_before > self.validity.not_after {
            return bad("not_before is after not_after");
        }
        if self.key_usage.is_empty() {
            return bad("key usage is empty");
        }
        if self.is_ca != self.key_usage.key_cert_sign {
            // RFC 5280 §4.2.1.3 / §4.2.1.9: keyCertSign if and only if cA.
            return bad("keyCertSign must be set exactly for CA certificates");
        }
        if !self.is_ca && self.path_len.is_some() {
            return bad("path length constraint on a non-CA certificate");
        }
        Ok(())
    }
}

/// A random positive serial of 127 bits.
pub fn random_serial() -> Result<u128> {
    loop {
        let serial = u128::from_be_bytes(random_array::<16>()?) >> 1;
        if serial != 0 {
            return Ok(serial);
        }
    }
}

/// Self-signed tenant CA certificate: random serial, CA with path length 0 (it issues only
/// end-entity certificates), keyCertSign + cRLSign.
pub fn self_signed_ca(
    key: &SigningKey,
    name: &DistinguishedName,
    validity: Validity,
) -> Result<Certificate> {
    let request = CertificateRequest::ca(name.clone(), key.public_key(), validity, Some(0))?;
    let issuer_name = name.to_name()?;
    build(key, issuer_name, key.key_id().as_bytes().to_vec(), &request)
}

/// Issue a certificate signed by `issuer_key`, which must be the key of the CA certificate
/// `issuer`. The issuer name is copied byte for byte from `issuer` and the
/// AuthorityKeyIdentifier from its SubjectKeyIdentifier, so chain building matches exactly.
pub fn issue_certificate(
    issuer_key: &SigningKey,
    issuer: &Certificate,
    request: &CertificateRequest,
) -> Result<Certificate> {
    request.check()?;
    if issuer_key.verifying_key() != issuer.public_key() {
        return Err(CryptoError::InvalidKey(
            "signing key does not belong to the issuer certificate".into(),
        ));
    }
    issuer.check_can_issue()?;
    if request.is_ca && issuer.path_len() == Some(0) {
        return Err(CryptoError::CertificateRejected(format!(
            "{:?} has path length 0 and may not certify other CAs",
            issuer.subject()
        )));
    }
    let aki = match issuer.subject_key_id() {
        Some(ski) => ski.to_vec(),
        None => issuer_key.key_id().as_bytes().to_vec(),
    };
    build(
        issuer_key,
        issuer.inner.tbs_certificate.subject.clone(),
        aki,
        request,
    )
}

fn build(
    signer: &SigningKey,
    issuer_name: Name,
    authority_key_id: Vec<u8>,
    request: &CertificateRequest,
) -> Result<Certificate> {
    request.check()?;
    let signature_algorithm = algorithm_identifier(signer.algorithm());
    let subject_public_key_info =
        SubjectPublicKeyInfoOwned::from_der(&request.subject_public_key.to_spki_der())
            .map_err(der_err)?;
    let extensions = vec![
        extension(
            BasicConstraints::OID,
            true,
            BasicConstraints {
                ca: request.is_ca,
                path_len_constraint: request.path_len,
            }
            .to_der()
            .map_err(der_err)?,
        )?,
        extension(
            X509KeyUsage::OID,
            true,
            request.key_usage.to_extension_value()?,
        )?,
        extension(
            SubjectKeyIdentifier::OID,
            false,
            SubjectKeyIdentifier(
                OctetString::new(request.subject_public_key.key_id().as_bytes().to_vec())
                    .map_err(der_err)?,
            )
            .to_der()
            .map_err(der_err)?,
        )?,
        extension(
            AuthorityKeyIdentifier::OID,
            false,
            AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(authority_key_id).map_err(der_err)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            }
            .to_der()
            .map_err(der_err)?,
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&request.serial.to_be_bytes()).map_err(der_err)?,
        signature: signature_algorithm.clone(),
        issuer: issuer_name,
        validity: x509_cert::time::Validity {
            not_before: to_time(request.validity.not_before)?,
            not_after: to_time(request.validity.not_after)?,
        },
        subject: request.subject.to_name()?,
        subject_public_key_info,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(der_err)?;
    let signature = signer.sign(&tbs_der)?;
    let cert = x509_cert::Certificate {
        tbs_certificate: tbs,
        signature_algorithm,
        signature: BitString::from_bytes(signature.as_bytes()).map_err(der_err)?,
    };
    let out = Certificate::from_der(&cert.to_der().map_err(der_err)?)?;
    // Catches a faulty signature before it leaves the CA.
    out.verify_signed_by(signer.verifying_key())?;
    Ok(out)
}

/// A parsed X.509 v3 certificate whose key and signature algorithm this crate supports.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    tbs_der: Vec<u8>,
    inner: x509_cert::Certificate,
    signature_algorithm: SignatureAlgorithm,
    public_key: VerifyingKey,
    validity: Validity,
    ext: ParsedExtensions,
}

impl Certificate {
    pub fn from_der(der: &[u8]) -> Result<Self> {
        if der.len() > MAX_CERTIFICATE_LEN {
            return Err(CryptoError::LimitExceeded(format!(
                "certificate larger than {MAX_CERTIFICATE_LEN} bytes"
            )));
        }
        let malformed = |e: der::Error| CryptoError::Malformed(format!("certificate: {e}"));
        let inner = x509_cert::Certificate::from_der(der).map_err(malformed)?;
        if inner.to_der().map_err(malformed)? != der {
            return Err(CryptoError::Malformed(
                "certificate is not in canonical DER".into(),
            ));
        }
        let tbs = &inner.tbs_certificate;
        if tbs.version != Version::V3 {
            return Err(CryptoError::UnsupportedAlgorithm(
                "certificate version other than v3".into(),
            ));
        }
        let serial = tbs.serial_number.as_bytes();
        if serial.first().is_none_or(|b| b & 0x80 != 0) || serial.iter().all(|&b| b == 0) {
            return Err(CryptoError::Malformed(
                "certificate serial number is not positive".into(),
            ));
        }
        if tbs.signature != inner.signature_algorithm {
            return Err(CryptoError::Malformed(
                "signature algorithm inside and outside the TBSCertificate differ".into(),
            ));
        }
        let signature_algorithm = signature_algorithm_of(&inner.signature_algorithm)?;
        let public_key =
            VerifyingKey::from_spki_der(&tbs.subject_public_key_info.to_der().map_err(malformed)?)?;
        let validity = Validity {
            not_before: tbs.validity.not_before.to_unix_duration().as_secs(),
            not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
        };
        let tbs_der = tbs.to_der().map_err(malformed)?;

        let mut ext = ParsedExtensions::default();
        let mut seen: Vec<ObjectIdentifier> = Vec::new();
        for e in tbs.extensions.iter().flatten() {
            if seen.contains(&e.extn_id) {
                return Err(CryptoError::Malformed(format!(
                    "extension {} appears twice",
                    e.extn_id
                )));
            }
            seen.push(e.extn_id);
            ext.read(e).map_err(|err| match err {
                CryptoError::Malformed(m) => {
                    CryptoError::Malformed(format!("extension {}: {m}", e.extn_id))
                }
                other => other,
            })?;
        }
        Ok(Self {
            der: der.to_vec(),
            tbs_der,
            inner,
            signature_algorithm,
            public_key,
            validity,
            ext,
        })
    }

    pub fn from_pem(pem: &str) -> Result<Self> {
        let (label, der) = pem_decode(pem)?;
        if label != "CERTIFICATE" {
            return Err(CryptoError::Malformed(format!(
                "PEM label is {label:?}, expected CERTIFICATE"
            )));
        }
        Self::from_der(&der)
    }

    pub fn as_der(&self) -> &[u8] {
        &self.der
    }

    pub fn to_der(&self) -> Vec<u8> {
        self.der.clone()
    }

    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// The DER TBSCertificate: the bytes the issuer signed.
    pub fn tbs_der(&self) -> &[u8] {
        &self.tbs_der
    }

    /// Lowercase hex of the serial number, without leading zero bytes.
    pub fn serial_hex(&self) -> String {
        let bytes = self.inner.tbs_certificate.serial_number.as_bytes();
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        hex::encode(bytes.get(start..).unwrap_or_default())
    }

    /// RFC 4514 string of the subject (most specific attribute first).
    pub fn subject(&self) -> String {
        format_name(&self.inner.tbs_certificate.subject)
    }

    /// RFC 4514 string of the issuer (most specific attribute first).
    pub fn issuer(&self) -> String {
        format_name(&self.inner.tbs_certificate.issuer)
    }

    /// Fails for names with attributes [`DistinguishedName`] does not model.
    pub fn subject_name(&self) -> Result<DistinguishedName> {
        DistinguishedName::from_name(&self.inner.tbs_certificate.subject)
    }

    pub fn issuer_name(&self) -> Result<DistinguishedName> {
        DistinguishedName::from_name(&self.inner.tbs_certificate.issuer)
    }

    pub fn validity(&self) -> Validity {
        self.validity
    }

    pub fn not_before(&self) -> u64 {
        self.validity.not_before
    }

    pub fn not_after(&self) -> u64 {
        self.validity.not_after
    }

    /// Whether `unix_secs` lies within the validity period. Says nothing about revocation.
    pub fn valid_at(&self, unix_secs: u64) -> bool {
        self.validity.contains(unix_secs)
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    /// The algorithm the issuer signed with.
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        self.signature_algorithm
    }

    pub fn is_ca(&self) -> bool {
        matches!(self.ext.basic_constraints, Some((true, _)))
    }

    pub fn path_len(&self) -> Option<u8> {
        self.ext.basic_constraints.and_then(|(_, len)| len)
    }

    /// `None` when the certificate has no KeyUsage extension (any use allowed).
    pub fn key_usage(&self) -> Option<KeyUsage> {
        self.ext.key_usage
    }

    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.ext.subject_key_id.as_deref()
    }

    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.ext.authority_key_id.as_deref()
    }

    /// Suite hash of the DER certificate (SHA-256 or SM3, the suite of the issuer's signature
    /// algorithm): what `openssl x509 -fingerprint -sha256` / `-sm3` prints.
    pub fn fingerprint(&self) -> HashValue {
        hash(self.signature_algorithm.suite(), &self.der)
    }

    /// Checks the signature over the TBSCertificate with `issuer_public`, whose algorithm must
    /// match the certificate's signature algorithm.
    pub fn verify_signed_by(&self, issuer_public: &VerifyingKey) -> Result<()> {
        if issuer_public.algorithm() != self.signature_algorithm {
            return Err(CryptoError::SignatureInvalid);
        }
        let signature = self
            .inner
            .signature
            .as_bytes()
            .ok_or(CryptoError::SignatureInvalid)?;
        issuer_public.verify_bytes(&self.tbs_der, signature)
    }

    /// One link of a chain: `issuer` is a CA allowed to sign certificates (and, if this is a
    /// CA, allowed to certify CAs), its subject is this certificate's issuer, the key identifiers
    /// agree and the signature verifies. Validity periods and revocation are the caller's to
    /// check.
    pub fn verify_issued_by(&self, issuer: &Certificate) -> Result<()> {
        if self.inner.tbs_certificate.issuer != issuer.inner.tbs_certificate.subject {
            return Err(CryptoError::CertificateRejected(format!(
                "issuer {:?} is not the subject {:?} of the given issuer certificate",
                self.issuer(),
                issuer.subject()
            )));
        }
        issuer.check_can_issue()?;
        let self_issued = self.inner.tbs_certificate.issuer == self.inner.tbs_certificate.subject;
        if self.is_ca() && !self_issued && issuer.path_len() == Some(0) {
            return Err(CryptoError::CertificateRejected(format!(
                "{:?} has path length 0 and may not certify other CAs",
                issuer.subject()
            )));
        }
        if let (Some(aki), Some(ski)) = (self.authority_key_id(), issuer.subject_key_id())
            && aki != ski
        {
            return Err(CryptoError::CertificateRejected(
                "authority key identifier does not match the issuer's subject key identifier"
                    .into(),
            ));
        }
        self.verify_signed_by(issuer.public_key())
    }

    fn check_can_issue(&self) -> Result<()> {
        if !self.is_ca() {
            return Err(CryptoError::CertificateRejected(format!(
                "{:?} is not a CA certificate",
                self.subject()
            )));
        }
        if self.ext.key_usage.is_some_and(|ku| !ku.key_cert_sign) {
            return Err(CryptoError::CertificateRejected(format!(
                "{:?} may not sign certificates (no keyCertSign)",
                self.subject()
            )));
        }
        Ok(())
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Certificate(serial {}, subject {:?}, issuer {:?}, {})",
            self.serial_hex(),
            self.subject(),
            self.issuer(),
            self.signature_algorithm
        )
    }
}

#[derive(Clone, Default)]
struct ParsedExtensions {
    basic_constraints: Option<(bool, Option<u8>)>,
    key_usage: Option<KeyUsage>,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
}

impl ParsedExtensions {
    fn read(&mut self, ext: &Extension) -> Result<()> {
        let value = ext.extn_value.as_bytes();
        let malformed = |e: der::Error| CryptoError::Malformed(e.to_string());
        match ext.extn_id {
            BasicConstraints::OID => {
                let bc = BasicConstraints::from_der(value).map_err(malformed)?;
                if !bc.ca && bc.path_len_constraint.is_some() {
                    return Err(CryptoError::Malformed(
                        "path length constraint without cA".into(),
                    ));
                }
                self.basic_constraints = Some((bc.ca, bc.path_len_constraint));
            }
            X509KeyUsage::OID => {
                let ku = X509KeyUsage::from_der(value).map_err(malformed)?;
                self.key_usage = Some(KeyUsage {
                    digital_signature: ku.digital_signature(),
                    non_repudiation: ku.non_repudiation(),
                    key_cert_sign: ku.key_cert_sign(),
                    crl_sign: ku.crl_sign(),
                });
            }
            SubjectKeyIdentifier::OID => {
                let ski = SubjectKeyIdentifier::from_der(value).map_err(malformed)?;
                self.subject_key_id = Some(ski.0.as_bytes().to_vec());
            }
            AuthorityKeyIdentifier::OID => {
                let aki = AuthorityKeyIdentifier::from_der(value).map_err(malformed)?;
                self.authority_key_id = aki.key_identifier.map(|k| k.as_bytes().to_vec());
            }
            other if ext.critical => {
                return Err(CryptoError::UnsupportedAlgorithm(format!(
                    "critical certificate extension {other}"
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

fn algorithm_identifier(algorithm: SignatureAlgorithm) -> AlgorithmIdentifierOwned {
    let oid = match algorithm {
        SignatureAlgorithm::Ed25519 => OID_SIG_ED25519,
        SignatureAlgorithm::Sm2 => OID_SIG_SM2_SM3,
        SignatureAlgorithm::EcdsaP256 => OID_SIG_ECDSA_SHA256,
    };
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

fn signature_algorithm_of(id: &AlgorithmIdentifierOwned) -> Result<SignatureAlgorithm> {
    let (algorithm, null_allowed) = match id.oid {
        OID_SIG_ED25519 => (SignatureAlgorithm::Ed25519, false),
        // Some GM CAs write an explicit NULL.
        OID_SIG_SM2_SM3 => (SignatureAlgorithm::Sm2, true),
        OID_SIG_ECDSA_SHA256 => (SignatureAlgorithm::EcdsaP256, false),
        other => {
            return Err(CryptoError::UnsupportedAlgorithm(format!(
                "certificate signature algorithm {other}"
            )));
        }
    };
    match &id.parameters {
        None => Ok(algorithm),
        Some(p) if null_allowed && p.tag() == Tag::Null && p.value().is_empty() => Ok(algorithm),
        Some(_) => Err(CryptoError::Malformed(format!(
            "{algorithm} signature algorithm with parameters"
        ))),
    }
}

fn extension(oid: ObjectIdentifier, critical: bool, value: Vec<u8>) -> Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).map_err(der_err)?,
    })
}

fn to_time(unix_secs: u64) -> Result<Time> {
    let out_of_range = || CryptoError::Malformed(format!("time {unix_secs} out of range"));
    let dt =
        DateTime::from_unix_duration(Duration::from_secs(unix_secs)).map_err(|_| out_of_range())?;
    if dt.year() <= LAST_UTC_TIME_YEAR {
        Ok(Time::UtcTime(
            UtcTime::from_date_time(dt).map_err(|_| out_of_range())?,
        ))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

fn attribute_string(value: &Any) -> Option<&str> {
    match value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::PrintableString => PrintableStringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::Ia5String => Ia5StringRef::try_from(value).ok().map(|s| s.as_str()),
        _ => None,
    }
}

fn label_of(oid: &ObjectIdentifier) -> String {
    NAME_LABELS
        .iter()
        .find(|(o, _)| o == oid)
        .map_or_else(|| oid.to_string(), |(_, label)| (*label).to_owned())
}

fn format_name(name: &Name) -> String {
    let mut out = String::new();
    for (i, rdn) in name.0.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let known = NAME_LABELS.iter().find(|(o, _)| *o == atv.oid);
            match (known, attribute_string(&atv.value)) {
                (Some((_, label)), Some(value)) => {
                    out.push_str(label);
                    out.push('=');
                    let _ = escape_rfc4514(&mut out, value);
                }
                _ => {
                    // RFC 4514 §2.4: unknown types (or string types) as the hex of the DER value.
                    let _ = write!(out, "{}=#", atv.oid);
                    out.push_str(&hex::encode(atv.value.to_der().unwrap_or_default()));
                }
            }
        }
    }
    out
}

fn escape_rfc4514(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '#' if i == 0 => out.write_str("\\#")?,
            ' ' if i == 0 || i == last => out.write_str("\\ ")?,
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => write!(out, "\\{c}")?,
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(out, "\\{b:02x}")?;
                }
            }
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

fn der_err(e: der::Error) -> CryptoError {
    CryptoError::Malformed(format!("DER encoding: {e}"))
}
