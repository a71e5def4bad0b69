//! The public API (through the gateway, tenant-scoped by the caller's token): upload with a
//! ledger receipt, metadata, decrypting download, a patient's records, receipts, erasure by
//! crypto-shredding, and the tenant's key-encryption keys.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use caretrail_contracts::auth::policy::{RecordReader, RecordWriter, TenantAdmin, TenantMember};
use caretrail_contracts::auth::{PrincipalKind, Role, scopes};
use caretrail_contracts::consent::{Action, Decision, Purpose, RecordAttributes, Subject};
use caretrail_contracts::identity::{PLATFORM_SIGNER, SignResult, ToSign};
use caretrail_contracts::ledger::{Receipt, SubmissionIn};
use caretrail_contracts::{InstitutionId, PatientId, RecordId, TenantId};
use caretrail_crypto::{DataKey, StreamEncryptor, Suite, WrapBinding, WrappedKey};
use caretrail_platform::auth::{Guarded, Principal};
use chrono::Utc;
use futures::StreamExt as _;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::anchor::{self, NewAnchor, Outcome};
use crate::entities::{anchor as anchor_row, record};
use crate::error::ObjectStoreError;
use crate::model::{
    Category, EraseIn, EraseOut, KekVersionOut, LedgerRefOut, ReceiptOut, RecordIn, RecordKeysOut,
    RecordListOut, RecordOut, UploadOut, parse_media_type,
};
use crate::storage::ObjectStorage;
use crate::{State, content};
use crate::{access, entries};

type Result<T> = std::result::Result<T, ObjectStoreError>;

/// Ciphertext is handed to storage in pieces of about this size.
const WRITE_SIZE: usize = 1024 * 1024;
/// Rows read and decided at a time when a list page is cut from what the caller may see.
const LIST_BATCH: u64 = 200;
/// Header carrying the upload's metadata.
pub const METADATA_HEADER: &str = "caretrail-metadata";

fn caller_tenant(p: &Principal) -> Result<TenantId> {
    p.0.tenant
        .clone()
        .ok_or_else(|| ObjectStoreError::Forbidden("this operation needs a tenant's token".into()))
}

fn subject(p: &Principal) -> Subject {
    Subject::of(&p.0)
}

fn is_app(p: &Principal) -> bool {
    p.0.kind == PrincipalKind::App
}

/// The tenant's suite; refuses suspended or unknown tenants.
async fn tenant_suite(state: &State, tenant: &TenantId) -> Result<Suite> {
    let info = state
        .identity
        .tenant(tenant.as_str())
        .await
        .map_err(|e| ObjectStoreError::Dependency("the identity service", e))?
        .ok_or_else(|| ObjectStoreError::Forbidden("unknown tenant".into()))?;
    if info.status != "active" {
        return Err(ObjectStoreError::TenantSuspended);
    }
    info.suite
        .parse()
        .map_err(|_| ObjectStoreError::Corrupt("tenant suite"))
}

/// Associated data of a record's ciphertext: it only decrypts as this record of this tenant.
pub fn content_aad(tenant: &str, record: &str) -> Vec<u8> {
    format!("caretrail/record/v1\n{tenant}\n{record}").into_bytes()
}

fn hash_name(suite: Suite) -> &'static str {
    match suite {
        Suite::Intl => "sha256",
        Suite::Gm => "sm3",
    }
}

pub fn record_out(r: &record::Model) -> RecordOut {
    RecordOut {
        id: r.id.clone(),
        patient: r.patient_id.clone(),
        institution: r.institution_id.clone(),
        category: Category::parse(&r.category).unwrap_or(Category::Other),
        media_type: r.media_type.clone(),
        title: r.title.clone(),
        encounter_date: r.encounter_date.clone(),
        fhir_resource_type: r.fhir_resource_type.clone(),
        size: r.size.max(0) as u64,
        content_hash: r.content_hash.clone(),
        hash_algorithm: r
            .suite
            .parse()
            .map(hash_name)
            .unwrap_or("unknown")
            .to_string(),
        status: r.status.clone(),
        created_by: r.created_by.clone(),
        created_at: r.created_at,
        ledger: match (r.ledger_index, &r.leaf_hash) {
            (Some(index), Some(leaf)) => Some(LedgerRefOut {
                index: index.max(0) as u64,
                leaf_hash: leaf.clone(),
            }),
            _ => None,
        },
    }
}

pub fn attributes(r: &record::Model) -> Result<RecordAttributes> {
    Ok(RecordAttributes {
        record: r
            .id
            .parse()
            .map_err(|_| ObjectStoreError::Corrupt("record id"))?,
        patient: r
            .patient_id
            .parse()
            .map_err(|_| ObjectStoreError::Corrupt("patient id"))?,
        category: r.category.clone(),
        owner: r
            .institution_id
            .parse()
            .map_err(|_| ObjectStoreError::Corrupt("institution id"))?,
        encounter_date: r.encounter_date.clone(),
    })
}

/// The domain event of a record, without its ledger fields (the anchorer adds them).
fn record_event(r: &record::Model, p: &Principal) -> serde_json::Value {
    json!({
        "record": r.id,
        "patient": r.patient_id,
        "category": r.category,
        "owner": r.institution_id,
        "content_hash": r.content_hash,
        "actor": {"subject": p.0.sub, "kind": p.0.kind, "institution": p.0.institution},
        "action": null,
        "purpose": null,
        "decided_by": null,
        "reasons": [],
    })
}

