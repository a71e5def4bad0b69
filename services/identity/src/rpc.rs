//! Identity's bus RPC (see [`caretrail_contracts::identity`]): tenant and patient look-ups
//! for other services, and custodial signing of their ledger submissions.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_bus::{RemoteError, RpcRequest, rpc_fn};
use caretrail_contracts::identity::{
    CosignIn, CosignOut, INSTITUTION_KINDS, InstitutionInfo, InstitutionsOut, Level, METHOD_COSIGN,
    METHOD_INSTITUTIONS, METHOD_PATIENT, METHOD_SIGN, METHOD_TENANT, METHOD_TENANTS,
    PLATFORM_KINDS, PLATFORM_SIGNER, PatientInfo, PatientQuery, SignIn, SignOut, SignResult,
    TenantInfo, TenantQuery, TenantsOut, ToSign,
};
use caretrail_contracts::ledger::SubmissionIn;
use caretrail_crypto::SigningKey;
use caretrail_crypto::Suite;
use caretrail_ledger_proofs::{Checkpoint, Cosigner, ProofError, Submission};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::{IdentityError, State, entities};

/// Most submissions one `sign` call may carry.
pub const MAX_SIGN_ITEMS: usize = 1000;

fn bad(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::new("invalid_request", e.to_string())
}

fn internal(e: IdentityError) -> RemoteError {
    tracing::error!(error = %caretrail_platform::problem::ErrorChain(&e), "identity RPC failed");
    RemoteError::new("unavailable", "identity could not answer")
}

fn not_found(what: &str) -> RemoteError {
    RemoteError::new("not_found", format!("{what} not found"))
}

async fn tenant(state: &State, q: TenantQuery) -> Result<TenantInfo, RemoteError> {
    let t = entities::tenant::Entity::find_by_id(q.tenant.clone())
        .one(&state.db)
        .await
        .map_err(|e| internal(e.into()))?
        .ok_or_else(|| not_found("tenant"))?;
    Ok(TenantInfo {
        tenant: t.id,
        suite: t.suite,
        status: t.status,
    })
}

async fn tenants(state: &State) -> Result<TenantsOut, RemoteError> {
    let rows = entities::tenant::Entity::find()
        .all(&state.db)
        .await
        .map_err(|e| internal(e.into()))?;
    Ok(TenantsOut {
        tenants: rows
            .into_iter()
            .map(|t| TenantInfo {
                tenant: t.id,
                suite: t.suite,
                status: t.status,
            })
            .collect(),
    })
}

