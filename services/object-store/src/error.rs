//! The service's one error type, mapped once to problem+json.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use caretrail_platform::{
    FieldError,
    auth::AuthError,
    problem::{ApiError, respond},
};

use crate::keys::KmsError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("patient {0} is not registered in this tenant")]
    UnknownPatient(String),
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("the record content is empty")]
    EmptyContent,
    #[error("the record exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Forbidden(String),
    #[error("access denied: {}", .0.join("; "))]
    AccessDenied(Vec<String>),
    #[error("not found")]
    NotFound,
    #[error("the record was erased")]
    Gone,
    #[error("{0}")]
    Conflict(String),
    #[error("the record is not anchored on the ledger yet")]
    NotAnchored,
    #[error(
        "the institution holds its own signing key: send the manifest signature (record_id, key_id, signature)"
    )]
    SignatureRequired,
    #[error("the ledger refused the manifest signature: {0}")]
    SignatureRejected(String),
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the tenant is suspended")]
    TenantSuspended,
    #[error("object storage is unavailable")]
    StorageUnavailable(#[source] StorageError),
    #[error("{0} is unavailable")]
    Dependency(&'static str, #[source] caretrail_bus::BusError),
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error("the stored content failed its integrity check")]
    Integrity(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(&'static str),
    #[error("key management failure")]
    Kms(#[from] KmsError),
    #[error("cryptographic failure")]
    Crypto(#[from] caretrail_crypto::CryptoError),
    #[error("database failure")]
    Database(#[from] caretrail_db::sea_orm::DbErr),
    #[error("database failure")]
    Db(#[from] caretrail_db::DbError),
    #[error("message bus failure")]
    Bus(#[from] caretrail_bus::BusError),
}

impl ObjectStoreError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<caretrail_runtime::anchoring::AnchorError> for ObjectStoreError {
    fn from(e: caretrail_runtime::anchoring::AnchorError) -> Self {
        use caretrail_runtime::anchoring::AnchorError;
        match e {
            AnchorError::Database(e) => Self::Database(e),
            AnchorError::Db(e) => Self::Db(e),
            AnchorError::Bus(e) => Self::Bus(e),
            AnchorError::Corrupt(what) => Self::Corrupt(what),
        }
    }
}

impl From<StorageError> for ObjectStoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => Self::Integrity("the object is missing".into()),
            other => Self::StorageUnavailable(other),
        }
    }
}

impl ApiError for ObjectStoreError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::UnknownPatient(_) | Self::EmptyContent | Self::Body(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Forbidden(_) | Self::AccessDenied(_) | Self::TenantSuspended => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Gone => StatusCode::GONE,
            Self::Conflict(_) | Self::NotAnchored => StatusCode::CONFLICT,
            Self::SignatureRequired | Self::SignatureRejected(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Auth(e) => e.status(),
            Self::StorageUnavailable(_)
            | Self::Dependency(..)
            | Self::Unavailable(_)
            | Self::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Integrity(_)
            | Self::Corrupt(_)
            | Self::Kms(_)
            | Self::Crypto(_)
            | Self::Database(_)
            | Self::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "invalid_request",
            Self::UnknownPatient(_) => "unknown_patient",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::EmptyContent => "empty_content",
            Self::TooLarge(_) => "record_too_large",
            Self::Forbidden(_) => "forbidden",
            Self::AccessDenied(_) => "access_denied",
            Self::NotFound => "not_found",
            Self::Gone => "record_erased",
            Self::Conflict(_) => "conflict",
            Self::NotAnchored => "record_not_anchored",
            Self::SignatureRequired => "signature_required",
            Self::SignatureRejected(_) => "invalid_signature",
            Self::Body(_) => "invalid_body",
            Self::Auth(e) => e.code(),
            Self::TenantSuspended => "tenant_suspended",
            Self::StorageUnavailable(_) => "storage_unavailable",
            Self::Dependency(..) | Self::Unavailable(_) | Self::Bus(_) => "dependency_unavailable",
            Self::Integrity(_) => "integrity_error",
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

impl ResponseError for ObjectStoreError {
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

/// A concurrent insert won the race for a unique key.
pub fn is_unique_violation(e: &caretrail_db::sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(caretrail_db::sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
