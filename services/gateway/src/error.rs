//! The gateway's errors, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use caretrail_platform::problem::{ApiError, respond};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed on {path} (allowed: {allow})")]
    MethodNotAllowed {
        method: String,
        path: String,
        /// The `Allow` header's value.
        allow: String,
    },
    #[error("the request body is larger than the {limit}-byte limit")]
    BodyTooLarge { limit: u64 },
    #[error("the upstream service is unavailable")]
    UpstreamUnavailable(#[source] awc::error::SendRequestError),
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    #[error("too many attempts from this address; retry in {} s", caretrail_platform::throttle::whole_seconds(*.0))]
    Throttled(std::time::Duration),
    #[error(transparent)]
    Auth(#[from] caretrail_platform::auth::AuthError),
}

impl ApiError for GatewayError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Auth(e) => e.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BodyTooLarge { .. } => "payload_too_large",
            Self::UpstreamUnavailable(_) => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Throttled(_) => "too_many_requests",
            Self::Auth(e) => e.code(),
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Auth(e) => e.error_response(),
            Self::Throttled(wait) => caretrail_platform::problem::respond_throttled(self, *wait),
            Self::MethodNotAllowed { allow, .. } => {
                let mut resp = respond(self);
                if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allow) {
                    resp.headers_mut().insert(actix_web::http::header::ALLOW, v);
                }
                resp
            }
            _ => respond(self),
        }
    }
}