async fn load(state: &State, tenant: &TenantId, id: &str) -> Result<record::Model> {
    let id: RecordId = id.parse().map_err(|_| ObjectStoreError::NotFound)?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let row = record::Entity::find_by_id((id.to_string(), tenant.to_string()))
        .filter(record::Column::TenantId.eq(tenant.as_str()))
        .one(&txn)
        .await?;
    txn.commit().await?;
    match row {
        Some(r) if r.status == "rejected" => Err(ObjectStoreError::NotFound),
        Some(r) => Ok(r),
        None => Err(ObjectStoreError::NotFound),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PurposeQuery {
    /// Why the caller reads: treatment (default), referral, emergency, research, insurance,
    /// audit, public_health.
    pub purpose: Option<String>,
}

fn purpose(q: &PurposeQuery) -> Result<Purpose> {
    match &q.purpose {
        None => Ok(Purpose::default()),
        Some(p) => p
            .parse()
            .map_err(|e: String| ObjectStoreError::field("purpose", e)),
    }
}

/// Queues an access (or refusal) entry of a record, attested by the platform, in its own
/// transaction.
async fn log_access(
    state: &State,
    p: &Principal,
    r: &record::Model,
    action: Action,
    purpose: Purpose,
    decision: &Decision,
) -> Result<()> {
    access::queue(state, p, read_of(r, p)?, action, purpose, decision).await
}

/// What an access entry says of a read of record `r`.
fn read_of<'a>(r: &'a record::Model, p: &Principal) -> Result<access::Read<'a>> {
    Ok(access::Read {
        tenant: &r.tenant_id,
        suite: r
            .suite
            .parse()
            .map_err(|_| ObjectStoreError::Corrupt("suite"))?,
        record: &r.id,
        patient: Some(&r.patient_id),
        owner: Some(&r.institution_id),
        event: record_event(r, p),
    })
}

/// Loads a record for a read. A well-formed id the tenant does not have costs what a refused
/// read costs — a decision and a refusal on the trail — and answers the same 404: neither
/// the ledger's size nor the time taken tells a refused caller whether the record exists.
async fn load_for_read(
    state: &State,
    p: &Principal,
    tenant: &TenantId,
    id: &str,
    action: Action,
    purpose: Purpose,
) -> Result<record::Model> {
    match load(state, tenant, id).await {
        Err(ObjectStoreError::NotFound) => {
            if let Ok(record) = id.parse::<RecordId>() {
                access::refuse_unknown(state, p, tenant, &record, action, purpose).await?;
            }
            Err(ObjectStoreError::NotFound)
        }
        found => found,
    }
}

/// Decides one read (a content read counts as one of a limited grant's accesses); a refusal
/// is anchored and returned as an error.
async fn authorize(
    state: &State,
    p: &Principal,
    r: &record::Model,
    action: Action,
    purpose: Purpose,
) -> Result<Decision> {
    decide_read(state, p, r, action, purpose, action == Action::ReadContent).await
}

/// One decision on `r`; a refusal is anchored and returned as an error. `counted`: a permit
/// counts against a grant limited to a number of accesses ([`crate::decide::Decider::decide`]).
async fn decide_read(
    state: &State,
    p: &Principal,
    r: &record::Model,
    action: Action,
    purpose: Purpose,
    counted: bool,
) -> Result<Decision> {
    let tenant = caller_tenant(p)?;
    let decisions = state
        .decider
        .decide(
            &tenant,
            &subject(p),
            action,
            purpose,
            vec![attributes(r)?],
            counted,
        )
        .await?;
    let decision = decisions
        .into_iter()
        .next()
        .ok_or(ObjectStoreError::Corrupt("no decision"))?;
    if !decision.permit {
        log_access(state, p, r, action, purpose, &decision).await?;
        return Err(refusal(p, r, decision));
    }
    Ok(decision)
}

/// What a refused caller is told. The institution that owns the record hears why; anyone
/// else gets exactly what a record that does not exist gets, so a refusal tells nothing of
/// the record (its existence, its sensitivity, the grants around it). The refusal is on the
/// ledger either way.
fn refusal(p: &Principal, r: &record::Model, decision: Decision) -> ObjectStoreError {
    if owns(p, r) {
        ObjectStoreError::AccessDenied(decision.reasons)
    } else {
        ObjectStoreError::NotFound
    }
}

/// Whether the caller acts for the institution that created the record.
fn owns(p: &Principal, r: &record::Model) -> bool {
    p.0.institution.as_ref().map(|i| i.as_str()) == Some(r.institution_id.as_str())
}

/// Decides a content read without counting it against a limited grant: for answers that
/// serve no content (erased, not anchored yet, a range beyond the end), which only those who
/// may read the record may hear. A refusal is anchored and answered like [`authorize`].
async fn may_read_content(
    state: &State,
    p: &Principal,
    r: &record::Model,
    purpose: Purpose,
) -> Result<()> {
    decide_read(state, p, r, Action::ReadContent, purpose, false)
        .await
        .map(drop)
}

#[utoipa::path(post, operation_id = "upload_record", path = "/v1/records", tag = "records",
    params(("Caretrail-Metadata" = String, Header, description = "Record metadata as JSON (raw UTF-8 or percent-encoded): patient, category, title, encounter_date, optional fhir_resource_type; for institutions holding their own key also record_id, key_id, signature over the manifest's ledger signing input, and seal_salt (64 hex) the manifest was sealed with")),
    request_body(content = crate::model::RecordBytes, content_type = "application/octet-stream", description = "The record itself; its Content-Type is the record's media type (application/pdf, application/fhir+json, application/dicom, image/jpeg, …). Streamed: any size up to the configured limit."),
    responses((status = 201, body = UploadOut, description = "Stored, encrypted and anchored; the receipt verifies with `caretrail verify bundle`"),
              (status = 202, body = UploadOut, description = "Stored; anchoring continues in the background (fetch the receipt later)"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid metadata, unknown patient, empty body"),
              (status = 403, body = caretrail_platform::Problem, description = "Not allowed to upload"),
              (status = 413, body = caretrail_platform::Problem, description = "Larger than the configured limit"),
              (status = 415, body = caretrail_platform::Problem, description = "Unsupported media type"),
              (status = 422, body = caretrail_platform::Problem, description = "Missing or invalid manifest signature (bring-your-own-key institutions)"),
              (status = 503, body = caretrail_platform::Problem, description = "Object storage or a dependency is unavailable; nothing was stored")),
    security(("bearer" = [])))]
