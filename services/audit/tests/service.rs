//! The service starts from its library on port 0, on the embedded adapters and on the
//! real PostgreSQL and RabbitMQ, migrates its schema and reports ready.
#![allow(clippy::unwrap_used, clippy::expect_used)]

caretrail_runtime::service_start_tests!(caretrail_audit, "audit");
