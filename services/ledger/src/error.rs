//! The service's one error type, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use caretrail_platform::problem::{ApiError, respond};

use crate::node::LedgerFailure;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Auth(#[from] caretrail_platform::auth::AuthError),
    /// A refusal or failure of the ledger itself (stable `code` from [`LedgerFailure`]).
    #[error("{}", .0.message)]
    Ledger(LedgerFailure),
    #[error("database failure")]
    Database(#[from] caretrail_db::sea_orm::DbErr),
    #[error("message bus failure")]
    Bus(#[from] caretrail_bus::BusError),
}

impl From<LedgerFailure> for LedgerError {
    fn from(f: LedgerFailure) -> Self {
        Self::Ledger(f)
    }
}

/// Every `code` a [`LedgerFailure`] can carry, with its HTTP status.
const FAILURE_CODES: &[(&str, StatusCode)] = &[
    ("invalid_entry", StatusCode::UNPROCESSABLE_ENTITY),
    ("unknown_kind", StatusCode::UNPROCESSABLE_ENTITY),
    ("bad_signature", StatusCode::UNPROCESSABLE_ENTITY),
    ("invalid_cosignature", StatusCode::UNPROCESSABLE_ENTITY),
    ("invalid_tenant", StatusCode::UNPROCESSABLE_ENTITY),
    ("invalid_request", StatusCode::BAD_REQUEST),
    ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
    ("unknown_tenant", StatusCode::NOT_FOUND),
    ("not_found", StatusCode::NOT_FOUND),
    ("unknown_institution", StatusCode::FORBIDDEN),
    ("unknown_key", StatusCode::FORBIDDEN),
    ("key_revoked", StatusCode::FORBIDDEN),
    ("request_id_conflict", StatusCode::CONFLICT),
    ("tenant_suite_conflict", StatusCode::CONFLICT),
    ("log_full", StatusCode::CONFLICT),
    ("no_leader", StatusCode::SERVICE_UNAVAILABLE),
    ("not_leader", StatusCode::SERVICE_UNAVAILABLE),
    ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
];

fn failure_code(f: &LedgerFailure) -> (&'static str, StatusCode) {
    FAILURE_CODES
        .iter()
        .find(|(c, _)| *c == f.code)
        .copied()
        .unwrap_or(("unavailable", StatusCode::SERVICE_UNAVAILABLE))
}

impl ApiError for LedgerError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Auth(e) => e.status(),
            Self::Ledger(f) => failure_code(f).1,
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::BadRequest(_) => "invalid_request",
            Self::Forbidden(_) => "forbidden",
            Self::Auth(e) => e.code(),
            Self::Ledger(f) => failure_code(f).0,
            Self::Database(_) => "internal_error",
            Self::Bus(_) => "dependency_unavailable",
        }
    }
}

impl ResponseError for LedgerError {
    fn status_code(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn error_response(&self) -> HttpResponse {
        respond(self)
    }
}