/// Cosigns one of the tenant's checkpoints with a regulator institution's custodial key.
/// Only checkpoint bodies of this tenant's log are signed, under the `cosignature/v1`
/// message format, so the key cannot be made to sign anything else.
async fn cosign(state: &State, q: CosignIn) -> Result<CosignOut, RemoteError> {
    let refuse = |code: &str, message: String| RemoteError::new(code, message);
    let tenant = entities::tenant::Entity::find_by_id(q.tenant.clone())
        .one(&state.db)
        .await
        .map_err(|e| internal(e.into()))?
        .ok_or_else(|| not_found("tenant"))?;
    let suite: Suite = tenant
        .suite
        .parse()
        .map_err(|_| internal(IdentityError::Corrupt("tenant suite")))?;
    let checkpoint = Checkpoint::parse_body(&q.checkpoint, suite)
        .map_err(|e| refuse("invalid_request", format!("checkpoint: {e}")))?;
    let own_origin = checkpoint
        .origin()
        .rsplit_once('/')
        .is_some_and(|(_, id)| id == q.tenant);
    if !own_origin {
        return Err(refuse(
            "invalid_request",
            format!("{:?} is not this tenant's log", checkpoint.origin()),
        ));
    }
    let txn = caretrail_db::begin_tenant(&state.db, &q.tenant)
        .await
        .map_err(|e| internal(e.into()))?;
    let institution = entities::institution::Entity::find_by_id(q.witness.clone())
        .filter(entities::institution::Column::TenantId.eq(q.tenant.as_str()))
        .one(&txn)
        .await
        .map_err(|e| internal(e.into()))?
        .ok_or_else(|| not_found("institution"))?;
    drop(txn);
    if Level::parse(&institution.level) != Some(Level::Regulator) {
        return Err(refuse(
            "forbidden_witness",
            format!("{} is not a regulator: only regulators witness", q.witness),
        ));
    }
    // Only a proven extension of what this key cosigned before (a caller must not obtain a
    // cosignature on a forked history).
    let txn = caretrail_db::begin_tenant(&state.db, &q.tenant)
        .await
        .map_err(|e| internal(e.into()))?;
    let last =
        entities::witness_cosigned::Entity::find_by_id((q.tenant.clone(), q.witness.clone()))
            .one(&txn)
            .await
            .map_err(|e| internal(e.into()))?;
    txn.commit().await.map_err(|e| internal(e.into()))?;
    if let Some(last) = &last {
        extends(last, &checkpoint, &q, suite)?;
    }
    let key = signing_key(state, &q.tenant, &q.witness)
        .await
        .map_err(|refusal| match refusal {
            SignResult::Error { code, message } => RemoteError::new(&code, message),
            SignResult::Signed(_) => RemoteError::new("unavailable", "no key"),
        })?;
    let cosigner = Cosigner::new(q.witness.clone(), key)
        .map_err(|e| refuse("invalid_request", e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let cosignature = cosigner
        .cosign(&checkpoint, now)
        .map_err(|e| refuse("invalid_request", e.to_string()))?;
    let row = entities::witness_cosigned::ActiveModel {
        tenant_id: Set(q.tenant.clone()),
        witness: Set(q.witness.clone()),
        tree_size: Set(checkpoint.size() as i64),
        root: Set(checkpoint.root().to_hex()),
        origin: Set(checkpoint.origin().to_string()),
        cosigned_at: Set(chrono::Utc::now()),
    };
    let txn = caretrail_db::begin_tenant(&state.db, &q.tenant)
        .await
        .map_err(|e| internal(e.into()))?;
    entities::witness_cosigned::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                entities::witness_cosigned::Column::TenantId,
                entities::witness_cosigned::Column::Witness,
            ])
            .update_columns([
                entities::witness_cosigned::Column::TreeSize,
                entities::witness_cosigned::Column::Root,
                entities::witness_cosigned::Column::Origin,
                entities::witness_cosigned::Column::CosignedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(|e| internal(e.into()))?;
    txn.commit().await.map_err(|e| internal(e.into()))?;
    Ok(CosignOut {
        line: cosignature.line().trim_end().to_string(),
    })
}

/// Refuses a checkpoint that is not a proven extension of the last one cosigned.
fn extends(
    last: &entities::witness_cosigned::Model,
    next: &Checkpoint,
    q: &CosignIn,
    suite: Suite,
) -> Result<(), RemoteError> {
    let inconsistent = |why: &str| {
        RemoteError::new(
            "not_consistent",
            format!(
                "{why}: {} cosigned size {} of this log before",
                q.witness, last.tree_size
            ),
        )
    };
    let last_size = last.tree_size.max(0) as u64;
    if next.size() > last_size && q.from_size != last_size {
        return Err(RemoteError::new("cosign_from", last_size.to_string()));
    }
    let last_root = caretrail_crypto::HashValue::from_hex(suite, &last.root)
        .map_err(|_| internal(IdentityError::Corrupt("witness root")))?;
    let prev = Checkpoint::new(last.origin.clone(), last_size, last_root)
        .map_err(|_| internal(IdentityError::Corrupt("witness checkpoint")))?;
    // The same checkpoint again needs no proof.
    let proof = if next.size() > last_size {
        q.consistency
            .iter()
            .map(|h| caretrail_crypto::HashValue::from_hex(suite, h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("consistency: not hex hashes of the tenant's suite"))?
    } else {
        Vec::new()
    };
    caretrail_ledger_proofs::check_extends(&prev, next, &proof).map_err(|e| {
        inconsistent(match e {
            ProofError::OriginMismatch { .. } => "another log's checkpoint",
            _ if next.size() < last_size => "a smaller tree",
            _ if next.size() == last_size => "another root for the same size",
            _ => "the consistency proof does not verify",
        })
    })
}

async fn patient(state: &State, q: PatientQuery) -> Result<PatientInfo, RemoteError> {
    let txn = caretrail_db::begin_tenant(&state.db, &q.tenant)
        .await
        .map_err(|e| internal(e.into()))?;
    let row = entities::patient::Entity::find_by_id(q.patient.clone())
        .filter(entities::patient::Column::TenantId.eq(q.tenant.as_str()))
        .one(&txn)
        .await
        .map_err(|e| internal(e.into()))?
        .ok_or_else(|| not_found("patient"))?;
    Ok(PatientInfo {
        patient: row.id,
        registered_by: row.registered_by,
    })
}

async fn institutions(state: &State, q: TenantQuery) -> Result<InstitutionsOut, RemoteError> {
    let txn = caretrail_db::begin_tenant(&state.db, &q.tenant)
        .await
        .map_err(|e| internal(e.into()))?;
    let rows = entities::institution::Entity::find()
        .filter(entities::institution::Column::TenantId.eq(q.tenant.as_str()))
        .all(&txn)
        .await
        .map_err(|e| internal(e.into()))?;
    let mut institutions = Vec::with_capacity(rows.len());
    for row in rows {
        let (Ok(institution), Some(level)) = (row.id.parse(), Level::parse(&row.level)) else {
            return Err(internal(IdentityError::Corrupt("institution row")));
        };
        institutions.push(InstitutionInfo {
            institution,
            name: row.name,
            level,
        });
    }
    Ok(InstitutionsOut { institutions })
}

fn refused(code: &str, message: impl Into<String>) -> SignResult {
    SignResult::Error {
        code: code.into(),
        message: message.into(),
    }
}

/// The key that signs for `signer` in `tenant`: the tenant CA for the platform, otherwise
/// the institution's active custodial key.
async fn signing_key(state: &State, tenant: &str, signer: &str) -> Result<SigningKey, SignResult> {
    let fail = |e: IdentityError| {
        tracing::error!(error = %caretrail_platform::problem::ErrorChain(&e), "opening a signing key failed");
        refused("unavailable", "the signing key could not be opened")
    };
    let t = entities::tenant::Entity::find_by_id(tenant.to_string())
        .one(&state.db)
        .await
        .map_err(|e| fail(e.into()))?
        .ok_or_else(|| refused("unknown_signer", "unknown tenant"))?;
    if t.status != "active" {
        return Err(refused("tenant_suspended", "the tenant is suspended"));
    }
    if signer == PLATFORM_SIGNER {
        return crate::certs::tenant_ca(state, &t)
            .map(|(key, _)| key)
            .map_err(fail);
    }
    let txn = caretrail_db::begin_tenant(&state.db, tenant)
        .await
        .map_err(|e| fail(e.into()))?;
    let key = entities::institution_key::Entity::find()
        .filter(entities::institution_key::Column::TenantId.eq(tenant))
        .filter(entities::institution_key::Column::InstitutionId.eq(signer))
        .filter(entities::institution_key::Column::Status.eq("active"))
        .one(&txn)
        .await
        .map_err(|e| fail(e.into()))?
        .ok_or_else(|| refused("unknown_signer", format!("{signer} has no active key")))?;
    let Some(sealed) = key.private_key_enc.as_deref() else {
        return Err(refused(
            "byok_signature_required",
            format!("{signer} holds its own key: the client must sign"),
        ));
    };
    let der = state
        .master
        .open("institution-key", &key.id, sealed)
        .map_err(fail)?;
    SigningKey::from_pkcs8_der(&der).map_err(|e| fail(e.into()))
}

fn sign_one(key: &SigningKey, item: ToSign, payload: Vec<u8>) -> SignResult {
    let submission = Submission {
        tenant: item.tenant,
        kind: item.kind,
        submitter: item.signer,
        request_id: item.request_id,
        key_id: key.key_id().to_hex(),
        payload,
    };
    if let Err(e) = submission.validate() {
        return refused("invalid_request", e.to_string());
    }
    match submission.sign(key) {
        Ok(signature) => SignResult::Signed(SubmissionIn {
            payload: B64.encode(&submission.payload),
            signature: B64.encode(signature),
            tenant: submission.tenant,
            kind: submission.kind,
            submitter: submission.submitter,
            request_id: submission.request_id,
            key_id: submission.key_id,
        }),
        Err(e) => refused("invalid_request", e.to_string()),
    }
}

/// Signs a batch; each signer's key is opened once per batch.
async fn sign_all(state: &State, items: Vec<ToSign>) -> Vec<SignResult> {
    let mut keys: HashMap<(String, String), Result<SigningKey, SignResult>> = HashMap::new();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let allowed = if item.signer == PLATFORM_SIGNER {
            PLATFORM_KINDS.contains(&item.kind.as_str())
        } else {
            INSTITUTION_KINDS.contains(&item.kind.as_str())
        };
        if !allowed {
            results.push(refused(
                "forbidden_kind",
                format!("{} does not sign {} entries", item.signer, item.kind),
            ));
            continue;
        }
        let Ok(payload) = B64.decode(&item.payload) else {
            results.push(refused("invalid_request", "payload is not base64"));
            continue;
        };
        let slot = (item.tenant.clone(), item.signer.clone());
        if !keys.contains_key(&slot) {
            let key = signing_key(state, &item.tenant, &item.signer).await;
            keys.insert(slot.clone(), key);
        }
        results.push(match keys.get(&slot) {
            Some(Ok(key)) => sign_one(key, item, payload),
            Some(Err(refusal)) => refusal.clone(),
            None => refused("unavailable", "signing key cache"),
        });
    }
    results
}

async fn handle(state: Arc<State>, request: RpcRequest) -> Result<serde_json::Value, RemoteError> {
    fn reply(v: impl serde::Serialize) -> Result<serde_json::Value, RemoteError> {
        serde_json::to_value(v).map_err(|e| RemoteError::new("internal_error", e.to_string()))
    }
    match request.method.as_str() {
        METHOD_TENANT => {
            reply(tenant(&state, serde_json::from_value(request.body).map_err(bad)?).await?)
        }
        METHOD_PATIENT => {
            reply(patient(&state, serde_json::from_value(request.body).map_err(bad)?).await?)
        }
        METHOD_INSTITUTIONS => {
            reply(institutions(&state, serde_json::from_value(request.body).map_err(bad)?).await?)
        }
        METHOD_TENANTS => reply(tenants(&state).await?),
        caretrail_contracts::identity::METHOD_REVOCATIONS => {
            reply(crate::access::in_force(&state.db).await.map_err(internal)?)
        }
        METHOD_COSIGN => {
            reply(cosign(&state, serde_json::from_value(request.body).map_err(bad)?).await?)
        }
        METHOD_SIGN => {
            let input: SignIn = serde_json::from_value(request.body).map_err(bad)?;
            if input.items.is_empty() || input.items.len() > MAX_SIGN_ITEMS {
                return Err(bad(format!(
                    "items must hold 1..={MAX_SIGN_ITEMS} submissions"
                )));
            }
            reply(SignOut {
                results: sign_all(&state, input.items).await,
            })
        }
        other => Err(RemoteError::new(
            "unknown_method",
            format!("identity has no method {other:?}"),
        )),
    }
}

pub fn handler(state: Arc<State>) -> Arc<dyn caretrail_bus::RpcHandler> {
    rpc_fn(move |request| handle(state.clone(), request))
}
