//! The service's one error type, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use caretrail_platform::{
    FieldError,
    auth::AuthError,
    problem::{ApiError, respond},
};
use caretrail_runtime::anchoring::AnchorError;

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("the ledger refused the entry: {0}")]
    LedgerRefused(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the tenant is suspended")]
    TenantSuspended,
    #[error("{0} is unavailable")]
    Dependency(&'static str, #[source] caretrail_bus::BusError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(&'static str),
    #[error("database failure")]
    Database(#[from] caretrail_db::sea_orm::DbErr),
    #[error("database failure")]
    Db(#[from] caretrail_db::DbError),
    #[error("message bus failure")]
    Bus(#[from] caretrail_bus::BusError),
}

impl From<AnchorError> for ConsentError {
    fn from(e: AnchorError) -> Self {
        match e {
            AnchorError::Database(e) => Self::Database(e),
            AnchorError::Db(e) => Self::Db(e),
            AnchorError::Bus(e) => Self::Bus(e),
            AnchorError::Corrupt(what) => Self::Corrupt(what),
        }
    }
}

impl ConsentError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl ApiError for ConsentError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) | Self::TenantSuspended => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::LedgerRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Auth(e) => e.status(),
            Self::Dependency(..) | Self::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Corrupt(_) | Self::Database(_) | Self::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "invalid_request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict(_) => "conflict",
            Self::LedgerRefused(_) => "ledger_refused",
            Self::Auth(e) => e.code(),
            Self::TenantSuspended => "tenant_suspended",
            Self::Dependency(..) | Self::Bus(_) => "dependency_unavailable",
            Self::Corrupt(_) | Self::Database(_) | Self::Db(_) => "internal_error",
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(errors) => errors.clone(),
            _ => Vec::new(),
        }
    }
}

impl ResponseError for ConsentError {
    fn status_code(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Auth(e) => e.error_response(),
            _ => respond(self),
        }
    }
}
