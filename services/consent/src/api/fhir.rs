//! FHIR R4 renderings.

use serde_json::{Value, json};

use crate::model::GrantOut;

fn identifier(system: &str, value: &str) -> Value {
    json!({"identifier": {"system": system, "value": value}})
}

/// A grant as a FHIR R4 `Consent` (scope patient-privacy, an opt-in permit provision).
pub fn consent(g: &GrantOut) -> Value {
    let status = match g.status.as_str() {
        "active" => "active",
        "pending" => "proposed",
        "rejected" => "rejected",
        _ => "inactive",
    };
    let code = g.purpose.act_reason();
    let mut actors = vec![json!({
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
        "reference": identifier("urn:caretrail:institution", &g.recipient_institution),
    })];
    if let Some(user) = &g.recipient_user {
        actors.push(json!({
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
            "reference": identifier("urn:caretrail:user", user),
        }));
    }
    let mut provision = json!({
        "type": "permit",
        "period": {"start": g.valid_from.to_rfc3339(), "end": g.valid_until.to_rfc3339()},
        "actor": actors,
        "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code, "display": g.purpose.as_str()}],
    });
    if !g.scope.categories.is_empty() {
        provision["code"] = Value::Array(
            g.scope
                .categories
                .iter()
                .map(|c| json!({"coding": [{"system": "urn:caretrail:record-category", "code": c.as_str()}]}))
                .collect(),
        );
    }
    if !g.scope.records.is_empty() {
        provision["data"] = Value::Array(
            g.scope
                .records
                .iter()
                .map(|r| json!({"meaning": "instance", "reference": identifier("urn:caretrail:record", r)}))
                .collect(),
        );
    }
    if g.scope.data_from.is_some() || g.scope.data_until.is_some() {
        let mut period = serde_json::Map::new();
        if let Some(from) = &g.scope.data_from {
            period.insert("start".into(), from.clone().into());
        }
        if let Some(until) = &g.scope.data_until {
            period.insert("end".into(), until.clone().into());
        }
        provision["dataPeriod"] = Value::Object(period);
    }
    json!({
        "resourceType": "Consent",
        // FHIR ids allow no underscore; the grant id itself is the identifier.
        "id": g.id.replace('_', "-"),
        "identifier": [{"system": "urn:caretrail:grant", "value": g.id}],
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": identifier("urn:caretrail:patient", &g.patient),
        "dateTime": g.created_at.to_rfc3339(),
        "performer": [identifier("urn:caretrail:user", &g.granted_by)],
        "organization": [identifier("urn:caretrail:institution", &g.grantor_institution)],
        "sourceReference": {"identifier": {"system": "urn:caretrail:consent-evidence", "value": g.evidence.reference}, "display": g.evidence.kind},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    })
}