/// Upload a record: it is encrypted with a fresh data key as it streams, stored, and its
/// manifest (content hash + metadata, signed by the institution) is anchored on the ledger.
pub async fn upload(
    state: web::Data<State>,
    g: Guarded<RecordWriter>,
    req: HttpRequest,
    mut body: web::Payload,
) -> Result<HttpResponse> {
    let p = g.into_principal();
    let tenant = caller_tenant(&p)?;
    let institution: InstitutionId = p.0.institution.clone().ok_or_else(|| {
        ObjectStoreError::Forbidden("uploading records needs an institution's token".into())
    })?;
    let media_type = parse_media_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )?;
    let metadata = req.headers().get(METADATA_HEADER).ok_or_else(|| {
        ObjectStoreError::field("Caretrail-Metadata", "the metadata header is required")
    })?;
    let new = RecordIn::from_header(metadata.as_bytes())?
        .validate(media_type, crate::model::latest_date(Utc::now()))?;
    let max = state.settings.max_record_bytes;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max {
            return Err(ObjectStoreError::TooLarge(max));
        }
        if len == 0 {
            return Err(ObjectStoreError::EmptyContent);
        }
    }
    let suite = tenant_suite(&state, &tenant).await?;
    if state
        .identity
        .patient(tenant.as_str(), new.patient.as_str())
        .await
        .map_err(|e| ObjectStoreError::Dependency("the identity service", e))?
        .is_none()
    {
        return Err(ObjectStoreError::UnknownPatient(new.patient.to_string()));
    }
    let record_id = match &new.record_id {
        Some(id) => {
            let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
            // Within this tenant only: another tenant's record of that id is none of its
            // business, and the composite key lets both exist.
            let taken = record::Entity::find_by_id((id.to_string(), tenant.to_string()))
                .one(&txn)
                .await?
                .is_some();
            txn.commit().await?;
            if taken {
                return Err(ObjectStoreError::Conflict(format!(
                    "record {id} already exists"
                )));
            }
            id.clone()
        }
        None => RecordId::generate(),
    };
    // One object per upload attempt: two concurrent uploads naming the same record id (BYOK
    // retries) must never overwrite or delete each other's object.
    let storage_key = format!("{tenant}/{record_id}.{}", uuid::Uuid::new_v4().simple());

    // Stream: hash the plaintext, encrypt, hand ciphertext to storage in bounded pieces.
    let data_key = DataKey::generate(suite)?;
    let mut encryptor =
        StreamEncryptor::new(&data_key, &content_aad(tenant.as_str(), record_id.as_str()))?;
    // Hashing runs on its own thread, overlapping encryption.
    let hashing = content::ParallelHash::start(suite);
    let mut writer = state.storage.create(&storage_key).await?;
    let mut pending: Vec<u8> = Vec::with_capacity(WRITE_SIZE + 64 * 1024);
    pending.extend_from_slice(encryptor.header());
    let mut size: u64 = 0;
    let streamed: Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ObjectStoreError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(ObjectStoreError::TooLarge(max));
            }
            if !hashing.update(&chunk).await {
                return Err(ObjectStoreError::Corrupt("the content hasher stopped"));
            }
            encryptor.update(&chunk, &mut pending)?;
            if pending.len() >= WRITE_SIZE {
                let full =
                    std::mem::replace(&mut pending, Vec::with_capacity(WRITE_SIZE + 64 * 1024));
                writer.write(Bytes::from(full)).await?;
            }
        }
        if size == 0 {
            return Err(ObjectStoreError::EmptyContent);
        }
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        writer.abort().await;
        return Err(e);
    }
    encryptor.finish_into(&[], &mut pending)?;
    if let Err(e) = writer.write(Bytes::from(pending)).await {
        writer.abort().await;
        return Err(e.into());
    }
    writer.finish().await?;
    let stored = StoredObject {
        storage: state.storage.clone(),
        key: storage_key.clone(),
        armed: true,
    };

    let result = async {
        let (kek_version, kek) = state.keks.current(tenant.as_str(), suite).await?;
        let wrapped = kek.wrap(
            &data_key,
            &WrapBinding::new(tenant.as_str(), kek_version as u32, record_id.as_str()),
        )?;
        let content_hash = hashing
            .finalize()
            .await
            .ok_or(ObjectStoreError::Corrupt("the content hasher stopped"))?
            .to_hex();
        let title_hash = caretrail_crypto::hash(suite, new.title.as_bytes()).to_hex();
        let encounter_date = new.encounter_date.format("%Y-%m-%d").to_string();
        let salt = new.client_signature.as_ref().map(|sig| sig.seal_salt);
        let (manifest, opening) = entries::manifest(
            suite,
            &entries::ManifestFields {
                record: record_id.as_str(),
                patient: &new.patient,
                institution: institution.as_str(),
                content_hash: &content_hash,
                hash_algorithm: hash_name(suite),
                category: new.category.as_str(),
                media_type: &new.media_type,
                size,
                encounter_date: &encounter_date,
                fhir_resource_type: new.fhir_resource_type.as_deref(),
                title_hash: &title_hash,
            },
            salt,
        )?;
        let submission = match &new.client_signature {
            Some(sig) => SubmissionIn {
                tenant: tenant.to_string(),
                kind: anchor::KIND_ANCHORED.into(),
                submitter: institution.to_string(),
                request_id: record_id.to_string(),
                key_id: sig.key_id.clone(),
                payload: B64.encode(&manifest),
                signature: sig.signature.clone(),
            },
            None => {
                let signed = state
                    .identity
                    .sign(vec![ToSign {
                        tenant: tenant.to_string(),
                        kind: anchor::KIND_ANCHORED.into(),
                        signer: institution.to_string(),
                        request_id: record_id.to_string(),
                        payload: B64.encode(&manifest),
                    }])
                    .await
                    .map_err(|e| ObjectStoreError::Dependency("the identity service", e))?;
                match signed.into_iter().next() {
                    Some(SignResult::Signed(s)) => s,
                    Some(SignResult::Error { code, .. }) if code == "byok_signature_required" => {
                        return Err(ObjectStoreError::SignatureRequired);
                    }
                    Some(SignResult::Error { code, .. }) if code == "unknown_signer" => {
                        return Err(ObjectStoreError::Forbidden(
                            "the institution has no active signing key".into(),
                        ));
                    }
                    Some(SignResult::Error { code, message }) => {
                        tracing::warn!(%code, %message, "identity did not sign a manifest");
                        return Err(ObjectStoreError::Unavailable("the signing service"));
                    }
                    None => return Err(ObjectStoreError::Corrupt("no signature")),
                }
            }
        };
        let row = record::Model {
            id: record_id.to_string(),
            tenant_id: tenant.to_string(),
            patient_id: new.patient.to_string(),
            institution_id: institution.to_string(),
            category: new.category.as_str().to_string(),
            media_type: new.media_type.clone(),
            title: new.title.clone(),
            encounter_date: new.encounter_date.format("%Y-%m-%d").to_string(),
            fhir_resource_type: new.fhir_resource_type.clone(),
            size: size as i64,
            content_hash,
            suite: suite.as_str().to_string(),
            storage_key: storage_key.clone(),
            wrapped_key: Some(wrapped.to_base64()),
            kek_version,
            status: "anchoring".into(),
            created_by: p.0.sub.clone(),
            created_at: Utc::now(),
            manifest: B64.encode(&manifest),
            ledger_index: None,
            leaf_hash: None,
            erased_at: None,
            erased_by: None,
            erasure_reason: None,
        };
        let mut event = record_event(&row, &p);
        event["opening"] = json!(opening);
        let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
        let inserted = record::ActiveModel::from(row.clone()).insert(&txn).await;
        if let Err(e) = inserted {
            return Err(if crate::error::is_unique_violation(&e) {
                ObjectStoreError::Conflict(format!("record {record_id} already exists"))
            } else {
                e.into()
            });
        }
        let anchor_id = anchor::enqueue(
            &txn,
            NewAnchor {
                tenant: tenant.to_string(),
                subject: record_id.to_string(),
                kind: anchor::KIND_ANCHORED,
                request_id: record_id.to_string(),
                signer: institution.to_string(),
                payload: manifest,
                submission: Some(submission),
                event_name: anchor::KIND_ANCHORED,
                event,
                hold: Duration::from_millis(state.settings.anchor_wait_ms) + Duration::from_secs(5),
            },
        )
        .await?;
        txn.commit().await?;
        Ok((row, anchor_id))
    }
    .await;
    let (mut row, anchor_id) = match result {
        Ok(v) => v,
        Err(e) => {
            stored.remove().await;
            return Err(e);
        }
    };
    let refused_later = StoredObject {
        storage: state.storage.clone(),
        key: storage_key.clone(),
        armed: false,
    };
    stored.keep();

    let wait = Duration::from_millis(state.settings.anchor_wait_ms);
    let outcome = state.anchorer.anchor_within(anchor_id, wait).await;
    let location = format!("/v1/records/{record_id}");
    match outcome {
        Some(Outcome::Anchored(receipt)) => {
            row.status = "active".into();
            row.ledger_index = Some(receipt.index as i64);
            row.leaf_hash = Some(receipt.leaf_hash.clone());
            let receipt = ReceiptOut::new(&row.id, &row.content_hash, *receipt);
            Ok(HttpResponse::Created()
                .insert_header((header::LOCATION, location))
                .json(UploadOut {
                    record: record_out(&row),
                    receipt: Some(receipt),
                }))
        }
        Some(Outcome::Refused(failure)) => {
            refuse_upload(&state, &row, refused_later, failure).await
        }
        // A client-signed manifest naming a key the ledger does not know will not get
        // better with retries (identity registers custodial keys before they sign).
        Some(Outcome::Pending(failure))
            if new.client_signature.is_some()
                && matches!(failure.code.as_str(), "unknown_key" | "unknown_institution") =>
        {
            refuse_upload(&state, &row, refused_later, failure).await
        }
        Some(Outcome::Pending(_)) | None => Ok(accepted(location, &row)),
    }
}

