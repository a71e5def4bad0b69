//! Institution signing keys: rotation (custodial or bring-your-own), revocation, and the
//! certificate status that tells whether a signature made at a given time is valid.

use actix_web::{HttpResponse, web};
use caretrail_bus::{Event, outbox};
use caretrail_contracts::{InstitutionId, SigningKeyId, TenantId, events::InstitutionKeyV1};
use caretrail_crypto::{ParsedKey, Signature, SigningKey, Suite, parse_pem};
use caretrail_platform::auth::Principal;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
};

use super::{institutions::find_visible, require_admin, require_admin_or_operator, require_member};
use crate::{
    IdentityError, State,
    entities::institution_key,
    model::{CaOut, CertificateStatusOut, KeyIn, RevokeKeyIn, SigningKeyOut, StatusQuery},
};

#[utoipa::path(post, operation_id = "rotate_institution_key", path = "/v1/institutions/{institution_id}/keys",
    tag = "institutions", params(("institution_id" = caretrail_contracts::InstitutionId, Path)), request_body = KeyIn,
    responses((status = 201, body = SigningKeyOut, description = "The new active key and its certificate"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid or wrong-suite key"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)")),
    security(("bearer" = [])))]
/// Rotate an institution's signing key: a new custodial key, or a registered public key
/// (BYOK). The previous key is retired: it still verifies signatures made before now.
pub async fn rotate(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<InstitutionId>,
    input: web::Json<KeyIn>,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, ins) = find_visible(&state, &p, &path.into_inner()).await?;
    require_admin(&p, &tenant, "institution")?;
    let t = super::tenants::load(&state, &tenant).await?;
    let suite: Suite = t
        .suite
        .parse()
        .map_err(|_| IdentityError::Corrupt("tenant suite"))?;
    let key_id = SigningKeyId::generate();
    let (public, private_enc, custody) = match &input.public_key_pem {
        Some(pem) => {
            let public = match parse_pem(pem) {
                Ok(ParsedKey::Public(k)) => k,
                Ok(ParsedKey::Private(_)) => {
                    return Err(IdentityError::field(
                        "public_key_pem",
                        "send the public key, never the private key",
                    ));
                }
                Err(_) => {
                    return Err(IdentityError::field(
                        "public_key_pem",
                        "not a PEM public key (SPKI)",
                    ));
                }
            };
            if public.algorithm() != suite.signature_algorithm() {
                return Err(IdentityError::field(
                    "public_key_pem",
                    format!("this tenant uses {} keys", suite.signature_algorithm()),
                ));
            }
            // Without proof of possession an admin could get someone else's key certified
            // as their institution's.
            let challenge =
                crate::model::byok_challenge(tenant.as_str(), &ins.id, &public.key_id().to_hex());
            let proven = input
                .proof
                .as_deref()
                .and_then(|b64| Signature::from_base64(public.algorithm(), b64.trim()).ok())
                .is_some_and(|sig| public.verify(challenge.as_bytes(), &sig).is_ok());
            if !proven {
                return Err(IdentityError::field(
                    "proof",
                    format!("sign {challenge:?} with the key and send the base64 signature"),
                ));
            }
            (public, None, "byok")
        }
        None => {
            let key = SigningKey::generate_for_suite(suite)?;
            let sealed =
                state
                    .master
                    .seal("institution-key", key_id.as_str(), &key.to_pkcs8_der()?)?;
            (key.public_key(), Some(sealed), "custodial")
        }
    };
    let now = Utc::now();
    let cert =
        crate::certs::certify_institution_key(&state, &t, &ins.id, &ins.level, &public, now)?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    // One rotation at a time per institution: exactly one key stays active.
    crate::entities::institution::Entity::find_by_id(ins.id.clone())
        .filter(crate::entities::institution::Column::TenantId.eq(tenant.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?;
    institution_key::Entity::update_many()
        .col_expr(
            institution_key::Column::Status,
            sea_orm::sea_query::Expr::value("retired"),
        )
        .col_expr(
            institution_key::Column::RetiredAt,
            sea_orm::sea_query::Expr::value(Some(now)),
        )
        .filter(institution_key::Column::TenantId.eq(tenant.as_str()))
        .filter(institution_key::Column::InstitutionId.eq(ins.id.clone()))
        .filter(institution_key::Column::Status.eq("active"))
        .exec(&txn)
        .await?;
    let model = new_key_row(
        &tenant,
        &ins.id,
        &key_id,
        &public,
        private_enc,
        custody,
        &cert,
        now,
    )
    .insert(&txn)
    .await?;
    let event = Event::new(
        tenant.as_str(),
        crate::SERVICE,
        "institution.key_rotated",
        1,
        &InstitutionKeyV1 {
            institution: ins
                .id
                .parse()
                .map_err(|_| IdentityError::Corrupt("institution id"))?,
            key: key_id,
            algorithm: public.algorithm().to_string(),
            public_key_pem: public.to_spki_pem(),
        },
    )?;
    outbox::enqueue(&txn, &event).await?;
    txn.commit().await?;
    state.outbox.notify_one();
    Ok(HttpResponse::Created().json(super::institutions::key_out(model)?))
}

#[utoipa::path(post, operation_id = "revoke_institution_key",
    path = "/v1/institutions/{institution_id}/keys/{key_id}/revoke", tag = "institutions",
    params(("institution_id" = caretrail_contracts::InstitutionId, Path), ("key_id" = caretrail_contracts::SigningKeyId, Path)), request_body = RevokeKeyIn,
    responses((status = 200, body = SigningKeyOut, description = "Revoked"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)")),
    security(("bearer" = [])))]
