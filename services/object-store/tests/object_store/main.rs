//! The object store with a real identity and a one-node ledger beside it, on the embedded
//! adapters (SQLite, in-process bus, local directory) and on the real PostgreSQL, RabbitMQ
//! and S3 server (Garage, started by `make test`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod records;
mod stack {
    pub use caretrail_test_stack::*;
}

caretrail_runtime::service_start_tests!(caretrail_object_store, "object_store", |service, dir| {
    caretrail_object_store::Config::new(
        service,
        caretrail_object_store::StoreSettings {
            objects_dir: dir.join("objects"),
            keyring: Some(caretrail_object_store::keys::Keyring::generate_json().unwrap()),
            ..Default::default()
        },
    )
});