fn accepted(location: String, row: &record::Model) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .json(UploadOut {
            record: record_out(row),
            receipt: None,
        })
}

/// The object of an upload that has not committed yet. Dropped while armed (the client went
/// away, or an error returned early), it deletes the object in the background.
struct StoredObject {
    storage: Arc<dyn ObjectStorage>,
    key: String,
    armed: bool,
}

impl StoredObject {
    /// The record row references the object now: keep it.
    fn keep(mut self) {
        self.armed = false;
    }

    async fn remove(mut self) {
        self.armed = false;
        remove_object(self.storage.clone(), self.key.clone()).await;
    }
}

async fn remove_object(storage: Arc<dyn ObjectStorage>, key: String) {
    if let Err(e) = storage.delete(&key).await {
        tracing::warn!(error = %e, key, "removing the object of a failed upload failed; it is unreadable without its key");
    }
}

impl Drop for StoredObject {
    fn drop(&mut self) {
        if self.armed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(remove_object(self.storage.clone(), self.key.clone()));
        }
    }
}

/// Undoes an upload whose manifest the ledger refused: row, anchor and object go.
async fn refuse_upload(
    state: &State,
    row: &record::Model,
    object: StoredObject,
    failure: caretrail_contracts::ledger::LedgerFailure,
) -> Result<HttpResponse> {
    let forgotten = forget(state, row).await;
    object.remove().await;
    forgotten?;
    Err(match failure.code.as_str() {
        "bad_signature"
        | "key_revoked"
        | "unknown_key"
        | "unknown_institution"
        | "invalid_request" => ObjectStoreError::SignatureRejected(failure.message),
        "request_id_conflict" => ObjectStoreError::Conflict(format!(
            "record {} was anchored with another manifest",
            row.id
        )),
        _ => {
            tracing::error!(code = %failure.code, message = %failure.message, "the ledger refused a record manifest");
            ObjectStoreError::Corrupt("the ledger refused the manifest")
        }
    })
}

