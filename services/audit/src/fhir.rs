//! FHIR R4 renderings of a trail: one `AuditEvent` per event and, for every event whose
//! ledger entry an institution (or the platform) signed, a `Provenance` carrying that
//! signature — a `collection` Bundle.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_contracts::consent::Purpose;
use caretrail_ledger_proofs::Entry;
use serde_json::{Value, json};

use crate::model::{AuditEventOut, TrailOut};

fn identifier(system: &str, value: &str) -> Value {
    json!({"identifier": {"system": system, "value": value}})
}

/// DICOM audit event type, FHIR action code and what the event did.
fn type_of(kind: &str) -> (&'static str, &'static str, &'static str) {
    match kind {
        "record.accessed" | "record.access_denied" => ("110110", "Patient Record", "R"),
        "record.erased" => ("110110", "Patient Record", "D"),
        "consent.revoked" => ("110110", "Patient Record", "U"),
        k if k.starts_with("referral.") && k != "referral.created" => {
            ("110110", "Patient Record", "U")
        }
        _ => ("110110", "Patient Record", "C"),
    }
}

fn ledger_ref(tenant: &str, e: &AuditEventOut) -> Option<String> {
    e.ledger_index.map(|i| format!("{tenant}/{i}"))
}

fn audit_event(tenant: &str, e: &AuditEventOut) -> Value {
    let (code, display, action) = type_of(&e.kind);
    let mut agents = Vec::new();
    if let Some(subject) = &e.actor.subject {
        agents.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser"}]},
            "who": identifier("urn:caretrail:subject", subject),
            "requestor": true,
        }));
    }
    if let Some(institution) = &e.actor.institution {
        agents.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "datacollector"}]},
            "who": identifier("urn:caretrail:institution", institution),
            "requestor": e.actor.subject.is_none(),
        }));
    }
    if let Some(recipient) = &e.recipient_institution {
        agents.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "dataprocessor"}]},
            "who": identifier("urn:caretrail:institution", recipient),
            "requestor": false,
        }));
    }
    if agents.is_empty() {
        agents.push(
            json!({"who": identifier("urn:caretrail:service", "caretrail"), "requestor": true}),
        );
    }
    let mut entities = Vec::new();
    if let Some(record) = &e.record {
        entities.push(json!({
            "what": identifier("urn:caretrail:record", record),
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        }));
    }
    if let Some(patient) = &e.patient {
        entities.push(json!({
            "what": identifier("urn:caretrail:patient", patient),
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
        }));
    }
    if let Some(grant) = &e.grant {
        entities.push(json!({
            "what": identifier("urn:caretrail:grant", grant),
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "description": "consent grant",
        }));
    }
    if let Some(entry) = ledger_ref(tenant, e) {
        let mut detail = Vec::new();
        if let Some(leaf) = &e.leaf_hash {
            detail.push(json!({"type": "leaf_hash", "valueString": leaf}));
        }
        entities.push(json!({
            "what": identifier("urn:caretrail:ledger-entry", &entry),
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "4", "display": "Other"},
            "description": "the ledger entry that anchors this event",
            "detail": detail,
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": e.id,
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": code, "display": display},
        "subtype": [{"system": "urn:caretrail:event-kind", "code": e.kind}],
        "action": action,
        "recorded": e.at.to_rfc3339(),
        "outcome": if e.permit == Some(false) { "4" } else { "0" },
        "agent": agents,
        "source": {
            "observer": identifier("urn:caretrail:service", "caretrail-audit"),
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    });
    if e.permit == Some(false) {
        event["outcomeDesc"] = "access refused by the consent decision".into();
    }
    if let Some(purpose) = e.purpose.as_deref().and_then(|p| p.parse::<Purpose>().ok()) {
        event["purposeOfEvent"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose.act_reason()}]}]);
    }
    event
}

fn provenance(tenant: &str, e: &AuditEventOut) -> Option<Value> {
    let proof = e.proof.as_ref()?;
    let entry = Entry::decode(&proof.entry).ok()?;
    if entry.signature.is_empty() {
        return None;
    }
    let when = chrono::DateTime::from_timestamp_millis(entry.timestamp_ms as i64)?.to_rfc3339();
    let signer = if entry.submitter == caretrail_contracts::ledger::REGISTRAR {
        identifier("urn:caretrail:tenant-registrar", tenant)
    } else {
        identifier("urn:caretrail:institution", &entry.submitter)
    };
    let algorithm = match proof.suite {
        caretrail_ledger_proofs::Suite::Gm => "sm2-sm3",
        caretrail_ledger_proofs::Suite::Intl => "ed25519",
    };
    let mut targets = vec![identifier(
        "urn:caretrail:ledger-entry",
        &format!("{tenant}/{}", entry.index),
    )];
    if let Some(record) = &e.record {
        targets.push(identifier("urn:caretrail:record", record));
    }
    if let Some(grant) = &e.grant {
        targets.push(identifier("urn:caretrail:grant", grant));
    }
    Some(json!({
        "resourceType": "Provenance",
        "id": format!("prov-{}", e.id),
        "target": targets,
        "recorded": when,
        "activity": {"coding": [{"system": "urn:caretrail:event-kind", "code": entry.kind}]},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": signer.clone(),
        }],
        "signature": [{
            "type": [
                {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"},
                {"system": "urn:caretrail:signature-algorithm", "code": algorithm},
            ],
            "when": when,
            "who": signer,
            "targetFormat": "application/octet-stream",
            "sigFormat": "application/octet-stream",
            "data": B64.encode(&entry.signature),
        }],
    }))
}

/// The trail as a FHIR R4 `collection` Bundle.
pub fn trail_bundle(tenant: &str, trail: &TrailOut) -> Value {
    let mut entries = Vec::new();
    for e in &trail.events {
        entries.push(
            json!({"fullUrl": format!("urn:uuid:{}", e.id), "resource": audit_event(tenant, e)}),
        );
        if let Some(p) = provenance(tenant, e) {
            entries.push(
                json!({"fullUrl": format!("urn:caretrail:provenance:{}", e.id), "resource": p}),
            );
        }
    }
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "entry": entries,
    })
}
