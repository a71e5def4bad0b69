//! Database migrations, one migrator per service schema. Services never share tables:
//! each has its own schema on PostgreSQL (its own file on SQLite), its own outbox and inbox.
//!
//! Tenant-owned tables get row-level security through [`common::enable_tenant_rls`].

use sea_orm_migration::prelude::*;

pub mod anchors;
pub mod audit_anomalies;
pub mod audit_tables;
pub mod audit_witness;
pub mod common;
pub mod consent_tables;
pub mod identity_certificates;
pub mod identity_lifecycle;
pub mod identity_tables;
pub mod identity_users;
pub mod identity_witness;
pub mod ledger_cursor;
pub mod object_store_record_keys;
pub mod object_store_tables;

macro_rules! service_migrator {
    ($module:ident, $doc:literal, [$($migration:expr),* $(,)?]) => {
        #[doc = $doc]
        pub mod $module {
            use sea_orm_migration::prelude::*;

            pub struct Migrator;

            #[sea_orm_migration::async_trait::async_trait]
            impl MigratorTrait for Migrator {
                fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                    vec![$(Box::new($migration)),*]
                }
            }
        }
    };
}

service_migrator!(
    identity,
    "Identity service schema.",
    [
        crate::common::OutboxInbox,
        crate::identity_tables::Tables,
        crate::identity_users::UsersMigration,
        crate::identity_certificates::Certificates,
        crate::identity_witness::WitnessCosignatures,
        crate::identity_lifecycle::Lifecycle
    ]
);
service_migrator!(
    consent,
    "Consent service schema.",
    [crate::common::OutboxInbox, crate::consent_tables::Tables]
);
service_migrator!(
    ledger,
    "Ledger service schema (relational side: outbox, inbox, event publishing cursor).",
    [
        crate::common::OutboxInbox,
        crate::ledger_cursor::PublishCursor
    ]
);
service_migrator!(
    object_store,
    "Object-store service schema.",
    [
        crate::common::OutboxInbox,
        crate::object_store_tables::Tables,
        crate::anchors::ObjectStoreAnchorSubject,
        crate::object_store_record_keys::RecordKeys
    ]
);
service_migrator!(
    audit,
    "Audit service schema.",
    [
        crate::common::OutboxInbox,
        crate::audit_tables::Tables,
        crate::audit_anomalies::Anomalies,
        crate::audit_witness::Witness
    ]
);

/// Every service schema, by service name, for `caretrail migrate`.
pub const SERVICES: [&str; 5] = ["identity", "consent", "ledger", "object-store", "audit"];

/// Applies the named service's pending migrations.
pub async fn migrate_service(
    service: &str,
    db: &sea_orm_migration::sea_orm::DatabaseConnection,
) -> Result<(), DbErr> {
    match service {
        "identity" => identity::Migrator::up(db, None).await,
        "consent" => consent::Migrator::up(db, None).await,
        "ledger" => ledger::Migrator::up(db, None).await,
        "object-store" => object_store::Migrator::up(db, None).await,
        "audit" => audit::Migrator::up(db, None).await,
        other => Err(DbErr::Custom(format!("unknown service {other}"))),
    }
}
