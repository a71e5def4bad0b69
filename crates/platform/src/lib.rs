//! Infrastructure every Caretrail process shares: configuration, telemetry, problem+json
//! errors, request ids, health and metrics endpoints, the HTTP server lifecycle and
//! shutdown. No domain logic lives here.

pub mod auth;
pub mod config;
pub mod files;
pub mod health;
pub mod http;
pub mod metrics;
pub mod problem;
pub mod shutdown;
pub mod telemetry;
pub mod throttle;
pub mod trace_context;

pub use problem::{ApiError, FieldError, Problem};
