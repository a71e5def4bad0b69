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
    components(schemas(caretrail_platform::Problem, caretrail_platform::FieldError)),
    tags((name = "operations", description = "Liveness, readiness and metrics of the gateway"))
)]
struct GatewayDoc;

/// Merges the services' documents under the gateway's own into the public document.
pub fn build_document(services: Vec<openapi::OpenApi>) -> openapi::OpenApi {
    let mut doc = GatewayDoc::openapi();
    for part in services {
        doc.merge(part);
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
    doc
}
