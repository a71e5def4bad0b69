//! RFC 9457 problem details. Every error any Caretrail HTTP endpoint returns has this shape,
//! with a stable machine-readable `code` and the request id, and never internals on 5xx.

use actix_web::{HttpResponse, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Most field errors one problem lists (then one more says how many were left out).
pub const MAX_FIELD_ERRORS: usize = 20;

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer-ish path of the field, e.g. `institution.level`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `application/problem+json` body (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:caretrail:problem:not_found",
    "title": "Not Found",
    "status": 404,
    "detail": "no route for GET /v1/nothing",
    "code": "not_found",
    "request_id": "req_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e"
}))]
pub struct Problem {
    /// URI identifying the problem type: `urn:caretrail:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short human-readable summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence (absent on server errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable error code; clients branch on this.
    pub code: String,
    /// The request id (also in the `x-request-id` response header); quote it to support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Field-level validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: Option<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error").to_string();
        // Server errors never echo details: they could carry internals.
        let detail = if status.is_server_error() && detail.is_some() {
            Some(
                "the server could not complete the request; quote the request id to support"
                    .to_string(),
            )
        } else {
            detail
        };
        Self {
            type_uri: format!("urn:caretrail:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            code: code.to_string(),
            request_id: crate::http::current_request_id(),
            errors: Vec::new(),
        }
    }

    /// Lists field errors, at most [`MAX_FIELD_ERRORS`] of them and then one saying how many
    /// more there were: a request of a million bad items must not get a million-line answer.
    pub fn with_errors(mut self, mut errors: Vec<FieldError>) -> Self {
        if errors.len() > MAX_FIELD_ERRORS {
            let more = errors.len() - MAX_FIELD_ERRORS;
            errors.truncate(MAX_FIELD_ERRORS);
            errors.push(FieldError::new(
                "errors",
                format!("and {more} more problems like these"),
            ));
        }
        self.errors = errors;
        self
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        if request_id.is_some() {
            self.request_id = request_id;
        }
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        builder.content_type(CONTENT_TYPE);
        if let Some(id) = &self.request_id {
            builder.insert_header((crate::http::REQUEST_ID_HEADER, id.as_str()));
        }
        builder.json(self)
    }

    /// Stable code for a status that reached the edge without a domain error.
    pub fn generic_code(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            406 => "not_acceptable",
            408 => "request_timeout",
            409 => "conflict",
            410 => "gone",
            411 => "length_required",
            413 => "payload_too_large",
            414 => "uri_too_long",
            415 => "unsupported_media_type",
            422 => "unprocessable_entity",
            429 => "too_many_requests",
            502 => "bad_gateway",
            503 => "service_unavailable",
            504 => "gateway_timeout",
            s if s >= 500 => "internal_error",
            _ => "client_error",
        }
    }
}

/// Implemented by each service's single error enum; `respond` maps it to problem+json.
///
/// ```ignore
/// impl actix_web::ResponseError for MyError {
///     fn status_code(&self) -> StatusCode { ApiError::status(self) }
///     fn error_response(&self) -> HttpResponse { caretrail_platform::problem::respond(self) }
/// }
/// ```
pub trait ApiError: std::error::Error {
    fn status(&self) -> StatusCode;
    /// Stable snake_case code, part of the public API.
    fn code(&self) -> &'static str;
    fn field_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// The one place a service error becomes an HTTP response; server errors are logged here
/// (once, with their cause chain) and answered without internals.
pub fn respond<E: ApiError + ?Sized>(err: &E) -> HttpResponse {
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(code = err.code(), error = %ErrorChain(err), "request failed");
    } else {
        tracing::debug!(code = err.code(), error = %err, "request refused");
    }
    let detail = (!status.is_server_error()).then(|| err.to_string());
    Problem::new(status, err.code(), detail)
        .with_errors(err.field_errors())
        .to_response()
}

/// [`respond`] for a throttled request: its 429 says in `Retry-After` when to try again.
pub fn respond_throttled<E: ApiError + ?Sized>(err: &E, wait: std::time::Duration) -> HttpResponse {
    let mut resp = respond(err);
    resp.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        crate::throttle::whole_seconds(wait).into(),
    );
    resp
}

/// Displays an error with its whole `source()` chain.
pub struct ErrorChain<'a, E: ?Sized>(pub &'a E);

impl<E: std::error::Error + ?Sized> std::fmt::Display for ErrorChain<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("tenant ten_x not found")]
        NotFound,
        #[error("database exploded at 10.0.0.7")]
        Db,
    }
    impl ApiError for Sample {
        fn status(&self) -> StatusCode {
            match self {
                Sample::NotFound => StatusCode::NOT_FOUND,
                Sample::Db => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
        fn code(&self) -> &'static str {
            match self {
                Sample::NotFound => "tenant_not_found",
                Sample::Db => "internal_error",
            }
        }
    }

    async fn body(resp: HttpResponse) -> serde_json::Value {
        let bytes = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[actix_web::test]
    async fn client_errors_carry_detail_and_code() {
        let resp = respond(&Sample::NotFound);
        assert_eq!(resp.status(), 404);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        let b = body(resp).await;
        assert_eq!(b["code"], "tenant_not_found");
        assert_eq!(b["type"], "urn:caretrail:problem:tenant_not_found");
        assert_eq!(b["title"], "Not Found");
        assert_eq!(b["detail"], "tenant ten_x not found");
    }

    #[test]
    fn field_errors_are_capped() {
        let many: Vec<FieldError> = (0..100_000)
            .map(|i| FieldError::new(format!("items[{i}]"), "bad"))
            .collect();
        let p = Problem::new(StatusCode::BAD_REQUEST, "invalid_request", None).with_errors(many);
        assert_eq!(p.errors.len(), MAX_FIELD_ERRORS + 1);
        assert_eq!(p.errors[0].field, "items[0]");
        assert_eq!(
            p.errors[MAX_FIELD_ERRORS].message,
            format!(
                "and {} more problems like these",
                100_000 - MAX_FIELD_ERRORS
            )
        );
        let few = vec![FieldError::new("a", "b")];
        let p = Problem::new(StatusCode::BAD_REQUEST, "invalid_request", None).with_errors(few);
        assert_eq!(p.errors.len(), 1);
    }

    #[actix_web::test]
    async fn server_errors_leak_nothing() {
        let b = body(respond(&Sample::Db)).await;
        assert_eq!(b["status"], 500);
        assert!(!b.to_string().contains("10.0.0.7"), "{b}");
    }
}
