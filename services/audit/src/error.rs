//! The service's one error type, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use caretrail_platform::{
    FieldError,
    auth::AuthError,
    problem::{ApiError, respond},
};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Auth(#[from] AuthError),
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

impl AuditError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl ApiError for AuditError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
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
            Self::Auth(e) => e.code(),
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

impl ResponseError for AuditError {
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