/// Removes a record the ledger refused (its metadata and queued anchor).
async fn forget(state: &State, row: &record::Model) -> Result<()> {
    let txn = caretrail_db::begin_tenant(&state.db, &row.tenant_id).await?;
    anchor_row::Entity::delete_many()
        .filter(anchor_row::Column::TenantId.eq(row.tenant_id.as_str()))
        .filter(anchor_row::Column::SubjectId.eq(row.id.as_str()))
        .exec(&txn)
        .await?;
    record::Entity::delete_by_id((row.id.clone(), row.tenant_id.clone()))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

#[utoipa::path(get, operation_id = "get_record", path = "/v1/records/{record_id}", tag = "records",
    params(("record_id" = caretrail_contracts::RecordId, Path), PurposeQuery),
    responses((status = 200, body = RecordOut, description = "The record's metadata"),
              (status = 403, body = caretrail_platform::Problem, description = "Refused by the consent decision (the refusal is anchored)"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 410, body = caretrail_platform::Problem, description = "Erased")),
    security(("bearer" = [])))]
/// A record's metadata, if the consent decision permits.
pub async fn get(
    state: web::Data<State>,
    g: Guarded<RecordReader>,
    path: web::Path<String>,
    q: web::Query<PurposeQuery>,
) -> Result<HttpResponse> {
    let p = g.into_principal();
    let tenant = caller_tenant(&p)?;
    let purpose = purpose(&q)?;
    let r = load_for_read(&state, &p, &tenant, &path, Action::ReadMetadata, purpose).await?;
    // Decided first: that a record was erased is told only to those who may read it.
    let decision = authorize(&state, &p, &r, Action::ReadMetadata, purpose).await?;
    if r.status == "erased" {
        return Err(ObjectStoreError::Gone);
    }
    // Metadata is a read too (a title, a category, a date): on the trail before it is sent.
    log_access(&state, &p, &r, Action::ReadMetadata, purpose, &decision).await?;
    Ok(HttpResponse::Ok().json(record_out(&r)))
}

#[utoipa::path(get, operation_id = "get_record_content", path = "/v1/records/{record_id}/content", tag = "records",
    params(("record_id" = caretrail_contracts::RecordId, Path), PurposeQuery),
    responses((status = 200, content_type = "application/octet-stream", description = "The decrypted record (its own media type); the access is anchored on the ledger"),
              (status = 206, content_type = "application/octet-stream", description = "The requested byte range (`Range: bytes=a-b`, one range); only the chunks that hold it are read"),
              (status = 416, description = "The range starts beyond the record"),
              (status = 403, body = caretrail_platform::Problem, description = "Refused by the consent decision (the refusal is anchored)"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "Not anchored yet"),
              (status = 410, body = caretrail_platform::Problem, description = "Erased"),
              (status = 500, body = caretrail_platform::Problem, description = "The stored ciphertext failed its integrity check (integrity_error)")),
    security(("bearer" = [])))]
/// Download a record: decrypted as it streams, each chunk authenticated before it is sent
/// and the whole checked against the anchored content hash. A single `Range` is served
/// (206) from the chunks that hold it, for viewers that seek in large images.
pub async fn content(
    state: web::Data<State>,
    g: Guarded<RecordReader>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<PurposeQuery>,
) -> Result<HttpResponse> {
    let p = g.into_principal();
    let tenant = caller_tenant(&p)?;
    let purpose = purpose(&q)?;
    let r = load_for_read(&state, &p, &tenant, &path, Action::ReadContent, purpose).await?;
    let size = r.size.max(0) as u64;
    let range = req
        .headers()
        .get(header::RANGE)
        .map(|v| parse_range(v.to_str().unwrap_or(""), size))
        .unwrap_or(RangeRequest::Whole);
    // Answers that serve no content are given only to those who may read the record, and
    // never count as one of a limited grant's accesses.
    if r.status != "active" || range == RangeRequest::Unsatisfiable {
        may_read_content(&state, &p, &r, purpose).await?;
        return match r.status.as_str() {
            "erased" => Err(ObjectStoreError::Gone),
            "active" => Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .finish()),
            _ => Err(ObjectStoreError::NotAnchored),
        };
    }
    let decision = authorize(&state, &p, &r, Action::ReadContent, purpose).await?;
    // The access is on record before a byte leaves.
    log_access(&state, &p, &r, Action::ReadContent, purpose, &decision).await?;
    let suite: Suite = r
        .suite
        .parse()
        .map_err(|_| ObjectStoreError::Corrupt("suite"))?;
    let wrapped = WrappedKey::from_base64(r.wrapped_key.as_deref().ok_or(ObjectStoreError::Gone)?)?;
    let kek = state
        .keks
        .version(&r.tenant_id, suite, r.kek_version)
        .await?;
    let data_key = kek.unwrap(
        &wrapped,
        &WrapBinding::new(&r.tenant_id, r.kek_version as u32, &r.id),
    )?;
    let aad = content_aad(&r.tenant_id, &r.id);
    if let RangeRequest::Part(first, last) = range {
        return ranged(&state, &r, &data_key, aad, suite, first, last).await;
    }
    let source = state.storage.get(&r.storage_key).await?;
    let expected = caretrail_crypto::HashValue::from_hex(suite, &r.content_hash)
        .map_err(|_| ObjectStoreError::Corrupt("content hash"))?;
    let mut plain = content::decrypting(source, &data_key, aad, expected, r.id.clone());
    // Fail cleanly (problem+json) if the very first bytes do not authenticate.
    let first = match plain.next().await {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Err(ObjectStoreError::Integrity(e.to_string())),
        None => None,
    };
    let body = futures::stream::iter(first.map(Ok)).chain(plain);
    Ok(download(HttpResponse::Ok(), &r.id)
        .content_type(r.media_type.clone())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ETAG, format!("\"{}\"", r.content_hash)))
        .insert_header((
            "caretrail-content-hash",
            format!("{}:{}", hash_name(suite), r.content_hash),
        ))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .no_chunking(size)
        .streaming(body))
}