/// Revoke a key (e.g. compromised): signatures made from now on are invalid; earlier ones
/// keep their validity at the time they were made.
pub async fn revoke(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<(InstitutionId, SigningKeyId)>,
    input: web::Json<RevokeKeyIn>,
) -> Result<HttpResponse, IdentityError> {
    let (institution_id, key_id) = path.into_inner();
    let (tenant, ins) = find_visible(&state, &p, &institution_id).await?;
    // Revoking a key in an incident gives no access: the operator may. Registering one (above)
    // decides whose signatures count, so only the tenant's administrators.
    require_admin_or_operator(&p, &tenant, "institution")?;
    let reason = input.reason.trim();
    if reason.is_empty() || reason.len() > 200 {
        return Err(IdentityError::field("reason", "1–200 characters"));
    }
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let key = institution_key::Entity::find_by_id(key_id.to_string())
        .filter(institution_key::Column::TenantId.eq(tenant.as_str()))
        .filter(institution_key::Column::InstitutionId.eq(ins.id.clone()))
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("key"))?;
    if key.status == "revoked" {
        return Err(IdentityError::Conflict("the key is already revoked".into()));
    }
    let event = Event::new(
        tenant.as_str(),
        crate::SERVICE,
        "institution.key_revoked",
        1,
        &serde_json::json!({ "institution": ins.id, "key": key_id, "reason": reason }),
    )?;
    let mut am: institution_key::ActiveModel = key.into();
    am.status = Set("revoked".into());
    am.revoked_at = Set(Some(Utc::now()));
    am.revocation_reason = Set(Some(reason.to_string()));
    am.private_key_enc = Set(None);
    let model = am.update(&txn).await?;
    outbox::enqueue(&txn, &event).await?;
    txn.commit().await?;
    state.outbox.notify_one();
    Ok(HttpResponse::Ok().json(super::institutions::key_out(model)?))
}

#[utoipa::path(get, operation_id = "certificate_status", path = "/v1/certificates/{serial}/status",
    tag = "institutions", params(("serial" = String, Path), StatusQuery),
    responses((status = 200, body = CertificateStatusOut, description = "Status at the given time"),
              (status = 404, body = caretrail_platform::Problem, description = "Unknown serial in the caller's tenant")),
    security(("bearer" = [])))]
/// Whether a certificate was valid at a given time (the time a signature was made).
pub async fn status(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<String>,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = super::caller_tenant(&p)?;
    let serial = path.into_inner().to_ascii_lowercase();
    if serial.is_empty() || serial.len() > 64 || !serial.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(IdentityError::field(
            "serial",
            "hexadecimal certificate serial",
        ));
    }
    let at = query.at.unwrap_or_else(Utc::now);
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let key = institution_key::Entity::find()
        .filter(institution_key::Column::TenantId.eq(tenant.as_str()))
        .filter(institution_key::Column::Serial.eq(serial.clone()))
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("certificate"))?;
    txn.commit().await?;
    let status = if key.not_before.is_some_and(|t| at < t) {
        "not_yet_valid"
    } else if key.not_after.is_some_and(|t| at > t) {
        "expired"
    } else if key.revoked_at.is_some_and(|t| at >= t) {
        "revoked"
    } else if key.retired_at.is_some_and(|t| at >= t) {
        "retired"
    } else {
        "valid"
    };
    Ok(HttpResponse::Ok().json(CertificateStatusOut {
        serial,
        key_id: key
            .id
            .parse()
            .map_err(|_| IdentityError::Corrupt("key id"))?,
        institution_id: key
            .institution_id
            .parse()
            .map_err(|_| IdentityError::Corrupt("institution id"))?,
        valid_at_time: status == "valid",
        at,
        status: status.into(),
        not_before: key.not_before,
        not_after: key.not_after,
        retired_at: key.retired_at,
        revoked_at: key.revoked_at,
        revocation_reason: key.revocation_reason,
    }))
}

#[utoipa::path(get, operation_id = "get_tenant_ca", path = "/v1/tenants/{tenant_id}/ca", tag = "tenants",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)),
    responses((status = 200, body = CaOut, description = "The tenant CA certificate")),
    security(("bearer" = [])))]
/// The tenant CA certificate: the trust anchor for institution certificates.
pub async fn ca(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = path.into_inner();
    require_member(&p, &tenant, "tenant")?;
    let t = super::tenants::load(&state, &tenant).await?;
    Ok(HttpResponse::Ok().json(CaOut {
        tenant_id: tenant,
        certificate_pem: t
            .ca_cert_pem
            .ok_or(IdentityError::Corrupt("tenant has no CA certificate"))?,
    }))
}

/// A certified institution key, ready to insert.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_key_row(
    tenant: &TenantId,
    institution_id: &str,
    key_id: &SigningKeyId,
    public: &caretrail_crypto::VerifyingKey,
    private_key_enc: Option<String>,
    custody: &str,
    cert: &caretrail_crypto::x509::Certificate,
    now: chrono::DateTime<Utc>,
) -> institution_key::ActiveModel {
    institution_key::ActiveModel {
        id: Set(key_id.to_string()),
        tenant_id: Set(tenant.to_string()),
        institution_id: Set(institution_id.to_string()),
        algorithm: Set(public.algorithm().to_string()),
        custody: Set(custody.into()),
        public_key_pem: Set(public.to_spki_pem()),
        private_key_enc: Set(private_key_enc),
        status: Set("active".into()),
        created_at: Set(now),
        retired_at: Set(None),
        revoked_at: Set(None),
        revocation_reason: Set(None),
        certificate_pem: Set(Some(cert.to_pem())),
        serial: Set(Some(cert.serial_hex())),
        not_before: Set(Some(crate::certs::to_utc(cert.not_before()))),
        not_after: Set(Some(crate::certs::to_utc(cert.not_after()))),
    }
}
