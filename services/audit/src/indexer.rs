//! Consumes every anchored domain event (records, grants, referrals, break-glass, policy)
//! from the bus into `audit_events`, idempotently: the inbox claim and the row commit
//! together, so a redelivered event changes nothing. From the ledger's own `ledger.appended`
//! stream it indexes the entries no domain event describes: institution keys registered and
//! revoked, and changes of who may act (users disabled, apps revoked, institutions
//! deactivated, …), all by the tenant's registrar (the rest arrive richer as domain events).

use std::sync::Arc;

use caretrail_bus::{Bus, ConsumerHandle, Delivery, Event, HandlerError, Subscription, handler_fn};
use sea_orm::{ActiveModelTrait, DatabaseConnection, IntoActiveModel};

use serde_json::Value;

use crate::entities::audit_event;

/// The consumer's inbox name and queue.
pub const CONSUMER: &str = "audit.index";

/// What the audit index follows.
pub const BINDINGS: [&str; 6] = [
    "*.ledger.ledger.appended",
    "*.object-store.record.*",
    "*.consent.consent.*",
    "*.consent.referral.*",
    "*.consent.break_glass.*",
    "*.consent.policy.*",
];

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// Ledger entry kinds only the ledger stream reports: institution keys, and every change of
/// who may act (`user.disabled`, `app.revoked`, … — the registrar's entries).
fn ledger_only(kind: &str) -> bool {
    kind == caretrail_contracts::ledger::KIND_KEY_REGISTERED
        || kind == caretrail_contracts::ledger::KIND_KEY_REVOKED
        || caretrail_contracts::identity::AccessChange::from_name(kind).is_some()
}

/// The row of an event, or `None` for a ledger entry a domain event already describes.
pub fn row_of(event: &Event) -> Option<audit_event::Model> {
    if event.service == "ledger" {
        return ledger_row(event);
    }
    Some(domain_row(event))
}

/// An institution key entry from `ledger.appended`.
fn ledger_row(event: &Event) -> Option<audit_event::Model> {
    let p = &event.payload;
    let kind = p["kind"].as_str()?;
    if !ledger_only(kind) {
        return None;
    }
    let entry = &p["payload_json"];
    let occurred_at = p["timestamp_ms"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or(event.occurred_at);
    // Rows are paged by id in time order: a time-ordered id at the entry's time (the event's
    // own id is derived from tenant and index, for the inbox).
    let ms = u64::try_from(occurred_at.timestamp_millis()).unwrap_or_default();
    let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from(ms % 1000).unwrap_or_default() * 1_000_000,
    ));
    Some(audit_event::Model {
        id: id.to_string(),
        tenant_id: event.tenant.clone(),
        service: event.service.clone(),
        kind: kind.to_string(),
        occurred_at,
        ledger_index: p["index"].as_i64(),
        leaf_hash: text(&p["leaf_hash"]),
        record_id: None,
        patient_id: None,
        grant_id: None,
        referral_id: None,
        break_glass_id: None,
        category: None,
        owner_institution: text(&entry["institution"]),
        // An access change names who made it; a key entry only its submitter, the registrar.
        actor_subject: text(&entry["by"]).or_else(|| text(&p["submitter"])),
        actor_institution: None,
        recipient_institution: None,
        purpose: None,
        action: None,
        permit: None,
        decided_by_kind: None,
        decided_by_id: None,
        payload: entry.to_string(),
    })
}

/// The row of a domain event (fields by the producing service's payload shape).
fn domain_row(event: &Event) -> audit_event::Model {
    let p = &event.payload;
    let kind = event.name.clone();
    let actor = &p["actor"];
    let mut row = audit_event::Model {
        id: event.id.to_string(),
        tenant_id: event.tenant.clone(),
        service: event.service.clone(),
        kind: kind.clone(),
        occurred_at: event.occurred_at,
        ledger_index: p["ledger_index"].as_i64(),
        leaf_hash: text(&p["leaf_hash"]),
        record_id: text(&p["record"]),
        patient_id: text(&p["patient"]),
        grant_id: text(&p["grant"]),
        referral_id: text(&p["referral"]),
        break_glass_id: text(&p["break_glass"]),
        category: text(&p["category"]),
        owner_institution: text(&p["owner"]),
        actor_subject: text(&actor["subject"]),
        actor_institution: text(&actor["institution"]),
        recipient_institution: text(&p["recipient_institution"]),
        purpose: text(&p["purpose"]),
        action: text(&p["action"]),
        permit: None,
        decided_by_kind: text(&p["decided_by"]["kind"]),
        decided_by_id: text(&p["decided_by"]["id"]),
        payload: p.to_string(),
    };
    match kind.as_str() {
        "record.accessed" => row.permit = Some(true),
        "record.access_denied" => row.permit = Some(false),
        "consent.granted" | "consent.revoked" => row.owner_institution = text(&p["grantor"]),
        k if k.starts_with("referral.") => {
            row.owner_institution = text(&p["from_institution"]);
            row.recipient_institution = text(&p["to_institution"]);
        }
        "break_glass.declared" => {
            row.actor_subject = text(&p["user"]);
            row.actor_institution = text(&p["institution"]);
        }
        "policy.changed" => row.actor_subject = text(&p["changed_by"]),
        _ => {}
    }
    row
}

/// What the indexer needs besides the event.
pub struct Indexer {
    pub db: DatabaseConnection,
    pub rule: crate::anomalies::VolumeRule,
    pub flags: prometheus::IntCounterVec,
    pub outbox: Arc<tokio::sync::Notify>,
}

async fn index(ix: &Indexer, delivery: Delivery) -> Result<(), HandlerError> {
    let db = &ix.db;
    let event = delivery.event;
    let retry = |e: &dyn std::fmt::Display| HandlerError::Retry(e.to_string());
    // Most ledger entries arrive richer as domain events: acknowledge those without a write.
    let Some(row) = row_of(&event) else {
        return Ok(());
    };
    let txn = caretrail_db::begin_tenant(db, &event.tenant)
        .await
        .map_err(|e| retry(&e))?;
    if !caretrail_bus::inbox::claim(&txn, CONSUMER, event.id)
        .await
        .map_err(|e| retry(&e))?
    {
        return Ok(());
    }
    row.clone()
        .into_active_model()
        .insert(&txn)
        .await
        .map_err(|e| retry(&e))?;
    let flagged = crate::anomalies::check(&txn, &row, ix.rule)
        .await
        .map_err(|e| retry(&e))?;
    txn.commit().await.map_err(|e| retry(&e))?;
    for kind in &flagged {
        ix.flags.with_label_values(&[kind]).inc();
    }
    if !flagged.is_empty() {
        ix.outbox.notify_one();
    }
    Ok(())
}

pub async fn start(
    bus: &dyn Bus,
    indexer: Indexer,
) -> Result<ConsumerHandle, caretrail_bus::BusError> {
    let ix = Arc::new(indexer);
    let mut subscription = Subscription::new(CONSUMER).prefetch(64);
    for binding in BINDINGS {
        subscription = subscription.bind(binding);
    }
    bus.subscribe(
        subscription,
        handler_fn(move |delivery| {
            let ix = ix.clone();
            async move { index(&ix, delivery).await }
        }),
    )
    .await
}
