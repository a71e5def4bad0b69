//! The audit service with identity, a one-node ledger, the object store and consent beside
//! it, on the embedded adapters and on PostgreSQL, RabbitMQ and the S3 server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod anomalies;
mod keys;
mod trail;
mod witness;

caretrail_runtime::service_start_tests!(caretrail_audit, "audit", |service, _dir| {
    caretrail_audit::Config::new(service)
});