/// Stored content is never rendered in the API's origin (an uploaded HTML file must not run
/// script there): a download, not sniffed, sandboxed if opened anyway.
fn download(
    mut builder: actix_web::HttpResponseBuilder,
    record: &str,
) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{record}\""),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"));
    builder
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No usable single range: serve the whole record (RFC 9110 lets a server ignore Range).
    Whole,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Part(u64, u64),
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`; several ranges are served whole.
fn parse_range(value: &str, size: u64) -> RangeRequest {
    if size == 0 {
        return RangeRequest::Whole;
    }
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |v: &str| v.parse::<u64>().ok();
    let (first, last) = match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size - 1),
            None => return RangeRequest::Whole,
        },
        (false, true) => match parse(a) {
            Some(first) => (first, size - 1),
            None => return RangeRequest::Whole,
        },
        (false, false) => match (parse(a), parse(b)) {
            (Some(first), Some(last)) if first <= last => (first, last.min(size - 1)),
            _ => return RangeRequest::Whole,
        },
        (true, true) => return RangeRequest::Whole,
    };
    if first >= size {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Part(first, last)
    }
}

/// A range of the record (imaging viewers seek): only the chunks that hold it are fetched
/// and decrypted; each authenticates, the whole-content hash is checked on full reads only.
async fn ranged(
    state: &State,
    r: &record::Model,
    data_key: &DataKey,
    aad: Vec<u8>,
    suite: Suite,
    first: u64,
    last: u64,
) -> Result<HttpResponse> {
    use caretrail_crypto::stream::{HEADER_LEN, StreamHeader, chunk_offset};
    let mut head = state
        .storage
        .get_range(&r.storage_key, 0, HEADER_LEN as u64 - 1)
        .await?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    while let Some(piece) = head.next().await {
        header.extend_from_slice(&piece?);
    }
    let parsed =
        StreamHeader::parse(&header).map_err(|e| ObjectStoreError::Integrity(e.to_string()))?;
    let chunk = parsed.chunk_size() as u64;
    let (first_chunk, last_chunk) = (first / chunk, last / chunk);
    let start = chunk_offset(parsed.chunk_size(), first_chunk);
    let end = chunk_offset(parsed.chunk_size(), last_chunk + 1) - 1;
    let decryptor = caretrail_crypto::StreamDecryptor::resume(
        data_key,
        &aad,
        &header,
        u32::try_from(first_chunk).map_err(|_| ObjectStoreError::Corrupt("chunk index"))?,
    )
    .map_err(|e| ObjectStoreError::Integrity(e.to_string()))?;
    let source = state.storage.get_range(&r.storage_key, start, end).await?;
    let len = last - first + 1;
    let mut plain = content::decrypting_range(
        source,
        decryptor,
        first - first_chunk * chunk,
        len,
        r.id.clone(),
    );
    let head = match plain.next().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(ObjectStoreError::Integrity(e.to_string())),
        None => return Err(ObjectStoreError::Integrity("empty range".into())),
    };
    let body = futures::stream::iter([Ok(head)]).chain(plain);
    Ok(download(HttpResponse::PartialContent(), &r.id)
        .content_type(r.media_type.clone())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ETAG, format!("\"{}\"", r.content_hash)))
        .insert_header((
            "caretrail-content-hash",
            format!("{}:{}", hash_name(suite), r.content_hash),
        ))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{}", r.size),
        ))
        .no_chunking(len)
        .streaming(body))
}

#[utoipa::path(get, operation_id = "get_record_receipt", path = "/v1/records/{record_id}/receipt", tag = "records",
    params(("record_id" = caretrail_contracts::RecordId, Path), PurposeQuery),
    responses((status = 200, body = ReceiptOut, description = "The ledger receipt of the record's anchoring"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "Not anchored yet")),
    security(("bearer" = [])))]
/// The receipt of a record's anchoring (also after erasure: the ledger keeps proving it).
pub async fn receipt(
    state: web::Data<State>,
    g: Guarded<RecordReader>,
    path: web::Path<String>,
    q: web::Query<PurposeQuery>,
) -> Result<HttpResponse> {
    let p = g.into_principal();
    let tenant = caller_tenant(&p)?;
    let purpose = purpose(&q)?;
    let r = load_for_read(&state, &p, &tenant, &path, Action::ReadMetadata, purpose).await?;
    let decision = authorize(&state, &p, &r, Action::ReadMetadata, purpose).await?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let row = anchor_row::Entity::find()
        .filter(anchor_row::Column::TenantId.eq(tenant.as_str()))
        .filter(anchor_row::Column::SubjectId.eq(r.id.as_str()))
        .filter(anchor_row::Column::Kind.eq(anchor::KIND_ANCHORED))
        .one(&txn)
        .await?;
    txn.commit().await?;
    let receipt: Receipt = row
        .and_then(|a| a.receipt)
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or(ObjectStoreError::NotAnchored)?;
    log_access(&state, &p, &r, Action::ReadMetadata, purpose, &decision).await?;
    Ok(HttpResponse::Ok().json(ReceiptOut::new(&r.id, &r.content_hash, receipt)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u64>,
    pub purpose: Option<String>,
}

#[utoipa::path(get, operation_id = "list_patient_records", path = "/v1/patients/{patient_id}/records", tag = "records",
    params(("patient_id" = caretrail_contracts::PatientId, Path), ListQuery),
    responses((status = 200, body = RecordListOut, description = "The patient's records the caller may see; `next_cursor` is set only when more of them follow"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid patient id, cursor, limit or purpose")),
    security(("bearer" = [])))]
/// A patient's records the caller may see, oldest first: every page holds `limit` of them
/// unless it is the last, and its cursor is the last record shown.
pub async fn list(
    state: web::Data<State>,
    g: Guarded<RecordReader>,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let p = g.into_principal();
    let tenant = caller_tenant(&p)?;
    let patient: PatientId = path
        .parse()
        .map_err(|e: caretrail_contracts::ids::IdError| {
            ObjectStoreError::field("patient_id", e.to_string())
        })?;
    let purpose = purpose(&PurposeQuery {
        purpose: q.purpose.clone(),
    })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ObjectStoreError::field("limit", "1..=200"));
    }
    let mut after: Option<RecordId> = match &q.cursor {
        Some(cursor) => Some(
            cursor
                .parse()
                .map_err(|_| ObjectStoreError::field("cursor", "not a cursor from this API"))?,
        ),
        None => None,
    };
    // Pages are cut from what the caller may see: rows are read and decided in batches
    // until `limit + 1` visible ones are found or the patient's records end, and the cursor
    // is the last *visible* record. A cursor taken before filtering would hand out the ids
    // (and, through their UUIDv7, the creation times) of records consent hides, and whether
    // there is a next page would say whether hidden records follow.
    let mut items = Vec::new();
    let mut more = false;
    loop {
        let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
        let mut query = record::Entity::find()
            .filter(record::Column::TenantId.eq(tenant.as_str()))
            .filter(record::Column::PatientId.eq(patient.as_str()))
            .filter(record::Column::Status.is_in(["active", "anchoring"]));
        if let Some(after) = &after {
            query = query.filter(record::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(record::Column::Id)
            .limit(LIST_BATCH)
            .all(&txn)
            .await?;
        txn.commit().await?;
        let Some(last) = rows.last() else {
            break;
        };
        let exhausted = (rows.len() as u64) < LIST_BATCH;
        after = Some(
            last.id
                .parse()
                .map_err(|_| ObjectStoreError::Corrupt("record id"))?,
        );
        let resources = rows.iter().map(attributes).collect::<Result<Vec<_>>>()?;
        let decisions = state
            .decider
            .decide(
                &tenant,
                &subject(&p),
                Action::ReadMetadata,
                purpose,
                resources,
                false,
            )
            .await?;
        let mut shown = Vec::new();
        for (row, decision) in rows.iter().zip(&decisions) {
            if !decision.permit {
                continue;
            }
            if items.len() as u64 == limit {
                more = true;
                break;
            }
            items.push(record_out(row));
            shown.push((row, decision));
        }
        // Every record shown is a read of its metadata, on the trail before the page is sent.
        let reads = shown
            .into_iter()
            .map(|(r, decision)| Ok((read_of(r, &p)?, decision)))
            .collect::<Result<Vec<_>>>()?;
        access::queue_page(
            &state,
            &p,
            tenant.as_str(),
            reads,
            Action::ReadMetadata,
            purpose,
        )
        .await?;
        if more || exhausted {
            break;
        }
    }
    let next_cursor = if more {
        items.last().map(|r: &RecordOut| r.id.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(RecordListOut { items, next_cursor }))
}

#[utoipa::path(delete, operation_id = "erase_record", path = "/v1/records/{record_id}", tag = "records",
    params(("record_id" = caretrail_contracts::RecordId, Path)), request_body = EraseIn,
    responses((status = 200, body = EraseOut, description = "Erased: the data key is destroyed and the object deleted; `record.erased` is anchored"),
              (status = 400, body = caretrail_platform::Problem, description = "Missing reason"),
              (status = 403, body = caretrail_platform::Problem, description = "Only an administrator of the owning institution may erase"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 410, body = caretrail_platform::Problem, description = "Already erased")),
    security(("bearer" = [])))]
/// Erase a record by crypto-shredding: its wrapped data key is destroyed, so neither the API
/// nor a copy of the database and the bucket can decrypt it; the ledger still proves it existed.
pub async fn erase(
    state: web::Data<State>,
    g: Guarded<TenantMember>,
    path: web::Path<String>,
    input: web::Json<EraseIn>,
) -> Result<HttpResponse> {
    let p = g.into_principal();
    let tenant = caller_tenant(&p)?;
    let r = load(&state, &tenant, &path).await?;
    if !owns(&p, &r) {
        // Another institution's record is none of the caller's business, not even that it
        // exists.
        return Err(ObjectStoreError::NotFound);
    }
    let admin = if is_app(&p) {
        p.0.has_scope(scopes::ADMIN)
    } else {
        p.0.has_role(Role::InstitutionAdmin)
    };
    if !admin {
        return Err(ObjectStoreError::Forbidden(
            "only an administrator of the institution that created the record may erase it".into(),
        ));
    }
    let reason = input.reason.trim().to_string();
    if reason.chars().count() < 3 || reason.chars().count() > 500 {
        return Err(ObjectStoreError::field("reason", "3 to 500 characters"));
    }
    if r.status == "erased" {
        return Err(ObjectStoreError::Gone);
    }
    let suite: Suite = r
        .suite
        .parse()
        .map_err(|_| ObjectStoreError::Corrupt("suite"))?;
    let now = Utc::now();
    let (payload, opening) = entries::sealed(
        suite,
        json!({
            "record": r.id,
            "content_hash": r.content_hash,
            "owner": r.institution_id,
            "erased_by": p.0.sub,
            "at": now.timestamp_millis(),
        }),
        json!({"reason_hash": caretrail_crypto::hash(suite, reason.as_bytes()).to_hex()}),
    )?;
    let mut event = record_event(&r, &p);
    event["opening"] = json!(opening);
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let shredded = record::Entity::update_many()
        .col_expr(
            record::Column::WrappedKey,
            Expr::value(Option::<String>::None),
        )
        .col_expr(record::Column::Status, Expr::value("erased"))
        .col_expr(record::Column::ErasedAt, Expr::value(now))
        .col_expr(record::Column::ErasedBy, Expr::value(p.0.sub.clone()))
        .col_expr(record::Column::ErasureReason, Expr::value(reason))
        .filter(record::Column::Id.eq(r.id.as_str()))
        .filter(record::Column::TenantId.eq(tenant.as_str()))
        .filter(record::Column::Status.ne("erased"))
        .exec(&txn)
        .await?;
    if shredded.rows_affected == 0 {
        return Err(ObjectStoreError::Gone);
    }
    anchor::enqueue(
        &txn,
        NewAnchor {
            tenant: tenant.to_string(),
            subject: r.id.clone(),
            kind: anchor::KIND_ERASED,
            request_id: format!("erase:{}", r.id),
            signer: PLATFORM_SIGNER.to_string(),
            payload,
            submission: None,
            event_name: anchor::KIND_ERASED,
            event,
            hold: Duration::ZERO,
        },
    )
    .await?;
    txn.commit().await?;
    state.anchorer.notify();
    caretrail_db::compact_after_erasure(&state.db).await;
    if let Err(e) = state.storage.delete(&r.storage_key).await {
        // The content is already unreadable without its key; the object is garbage.
        tracing::warn!(error = %e, record = %r.id, "deleting an erased record's object failed");
    }
    Ok(HttpResponse::Ok().json(EraseOut {
        record_id: r.id,
        status: "erased".into(),
        erased_at: now,
    }))
}

pub(crate) async fn keys_out(
    state: &State,
    tenant: &TenantId,
    suite: Suite,
) -> Result<RecordKeysOut> {
    let (current, _) = state.keks.current(tenant.as_str(), suite).await?;
    let versions = state.keks.versions(tenant.as_str()).await?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let counts: Vec<(i32, i64)> = record::Entity::find()
        .select_only()
        .column(record::Column::KekVersion)
        .column_as(record::Column::Id.count(), "n")
        .filter(record::Column::TenantId.eq(tenant.as_str()))
        .filter(record::Column::WrappedKey.is_not_null())
        .group_by(record::Column::KekVersion)
        .into_tuple()
        .all(&txn)
        .await?;
    txn.commit().await?;
    let count_of = |v: i32| {
        counts
            .iter()
            .find(|(version, _)| *version == v)
            .map(|(_, n)| (*n).max(0) as u64)
            .unwrap_or(0)
    };
    Ok(RecordKeysOut {
        tenant: tenant.to_string(),
        current_version: current,
        pending_rewrap: counts
            .iter()
            .filter(|(v, _)| *v < current)
            .map(|(_, n)| (*n).max(0) as u64)
            .sum(),
        versions: versions
            .iter()
            .map(|v| KekVersionOut {
                version: v.version,
                created_at: v.created_at,
                records: count_of(v.version),
            })
            .collect(),
        rewrap_running: state.rewrap.is_running(tenant.as_str()),
    })
}

#[utoipa::path(get, operation_id = "list_record_keys", path = "/v1/admin/keys", tag = "records",
    responses((status = 200, body = RecordKeysOut, description = "The tenant's key-encryption key versions")),
    security(("bearer" = [])))]
/// The tenant's key-encryption keys and how many records each wraps.
pub async fn keys(state: web::Data<State>, g: Guarded<TenantAdmin>) -> Result<HttpResponse> {
    let tenant = caller_tenant(g.principal())?;
    let suite = tenant_suite(&state, &tenant).await?;
    Ok(HttpResponse::Ok().json(keys_out(&state, &tenant, suite).await?))
}

#[utoipa::path(post, operation_id = "rotate_record_keys", path = "/v1/admin/keys/rotate", tag = "records",
    responses((status = 202, body = RecordKeysOut, description = "A new version wraps new data keys from now on; older data keys are rewrapped in the background (objects are not touched)")),
    security(("bearer" = [])))]
/// Rotate the tenant's key-encryption key and rewrap every data key in the background.
pub async fn rotate(state: web::Data<State>, g: Guarded<TenantAdmin>) -> Result<HttpResponse> {
    let tenant = caller_tenant(g.principal())?;
    let suite = tenant_suite(&state, &tenant).await?;
    let version = state.keks.rotate(tenant.as_str(), suite).await?;
    tracing::info!(tenant = %tenant, version, "key-encryption key rotated");
    state
        .rewrap
        .start(state.clone().into_inner(), tenant.clone(), suite);
    Ok(HttpResponse::Accepted().json(keys_out(&state, &tenant, suite).await?))
}

#[cfg(test)]
mod tests {
    use super::{RangeRequest, parse_range};

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), Part(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Part(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Part(0, 999));
        assert_eq!(parse_range("bytes=990-5000", 1000), Part(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse_range("bytes=9-1", 1000), Whole);
        assert_eq!(parse_range("items=0-1", 1000), Whole);
        assert_eq!(parse_range("bytes=x-1", 1000), Whole);
    }
}
