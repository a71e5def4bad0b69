//! Keeps each tenant's ledger in step with identity: the tenant's log exists with the tenant
//! CA key as its registrar, and every institution key registration and revocation is a ledger
//! entry signed by that CA key — so a regulator can verify key history from the ledger alone.
//!
//! Driven by identity's own events (`tenant.created`, `institution.key_registered`,
//! `institution.key_rotated`, `institution.key_revoked`, and every change of who may act —
//! `user.disabled`, `app.revoked`, `institution.deactivated`, … ([`AccessChange`]), anchored
//! as registrar entries of that kind) on a durable queue: the outbox makes
//! sure they are published, the ledger deduplicates on the request id (`key:<key id>`,
//! `revoke:<key id>`), and a ledger that is down only delays the entries (retries with
//! backoff).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use caretrail_bus::{
    Bus, BusError, ConsumerHandle, Delivery, HandlerError, Subscription, handler_fn,
};
use caretrail_contracts::events::AccessChangedV1;
use caretrail_contracts::identity::AccessChange;
use caretrail_contracts::ledger::{
    self as contract, AppendIn, KIND_KEY_REGISTERED, KIND_KEY_REVOKED, KeyRegistration,
    KeyRevocation, REGISTRAR, SubmissionIn, TenantIn,
};
use caretrail_crypto::{SigningKey, VerifyingKey};
use caretrail_ledger_proofs::{Submission, canonical_json};
use sea_orm::EntityTrait;
use serde::Deserialize;

use crate::{State, entities};

/// Queue of this consumer (shared by identity replicas: each event handled once).
pub const QUEUE: &str = "identity.ledger-sync";
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

fn retry(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Retry(e.to_string())
}

#[derive(Deserialize)]
struct KeyEvent {
    institution: String,
    key: String,
    #[serde(default)]
    reason: String,
}

async fn call(
    bus: &dyn Bus,
    method: &str,
    body: &impl serde::Serialize,
) -> Result<serde_json::Value, HandlerError> {
    caretrail_bus::call_json::<_, serde_json::Value>(
        bus,
        contract::SERVICE,
        method,
        body,
        RPC_TIMEOUT,
    )
    .await
    .map_err(|e| match e {
        // The ledger refused for good (e.g. an invalid key): keep it for an operator.
        BusError::Remote(r)
            if !matches!(r.code.as_str(), "no_leader" | "unavailable" | "not_leader") =>
        {
            HandlerError::Reject(r.to_string())
        }
        other => retry(other),
    })
}

async fn tenant_row(state: &State, tenant: &str) -> Result<entities::tenant::Model, HandlerError> {
    entities::tenant::Entity::find_by_id(tenant.to_string())
        .one(&state.db)
        .await
        .map_err(retry)?
        .ok_or_else(|| HandlerError::Reject(format!("unknown tenant {tenant}")))
}

/// Creates the tenant's log (idempotent).
async fn ensure_tenant(bus: &dyn Bus, t: &entities::tenant::Model) -> Result<(), HandlerError> {
    call(
        bus,
        contract::METHOD_REGISTER_TENANT,
        &TenantIn {
            tenant: t.id.clone(),
            suite: t.suite.clone(),
            registrar_key_pem: t.ca_public_pem.clone(),
        },
    )
    .await
    .map(drop)
}

/// Appends one registrar entry; a refusal of the entry itself is permanent.
async fn append_registrar_entry(
    state: &State,
    bus: &dyn Bus,
    t: &entities::tenant::Model,
    kind: &str,
    request_id: String,
    payload: Vec<u8>,
) -> Result<(), HandlerError> {
    let (ca, _) =
        crate::certs::tenant_ca(state, t).map_err(|e| HandlerError::Reject(e.to_string()))?;
    let submission = Submission {
        tenant: t.id.clone(),
        kind: kind.to_string(),
        submitter: REGISTRAR.to_string(),
        request_id,
        key_id: ca.key_id().to_hex(),
        payload,
    };
    let signature = sign(&submission, &ca)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let reply = call(
        bus,
        contract::METHOD_APPEND,
        &AppendIn {
            submissions: vec![SubmissionIn {
                tenant: submission.tenant.clone(),
                kind: submission.kind.clone(),
                submitter: submission.submitter.clone(),
                request_id: submission.request_id.clone(),
                key_id: submission.key_id.clone(),
                payload: b64.encode(&submission.payload),
                signature: b64.encode(signature),
            }],
        },
    )
    .await?;
    let result = &reply["results"][0];
    if result.get("receipt").is_some() {
        return Ok(());
    }
    let code = result["error"]["code"].as_str().unwrap_or("");
    let message = result["error"]["message"].as_str().unwrap_or("");
    match code {
        "no_leader" | "unavailable" | "not_leader" | "unknown_tenant" => {
            Err(retry(format!("{code}: {message}")))
        }
        _ => Err(HandlerError::Reject(format!("{code}: {message}"))),
    }
}

