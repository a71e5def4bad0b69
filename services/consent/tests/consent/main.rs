//! Consent with identity, a one-node ledger and the object store beside it, on the embedded
//! adapters (SQLite, in-process bus) and on the real PostgreSQL, RabbitMQ and S3 server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flows;
mod policy_matrix;
mod privacy;

caretrail_runtime::service_start_tests!(caretrail_consent, "consent", |service, _dir| {
    caretrail_consent::Config::new(service, caretrail_consent::ConsentSettings::default())
});
