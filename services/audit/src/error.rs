//! The service's one error type, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use caretrail_platform::problem::{ApiError, respond};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("not found")]
    NotFound,
    #[error("database failure")]
    Database(#[from] caretrail_db::sea_orm::DbErr),
    #[error("message bus failure")]
    Bus(#[from] caretrail_bus::BusError),
}

impl ApiError for AuditError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Database(_) => "internal_error",
            Self::Bus(_) => "dependency_unavailable",
        }
    }
}

impl ResponseError for AuditError {
    fn status_code(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn error_response(&self) -> HttpResponse {
        respond(self)
    }
}