fn sign(submission: &Submission, key: &SigningKey) -> Result<Vec<u8>, HandlerError> {
    submission
        .sign(key)
        .map_err(|e| HandlerError::Reject(e.to_string()))
}

async fn handle(state: &State, bus: &dyn Bus, delivery: Delivery) -> Result<(), HandlerError> {
    let event = delivery.event;
    let t = tenant_row(state, &event.tenant).await?;
    ensure_tenant(bus, &t).await?;
    match event.name.as_str() {
        "tenant.created" => Ok(()),
        "institution.key_registered" | "institution.key_rotated" | "institution.key_revoked" => {
            let e: KeyEvent = event
                .payload_as()
                .map_err(|e| HandlerError::Reject(e.to_string()))?;
            // Institution keys are tenant rows: read them under the tenant's RLS context.
            let txn = caretrail_db::begin_tenant(&state.db, &event.tenant)
                .await
                .map_err(retry)?;
            let row = entities::institution_key::Entity::find_by_id(e.key.clone())
                .one(&txn)
                .await
                .map_err(retry)?
                .ok_or_else(|| HandlerError::Reject(format!("unknown key {}", e.key)))?;
            txn.commit().await.map_err(retry)?;
            let public = VerifyingKey::from_spki_pem(&row.public_key_pem)
                .map_err(|e| HandlerError::Reject(e.to_string()))?;
            let key_id = public.key_id().to_hex();
            let payload = if event.name == "institution.key_revoked" {
                serde_json::to_value(KeyRevocation {
                    institution: e.institution.clone(),
                    key_id: key_id.clone(),
                    reason: e.reason,
                })
            } else {
                serde_json::to_value(KeyRegistration {
                    institution: e.institution.clone(),
                    key_id: key_id.clone(),
                    algorithm: public.algorithm().as_str().to_string(),
                    public_key: base64::engine::general_purpose::STANDARD
                        .encode(public.to_spki_der()),
                })
            }
            .map_err(|e| HandlerError::Reject(e.to_string()))
            .and_then(|v| canonical_json(&v).map_err(|e| HandlerError::Reject(e.to_string())))?;
            let (kind, request_id) = if event.name == "institution.key_revoked" {
                (KIND_KEY_REVOKED, format!("revoke:{key_id}"))
            } else {
                (KIND_KEY_REGISTERED, format!("key:{key_id}"))
            };
            append_registrar_entry(state, bus, &t, kind, request_id, payload).await
        }
        name => match AccessChange::from_name(name) {
            Some(change) => anchor_access_change(state, bus, &t, change, &event).await,
            None => Ok(()),
        },
    }
}

/// A change of who may act, as a registrar entry of the change's kind: the event's payload
/// (ids and roles only) and its id, which is also the request id — a redelivered event finds
/// the entry already there.
async fn anchor_access_change(
    state: &State,
    bus: &dyn Bus,
    t: &entities::tenant::Model,
    change: AccessChange,
    event: &caretrail_bus::Event,
) -> Result<(), HandlerError> {
    let reject = |e: &dyn std::fmt::Display| HandlerError::Reject(e.to_string());
    let parsed: AccessChangedV1 = event.payload_as().map_err(|e| reject(&e))?;
    if parsed.change != change {
        return Err(reject(&"the event's name and its change differ"));
    }
    let mut entry = serde_json::to_value(&parsed).map_err(|e| reject(&e))?;
    entry["event"] = serde_json::Value::String(event.id.to_string());
    let payload = canonical_json(&entry).map_err(|e| reject(&e))?;
    append_registrar_entry(
        state,
        bus,
        t,
        change.as_str(),
        format!("access:{}", event.id),
        payload,
    )
    .await
}

/// Starts the consumer.
pub async fn start(state: Arc<State>, bus: Arc<dyn Bus>) -> Result<ConsumerHandle, BusError> {
    let rpc_bus = bus.clone();
    bus.subscribe(
        Subscription::new(QUEUE)
            .bind("*.identity.tenant.created")
            .bind("*.identity.institution.key_registered")
            .bind("*.identity.institution.key_rotated")
            .bind("*.identity.institution.key_revoked")
            // Changes of who may act (`AccessChange`).
            .bind("*.identity.user.*")
            .bind("*.identity.app.*")
            .bind("*.identity.institution.deactivated")
            .bind("*.identity.institution.reactivated")
            .bind("*.identity.tenant.suspended")
            .bind("*.identity.tenant.resumed")
            // A ledger outage delays entries; it must not drop them.
            .retries(40, Duration::from_secs(1)),
        handler_fn(move |delivery| {
            let state = state.clone();
            let bus = rpc_bus.clone();
            async move { handle(&state, bus.as_ref(), delivery).await }
        }),
    )
    .await
}
