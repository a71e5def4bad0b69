//! The identity service's one error type, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use caretrail_platform::{
    FieldError, Problem,
    auth::AuthError,
    problem::{ApiError, respond},
};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("the tenant is suspended")]
    TenantSuspended,
    #[error("too many attempts; retry in {} s", caretrail_platform::throttle::whole_seconds(*.0))]
    Throttled(std::time::Duration),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// RFC 6749 §5.2 token-endpoint errors.
    #[error("{description}")]
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: String,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(&'static str),
    #[error("cryptographic failure")]
    Crypto(#[from] caretrail_crypto::CryptoError),
    #[error("database failure")]
    Database(#[from] caretrail_db::sea_orm::DbErr),
    #[error("database failure")]
    Db(#[from] caretrail_db::DbError),
    #[error("message bus failure")]
    Bus(#[from] caretrail_bus::BusError),
}

impl IdentityError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn oauth(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self::OAuth {
            status,
            error,
            description: description.into(),
        }
    }
}

impl ApiError for IdentityError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) | Self::TenantSuspended => StatusCode::FORBIDDEN,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Auth(e) => e.status(),
            Self::OAuth { status, .. } => *status,
            Self::Config(_)
            | Self::Corrupt(_)
            | Self::Crypto(_)
            | Self::Database(_)
            | Self::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "invalid_request",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Forbidden(_) => "forbidden",
            Self::Unauthorized(_) => "invalid_credentials",
            Self::TenantSuspended => "tenant_suspended",
            Self::Throttled(_) => "too_many_requests",
            Self::Auth(e) => e.code(),
            Self::OAuth { error, .. } => error,
            Self::Bus(_) => "dependency_unavailable",
            _ => "internal_error",
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(errors) => errors.clone(),
            _ => Vec::new(),
        }
    }
}

impl ResponseError for IdentityError {
    fn status_code(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Auth(e) => e.error_response(),
            Self::OAuth {
                status,
                error,
                description,
            } => {
                // RFC 6749 clients read `error`; everyone else reads the problem fields.
                let problem = Problem::new(*status, error, Some(description.clone()));
                let mut body = serde_json::to_value(&problem).unwrap_or_default();
                if let Some(map) = body.as_object_mut() {
                    map.insert("error".into(), (*error).into());
                    map.insert("error_description".into(), description.clone().into());
                }
                let mut resp = HttpResponse::build(*status);
                resp.content_type(caretrail_platform::problem::CONTENT_TYPE)
                    .insert_header(("cache-control", "no-store"));
                if *status == StatusCode::UNAUTHORIZED {
                    resp.insert_header(("www-authenticate", "Basic realm=\"caretrail\""));
                }
                resp.json(body)
            }
            Self::Throttled(wait) => caretrail_platform::problem::respond_throttled(self, *wait),
            _ => respond(self),
        }
    }
}

/// A concurrent insert won the race for a unique key.
pub fn is_unique_violation(e: &caretrail_db::sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(caretrail_db::sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
