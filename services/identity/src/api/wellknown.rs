use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::policy::Operator;
use caretrail_platform::auth::Guarded;

use crate::{IdentityError, State, model::RotatedKeyOut};

#[utoipa::path(get, operation_id = "get_jwks", path = "/.well-known/jwks.json", tag = "oauth",
    responses((status = 200, description = "JSON Web Key Set (RFC 7517) of the token-signing keys")))]
/// The keys that verify Caretrail access tokens.
pub async fn jwks(state: web::Data<State>) -> Result<HttpResponse, IdentityError> {
    let set = state.tokens.jwks().await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=60"))
        .json(set))
}

#[utoipa::path(get, operation_id = "get_openid_configuration", path = "/.well-known/openid-configuration", tag = "oauth",
    responses((status = 200, description = "Authorization server metadata (RFC 8414 fields)")))]
/// Discovery document, so standard libraries find the token endpoint and the keys.
pub async fn openid_configuration(state: web::Data<State>) -> HttpResponse {
    let issuer = state.tokens.issuer.trim_end_matches('/');
    let base = state.config.public_base_url.trim_end_matches('/');
    HttpResponse::Ok().json(serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}/v1/oauth/token"),
        "revocation_endpoint": format!("{base}/v1/oauth/revoke"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["token"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": caretrail_contracts::auth::scopes::TENANT_SCOPES,
        "subject_types_supported": ["public"],
    }))
}

#[utoipa::path(post, operation_id = "rotate_token_signing_key", path = "/v1/admin/token-keys/rotate", tag = "oauth",
    responses((status = 200, body = RotatedKeyOut, description = "OK")), security(("bearer" = [])))]
/// Publish a new token-signing key; it starts signing after the activation delay, and the
/// old one keeps verifying until its tokens expire. Platform operator only.
pub async fn rotate(
    state: web::Data<State>,
    _operator: Guarded<Operator>,
) -> Result<HttpResponse, IdentityError> {
    let kid = state.tokens.rotate().await?;
    Ok(HttpResponse::Ok().json(RotatedKeyOut { kid }))
}

/// Internal (not routed by the gateway): revoked, unexpired token ids and the cut-offs in
/// force, for a gateway replica that (re)joins the bus and has missed revocation events.
pub async fn revoked(state: web::Data<State>) -> Result<HttpResponse, IdentityError> {
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(crate::access::in_force(&state.db).await?))
}
