//! The public OpenAPI 3.1 document: generated from the services' code by
//! `caretrail openapi` (see `make openapi`), committed under `openapi/`, and embedded here so
//! the gateway serves exactly the document of the version it was built from.

use actix_web::HttpResponse;
use utoipa::{
    OpenApi,
    openapi::{self, InfoBuilder, LicenseBuilder},
};

const EMBEDDED: &str = include_str!("../../../openapi/caretrail.json");

/// The embedded document, parsed (start-up fails if it is not valid JSON).
pub fn embedded() -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(EMBEDDED)
}

pub(crate) async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(EMBEDDED)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        caretrail_platform::http::healthz,
        caretrail_platform::http::readyz,
        caretrail_platform::http::metrics,
    ),
    // The ids every service's paths name (a parameter's type is not collected on its own).
    components(schemas(
        caretrail_platform::Problem, caretrail_platform::FieldError,
        caretrail_contracts::TenantId, caretrail_contracts::InstitutionId,
        caretrail_contracts::UserId, caretrail_contracts::AppId, caretrail_contracts::PatientId,
        caretrail_contracts::SigningKeyId, caretrail_contracts::RecordId,
        caretrail_contracts::GrantId, caretrail_contracts::ReferralId,
        caretrail_contracts::BreakGlassId,
    )),
    tags((name = "operations", description = "Liveness, readiness and metrics of the gateway"))
)]
struct GatewayDoc;

/// Merges the services' documents under the gateway's own into the public document. Two
/// services naming different schemas alike (utoipa names a schema after its struct, so each
/// service's `RevokeIn` would be one) or serving one path would make the merged document lie
/// about one of them: that is an error, listing every clash.
pub fn build_document(services: Vec<openapi::OpenApi>) -> Result<openapi::OpenApi, Vec<String>> {
    let mut doc = GatewayDoc::openapi();
    let mut clashes = Vec::new();
    let mut schemas: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    let mut paths = std::collections::BTreeSet::new();
    let mut parts = vec![GatewayDoc::openapi()];
    parts.extend(services.iter().cloned());
    for (i, part) in parts.iter().enumerate() {
        if let Some(components) = &part.components {
            for (name, schema) in &components.schemas {
                let json = serde_json::to_value(schema).unwrap_or_default();
                match schemas.get(name) {
                    Some(seen) if *seen != json => {
                        clashes.push(format!("schema {name:?} means two different things"))
                    }
                    _ => {
                        schemas.insert(name.clone(), json);
                    }
                }
            }
        }
        if i > 0 {
            for path in part.paths.paths.keys() {
                if !paths.insert(path.clone()) {
                    clashes.push(format!("path {path} is served by two services"));
                }
            }
        }
    }
    if !clashes.is_empty() {
        return Err(clashes);
    }
    for part in services {
        doc.merge(part);
    }
    // Every `$ref` names a schema the document holds (a generated client cannot resolve a
    // dangling one).
    let json = serde_json::to_value(&doc).map_err(|e| vec![e.to_string()])?;
    let mut dangling = std::collections::BTreeSet::new();
    refs(&json, &mut |r| {
        let name = r.trim_start_matches("#/components/schemas/");
        if json["components"]["schemas"].get(name).is_none() {
            dangling.insert(format!("{r} is referenced but not defined"));
        }
    });
    if !dangling.is_empty() {
        return Err(dangling.into_iter().collect());
    }
    doc.info = InfoBuilder::new()
        .title("Caretrail API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Share patients' records between the institutions of a regional medical consortium: \
             securely, with consent, and with a tamper-evident trail that regulators can verify. \
             Every error is RFC 9457 problem+json with a stable `code`.",
        ))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    problem_responses(&mut doc);
    Ok(doc)
}

