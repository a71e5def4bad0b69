//! Certificates: each tenant has a CA (self-signed, the tenant's suite); it certifies every
//! institution signing key, naming tenant, institution and level, so anyone holding the CA
//! certificate can check who signed what.

use caretrail_crypto::{
    SigningKey, VerifyingKey,
    x509::{self, Certificate, CertificateRequest, DistinguishedName, Validity},
};
use chrono::{DateTime, Utc};

use crate::{IdentityError, State, entities::tenant};

const CA_YEARS: u64 = 10;
const INSTITUTION_DAYS: u64 = 2 * 365;

fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// The tenant CA's self-signed certificate.
pub fn new_tenant_ca(
    key: &SigningKey,
    tenant_id: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Certificate, IdentityError> {
    let start = unix(now).saturating_sub(300);
    Ok(x509::self_signed_ca(
        key,
        &DistinguishedName::tenant_ca(tenant_id, name),
        Validity::new(start, start + CA_YEARS * 365 * 86_400),
    )?)
}

/// The tenant's CA key and certificate, opened from storage.
pub fn tenant_ca(
    state: &State,
    t: &tenant::Model,
) -> Result<(SigningKey, Certificate), IdentityError> {
    let der = state.master.open("tenant-ca", &t.id, &t.ca_key_enc)?;
    let key = SigningKey::from_pkcs8_der(&der)?;
    let pem = t
        .ca_cert_pem
        .as_deref()
        .ok_or(IdentityError::Corrupt("tenant has no CA certificate"))?;
    Ok((key, Certificate::from_pem(pem)?))
}

/// Certifies an institution's public key.
pub fn certify_institution_key(
    state: &State,
    t: &tenant::Model,
    institution_id: &str,
    level: &str,
    public: &VerifyingKey,
    now: DateTime<Utc>,
) -> Result<Certificate, IdentityError> {
    let (ca_key, ca_cert) = tenant_ca(state, t)?;
    let start = unix(now).saturating_sub(300);
    let request = CertificateRequest::institution(
        DistinguishedName::institution(&t.id, &t.name, institution_id, level),
        public.clone(),
        Validity::new(start, start + INSTITUTION_DAYS * 86_400),
    )?;
    Ok(x509::issue_certificate(&ca_key, &ca_cert, &request)?)
}

pub fn to_utc(unix_secs: u64) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::try_from(unix_secs).unwrap_or(i64::MAX), 0).unwrap_or_default()
}
