//! Object store: a record is identified within its tenant — primary key `(tenant_id, id)`
//! instead of `id` alone.
//!
//! Institutions that sign their own manifests choose their record ids. With ids unique across
//! tenants, choosing one another tenant had used answered `409`: one tenant learnt that an id
//! existed in another. Within a tenant a reused id is still a conflict.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct RecordKeys;

impl MigrationName for RecordKeys {
    fn name(&self) -> &str {
        "m0005_object_store_record_keys"
    }
}

/// The columns of `records`, in table order (copied as they are on SQLite).
const COLUMNS: &str = "id, tenant_id, patient_id, institution_id, category, media_type, title, \
    encounter_date, fhir_resource_type, size, content_hash, suite, storage_key, wrapped_key, \
    kek_version, status, created_by, created_at, manifest, ledger_index, leaf_hash, erased_at, \
    erased_by, erasure_reason";

/// SQLite cannot change a primary key in place: the table is rebuilt with the same columns
/// (declared exactly as the first migration created them) and its indexes recreated.
const SQLITE_REBUILD: &[&str] = &[
    "CREATE TABLE records_rekeyed (
        id varchar(64) NOT NULL,
        tenant_id varchar(64) NOT NULL,
        patient_id varchar(64) NOT NULL,
        institution_id varchar(64) NOT NULL,
        category varchar(32) NOT NULL,
        media_type varchar(128) NOT NULL,
        title text NOT NULL,
        encounter_date varchar(10) NOT NULL,
        fhir_resource_type varchar(64) NULL,
        size integer NOT NULL,
        content_hash varchar(64) NOT NULL,
        suite varchar(8) NOT NULL,
        storage_key text NOT NULL,
        wrapped_key text NULL,
        kek_version integer NOT NULL,
        status varchar(16) NOT NULL,
        created_by varchar(64) NOT NULL,
        created_at timestamp_with_timezone_text NOT NULL,
        manifest text NOT NULL,
        ledger_index integer NULL,
        leaf_hash varchar(64) NULL,
        erased_at timestamp_with_timezone_text NULL,
        erased_by varchar(64) NULL,
        erasure_reason text NULL,
        PRIMARY KEY (tenant_id, id)
    )",
    "INSERT INTO records_rekeyed (COLUMNS) SELECT COLUMNS FROM records",
    "DROP TABLE records",
    "ALTER TABLE records_rekeyed RENAME TO records",
    "CREATE INDEX records_by_patient ON records (tenant_id, patient_id, id)",
    "CREATE INDEX records_by_kek ON records (tenant_id, kek_version)",
];

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for RecordKeys {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE records DROP CONSTRAINT records_pkey, \
                     ADD PRIMARY KEY (tenant_id, id)",
                )
                .await?;
            }
            _ => {
                // One batch on one connection, under a savepoint: all of it or none (a pool
                // may hand each statement to another connection, and SQLite commits DDL
                // outside a transaction at once).
                let mut batch = String::from("SAVEPOINT record_keys;\n");
                for statement in SQLITE_REBUILD {
                    batch.push_str(&statement.replace("COLUMNS", COLUMNS));
                    batch.push_str(";\n");
                }
                batch.push_str("RELEASE record_keys;");
                db.execute_unprepared(&batch).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE records DROP CONSTRAINT records_pkey, ADD PRIMARY KEY (id)",
            )
            .await?;
        }
        Ok(())
    }
}