fn refs(value: &serde_json::Value, found: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => found(r),
                    _ => refs(v, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

/// Every error the API answers is `application/problem+json` with the `Problem` schema
/// (`caretrail_platform::problem`): said once here rather than on each of the services'
/// annotations, which would default to `application/json` or leave the body out. The
/// refusals every operation of a kind can meet are added here too, where an operation does
/// not describe its own: 401 and 403 wherever a token is required (missing, expired or
/// revoked; a caller without the role or scope), 400 wherever there is input, 404 wherever
/// the path names an object, and 413 and 415 wherever there is a body.
fn problem_responses(doc: &mut openapi::OpenApi) {
    use openapi::{Ref, RefOr, content::Content, response::Response};
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let body = operation.request_body.is_some();
            let input = body || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let names_an_object = operation.parameters.iter().flatten().any(
                |p| matches!(p, RefOr::T(p) if p.parameter_in == openapi::path::ParameterIn::Path),
            );
            let standard = [
                (
                    secured,
                    "401",
                    "No valid access token: missing, malformed, expired or revoked (`WWW-Authenticate` says which)",
                ),
                (
                    secured,
                    "403",
                    "The token is valid but its roles or scopes do not allow this",
                ),
                (input, "400", "Invalid input (`errors` lists the fields)"),
                (
                    names_an_object,
                    "404",
                    "No such object — also for another tenant's, and for one consent hides",
                ),
                (
                    body,
                    "413",
                    "The body is larger than this operation accepts",
                ),
                (
                    body,
                    "415",
                    "The body's Content-Type is not one this operation accepts",
                ),
            ];
            for (applies, status, description) in standard {
                if applies {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(Response::new(description)));
                }
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let is_error = status.parse::<u16>().is_ok_and(|s| s >= 400);
                if let (true, RefOr::T(response)) = (is_error, response) {
                    response.content.clear();
                    response.content.insert(
                        "application/problem+json".into(),
                        RefOr::T(Content::new(Some(Ref::from_schema_name("Problem")))),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_error_response_is_problem_json() {
        /// A test operation.
        #[utoipa::path(get, path = "/x", responses(
            (status = 200, body = String, description = "OK"),
            (status = 404, body = String, description = "Not found"),
            (status = 401, description = "No token")),
            params(("q" = String, Query)), security(("bearer" = [])))]
        #[allow(dead_code)]
        async fn x() {}
        #[derive(OpenApi)]
        #[openapi(paths(x))]
        struct X;
        let doc = build_document(vec![X::openapi()]).unwrap();
        let doc = serde_json::to_value(&doc).unwrap();
        let responses = &doc["paths"]["/x"]["get"]["responses"];
        assert!(
            responses["200"]["content"]["text/plain"].is_object(),
            "{responses}"
        );
        // Its own 401 stays; the 403 of a secured operation and the 400 of one with input
        // are added.
        assert_eq!(responses["401"]["description"], "No token");
        for status in ["400", "401", "403", "404"] {
            assert_eq!(
                responses[status]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem"
            );
            assert_eq!(responses[status]["content"].as_object().unwrap().len(), 1);
        }
    }

    #[test]
    fn every_reference_must_resolve() {
        #[derive(utoipa::ToSchema)]
        #[allow(dead_code)]
        struct Unlisted(String);
        /// A test operation.
        #[utoipa::path(get, path = "/y/{id}", params(("id" = Unlisted, Path)),
            responses((status = 200, description = "OK")))]
        #[allow(dead_code)]
        async fn y() {}
        #[derive(OpenApi)]
        #[openapi(paths(y))]
        struct Y;
        let Err(errors) = build_document(vec![Y::openapi()]) else {
            panic!("a dangling $ref was accepted")
        };
        assert_eq!(
            errors,
            vec!["#/components/schemas/Unlisted is referenced but not defined".to_string()]
        );
    }

    #[test]
    fn schemas_of_one_name_must_agree() {
        #[derive(utoipa::ToSchema)]
        #[allow(dead_code)]
        struct Thing {
            a: String,
        }
        mod other {
            #[derive(utoipa::ToSchema)]
            #[allow(dead_code)]
            pub struct Thing {
                pub b: u32,
            }
        }
        #[derive(OpenApi)]
        #[openapi(components(schemas(Thing)))]
        struct A;
        #[derive(OpenApi)]
        #[openapi(components(schemas(other::Thing)))]
        struct B;
        let Err(clashes) = build_document(vec![A::openapi(), B::openapi()]) else {
            panic!("two schemas named Thing were merged")
        };
        assert_eq!(
            clashes,
            vec!["schema \"Thing\" means two different things".to_string()]
        );
        assert!(build_document(vec![A::openapi(), A::openapi()]).is_ok());
    }
}
